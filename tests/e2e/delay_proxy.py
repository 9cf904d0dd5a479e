#!/usr/bin/env python3
"""A faulting HTTP proxy for remediator's end-to-end tests (Python stdlib only).

It stands between the component and the real Unleash and forwards every request unchanged.
While it is *armed*, a request that matches its fault (a method and a path pattern, e.g. the
POST that turns one flag off) is still forwarded, so Unleash really applies it, but the
answer the component gets is spoiled:

* mode "delay": Unleash's own answer, held back for `delay_s` (longer than the component's
  outbound_timeout_ms, so the component gives up waiting: applied, but timed out);
* mode "502": 502 Bad Gateway instead of Unleash's answer (applied, but reported failed).

Armed with a count, it spoils that many matching requests and then passes them again; armed
without one, every matching request until `disarm()`. Every request is logged: method,
path, whether it was spoiled, Unleash's status, what the client got.

In a test (what test_faults_e2e.py does):

    proxy = DelayProxy("http://127.0.0.1:4242", path=r"/features/F/environments/production/off$")
    origin = proxy.start()      # http://127.0.0.1:<free port>; serve the component with it
    proxy.arm()                 # spoil every matching request from now on
    ...
    proxy.disarm(); proxy.faulted(); proxy.stop()

Standalone (the same, controlled over HTTP; control paths are never forwarded):

    delay_proxy.py --upstream http://127.0.0.1:4242 --listen 127.0.0.1:14242 \\
        --path '/features/F/environments/production/off$' --mode delay --delay-s 5 [--arm [N]]
    GET  /_proxy/log                       -> JSON list of logged requests, oldest first
    POST /_proxy/arm    {"count": N|null}  -> spoil the next N (null: all) matching requests
    POST /_proxy/disarm                    -> pass everything again
"""

import argparse
import http.client
import json
import re
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODES = ("delay", "502")
# Hop-by-hop headers a proxy must not pass on; Content-Length is recomputed.
HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-connection", "transfer-encoding", "te",
    "trailer", "upgrade", "content-length", "host",
}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64


class DelayProxy:
    def __init__(self, upstream, path, method="POST", mode="delay", delay_s=5.0,
                 listen=("127.0.0.1", 0)):
        if mode not in MODES:
            raise ValueError("mode must be one of %s" % (MODES,))
        self.upstream = urllib.parse.urlsplit(upstream)
        self.path = re.compile(path)
        self.method = method
        self.mode = mode
        self.delay_s = delay_s
        self.listen = listen
        self.lock = threading.Lock()
        self.armed = 0  # matching requests still to spoil; None: all of them
        self.entries = []
        self.released = threading.Event()  # set by stop(): held answers go at once
        self.httpd = None
        self.thread = None
        self.origin = None

    # ------------------------------------------------------------------ control
    def start(self):
        """Listen and serve in a daemon thread; returns the proxy's origin."""
        self.httpd = _Server(self.listen, _handler(self))
        host, port = self.httpd.server_address[:2]
        self.origin = "http://%s:%d" % (host, port)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self.origin

    def stop(self):
        self.released.set()
        if self.httpd:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None

    def arm(self, count=None):
        """Spoil the next `count` matching requests (None: every one until disarm)."""
        with self.lock:
            self.armed = count

    def disarm(self):
        with self.lock:
            self.armed = 0

    def log(self):
        with self.lock:
            return [dict(e) for e in self.entries]

    def faulted(self):
        """The requests it spoiled, oldest first."""
        return [e for e in self.log() if e["faulted"]]

    # ------------------------------------------------------------------ per request
    def _take_fault(self, method, path):
        """Whether this request is to be spoiled (and count it if so)."""
        if method != self.method or not self.path.search(path):
            return False
        with self.lock:
            if self.armed is None:
                return True
            if self.armed > 0:
                self.armed -= 1
                return True
            return False

    def _record(self, entry):
        with self.lock:
            entry["seq"] = len(self.entries)
            self.entries.append(entry)

    def _forward(self, method, path, headers, body):
        """(status, headers, body) from the upstream, or (None, None, error text)."""
        fwd = {k: v for k, v in headers.items() if k.lower() not in HOP_BY_HOP}
        fwd["Content-Length"] = str(len(body))
        conn = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port or 80, timeout=30)
        try:
            conn.request(method, path, body=body, headers=fwd)
            resp = conn.getresponse()
            data = resp.read()
            keep = [(k, v) for k, v in resp.getheaders() if k.lower() not in HOP_BY_HOP]
            return resp.status, keep, data
        except OSError as err:
            return None, None, str(err)
        finally:
            conn.close()


