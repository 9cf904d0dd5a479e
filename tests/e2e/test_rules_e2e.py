"""Rules over HTTP end-to-end (issue #5): the component fetches its rules from a real HTTP
server (started here, with ETag / If-None-Match), caches them for rules_ttl_s=2, revalidates
with one conditional request per TTL, keeps the last-known-good set when the served rules are
broken, and falls back to the bundled file when the origin does not answer.

Needs the peers (tests/e2e/peers up; tests/e2e/run does everything). The tests run in name
order: test_0 needs a key-value store in which no rules were ever fetched (fresh peers).
"""

import hashlib
import socket
import sys
import threading
import time
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from harness import ENV, PROMOTION, RULE_ENV, am_webhook, peers, wait_for
from support import Case, problem_of, resolved, setUpModule  # noqa: F401 (unittest's hook)

TTL_S = 2
SERVED_FLAG = "E2EServedFlag"

RULES_V1 = """\
apiVersion: remediator/v1
rules:
  - name: e2e-served-v1
    match: {title: E2EServedRule}
    actions:
      - {flag: E2EServedFlag, state: off}
"""

RULES_V2 = """\
apiVersion: remediator/v1
rules:
  - name: e2e-served-v2
    match: {title: E2EServedRuleV2}
    actions:
      - {scale: "+1"}
"""

# Parses as YAML, fails validation: an unterminated matcher.
RULES_BROKEN = """\
apiVersion: remediator/v1
rules:
  - name: e2e-broken
    match: {title: E2EServedRuleV2, labels: ['severity="critical']}
    actions:
      - {scale: "+2"}
"""


def etag_of(text):
    return '"%s"' % hashlib.sha256(text.encode()).hexdigest()[:20]


