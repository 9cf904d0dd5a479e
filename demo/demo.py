#!/usr/bin/env python3
"""The self-healing demo's conductor (Python stdlib only); `demo/run` calls it once the
peers (PostgreSQL, Unleash) are up.

It starts, each on a free loopback port and each stopped by its PID at the end: the shop
(shop.py serve) and its load (shop.py load), remediator (the built component on
remediator-host, with demo/remediation.yaml), Alertmanager and Prometheus (Debian's). It
creates the flags EnableItemsCache and EnablePromotion, turns EnablePromotion on, and
watches the loop close: the shop fails, Prometheus's alert goes pending then firing,
Alertmanager calls remediator, remediator turns the flag off in Unleash, the shop recovers,
the alert resolves. Meanwhile it prints a timeline from Prometheus (/api/v1/alerts),
Alertmanager (/api/v2/alerts), remediator (/audit), Unleash (/api/admin/events) and the
shop. At the end it writes demo/out/timeline.html (inline SVG) and demo/out/summary.json.

With DEMO_BROWSER=1 (demo/test sets it), once the loop closed and the summary is written,
it sends a second alert through the same Alertmanager, one whose rule reverts on resolve
(Response time degradation: EnableItemsCache on, then back off), resolves it, and runs the
browser test of remediator's audit page (tests/browser/audit_page.mjs, Debian's chromium)
over what both occurrences left; its screenshot is demo/out/audit.png, its verdict
summary.json's "audit_page".

Environment: DEMO_QUICK=1 (shorter baseline and tail), DEMO_WITH_REVERT=1 (the promotion
rule reverts on resolve, with a circuit breaker), DEMO_BROWSER=1 (the audit page's browser
test), DEMO_RUN_DIR (state, logs), DEMO_OUT (outputs), E2E_RUN_DIR (the peers' env file),
DEMO_HOST_BIN, DEMO_WASM.
"""

import html
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
from datetime import datetime, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
import harness  # noqa: E402 (HTTP, processes, ports, waiting, the peers' env)
PEERS_RUN = os.environ.get("E2E_RUN_DIR") or os.path.join(ROOT, ".run")
RUN = os.environ.get("DEMO_RUN_DIR") or os.path.join(PEERS_RUN, "demo")
OUT = os.environ.get("DEMO_OUT") or os.path.join(HERE, "out")
HOST_BIN = os.environ.get("DEMO_HOST_BIN") or os.path.join(
    ROOT, "tests/host/target/release/remediator-host")
WASM = os.environ.get("DEMO_WASM") or os.path.join(
    ROOT, "target/wasm32-wasip2/release/remediator_component.wasm")
QUICK = os.environ.get("DEMO_QUICK") == "1"
WITH_REVERT = os.environ.get("DEMO_WITH_REVERT") == "1"
BROWSER = os.environ.get("DEMO_BROWSER") == "1"

ALERT = "HighFailureRate"
SUMMARY = "Failure rate increase on carts"
FLAG = "EnablePromotion"
SLACK_PATH = "/services/T0DEMO/B0DEMO/demo-incoming-webhook"  # notify_1_path: a secret in real use
FLAGS = ("EnableItemsCache", FLAG)
RATIO = ('sum(rate(http_requests_total{job="shop",code=~"5.."}[5s]))'
         ' / sum(rate(http_requests_total{job="shop"}[5s]))')
BASELINE_S = 6 if QUICK else 20      # healthy traffic before the promotion goes on
TAIL_S = 3 if QUICK else 15          # after the loop closed, for the picture
DEADLINE_S = 120 if QUICK else 240   # from promotion on to "loop closed"
REVERT_ACTIONS = 2                   # --with-revert: max_actions per window


def log(msg):
    print(msg, flush=True)


# ------------------------------------------------------------------------------ plumbing
# http(): (status, parsed JSON or text), status 0 when nothing answered.
http = harness.http_or_0


def parse_ts(s):
    """RFC 3339 (Go's nanoseconds too) -> Unix seconds (float)."""
    if not s:
        return None
    s = s.replace("Z", "+00:00")
    if "." in s:
        head, rest = s.split(".", 1)
        i = 0
        while i < len(rest) and rest[i].isdigit():
            i += 1
        s = head + "." + rest[:i][:6].ljust(6, "0") + rest[i:]
    return datetime.fromisoformat(s).timestamp()


def hhmmss(t):
    return datetime.fromtimestamp(t).strftime("%H:%M:%S.%f")[:-3]


