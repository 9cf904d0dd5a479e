"""End-to-end scenarios for remediator (issue #3), against real peers.

Alertmanager 0.25 delivers to the component (through the recording tap, see `peers`), the
component toggles flags in a real Unleash (8.2.0, or 7.4.1 with E2E_UNLEASH_VERSION=7; `run`
runs these against both) and calls the scale receiver. Assertions are
made on Unleash's own state and event log, on what the scale receiver got, on what
Alertmanager sent and got back (the tap), and on reports from direct POSTs to the component.

Needs `tests/e2e/peers up` first (tests/e2e/run does everything). Python stdlib only.
Every test labels its alerts with a unique `e2e_case`; Alertmanager groups by it, so each
test's alerts travel alone, and each test resolves its alerts when it ends.
"""
import unittest
from concurrent.futures import ThreadPoolExecutor

from harness import ENV, ITEM_CACHE, OTHER_ENV, PROMOTION, RULE_ENV, am_webhook, http, peers, wait_for
from support import Case, setUpModule  # noqa: F401 (unittest's hook)


class Scenarios(Case):
    """Numbered as in issue #3; unittest runs them in name order."""

    # -------------------------------------------------------------- 0. smoke
    def test_0_healthz_answers_json(self):
        status, body, _ = http("GET", ENV["E2E_COMPONENT_URL"] + "/healthz")
        self.assertEqual(status, 200, body)
        self.assertIsInstance(body, dict, "healthz must answer JSON")

    # -------------------------------------------------------------- 1. the tutorial
    def test_1_failure_rate_increase_turns_promotion_off(self):
        self.unleash.prepare(PROMOTION, production=True)
        dev_before = self.unleash.state(PROMOTION)[OTHER_ENV]
        marker = self.unleash.last_event_id()
        self.fire(self.alert("Failure rate increase", service="carts"))

        wait_for("%s off in %s" % (PROMOTION, RULE_ENV),
                 lambda: self.unleash.state(PROMOTION)[RULE_ENV] is False)
        # Alertmanager repeats the notification (repeat_interval); still one change.
        wait_for("a repeated notification", lambda: len(self.answered()) >= 2, timeout=15)
        self.assertEqual(self.unleash.toggles_since(PROMOTION, marker),
                         [("feature-environment-disabled", RULE_ENV, ENV["E2E_UNLEASH_ADMIN_TOKEN_NAME"])])
        self.assertEqual(self.unleash.state(PROMOTION)[OTHER_ENV], dev_before)

        first = self.first_delivery()
        self.assertEqual(first["status"], 200, first.get("response"))
        problem = self.only_problem(first["response"])
        self.assertEqual(problem["rule"], "Failure rate increase", problem)
        self.assertEqual(problem["outcome"], "acted", problem)
        self.assertEqual(problem["status"], "firing", problem)
        self.assert_flag_action(problem, PROMOTION, False)

    def test_1b_keptn_prefix_title_matches(self):
        """Keptn 0.6 matched by prefix: 'Failure rate increase on carts' is that rule's problem."""
        self.unleash.prepare(PROMOTION, production=True)
        alert = self.alert("Failure rate increase on carts", service="carts")
        status, report, _ = self.direct(am_webhook([alert]))
        self.assertEqual(status, 200, report)
        problem = self.only_problem(report)
        self.assertEqual(problem["rule"], "Failure rate increase", problem)
        self.assert_flag_action(problem, PROMOTION, False)
        self.assertIs(self.unleash.state(PROMOTION)[RULE_ENV], False)

    # -------------------------------------------------------------- 2. response time
    def test_2_response_time_degradation_turns_item_cache_on_in_production_only(self):
        self.unleash.prepare(ITEM_CACHE, production=False, development=False)
        marker = self.unleash.last_event_id()
        self.fire(self.alert("Response time degradation", service="carts"))

        wait_for("%s on in %s" % (ITEM_CACHE, RULE_ENV),
                 lambda: self.unleash.state(ITEM_CACHE)[RULE_ENV] is True)
        self.assertEqual(self.unleash.state(ITEM_CACHE), {RULE_ENV: True, OTHER_ENV: False})
        self.assertEqual(self.unleash.toggles_since(ITEM_CACHE, marker),
                         [("feature-environment-enabled", RULE_ENV, ENV["E2E_UNLEASH_ADMIN_TOKEN_NAME"])])
        problem = self.only_problem(self.first_delivery()["response"])
        self.assertEqual(problem["rule"], "Response time degradation", problem)
        self.assert_flag_action(problem, ITEM_CACHE, True)

    # -------------------------------------------------------------- 3. scaling
    def test_3_cpu_usage_reaches_the_scale_receiver(self):
        self.fire(self.alert("cpu_usage", service="carts", namespace="sockshop"))

        req = wait_for("a scale request", self.receiver.requests)[0]
        self.assertEqual((req["method"], req["path"]), ("POST", "/scale"))
        headers = {k.lower(): v for k, v in req["headers"].items()}
        self.assertEqual(headers.get("authorization"), "Bearer %s" % ENV["E2E_SCALE_TOKEN"])
        self.assertTrue(headers.get("content-type", "").startswith("application/json"), headers)
        body = req["body"]
        self.assertIsInstance(body, dict, req)
        self.assertEqual({k: body.get(k) for k in ("rule", "value", "delta", "service", "namespace", "status")},
                         {"rule": "cpu_usage", "value": "+1", "delta": 1, "service": "carts",
                          "namespace": "sockshop", "status": "firing"}, body)
        self.assertEqual(body.get("labels", {}).get("e2e_case"), self.case, body)

        problem = self.only_problem(self.first_delivery()["response"])
        self.assertEqual(problem["rule"], "cpu_usage", problem)
        self.assertEqual(len(problem["actions"]), 1, problem)
        action = problem["actions"][0]
        self.assertEqual({k: action.get(k) for k in ("action", "value", "service", "namespace", "outcome")},
                         {"action": "scaling", "value": "+1", "service": "carts",
                          "namespace": "sockshop", "outcome": "done"}, problem)

    def test_3b_repeated_notifications_scale_once(self):
        """Alertmanager repeats a firing group byte for byte; scaling must not repeat with it."""
        self.fire(self.alert("cpu_usage", service="carts", namespace="sockshop"))
        wait_for("a repeated notification", lambda: len(self.answered()) >= 2, timeout=15)
        self.assertEqual(len(self.receiver.requests()), 1, self.receiver.requests())

    # -------------------------------------------------------------- 4. a group of three
    def group_of_three(self):
        # One alertname, so that Alertmanager sends them as one group; the summaries carry
        # the titles the rules match (the second one by Keptn's prefix match).
        return [
            self.alert("RemediatorE2EGroup", "Failure rate increase", instance="a"),
            self.alert("RemediatorE2EGroup", "Response time degradation on carts", instance="b"),
            self.alert("RemediatorE2EGroup", "Disk almost full", instance="c"),
        ]

    def assert_two_acted_one_unmatched(self, report):
        self.assertIsInstance(report, dict, report)
        problems = report.get("problems", [])
        self.assertEqual(len(problems), 3, report)
        by_outcome = sorted((p["outcome"], p["rule"] or "") for p in problems)
        self.assertEqual(by_outcome, [("acted", "Failure rate increase"),
                                      ("acted", "Response time degradation"),
                                      ("no_matching_rule", "")], report)
        self.assertEqual(sum(len(p["actions"]) for p in problems), 2, report)
        unmatched = [p for p in problems if p["outcome"] == "no_matching_rule"][0]
        self.assertIsNone(unmatched["rule"], unmatched)
        self.assertEqual(unmatched["actions"], [], unmatched)

    def test_4a_group_of_three_posted_directly(self):
        self.unleash.prepare(PROMOTION, production=True)
        self.unleash.prepare(ITEM_CACHE, production=False)
        status, report, _ = self.direct(am_webhook(self.group_of_three()))
        self.assertEqual(status, 200, report)
        self.assert_two_acted_one_unmatched(report)
        self.assertIs(self.unleash.state(PROMOTION)[RULE_ENV], False)
        self.assertIs(self.unleash.state(ITEM_CACHE)[RULE_ENV], True)

    def test_4b_group_of_three_through_alertmanager(self):
        self.unleash.prepare(PROMOTION, production=True)
        self.unleash.prepare(ITEM_CACHE, production=False)
        self.fire(*self.group_of_three())
        first = self.first_delivery()
        self.assertEqual(len(first["body"]["alerts"]), 3, "Alertmanager should send the three as one group")
        self.assertEqual(first["status"], 200, first.get("response"))
        self.assert_two_acted_one_unmatched(first["response"])
        self.assertIs(self.unleash.state(PROMOTION)[RULE_ENV], False)
        self.assertIs(self.unleash.state(ITEM_CACHE)[RULE_ENV], True)

    # -------------------------------------------------------------- 5. failure modes
    def assert_retryable_failure(self, status, report, *error_words):
        self.assertEqual(status, 502, report)
        problem = self.only_problem(report)
        self.assertEqual(problem["outcome"], "failed", problem)
        action = problem["actions"][0]
        self.assertEqual(action["outcome"], "failed", action)
        self.assertIs(action.get("retryable"), True, action)
        error = action.get("error") or ""
        self.assertTrue(any(w.lower() in error.lower() for w in error_words),
                        "error should say one of %r: %r" % (error_words, error))

    def wait_for_retries(self, n=3):
        """Alertmanager's own retries: n deliveries of this test's group, each answered 502."""
        got = wait_for("%d attempts by Alertmanager" % n,
                       lambda: (lambda d: d if len(d) >= n else None)(self.answered()), timeout=25)
        self.assertEqual({r["status"] for r in got}, {502}, [r.get("response") for r in got])
        self.assertGreaterEqual(self.am.failed_attempts() - self.failed_before, n - 1)
        self.assertIn("Notify attempt failed, will retry later", self.am_log())
        return got

    def test_5a_wrong_unleash_token_is_a_retryable_error(self):
        self.unleash.prepare(PROMOTION, production=True)
        self.component(unleash_token="*:*.not-the-token")
        marker = self.unleash.last_event_id()

        status, report, _ = self.direct(am_webhook([self.alert("Failure rate increase", instance="direct")]))
        self.assert_retryable_failure(status, report, "401", "unauthori", "token")

        self.fire(self.alert("Failure rate increase"))
        self.wait_for_retries()
        self.assertIs(self.unleash.state(PROMOTION)[RULE_ENV], True)
        self.assertEqual(self.unleash.toggles_since(PROMOTION, marker), [])

        # The operator fixes the token (a restart, as a redeploy would be); Alertmanager's
        # retries go through. A delivery cut off by the restart leaves its claim behind, and
        # deliveries meanwhile get 503 "in_progress" until the claim's 30 s lease runs out.
        peers("component")
        self.restore_component = False
        wait_for("%s off after the token is fixed" % PROMOTION,
                 lambda: self.unleash.state(PROMOTION)[RULE_ENV] is False, timeout=60)
        wait_for("a delivery answered 200", lambda: [r for r in self.answered() if r["status"] == 200])

    def test_5b_unleash_down_then_back_retry_succeeds(self):
        self.unleash.prepare(PROMOTION, production=True)
        marker = self.unleash.last_event_id()
        peers("stop", "unleash")
        self.restart_unleash = True

        status, report, _ = self.direct(am_webhook([self.alert("Failure rate increase", instance="direct")]))
        self.assert_retryable_failure(status, report, "unleash", "connect", "unreachable", "refused")

        self.fire(self.alert("Failure rate increase"))
        self.wait_for_retries()
        peers("start", "unleash")
        self.restart_unleash = False
        wait_for("%s off once Unleash is back" % PROMOTION,
                 lambda: self.unleash.state(PROMOTION)[RULE_ENV] is False, timeout=40)
        wait_for("a delivery answered 200", lambda: [r for r in self.answered() if r["status"] == 200])
        self.assertEqual(self.unleash.toggles_since(PROMOTION, marker),
                         [("feature-environment-disabled", RULE_ENV, ENV["E2E_UNLEASH_ADMIN_TOKEN_NAME"])])

    def test_5c_unknown_flag_is_reported_not_retried(self):
        self.component(rules_file="/fixtures/unknown-flag.yaml")
        status, report, _ = self.direct(am_webhook([self.alert("Failure rate increase", instance="direct")]))
        self.assertEqual(status, 200, report)
        problem = self.only_problem(report)
        self.assertEqual(problem["outcome"], "failed", problem)
        action = problem["actions"][0]
        self.assertEqual((action["outcome"], action.get("retryable")), ("failed", False), action)
        self.assertIn("EnablePromotionTypo", action.get("error") or "", action)

        self.fire(self.alert("Failure rate increase"))
        # No sleep as a negative check: wait for Alertmanager's second delivery of this group.
        # Alertmanager retries only a 5xx; a group answered 200 comes again only as its
        # repeat (repeat_interval, 5 s), answered 200 again. A retried failure shows
        # as a 5xx among the first two. Counted per group at the tap: Alertmanager's global
        # failure counter also counts other groups' retries across the component restart above.
        two = wait_for("Alertmanager's second delivery of %s answered" % self.case,
                       lambda: (lambda d: d[:2] if len(d) >= 2 else None)(self.answered()), timeout=20)
        self.assertEqual([r["status"] for r in two], [200, 200],
                         "a non-retryable failure must not be retried: %r" % [r.get("response") for r in two])
        action = self.only_problem(two[0]["response"])["actions"][0]
        self.assertEqual((action["outcome"], action.get("retryable")), ("failed", False), action)

    def test_5d_scale_endpoint_failing_is_retryable(self):
        self.receiver.mode("fail")
        status, report, _ = self.direct(am_webhook([self.alert("cpu_usage", service="carts", namespace="sockshop")]))
        self.assert_retryable_failure(status, report, "500")
        self.assertEqual(len(self.receiver.requests()), 1)

    def test_5e_scale_endpoint_hanging_times_out(self):
        self.receiver.mode("hang")
        status, report, elapsed = self.direct(
            am_webhook([self.alert("cpu_usage", service="carts", namespace="sockshop")]))
        self.assert_retryable_failure(status, report, "time")
        self.assertLess(elapsed, 3.0 + 5.0, "outbound_timeout_ms is 3000")

    # -------------------------------------------------------------- 6. credentials
    def test_6a_wrong_or_missing_bearer_gets_401_directly(self):
        self.unleash.prepare(PROMOTION, production=True)
        marker = self.unleash.last_event_id()
        body = am_webhook([self.alert("Failure rate increase")])
        attempts = {
            "missing": None,
            "wrong": "not-" + ENV["E2E_WEBHOOK_TOKEN"],
            "empty": "",
            "prefix of the token": ENV["E2E_WEBHOOK_TOKEN"][:-1],
        }
        with ThreadPoolExecutor(len(attempts)) as pool:
            results = dict(zip(attempts, pool.map(lambda t: self.direct(body, token=t), attempts.values())))
        for name, (status, answer, _) in results.items():
            self.assertEqual(status, 401, "%s credential: %r" % (name, answer))
            self.assertIsInstance(answer, dict, name)
            self.assertIn("error", answer, name)
        raw = http("POST", ENV["E2E_COMPONENT_URL"] + "/alertmanager", body,
                   {"Authorization": ENV["E2E_WEBHOOK_TOKEN"]})  # no "Bearer"
        self.assertEqual(raw[0], 401, raw[1])
        self.assertIs(self.unleash.state(PROMOTION)[RULE_ENV], True)
        self.assertEqual(self.unleash.toggles_since(PROMOTION, marker), [])

    def test_6b_alertmanager_with_bad_credentials_changes_nothing(self):
        self.unleash.prepare(PROMOTION, production=True)
        marker = self.unleash.last_event_id()
        # peers routes these labels to receivers with a wrong and with no credential.
        self.fire(self.alert("Failure rate increase", e2e_receiver="wrong-credential"),
                  self.alert("Failure rate increase", e2e_receiver="no-credential"))
        got = wait_for("both deliveries", lambda: (lambda d: d if len({
            r["body"]["alerts"][0]["labels"]["e2e_receiver"] for r in d}) == 2 else None)(
            self.answered()))
        self.assertEqual({r["status"] for r in got}, {401}, [r.get("response") for r in got])
        self.assertIs(self.unleash.state(PROMOTION)[RULE_ENV], True)
        self.assertEqual(self.unleash.toggles_since(PROMOTION, marker), [])


if __name__ == "__main__":
    unittest.main()
