"""State end-to-end (issue #4): exactly once per occurrence, revert on resolve, concurrent
duplicates and the escalation ladder, against real Alertmanager, Unleash and the scale receiver.

Needs the peers (tests/e2e/peers up; tests/e2e/run does everything) and wrk. Evidence comes
from Unleash's own event log, the scale receiver's recorded requests, and what the tap saw
Alertmanager send and the component answer. Alertmanager's repeat_interval is 5 s (peers).

The component serves fixtures/state-tutorial.yaml (the tutorial's rules, Keptn 0.6 format, with
a flag and titles of their own: other tests' late retries cannot touch them), and
fixtures/ladder.yaml for the ladder; the class restores the default rules when it ends.
"""

import json
import sys
import time
import unittest

from harness import ENV, RULE_ENV, am_webhook, now_iso, parse_time, peers, wait_for
from support import Case, problem_of, resolved, setUpModule  # noqa: F401 (unittest's hook)

DISABLED = "feature-environment-disabled"
ENABLED = "feature-environment-enabled"
FLAG = "E2EStatePromotion"  # fixtures/state-tutorial.yaml: "E2EState failure rate increase" turns it off
FAILURE = "E2EState failure rate increase"
SCALE = "E2EState cpu_usage"  # scales +1
LADDER_FLAG = "E2ELadderFlag"  # fixtures/ladder.yaml
LADDER_WAIT_S = 6.0  # its escalate_after


