"""notify (issue 15) against real peers: the three recipes of deploy/notify/ (carried by
fixtures/notify.yaml). The Alertmanager silence is created on the real Alertmanager and read
back with GET /api/v2/silences; Slack and Grafana are the user's own, so the recording scale
receiver plays them. Needs `tests/e2e/peers up`. Python stdlib only."""

import json
import time

import support
from harness import ENV, am_webhook, http, parse_time
from support import Case, problem_of, resolved

setUpModule = support.setUpModule

SLACK_PATH = "/services/T0E2E/B0E2E/e2eSLACKsecret0042"
GRAFANA_AUTH = "Bearer glsa_e2eGRAFANAsecret0042"
SECRETS = ("SLACKsecret", "GRAFANAsecret")


class NotifyRecipes(Case):
    def setUp(self):
        super().setUp()
        self.silences = []
        self.component(
            rules_file="/fixtures/notify.yaml",
            notify_1_origin=ENV["E2E_RECEIVER_URL"], notify_1_path=SLACK_PATH,
            notify_2_origin=ENV["E2E_RECEIVER_URL"], notify_2_authorization=GRAFANA_AUTH,
            notify_3_origin=ENV["E2E_AM_URL"])
        self.receiver.reset()

    def tearDown(self):
        for sid in self.silences:
            http("DELETE", "%s/api/v2/silence/%s" % (ENV["E2E_AM_URL"], sid))
        super().tearDown()

    def my_silences(self):
        status, silences, _ = http("GET", ENV["E2E_AM_URL"] + "/api/v2/silences")
        self.assertEqual(status, 200, silences)
        return [s for s in silences if s.get("createdBy") == "remediator" and any(
            m["name"] == "e2e_case" and m["value"] == self.case for m in s["matchers"])]

    def assert_no_secrets(self, *texts):
        for text in texts:
            for secret in SECRETS:
                self.assertNotIn(secret, text)

    def test_recipes_on_act_and_revert_once_each(self):
        body = am_webhook([self.alert("NotifyE2E", service="carts")])
        labels = body["alerts"][0]["labels"]
        t0_ms = int(time.time() * 1000)
        status, report, _ = self.direct(body)
        t1_ms = int(time.time() * 1000)
        self.assertEqual(status, 200, report)
        p = problem_of(report)
        occurrence = p["occurrence"]
        self.assertEqual(p["outcome"], "acted", p)
        self.assertEqual(
            [(n["channel"], n["event"], n["outcome"], n.get("status")) for n in p["notifications"]],
            [("slack", "act", "sent", 200), ("grafana", "act", "sent", 200),
             ("alertmanager", "act", "sent", 200)], p)
        self.assertEqual(p["notifications"][0]["request"],
                         "POST %s<secret path>" % ENV["E2E_RECEIVER_URL"])

        reqs = self.receiver.requests()
        self.assertEqual([(r["method"], r["path"]) for r in reqs],
                         [("POST", "/scale"), ("POST", SLACK_PATH), ("POST", "/api/annotations")])
        label_text = ", ".join("%s=%s" % kv for kv in sorted(labels.items()))
        self.assertEqual(reqs[1]["body"], {
            "text": "remediator act (acted) for *NotifyE2E* %s, rule notify-e2e: scaled carts by +1. first firing"
                    % label_text})
        grafana = reqs[2]
        headers = {k.lower(): v for k, v in grafana["headers"].items()}
        self.assertEqual(headers.get("authorization"), GRAFANA_AUTH)
        self.assertEqual(headers.get("content-type"), "application/json")
        self.assertEqual(grafana["body"]["tags"], ["%s:%s" % kv for kv in sorted(labels.items())])
        self.assertEqual(grafana["body"]["text"],
                         "remediator act (acted), rule notify-e2e: scaled carts by +1")
        self.assertTrue(t0_ms <= grafana["body"]["time"] <= t1_ms, (t0_ms, grafana["body"], t1_ms))

        # The real Alertmanager holds a silence for exactly this alert.
        mine = self.my_silences()
        self.silences = [s["id"] for s in mine]
        self.assertEqual(len(mine), 1, mine)
        silence = mine[0]
        self.assertEqual(silence["status"]["state"], "active", silence)
        self.assertEqual(
            sorted(silence["matchers"], key=lambda m: m["name"]),
            [{"name": k, "value": v, "isRegex": False, "isEqual": True} for k, v in sorted(labels.items())])
        ends = parse_time(silence["endsAt"])
        self.assertAlmostEqual(ends - parse_time(silence["startsAt"]), 1800, delta=5)
        self.assertAlmostEqual(ends, t1_ms / 1000 + 1800, delta=10)
        self.assertEqual(silence["comment"], "remediator acted (rule notify-e2e): scaled carts by +1")

        # Alertmanager's re-send: already handled, nothing sent again, still one silence.
        status, report, _ = self.direct(body)
        self.assertEqual(status, 200, report)
        p = problem_of(report)
        self.assertEqual(p["outcome"], "already_handled", p)
        self.assertNotIn("notifications", p)
        self.assertEqual(len(self.receiver.requests()), 3)
        self.assertEqual(len(self.my_silences()), 1)

        # The resolve: the scale undone, then Slack and Grafana told; no new silence.
        status, report, _ = self.direct(resolved(body))
        self.assertEqual(status, 200, report)
        p = problem_of(report)
        self.assertEqual(p["outcome"], "reverted", p)
        self.assertEqual([(n["channel"], n["event"], n["outcome"]) for n in p["notifications"]],
                         [("slack", "revert", "sent"), ("grafana", "revert", "sent")], p)
        reqs = self.receiver.requests()[3:]
        self.assertEqual([(r["method"], r["path"]) for r in reqs],
                         [("POST", "/scale"), ("POST", SLACK_PATH), ("POST", "/api/annotations")])
        self.assertEqual(reqs[1]["body"]["text"],
                         "remediator revert (reverted) for *NotifyE2E* %s, rule notify-e2e: "
                         "scaled carts by -1. resolved: undid 1 of 1 actions" % label_text)
        self.assertEqual(len(self.my_silences()), 1)

        status, audit, _ = self.get("/audit?limit=200")
        self.assertEqual(status, 200, audit)
        notified = [e["detail"] for e in audit["entries"]
                    if e["occurrence"] == occurrence and e["event"] == "notified"]
        self.assertEqual(len(notified), 5, notified)
        self.assert_no_secrets(json.dumps(report), json.dumps(audit))
