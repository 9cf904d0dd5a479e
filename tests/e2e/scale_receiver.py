#!/usr/bin/env python3
"""A recording HTTP endpoint for remediator's end-to-end tests (Python stdlib only).

Two roles, one file:

* scale receiver (default): stands in for the user's own scaling endpoint. Every request
  is recorded and answered 200 `{"ok": true}`.
* tap (`--forward http://127.0.0.1:PORT`): sits between Alertmanager and the component.
  Every request is forwarded unchanged (method, path, headers, body) and recorded together
  with the component's answer, so tests can see what Alertmanager sent, each retry, and
  the report it got back.

Control endpoints (never recorded, never forwarded):
  GET  /_requests  -> JSON list of recorded requests, oldest first
  POST /_reset     -> forget recorded requests, back to mode "ok"
  POST /_mode      {"mode": "ok" | "fail" | "hang"}: "fail" answers 500, "hang" holds the
                   request open (up to --hang-seconds, or until the mode changes or a reset)
  GET  /_health    -> 200
"""

import argparse
import http.client
import json
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Server(ThreadingHTTPServer):
    # The default listen backlog (5) overflows under the load test's bursts, and the
    # component then rightly reports the receiver unreachable (502): a real endpoint
    # would not refuse connections like that.
    request_queue_size = 256
    daemon_threads = True

MODES = ("ok", "fail", "hang")
# Hop-by-hop headers a proxy must not pass on; Content-Length is recomputed.
HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-connection", "transfer-encoding", "te",
    "trailer", "upgrade", "content-length", "host",
}


class State:
    def __init__(self, hang_seconds):
        self.lock = threading.Lock()
        self.requests = []
        self.mode = "ok"
        self.hang_seconds = hang_seconds
        self.release = threading.Event()  # set to let hanging requests go

    def set_mode(self, mode):
        with self.lock:
            self.mode = mode
            # Wake whatever hangs now; a new hang waits on a fresh event.
            self.release.set()
            self.release = threading.Event()

    def record(self, entry):
        with self.lock:
            entry["seq"] = len(self.requests)
            self.requests.append(entry)
            return entry


def parse_body(raw, content_type):
    if not raw:
        return None
    text = raw.decode("utf-8", "replace")
    if "json" in (content_type or "") or text[:1] in "{[":
        try:
            return json.loads(text)
        except ValueError:
            pass
    return text


def make_handler(state, forward):
    upstream = urllib.parse.urlsplit(forward) if forward else None

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "remediator-e2e-recorder"

        def log_message(self, fmt, *args):
            sys.stderr.write("%s %s\n" % (time.strftime("%H:%M:%S"), fmt % args))

        def _read_body(self):
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        break
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                return b"".join(chunks)
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _send(self, status, body, content_type="application/json"):
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _control(self, raw):
            path = self.path.split("?")[0]
            if path == "/_health" and self.command == "GET":
                return self._send(200, {"ok": True})
            if path == "/_requests" and self.command == "GET":
                with state.lock:
                    return self._send(200, list(state.requests))
            if path == "/_reset" and self.command == "POST":
                with state.lock:
                    state.requests.clear()
                state.set_mode("ok")
                return self._send(200, {"ok": True})
            if path == "/_mode" and self.command == "POST":
                try:
                    mode = json.loads(raw or b"{}").get("mode")
                except ValueError:
                    mode = None
                if mode not in MODES:
                    return self._send(400, {"error": "mode must be one of %s" % (MODES,)})
                state.set_mode(mode)
                return self._send(200, {"mode": mode})
            return self._send(404, {"error": "unknown control endpoint %s %s" % (self.command, path)})

        def _handle(self):
            raw = self._read_body()
            if self.path.startswith("/_"):
                return self._control(raw)
            url = urllib.parse.urlsplit(self.path)
            entry = {
                "time": time.time(),
                "method": self.command,
                "path": url.path,
                "query": url.query,
                "headers": {k: v for k, v in self.headers.items()},
                "body": parse_body(raw, self.headers.get("Content-Type")),
            }
            with state.lock:
                mode, release = state.mode, state.release
            entry["mode"] = mode
            state.record(entry)
            if mode == "hang":
                release.wait(state.hang_seconds)
                entry["status"] = None
                self.close_connection = True
                return  # answer nothing; the client sees its own timeout or a closed connection
            if mode == "fail":
                entry["status"] = 500
                return self._send(500, {"error": "scale_receiver is in mode 'fail'"})
            if upstream is None:
                entry["status"] = 200
                return self._send(200, {"ok": True})
            return self._forward(raw, entry)

        def _forward(self, raw, entry):
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            headers["Content-Length"] = str(len(raw))
            conn = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=120)
            try:
                conn.request(self.command, self.path, body=raw, headers=headers)
                resp = conn.getresponse()
                body = resp.read()
                status, ctype = resp.status, resp.getheader("Content-Type", "application/octet-stream")
            except OSError as err:
                # The component is down (e.g. being restarted): a 502 makes Alertmanager retry,
                # as connection refused would.
                status, ctype = 502, "application/json"
                body = json.dumps({"error": "tap: upstream %s unreachable: %s" % (forward, err)}).encode()
                entry["upstream_error"] = str(err)
            finally:
                conn.close()
            entry["status"] = status
            entry["response"] = parse_body(body, ctype)
            entry["answered"] = time.time()
            return self._send(status, body, ctype)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

    return Handler


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--listen", default="127.0.0.1:9100", help="HOST:PORT to listen on")
    ap.add_argument("--forward", help="upstream origin to forward to (tap mode)")
    ap.add_argument("--hang-seconds", type=float, default=60.0)
    args = ap.parse_args()
    host, port = args.listen.rsplit(":", 1)
    server = Server((host, int(port)), make_handler(State(args.hang_seconds), args.forward))
    server.daemon_threads = True
    role = "tap -> %s" % args.forward if args.forward else "scale receiver"
    print("listening on http://%s:%s (%s)" % (host, port, role), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