class State(Case):
    maxDiff = None
    rules_file = None  # what the component serves now, if not its default

    @classmethod
    def tearDownClass(cls):
        if cls.rules_file:
            peers("component")

    def serve(self, rules_file):
        """Restart the component with these rules, unless it already serves them."""
        if type(self).rules_file != rules_file:
            peers("component", "rules_file=" + rules_file)
            type(self).rules_file = rules_file

    def admin(self):
        return ENV["E2E_UNLEASH_ADMIN_TOKEN_NAME"]

    def at_least(self, n, what, timeout):
        return wait_for("%d %s" % (n, what),
                        lambda: (lambda d: d if len(d) >= n else None)(self.answered()), timeout)

    # ------------------------------------------------------------------ repeats, resolve
    def test_1_five_repeats_act_once_and_resolve_reverts_once(self):
        self.serve("/fixtures/state-tutorial.yaml")
        self.unleash.prepare(FLAG, production=True)
        marker = self.unleash.last_event_id()
        self.fire(self.alert(FAILURE, service="carts"))

        # Alertmanager's own repeats (repeat_interval 5 s) of the still-firing group.
        got = self.at_least(5, "deliveries of the firing group", timeout=50)
        self.assertTrue(all(r["body"]["status"] == "firing" for r in got), [r["body"] for r in got])
        occurrences = {problem_of(r["response"])["occurrence"] for r in got}
        self.assertEqual(len(occurrences), 1, "repeats carry the same occurrence: %s" % occurrences)
        self.assertEqual(self.unleash.toggles_since(FLAG, marker), [(DISABLED, RULE_ENV, self.admin())])

        first = problem_of(got[0]["response"])
        self.assertEqual((got[0]["status"], first["outcome"], first["rule"]), (200, "acted", FAILURE), first)
        self.assert_flag_action(first, FLAG, False)
        for r in got[1:]:
            p = problem_of(r["response"])
            self.assertEqual((r["status"], p["outcome"], p["actions"]), (200, "already_handled", []), p)
            self.assertIsNotNone(p.get("first_handled"), p)
        handled = {json.dumps(problem_of(r["response"])["first_handled"], sort_keys=True) for r in got[1:]}
        self.assertEqual(len(handled), 1, "every repeat names the same first handling: %s" % handled)
        self.assertIs(self.unleash.state(FLAG)[RULE_ENV], False)

        # Resolve: Alertmanager sends the resolved notification; the flag is turned back on once.
        self.am.post([dict(a, endsAt=now_iso(-1)) for a in self.fired])
        res = wait_for("the resolved notification", lambda: [
            r for r in self.answered() if r["body"]["status"] == "resolved"], timeout=20)[0]
        p = problem_of(res["response"])
        self.assertEqual((res["status"], p["outcome"]), (200, "reverted"), p)
        self.assert_flag_action(p, FLAG, True)
        self.assertEqual(self.unleash.toggles_since(FLAG, marker),
                         [(DISABLED, RULE_ENV, self.admin()), (ENABLED, RULE_ENV, self.admin())])
        # A duplicate resolve (the same notification again) changes nothing.
        status, report, _ = self.replay(res)
        p = problem_of(report)
        self.assertEqual((status, p["outcome"], p["actions"]), (200, "already_handled", []), p)
        self.assertEqual(len(self.unleash.toggles_since(FLAG, marker)), 2)
        self.assertIs(self.unleash.state(FLAG)[RULE_ENV], True)
        self.fired = []

    # ------------------------------------------------------------------ concurrency
    def assert_one_winner(self, result, winner_outcome):
        self.assertEqual(result["counts"], {"same": {200: 50}}, result["samples"])
        self.assertEqual(result["outcomes"], {"same": {winner_outcome: 1, "already_handled": 49}}, result)

    def test_2_fifty_concurrent_identical_deliveries_toggle_once(self):
        self.serve("/fixtures/state-tutorial.yaml")
        self.unleash.prepare(FLAG, production=True)
        marker = self.unleash.last_event_id()
        body = self.am_body(self.alert(FAILURE, instance="wrk"))

        result = self.blast(body, 50)
        self.report_blast("firing x50 (flag)", result)
        self.assert_one_winner(result, "acted")
        self.assertEqual(self.unleash.toggles_since(FLAG, marker), [(DISABLED, RULE_ENV, self.admin())])

        # The same for 50 concurrent copies of its resolved notification.
        result = self.blast(resolved(body), 50)
        self.report_blast("resolved x50 (flag)", result)
        self.assert_one_winner(result, "reverted")
        self.assertEqual(self.unleash.toggles_since(FLAG, marker),
                         [(DISABLED, RULE_ENV, self.admin()), (ENABLED, RULE_ENV, self.admin())])

    def test_3_fifty_concurrent_identical_deliveries_scale_once(self):
        self.serve("/fixtures/state-tutorial.yaml")
        body = self.am_body(self.alert(SCALE, service="carts", namespace="sockshop"))
        result = self.blast(body, 50)
        self.report_blast("firing x50 (scale)", result)
        self.assert_one_winner(result, "acted")
        scaled = self.scaled()
        self.assertEqual(len(scaled), 1, scaled)
        self.assertEqual(scaled[0]["body"]["value"], "+1", scaled[0])

    def scaled(self):
        """This test's requests at the scale receiver."""
        return [r for r in self.receiver.requests() if (r["body"].get("labels") or {}).get("e2e_case") == self.case]

    def am_body(self, alert):
        return am_webhook([alert])

    def report_blast(self, what, r):
        sys.stderr.write("\n  %s: %d answers in %.2fs, latency p50 %.0f ms, max %.0f ms; %s " % (
            what, r["answered"], r["duration_s"], r["latency_ms"]["p50"], r["latency_ms"]["max"],
            r["outcomes"]["same"]))

    # ------------------------------------------------------------------ escalation ladder
    def test_4_ladder_escalates_on_a_repeat_after_the_wait_not_before(self):
        self.unleash.prepare(LADDER_FLAG, production=True)
        self.serve("/fixtures/ladder.yaml")
        marker = self.unleash.last_event_id()
        self.fire(self.alert("E2ELadder", service="carts", namespace="sockshop"))

        # Step 1 at the first delivery.
        first = self.first_delivery()
        p = problem_of(first["response"])
        self.assertEqual((first["status"], p["rule"], p["outcome"]), (200, "e2e-ladder", "acted"), p)
        self.assertEqual([(a["action"], a.get("flag"), a.get("enabled"), a["outcome"]) for a in p["actions"]],
                         [("featuretoggle", LADDER_FLAG, False, "done")], p)
        self.assertEqual(self.scaled(), [])

        # A duplicate well inside the wait: step 1 is done, step 2 must not run yet.
        time.sleep(1.5)
        status, report, _ = self.replay(first)
        dup = problem_of(report)
        self.assertEqual((status, dup["outcome"], dup["actions"]), (200, "already_handled", []), dup)
        step1_at = parse_time(dup["first_handled"]["at"])
        self.assertEqual(self.scaled(), [], "step 2 ran %.1fs after step 1" % (time.time() - step1_at))

        # Step 2 at Alertmanager's first repeat that comes >= 6 s after step 1; then one more repeat.
        scale = wait_for("step 2 at the scale receiver", self.scaled, timeout=25)
        self.assertEqual(len(scale), 1, scale)
        self.assertEqual(scale[0]["body"]["value"], "+1", scale[0])
        self.assertGreaterEqual(scale[0]["time"] - step1_at, LADDER_WAIT_S, "step 2 came too early")
        def acted():
            return [i for i, r in enumerate(self.answered()) if problem_of(r["response"])["outcome"] == "acted"]

        escalated = wait_for("the escalating delivery's answer", lambda: (lambda a: a if len(a) >= 2 else None)(
            acted()), timeout=10)
        self.assertEqual(escalated[:1], [0])
        e = escalated[1]
        got = self.at_least(e + 2, "deliveries (one repeat after step 2)", timeout=15)
        self.assertEqual(acted(), [0, e], [problem_of(r["response"]) for r in got])
        step2 = problem_of(got[e]["response"])
        self.assertEqual([(a["action"], a.get("value"), a["outcome"]) for a in step2["actions"]],
                         [("scaling", "+1", "done")], step2)
        self.assertIn("escalating to step 2", step2["detail"], step2)
        timeline = []
        for i, r in enumerate(got):
            since = r["time"] - step1_at
            outcome = problem_of(r["response"])["outcome"]
            timeline.append("%+.1fs %s" % (since, outcome))
            if 0 < i < e:
                # A repeat the component turned down came before the wait was over (it decides
                # at or after the tap's time): no repeat after the wait was passed over.
                self.assertLess(since, LADDER_WAIT_S, timeline)
                self.assertEqual(outcome, "already_handled", timeline)
            if i > e:
                self.assertEqual(outcome, "already_handled", timeline)
                self.assertIn("ladder exhausted", problem_of(r["response"])["detail"])
        # (Step 2's own tap time may be a little short of 6 s: the component decides a moment
        # after the tap received the delivery; the scale request's time is checked above.)
        self.assertEqual(len(self.scaled()), 1)
        self.assertEqual(self.unleash.toggles_since(LADDER_FLAG, marker), [(DISABLED, RULE_ENV, self.admin())])

        # Resolve: the flag step is undone, the scaling step is not (revert defaults).
        self.am.post([dict(a, endsAt=now_iso(-1)) for a in self.fired])
        res = wait_for("the resolved notification", lambda: [
            r for r in self.answered() if r["body"]["status"] == "resolved"], timeout=20)[0]
        p = problem_of(res["response"])
        self.assertEqual((res["status"], p["outcome"]), (200, "reverted"), p)
        self.assertEqual(self.unleash.toggles_since(LADDER_FLAG, marker),
                         [(DISABLED, RULE_ENV, self.admin()), (ENABLED, RULE_ENV, self.admin())])
        self.assertEqual(len(self.scaled()), 1, "scaling is not reverted by default")
        self.fired = []
        sys.stderr.write("\n  ladder timeline (tap time - step 1): %s " % ", ".join(timeline))


if __name__ == "__main__":
    unittest.main()
