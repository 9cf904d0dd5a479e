"""What remediator relies on in the real Unleash (run against 8.2.0 and 7.4.1 by tests/e2e/run):

- RolloutApi: the admin API a rollout action uses: a flexibleRollout strategy per environment,
  changed by JSON-patch (PATCH) or replaced (PUT), each change logged as a
  `feature-strategy-update` event carrying the rollout before (`preData`) and after (`data`).
- NonAdminCredential: the component with a non-admin credential (`peers` creates a personal
  access token of an Editor user, E2E_UNLEASH_PAT; service accounts are Enterprise-only)
  toggles a flag, and Unleash's event log names the token's user; the `Authorization` forms
  Unleash accepts.

Needs `tests/e2e/peers up` (tests/e2e/run does everything). Python stdlib only.
"""

import unittest
import uuid

import support
from harness import ENV, RULE_ENV, Unleash, http, now_iso, wait_for

PAT_FLAG = "E2EPatFlag"  # fixtures/pat.yaml

setUpModule = support.setUpModule


def fresh_flag(prefix):
    name = "%s%s" % (prefix, uuid.uuid4().hex[:8])
    Unleash().ensure_flag(name)
    return name


class RolloutApi(unittest.TestCase):
    maxDiff = None

    def setUp(self):
        self.unleash = Unleash()
        self.flag = fresh_flag("RolloutE2E")
        self.sid = self.unleash.add_rollout(self.flag, RULE_ENV, 50, "remediator-e2e")
        self.path = "%s/%s" % (self.unleash.strategies_path(self.flag, RULE_ENV), self.sid)

    def patch_rollout(self, value):
        return self.unleash.call("PATCH", self.path, [{"op": "replace", "path": "/parameters/rollout", "value": value}])

    def test_new_strategy_reads_back_per_environment(self):
        self.assertEqual(self.unleash.rollout(self.flag, RULE_ENV, self.sid), "50")
        [got] = self.unleash.strategies(self.flag, RULE_ENV)
        self.assertEqual({k: got.get(k) for k in ("id", "name", "title", "disabled", "sortOrder")},
                         {"id": self.sid, "name": "flexibleRollout", "title": "remediator-e2e",
                          "disabled": False, "sortOrder": 0}, got)
        self.assertEqual(got["parameters"], {"rollout": "50", "stickiness": "default", "groupId": self.flag})
        self.assertEqual(self.unleash.strategies(self.flag, "development"), [])

    def test_patch_replace_rollout_is_one_event_with_old_and_new(self):
        marker = self.unleash.last_event_id()
        status, body, _ = self.patch_rollout("0")
        self.assertEqual(status, 200, body)
        self.assertEqual(self.unleash.rollout(self.flag, RULE_ENV, self.sid), "0")
        expected = [{"environment": RULE_ENV, "strategy": self.sid, "title": "remediator-e2e",
                     "old": "50", "new": "0", "createdBy": ENV["E2E_UNLEASH_ADMIN_TOKEN_NAME"]}]
        self.assertEqual(self.unleash.rollout_updates_since(self.flag, marker), expected)
        # The same value again: 200, and Unleash logs no change.
        status, body, _ = self.patch_rollout("0")
        self.assertEqual(status, 200, body)
        self.assertEqual(self.unleash.rollout_updates_since(self.flag, marker), expected)

    def test_patch_rollout_must_be_a_string(self):
        marker = self.unleash.last_event_id()
        status, body, _ = self.patch_rollout(0)
        self.assertEqual(status, 400, body)
        self.assertEqual(self.unleash.rollout(self.flag, RULE_ENV, self.sid), "50")
        self.assertEqual(self.unleash.rollout_updates_since(self.flag, marker), [])

    def test_put_full_strategy_changes_rollout(self):
        marker = self.unleash.last_event_id()
        full = self.unleash.strategy(self.flag, RULE_ENV, self.sid)
        body = {k: full[k] for k in ("name", "title", "parameters", "constraints", "segments",
                                     "variants", "disabled", "sortOrder") if k in full}
        body["parameters"] = dict(body["parameters"], rollout="25")
        status, got, _ = self.unleash.call("PUT", self.path, body)
        self.assertEqual(status, 200, got)
        self.assertEqual(self.unleash.rollout(self.flag, RULE_ENV, self.sid), "25")
        self.assertEqual([(u["old"], u["new"]) for u in self.unleash.rollout_updates_since(self.flag, marker)],
                         [("50", "25")])

    def test_unknown_strategy_id_is_404(self):
        status, body, _ = self.unleash.call(
            "PATCH", "%s/no-such-strategy" % self.unleash.strategies_path(self.flag, RULE_ENV),
            [{"op": "replace", "path": "/parameters/rollout", "value": "0"}])
        self.assertEqual(status, 404, body)
        self.assertIsNone(self.unleash.strategy(self.flag, RULE_ENV, "no-such-strategy"))


