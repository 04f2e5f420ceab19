-- Idempotent-producer appends: every wrk thread is one producer
-- (Producer-Id bench-<token>-<thread>, epoch 0) on one connection, sending
-- batches of BENCH_PIPELINE pipelined 100-byte POSTs with consecutive
-- Producer-Seq numbers. Run with as many connections as threads:
--   BENCH_PIPELINE=8 BENCH_TOKEN=x wrk -t16 -c16 -d10s -s producer.lua URL
-- wrk records latency per batch (first request sent to last response read).
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

local depth = tonumber(os.getenv("BENCH_PIPELINE") or "8")
local token = os.getenv("BENCH_TOKEN") or tostring(os.time())

local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

local producer, seq, verified

function init(args)
  producer = "bench-" .. token .. "-" .. tostring(id)
  seq = 0
  -- wrk calls request() once on thread 0 to count the pipelined requests
  -- and throws that batch away: don't let it use up sequence numbers.
  verified = (id ~= 0)
end

function request()
  local parts = {}
  for k = 0, depth - 1 do
    parts[#parts + 1] = wrk.format("POST", nil, {
      ["Content-Type"] = "text/plain",
      ["Producer-Id"] = producer,
      ["Producer-Epoch"] = "0",
      ["Producer-Seq"] = tostring(seq + k),
    }, bench_body)
  end
  if verified then
    seq = seq + depth
  else
    verified = true
  end
  return table.concat(parts)
end

function done(summary, latency, requests)
  bench_summary(summary, latency, depth)
end
