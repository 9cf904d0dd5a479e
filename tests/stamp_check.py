#!/usr/bin/env python3
"""stamp_check.py [WASM]: the bundled rules file's stamp (docs/rules-cache.md) on the real
test host and file system: serves the component with a one-rule file, edits the host's
staged copy of it, and checks which rule each webhook gets. Exits non-zero on any surprise.

Expected: a young file is read (no stamp recorded); settled (2 s), its stamp is recorded
and stands in; a same-size write in place is seen at the next request; a same-size write
in place with its mtime set back is not seen on wasmtime (the documented blind spot,
bounded by STAMP_TRUST_MS); a new file renamed over it, same size and mtime, is seen.

Needs the test host (tests/host/target/release/remediator-host), benches/receiver built,
and the component (default target/wasm32-wasip2/release/remediator_component.wasm)."""
import glob
import http.client
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOST = os.path.join(ROOT, "tests/host/target/release/remediator-host")
RECEIVER = os.path.join(ROOT, "benches/receiver/target/release/bench-receiver")
WASM = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    ROOT, "target/wasm32-wasip2/release/remediator_component.wasm")
TOKEN = uuid.uuid4().hex[:12]
V1 = 'rules:\n  - name: aaaa-%s\n    match: {title: cpu_usage}\n    actions: [{scale: "+1"}]\n' % TOKEN
V2 = V1.replace("aaaa", "bbbb")
SETTLE_S = 2.5


def start(args, procs):
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    procs.append(p)
    for _ in range(600):
        m = re.match(r"listening on http://(\S+)", p.stdout.readline())
        if m:
            return m.group(1)
    raise SystemExit("%s never listened" % args[0])


def main():
    work = tempfile.mkdtemp(prefix="stamp-check-")
    procs = []
    failures = []
    try:
        with open(os.path.join(work, "remediation.yaml"), "w") as f:
            f.write(V1)
        shutil.copy(os.path.join(ROOT, "spin.toml"), work)
        kv = os.path.join(work, "kv.sqlite")
        recv = start([RECEIVER, "127.0.0.1:0"], procs)
        addr = start([HOST, "serve", "--manifest", os.path.join(work, "spin.toml"),
                      "--listen", "127.0.0.1:0", "--wasm", WASM, "--kv-path", kv,
                      "--variable", "webhook_token=stamp-check",
                      "--variable", "scale_url=http://" + recv,
                      "--variable", "unleash_url=http://" + recv], procs)
        staged = [f for f in glob.glob(os.path.join(
            tempfile.gettempdir(), "remediator-host-*/files/remediation.yaml"))
            if open(f).read() == V1]
        if len(staged) != 1:
            raise SystemExit("staged rules file not found: %s" % staged)
        path = staged[0]
        host, port = addr.rsplit(":", 1)
        sent = [0]

        def rule():
            sent[0] += 1
            body = json.dumps({"version": "4", "status": "firing", "receiver": "r", "alerts": [
                {"status": "firing", "labels": {"alertname": "cpu_usage"}, "annotations": {},
                 "startsAt": "2026-11-26T14:02:06.305Z",
                 "fingerprint": "stamp-%s-%d" % (TOKEN, sent[0])}]})
            c = http.client.HTTPConnection(host, int(port), timeout=60)
            c.request("POST", "/alertmanager", body=body, headers={
                "Authorization": "Bearer stamp-check", "Content-Type": "application/json"})
            return json.loads(c.getresponse().read())["problems"][0]["rule"].split("-")[0]

        def stamps():
            db = sqlite3.connect(kv)
            n = 0
            for (t,) in db.execute("select name from sqlite_master where type='table'"):
                for row in db.execute("select * from %s" % t):
                    n += sum(isinstance(v, str) and v.startswith("rules/stamp/") for v in row)
            db.close()
            return n

        def expect(what, got, *wants):
            print("%-60s %s" % (what, got))
            if got not in wants:
                failures.append("%s: got %s, want %s" % (what, got, " or ".join(map(str, wants))))

        def in_place(text, mtime_ns=None):
            st = os.stat(path)
            with open(path, "r+") as f:
                f.write(text)
                f.truncate()
            if mtime_ns is not None:
                os.utime(path, ns=(st.st_atime_ns, mtime_ns))

        expect("young file: rule, stamps", (rule(), stamps()), ("aaaa", 0))
        time.sleep(SETTLE_S)  # the file settles: a condition on time, not a negative check
        expect("settled: rules, stamps", (rule(), rule(), stamps()), ("aaaa", "aaaa", 1))
        in_place(V2)
        expect("same-size write in place, at once", rule(), "bbbb")
        time.sleep(SETTLE_S)
        expect("settled: rules, stamps", (rule(), rule(), stamps()), ("bbbb", "bbbb", 2))
        old = os.stat(path).st_mtime_ns
        in_place(V1, old)
        # wasmtime's status-change time is the birth time: not seen (for up to
        # STAMP_TRUST_MS); a host giving ctime would see it.
        expect("same-size write in place, mtime set back (blind spot)", rule(), "bbbb", "aaaa")
        tmp = path + ".new"
        with open(tmp, "w") as f:
            f.write(V1)
        os.utime(tmp, ns=(old, old))
        os.rename(tmp, path)
        expect("new file renamed over it, same size and mtime", rule(), "aaaa")
    finally:
        for p in procs:
            p.terminate()
            p.wait()
        shutil.rmtree(work, ignore_errors=True)
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
        sys.exit(1)
    print("stamp_check: OK")


main()
