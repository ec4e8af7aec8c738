"""Shared helpers for the peer-analyzer scripts (standard library only)."""
import csv
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_TSV = os.path.join(HERE, "..", "sentences.tsv")
LABELS = ("negative", "neutral", "positive")


def read_sentences(path=DEFAULT_TSV, split=None):
    """Rows of sentences.tsv as dicts; split=None or 'all' gives every row."""
    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    if split and split != "all":
        rows = [r for r in rows if r["split"] == split]
    return rows


def f1_per_class(gold, pred, classes):
    out = {}
    for c in classes:
        tp = sum(1 for g, p in zip(gold, pred) if g == c and p == c)
        fp = sum(1 for g, p in zip(gold, pred) if g != c and p == c)
        fn = sum(1 for g, p in zip(gold, pred) if g == c and p != c)
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        out[c] = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return out


def metrics(gold, pred):
    """3-class accuracy and macro-F1, plus pos/neg macro-F1 over gold pos/neg items only
    (a neutral prediction on those items is simply wrong)."""
    n = len(gold)
    acc = sum(1 for g, p in zip(gold, pred) if g == p) / n if n else 0.0
    f3 = f1_per_class(gold, pred, LABELS)
    pn = [(g, p) for g, p in zip(gold, pred) if g in ("positive", "negative")]
    f2 = f1_per_class([g for g, _ in pn], [p for _, p in pn], ("negative", "positive"))
    return {
        "n": n,
        "accuracy": acc,
        "macro_f1_3": sum(f3.values()) / 3,
        "f1_per_class": f3,
        "n_posneg": len(pn),
        "macro_f1_posneg": sum(f2.values()) / 2,
        "f1_posneg": f2,
    }


def choose_threshold(scored_rows, to_label, grid):
    """Pick the dead-zone threshold with the best 3-class macro-F1 (ties: smaller threshold).
    scored_rows: list of (gold_label, raw_output)."""
    best = None
    for t in grid:
        pred = [to_label(raw, t)[0] for _, raw in scored_rows]
        m = metrics([g for g, _ in scored_rows], pred)["macro_f1_3"]
        if best is None or m > best[1] + 1e-12:
            best = (t, m)
    return best


def write_predictions(rows, results, out=sys.stdout):
    out.write("id\tlabel\tscore\n")
    for r, (label, score) in zip(rows, results):
        out.write(f"{r['id']}\t{label}\t{score:.4f}\n")
