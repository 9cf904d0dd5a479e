"""The e2e tests' fixture (tests/e2e/test_*.py, load.py): a unique `e2e_case` per test, the tap,
the scale receiver, Unleash, resolving what a test fired when it ends, plus a few helpers.
The plumbing underneath (HTTP, waiting, the clients) is harness.py."""

import copy
import json
import os
import sys
import time
import unittest
import uuid

import wrkload
from harness import ENV, RULE_ENV, Alertmanager, Recorder, Unleash, case_of, connect, http, now_iso, peers, wait_for


def setUpModule():
    """unittest's module hook for every e2e module: the peers' env, and a healthy component."""
    try:
        connect()
    except FileNotFoundError as err:
        why = "no %s: run tests/e2e/peers up first" % err.filename
        # tests/e2e/run starts the peers itself: there a missing one is a failure, never
        # a skipped (and so passing) module.
        if os.environ.get("E2E_REQUIRE_PEERS") == "1":
            raise RuntimeError(why) from err
        raise unittest.SkipTest(why)


class Case(unittest.TestCase):
    """setUp/tearDown and helpers; no tests of its own."""

    maxDiff = None

    def setUp(self):
        self.t0 = time.monotonic()
        self.case = "%s-%s" % (self._testMethodName[len("test_"):], uuid.uuid4().hex[:8])
        self.unleash = Unleash()
        self.am = Alertmanager()
        self.tap = Recorder(ENV["E2E_TAP_URL"])
        self.receiver = Recorder(ENV["E2E_RECEIVER_URL"])
        self.fired = []
        # Firing bodies posted straight to the component, resolved the same way in
        # tearDown: an occurrence left firing holds its flag changed for later tests.
        self.direct_fired = []
        self.restore_component = False
        self.restart_unleash = False
        self.receiver.reset()
        self.failed_before = self.am.failed_attempts()
        self.am_log_offset = os.path.getsize(ENV["E2E_AM_LOG"])

    def tearDown(self):
        try:
            self.receiver.mode("ok")
            if self.restart_unleash:
                peers("start", "unleash")
            if self.restore_component:
                peers("component")
            for body in self.direct_fired:
                done = json.loads(json.dumps(body))
                done["status"] = "resolved"
                for a in done["alerts"]:
                    a.update(status="resolved", endsAt=now_iso())
                self.direct(done, token=ENV["E2E_WEBHOOK_TOKEN"])
            if self.fired:
                self.am.post([dict(a, endsAt=now_iso(-1)) for a in self.fired])
                # Let the resolved notification land now, not in the next test. Alertmanager
                # sends one only for a group it delivered before. Wait for its answer, not
                # its arrival: a restore cut off by the next test's component restart holds
                # the flag's restore lease for 30 s.
                if any(r.get("status") == 200 for r in self.deliveries()):
                    try:
                        wait_for("the resolved notification answered", lambda: any(
                            isinstance(r["body"], dict) and r["body"].get("status") == "resolved"
                            for r in self.answered()), timeout=20)
                    except AssertionError as err:
                        sys.stderr.write("\n  note: %s\n" % err)
        finally:
            sys.stderr.write(" [%.1fs] " % (time.monotonic() - self.t0))

    # -------------------------------------------------------------- helpers
    def alert(self, alertname, summary=None, **labels):
        return {
            "labels": dict({"alertname": alertname, "e2e_case": self.case}, **labels),
            "annotations": {"summary": summary or alertname},
            "startsAt": now_iso(),
        }

    def fire(self, *alerts):
        self.fired.extend(alerts)
        self.am.post(list(alerts))

    def deliveries(self):
        """What Alertmanager sent for this test's alerts, and what the component answered."""
        return [r for r in self.tap.requests() if case_of(r["body"]) == self.case]

    def answered(self):
        """Deliveries the component has answered (the tap records a request before its answer)."""
        return [r for r in self.deliveries() if "status" in r]

    def first_delivery(self, timeout=20):
        return wait_for("Alertmanager's webhook for %s" % self.case, self.answered, timeout)[0]

    def direct(self, body, token="default"):
        if isinstance(body, dict) and body.get("status") == "firing" and token == "default":
            self.direct_fired.append(body)
        headers = {}
        if token == "default":
            token = ENV["E2E_WEBHOOK_TOKEN"]
        if token is not None:
            headers["Authorization"] = "Bearer %s" % token
        return http("POST", ENV["E2E_COMPONENT_URL"] + "/alertmanager", body, headers, timeout=30)

    def am_log(self):
        with open(ENV["E2E_AM_LOG"], errors="replace") as f:
            f.seek(self.am_log_offset)
            return f.read()

    def component(self, **overrides):
        self.restore_component = True
        peers("component", *("%s=%s" % kv for kv in overrides.items()))

    def only_problem(self, report):
        self.assertIsInstance(report, dict, report)
        self.assertEqual(len(report.get("problems", [])), 1, report)
        return report["problems"][0]

    def assert_flag_action(self, problem, flag, enabled):
        self.assertEqual(len(problem["actions"]), 1, problem)
        action = problem["actions"][0]
        self.assertEqual(
            {k: action.get(k) for k in ("action", "flag", "project", "environment", "enabled", "outcome")},
            {"action": "featuretoggle", "flag": flag, "project": "default", "environment": RULE_ENV,
             "enabled": enabled, "outcome": "done"}, problem)

    def bearer(self):
        return {"Authorization": "Bearer %s" % ENV["E2E_WEBHOOK_TOKEN"]}

    def json_headers(self):
        return dict(self.bearer(), **{"Content-Type": "application/json"})

    def get(self, path, auth=True):
        return http("GET", ENV["E2E_COMPONENT_URL"] + path, headers=self.bearer() if auth else None)

    def blast(self, body, n=50):
        """`n` identical deliveries of `body`, all at once: wrk, one connection per thread,
        one request per connection. Returns wrkload's result for the kind "same"."""
        kind = wrkload.Kind("same", json.dumps(body), self.json_headers(), expect=200)
        result = wrkload.run(ENV["E2E_COMPONENT_URL"], [kind], threads=n, quota=1, max_seconds=40)
        self.assertEqual(result["unmatched"], 0, result)
        self.assertEqual({k: v for k, v in result["errors"].items() if k != "status"},
                         {"connect": 0, "read": 0, "write": 0, "timeout": 0}, result["wrk_output"])
        self.assertEqual(result["answered"], n, result)
        return result

    def replay(self, delivery):
        """POST what the tap recorded Alertmanager sending (the same JSON) directly to the component."""
        return self.direct(delivery["body"])


def resolved(body):
    """The resolved notification of a firing Alertmanager webhook: the same occurrences."""
    body = copy.deepcopy(body)
    body["status"] = "resolved"
    for alert in body["alerts"]:
        alert["status"] = "resolved"
        alert["endsAt"] = now_iso()
    return body


def problem_of(report):
    if not isinstance(report, dict) or len(report.get("problems") or []) != 1:
        raise AssertionError("expected a report with one problem: %r" % (report,))
    return report["problems"][0]

