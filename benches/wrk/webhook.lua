-- wrk script for benches/run: POSTs a one-alert Alertmanager webhook with a Bearer token.
--   BENCH_TOKEN      webhook_token (default bench-token)
--   BENCH_PATH       path to POST to (default /alertmanager)
--   BENCH_ALERTNAME  alertname (cpu_usage matches the bundled tutorial's scaling rule)
--   BENCH_VARY       1 (default): every request is a new occurrence (its own
--                    fingerprint and startsAt); 0: the same occurrence every time
-- done() prints one line: BENCH_RESULT {json} with requests/s and latency percentiles.

local token = os.getenv("BENCH_TOKEN") or "bench-token"
local path = os.getenv("BENCH_PATH") or "/alertmanager"
local alertname = os.getenv("BENCH_ALERTNAME") or "cpu_usage"
local vary = os.getenv("BENCH_VARY") ~= "0"

local next_id = 0
function setup(thread)
  next_id = next_id + 1
  thread:set("id", next_id)
end

local counter = 0
local nonce = 0
local headers = {
  ["Authorization"] = "Bearer " .. token,
  ["Content-Type"] = "application/json",
}

function init(args)
  nonce = os.time() % 100000
end

local template = '{"receiver":"remediator","status":"firing","version":"4",'
  .. '"groupKey":"{}:{alertname=\\"%s\\"}","truncatedAlerts":0,'
  .. '"alerts":[{"status":"firing","labels":{"alertname":"%s","instance":"10.0.0.7:9090",'
  .. '"job":"carts","namespace":"shop","service":"carts","severity":"critical"},'
  .. '"annotations":{"summary":"CPU usage high on carts"},'
  .. '"startsAt":"2026-11-26T14:%02d:%02d.%03dZ","endsAt":"0001-01-01T00:00:00Z",'
  .. '"generatorURL":"http://prometheus:9090/graph","fingerprint":"%s"}]}'

function request()
  local fp, m, s, ms = "bench0000000000", 0, 0, 0
  if vary then
    counter = counter + 1
    fp = string.format("%02x%05x%09x", id or 0, nonce, counter)
    m = math.floor(counter / 60000) % 60
    s = math.floor(counter / 1000) % 60
    ms = counter % 1000
  end
  local body = string.format(template, alertname, alertname, m, s, ms, fp)
  return wrk.format("POST", path, headers, body)
end

function done(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status + summary.errors.timeout
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_s":%.3f,"rps":%.1f,"p50_ms":%.3f,"p90_ms":%.3f,"p99_ms":%.3f,"max_ms":%.3f,"mean_ms":%.3f,"errors":%d,"non2xx":%d}\n',
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, latency.mean / 1000, errors, summary.errors.status))
end