def wait_until(what, pred, timeout, procs=None, every=0.2):
    return harness.wait_for(what, pred, timeout, every, check=procs.check if procs else None,
                            fail=lambda msg: SystemExit("demo: " + msg))


def secret_file(d, name, value):
    """d/name holding `value`, readable by this user only, and an empty d/data; its path."""
    os.makedirs(os.path.join(d, "data"), exist_ok=True)
    path = os.path.join(d, name)
    with open(path, "w") as f:
        f.write(value)
    os.chmod(path, 0o600)
    return path


# ------------------------------------------------------------------------------ setup
class Demo:
    def __init__(self):
        self.env = harness.load_env(PEERS_RUN)
        self.procs = harness.Procs(os.path.join(RUN, "logs"), pids=os.path.join(RUN, "pids"),
                                   say=lambda msg: log("demo: " + msg))
        self.ports = {k: harness.free_port() for k in ("shop", "remediator", "alertmanager",
                                               "prometheus")}
        self.url = {k: "http://127.0.0.1:%d" % p for k, p in self.ports.items()}
        self.unleash = self.env["E2E_UNLEASH_URL"]
        self.admin = self.env["E2E_UNLEASH_ADMIN_TOKEN"]
        self.webhook_token = os.urandom(16).hex()
        self.metrics_token = os.urandom(16).hex()
        self.marks = {}      # stage -> Unix seconds (first time seen)
        self.lines = []      # (t, source, text) printed timeline
        self.seen = set()
        self.prom_state = None
        self.am_seen = False

    # -- Unleash
    def ua(self, method, path, body=None):
        return http(method, self.unleash + path, body, {"Authorization": self.admin})

    def setup_unleash(self):
        for name in FLAGS:
            st, _ = self.ua("POST", "/api/admin/projects/default/features",
                            {"name": name, "type": "release", "description": "carts"})
            if st not in (201, 409):
                raise SystemExit("demo: creating flag %s in Unleash: HTTP %s" % (name, st))
        st, _ = self.ua("POST", "/api/admin/projects/default/features/%s/environments/"
                        "production/off" % FLAG)
        # The shop reads production flags with a backend token of its own.
        token = None
        for kind in ("backend", "client"):
            st, body = self.ua("POST", "/api/admin/api-tokens", {
                "tokenName": "demo-shop", "type": kind, "environment": "production",
                "projects": ["*"]})
            if st in (200, 201) and isinstance(body, dict) and body.get("secret"):
                token = body["secret"]
                break
        if not token:
            raise SystemExit("demo: could not create a production backend token: HTTP %s %s"
                             % (st, body))
        _, ev = self.ua("GET", "/api/admin/events")
        self.unleash_last_event = max([e["id"] for e in (ev or {}).get("events", [])] or [0])
        return token

    # -- processes
    def start_shop(self, token):
        self.procs.start("shop", [sys.executable, "-u", os.path.join(HERE, "shop.py"), "serve",
                                  "--listen", "127.0.0.1:%d" % self.ports["shop"],
                                  "--unleash-url", self.unleash, "--token", token])
        wait_until("the shop", lambda: http("GET", self.url["shop"] + "/healthz")[0] == 200,
                   10, self.procs)
        self.procs.start("load", [sys.executable, "-u", os.path.join(HERE, "shop.py"), "load",
                                  "--url", self.url["shop"] + "/cart/add", "--rps", "20"])

    def start_remediator(self):
        app = os.path.join(RUN, "app")
        os.makedirs(app, exist_ok=True)
        shutil.copy(os.path.join(ROOT, "spin.toml"), os.path.join(app, "spin.toml"))
        with open(os.path.join(HERE, "remediation.yaml")) as f:
            rules = f.read()
        if WITH_REVERT:
            rules = rules.replace(
                "    revert: false\n",
                "    revert: true                 # --with-revert: undo on resolve...\n"
                "    max_actions: %d per 10m       # ...and let the circuit breaker end the loop\n"
                % REVERT_ACTIONS)
            assert "max_actions" in rules
        with open(os.path.join(app, "remediation.yaml"), "w") as f:
            f.write(rules)
        variables = {
            "unleash_url": self.unleash, "unleash_token": self.admin,
            "unleash_project": "default", "unleash_environment": "production",
            "scale_url": self.env["E2E_RECEIVER_URL"], "scale_path": "/scale",
            "webhook_token": self.webhook_token, "rules_file": "/remediation.yaml",
            "metrics_token": self.metrics_token,
            # The Slack channel of the rules' notify: the recording receiver plays Slack.
            "notify_1_origin": self.env["E2E_RECEIVER_URL"], "notify_1_path": SLACK_PATH,
        }
        penv = {k: v for k, v in os.environ.items() if not k.startswith("SPIN_VARIABLE_")}
        penv.update({"SPIN_VARIABLE_" + k.upper(): v for k, v in variables.items()})
        self.procs.start("remediator", [
            HOST_BIN, "serve", "--manifest", os.path.join(app, "spin.toml"), "--wasm", WASM,
            "--listen", "127.0.0.1:%d" % self.ports["remediator"],
            "--kv-path", os.path.join(RUN, "kv.sqlite")], env=penv)
        wait_until("remediator",
                   lambda: http("GET", self.url["remediator"] + "/healthz")[0] != 0,
                   60, self.procs)
        st, body = http("GET", self.url["remediator"] + "/healthz")
        if st != 200:
            raise SystemExit("demo: remediator is unhealthy: %s %s" % (st, body))

    def start_alertmanager(self):
        d = os.path.join(RUN, "alertmanager")
        cred = secret_file(d, "remediator-token", self.webhook_token)
        with open(os.path.join(d, "alertmanager.yml"), "w") as f:
            f.write("""route:
  receiver: remediator
  group_by: ['alertname']
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: remediator
    webhook_configs:
      - url: %s/alertmanager
        send_resolved: true          # the resolve closes the loop in remediator's audit
        max_alerts: 0
        http_config:
          authorization:
            type: Bearer
            credentials_file: %s
""" % (self.url["remediator"], cred))
        self.procs.start("alertmanager", [
            "prometheus-alertmanager", "--config.file=" + os.path.join(d, "alertmanager.yml"),
            "--storage.path=" + os.path.join(d, "data"),
            "--web.listen-address=127.0.0.1:%d" % self.ports["alertmanager"],
            "--cluster.listen-address="])
        wait_until("Alertmanager",
                   lambda: http("GET", self.url["alertmanager"] + "/-/ready")[0] == 200,
                   20, self.procs)

    def start_prometheus(self):
        d = os.path.join(RUN, "prometheus")
        cred = secret_file(d, "remediator-metrics-token", self.metrics_token)
        with open(os.path.join(d, "rules.yml"), "w") as f:
            f.write("""groups:
  - name: shop
    interval: 1s
    rules:
      - record: shop:failure_ratio
        expr: %s
      - alert: %s
        expr: shop:failure_ratio > 0.1
        for: 5s
        labels:
          severity: critical
          service: carts
        annotations:
          summary: "%s"
""" % (RATIO, ALERT, SUMMARY))
        with open(os.path.join(d, "prometheus.yml"), "w") as f:
            f.write("""global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [%s]
alerting:
  alertmanagers:
    - static_configs:
        - targets: ['127.0.0.1:%d']
scrape_configs:
  - job_name: shop
    static_configs:
      - targets: ['127.0.0.1:%d']
  - job_name: remediator        # its own counters (GET /metrics)
    static_configs:
      - targets: ['127.0.0.1:%d']
    authorization:
      type: Bearer
      credentials_file: %s
""" % (json.dumps(os.path.join(d, "rules.yml")), self.ports["alertmanager"],
       self.ports["shop"], self.ports["remediator"], json.dumps(cred)))
        self.procs.start("prometheus", [
            "prometheus", "--config.file=" + os.path.join(d, "prometheus.yml"),
            "--storage.tsdb.path=" + os.path.join(d, "data"),
            "--web.listen-address=127.0.0.1:%d" % self.ports["prometheus"]])
        wait_until("Prometheus",
                   lambda: http("GET", self.url["prometheus"] + "/-/ready")[0] == 200,
                   20, self.procs)

    def prom_query(self, q):
        st, body = http("GET", self.url["prometheus"] + "/api/v1/query?" +
                        urllib.parse.urlencode({"query": q}))
        if st != 200 or not isinstance(body, dict):
            return []
        return body.get("data", {}).get("result", [])

    # -- the timeline
    def note(self, t, source, text, key=None):
        key = key or (source, text)
        if key in self.seen:
            return False
        self.seen.add(key)
        self.lines.append((t, source, text))
        log("%s  %-13s %s" % (hhmmss(t), source, text))
        return True

    def mark(self, stage, t):
        if stage not in self.marks and t is not None:
            self.marks[stage] = t

    def poll(self):
        now = time.time()
        # The shop: what it saw of the flag.
        st, shop = http("GET", self.url["shop"] + "/state")
        if st == 200:
            for c in shop["changes"]:
                if self.note(c["at"], "shop", "sees %s %s: failure rate %s" % (
                        FLAG, "ON" if c["promotion"] else "OFF",
                        "rises (~30 %)" if c["promotion"] else "falls (~0.5 %)"),
                        key=("shop", c["at"])):
                    self.mark("shop_sees_flag_on" if c["promotion"] else "shop_sees_flag_off",
                              c["at"])
        # Prometheus: the alert's state.
        st, body = http("GET", self.url["prometheus"] + "/api/v1/alerts")
        if st == 200:
            alerts = [a for a in body["data"]["alerts"] if a["labels"].get("alertname") == ALERT]
            state = alerts[0]["state"] if alerts else None
            if state != self.prom_state:
                if state == "pending":
                    t = parse_ts(alerts[0]["activeAt"])
                    self.mark("prometheus_pending", t)
                    self.note(t, "prometheus", "alert %s pending (failure ratio > 0.1)" % ALERT,
                              key=("prom", "pending", t))
                elif state == "firing":
                    self.mark("prometheus_firing_seen", now)
                    self.note(now, "prometheus", "alert %s firing (for: 5s held)" % ALERT,
                              key=("prom", "firing", alerts[0]["activeAt"]))
                elif state is None and self.prom_state is not None:
                    self.mark("prometheus_resolved_seen", now)
                    self.note(now, "prometheus", "alert %s resolved" % ALERT,
                              key=("prom", "resolved", now))
                self.prom_state = state
            if alerts:
                self.mark("failure_ratio_peak_seen", now)
        # Alertmanager: the alert as it received it.
        st, body = http("GET", self.url["alertmanager"] + "/api/v2/alerts?" +
                        urllib.parse.urlencode({"filter": 'alertname="%s"' % ALERT}))
        if st == 200:
            for a in body:
                starts = parse_ts(a["startsAt"])
                if self.note(parse_ts(a["updatedAt"]), "alertmanager",
                             "received %s (startsAt %s, the moment Prometheus fired)"
                             % (ALERT, hhmmss(starts)), key=("am", a["fingerprint"], starts)):
                    self.mark("prometheus_firing", starts)
                    self.mark("alertmanager_received", parse_ts(a["updatedAt"]))
            if self.am_seen and not body:
                self.note(now, "alertmanager", "%s no longer active (resolved)" % ALERT,
                          key=("am", "resolved", len(self.lines)))
                self.mark("alertmanager_resolved", now)
            self.am_seen = bool(body)
        # remediator: its audit trail.
        st, body = http("GET", self.url["remediator"] + "/audit?limit=200",
                        headers={"Authorization": "Bearer " + self.webhook_token})
        if st == 200:
            entries = body if isinstance(body, list) else body.get("entries", [])
            # Newest first from the API; oldest first here, stable within a millisecond.
            for e in sorted(reversed(entries), key=lambda e: e["at_ms"]):
                t = e["at_ms"] / 1000.0
                what = e["event"]
                extra = e.get("detail") or ""
                text = "%s %s%s" % (what, e.get("title", ""), (": " + extra) if extra else "")
                if self.note(t, "remediator", text[:150],
                             key=("audit", e["delivery"], what, e.get("rule"), extra)):
                    self.audit.append(e)
                    if what == "received" and "remediator_acted" in self.marks:
                        self.mark("webhook_resolved", t)
                    elif what == "received":
                        self.mark("webhook_received", t)
                    elif what == "acted":
                        self.mark("remediator_acted", t)
                    elif what == "notified":
                        self.mark("slack_notified", t)
        # "Slack" (the recording receiver): the messages remediator sent.
        st, body = http("GET", self.env["E2E_RECEIVER_URL"] + "/_requests")
        if st == 200:
            for r in body:
                if r.get("path") == SLACK_PATH and isinstance(r.get("body"), dict):
                    self.note(r["time"], "slack", "message: %s" % str(r["body"].get("text"))[:140],
                              key=("slack", r["seq"]))
        # Unleash: the event log.
        st, body = http("GET", self.unleash + "/api/admin/events",
                        headers={"Authorization": self.admin})
        if st == 200:
            for e in sorted(body.get("events", []), key=lambda e: e["id"]):
                if e["id"] <= self.unleash_last_event or e.get("featureName") not in FLAGS:
                    continue
                t = parse_ts(e["createdAt"])
                if self.note(t, "unleash", "%s %s (%s, by %s)" % (
                        e["type"], e.get("featureName"), e.get("environment") or "-",
                        e.get("createdBy")), key=("unleash", e["id"])):
                    self.unleash_events.append(e)
                    if e["type"] == "feature-environment-enabled" and \
                            e.get("featureName") == FLAG and e.get("environment") == "production":
                        self.mark("flag_turned_on", t)
                    if e["type"] == "feature-environment-disabled" and \
                            e.get("featureName") == FLAG and e.get("environment") == "production":
                        self.mark("unleash_flag_off", t)

    def flag_enabled(self, flag=FLAG):
        st, f = self.ua("GET", "/api/admin/projects/default/features/" + flag)
        return [e["enabled"] for e in f["environments"] if e["name"] == "production"][0]

    # -- the audit page in a real browser
    def audit_page(self):
        """A second occurrence through the real Alertmanager whose rule reverts on resolve
        (EnableItemsCache on, then back off), then the browser test over the audit page.
        True when every check passed."""
        flag = FLAGS[0]
        am = self.url["alertmanager"] + "/api/v2/alerts"
        now = lambda: datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        alert = {"labels": {"alertname": "Response time degradation", "service": "carts"},
                 "annotations": {"summary": "Response time degradation on carts"},
                 "generatorURL": self.url["prometheus"] + "/graph?g0.expr=" +
                 urllib.parse.quote("histogram_quantile(0.9, rate(latency_bucket[1m])) > 1"),
                 "startsAt": now()}
        log("demo: audit page: alert %r through Alertmanager (%s on, back off on resolve)"
            % (alert["labels"]["alertname"], flag))
        st, _ = http("POST", am, [alert])
        if st != 200:
            log("demo: audit page: Alertmanager refused the alert: HTTP %s" % st)
            return False
        wait_until("%s on in production" % flag, lambda: self.flag_enabled(flag), 30, self.procs)
        st, _ = http("POST", am, [dict(alert, endsAt=now())])
        if st != 200:
            log("demo: audit page: Alertmanager refused the resolve: HTTP %s" % st)
            return False
        wait_until("%s back off" % flag, lambda: not self.flag_enabled(flag), 30, self.procs)

        def reverted():
            st, body = http("GET", self.url["remediator"] + "/audit?outcome=reverted",
                            headers={"Authorization": "Bearer " + self.webhook_token})
            return st == 200 and any(e.get("action", {}).get("flag") == flag
                                     for e in body.get("entries", []))
        wait_until("remediator's audit to record the revert", reverted, 10, self.procs)
        env = dict(os.environ, AUDIT_URL=self.url["remediator"], AUDIT_TOKEN=self.webhook_token,
                   AUDIT_ACTED_FLAG=FLAG, AUDIT_REVERTED_FLAG=flag,
                   AUDIT_UNLEASH_URL=self.unleash, AUDIT_UNLEASH_PROJECT="default",
                   AUDIT_SCREENSHOT=os.path.join(OUT, "audit.png"))
        rc = subprocess.call(["node", os.path.join(ROOT, "tests/browser/audit_page.mjs")],
                             env=env, stdin=subprocess.DEVNULL, timeout=180)
        log("demo: audit page: browser test %s" % ("passed" if rc == 0 else "FAILED (%d)" % rc))
        return rc == 0

    # -- the run
    def run(self):
        os.makedirs(os.path.join(RUN, "logs"), exist_ok=True)
        os.makedirs(OUT, exist_ok=True)
        self.audit, self.unleash_events = [], []
        t_setup = time.time()
        log("demo: %s%s; state in %s" % ("--quick" if QUICK else "full run",
                                         ", --with-revert" if WITH_REVERT else "", RUN))
        token = self.setup_unleash()
        self.start_remediator()
        self.start_alertmanager()
        self.start_shop(token)
        self.start_prometheus()
        log("demo: shop %s, remediator %s, alertmanager %s, prometheus %s" % (
            self.url["shop"], self.url["remediator"], self.url["alertmanager"],
            self.url["prometheus"]))
        wait_until("Prometheus to scrape the shop",
                   lambda: any(r["value"][1] == "1" for r in self.prom_query('up{job="shop"}')),
                   30, self.procs)
        t_scraped = time.time()
        log("demo: baseline traffic for %ds (failure ratio ~0.005)" % BASELINE_S)
        end = time.time() + BASELINE_S
        while time.time() < end:
            self.poll()
            time.sleep(0.25)
        log("demo: turning %s ON in production, as the tutorial's reader did" % FLAG)
        st, _ = self.ua("POST", "/api/admin/projects/default/features/%s/environments/"
                        "production/on" % FLAG)
        if st != 200:
            raise SystemExit("demo: turning %s on: HTTP %s" % (FLAG, st))
        t_on = time.time()
        self.mark("flag_turned_on_request", t_on)
        closed_at = None
        deadline = t_on + DEADLINE_S
        while time.time() < deadline:
            self.procs.check()
            self.poll()
            if closed_at is None and self.loop_closed():
                closed_at = time.time()
                log("demo: the loop closed; %ds more for the picture" % TAIL_S)
            if closed_at is not None and time.time() >= closed_at + TAIL_S:
                break
            time.sleep(0.25)
        self.poll()
        t_end = time.time()
        summary = self.finish(t_scraped, t_end, closed_at is not None, t_setup)
        if BROWSER and closed_at is not None:
            summary["audit_page"] = {"ok": self.audit_page(), "screenshot": "audit.png"}
            with open(os.path.join(OUT, "summary.json"), "w") as f:
                json.dump(summary, f, indent=2)
                f.write("\n")
        return summary

    def loop_closed(self):
        resolved_in_remediator = any(e["event"] == "received" and "resolved" in
                                     json.dumps(e).lower() for e in self.audit)
        if WITH_REVERT:
            return any(e["event"] == "circuit_open" for e in self.audit)
        return ("unleash_flag_off" in self.marks and "prometheus_resolved_seen" in self.marks
                and ("alertmanager_resolved" in self.marks or resolved_in_remediator))

    def alert_samples(self):
        """Prometheus's own record of the alert: the raw samples of ALERTS, one per rule
        evaluation while pending or firing. The first evaluation after the first run of
        firing samples is the moment the alert resolved."""
        res = self.prom_query('ALERTS{alertname="%s",alertstate="firing"}[30m]' % ALERT)
        ts = sorted(float(t) for r in res for t, _ in r.get("values", []))
        if not ts:
            return
        self.mark("prometheus_firing", ts[0])
        for a, b in zip(ts, ts[1:] + [None]):
            if b is None or b - a > 1.5:
                if b is not None or self.prom_state is None:
                    self.mark("prometheus_resolved", a + 1.0)  # evaluation_interval: 1s
                break

    # -- outputs
    def finish(self, t0, t1, closed, t_setup):
        self.alert_samples()
        series = []
        st, body = http("GET", self.url["prometheus"] + "/api/v1/query_range?" +
                        urllib.parse.urlencode({"query": RATIO, "start": "%.3f" % t0,
                                                "end": "%.3f" % t1, "step": "1"}))
        if st == 200 and body["data"]["result"]:
            series = [(float(t), float(v)) for t, v in body["data"]["result"][0]["values"]
                      if v not in ("NaN", "+Inf", "-Inf")]
        flag_on_now = self.flag_enabled()
        # remediator's own counters, as the demo's Prometheus scraped them from /metrics.
        own = {}
        for name, label in (("problems", "outcome"), ("deliveries", "code")):
            for r in self.prom_query('remediator_%s_total{job="remediator"}' % name):
                key = r["metric"].get(label, "")
                if name == "deliveries":
                    key = "%s %s" % (r["metric"].get("route", ""), key)
                own.setdefault(name, {})[key] = float(r["value"][1])
        acted = [e for e in self.audit if e["event"] == "acted"]
        circuit = [e for e in self.audit if e["event"] == "circuit_open"]
        notified = [e for e in self.audit if e["event"] == "notified"]
        m = self.marks
        start = m.get("shop_sees_flag_on")

        def d(a, b):
            return round(m[b] - m[a], 3) if a in m and b in m else None

        stages = [
            ("failure start (shop sees flag on) -> Prometheus pending",
             d("shop_sees_flag_on", "prometheus_pending")),
            ("Prometheus pending -> firing (for: 5s)", d("prometheus_pending",
                                                         "prometheus_firing")),
            ("Prometheus firing -> Alertmanager received", d("prometheus_firing",
                                                             "alertmanager_received")),
            ("Alertmanager received -> webhook at remediator", d("alertmanager_received",
                                                                 "webhook_received")),
            ("webhook at remediator -> Unleash event (flag off)", d("webhook_received",
                                                                    "unleash_flag_off")),
        ]
        recovery = [
            ("Unleash event (flag off) -> shop sees it", d("unleash_flag_off",
                                                           "shop_sees_flag_off")),
            ("shop recovers -> Prometheus resolved", d("shop_sees_flag_off",
                                                      "prometheus_resolved")),
            ("Prometheus resolved -> resolved webhook at remediator",
             d("prometheus_resolved", "webhook_resolved")),
        ]
        summary = {
            "mode": "quick" if QUICK else "full",
            "with_revert": WITH_REVERT,
            "loop_closed": closed,
            "flag_off": not flag_on_now,
            "alert_resolved": "prometheus_resolved" in m,
            "actions": len(acted),
            "circuit_open": len(circuit),
            "remediator_metrics": own,
            "notified": len(notified),
            "seconds": {
                "failure_start_to_flag_off": d("shop_sees_flag_on", "unleash_flag_off"),
                "flag_on_to_failure_start": d("flag_turned_on", "shop_sees_flag_on"),
                "stages": {k: v for k, v in stages},
                "recovery_stages": {k: v for k, v in recovery},
                "flag_off_to_alert_resolved": d("unleash_flag_off", "prometheus_resolved"),
                "failure_start_to_alert_resolved": d("shop_sees_flag_on",
                                                     "prometheus_resolved"),
                "whole_demo": round(time.time() - t_setup, 1),
            },
            "moments": {k: datetime.fromtimestamp(v, timezone.utc).isoformat(
                timespec="milliseconds") for k, v in sorted(m.items(), key=lambda kv: kv[1])},
            "sources": {
                "failure start": "shop /state (when its Unleash poll saw the flag on)",
                "pending": "Prometheus /api/v1/alerts activeAt",
                "firing": "Alertmanager /api/v2/alerts startsAt (Prometheus's FiredAt)",
                "alertmanager": "Alertmanager /api/v2/alerts updatedAt",
                "webhook": "remediator /audit 'received'",
                "flag off": "Unleash /api/admin/events feature-environment-disabled createdAt",
                "resolved": "Prometheus: the evaluation after the last raw ALERTS firing sample",
            },
        }
        with open(os.path.join(OUT, "summary.json"), "w") as f:
            json.dump(summary, f, indent=2)
            f.write("\n")
        with open(os.path.join(OUT, "timeline.html"), "w") as f:
            f.write(render_html(series, self.marks, self.lines, summary, start))
        log("")
        log("demo: measured (seconds):")
        log("  failure start -> flag off: %s" % summary["seconds"]["failure_start_to_flag_off"])
        for k, v in stages:
            log("    %-56s %s" % (k, v))
        log("  flag off -> alert resolved: %s" % summary["seconds"]["flag_off_to_alert_resolved"])
        for k, v in recovery:
            log("    %-56s %s" % (k, v))
        log("demo: remediator's /metrics, as Prometheus scraped it: problems %s" % ", ".join(
            "%s=%g" % kv for kv in sorted(own.get("problems", {}).items())))
        log("demo: wrote %s and %s" % (os.path.join(OUT, "timeline.html"),
                                       os.path.join(OUT, "summary.json")))
        return summary


