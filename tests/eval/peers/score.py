#!/usr/bin/env python3
"""Score a predictions file against sentences.tsv.

Usage:  python score.py SENTENCES_TSV PREDICTIONS_TSV
PREDICTIONS_TSV: `id<TAB>label[<TAB>score]`, an optional header line starting with `id`.
Only ids present in the predictions are scored (so a test-split run is scored on the test split);
an id missing from sentences.tsv is an error. Prints n, 3-class accuracy and macro-F1, and
positive-vs-negative macro-F1 over gold positive/negative items only (neutral prediction = error).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import LABELS, metrics, read_sentences  # noqa: E402


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    gold = {r["id"]: r["label"] for r in read_sentences(sys.argv[1])}
    pred = {}
    with open(sys.argv[2], encoding="utf-8") as fh:
        for line in fh:
            f = line.rstrip("\n").split("\t")
            if not f[0] or f[0] == "id":
                continue
            if f[0] not in gold:
                sys.exit(f"unknown id {f[0]}")
            if f[1] not in LABELS:
                sys.exit(f"bad label {f[1]!r} for {f[0]}")
            pred[f[0]] = f[1]
    ids = sorted(pred)
    m = metrics([gold[i] for i in ids], [pred[i] for i in ids])
    print(f"n={m['n']}")
    print(f"accuracy_3class={m['accuracy']:.4f}")
    print(f"macro_f1_3class={m['macro_f1_3']:.4f}  "
          + " ".join(f"F1[{c}]={v:.3f}" for c, v in m["f1_per_class"].items()))
    print(f"n_posneg={m['n_posneg']}")
    print(f"macro_f1_posneg={m['macro_f1_posneg']:.4f}  "
          + " ".join(f"F1[{c}]={v:.3f}" for c, v in m["f1_posneg"].items()))


if __name__ == "__main__":
    main()
