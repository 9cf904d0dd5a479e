#!/usr/bin/env python3
"""Two replicas on one Redis (issue #7): the REAL component, served by two remediator-host
processes whose key-value store `default` is one real redis-server (a Spin runtime config,
`type = "redis"`), gets 50 concurrent identical Alertmanager deliveries from wrk, split
across both processes. Exactly one of them may act:

* scale: alert `cpu_usage` (rule: scale +1) -> a scale receiver gets exactly one request;
* flag:  alert "Failure rate increase" (rule: turn a flag off) -> Unleash logs exactly one
  `feature-environment-disabled` event for the flag, and the flag is off;
* and in both: the two replicas' GET /metrics show the same counters (kept in the shared
  Redis), grown by exactly the blast's deliveries by code, its problems by outcome, and the
  one action.

So that nothing else on the machine can blur the counts, the replicas get their own scale
receiver (scale_receiver.py on a free port) and rules naming a flag of this run's own
(a copy of spin.toml beside rules in remediator's format, the real component via --wasm).

Both scenarios run twice: with the host's default strict compare-and-swap, and with
`--redis-cas spin` (a lost swap reported as a success, as Spin's Redis store does).

Run it through `tests/e2e/redis_replicas` (lock, install, build, peers). Needs the peers'
$E2E_RUN_DIR/env (Unleash and the scale receiver up), redis-server and wrk. Python stdlib.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone

from harness import Procs, free_port, load_env
from harness import http as http3

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
RUN_DIR = os.environ.get("E2E_RUN_DIR") or os.path.join(ROOT, ".run")
HOST_BIN = os.environ.get("E2E_HOST_BIN") or os.path.join(
    ROOT, "tests/host/target/release/remediator-host")
MANIFEST = os.environ.get("E2E_MANIFEST") or os.path.join(ROOT, "spin.toml")
WASM = os.path.join(ROOT, "target/wasm32-wasip2/release/remediator_component.wasm")
FLAG = "RedisReplicas" + uuid.uuid4().hex[:8]
RULES = """apiVersion: remediator/v1
defaults: {project: default, environment: production}
rules:
  - name: scale
    match: {title_prefix: cpu_usage}
    actions: [{scale: "+1"}]
  - name: kill switch
    match: {title_prefix: Failure rate increase}
    actions: [{flag: %s, state: "off"}]
""" % FLAG
N = 50


def log(msg):
    print("[redis_replicas %s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


def http(method, url, body=None, headers=None, timeout=15):
    """(status, parsed JSON or text): harness.http without the elapsed time."""
    return http3(method, url, body, headers, timeout)[:2]


def start_redis(procs):
    port = free_port()
    d = tempfile.mkdtemp(prefix="redis-replicas-")
    procs.start("redis", ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                          "--save", "", "--appendonly", "no", "--dir", d])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), 1) as s:
                s.sendall(b"PING\r\n")
                if s.recv(64).startswith(b"+PONG"):
                    return port, d
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit("redis-server did not answer on %d" % port)


def app_dir():
    """spin.toml as it is, beside this run's rules."""
    d = tempfile.mkdtemp(prefix="redis-replicas-app-")
    shutil.copy(MANIFEST, os.path.join(d, "spin.toml"))
    with open(os.path.join(d, "remediation.yaml"), "w") as f:
        f.write(RULES)
    return d


def start_receiver(procs):
    port = free_port()
    procs.start("receiver", [sys.executable, "-u", os.path.join(HERE, "scale_receiver.py"),
                             "--listen", "127.0.0.1:%d" % port])
    url = "http://127.0.0.1:%d" % port
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if http("GET", url + "/_health", timeout=1)[0] == 200:
                return url
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit("the scale receiver did not start")


