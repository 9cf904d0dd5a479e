"""The one Python harness for everything that drives real peers: the e2e tests (tests/e2e/*.py),
the Redis replicas test, the demo and the benchmarks. HTTP, processes, ports, bounded waiting,
the peers' env file, and clients for Unleash, Alertmanager and the recording receivers.
Python stdlib only; nothing here is a test.

Callers outside tests/e2e put this folder on sys.path first.
"""

import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
RUN_DIR = os.environ.get("E2E_RUN_DIR") or os.path.join(ROOT, ".run")

# What `tests/e2e/peers up` wrote to $E2E_RUN_DIR/env; filled by connect() (or by hand).
ENV = {}

# The rules the peers' component is served with (tests/e2e/peers).
PROMOTION = "EnablePromotion"  # rule "Failure rate increase": EnablePromotion:off
ITEM_CACHE = "EnableItemCache"  # rule "Response time degradation": EnableItemCache:on
RULE_ENV = "production"  # unleash_environment the component is served with
OTHER_ENV = "development"


# ------------------------------------------------------------------------------ env
def load_env(run_dir=None):
    """$E2E_RUN_DIR/env as a dict; FileNotFoundError when the peers never came up."""
    env = {}
    with open(os.path.join(run_dir or RUN_DIR, "env")) as f:
        for line in f:
            key, sep, value = line.rstrip("\n").partition("=")
            if sep:
                env[key] = value
    return env


def connect():
    """Fill ENV from the env file and check the peers' component is healthy (AssertionError
    if not, FileNotFoundError if there is no env file)."""
    ENV.update(load_env())
    status, body, _ = http("GET", ENV["E2E_COMPONENT_URL"] + "/healthz", timeout=5)
    if status != 200:
        raise AssertionError("component at %s is not healthy: %s %r (peers up?)"
                             % (ENV["E2E_COMPONENT_URL"], status, body))


# ------------------------------------------------------------------------------ HTTP
def http(method, url, body=None, headers=None, timeout=15):
    """(status, parsed JSON or text, elapsed seconds); never raises on an HTTP status (it does
    when nothing answers: URLError / OSError)."""
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


def http_or_0(method, url, body=None, headers=None, timeout=5):
    """(status, parsed), with status 0 and None when nothing answered: for polling a process
    that is still starting."""
    try:
        return http(method, url, body, headers, timeout)[:2]
    except (urllib.error.URLError, OSError):
        return 0, None


def now_iso(delta_s=0.0):
    t = datetime.now(timezone.utc) + timedelta(seconds=delta_s)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_time(rfc3339):
    """The component's RFC 3339 timestamps (UTC, 'Z') as Unix seconds."""
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


# ------------------------------------------------------------------------------ waiting
def wait_for(what, predicate, timeout=20.0, interval=0.2, check=None, fail=AssertionError):
    """Poll predicate() until it returns something truthy and return that; after `timeout`
    seconds raise fail(message naming `what`). `check()`, if given, runs between polls (it
    raises when a process it watches died)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        if check:
            check()
        time.sleep(interval)
    raise fail("timed out after %.0fs waiting for %s (last: %r)" % (timeout, what, last))


# ------------------------------------------------------------------------------ ports, processes
def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Procs:
    """Processes a script started, each logging to log_dir/<prefix><name>.log; stopped by PID,
    newest first, and nothing else. `pids`: a file each started process is appended to."""

    def __init__(self, log_dir, prefix="", pids=None, say=None):
        self.log_dir, self.prefix, self.pids, self.say = log_dir, prefix, pids, say
        self.procs = []

    def log_path(self, name):
        return os.path.join(self.log_dir, self.prefix + name + ".log")

    def start(self, name, argv, env=None, stdout=None):
        logf = open(self.log_path(name), "ab")
        p = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=stdout or logf,
                             stderr=logf, start_new_session=True)
        self.procs.append((name, p))
        if self.pids:
            with open(self.pids, "a") as f:
                f.write("%s %d\n" % (name, p.pid))
        return p

    def check(self):
        """SystemExit naming the first started process that has exited."""
        for name, p in self.procs:
            if p.poll() is not None:
                raise SystemExit("%s exited (code %s); log: %s" % (name, p.returncode, self.log_path(name)))

    def stop(self, only=None):
        """SIGTERM (SIGKILL after 10 s) to every running process, or to those in `only`."""
        for name, p in reversed(self.procs):
            if (only is None or p in only) and p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
                if self.say:
                    self.say("stopped %s (pid %d)" % (name, p.pid))
        self.procs = [(n, p) for n, p in self.procs if p.poll() is None]


def peers(*args):
    """tests/e2e/peers with `args` (e.g. "component", "rules_file=..."); AssertionError on failure."""
    proc = subprocess.run([ENV["E2E_PEERS"], *args], capture_output=True, text=True, timeout=180)
    if proc.returncode != 0:
        raise AssertionError("peers %s failed (%d):\n%s%s" % (" ".join(args), proc.returncode, proc.stdout, proc.stderr))


# ------------------------------------------------------------------------------ Unleash
class Unleash:
    def __init__(self, token=None, url=None):
        self.url = url or ENV["E2E_UNLEASH_URL"]
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


# ------------------------------------------------------------------------------ Alertmanager
class Alertmanager:
    def __init__(self, url=None):
        self.url = url or ENV["E2E_AM_URL"]

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


# ------------------------------------------------------------------------------ recorders
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
