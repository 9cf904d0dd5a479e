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

import json
import os
import re
import subprocess
import sys
import time
import unittest
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
RUN_DIR = os.environ.get("E2E_RUN_DIR") or os.path.join(HERE, "..", "..", ".run")


def load_env():
    path = os.path.join(RUN_DIR, "env")
    env = {}
    try:
        with open(path) as f:
            for line in f:
                key, sep, value = line.rstrip("\n").partition("=")
                if sep:
                    env[key] = value
    except FileNotFoundError:
        raise unittest.SkipTest("no %s: run tests/e2e/peers up first" % path)
    return env


ENV = {}

PROMOTION = "EnablePromotion"  # rule "Failure rate increase": EnablePromotion:off
ITEM_CACHE = "EnableItemCache"  # rule "Response time degradation": EnableItemCache:on
RULE_ENV = "production"  # unleash_environment the component is served with
OTHER_ENV = "development"


# ------------------------------------------------------------------------------ plumbing
def http(method, url, body=None, headers=None, timeout=15):
    """(status, parsed JSON or text, elapsed seconds); never raises on an HTTP status."""
    data = None
    headers = dict(headers or {})
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        status, raw = err.code, err.read()
    text = raw.decode("utf-8", "replace")
    try:
        parsed = json.loads(text) if text else None
    except ValueError:
        parsed = text
    return status, parsed, time.monotonic() - t0


