"""Load test (issue #6): at least 10,000 webhooks from wrk against the component.

    python3 -m unittest -v load        (after tests/e2e/peers up; tests/e2e/run runs it last)

wrk (wrk_mix.lua, one connection per thread) cycles through a mix of bodies, counted on the
Lua side per kind and status:
  new      a valid E2ELoadScale alert with a distinct occurrence per request -> scale +1 once each
  dup-a..d the same four occurrences over and over, each turning its own flag off once
  invalid  invalid JSON (400)
  unauth   a valid body with a wrong bearer (401)
The component serves fixtures/load.yaml. Afterwards: zero 5xx (indeed exactly the expected
status) per kind; one scale request per distinct occurrence and none twice; Unleash's event
log holds exactly one feature-environment-disabled event per dup flag and nothing else; the
audit shows its newest 2000 batches, all written during the load, with exactly one decision
per delivery, matching what was sent.
E2E_LOAD_REQUESTS (10000) and E2E_LOAD_THREADS (8) size it.
"""

import json
import os
import sys
import time
import unittest
from collections import Counter, defaultdict

import wrkload
from harness import ENV, am_webhook
from support import Case, setUpModule  # noqa: F401 (unittest's hook)

REQUESTS = int(os.environ.get("E2E_LOAD_REQUESTS", "10000"))
THREADS = int(os.environ.get("E2E_LOAD_THREADS", "8"))
AUDIT_KEEPS = 2000  # batches (deliveries); src/audit.rs MAX_BATCHES
DUPS = {"dup-a": "E2ELoadDupA", "dup-b": "E2ELoadDupB", "dup-c": "E2ELoadDupC", "dup-d": "E2ELoadDupD"}
# One cycle of 20 requests: 10 new, 4 dup (one of each), 3 invalid, 3 unauth.
PATTERN_NAMES = ["new", "dup-a", "new", "invalid", "new", "dup-b", "unauth", "new", "new", "dup-c",
                 "invalid", "new", "unauth", "new", "dup-d", "new", "invalid", "new", "unauth", "new"]


