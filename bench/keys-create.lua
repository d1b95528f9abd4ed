-- wrk script: durable creates of an Observation (POST /fhir/Observation) for a patient picked at
-- random among the kp-0 .. kp-<KEYS_PATIENTS-1> of make bench's data keys section: each create is
-- sealed under that patient's data key. The Authorization header comes from wrk's -H.
local patients = tonumber(os.getenv("KEYS_PATIENTS") or "2000")
local threads = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/fhir+json"
local head = '{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org",' ..
  '"code":"8867-4","display":"Heart rate"}]},"subject":{"reference":"Patient/kp-'
local tail = '"},"effectiveDateTime":"2026-11-22T10:00:00Z","valueQuantity":{"value":72,"unit":"beats/minute",' ..
  '"system":"http://unitsofmeasure.org","code":"/min"}}'
setup = function(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
init = function(args)
  math.randomseed(os.time() * 1000 + (tid or 0))
end
request = function()
  return wrk.format("POST", nil, nil, head .. math.random(0, patients - 1) .. tail)
end
