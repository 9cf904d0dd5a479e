#!/usr/bin/env python3
"""requests.py URL N [ALERTNAME [VARY]]: send N webhook POSTs one after another on one
keep-alive connection (Bearer $BENCH_TOKEN), each a new occurrence unless VARY=0.
Used by benches/run to drive a host under callgrind for a fixed number of requests.
Exits non-zero if any answer is not 2xx."""
import http.client
import json
import os
import sys
import urllib.parse

url = urllib.parse.urlsplit(sys.argv[1])
n = int(sys.argv[2])
alertname = sys.argv[3] if len(sys.argv) > 3 else "cpu_usage"
vary = (sys.argv[4] if len(sys.argv) > 4 else "1") != "0"
token = os.environ.get("BENCH_TOKEN", "bench-token")
c = http.client.HTTPConnection(url.hostname, url.port, timeout=600)
bad = 0
for i in range(n):
    fp = f"cg{os.getpid():06x}{i:08x}" if vary else "cgfixed"
    body = json.dumps({"version": "4", "status": "firing", "receiver": "remediator",
                       "alerts": [{"status": "firing",
                                   "labels": {"alertname": alertname, "service": "carts"},
                                   "annotations": {"summary": "CPU usage high on carts"},
                                   "startsAt": "2026-11-26T14:02:06.305Z", "fingerprint": fp}]})
    c.request("POST", url.path or "/", body=body,
              headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    r = c.getresponse()
    r.read()
    bad += not 200 <= r.status < 300
print(f"requests.py: {n} requests, {bad} not 2xx")
sys.exit(1 if bad else 0)
