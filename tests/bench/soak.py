#!/usr/bin/env python3
"""Bounded soak on loopback (BENCHMARKS.md, issue 8 §7).

A fixture feed server publishes items over time on 4 good feeds (one new item per feed every
half second) beside a slow feed (drips its body over 20 s), a broken one (not XML) and one that
answers 500. `kizashi serve` crawls them every 5 s while 4 client threads request /status,
/api/v2/summary.json and /api/search without pause; every RESTART_EVERY seconds the server is
killed with SIGKILL and started again, KILLS times. Then the feeds stop growing, the server
runs one last clean crawl, and the script compares the items the fixture served with the items
stored. Prints requests served, 5xx responses and connection errors (split into while the
process was down or starting, and while it was up) per path, and items lost.

Usage: soak.py KIZASHI_BINARY [KILLS=10] [RESTART_EVERY=8]
"""
import http.server
import json
import os
import signal
import socketserver
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

BIN = sys.argv[1]
KILLS = int(sys.argv[2]) if len(sys.argv) > 2 else 10
EVERY = float(sys.argv[3]) if len(sys.argv) > 3 else 8.0
GOOD = 4
T0 = time.time()
frozen_at = None  # once set, feeds stop growing
served = {f: 0 for f in range(GOOD)}  # highest item number served per feed
lock = threading.Lock()


def items_now(f):
    t = (frozen_at or time.time()) - T0
    return int(t / 0.5)


class Feeds(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_GET(self):
        p = self.path
        if p.startswith("/good/"):
            f = int(p.split("/")[2].split(".")[0])
            n = items_now(f)
            first = max(0, n - 100)
            with lock:
                served[f] = max(served[f], n)
            items = "".join(
                f"<item><title>PayPay 障害 {f}-{k}</title><link>http://127.0.0.1/soak/{f}/{k}</link>"
                f"<guid>soak-{f}-{k}</guid><description>PayPayがつながらない {f}-{k}</description>"
                f"<pubDate>{time.strftime('%a, %d %b %Y %H:%M:%S +0000', time.gmtime(T0 + k * 0.5))}</pubDate></item>"
                for k in range(first, n)
            )
            body = f'<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>soak {f}</title>{items}</channel></rss>'.encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif p == "/slow.xml":
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml")
            self.end_headers()
            try:
                for _ in range(20):
                    self.wfile.write(b" ")
                    self.wfile.flush()
                    time.sleep(1)
            except OSError:
                pass
        elif p == "/broken.xml":
            body = b"\x00\xffthis is not a feed <rss"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


feeds = Server(("127.0.0.1", 0), Feeds)
FPORT = feeds.server_address[1]
threading.Thread(target=feeds.serve_forever, daemon=True).start()

work = tempfile.mkdtemp(prefix="kizashi-soak-")
PORT = 18280
sources = "".join(
    f'[[sources]]\nname = "good-{f}"\nurl = "http://127.0.0.1:{FPORT}/good/{f}.xml"\nschedule = "*/5 * * * * *"\nitem_kind = "news"\n'
    for f in range(GOOD)
) + "".join(
    f'[[sources]]\nname = "{n}"\nurl = "http://127.0.0.1:{FPORT}/{n}.xml"\nschedule = "*/5 * * * * *"\nitem_kind = "news"\n'
    for n in ("slow", "broken", "fail")
)
cfg = os.path.join(work, "kizashi.toml")
with open(cfg, "w") as fh:
    fh.write(
        f'bind = "127.0.0.1:{PORT}"\ndata_dir = "{work}/data"\n'
        "[crawl]\nallow_private_networks = true\ntimeout_secs = 5\nper_host_interval_ms = 10\nbackoff_base_secs = 1\n"
        "[limits]\napi_per_minute = 0\nstatus_api_per_minute = 0\n" + sources
    )
env = dict(os.environ, KIZASHI_LOG="warn")
proc = None
down = []  # (from, to) windows in which the server was killed or starting
state = {"up": False}


def start():
    global proc
    t = time.time()
    proc = subprocess.Popen([BIN, "--config", cfg, "serve"], env=env, stdout=subprocess.DEVNULL,
                            stderr=open(os.path.join(work, "serve.log"), "ab"))
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{PORT}/healthz", timeout=1).read()
            break
        except Exception:
            time.sleep(0.05)
    return t, time.time()


stats = {}
stop = False
PATHS = ["/status", "/api/v2/summary.json", "/api/search?q=%E9%9A%9C%E5%AE%B3"]


def client(i):
    k = i
    while not stop:
        path = PATHS[k % len(PATHS)]
        k += 1
        t = time.time()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{PORT}{path}", timeout=10) as r:
                r.read()
                outcome = "ok"
        except urllib.error.HTTPError as e:
            outcome = "5xx" if e.code >= 500 else f"{e.code}"
        except Exception:
            outcome = "conn"
            time.sleep(0.02)
        with lock:
            stats.setdefault(path, []).append((t, outcome))


began = start()
down.append((T0, began[1]))
clients = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(4)]
for c in clients:
    c.start()
for n in range(KILLS):
    time.sleep(EVERY)
    killed = time.time()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(0.5)
    _, up = start()
    down.append((killed, up))
# Stop the feeds growing; let two crawl rounds finish cleanly.
frozen_at = time.time()
time.sleep(12)
stop = True
for c in clients:
    c.join()
proc.send_signal(signal.SIGINT)
proc.wait()

con = sqlite3.connect(f"{work}/data/kizashi.sqlite")
stored = {r[0] for r in con.execute("SELECT url FROM items WHERE source LIKE 'good-%'")}
want = {f"http://127.0.0.1/soak/{f}/{k}" for f in range(GOOD) for k in range(served[f])}
lost = want - stored


def in_down(t):
    return any(a - 0.05 <= t <= b + 0.05 for a, b in down)


report = {"kills": KILLS, "seconds": round(time.time() - T0, 1), "paths": {}}
for path, rows in stats.items():
    report["paths"][path] = {
        "requests": len(rows),
        "ok": sum(1 for _, o in rows if o == "ok"),
        "5xx": sum(1 for _, o in rows if o == "5xx"),
        "conn_errors_while_down": sum(1 for t, o in rows if o == "conn" and in_down(t)),
        "conn_errors_while_up": sum(1 for t, o in rows if o == "conn" and not in_down(t)),
        "other": sum(1 for _, o in rows if o not in ("ok", "5xx", "conn")),
    }
report["items_served"] = len(want)
report["items_stored"] = len(stored & want)
report["items_lost"] = len(lost)
print(json.dumps(report, indent=1))
