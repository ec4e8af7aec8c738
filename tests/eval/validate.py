#!/usr/bin/env python3
"""Check sentences.tsv: header, field values, unique ids, evidence spans verbatim in text,
no tab/newline inside fields, and print counts. Exit 1 on any problem. Standard library only.
Usage: python validate.py [sentences.tsv]"""
import os
import sys
from collections import Counter

COLS = ["id", "split", "style", "topic", "label", "target", "text", "evidence"]
ALLOWED = {"split": {"dev", "test"}, "style": {"news", "social"}, "topic": {"payment", "general"},
           "label": {"negative", "neutral", "positive"}}
SLUGS = {"", "7pay", "paypay", "linepay", "merpay", "famipay", "dbarai", "aupay", "rakutenpay",
         "coincheck", "zaif"}


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "sentences.tsv")
    errs, rows = [], []
    with open(path, encoding="utf-8", newline="") as fh:
        lines = fh.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if lines[0].split("\t") != COLS:
        errs.append("bad header")
    for n, line in enumerate(lines[1:], 2):
        f = line.split("\t")
        if len(f) != len(COLS) or "\r" in line:
            errs.append(f"line {n}: {len(f)} fields"); continue
        r = dict(zip(COLS, f))
        rows.append(r)
        for k, ok in ALLOWED.items():
            if r[k] not in ok:
                errs.append(f"line {n}: bad {k} {r[k]!r}")
        if r["target"] not in SLUGS:
            errs.append(f"line {n}: bad target {r['target']!r}")
        spans = [s for s in r["evidence"].split("|")] if r["evidence"] else []
        for s in spans:
            if not s or s not in r["text"]:
                errs.append(f"line {n}: evidence {s!r} not in text")
        if spans and r["label"] == "neutral":
            errs.append(f"line {n}: evidence on a neutral row")
    ids = Counter(r["id"] for r in rows)
    errs += [f"duplicate id {i}" for i, c in ids.items() if c > 1]
    by_text = {}
    for r in rows:
        if by_text.setdefault(r["text"], r["split"]) != r["split"]:
            errs.append(f"{r['id']}: same text in both splits")
    print(f"rows={len(rows)}")
    for k in ("split", "label", "style", "topic"):
        print(k, dict(sorted(Counter(r[k] for r in rows).items())))
    for sp in ("dev", "test"):
        sub = [r for r in rows if r["split"] == sp]
        print(sp, dict(sorted(Counter(r["label"] for r in sub).items())),
              dict(sorted(Counter(r["style"] for r in sub).items())),
              dict(sorted(Counter(r["topic"] for r in sub).items())),
              "evidence", sum(1 for r in sub if r["evidence"]), "target", sum(1 for r in sub if r["target"]))
    print("evidence rows", sum(1 for r in rows if r["evidence"]), "target rows", sum(1 for r in rows if r["target"]))
    if errs:
        print("\n".join(errs), file=sys.stderr)
        sys.exit(1)
    print("OK")


if __name__ == "__main__":
    main()
