"""GET /metrics scraped by a real Prometheus (Debian's, started here with `peers start
prometheus`, scrape_interval 1s, with the bearer credential): an alert fired through the real
Alertmanager acts, then resolves; the counters Prometheus scraped, read back through its HTTP
query API, must equal exactly what the component answered (as the tap recorded it), polled
with a time bound. Also: a scrape without the credential is refused, and remediator's own
alert rules load in Prometheus."""

import time
import unittest
import urllib.parse

import support
from harness import ENV, PROMOTION, RULE_ENV, http, now_iso, peers, wait_for

setUpModule = support.setUpModule

FAMILIES = ("remediator_deliveries_total", "remediator_problems_total",
            "remediator_actions_total", "remediator_circuit_open_total")


def labels_key(name, labels):
    return "%s{%s}" % (name, ",".join('%s="%s"' % kv for kv in sorted(labels.items())))


def tally(answers):
    """What the component's counters add for these answers (status, report) to route
    /alertmanager, computed from the reports as the tap recorded them."""
    out = {}

    def add(key, n=1):
        out[key] = out.get(key, 0) + n
    for status, report in answers:
        problems = report.get("problems", []) if isinstance(report, dict) else []
        if (status == 200 and problems and not report.get("rejected") and not report.get("not_processed")
                and all(p["outcome"] == "no_matching_rule" for p in problems)):
            continue  # no rule matched anything: counted only with count_unmatched
        add(labels_key("remediator_deliveries_total", {"route": "/alertmanager", "code": str(status)}))
        for p in problems:
            add(labels_key("remediator_problems_total", {"outcome": p["outcome"]}))
            if p["outcome"] == "circuit_open":
                add(labels_key("remediator_circuit_open_total", {"rule": p["rule"]}))
            for a in p.get("actions", []):
                add(labels_key("remediator_actions_total", {"kind": a["action"], "result": a["outcome"]}))
    return out


class Prometheus:
    def __init__(self):
        self.url = ENV["E2E_PROM_URL"]

    def api(self, path, **params):
        status, body, _ = http("GET", "%s/api/v1/%s?%s" % (self.url, path, urllib.parse.urlencode(params)))
        assert status == 200 and isinstance(body, dict) and body.get("status") == "success", \
            "GET /api/v1/%s %r: %s %r" % (path, params, status, body)
        return body["data"]

    def query(self, q):
        """Instant vector of `q` as {series: value}, without Prometheus's own labels."""
        out = {}
        for r in self.api("query", query=q)["result"]:
            metric = {k: v for k, v in r["metric"].items() if k not in ("__name__", "job", "instance")}
            out[labels_key(r["metric"].get("__name__", q), metric)] = float(r["value"][1])
        return out

    def counters(self):
        return self.query('{__name__=~"%s",job="remediator"}' % "|".join(FAMILIES))


def scrape_directly():
    """The component's counters now (no scrape lag), parsed from GET /metrics."""
    status, text, _ = http("GET", ENV["E2E_COMPONENT_URL"] + "/metrics",
                           headers={"Authorization": "Bearer %s" % ENV["E2E_METRICS_TOKEN"]})
    assert status == 200, (status, text)
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(FAMILIES):
            continue
        series, value = line.rsplit(" ", 1)
        name, _, rest = series.partition("{")
        labels = {}
        for part in rest.rstrip("}").split('",') if rest else []:
            k, _, v = part.partition('="')
            labels[k] = v.rstrip('"')
        out[labels_key(name, labels)] = float(value)
    return out


