-- GETs of the URL as given (e.g. a catch-up read ?offset=-1).
--   wrk -t2 -c64 -d10s -s get.lua 'http://127.0.0.1:PORT/v1/stream/small?offset=-1'
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

function done(summary, latency, requests)
  bench_summary(summary, latency, 1)
end
