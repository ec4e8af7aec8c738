#!/usr/bin/env python3
"""Run the asari classifier on sentences.tsv and print `id<TAB>label<TAB>score`.

Install (offline afterwards):  pip install -r requirements.txt   (asari ships its model)
Locale: asari's documentation asks for en_US.UTF-8. On Debian: `apt-get install -y locales`,
add `en_US.UTF-8 UTF-8` to /etc/locale.gen, run `locale-gen`. This script switches to
en_US.UTF-8 when that locale exists, otherwise C.UTF-8 (which also worked with asari 0.2.0 here).
Usage:  python run_asari.py [--split test|dev|all] [--tsv PATH] [--threshold T]

Mapping: asari returns positive/negative with confidences (summing to 1). score =
P(positive) - P(negative) in [-1, 1]. If the top confidence is below T the label is neutral,
else asari's top class. Default T = 0.60, chosen on the dev split only by 3-class macro-F1
(`--tune` prints the search over 0.50..0.99 to stderr; dev macro-F1 0.519 at 0.60).
"""
import argparse
import locale
import os
import sys

for _loc in ("en_US.UTF-8", "en_US.utf8", "C.UTF-8"):
    try:
        locale.setlocale(locale.LC_ALL, _loc)
        os.environ["LANG"] = os.environ["LC_ALL"] = _loc
        break
    except locale.Error:
        continue

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import DEFAULT_TSV, choose_threshold, metrics, read_sentences, write_predictions  # noqa: E402

DEFAULT_THRESHOLD = 0.60
GRID = [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.92, 0.94, 0.96, 0.97, 0.98, 0.99]


def make_sonar():
    from asari.api import Sonar
    return Sonar()


def raw(sonar, text):
    res = sonar.ping(text=text)
    conf = {c["class_name"]: float(c["confidence"]) for c in res["classes"]}
    return res["top_class"], conf


def to_label(raw_out, t):
    top, conf = raw_out
    score = conf.get("positive", 0.0) - conf.get("negative", 0.0)
    if conf.get(top, 0.0) < t:
        return "neutral", score
    return top, score


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", default="test", help="dev, test or all (default test)")
    ap.add_argument("--tsv", default=DEFAULT_TSV)
    ap.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    ap.add_argument("--tune", action="store_true",
                    help="search the neutral threshold on the dev split, report to stderr, exit")
    args = ap.parse_args()
    sonar = make_sonar()
    if args.tune:
        dev = read_sentences(args.tsv, "dev")
        scored = [(r["label"], raw(sonar, r["text"])) for r in dev]
        for t in GRID:
            m = metrics([g for g, _ in scored], [to_label(x, t)[0] for _, x in scored])
            print(f"T={t:.2f} acc={m['accuracy']:.3f} macroF1_3={m['macro_f1_3']:.3f} "
                  f"macroF1_pn={m['macro_f1_posneg']:.3f}", file=sys.stderr)
        t, m = choose_threshold(scored, to_label, GRID)
        print(f"best on dev: T={t} (3-class macro-F1 {m:.3f})", file=sys.stderr)
        return
    rows = read_sentences(args.tsv, args.split)
    results = [to_label(raw(sonar, r["text"]), args.threshold) for r in rows]
    write_predictions(rows, results)


if __name__ == "__main__":
    main()