# ------------------------------------------------------------------------------ picture
def render_html(series, marks, lines, summary, start):
    W, H, L, R, T, B = 960, 460, 60, 20, 120, 50
    ts = [t for t, _ in series] or [time.time() - 60, time.time()]
    x0, x1 = min(ts), max(ts)
    x1 = x1 if x1 > x0 else x0 + 1
    ymax = max([0.4] + [v for _, v in series]) * 1.1

    def X(t):
        return L + (t - x0) / (x1 - x0) * (W - L - R)

    def Y(v):
        return T + (1 - v / ymax) * (H - T - B)

    svg = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
           'font-family="sans-serif" font-size="11">' % (W, H)]
    svg.append('<rect x="%d" y="%d" width="%d" height="%d" fill="#fafafa" stroke="#ccc"/>'
               % (L, T, W - L - R, H - T - B))
    for i in range(0, 5):
        v = ymax * i / 4
        svg.append('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#eee"/>'
                   '<text x="%d" y="%.1f" text-anchor="end">%.2f</text>'
                   % (L, W - R, Y(v), Y(v), L - 6, Y(v) + 4, v))
    step = 10 if x1 - x0 > 60 else 5
    t = x0 - (x0 % step) + step
    while t < x1:
        svg.append('<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#eee"/>'
                   '<text x="%.1f" y="%d" text-anchor="middle">%s</text>'
                   % (X(t), X(t), T, H - B, X(t), H - B + 14,
                      datetime.fromtimestamp(t).strftime("%H:%M:%S")))
        t += step
    svg.append('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#d33" stroke-dasharray="6 4"/>'
               '<text x="%d" y="%.1f" fill="#d33">threshold 0.1</text>'
               % (L, W - R, Y(0.1), Y(0.1), W - R - 80, Y(0.1) - 4))
    if series:
        pts = " ".join("%.1f,%.1f" % (X(t), Y(v)) for t, v in series)
        svg.append('<polyline points="%s" fill="none" stroke="#1f77b4" stroke-width="2"/>' % pts)
    colors = {"webhook_resolved": "#e377c2", "shop_sees_flag_on": "#ff7f0e",
              "prometheus_pending": "#bcbd22",
              "prometheus_firing": "#d62728", "alertmanager_received": "#9467bd",
              "webhook_received": "#8c564b", "unleash_flag_off": "#2ca02c",
              "shop_sees_flag_off": "#17becf", "prometheus_resolved": "#7f7f7f",
              "slack_notified": "#e6ab02"}
    labels = {"shop_sees_flag_on": "failure starts", "prometheus_pending": "pending",
              "prometheus_firing": "alert fires", "alertmanager_received": "Alertmanager",
              "webhook_received": "webhook", "unleash_flag_off": "flag off (action)",
              "shop_sees_flag_off": "shop recovers", "prometheus_resolved": "resolved",
              "webhook_resolved": "resolved webhook", "slack_notified": "Slack told"}
    # Labels above the plot, each on the first row where it does not overlap the last one.
    row_end = []
    for k in sorted((k for k in colors if k in marks), key=lambda k: marks[k]):
        x = X(marks[k])
        text = "%s %s" % (labels[k], datetime.fromtimestamp(marks[k]).strftime("%H:%M:%S.%f")[:-4])
        width = 6.2 * len(text)
        left = x + width > W - 2  # near the right edge: the label goes left of its line
        lo = x - width if left else x
        row = next((i for i, end in enumerate(row_end) if end < lo - 2), len(row_end))
        if row == len(row_end):
            row_end.append(0)
        row_end[row] = x if left else x + width
        y = T - 6 - 13 * row
        svg.append('<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%d" stroke="%s" stroke-width="1.5"/>'
                   % (x, x, y + 2, H - B, colors[k]))
        svg.append('<text x="%.1f" y="%.1f" fill="%s" text-anchor="%s">%s</text>'
                   % (x - 2 if left else x + 2, y, colors[k], "end" if left else "start",
                      html.escape(text)))
    svg.append('<text x="%d" y="%d" text-anchor="middle">time (local)</text>'
               % ((L + W - R) // 2, H - 12))
    svg.append('<text x="14" y="%d" transform="rotate(-90 14 %d)" text-anchor="middle">'
               'failure ratio (5s rate)</text>' % ((T + H - B) // 2, (T + H - B) // 2))
    svg.append("</svg>")
    s = summary["seconds"]
    stage_rows = "".join("<tr><td>%s</td><td>%s</td></tr>" % (html.escape(k),
                                                              "" if not k else "-" if v is None else "%.2f s" % v)
                         for k, v in list(s["stages"].items()) +
                         [("", None)] + list(s["recovery_stages"].items()))
    tl = "".join("<tr><td>%s</td><td>%s</td><td>%s</td></tr>" % (
        hhmmss(t), html.escape(src), html.escape(text)) for t, src, text in sorted(lines))
    return """<!doctype html>
<html><head><meta charset="utf-8"><title>remediator: self-healing demo</title>
<style>body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse}
td,th{padding:2px 10px;border-bottom:1px solid #eee;text-align:left;font-size:13px}
.big{font-size:20px}</style></head><body>
<h1>Self-healing with a feature flag</h1>
<p class="big">Failure start &rarr; flag off: <b>%s</b>; flag off &rarr; alert resolved: <b>%s</b>.
Actions taken: <b>%d</b>. Flag off at the end: <b>%s</b>. Alert resolved: <b>%s</b>.</p>
%s
<h2>Stages</h2><table>%s</table>
<h2>Timeline</h2><table><tr><th>time</th><th>source</th><th>what</th></tr>%s</table>
<p>Sources: Prometheus /api/v1/alerts and /api/v1/query_range, Alertmanager /api/v2/alerts,
remediator /audit, Unleash /api/admin/events, the shop's /state.</p>
</body></html>
""" % ("-" if s["failure_start_to_flag_off"] is None else "%.2f s" % s["failure_start_to_flag_off"],
       "-" if s["flag_off_to_alert_resolved"] is None else "%.2f s" % s["flag_off_to_alert_resolved"],
       summary["actions"], summary["flag_off"], summary["alert_resolved"], "\n".join(svg),
       stage_rows, tl)


def main():
    demo = Demo()

    def on_signal(sig, frame):
        raise SystemExit("demo: interrupted (signal %d)" % sig)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        summary = demo.run()
    finally:
        demo.procs.stop()
    ok = summary["loop_closed"]
    log("demo: %s" % ("the loop closed" if ok else "the loop did NOT close in time"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
