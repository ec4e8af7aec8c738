#!/usr/bin/env bash
# Instructions per request under callgrind (valgrind), kizashi vs the minimal actix-web handler:
# unlike wrk, the count does not depend on what else the machine is doing. Each server gets 200
# warm-up requests, then N keep-alive GETs on one connection between a zero and a dump of the
# counters. Needs valgrind and release builds (see status.sh). usage: status_instructions.sh [N]
set -euo pipefail
N=${1:-2000}
BIN="${BIN:-${CARGO_TARGET_DIR:-target}/release}"
W=$(mktemp -d); chmod 755 $W
cd "$(dirname "$0")/../.."
export KIZASHI_DATA_DIR="$W/data" KIZASHI_BIND="127.0.0.1:18190" KIZASHI_LOG=warn
export KIZASHI_LIMITS__STATUS_API_PER_MINUTE=100000000 KIZASHI_LIMITS__STATUS_API_BURST=100000000
wait_port() { for _ in $(seq 300); do curl -s -o /dev/null "http://127.0.0.1:$1/$2" && return 0; sleep 0.2; done; return 1; }
"$BIN/kizashi" serve >/dev/null 2>&1 & P=$!
wait_port 18190 healthz
K=http://127.0.0.1:18190
json() { curl -s -o /dev/null -X "$1" "$K$2" -H 'content-type: application/json' -d "$3"; }
for i in $(seq 0 19); do json PUT "/api/v1/components/c$i" "{\"name\":\"コンポーネント$i\",\"group\":\"グループ$((i % 4))\"}"; done
for i in $(seq 1 30); do
  json POST /api/v1/incidents "{\"name\":\"障害 $i\",\"body\":\"**調査中**です。\",\"components\":{\"c$((i % 20))\":\"partial_outage\"}}"
  json POST "/api/v1/incidents/$i/updates" '{"status":"resolved","body":"解決しました。"}'
done
"$BIN/kizashi" export-status "$W/www" >/dev/null
kill $P; wait $P || true
measure() { # name port cmd...
  local name=$1 port=$2; shift 2
  valgrind --tool=callgrind --callgrind-out-file=$W/cg.$name.%p "$@" >/dev/null 2>&1 & local vp=$!
  wait_port $port healthz || wait_port $port status
  for path in /status /api/v2/summary.json; do
    python3 tests/bench/keepalive_get.py $port $path 200
    callgrind_control -z $vp >/dev/null 2>&1
    python3 tests/bench/keepalive_get.py $port $path $N
    callgrind_control -d $vp >/dev/null 2>&1
    local f=$(ls -t $W/cg.$name.$vp.* | head -1)
    local ir=$(grep -E '^(summary|totals):' $f | head -1 | awk '{print $2}')
    echo "$name $path: $((ir / N)) instructions/request"
  done
  kill $vp; wait $vp 2>/dev/null || true
}
measure kizashi 18190 "$BIN/kizashi" serve
measure minimal 18191 "$BIN/examples/minimal_status" 127.0.0.1:18191 "$W/www"
rm -rf $W
