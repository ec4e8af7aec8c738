#!/usr/bin/env bash
# Ingest speed beside lindera's raw segmentation on the same text, same run (issue 5):
#   tests/bench/ingest.sh ITEMS.jsonl [N]
# 1. segment_raw: lindera alone (IPADIC, normal mode, one thread) over the first N lines;
# 2. `kizashi import` of the same N lines into a fresh data directory (analysis on both cores,
#    SQLite writes);
# 3. `kizashi serve` until /readyz says the index has caught up (items searchable);
# then again with the server running during the import (its indexer follows the database).
# Needs release builds: cargo build --release --bin kizashi --example segment_raw
set -euo pipefail
cd "$(dirname "$0")/../.."
SRC=${1:?usage: ingest.sh ITEMS.jsonl [N]}
N=${2:-100000}
BIN="${BIN:-${CARGO_TARGET_DIR:-target}/release}"
W=$(mktemp -d /var/tmp/kizashi-ingest.XXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$W"' EXIT
head -n "$N" "$SRC" > "$W/items.jsonl"
MB=$(python3 - "$W/items.jsonl" <<'PY'
import json, sys
total = 0
for line in open(sys.argv[1], encoding="utf-8"):
    v = json.loads(line)
    total += len(((v.get("title") or "") + "\n" + (v.get("body") or "")).encode())
print(total / 1e6)
PY
)
echo "text: $N items, $MB MB (title + body, UTF-8)"
taskset -c 0 "$BIN/examples/segment_raw" "$W/items.jsonl"
export KIZASHI_DATA_DIR="$W/data" KIZASHI_BIND="127.0.0.1:18195" KIZASHI_LOG=warn
ready() { curl -sf -o /dev/null http://127.0.0.1:18195/readyz; }
report() {
python3 - "$@" "$N" "$MB" <<'PY'
import sys
label, s, m, e, n, mb = sys.argv[1], *map(float, sys.argv[2:])
print(f"{label}: import {m-s:.1f} s ({n/(m-s):.0f} items/s, {mb/(m-s):.2f} MB/s); index done"
      f" {e-m:.1f} s later; ingest until searchable {e-s:.1f} s: {n/(e-s):.0f} items/s,"
      f" {mb/(e-s):.2f} MB/s")
PY
}
# a) import into a stopped system, then start the server: it builds the index from the database.
s=$(date +%s.%N)
/usr/bin/time -f "import: %e s wall, %U s user, %S s sys, peak RSS %M KB" "$BIN/kizashi" import "$W/items.jsonl" > /dev/null
m=$(date +%s.%N)
"$BIN/kizashi" serve > "$W/serve.log" 2>&1 &
until ready; do sleep 0.1; done
e=$(date +%s.%N)
kill %1; wait 2>/dev/null || true
report "import, then serve" "$s" "$m" "$e"
du -sh "$W/data"/* | sed 's/^/size: /'
# b) import while the server runs: its indexer follows the database as batches commit.
rm -rf "$W/data"
"$BIN/kizashi" serve > "$W/serve.log" 2>&1 &
until ready; do sleep 0.1; done
s=$(date +%s.%N)
/usr/bin/time -f "import: %e s wall, %U s user, %S s sys, peak RSS %M KB" "$BIN/kizashi" import "$W/items.jsonl" > /dev/null
m=$(date +%s.%N)
until ready; do sleep 0.1; done
e=$(date +%s.%N)
kill %1; wait 2>/dev/null || true
report "import while serving" "$s" "$m" "$e"
