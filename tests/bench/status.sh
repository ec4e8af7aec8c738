#!/usr/bin/env bash
# Status page under load: wrk against kizashi, nginx serving the same exported bytes from
# disk, and a minimal actix-web handler serving the same bytes from memory. Servers on core 0,
# wrk on core 1 (taskset), the same Accept-Encoding, three alternating rounds; prints one line
# per run and the medians (BENCHMARKS.md records them).
#
# Needs (Debian): apt-get install wrk nginx-light libnginx-mod-http-brotli-static
# and release builds: cargo build --release --bin kizashi --example minimal_status
set -euo pipefail
cd "$(dirname "$0")/../.."

BIN="${BIN:-${CARGO_TARGET_DIR:-target}/release}"
DURATION="${DURATION:-10s}"
CONNS="${CONNS:-32}"
ACCEPT="gzip, deflate, br"
K_PORT=18180 N_PORT=18181 M_PORT=18182
WORK="$(mktemp -d)"
chmod 755 "$WORK"  # nginx workers run unprivileged
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

for tool in wrk nginx taskset curl; do
  command -v "$tool" >/dev/null || { echo "missing $tool (see the header of this script)" >&2; exit 1; }
done
[ -x "$BIN/kizashi" ] && [ -x "$BIN/examples/minimal_status" ] || {
  echo "build first: cargo build --release --bin kizashi --example minimal_status" >&2; exit 1; }

wait_port() { for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$1/$2" && return 0; sleep 0.1; done; return 1; }

# 1. kizashi on core 0 with a realistic page: 20 components in 4 groups, 30 incidents.
export KIZASHI_DATA_DIR="$WORK/data" KIZASHI_BIND="127.0.0.1:$K_PORT" KIZASHI_LOG=warn
# wrk is one client: the per-client allowance on /api/v2/* would answer 429s after its burst
# (the limiter's check itself still runs, and is measured).
export KIZASHI_LIMITS__STATUS_API_PER_MINUTE=100000000 KIZASHI_LIMITS__STATUS_API_BURST=100000000
taskset -c 0 "$BIN/kizashi" serve >"$WORK/kizashi.log" 2>&1 &
PIDS+=($!)
wait_port $K_PORT healthz
K="http://127.0.0.1:$K_PORT"
json() { curl -s -o /dev/null -w '%{http_code}' -X "$1" "$K$2" -H 'content-type: application/json' -d "$3"; }
for i in $(seq 0 19); do
  json PUT "/api/v1/components/c$i" "{\"name\":\"コンポーネント$i\",\"group\":\"グループ$((i % 4))\"}" >/dev/null
done
for i in $(seq 1 30); do
  json POST /api/v1/incidents "{\"name\":\"障害 $i\",\"body\":\"**調査中**です。\",\"components\":{\"c$((i % 20))\":\"partial_outage\"}}" >/dev/null
  json POST "/api/v1/incidents/$i/updates" '{"status":"resolved","body":"解決しました。"}' >/dev/null
done
json POST /api/v1/incidents '{"name":"決済APIの遅延","body":"調査しています。","components":{"c1":"degraded_performance"}}' >/dev/null

# 2. The same documents as files, for nginx and the minimal handler.
"$BIN/kizashi" export-status "$WORK/www" >/dev/null

cat >"$WORK/nginx.conf" <<EOF
load_module /usr/lib/nginx/modules/ngx_http_brotli_static_module.so;
worker_processes 1;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 4096; }
http {
  include /etc/nginx/mime.types;
  access_log off;
  keepalive_requests 1000000;
  brotli_static on;
  gzip_static on;
  gzip_vary on;
  server {
    listen 127.0.0.1:$N_PORT;
    root $WORK/www;
    add_header Cache-Control "public, max-age=10, stale-while-revalidate=60";
    location = /status { default_type "text/html; charset=utf-8"; try_files /status/index.html =404; }
    location / { }
  }
}
EOF
taskset -c 0 nginx -c "$WORK/nginx.conf" -p "$WORK" &
PIDS+=($!)
taskset -c 0 "$BIN/examples/minimal_status" "127.0.0.1:$M_PORT" "$WORK/www" &
PIDS+=($!)
wait_port $N_PORT status
wait_port $M_PORT status

# The three must serve the same bytes for the same request.
for path in /status /api/v2/summary.json; do
  sums=$(for port in $K_PORT $N_PORT $M_PORT; do
    curl -s -H "Accept-Encoding: $ACCEPT" "http://127.0.0.1:$port$path" | sha256sum | cut -c1-16
  done)
  if [ "$(sort -u <<<"$sums" | wc -l)" != 1 ]; then
    echo "servers disagree on $path (kizashi, nginx, minimal):" $sums >&2
    for port in $K_PORT $N_PORT $M_PORT; do
      curl -s -D - -o /dev/null -H "Accept-Encoding: $ACCEPT" "http://127.0.0.1:$port$path" | grep -i "content-encoding\|content-length\|HTTP/" >&2
    done
    exit 1
  fi
done
echo "bytes: /status $(curl -s -H "Accept-Encoding: $ACCEPT" "$K/status" | wc -c) B (br), summary.json $(curl -s -H "Accept-Encoding: $ACCEPT" "$K/api/v2/summary.json" | wc -c) B (br)"

# 3. Three alternating rounds.
RESULTS="$WORK/results"
for round in 1 2 3; do
  for path in /status /api/v2/summary.json; do
    for server in kizashi:$K_PORT nginx:$N_PORT minimal:$M_PORT; do
      name=${server%%:*} port=${server##*:}
      out=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"$DURATION" --latency -H "Accept-Encoding: $ACCEPT" "http://127.0.0.1:$port$path")
      rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
      p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
      errs=$(grep -E "Non-2xx|Socket errors" <<<"$out" | tr -s " \n" " " || true)
      echo "round $round $path $name: $rps req/s, p99 $p99${errs:+ (errors: $errs)}"
      echo "$path $name $rps $p99" >>"$RESULTS"
    done
  done
done
echo "medians of 3:"
for path in /status /api/v2/summary.json; do
  for name in kizashi nginx minimal; do
    awk -v p="$path" -v n="$name" '$1 == p && $2 == n {print $3, $4}' "$RESULTS" | sort -n | sed -n 2p |
      while read -r rps p99; do echo "  $path $name: $rps req/s, p99 $p99"; done
  done
done