def _handler(proxy):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _send(self, status, headers, body):
            try:
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)
                return True
            except OSError:
                return False  # the client gave up (its timeout) and closed the connection
            finally:
                self.close_connection = True

        def _json(self, status, value):
            return self._send(status, [("Content-Type", "application/json")], json.dumps(value).encode())

        def _control(self, path, body):
            if self.command == "GET" and path == "/_proxy/log":
                return self._json(200, proxy.log())
            if self.command == "POST" and path == "/_proxy/arm":
                count = (json.loads(body or b"{}") or {}).get("count")
                proxy.arm(None if count is None else int(count))
                return self._json(200, {"armed": count})
            if self.command == "POST" and path == "/_proxy/disarm":
                proxy.disarm()
                return self._json(200, {"armed": 0})
            return self._json(404, {"error": "unknown control path %s" % path})

        def _body(self):
            if "chunked" not in (self.headers.get("Transfer-Encoding") or "").lower():
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()

        def _handle(self):
            body = self._body()
            path = urllib.parse.urlsplit(self.path).path
            if path.startswith("/_proxy/"):
                return self._control(path, body)
            fault = proxy._take_fault(self.command, path)
            entry = {"time": time.time(), "method": self.command, "path": path, "faulted": fault}
            status, headers, data = proxy._forward(self.command, self.path, dict(self.headers.items()), body)
            entry["upstream_status"] = status
            if status is None:
                entry["upstream_error"] = data
            proxy._record(entry)  # now, not after a hold: a test reads it while the answer waits
            if status is None:
                status, headers, data = 502, [("Content-Type", "application/json")], json.dumps(
                    {"error": "delay_proxy: upstream unreachable: %s" % data}).encode()
            elif fault and proxy.mode == "502":
                status, headers, data = 502, [("Content-Type", "application/json")], json.dumps(
                    {"error": "delay_proxy: forwarded (upstream answered %d), answering 502"
                              % entry["upstream_status"]}).encode()
            elif fault:
                with proxy.lock:
                    entry["held_s"] = proxy.delay_s
                proxy.released.wait(proxy.delay_s)
            with proxy.lock:
                entry["answered"] = status
            delivered = self._send(status, headers, data)
            with proxy.lock:
                entry["delivered"] = delivered

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

    return Handler


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--upstream", required=True, help="origin to forward to, e.g. http://127.0.0.1:4242")
    ap.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT (port 0: any free one)")
    ap.add_argument("--path", required=True, help="regular expression the spoiled requests' path matches")
    ap.add_argument("--method", default="POST")
    ap.add_argument("--mode", choices=MODES, default="delay")
    ap.add_argument("--delay-s", type=float, default=5.0)
    ap.add_argument("--arm", nargs="?", const=-1, type=int, metavar="N",
                    help="start armed: spoil the next N matching requests (no N: all)")
    args = ap.parse_args()
    host, port = args.listen.rsplit(":", 1)
    proxy = DelayProxy(args.upstream, args.path, args.method, args.mode, args.delay_s, (host, int(port)))
    if args.arm is not None:
        proxy.arm(None if args.arm < 0 else args.arm)
    print("listening on %s -> %s (mode %s)" % (proxy.start(), args.upstream, args.mode), flush=True)
    try:
        proxy.thread.join()
    except KeyboardInterrupt:
        proxy.stop()


if __name__ == "__main__":
    main()