class RulesServer:
    """Serves one rules text at /remediation.yaml with a strong ETag; answers 304 to a
    matching If-None-Match. Records (time, status, If-None-Match) per request."""

    def __init__(self):
        self.lock = threading.Lock()
        self.text = RULES_V1
        self.log = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                with server.lock:
                    text = server.text
                tag = etag_of(text)
                inm = self.headers.get("If-None-Match")
                if self.path != "/remediation.yaml":
                    status, body = 404, b"not found\n"
                elif inm == tag:
                    status, body = 304, b""
                else:
                    status, body = 200, text.encode()
                with server.lock:
                    server.log.append((time.time(), status, inm))
                self.send_response(status)
                if status != 404:
                    self.send_header("ETag", tag)
                    self.send_header("Cache-Control", "no-cache")
                if status != 304:
                    self.send_header("Content-Type", "application/yaml")
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.origin = "http://127.0.0.1:%d" % self.port
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def serve(self, text):
        with self.lock:
            self.text = text

    def requests(self):
        with self.lock:
            return list(self.log)

    def reset(self):
        with self.lock:
            self.log.clear()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def free_port():
    """A port nothing listens on (bound and released, so not reused for a moment)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Rules(Case):
    maxDiff = None
    server = None
    served_by_component = False

    @classmethod
    def setUpClass(cls):
        cls.server = RulesServer()

    @classmethod
    def tearDownClass(cls):
        try:
            if cls.served_by_component:
                peers("component")
        finally:
            cls.server.close()

    def use_server(self):
        """The component, restarted once for the class, with its rules from our server."""
        cls = type(self)
        if not cls.served_by_component:
            peers("component", "rules_origin=%s" % self.server.origin, "rules_path=/remediation.yaml",
                  "rules_ttl_s=%d" % TTL_S)
            cls.served_by_component = True

    def url(self):
        return self.server.origin + "/remediation.yaml"

    def serving(self, text):
        """Our server serves `text` to the component, which uses it; its GET /rules."""
        self.server.serve(text)
        self.use_server()
        return self.wait_version(text)

    def rules(self):
        status, body, _ = self.get("/rules")
        self.assertEqual(status, 200, body)
        return body

    def health(self):
        status, body, _ = self.get("/healthz", auth=False)
        self.assertEqual(status, 200, body)
        return body

    def webhook(self, title, **labels):
        alert = self.alert(title, **labels)
        status, report, _ = self.direct(am_webhook([alert]))
        self.assertEqual(status, 200, report)
        return report

    def wait_version(self, text, timeout=TTL_S + 5):
        return wait_for("GET /rules at version %s" % etag_of(text), lambda: (
            lambda r: r if r["version"] == etag_of(text) and r["source"] == "url " + self.url() else None)(
            self.rules()), timeout=timeout, interval=0.1)

    # ------------------------------------------------------------------ fallback
    def test_0_unreachable_origin_falls_back_to_the_bundled_rules(self):
        dead = "http://127.0.0.1:%d" % free_port()
        self.component(rules_origin=dead, rules_path="/remediation.yaml", rules_ttl_s=TTL_S)
        rules = self.rules()
        self.assertEqual(rules["source"], "bundled /remediation.yaml", rules)
        self.assertIn("%s/remediation.yaml unreachable" % dead, rules["warning"] or "", rules)
        self.assertIn("using the bundled file", rules["warning"], rules)
        self.assertEqual([r["name"] for r in rules["rules"]],
                         ["cpu_usage", "Response time degradation", "Failure rate increase"], rules)
        health = self.health()
        self.assertEqual((health["status"], health["rules"]["source"]), ("degraded", "bundled /remediation.yaml"), health)
        self.assertIn("unreachable", health["rules"]["warning"], health)

        # Unleash is still reached (a separate origin in allowed_outbound_hosts).
        self.unleash.prepare(PROMOTION, production=True)
        marker = self.unleash.last_event_id()
        body = am_webhook([self.alert("Failure rate increase", instance="fallback")])
        status, report, _ = self.direct(body)
        self.assertEqual(status, 200, report)
        p = problem_of(report)
        self.assertEqual((p["rule"], p["outcome"]), ("Failure rate increase", "acted"), p)
        self.assertEqual(report["rules_source"], "bundled /remediation.yaml", report)
        self.assertIn("unreachable", report.get("rules_warning") or "", report)
        self.assertEqual([t for t, _, _ in self.unleash.toggles_since(PROMOTION, marker)],
                         ["feature-environment-disabled"])
        self.assertIs(self.unleash.state(PROMOTION)[RULE_ENV], False)
        status, report, _ = self.direct(resolved(body))
        self.assertEqual((status, problem_of(report)["outcome"]), (200, "reverted"), report)

    # ------------------------------------------------------------------ served rules
    def test_1_served_rules_are_used(self):
        self.unleash.prepare(SERVED_FLAG, production=True)
        rules = self.serving(RULES_V1)
        self.assertEqual((rules["text"], rules["warning"], [r["name"] for r in rules["rules"]]),
                         (RULES_V1, None, ["e2e-served-v1"]), rules)
        self.assertEqual(self.health()["status"], "ok")

        marker = self.unleash.last_event_id()
        report = self.webhook("E2EServedRule")
        p = problem_of(report)
        self.assertEqual((p["rule"], p["outcome"]), ("e2e-served-v1", "acted"), p)
        self.assertEqual((report["rules_source"], report["rules_version"]), ("url " + self.url(), etag_of(RULES_V1)))
        self.assertEqual(self.unleash.toggles_since(SERVED_FLAG, marker),
                         [("feature-environment-disabled", RULE_ENV, ENV["E2E_UNLEASH_ADMIN_TOKEN_NAME"])])
        # The bundled rules are not in use: the tutorial's titles match nothing now.
        p = problem_of(self.webhook("Failure rate increase"))
        self.assertEqual(p["outcome"], "no_matching_rule", p)

    def test_2_changed_rules_apply_after_the_ttl(self):
        self.serving(RULES_V1)
        alert = self.alert("E2EServedRuleV2", service="carts")  # one occurrence, sent until it acts

        self.server.serve(RULES_V2)
        changed = time.monotonic()
        seen = []
        while True:
            status, report, _ = self.direct(am_webhook([alert]))
            self.assertEqual(status, 200, report)
            p = problem_of(report)
            seen.append((round(time.monotonic() - changed, 2), report["rules_version"], p["outcome"]))
            if p["outcome"] != "no_matching_rule":
                break
            self.assertEqual(report["rules_version"], etag_of(RULES_V1), seen)
            self.assertLess(time.monotonic() - changed, TTL_S + 3, seen)
            time.sleep(0.2)
        took = time.monotonic() - changed
        sys.stderr.write("\n  new rules in effect %.2fs after the change (TTL %ds) " % (took, TTL_S))
        self.assertEqual((p["rule"], p["outcome"], report["rules_version"]),
                         ("e2e-served-v2", "acted", etag_of(RULES_V2)), seen)
        self.assertLessEqual(took, TTL_S + 1.5, seen)
        scaled = [r for r in self.receiver.requests() if r["body"].get("rule") == "e2e-served-v2"]
        self.assertEqual(len(scaled), 1, scaled)
        p = problem_of(self.webhook("E2EServedRule"))
        self.assertEqual(p["outcome"], "no_matching_rule", p)

    def test_3_broken_rules_keep_the_last_known_good(self):
        self.serving(RULES_V2)

        self.server.serve(RULES_BROKEN)
        health = wait_for("/healthz degraded", lambda: (lambda h: h if h["status"] == "degraded" else None)(
            self.health()), timeout=TTL_S + 3, interval=0.1)
        warning = health["rules"]["warning"]
        self.assertIn("rules from %s are invalid and were not used" % self.url(), warning, health)
        self.assertIn('rules[0] ("e2e-broken").match.labels[0]', warning, health)
        self.assertIn("using the last good rules", warning, health)
        self.assertEqual((health["rules"]["source"], health["rules"]["version"]),
                         ("last-known-good from " + self.url(), etag_of(RULES_V2)), health)
        rules = self.rules()
        self.assertEqual((rules["text"], rules["version"]), (RULES_V2, etag_of(RULES_V2)), rules)

        report = self.webhook("E2EServedRuleV2", service="carts")
        p = problem_of(report)
        self.assertEqual((p["rule"], p["outcome"]), ("e2e-served-v2", "acted"), p)
        self.assertEqual([a.get("value") for a in p["actions"]], ["+1"], p)  # not the broken +2
        self.assertEqual(report["rules_source"], "last-known-good from " + self.url(), report)
        self.assertIn("invalid and were not used", report.get("rules_warning") or "", report)

        # Fixed: the good rules are served again; the next revalidation (a 304) clears the warning.
        self.server.serve(RULES_V2)
        wait_for("/healthz ok", lambda: self.health()["status"] == "ok", timeout=TTL_S + 3, interval=0.1)
        self.assertEqual(self.server.requests()[-1][1:], (304, etag_of(RULES_V2)))

    def test_4_steady_state_costs_one_conditional_request_per_ttl(self):
        self.serving(RULES_V2)
        self.server.reset()
        t0 = time.time()
        for i in range(20):  # 20 webhooks over 6 s, one after the other
            p = problem_of(self.webhook("E2ENoSuchRule", instance=str(i)))
            self.assertEqual(p["outcome"], "no_matching_rule", p)
            time.sleep(max(0.0, t0 + (i + 1) * 0.3 - time.time()))
        window = time.time() - t0
        log = self.server.requests()
        statuses = [s for _, s, _ in log]
        gaps = [round(b[0] - a[0], 2) for a, b in zip(log, log[1:])]
        sys.stderr.write("\n  20 webhooks in %.1fs: %d rule requests to the server (%d x 304, %d x 200), %s s apart " % (
            window, len(log), statuses.count(304), statuses.count(200), gaps))
        self.assertEqual(statuses.count(200), 0, log)
        self.assertEqual({(s, inm) for _, s, inm in log}, {(304, etag_of(RULES_V2))}, log)
        self.assertGreaterEqual(len(log), int(window // TTL_S) - 1, log)
        self.assertLessEqual(len(log), int(window // TTL_S) + 1, log)
        self.assertTrue(all(g >= TTL_S - 0.05 for g in gaps), "conditional requests closer than the TTL: %s" % gaps)

    # ------------------------------------------------------------------ a changed origin
    def test_5_a_new_rules_origin_is_used_at_once_and_never_mixed_with_the_old_one(self):
        """After rules_origin changes, the new origin is asked at once; the old origin's
        rules are never used under the new name, nor as its last-known-good."""
        self.serving(RULES_V2)
        other = RulesServer()
        try:
            other.serve(RULES_V1)
            self.component(rules_origin=other.origin, rules_path="/remediation.yaml", rules_ttl_s=30)
            type(self).served_by_component = False  # tearDown restores the defaults
            rules = self.rules()
            observed = (rules["source"], rules["version"], len(other.requests()))
            dead = "http://127.0.0.1:%d" % free_port()
            self.component(rules_origin=dead, rules_path="/remediation.yaml", rules_ttl_s=TTL_S)
            time.sleep(TTL_S + 0.5)
            rules = self.rules()
            observed += (rules["source"], rules["version"])
        finally:
            other.close()
        sys.stderr.write("\n  after switching origins: %s " % (observed,))
        self.assertEqual(observed, ("url %s/remediation.yaml" % other.origin, etag_of(RULES_V1), 1,
                                    "bundled /remediation.yaml", observed[4]))


if __name__ == "__main__":
    unittest.main()
