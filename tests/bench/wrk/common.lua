-- Shared by the bench's wrk scripts (loaded with dofile from the script's
-- own directory): one machine-readable summary line that
-- `dsbench wrkparse` turns into a result record.
-- Percentiles are computed here from wrk's latency histogram (distinct
-- values with their counts): wrk's own latency:percentile() can return 0
-- when few samples were recorded, as with pipelining.
local function percentiles(latency, ps)
  local values, total = {}, 0
  for i = 1, #latency do
    local v, c = latency(i)
    values[#values + 1] = { v, c }
    total = total + c
  end
  table.sort(values, function(a, b) return a[1] < b[1] end)
  local out = {}
  for k, p in ipairs(ps) do
    local rank = math.max(1, math.ceil(p / 100 * total))
    local seen = 0
    out[k] = 0
    for _, vc in ipairs(values) do
      seen = seen + vc[2]
      if seen >= rank then
        out[k] = vc[1]
        break
      end
    end
  end
  return out
end

function bench_summary(summary, latency, pipeline)
  local e = summary.errors
  local p = percentiles(latency, { 50, 99 })
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d,' ..
    '"p50_us":%.1f,"p99_us":%.1f,"max_us":%.1f,"pipeline":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    p[1], p[2], latency.max, pipeline or 1))
end

-- The appends' body: 100 bytes.
bench_body = string.rep("0123456789", 10)
