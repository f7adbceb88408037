-- read.lua - wrk script for the HTTP read benchmark (bench/http.sh):
-- GET /v1/subjects/{id}?purpose=account with a bearer token, spreading the
-- reads over every subject id in a file (one hex id a line).  Each wrk
-- thread starts at a different offset and walks the ids round-robin, so
-- connections read different subjects, as a shop's back end would.
--
-- usage: wrk -t2 -c64 -d10s -s bench/read.lua http://127.0.0.1:PORT -- IDS_FILE TOKEN [PURPOSE]
-- Any non-200 answer is counted in wrk's "Non-2xx" line; http.sh fails the run on it.

local ids, token, purpose = {}, nil, "account"
local threads, nthreads = {}, 0

function setup(thread)
   nthreads = nthreads + 1
   thread:set("tid", nthreads)
   table.insert(threads, thread)
end

function init(args)
   local file = args[1]
   token = args[2]
   purpose = args[3] or "account"
   for line in io.lines(file) do
      if #line > 0 then ids[#ids + 1] = line end
   end
   if #ids == 0 or not token then
      error("usage: -- IDS_FILE TOKEN [PURPOSE]")
   end
   -- spread the threads' starting points over the id list
   pos = math.floor((tid - 1) * #ids / 8) % #ids
   headers = { ["Authorization"] = "Bearer " .. token }
   -- build every request once: the load generator shares the machine's two cores with the
   -- server, and formatting a request per call costs it more than health's fixed request does
   reqs = {}
   for i, id in ipairs(ids) do
      reqs[i] = wrk.format("GET", "/v1/subjects/" .. id .. "?purpose=" .. purpose, headers)
   end
end

function request()
   pos = pos + 1
   if pos > #reqs then pos = 1 end
   return reqs[pos]
end
