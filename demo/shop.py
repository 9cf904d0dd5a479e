#!/usr/bin/env python3
"""The demo "shop" (Python stdlib only), and its load generator.

  shop.py serve --listen 127.0.0.1:PORT --unleash-url URL --token CLIENT_TOKEN [--poll 1.0]
  shop.py load --url http://127.0.0.1:PORT/cart/add [--rps 20]

serve: `POST|GET /cart/add` answers 200, or 500 for about 30 % of requests while the Unleash
flag EnablePromotion is on (the promotional campaign "has never been implemented", as in
Keptn's tutorial), and for 0.5 % otherwise. The flag is read from Unleash's client API
(`GET /api/client/features`, a production backend token) every --poll seconds.
`GET /metrics` is Prometheus text format: http_requests_total{code=...} and
shop_promotion_enabled. `GET /state` is JSON: the flag as the shop sees it, since when
(Unix seconds), and every change it saw. Each change is also a line on stdout.

load: a steady --rps of requests to --url, from a few threads, until killed.
"""

import argparse
import json
import random
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FLAG = "EnablePromotion"
FAIL_WITH_PROMOTION = 0.30
FAIL_BASELINE = 0.005


class Shop:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {"200": 0, "500": 0}
        self.promotion = False
        self.since = time.time()
        self.changes = []  # [{"at": unix_s, "promotion": bool}]
        self.poll_errors = 0

    def saw(self, on):
        with self.lock:
            if on == self.promotion:
                return
            self.promotion, self.since = on, time.time()
            self.changes.append({"at": self.since, "promotion": on})
        print("%s shop: %s is now %s (failure rate %s)" % (
            time.strftime("%H:%M:%S"), FLAG, "on" if on else "off",
            "~30 %" if on else "~0.5 %"), flush=True)

    def serve_one(self):
        with self.lock:
            rate = FAIL_WITH_PROMOTION if self.promotion else FAIL_BASELINE
            code = "500" if random.random() < rate else "200"
            self.counts[code] += 1
        return int(code)


def poll_unleash(shop, url, token, every):
    while True:
        try:
            req = urllib.request.Request(url.rstrip("/") + "/api/client/features",
                                         headers={"Authorization": token})
            with urllib.request.urlopen(req, timeout=2) as r:
                features = json.load(r).get("features", [])
            on = any(f.get("name") == FLAG and f.get("enabled") for f in features)
            shop.saw(on)
        except Exception as e:  # keep serving with the last known state
            shop.poll_errors += 1
            print("shop: polling Unleash failed: %s" % e, file=sys.stderr, flush=True)
        time.sleep(every)


def make_handler(shop):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def reply(self, code, body, ctype="text/plain; charset=utf-8"):
            raw = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def do_GET(self):
            path = self.path.split("?")[0]
            if path == "/cart/add":
                code = shop.serve_one()
                self.reply(code, "ok\n" if code == 200 else "promotion not implemented\n")
            elif path == "/metrics":
                with shop.lock:
                    lines = [
                        "# HELP http_requests_total Requests served, by status code.",
                        "# TYPE http_requests_total counter",
                    ] + ['http_requests_total{code="%s"} %d' % (c, n)
                         for c, n in sorted(shop.counts.items())] + [
                        "# HELP shop_promotion_enabled EnablePromotion as the shop sees it.",
                        "# TYPE shop_promotion_enabled gauge",
                        "shop_promotion_enabled %d" % shop.promotion,
                    ]
                self.reply(200, "\n".join(lines) + "\n", "text/plain; version=0.0.4")
            elif path == "/state":
                with shop.lock:
                    state = {"promotion": shop.promotion, "since": shop.since,
                             "changes": list(shop.changes), "counts": dict(shop.counts),
                             "poll_errors": shop.poll_errors}
                self.reply(200, json.dumps(state), "application/json")
            elif path == "/healthz":
                self.reply(200, "ok\n")
            else:
                self.reply(404, "not found\n")

        def do_POST(self):
            n = int(self.headers.get("Content-Length") or 0)
            if n:
                self.rfile.read(n)
            self.do_GET()

    return Handler


def serve(args):
    shop = Shop()
    host, port = args.listen.rsplit(":", 1)
    server = ThreadingHTTPServer((host, int(port)), make_handler(shop))
    server.daemon_threads = True
    threading.Thread(target=poll_unleash, args=(shop, args.unleash_url, args.token, args.poll),
                     daemon=True).start()
    print("shop listening on http://%s:%d" % server.server_address[:2], flush=True)
    server.serve_forever()


def load(args):
    interval = 4.0 / args.rps  # 4 threads

    def worker():
        nxt = time.monotonic() + random.random() * interval
        while True:
            time.sleep(max(0.0, nxt - time.monotonic()))
            nxt += interval
            try:
                urllib.request.urlopen(args.url, timeout=2).read()
            except Exception:
                pass  # a 500 is the point; a refused connection is just skipped

    for _ in range(4):
        threading.Thread(target=worker, daemon=True).start()
    print("load: %d req/s to %s" % (args.rps, args.url), flush=True)
    while True:
        time.sleep(3600)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--listen", default="127.0.0.1:18080")
    s.add_argument("--unleash-url", required=True)
    s.add_argument("--token", required=True)
    s.add_argument("--poll", type=float, default=1.0)
    l = sub.add_parser("load")
    l.add_argument("--url", required=True)
    l.add_argument("--rps", type=float, default=20)
    args = p.parse_args()
    serve(args) if args.cmd == "serve" else load(args)


if __name__ == "__main__":
    main()
