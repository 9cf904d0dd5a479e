#!/usr/bin/env python3
"""writes.py --host HOST --receiver URL --out DIR [--rounds N] [--smoke] [--wasm W]: durable key-value
writes per delivery, by kind of delivery (issue 13).

Under Spin every key-value write (set, delete, compare-and-swap, increment) is its own
durable SQLite transaction, and so is a batch (`set-many`, `delete-many`: a delivery's
closing records with its audit batch, the values they replaced), so their number per
delivery sets what a delivery costs. A host without the batch interface counts a
batch's keys one by one. The
test host counts them per request and prints the count on the request's log line
(`remediator-host: POST /alertmanager -> 200 in 3 ms, kv_writes=1 ...`). This starts the
host three times (no blast-radius budget; `max_changes` "1000 per 1h"; `count_unmatched`
on, so that deliveries no rule matched are counted), sends each kind of
delivery N times one after another (after one warm-up round: the first delivery of a
kind also creates keys made once), and reads each request's count:

  no match            a firing alert no rule matches (a new occurrence each time)
  no match, resolved  its resolve
  acting (flag)       the tutorial's "Failure rate increase" rule: a flag turned off
  resolve (revert)    that occurrence resolved: the flag turned back on
  acting (scale)      the tutorial's cpu_usage rule: the scaling webhook called
  re-send             a firing occurrence already handled, sent again

URL is benches/receiver (Unleash and the scaling webhook). Writes DIR/writes.json and
DIR/writes.md; exits non-zero if a request failed or its count never appeared.
"""
import argparse
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse

import hostlog

TOKEN = os.environ.get("BENCH_TOKEN", "bench-token")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

KINDS = [
    ("no_match", "no match"),
    ("no_match_resolved", "no match, resolved"),
    ("act_flag", "acting (flag)"),
    ("resolve_flag", "resolve (revert)"),
    ("act_scale", "acting (scale)"),
    ("resend", "re-send (already handled)"),
]


def body(status, alertname, summary, fp):
    return json.dumps({
        "version": "4", "status": status, "receiver": "remediator",
        "alerts": [{"status": status,
                    "labels": {"alertname": alertname, "service": "carts", "namespace": "shop"},
                    "annotations": {"summary": summary},
                    "startsAt": "2026-11-26T14:02:06.305Z",
                    "endsAt": "2026-11-26T14:12:06.305Z" if status == "resolved" else "0001-01-01T00:00:00Z",
                    "fingerprint": fp}]}).encode()