def start_replicas(procs, env, rc_path, extra, app, receiver):
    """Two hosts serving the real component; returns their origins."""
    vars_ = {
        "unleash_url": env["E2E_UNLEASH_URL"], "unleash_token": env["E2E_UNLEASH_ADMIN_TOKEN"],
        "unleash_project": "default", "unleash_environment": "production",
        "scale_url": receiver, "scale_path": "/scale",
        "scale_token": env["E2E_SCALE_TOKEN"], "webhook_token": env["E2E_WEBHOOK_TOKEN"],
        "rules_file": "/remediation.yaml",
    }
    penv = {k: v for k, v in os.environ.items() if not k.startswith("SPIN_VARIABLE_")}
    penv.update({"SPIN_VARIABLE_" + k.upper(): v for k, v in vars_.items()})
    origins, started = [], []
    for name in ("a", "b"):
        p = procs.start("host-" + name, [HOST_BIN, "serve", "--manifest",
                                         os.path.join(app, "spin.toml"), "--wasm", WASM,
                                         "--listen", "127.0.0.1:0",
                                         "--runtime-config-file", rc_path] + extra,
                        env=penv, stdout=subprocess.PIPE)
        started.append(p)
    for p in started:
        line = p.stdout.readline().decode()
        m = re.match(r"listening on (http://\S+)", line)
        if not m:
            raise SystemExit("a replica did not start (see %s/logs/redis-replicas-host-*.log)"
                             % RUN_DIR)
        origins.append(m.group(1))
        status, body = http("GET", m.group(1) + "/healthz")
        if status != 200:
            raise SystemExit("replica %s unhealthy: %s %s" % (m.group(1), status, body))
    return origins, started


WRK_LUA = r"""
-- One thread per replica; each thread's connections send one delivery each, then idle
-- GETs of /healthz until every delivery of the thread has been answered.
local origins = { %(origins)s }
local per_thread = %(per_thread)d
local n, threads = 0, {}
function setup(thread)
  n = n + 1
  local host, port = origins[n]:match("^http://([^:]+):(%%d+)$")
  thread.addr = wrk.lookup(host, port)[1]
  thread:set("id", n)
  table.insert(threads, thread)
end
local body = %(body)s
local headers = { ["Content-Type"] = "application/json",
                  ["Authorization"] = "Bearer %(token)s",
                  ["User-Agent"] = "Alertmanager/0.25.0" }
function init(args)
  -- wrk calls request() once on the first thread's state to verify the script: not sent.
  sent = (id == 1) and -1 or 0
  got, results = 0, {}
end
function request()
  sent = sent + 1
  if sent <= per_thread then return wrk.format("POST", "/alertmanager", headers, body) end
  return wrk.format("GET", "/healthz")
end
function response(status, hdrs, b)
  local outcome = b:match('"problems".-"outcome"%%s*:%%s*"([%%w_]+)"')
  if outcome then
    got = got + 1
    local k = status .. ":" .. outcome
    results[k] = (results[k] or 0) + 1
    if got == per_thread then
      -- All of this thread's deliveries are answered: tell the runner, which stops wrk
      -- (wrk itself always runs for its whole -d).
      local f = io.open(%(marker)s .. id, "w")
      f:close()
      wrk.thread:stop()
    end
  end
end
function done(summary, latency, requests)
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("results")) do
      io.write(string.format("RESULT %%d %%s %%d\n", t:get("id"), k, v))
    end
  end
end
"""


