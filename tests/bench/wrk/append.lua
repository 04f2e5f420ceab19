-- 100-byte POSTs. Argument (after --): number of streams N. With N = 1 the
-- request is static (wrk's fastest path) and goes to the URL's path; with
-- N > 1 each thread rotates over <path>-0 … <path>-(N-1).
--   wrk -t2 -c64 -d10s -s append.lua http://127.0.0.1:PORT/v1/stream/a -- 64
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

wrk.method = "POST"
wrk.body = bench_body
wrk.headers["Content-Type"] = "text/plain"

local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

function init(args)
  local n = tonumber(args[1] or "1")
  if n > 1 then
    local reqs = {}
    for k = 0, n - 1 do
      reqs[k + 1] = wrk.format(nil, wrk.path .. "-" .. k)
    end
    local i = (id or 0) * 7 % n
    request = function()
      i = i % n + 1
      return reqs[i]
    end
  end
end

function done(summary, latency, requests)
  bench_summary(summary, latency, 1)
end
