-- wrk script: durable creates of an Observation (POST /fhir/Observation).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/fhir+json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("CV_TOKEN")
wrk.body = '{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org",' ..
  '"code":"8867-4","display":"Heart rate"}]},"subject":{"reference":"Patient/bench-1"},' ..
  '"effectiveDateTime":"2026-11-22T10:00:00Z","valueQuantity":{"value":72,"unit":"beats/minute",' ..
  '"system":"http://unitsofmeasure.org","code":"/min"}}'
local statuses = {}
response = function(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
done = function(summary, latency, requests)
  io.write(string.format("non2xx=%d\n", summary.errors.status))
end