def lua_string(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def delivery(alertname, summary, case):
    fp = uuid.uuid4().hex[:16]
    starts = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    labels = {"alertname": alertname, "e2e_case": case, "severity": "critical"}
    return {
        "receiver": "remediator", "status": "firing",
        "alerts": [{"status": "firing", "labels": labels, "annotations": {"summary": summary},
                    "startsAt": starts, "endsAt": "0001-01-01T00:00:00Z",
                    "generatorURL": "http://127.0.0.1:9090/graph", "fingerprint": fp}],
        "groupLabels": {"alertname": alertname}, "commonLabels": labels,
        "commonAnnotations": {"summary": summary}, "externalURL": "http://127.0.0.1:9093",
        "version": "4", "groupKey": "{}:{alertname=%s}" % json.dumps(alertname),
        "truncatedAlerts": 0,
    }


def blast(origins, body, token):
    """N concurrent identical deliveries with wrk, N/2 to each replica; {status:outcome: n}."""
    tmp = tempfile.mkdtemp(prefix="redis-replicas-wrk-")
    marker = os.path.join(tmp, "done.")
    script = WRK_LUA % {
        "origins": ", ".join(lua_string(o) for o in origins), "per_thread": N // 2,
        "body": lua_string(json.dumps(body)), "token": token, "marker": lua_string(marker),
    }
    lua = os.path.join(tmp, "deliveries.lua")
    with open(lua, "w") as f:
        f.write(script)
    try:
        t0 = time.monotonic()
        wrk = subprocess.Popen(["wrk", "-t2", "-c%d" % N, "-d60s", "--timeout", "30s",
                                "-s", lua, origins[0]], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        while wrk.poll() is None and not all(os.path.exists(marker + t) for t in "12"):
            time.sleep(0.05)
        took = time.monotonic() - t0
        if wrk.poll() is None:
            wrk.send_signal(signal.SIGINT)  # wrk then prints its summary and runs done()
        stdout, stderr = wrk.communicate(timeout=30)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    results, per_replica = {}, {}
    for line in stdout.splitlines():
        if line.startswith("RESULT "):
            _, tid, key, count = line.split()
            results[key] = results.get(key, 0) + int(count)
            per_replica[tid] = per_replica.get(tid, 0) + int(count)
    if sum(results.values()) != N:
        raise AssertionError("wrk got %d answered deliveries, want %d:\n%s\n%s"
                             % (sum(results.values()), N, stdout, stderr))
    return results, per_replica, took


def check_outcomes(results):
    acted = sum(v for k, v in results.items() if k.endswith(":acted"))
    others = {k: v for k, v in results.items() if not k.endswith(":acted")}
    bad = {k: v for k, v in others.items()
           if k not in ("200:already_handled", "503:in_progress")}
    assert acted == 1, "want exactly one 'acted' delivery, got %s" % results
    assert not bad, "unexpected outcomes %s" % results


def counters(origin):
    """The counter lines of a replica's GET /metrics (open: no metrics_token here)."""
    status, text = http("GET", origin + "/metrics")
    assert status == 200, (status, text)
    out = {}
    for line in text.splitlines():
        if line.startswith("remediator_") and line.split("{")[0].endswith("_total"):
            series, value = line.rsplit(" ", 1)
            out[series] = float(value)
    return out


def check_metrics(origins, before, results, kind):
    """Both replicas expose the same counters (kept in the shared Redis), grown by exactly
    what the blast's deliveries were answered: by code, by outcome, and one action."""
    want = dict(before)

    def add(key, n):
        want[key] = want.get(key, 0) + n
    for key, n in results.items():
        code, outcome = key.split(":", 1)
        add('remediator_deliveries_total{route="/alertmanager",code="%s"}' % code, n)
        add('remediator_problems_total{outcome="%s"}' % outcome, n)
    add('remediator_actions_total{kind="%s",result="done"}' % kind, 1)
    for origin in origins:
        got = counters(origin)
        assert got == want, "%s/metrics:\n got  %s\n want %s" % (origin, got, want)


def scenario_scale(env, origins, mode, receiver):
    case = "redis-replicas-scale-%s-%s" % (mode, uuid.uuid4().hex[:6])
    _, before = http("GET", receiver + "/_requests")
    metrics_before = counters(origins[0])
    results, per, took = blast(origins, delivery("cpu_usage", "cpu_usage", case),
                               env["E2E_WEBHOOK_TOKEN"])
    time.sleep(0.5)
    _, after = http("GET", receiver + "/_requests")
    new = [r for r in after[len(before):] if r.get("path", "").startswith("/scale")]
    log("%-5s scale: %s across replicas %s in %.1fs; scale receiver got %d request(s)"
        % (mode, results, per, took, len(new)))
    check_outcomes(results)
    assert len(new) == 1, "want exactly one scale request, got %d: %s" % (len(new), new)
    check_metrics(origins, metrics_before, results, "scaling")


def unleash(env, method, path, body=None):
    return http(method, env["E2E_UNLEASH_URL"] + path, body,
                {"Authorization": env["E2E_UNLEASH_ADMIN_TOKEN"]})


def scenario_flag(env, origins, mode, receiver):
    flag = FLAG
    case = "redis-replicas-flag-%s-%s" % (mode, uuid.uuid4().hex[:6])
    status, _ = unleash(env, "POST", "/api/admin/projects/default/features",
                        {"name": flag, "type": "kill-switch"})
    assert status in (201, 409), status
    status, _ = unleash(env, "POST", "/api/admin/projects/default/features/%s/environments/"
                        "production/on" % flag)
    assert status == 200, status
    _, ev = unleash(env, "GET", "/api/admin/events/%s" % flag)
    last_id = max([e["id"] for e in ev.get("events", [])] or [0])
    metrics_before = counters(origins[0])
    results, per, took = blast(
        origins, delivery("HighFailureRate", "Failure rate increase on carts", case),
        env["E2E_WEBHOOK_TOKEN"])
    time.sleep(0.5)
    _, ev = unleash(env, "GET", "/api/admin/events/%s" % flag)
    disabled = [e for e in ev.get("events", []) if e["id"] > last_id
                and e["type"] == "feature-environment-disabled"
                and e.get("environment") == "production"]
    _, feat = unleash(env, "GET", "/api/admin/projects/default/features/%s" % flag)
    enabled = [e["enabled"] for e in feat["environments"] if e["name"] == "production"]
    log("%-5s flag:  %s across replicas %s in %.1fs; Unleash logged %d "
        "feature-environment-disabled event(s)" % (mode, results, per, took, len(disabled)))
    check_outcomes(results)
    assert len(disabled) == 1, "want exactly one disable event, got %s" % disabled
    assert enabled == [False], enabled
    check_metrics(origins, metrics_before, results, "featuretoggle")


def main():
    for tool in ("redis-server", "wrk"):
        if not shutil.which(tool):
            raise SystemExit("%s is not installed (apt-get install %s)" % (tool, tool))
    env = load_env()
    os.makedirs(os.path.join(RUN_DIR, "logs"), exist_ok=True)
    procs = Procs(os.path.join(RUN_DIR, "logs"), prefix="redis-replicas-")
    failures = 0
    try:
        port, _ = start_redis(procs)
        receiver = start_receiver(procs)
        app = app_dir()
        rc = os.path.join(RUN_DIR, "redis-replicas-runtime-config.toml")
        with open(rc, "w") as f:
            f.write('[key_value_store.default]\ntype = "redis"\nurl = "redis://127.0.0.1:%d"\n'
                    % port)
        log("redis-server on 127.0.0.1:%d" % port)
        for mode, extra in (("strict", []), ("spin", ["--redis-cas", "spin"])):
            origins, started = start_replicas(procs, env, rc, extra, app, receiver)
            log("%-5s replicas %s (--runtime-config-file %s)" % (mode, " ".join(origins), rc))
            for scenario in (scenario_scale, scenario_flag):
                try:
                    scenario(env, origins, mode, receiver)
                except AssertionError as e:
                    failures += 1
                    log("FAIL %s (%s): %s" % (scenario.__name__, mode, e))
            procs.stop(started)
    finally:
        procs.stop()
    log("PASS" if failures == 0 else "FAIL: %d scenario(s)" % failures)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