class Host:
    def __init__(self, host, receiver, label, extra_vars, workdir, wasm=None):
        self.err_path = os.path.join(workdir, f"writes-{label}.err")
        self.out_path = os.path.join(workdir, f"writes-{label}.out")
        args = [host, "serve", "--manifest", os.path.join(ROOT, "spin.toml"),
                "--listen", "127.0.0.1:0", "--kv-path", os.path.join(workdir, f"kv-{label}.sqlite"),
                "--variable", f"webhook_token={TOKEN}", "--variable", f"scale_url={receiver}",
                "--variable", f"unleash_url={receiver}"]
        for v in extra_vars:
            args += ["--variable", v]
        if wasm:
            args += ["--wasm", wasm]
        self.proc = subprocess.Popen(args, stdout=open(self.out_path, "w"), stderr=open(self.err_path, "w"))
        deadline = time.time() + 600  # the host compiles the component first
        self.url = None
        while time.time() < deadline and self.url is None:
            if self.proc.poll() is not None:
                raise SystemExit(f"writes.py: host exited: {open(self.err_path).read()[-2000:]}")
            m = re.search(r"^listening on (\S+)", open(self.out_path).read(), re.M)
            if m:
                self.url = urllib.parse.urlsplit(m.group(1))
            else:
                time.sleep(0.1)
        if self.url is None:
            raise SystemExit("writes.py: host never listened")
        self.conn = http.client.HTTPConnection(self.url.hostname, self.url.port, timeout=60)

    def lines(self):
        return [r for r in hostlog.requests(self.err_path) if r["method"] == "POST"]

    def post(self, payload):
        """The answer's outcome and the request's key-value writes."""
        before = len(self.lines())
        self.conn.request("POST", "/alertmanager", body=payload,
                          headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
        r = self.conn.getresponse()
        answer = r.read()
        if not 200 <= r.status < 300:
            raise SystemExit(f"writes.py: answer {r.status}: {answer[:500]!r}")
        # The host prints the line before it sends the response; allow for buffering.
        for _ in range(200):
            lines = self.lines()
            if len(lines) > before:
                outcome = json.loads(answer)["problems"][0]["outcome"]
                return outcome, lines[before]["kv_writes"]
            time.sleep(0.01)
        raise SystemExit("writes.py: the request's log line never appeared")

    def stop(self):
        self.conn.close()
        self.proc.terminate()
        self.proc.wait(timeout=30)


def measure(host, rounds):
    """{kind: [writes per round]} and the outcomes seen."""
    got = {k: [] for k, _ in KINDS}
    outcomes = {k: set() for k, _ in KINDS}
    tag = f"{os.getpid():x}{int(time.time() * 1000) % 10**8:x}"
    # Round 0 warms up: it also creates keys made once (a metrics series, the rule's and
    # the flag's lock words, the budget's cell), which later deliveries only update.
    for i in range(rounds + 1):
        fp = lambda kind: f"w{tag}{kind}{i:04d}"
        steps = [
            ("no_match", body("firing", "NoRuleForThis", "Nothing to see", fp("n"))),
            ("no_match_resolved", body("resolved", "NoRuleForThis", "Nothing to see", fp("n"))),
            ("act_flag", body("firing", "HighFailureRate", "Failure rate increase on carts", fp("f"))),
            ("resend", body("firing", "HighFailureRate", "Failure rate increase on carts", fp("f"))),
            ("resolve_flag", body("resolved", "HighFailureRate", "Failure rate increase on carts", fp("f"))),
            ("act_scale", body("firing", "cpu_usage", "CPU usage high on carts", fp("s"))),
        ]
        for kind, payload in steps:
            outcome, writes = host.post(payload)
            if i > 0:
                got[kind].append(writes)
            outcomes[kind].add(outcome)
    return got, {k: sorted(v) for k, v in outcomes.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", required=True)
    ap.add_argument("--receiver", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--smoke", action="store_true", help="2 rounds")
    ap.add_argument("--wasm", help="another build of the component (e.g. before a change)")
    args = ap.parse_args()
    rounds = 2 if args.smoke else args.rounds
    result = {"rounds": rounds, "budgets": {}}
    with tempfile.TemporaryDirectory(prefix="remediator-writes.") as tmp:
        for label, extra in (("off", []), ("on", ["max_changes=1000 per 1h"]),
                             ("counted", ["count_unmatched=true"])):
            host = Host(args.host, args.receiver, label, extra, tmp, args.wasm)
            try:
                got, outcomes = measure(host, rounds)
            finally:
                host.stop()
            for name in (f"writes-{label}.err",):
                with open(os.path.join(tmp, name), errors="replace") as src, \
                        open(os.path.join(args.out, name), "w") as dst:
                    dst.write(src.read())
            result["budgets"][label] = {
                k: {"writes": got[k], "median": statistics.median(got[k]), "outcomes": outcomes[k]}
                for k, _ in KINDS}
    # What each kind must have done, or the counts describe something else.
    want = {"no_match": "no_matching_rule", "act_flag": "acted", "act_scale": "acted",
            "resend": "already_handled", "resolve_flag": "reverted"}
    for label, kinds in result["budgets"].items():
        for k, outcome in want.items():
            if kinds[k]["outcomes"] != [outcome]:
                raise SystemExit(f"writes.py: {k} (budget {label}) answered {kinds[k]['outcomes']}, not {outcome}")
    md = ["## Durable key-value writes per delivery (test host's count; median of "
          f"{rounds} rounds after a warm-up round, each value in brackets)", "",
          "| delivery | no budget | with `max_changes` | with `count_unmatched` |", "|---|---:|---:|---:|"]
    for k, label in KINDS:
        cells = []
        for b in ("off", "on", "counted"):
            r = result["budgets"][b][k]
            cells.append(f"{r['median']:g} ({', '.join(map(str, r['writes']))})")
        md.append(f"| {label} | " + " | ".join(cells) + " |")
    open(os.path.join(args.out, "writes.md"), "w").write("\n".join(md) + "\n")
    json.dump(result, open(os.path.join(args.out, "writes.json"), "w"), indent=1)
    print("\n".join(md))


if __name__ == "__main__":
    sys.exit(main())
