"""Shared by test_state_e2e.py, test_faults_e2e.py, test_rules_e2e.py and load.py: test_e2e's
fixtures and helpers (a unique `e2e_case` per test, the tap, the scale receiver, Unleash,
resolving what a test fired when it ends) without test_e2e's own scenarios, plus a few
helpers of our own."""

import copy
import json
from datetime import datetime

import test_e2e as base
import wrkload
from test_e2e import ENV, http, now_iso

setUpModule = base.setUpModule


class Case(base.Scenarios):
    """test_e2e.Scenarios' setUp/tearDown and helpers; its test methods are hidden below."""

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


for _name in dir(base.Scenarios):
    if _name.startswith("test"):
        setattr(Case, _name, None)  # not callable: unittest's loader skips it


def resolved(body):
    """The resolved notification of a firing Alertmanager webhook: the same occurrences."""
    body = copy.deepcopy(body)
    body["status"] = "resolved"
    for alert in body["alerts"]:
        alert["status"] = "resolved"
        alert["endsAt"] = now_iso()
    return body


def parse_time(rfc3339):
    """The component's RFC 3339 timestamps (UTC, 'Z') as Unix seconds."""
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


def problem_of(report):
    if not isinstance(report, dict) or len(report.get("problems") or []) != 1:
        raise AssertionError("expected a report with one problem: %r" % (report,))
    return report["problems"][0]