def wait_for(what, predicate, timeout=20.0, interval=0.2):
    """Poll predicate() until it returns something truthy; fail naming `what`."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError("timed out after %.0fs waiting for %s (last: %r)" % (timeout, what, last))


def peers(*args):
    proc = subprocess.run([ENV["E2E_PEERS"], *args], capture_output=True, text=True, timeout=180)
    if proc.returncode != 0:
        raise AssertionError("peers %s failed (%d):\n%s%s" % (" ".join(args), proc.returncode, proc.stdout, proc.stderr))


def now_iso(delta_s=0.0):
    t = datetime.now(timezone.utc) + timedelta(seconds=delta_s)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class Unleash:
    def __init__(self, token=None):
        self.url = ENV["E2E_UNLEASH_URL"]
        self.token = token or ENV["E2E_UNLEASH_ADMIN_TOKEN"]

    def call(self, method, path, body=None):
        return http(method, self.url + path, body, {"Authorization": self.token})

    def ensure_flag(self, flag):
        status, body, _ = self.call("POST", "/api/admin/projects/default/features",
                                    {"name": flag, "type": "kill-switch"})
        assert status in (201, 409), "creating flag %s: %s %r" % (flag, status, body)

    def set(self, flag, env, enabled):
        path = "/api/admin/projects/default/features/%s/environments/%s/%s" % (
            flag, env, "on" if enabled else "off")
        status, body, _ = self.call("POST", path)
        assert status == 200, "%s %s: %s %r" % (path, flag, status, body)

    def prepare(self, flag, **envs):
        """Flag exists, with the given environments set (production=True, ...)."""
        self.ensure_flag(flag)
        for env, enabled in envs.items():
            self.set(flag, env, enabled)

    def state(self, flag):
        status, body, _ = self.call("GET", "/api/admin/projects/default/features/%s" % flag)
        assert status == 200, "reading flag %s: %s %r" % (flag, status, body)
        return {e["name"]: e["enabled"] for e in body["environments"]}

    def last_event_id(self):
        status, body, _ = self.call("GET", "/api/admin/events")
        assert status == 200, (status, body)
        return max((e["id"] for e in body["events"]), default=0)

    def events_since(self, flag, marker):
        """Events for `flag` newer than `marker`, oldest first."""
        status, body, _ = self.call("GET", "/api/admin/events/%s" % flag)
        assert status == 200, (status, body)
        return sorted((e for e in body["events"] if e["id"] > marker), key=lambda e: e["id"])

    def toggles_since(self, flag, marker):
        return [(e["type"], e["environment"], e["createdBy"])
                for e in self.events_since(flag, marker)
                if e["type"] in ("feature-environment-enabled", "feature-environment-disabled")]

    # ---------------------------------------------------------- rollout strategies
    # Measured on 7.4.1 and 8.2.0 (FINDINGS.md): `parameters.rollout` is a string everywhere
    # (a JSON number is refused with 400, but any string is stored, "150" and "abc" included);
    # strategy ids are UUIDs on 7.4.1 and ULIDs on 8.2.0: opaque strings.
    def strategies_path(self, flag, env, project="default"):
        return "/api/admin/projects/%s/features/%s/environments/%s/strategies" % (project, flag, env)

    def add_rollout(self, flag, env, percent, title, project="default"):
        """Give `flag` in `env` a new flexibleRollout strategy at `percent` (grouped by the
        flag's name) with `title`; returns the strategy's id."""
        body = {"name": "flexibleRollout", "title": title,
                "parameters": {"rollout": str(percent), "stickiness": "default", "groupId": flag}}
        status, got, _ = self.call("POST", self.strategies_path(flag, env, project), body)
        assert status == 200 and isinstance(got, dict) and got.get("id"), \
            "adding a flexibleRollout to %s in %s: %s %r" % (flag, env, status, got)
        return got["id"]

    def strategy(self, flag, env, strategy_id, project="default"):
        """The strategy as Unleash stores it (id, name, title, parameters, disabled, sortOrder,
        constraints, segments, variants), or None if Unleash answers 404."""
        status, got, _ = self.call("GET", "%s/%s" % (self.strategies_path(flag, env, project), strategy_id))
        if status == 404:
            return None
        assert status == 200, "reading strategy %s of %s in %s: %s %r" % (strategy_id, flag, env, status, got)
        return got

    def rollout(self, flag, env, strategy_id, project="default"):
        """The strategy's current `parameters.rollout`, as the string Unleash stores ("50")."""
        got = self.strategy(flag, env, strategy_id, project)
        assert got is not None, "no strategy %s on %s in %s" % (strategy_id, flag, env)
        return got["parameters"].get("rollout")

    def strategies(self, flag, env, project="default"):
        """environments[name=env].strategies[] of GET feature (both versions have it; 8.x has
        no top-level strategies/variants)."""
        status, body, _ = self.call("GET", "/api/admin/projects/%s/features/%s" % (project, flag))
        assert status == 200, "reading flag %s: %s %r" % (flag, status, body)
        return [s for e in body["environments"] if e["name"] == env for s in e.get("strategies", [])]

    def rollout_updates_since(self, flag, marker=0):
        """`feature-strategy-update` events of `flag` newer than event id `marker`, oldest first,
        as dicts: environment, strategy (id), title, old and new rollout (strings, None where
        the strategy had none), createdBy. Unleash puts the strategy before the change in the
        event's `preData` and after it in `data` (7.4.1 and 8.2.0 alike)."""
        out = []
        for e in self.events_since(flag, marker):
            if e["type"] != "feature-strategy-update":
                continue
            data, pre = e.get("data") or {}, e.get("preData") or {}
            out.append({
                "environment": e.get("environment"),
                "strategy": data.get("id") or pre.get("id"),
                "title": data.get("title"),
                "old": (pre.get("parameters") or {}).get("rollout"),
                "new": (data.get("parameters") or {}).get("rollout"),
                "createdBy": e.get("createdBy"),
            })
        return out


class Recorder:
    """The scale receiver, or the tap in front of the component (scale_receiver.py)."""

    def __init__(self, url):
        self.url = url

    def requests(self):
        status, body, _ = http("GET", self.url + "/_requests")
        assert status == 200, (status, body)
        return body

    def reset(self):
        http("POST", self.url + "/_reset", {})

    def mode(self, mode):
        status, body, _ = http("POST", self.url + "/_mode", {"mode": mode})
        assert status == 200, (status, body)


def case_of(body):
    """The e2e_case of an Alertmanager webhook body or a scale request body."""
    if not isinstance(body, dict):
        return None
    for alert in body.get("alerts") or []:
        case = alert.get("labels", {}).get("e2e_case")
        if case:
            return case
    return (body.get("labels") or {}).get("e2e_case")


class Alertmanager:
    def __init__(self):
        self.url = ENV["E2E_AM_URL"]

    def post(self, alerts):
        status, body, _ = http("POST", self.url + "/api/v2/alerts", alerts)
        assert status == 200, "POST /api/v2/alerts: %s %r" % (status, body)

    def metric(self, name):
        status, text, _ = http("GET", self.url + "/metrics")
        assert status == 200
        m = re.search(r'^%s\{integration="webhook"\} (\S+)$' % re.escape(name), text, re.M)
        return float(m.group(1)) if m else 0.0

    def failed_attempts(self):
        return self.metric("alertmanager_notification_requests_failed_total")


def am_webhook(alerts, status="firing"):
    """An Alertmanager 0.25 webhook body (the shape of shared/samples/alertmanager-*.json)."""
    items = []
    for a in alerts:
        items.append({
            "status": status,
            "labels": a["labels"],
            "annotations": a.get("annotations", {}),
            "startsAt": a.get("startsAt", now_iso()),
            "endsAt": a.get("endsAt", "0001-01-01T00:00:00Z"),
            "generatorURL": "http://127.0.0.1:9090/graph",
            "fingerprint": uuid.uuid4().hex[:16],
        })
    common = dict(set.intersection(*(set(a["labels"].items()) for a in alerts)))
    common_ann = dict(set.intersection(*(set(a.get("annotations", {}).items()) for a in alerts)))
    group = {k: common[k] for k in ("alertname", "e2e_case") if k in common}
    return {
        "receiver": "remediator",
        "status": status,
        "alerts": items,
        "groupLabels": group,
        "commonLabels": common,
        "commonAnnotations": common_ann,
        "externalURL": ENV["E2E_AM_URL"],
        "version": "4",
        "groupKey": "{}:{%s}" % ", ".join('%s="%s"' % kv for kv in sorted(group.items())),
        "truncatedAlerts": 0,
    }


# ------------------------------------------------------------------------------ tests
def setUpModule():
    ENV.update(load_env())
    status, body, _ = http("GET", ENV["E2E_COMPONENT_URL"] + "/healthz", timeout=5)
    if status != 200:
        raise AssertionError("component at %s is not healthy: %s %r (peers up?)"
                             % (ENV["E2E_COMPONENT_URL"], status, body))


class Scenarios(unittest.TestCase):
    """Numbered as in issue #3; unittest runs them in name order."""

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
                # Let the resolved notification be answered now, not during the next test:
                # a restore still in flight then holds the flag ("being restored by another
                # occurrence"), and a component restart would cut it off. Alertmanager sends
                # one only for a group it delivered before.
                if any(r.get("status") == 200 for r in self.deliveries()):
                    try:
                        wait_for("the resolved notification answered", lambda: any(
                            isinstance(r["body"], dict) and r["body"].get("status") == "resolved"
                            and r.get("status") == 200 for r in self.answered()), timeout=20)
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
        first = self.first_delivery()
        self.assertEqual(first["status"], 200, first.get("response"))
        time.sleep(3)  # Alertmanager's backoff would have retried by now; its repeat is 5s away
        # Counted per group at the tap: Alertmanager's global failure counter also
        # counts other groups' retries across the component restart above.
        self.assertEqual(len(self.deliveries()), 1, "a non-retryable failure must not be retried")

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