class NonAdminCredential(support.Case):

    def test_authorization_forms_unleash_accepts(self):
        """remediator sends unleash_token raw; Unleash also takes "Bearer <token>" for both kinds."""
        flag = fresh_flag("AuthFormE2E")
        for kind, token in (("admin token", ENV["E2E_UNLEASH_ADMIN_TOKEN"]), ("PAT", ENV["E2E_UNLEASH_PAT"])):
            for form in ("%s", "Bearer %s"):
                status, _, _ = http("GET", ENV["E2E_UNLEASH_URL"] + "/api/admin/projects/default/features/" + flag,
                                    headers={"Authorization": form % token})
                self.assertEqual(status, 200, "%s as %r" % (kind, form % "<token>"))
        wrong = "user:" + "0" * 48
        for form in ("%s", "Bearer %s"):
            status, _, _ = http("GET", ENV["E2E_UNLEASH_URL"] + "/api/admin/projects",
                                headers={"Authorization": form % wrong})
            self.assertEqual(status, 401, "an unknown PAT as %r" % (form % "<token>"))

    def test_the_personal_access_token_is_not_an_admin(self):
        for kind, token, expected in (("admin token", ENV["E2E_UNLEASH_ADMIN_TOKEN"], 200),
                                      ("PAT", ENV["E2E_UNLEASH_PAT"], 403)):
            status, _, _ = http("GET", ENV["E2E_UNLEASH_URL"] + "/api/admin/user-admin",
                                headers={"Authorization": token})
            self.assertEqual(status, expected, "GET /api/admin/user-admin with the %s" % kind)

    def test_component_with_a_personal_access_token_toggles_as_its_user(self):
        self.assertTrue(ENV.get("E2E_UNLEASH_PAT", "").startswith("user:"), "peers up made no PAT")
        self.unleash.prepare(PAT_FLAG, production=True)
        # Rules of its own (fixtures/pat.yaml): no other test's occurrence holds its flag.
        self.component(unleash_token="@E2E_UNLEASH_PAT", rules_file="/fixtures/pat.yaml")
        marker = self.unleash.last_event_id()
        self.fire(self.alert("E2EPat failure rate", service="carts"))

        wait_for("%s off in %s" % (PAT_FLAG, RULE_ENV),
                 lambda: self.unleash.state(PAT_FLAG)[RULE_ENV] is False)
        creator = ENV["E2E_UNLEASH_PAT_CREATOR"]
        self.assertNotEqual(creator, ENV["E2E_UNLEASH_ADMIN_TOKEN_NAME"])
        self.assertEqual(self.unleash.toggles_since(PAT_FLAG, marker),
                         [("feature-environment-disabled", RULE_ENV, creator)])
        first = self.first_delivery()
        self.assertEqual(first["status"], 200, first.get("response"))
        self.assert_flag_action(self.only_problem(first["response"]), PAT_FLAG, False)
        # Resolve while the component still has the PAT (tearDown would restart it first, and
        # Alertmanager's retries across that restart cost seconds).
        self.am.post([dict(a, endsAt=now_iso(-1)) for a in self.fired])
        wait_for("the resolved notification answered 200", lambda: [
            r for r in self.answered() if r["body"].get("status") == "resolved" and r["status"] == 200])
        self.fired = []
        self.assertIs(self.unleash.state(PAT_FLAG)[RULE_ENV], True, "restored with the PAT")


if __name__ == "__main__":
    unittest.main()
