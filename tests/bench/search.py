#!/usr/bin/env python3
"""Search latency at scale (BENCHMARKS.md, issue 5): 20 representative queries against a
running `kizashi serve` through `GET /api/search` (facets included in every answer), each
sent ROUNDS times one at a time after one warm-up; prints p50/p99 per query and overall (ms).
Start the server with the API rate limit off for this (KIZASHI_LIMITS__API_PER_MINUTE=0).

Usage: search.py BASE_URL [ROUNDS]
"""
import statistics
import sys
import time
import urllib.parse
import urllib.request

QUERIES = [
    {"q": "不正利用"},
    {"q": "障害"},
    {"q": "二段階認証"},
    {"q": "認証"},
    {"q": "セブンペイ"},
    {"q": "PayPay 還元"},
    {"q": "不正 OR 詐欺"},
    {"q": "\"ログインできない\""},
    {"q": "使えない -PayPay"},
    {"q": "title:PayPay"},
    {"q": "チャージ", "service": "7pay"},
    {"q": "便利", "sentiment": "positive"},
    {"q": "対応", "kind": "news"},
    {"q": "ポイント", "range": "7d"},
    {"q": "アプリ", "sort": "newest"},
    {"q": "サーバー"},
    {"q": "申し込み"},
    {"q": "category:fraud"},
    {"q": "東京"},
    {"q": "試合", "page": "5"},
]


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def main():
    base = sys.argv[1].rstrip("/")
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    urls = [f"{base}/api/search?{urllib.parse.urlencode(q)}" for q in QUERIES]
    for u in urls:
        urllib.request.urlopen(u).read()
    every = []
    print(f"{'query':<50} {'total':>8} {'p50':>7} {'p99':>7}")
    for q, u in zip(QUERIES, urls):
        ts = []
        total = None
        for _ in range(rounds):
            t = time.perf_counter()
            with urllib.request.urlopen(u) as r:
                body = r.read()
            ts.append((time.perf_counter() - t) * 1000)
            if total is None:
                import json
                v = json.loads(body)
                total = v.get("total")
                assert "facets" in v, "facets missing"
        every += ts
        print(f"{urllib.parse.urlencode(q):<50} {total:>8} {statistics.median(ts):7.1f} {pct(ts, 99):7.1f}")
    print(f"{'all (' + str(len(every)) + ')':<50} {'':>8} {statistics.median(every):7.1f} {pct(every, 99):7.1f}")


if __name__ == "__main__":
    main()
