#!/usr/bin/env python3
"""Dashboard latency at scale (BENCHMARKS.md, issue 6): requests the dashboard pages and the
time-series API of a running `kizashi serve` one at a time and prints p50/p95/max per page and
overall, in milliseconds.

Usage: dashboard.py BASE_URL [ROUNDS]     e.g. dashboard.py http://127.0.0.1:8080 20
"""
import statistics
import sys
import time
import urllib.request

PAGES = [
    "/",
    "/?range=24h",
    "/?range=7d",
    "/?range=90d",
    "/en/?range=30d",
    "/services/7pay",
    "/services/paypay?range=7d",
    "/services/linepay?range=90d",
    "/services/merpay?range=24h",
    "/api/timeseries?service=paypay&interval=hour&from=2026-11-01&to=2026-11-26",
    "/api/timeseries?service=7pay&category=fraud&interval=day",
    "/alerts",
]


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def main():
    base = sys.argv[1].rstrip("/")
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    for p in PAGES:  # warm-up: one request each
        urllib.request.urlopen(base + p).read()
    every, rows = [], []
    for p in PAGES:
        ts = []
        for _ in range(rounds):
            t = time.perf_counter()
            with urllib.request.urlopen(base + p) as r:
                r.read()
                assert r.status == 200, (p, r.status)
            ts.append((time.perf_counter() - t) * 1000)
        every += ts
        rows.append((p, statistics.median(ts), pct(ts, 95), max(ts)))
    print(f"{'page':<78} {'p50':>7} {'p95':>7} {'max':>7}")
    for p, a, b, c in rows:
        print(f"{p:<78} {a:7.1f} {b:7.1f} {c:7.1f}")
    print(f"{'all (' + str(len(every)) + ' requests)':<78} {statistics.median(every):7.1f} "
          f"{pct(every, 95):7.1f} {max(every):7.1f}")


if __name__ == "__main__":
    main()
