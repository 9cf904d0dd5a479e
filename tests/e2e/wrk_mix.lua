-- wrk_mix.lua: the request mix for remediator's concurrency and load tests (driven by
-- wrkload.py, which writes the spec this script reads from $E2E_WRK_SPEC).
--
-- Every wrk thread has exactly one connection, so its answers come back in the order of
-- its requests: a FIFO of request kinds tells each answer's kind. Per thread, requests
-- cycle through spec.pattern (indices into spec.kinds), starting at an offset derived from
-- the thread's id. A kind with `template = true` gets "@OCC@" in its body replaced by a
-- value unique to the request (thread id and sequence number: a distinct alert occurrence).
-- After spec.quota answers a thread touches spec.done_dir/<id> and stops; wrkload.py ends
-- wrk (SIGINT) once every thread has, so runs take as long as the work, not `-d`.
-- done() prints one line "E2E_WRK_RESULT {json}": answers per kind and status, problem
-- outcomes per kind (the first "outcome" of each report), a few unexpected answers, and
-- wrk's own summary and latency.

local spec = dofile(assert(os.getenv("E2E_WRK_SPEC"), "E2E_WRK_SPEC is not set"))

-- ------------------------------------------------------------------ main thread
local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

-- ------------------------------------------------------------------ wrk threads
-- Flat tables ("kind|status" -> n) so that thread:get copies them safely.
counts = {}
outcomes = {}
samples = {}
sent = 0
answered = 0
unmatched = 0

local prepared = {}
local fifo, fifo_head, fifo_tail = {}, 1, 0
local pos = 0
local n_samples = 0

-- wrk calls request() once in thread 0's state before any thread runs, to check that it
-- gives a parsable request (script_verify_request): that call is not a request sent.
local verifying = false

function init(args)
  pos = (id * 7) % #spec.pattern
  verifying = (id == 0)
  for i, kind in ipairs(spec.kinds) do
    if not kind.template then
      prepared[i] = wrk.format(spec.method or "POST", kind.path or spec.path, kind.headers, kind.body)
    end
  end
end

function request()
  if verifying then
    verifying = false
    local i = spec.pattern[pos % #spec.pattern + 1]
    local kind = spec.kinds[i]
    return prepared[i] or wrk.format(spec.method or "POST", kind.path or spec.path, kind.headers, kind.body)
  end
  pos = pos % #spec.pattern + 1
  local i = spec.pattern[pos]
  local kind = spec.kinds[i]
  fifo_tail = fifo_tail + 1
  fifo[fifo_tail] = i
  sent = sent + 1
  if kind.template then
    local occ = string.format("%04x%012x", id, sent)
    local body = kind.body:gsub("@OCC@", occ)
    return wrk.format(spec.method or "POST", kind.path or spec.path, kind.headers, body)
  end
  return prepared[i]
end

local function bump(t, key)
  t[key] = (t[key] or 0) + 1
end

function response(status, headers, body)
  answered = answered + 1
  local name = "?"
  if fifo_head <= fifo_tail then
    name = spec.kinds[fifo[fifo_head]].name
    fifo[fifo_head] = nil
    fifo_head = fifo_head + 1
  else
    unmatched = unmatched + 1
  end
  bump(counts, name .. "|" .. status)
  local outcome = body and body:match('"outcome":%s*"([%w_]+)"') or "-"
  bump(outcomes, name .. "|" .. outcome)
  local expected = spec.expect and spec.expect[name]
  if expected and expected ~= status and n_samples < 5 then
    n_samples = n_samples + 1
    samples[name .. "|" .. status .. "|" .. id .. "|" .. n_samples] = string.sub(body or "", 1, 1500)
  end
  if spec.quota and answered >= spec.quota then
    local f = io.open(spec.done_dir .. "/" .. id, "w")
    if f then f:close() end
    wrk.thread:stop()
  end
end

-- ------------------------------------------------------------------ summary
local function encode(v)
  local t = type(v)
  if t == "number" then
    if v ~= v or v == math.huge or v == -math.huge then return "null" end
    return string.format("%.17g", v)
  elseif t == "boolean" then
    return tostring(v)
  elseif t == "string" then
    return '"' .. v:gsub('[%c"\\]', function(c)
      return string.format("\\u%04x", string.byte(c))
    end) .. '"'
  elseif t == "table" then
    local parts = {}
    for k, x in pairs(v) do
      table.insert(parts, encode(tostring(k)) .. ":" .. encode(x))
    end
    return "{" .. table.concat(parts, ",") .. "}"
  end
  return "null"
end

local function merge(into, from)
  for k, n in pairs(from or {}) do
    into[k] = (into[k] or 0) + n
  end
end

function done(summary, latency, requests)
  local result = {
    counts = {}, outcomes = {}, samples = {}, sent = 0, answered = 0, unmatched = 0,
    threads = #threads,
    duration_s = summary.duration / 1e6,
    requests = summary.requests,
    errors = summary.errors,
    latency_ms = {
      p50 = latency:percentile(50) / 1000,
      p90 = latency:percentile(90) / 1000,
      p99 = latency:percentile(99) / 1000,
      max = latency.max / 1000,
      mean = latency.mean / 1000,
    },
  }
  for _, thread in ipairs(threads) do
    merge(result.counts, thread:get("counts"))
    merge(result.outcomes, thread:get("outcomes"))
    for k, body in pairs(thread:get("samples") or {}) do
      result.samples[k] = body
    end
    result.sent = result.sent + (thread:get("sent") or 0)
    result.answered = result.answered + (thread:get("answered") or 0)
    result.unmatched = result.unmatched + (thread:get("unmatched") or 0)
  end
  io.write("E2E_WRK_RESULT " .. encode(result) .. "\n")
end