class Metrics(support.Case):
    @classmethod
    def setUpClass(cls):
        peers("start", "prometheus")

    @classmethod
    def tearDownClass(cls):
        peers("stop", "prometheus")

    def test_prometheus_reads_the_exact_counts_of_an_alert_that_acts_and_resolves(self):
        prom = Prometheus()
        # Both jobs scraped: with the credential (up), without it (refused: 401).
        wait_for("both scrape jobs", lambda: len(prom.api("query", query="up")["result"]) == 2, timeout=30)
        ups = {r["metric"]["job"]: r["value"][1] for r in prom.api("query", query="up")["result"]}
        self.assertEqual(ups, {"remediator": "1", "remediator-no-token": "0"})
        refused = [t for t in prom.api("targets")["activeTargets"] if t["labels"]["job"] == "remediator-no-token"]
        self.assertIn("401", refused[0]["lastError"], refused)
        # remediator's own alert rules are loaded and evaluate.
        rules = [r for g in prom.api("rules")["groups"] for r in g["rules"]]
        self.assertEqual(sorted(r["name"] for r in rules), [
            "RemediatorActionsFailing", "RemediatorBudgetExhausted", "RemediatorCircuitOpen",
            "RemediatorDeliveriesFailing", "RemediatorNotificationsFailing", "RemediatorRulesDegraded"])
        wait_for("the rules evaluated", lambda: all(
            r["health"] == "ok" for g in prom.api("rules")["groups"] for r in g["rules"]), timeout=10)
        self.assertEqual(prom.query('remediator_rules_source{job="remediator"}'), {
            labels_key("remediator_rules_source", {"state": s}): float(s == "bundled")
            for s in ("bundled", "url", "last_known_good", "degraded")})

        # The component's counters now, and from here on everything Alertmanager sends.
        before = scrape_directly()
        tap_mark = len(self.tap.requests())
        self.unleash.prepare(PROMOTION, production=True)
        self.fire(self.alert("Failure rate increase", service="carts"))
        wait_for("%s off" % PROMOTION, lambda: self.unleash.state(PROMOTION)[RULE_ENV] is False)
        self.am.post([dict(self.fired[0], endsAt=now_iso(-1))])
        self.fired = []
        wait_for("%s restored" % PROMOTION, lambda: self.unleash.state(PROMOTION)[RULE_ENV] is True)
        # A delivery with a wrong credential, straight to the component.
        status, _, _ = http("POST", ENV["E2E_COMPONENT_URL"] + "/", {"alerts": []},
                            {"Authorization": "Bearer wrong"})
        self.assertEqual(status, 401)

        def answers():
            recorded = self.tap.requests()[tap_mark:]
            return [(r["status"], r.get("response")) for r in recorded if "status" in r]

        def expected():
            want = dict(before)
            for k, n in tally(answers()).items():
                want[k] = want.get(k, 0) + n
            k401 = labels_key("remediator_deliveries_total", {"route": "/", "code": "401"})
            want[k401] = want.get(k401, 0) + 1
            return want

        last = {}

        def prometheus_agrees():
            last["prom"], last["want"] = prom.counters(), expected()
            return last["prom"] == last["want"]
        try:
            wait_for("Prometheus's counters to equal the component's answers", prometheus_agrees, timeout=30)
        except AssertionError:
            self.assertEqual(last.get("prom"), last.get("want"))
            raise
        # And what that is, independently of the tally: one action, its undo.
        delta = {k: v - before.get(k, 0) for k, v in last["prom"].items() if v != before.get(k, 0)}
        self.assertEqual(delta[labels_key("remediator_problems_total", {"outcome": "acted"})], 1, delta)
        self.assertEqual(delta[labels_key("remediator_problems_total", {"outcome": "reverted"})], 1, delta)
        self.assertEqual(delta[labels_key("remediator_actions_total",
                                          {"kind": "featuretoggle", "result": "done"})], 2, delta)
        self.assertEqual(delta[labels_key("remediator_deliveries_total", {"route": "/", "code": "401"})], 1)
        self.assertGreaterEqual(delta[labels_key("remediator_deliveries_total",
                                                 {"route": "/alertmanager", "code": "200"})], 2, delta)
        # The secret credential is nowhere in what Prometheus stored.
        series = prom.api("series", **{"match[]": '{job=~"remediator.*"}'})
        for token in ("E2E_METRICS_TOKEN", "E2E_WEBHOOK_TOKEN", "E2E_UNLEASH_ADMIN_TOKEN"):
            self.assertNotIn(ENV[token], repr(series))


if __name__ == "__main__":
    unittest.main()
