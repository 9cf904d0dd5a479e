"""Drive wrk with wrk_mix.lua: a mix of request kinds, counted per kind on the Lua side.

    result = run(base_url, kinds, pattern=[0, 0, 1], threads=8, quota=1250)

`kinds` is a list of Kind (name, body, headers, template): `template=True` bodies contain
"@OCC@", replaced per request by a unique 16-hex-digit value. Every wrk thread has one
connection and sends `quota` requests, cycling through `pattern` (indices into `kinds`),
then stops; wrk is ended as soon as all threads are done (or after `max_seconds`).

The result (parsed from wrk_mix.lua's done()) has:
  counts[kind][status] -> answers, outcomes[kind][outcome] -> answers (the first
  "outcome" of each report), samples (unexpected answers), sent, answered, unmatched,
  threads, duration_s, requests, errors {connect, read, write, status, timeout},
  latency_ms {p50, p90, p99, max, mean}, wall_s.
"""

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections import namedtuple

HERE = os.path.dirname(os.path.abspath(__file__))
LUA = os.path.join(HERE, "wrk_mix.lua")

Kind = namedtuple("Kind", "name body headers template expect", defaults=(False, None))


def lua_string(text):
    """A Lua long-bracket literal holding `text` verbatim."""
    level = 0
    while ("]" + "=" * level + "]") in text or text.endswith("]" + "=" * level):
        level += 1
    eq = "=" * level
    # A long bracket skips a newline right after the opening bracket: add one to keep text.
    return "[%s[\n%s]%s]" % (eq, text, eq)


def lua_table(headers):
    return "{" + ", ".join("[ %s ] = %s" % (lua_string(k), lua_string(v)) for k, v in headers.items()) + "}"


def write_spec(path, kinds, pattern, quota, done_dir, http_path):
    lines = ["return {"]
    lines.append("  path = %s," % lua_string(http_path))
    if quota is not None:
        lines.append("  quota = %d," % quota)
    lines.append("  done_dir = %s," % lua_string(done_dir))
    lines.append("  pattern = {%s}," % ", ".join(str(i + 1) for i in pattern))
    lines.append("  expect = {%s}," % ", ".join(
        "[ %s ] = %d" % (lua_string(k.name), k.expect) for k in kinds if k.expect is not None))
    lines.append("  kinds = {")
    for k in kinds:
        body = k.body if isinstance(k.body, str) else k.body.decode()
        lines.append("    {name = %s, template = %s, headers = %s, body = %s}," % (
            lua_string(k.name), "true" if k.template else "false", lua_table(k.headers), lua_string(body)))
    lines.append("  },")
    lines.append("}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def nest(flat):
    """{"kind|200": n} -> {"kind": {200: n}} (non-numeric second parts stay strings)."""
    out = {}
    for key, n in flat.items():
        kind, _, sub = key.partition("|")
        out.setdefault(kind, {})[int(sub) if sub.isdigit() else sub] = int(n)
    return out


def run(base_url, kinds, pattern=None, threads=1, quota=1, http_path="/alertmanager",
        max_seconds=60, timeout_s=30):
    if shutil.which("wrk") is None:
        raise AssertionError("wrk is not installed (tests/e2e/peers install installs it)")
    pattern = list(range(len(kinds))) if pattern is None else pattern
    tmp = tempfile.mkdtemp(prefix="e2e-wrk-")
    try:
        done_dir = os.path.join(tmp, "done")
        os.mkdir(done_dir)
        spec = os.path.join(tmp, "spec.lua")
        write_spec(spec, kinds, pattern, quota, done_dir, http_path)
        cmd = ["wrk", "-t", str(threads), "-c", str(threads), "-d", "%ds" % max_seconds,
               "--timeout", "%ds" % timeout_s, "-s", LUA, base_url]
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=dict(os.environ, E2E_WRK_SPEC=spec))
        # End wrk once every thread has its quota (wrk itself always waits out -d).
        while proc.poll() is None:
            if len(os.listdir(done_dir)) >= threads or time.monotonic() - t0 > max_seconds + 10:
                proc.send_signal(signal.SIGINT)
                break
            time.sleep(0.05)
        out, err = proc.communicate(timeout=60)
        wall = time.monotonic() - t0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    line = next((l for l in out.splitlines() if l.startswith("E2E_WRK_RESULT ")), None)
    if proc.returncode not in (0, -signal.SIGINT) or line is None:
        raise AssertionError("wrk failed (exit %s):\n%s\n%s" % (proc.returncode, out, err))
    result = json.loads(line[len("E2E_WRK_RESULT "):])
    result["counts"] = nest(result["counts"])
    result["outcomes"] = nest(result["outcomes"])
    result["wall_s"] = wall
    result["wrk_output"] = "\n".join(l for l in out.splitlines() if not l.startswith("E2E_WRK_RESULT "))
    return result
