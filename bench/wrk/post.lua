-- POST AdmissionReviews over and over on keep-alive connections, as the apiserver does.
-- The body is read from the file named by $BENCH_BODY; `done` prints one JSON line that
-- bench/runner.py parses (latencies in microseconds, errors by kind as wrk counts them).
local path = assert(os.getenv("BENCH_BODY"), "set BENCH_BODY to the request body's file")
local file = assert(io.open(path, "rb"))
wrk.method = "POST"
wrk.path = "/mutate"
wrk.body = file:read("*a")
wrk.headers["Content-Type"] = "application/json"
file:close()

-- A body file ending in .jsonl holds one body per line, sent in turn.
local bodies = {wrk.body}
if string.sub(path, -6) == ".jsonl" then
  bodies = {}
  for line in string.gmatch(wrk.body, "[^\n]+") do
    table.insert(bodies, line)
  end
  wrk.body = bodies[1]
end

-- With $BENCH_VARY set, every request's pod differs: a counter follows the first occurrence of
-- that text (the generateName), so nothing can be answered from an earlier identical request.
local vary = os.getenv("BENCH_VARY")
if vary and vary ~= "" then
  local prefixes, suffixes = {}, {}
  for i, body in ipairs(bodies) do
    local _, last = string.find(body, vary, 1, true)
    assert(last, "BENCH_VARY text not found in a body")
    prefixes[i], suffixes[i] = string.sub(body, 1, last), string.sub(body, last + 1)
  end
  local counter = 0
  function request()
    counter = counter + 1
    local i = counter % #bodies + 1
    return wrk.format(nil, nil, nil, prefixes[i] .. counter .. "-" .. suffixes[i])
  end
elseif #bodies > 1 then
  local requests = {}
  for i, body in ipairs(bodies) do
    requests[i] = wrk.format(nil, nil, nil, body)
  end
  local counter = 0
  function request()
    counter = counter + 1
    return requests[counter % #requests + 1]
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max))
end