class Load(Case):
    maxDiff = None

    def audit(self, **query):
        qs = "&".join("%s=%s" % kv for kv in query.items())
        status, body, _ = self.get("/audit?" + qs)
        self.assertEqual(status, 200, body)
        return body["entries"]

    def test_load(self):
        self.assertEqual(REQUESTS % THREADS, 0, "E2E_LOAD_REQUESTS must be a multiple of E2E_LOAD_THREADS")
        for flag in DUPS.values():
            self.unleash.prepare(flag, production=True)
        self.component(rules_file="/fixtures/load.yaml")
        marker = self.unleash.last_event_id()
        started_ms = int(time.time() * 1000)
        tap_before = len(self.tap.requests())

        def body(alertname, fingerprint):
            b = am_webhook([self.alert(alertname, service="carts", namespace="load")])
            b["alerts"][0]["fingerprint"] = fingerprint
            return json.dumps(b)

        good, bad = self.json_headers(), dict(self.json_headers(), Authorization="Bearer not-the-token")
        kinds = [wrkload.Kind("new", body("E2ELoadScale", "@OCC@"), good, template=True, expect=200)]
        kinds += [wrkload.Kind(k, body(alertname, "d%015x" % i), good, expect=200)
                  for i, (k, alertname) in enumerate(DUPS.items())]
        kinds += [wrkload.Kind("invalid", '{"receiver": "remediator", "status": "firing", "alerts": [{',
                               good, expect=400),
                  wrkload.Kind("unauth", body("E2ELoadScale", "0badc0de0badc0de"), bad, expect=401)]
        index = {k.name: i for i, k in enumerate(kinds)}
        pattern = [index[n] for n in PATTERN_NAMES]
        quota = REQUESTS // THREADS
        # What each kind gets, given that thread t starts its cycle at offset (t * 7) % 20.
        sent = Counter()
        for t in range(THREADS):
            for j in range(quota):
                sent[PATTERN_NAMES[((t * 7) % len(pattern) + j) % len(pattern)]] += 1

        result = wrkload.run(ENV["E2E_COMPONENT_URL"], kinds, pattern, threads=THREADS, quota=quota,
                             max_seconds=600, timeout_s=30)
        tap_during = len(self.tap.requests()) - tap_before
        counts, outcomes = result["counts"], result["outcomes"]
        rate = result["answered"] / result["duration_s"]
        valid = sum(n for k, n in sent.items() if k in ("new",) + tuple(DUPS))
        five_xx = {k: sum(n for s, n in c.items() if s >= 500) for k, c in counts.items()}
        sys.stderr.write(
            "\n  load: %d requests (%d threads x %d) in %.1fs = %.0f req/s; latency p50 %.1f ms, "
            "p90 %.1f ms, p99 %.1f ms, max %.0f ms\n  statuses: %s\n  outcomes: %s\n  5xx: %s " % (
                result["answered"], THREADS, quota, result["duration_s"], rate, result["latency_ms"]["p50"],
                result["latency_ms"]["p90"], result["latency_ms"]["p99"], result["latency_ms"]["max"],
                json.dumps(counts, sort_keys=True), json.dumps(outcomes, sort_keys=True), five_xx))

        # ---- every answer, per kind, as expected (so: no 5xx for valid input)
        self.assertEqual((result["answered"], result["unmatched"]), (REQUESTS, 0), result["wrk_output"])
        self.assertEqual({k: v for k, v in result["errors"].items() if k != "status"},
                         {"connect": 0, "read": 0, "write": 0, "timeout": 0}, result["wrk_output"])
        self.assertEqual(five_xx, {k: 0 for k in counts}, result["samples"])
        expected = {k.name: {k.expect: sent[k.name]} for k in kinds}
        self.assertEqual(counts, expected, result["samples"])
        self.assertEqual(outcomes["new"], {"acted": sent["new"]}, result["samples"])
        for k in DUPS:
            self.assertEqual(outcomes[k], {"acted": 1, "already_handled": sent[k] - 1}, k)

        # ---- the scale receiver: one request per distinct occurrence
        scaled = [r["body"] for r in self.receiver.requests() if r["body"].get("rule") == "load-scale"]
        per_occurrence = Counter(b["occurrence"] for b in scaled)
        self.assertEqual(len(per_occurrence), sent["new"], "distinct occurrences scaled")
        self.assertEqual(max(per_occurrence.values()), 1, per_occurrence.most_common(3))

        # ---- Unleash: exactly one disabled event per dup flag, and no other change
        status, body_, _ = self.unleash.call("GET", "/api/admin/events")
        self.assertEqual(status, 200, body_)
        changes = sorted((e["featureName"], e["type"]) for e in body_["events"] if e["id"] > marker)
        self.assertEqual(changes, sorted((f, "feature-environment-disabled") for f in DUPS.values()))

        # ---- the audit: it shows the newest 2000 batches, all written during the load (one
        # per delivery: ids are random, so the window is the deliveries a `received` names),
        # and each holds exactly one decision
        received = self.audit(outcome="received", limit=5000)
        window = {e["delivery"] for e in received}
        self.assertEqual(len(window), min(AUDIT_KEEPS, valid + tap_during),
                         "audit batches shown after the load (%d valid webhooks, %d via the tap)"
                         % (valid, tap_during))
        self.assertEqual([e for e in received if e["at_ms"] < started_ms], [], "batches from before the load")
        decisions = defaultdict(list)  # delivery -> [(rule, event, occurrence)]
        for rule in ["load-scale"] + ["load-" + k for k in DUPS]:
            for e in self.audit(rule=rule, limit=5000):
                if e["delivery"] in window and e["event"] != "matched":
                    decisions[e["delivery"]].append((rule, e["event"], e["occurrence"]))
        missing = window - set(decisions)
        self.assertLessEqual(len(missing), tap_during, "deliveries without a decision: %s" % sorted(missing)[:20])
        self.assertEqual({d: len(v) for d, v in decisions.items() if len(v) != 1}, {}, "one decision per delivery")
        by = Counter((rule, event) for v in decisions.values() for rule, event, _ in v)
        sys.stderr.write("\n  audit: %d deliveries shown: %s " % (len(window), dict(by)))
        self.assertEqual({k for k in by if k[0] == "load-scale"}, {("load-scale", "acted")}, by)
        for k in DUPS:
            self.assertLessEqual(by[("load-" + k, "acted")], 1, by)
            self.assertEqual({e for r, e in by if r == "load-" + k} - {"acted", "already_handled"}, set(), by)
        scale_occ = {o for v in decisions.values() for rule, _, o in v if rule == "load-scale"}
        self.assertLessEqual(scale_occ, set(per_occurrence), "audited scale actions the receiver never got")
        self.assertEqual(sum(by.values()), len(window) - len(missing))
        # The window's proportions follow the pattern (each cycle: 10 new, 4 dups).
        share = by[("load-scale", "acted")] / max(1, sum(by.values()))
        self.assertAlmostEqual(share, 10 / 14, delta=0.05)


if __name__ == "__main__":
    unittest.main()
