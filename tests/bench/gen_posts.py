#!/usr/bin/env python3
"""Synthetic social posts for the `kizashi analyze` throughput benchmark (BENCHMARKS.md).

Deterministic (seeded); N unique posts of 30–40 characters on average, in the register of
Japanese posts about payment services. Usage: gen_posts.py N > posts.txt
"""
import random
import sys

SUBJECTS = ["7pay", "PayPay", "ペイペイ", "LINE Pay", "メルペイ", "ファミペイ", "d払い", "au PAY", "楽天ペイ",
            "セブンペイ", "コンビニのレジ", "このアプリ", "駅前のお店", "うちの近所のスーパー"]
MIDDLES = ["で不正利用されたっぽいんだけど", "がまた落ちてて支払いできない", "の還元キャンペーン、お得すぎて毎日使ってる",
           "、使えなくて困ったから現金で払った", "便利だけどちょっと不安になってきた", "のサポート対応が早くて本当に助かった",
           "、二段階認証ないのさすがにやばくない？", "で払ったら一瞬で終わって快適だった", "の障害いつ直るのか誰か教えて",
           "、チャージできないんだけど何これ", "は補償もあるし安心して使えると思う", "の新機能よさそうだから試してみる",
           "で身に覚えのない請求が来ててこわい", "、今日は普通に使えたので一安心", "がメンテ中らしくて会計が大混乱"]
TAILS = ["", "。", "！", "w", "草", "笑", "…", "😭", "👍", "（泣）", " マジか", " 勘弁して", " 最高"]


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    rng = random.Random(20190703)
    for i in range(n):
        # the serial keeps every post unique
        print(f"{rng.choice(SUBJECTS)}{rng.choice(MIDDLES)}{rng.choice(TAILS)} #{i}")


if __name__ == "__main__":
    main()
