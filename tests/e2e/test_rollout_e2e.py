"""The rollout action end to end, against real Unleash (7.4.1 or 8.x, whichever the peers run)
and real Alertmanager.

The component serves fixtures/rollout.yaml. Evidence comes from Unleash itself: the
strategy's `parameters.rollout` and the `feature-strategy-update` events of its event log
(`preData` -> `data` percentages, and who made them), read after the component has answered
the notification in question (the tap saw the answer), never after a sleep.

* test_1: Alertmanager fires E2ERollout; the flag's only flexibleRollout strategy goes from
  37% to 0% (read back: `verified: true`); the resolve brings back exactly 37%.
* test_2: a ladder, posted straight to the component (the same body is the same
  occurrence): 50% -> 10% on the first firing, -> 0% on a repeat at least escalate_after (2 s)
  later, -> 50% on resolve; the flag's other strategy is never touched.
"""

import copy
import time

from harness import ENV, RULE_ENV, am_webhook, now_iso, peers, wait_for
from support import Case, setUpModule  # noqa: F401 (unittest's hook)

FIXTURE = "/fixtures/rollout.yaml"
FLAG = "E2ERolloutFlag"
LADDER_FLAG = "E2ERolloutLadderFlag"
ESCALATE_AFTER_S = 2.0  # fixtures/rollout.yaml


class Rollouts(Case):
    maxDiff = None
    served = False

    @classmethod
    def tearDownClass(cls):
        if cls.served:
            peers("component")
            cls.served = False

    def serve(self):
        cls = type(self)
        if not cls.served:
            peers("component", "rules_file=%s" % FIXTURE)
            cls.served = True

    # ------------------------------------------------------------ Unleash strategies
    def reset_strategies(self, flag, *rollouts):
        """The flag exists with exactly these flexibleRollout strategies in production:
        (title, percent) each. Returns {title: id}."""
        u = self.unleash
        u.ensure_flag(flag)
        for s in u.strategies(flag, RULE_ENV):
            status, _, _ = u.call("DELETE", "%s/%s" % (u.strategies_path(flag, RULE_ENV), s["id"]))
            self.assertEqual(status, 200)
        return {title: u.add_rollout(flag, RULE_ENV, percent, title) for title, percent in rollouts}

    def percent(self, flag, strategy_id):
        return self.unleash.rollout(flag, RULE_ENV, strategy_id)

    def updates_since(self, flag, marker):
        """(strategy id, before, after, createdBy) of each feature-strategy-update, oldest first."""
        return [(u["strategy"], u["old"], u["new"], u["createdBy"])
                for u in self.unleash.rollout_updates_since(flag, marker)]

    def admin(self):
        return ENV["E2E_UNLEASH_ADMIN_TOKEN_NAME"]

    # ------------------------------------------------------------------ tests
    def test_1_a_rollout_goes_to_zero_and_back_to_its_exact_prior_percentage(self):
        self.serve()
        sid = self.reset_strategies(FLAG, ("gradual", 37))["gradual"]
        marker = self.unleash.last_event_id()
        self.fire(self.alert("E2ERollout"))
        first = self.first_delivery(timeout=30)
        self.assertEqual(first["status"], 200, first.get("response"))
        action = self.only_problem(first["response"])["actions"][0]
        self.assertEqual({k: action.get(k) for k in ("action", "flag", "rollout", "outcome", "verified")},
                         {"action": "rollout", "flag": FLAG, "rollout": 0, "outcome": "done",
                          "verified": True}, action)
        self.assertEqual(self.percent(FLAG, sid), "0")
        self.assertEqual(self.updates_since(FLAG, marker), [(sid, "37", "0", self.admin())])

        self.am.post([dict(a, endsAt=now_iso(-1)) for a in self.fired])
        res = wait_for("the resolved notification answered", lambda: [
            r for r in self.answered() if r["body"]["status"] == "resolved"], timeout=30)[0]
        self.fired = []
        self.assertEqual(res["status"], 200, res.get("response"))
        self.assertEqual(self.only_problem(res["response"])["outcome"], "reverted", res["response"])
        self.assertEqual(self.percent(FLAG, sid), "37")
        self.assertEqual(self.updates_since(FLAG, marker),
                         [(sid, "37", "0", self.admin()), (sid, "0", "37", self.admin())])

    def test_2_a_ladder_steps_the_rollout_down_and_resolve_restores_the_start(self):
        self.serve()
        ids = self.reset_strategies(LADDER_FLAG, ("gradual", 50), ("canary", 80))
        gradual, canary = ids["gradual"], ids["canary"]
        marker = self.unleash.last_event_id()
        body = am_webhook([self.alert("E2ERolloutLadder")])

        status, report, _ = self.direct(body)
        stepped = time.monotonic()
        self.assertEqual((status, self.only_problem(report)["outcome"]), (200, "acted"), report)
        self.assertEqual(self.percent(LADDER_FLAG, gradual), "10")

        # The repeat (the same body: the same occurrence) once escalate_after has passed.
        time.sleep(max(0.0, stepped + ESCALATE_AFTER_S + 0.3 - time.monotonic()))
        status, report, _ = self.direct(copy.deepcopy(body))
        self.assertEqual((status, self.only_problem(report)["outcome"]), (200, "acted"), report)
        self.assertEqual(self.percent(LADDER_FLAG, gradual), "0")

        done = copy.deepcopy(body)
        done["status"] = "resolved"
        for a in done["alerts"]:
            a.update(status="resolved", endsAt=now_iso())
        status, report, _ = self.direct(done)
        self.direct_fired = []
        self.assertEqual((status, self.only_problem(report)["outcome"]), (200, "reverted"), report)
        self.assertEqual(self.percent(LADDER_FLAG, gradual), "50")
        self.assertEqual(self.percent(LADDER_FLAG, canary), "80", "the other strategy is never touched")
        self.assertEqual([u[:3] for u in self.updates_since(LADDER_FLAG, marker)],
                         [(gradual, "50", "10"), (gradual, "10", "0"), (gradual, "0", "50")])
