-- wrk script: reads by id spread over the patients of make bench's data keys section
-- (bench/run.sh loads kp-0 .. kp-<KEYS_PATIENTS-1>, each with Observations ko-<n>-0 and ko-<n>-1):
-- every request picks a patient at random and reads the Patient or one of its two Observations.
-- The Authorization header comes from wrk's -H.
local patients = tonumber(os.getenv("KEYS_PATIENTS") or "2000")
local threads = 0
setup = function(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
init = function(args)
  -- each thread its own sequence (LuaJIT's generator starts from the same seed in every thread)
  math.randomseed(os.time() * 1000 + (tid or 0))
end
request = function()
  local n = math.random(0, patients - 1)
  local k = math.random(0, 2)
  if k == 0 then
    return wrk.format("GET", "/fhir/Patient/kp-" .. n)
  end
  return wrk.format("GET", "/fhir/Observation/ko-" .. n .. "-" .. (k - 1))
end
