-- Shared by the bench's wrk scripts (loaded with dofile from the script's
-- own directory): one machine-readable summary line that
-- `dsbench wrkparse` turns into a result record.
function bench_summary(summary, latency, pipeline)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d,' ..
    '"p50_us":%.1f,"p99_us":%.1f,"max_us":%.1f,"pipeline":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max, pipeline or 1))
end

-- The appends' body: 100 bytes.
bench_body = string.rep("0123456789", 10)
