#!/usr/bin/env python3
"""Cold start of a component on the test host: from process start to the first
successful response, then the next requests (warm, each still a fresh instance).

    coldstart.py --runs N --label NAME -- HOST serve --manifest M --listen 127.0.0.1:0 ...

Prints one line: COLDSTART {json} with, per run, the time to `listening`, the
time to the first 2xx response, and the median latency of the next --warm requests
(default 20); and their medians over the runs. The request is a one-alert Alertmanager webhook (POST /alertmanager,
Bearer $BENCH_TOKEN) unless --path says otherwise; with --method GET, a GET of --path with no
body (remediator's instance probe, GET /livez); any 2xx counts.

Besides, from the host's per-request log line on stderr (`... kv_writes=N store_us=S
instantiate_us=I handle_us=H`), what the host measured inside each request, in
microseconds: `*_instantiate_us` is `instantiate_async` alone (a fresh instance of the
pre-linked component), `*_store_us` the Store with its state, `*_handle_us` the guest
call up to its response head; `first_*` for the first request, `warm_*` the median
over the warm ones.
"""
import argparse
import http.client
import json
import os
import signal
import statistics
import subprocess
import tempfile
import time

import hostlog

PARTS = ("store_us", "instantiate_us", "handle_us")

BODY = json.dumps({
    "version": "4", "status": "firing", "receiver": "remediator", "truncatedAlerts": 0,
    "alerts": [{"status": "firing", "labels": {"alertname": "NoRuleForColdStart"},
                "startsAt": "2026-11-26T14:02:06.305Z", "fingerprint": "cold"}],
}).encode()


def request(port, path, token, method="POST"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        if method == "POST":
            c.request("POST", path, body=BODY, headers={
                "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        else:
            c.request(method, path)
        r = c.getresponse()
        r.read()
        return r.status
    finally:
        c.close()


def host_timings(err_path, path, n):
    """The host's lines (hostlog.requests) of this run's n requests, in order."""
    got = [r for r in hostlog.requests(err_path) if r["path"] == path]
    if len(got) != n:
        raise SystemExit(f"expected {n} request lines with timings from the host, found {len(got)} "
                         f"in its stderr (an older remediator-host?)")
    return got


def one_run(cmd, path, token, warm, method):
    err = tempfile.NamedTemporaryFile(prefix="coldstart-", suffix=".err")
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        port = None
        for line in p.stdout:
            if line.startswith("listening on http://"):
                port = int(line.strip().rsplit(":", 1)[1])
                break
        if port is None:
            raise SystemExit(f"host exited before listening: {cmd}")
        t_listen = time.perf_counter() - t0
        status = request(port, path, token, method)
        t_first = time.perf_counter() - t0
        if not 200 <= status < 300:
            raise SystemExit(f"first request answered {status}")
        lat = []
        for _ in range(warm):
            t = time.perf_counter()
            status = request(port, path, token, method)
            lat.append(time.perf_counter() - t)
            if not 200 <= status < 300:
                raise SystemExit(f"a warm request answered {status}")
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    # The host has exited, so its stderr is complete.
    timings = host_timings(err.name, path, 1 + warm)
    err.close()
    run = {"listen_ms": t_listen * 1e3, "first_ok_ms": t_first * 1e3,
           "first_request_ms": (t_first - t_listen) * 1e3,
           "warm_ms": statistics.median(lat) * 1e3 if lat else None}
    for part in PARTS:
        run["first_" + part] = timings[0][part]
        run["warm_" + part] = statistics.median(t[part] for t in timings[1:]) if warm else None
    return run


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--warm", type=int, default=20)
    ap.add_argument("--label", default="component")
    ap.add_argument("--path", default="/alertmanager")
    ap.add_argument("--method", default="POST", choices=("POST", "GET"))
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd
    token = os.environ.get("BENCH_TOKEN", "bench-token")
    runs = [one_run(cmd, a.path, token, a.warm, a.method) for _ in range(a.runs)]
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0] if runs[0][k] is not None}
    print("COLDSTART " + json.dumps({"label": a.label, "runs": len(runs), "median": med,
                                     "min_first_ok_ms": min(r["first_ok_ms"] for r in runs),
                                     "max_first_ok_ms": max(r["first_ok_ms"] for r in runs),
                                     "all": runs}), flush=True)


if __name__ == "__main__":
    main()
