#!/usr/bin/env python3
"""N unique, realistic Japanese items for the 1,000,000-item benchmarks (BENCHMARKS.md).

Words come from the livedoor news corpus, read in place from ../shared/corpus (never copied
into the project): its sentences are the raw material, mixed with payment-service names and
the phrases people use about them.

Mix (stated in BENCHMARKS.md): 80 % social posts of 30–140 characters, 20 % news articles of
up to 2 KB (title from a corpus title, body from corpus sentences), about ten services, spread
over the 90 days before --end with a daily rhythm. Deterministic for a given --seed.

Usage: gen_items.py N [--corpus DIR] [--end 2026-11-25] [--seed 1] > items.jsonl
       (JSON Lines in the `kizashi import` format)
"""
import argparse
import datetime as dt
import json
import os
import random
import re
import sys

SERVICES = ["7pay", "セブンペイ", "PayPay", "ペイペイ", "LINE Pay", "メルペイ", "ファミペイ", "d払い",
            "au PAY", "楽天ペイ", "コインチェック", "Zaif"]
PHRASES = ["で払った", "が使えない", "の還元がうれしい", "で不正利用されたかも", "のアプリが重い",
           "にチャージした", "のキャンペーン始まった", "、障害かな", "は便利", "で身に覚えのない請求",
           "のポイントが付いた", "ログインできない", "の補償が早かった", "二段階認証を設定した",
           "、レジで使えた", "の対応がひどい", "、安心して使える", "の新機能が便利そう"]
TAILS = ["", "。", "！", "w", "草", "笑", "…", "😭", "👍", "（泣）"]
# Relative activity per JST hour.
DAY = [0.5, 0.3, 0.2, 0.15, 0.15, 0.3, 0.7, 1.2, 1.6, 1.3, 1.1, 1.4, 2.0, 1.8, 1.2, 1.1, 1.2,
       1.5, 1.8, 2.0, 2.0, 1.8, 1.3, 0.8]
JST = dt.timezone(dt.timedelta(hours=9))


def corpus(path):
    titles, sentences = [], []
    for root, _, files in os.walk(path):
        for f in sorted(files):
            if not f.endswith(".txt") or f in ("CHANGES.txt", "README.txt", "LICENSE.txt"):
                continue
            with open(os.path.join(root, f), encoding="utf-8") as fh:
                lines = fh.read().split("\n")
            if len(lines) < 4:
                continue
            titles.append(lines[2].strip())
            for s in re.split(r"(?<=[。！？])", "".join(lines[3:])):
                s = s.strip()
                if 10 <= len(s) <= 200:
                    sentences.append(s)
    return titles, sentences


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("n", type=int)
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--corpus", default=os.path.join(here, "../../../shared/corpus/livedoor-news"))
    ap.add_argument("--end", default="2026-11-25")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    titles, sentences = corpus(a.corpus)
    if not sentences:
        sys.exit(f"no corpus sentences under {a.corpus}")
    rng = random.Random(a.seed)
    end = dt.datetime.fromisoformat(a.end).replace(tzinfo=JST)
    start = end - dt.timedelta(days=90)
    hours = [start + dt.timedelta(hours=h) for h in range(90 * 24)]
    weights = [DAY[t.hour] * (1.2 if t.weekday() >= 5 else 1.0) for t in hours]
    out = sys.stdout
    for i in range(a.n):
        at = rng.choices(hours, weights)[0] + dt.timedelta(seconds=rng.randrange(3600))
        svc = rng.choice(SERVICES)
        if rng.random() < 0.8:
            text = f"{svc}{rng.choice(PHRASES)}{rng.choice(TAILS)} "
            frag = rng.choice(sentences)
            room = rng.randint(30, 140) - len(text) - 8
            text += frag[: max(room, 0)] + f" #{i}"
            item = {"url": f"https://bench.kizashi.invalid/p/{i}", "title": "", "body": text,
                    "published_at": at.isoformat(), "source": "bench-social", "kind": "social",
                    "author": f"u{rng.randrange(50_000)}"}
        else:
            title = f"{svc}、{rng.choice(titles)}"[:80]
            body, size = [], 0
            limit = rng.randint(300, 2048)
            while True:
                s = rng.choice(sentences)
                if rng.random() < 0.3:
                    s = svc + rng.choice(PHRASES) + "。" + s
                if size + len(s.encode()) > limit and body:
                    break
                body.append(s)
                size += len(s.encode())
            item = {"url": f"https://bench.kizashi.invalid/a/{i}", "title": title,
                    "body": "".join(body), "published_at": at.isoformat(),
                    "source": "bench-news", "kind": "news"}
        out.write(json.dumps(item, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
