#!/usr/bin/env bash
# Load benchmark of halyard-server: starts the release server on a fresh data directory, runs the
# load generator (examples/loadgen) against it over a real broker, appends the result (one JSON
# object) to bench/results/results.jsonl and prints it as a table row. See ../README.md, "Load benchmark".
#
#   bench/run.sh [--devices N] [--period S] [--warmup S] [--duration S] [--broker mosquitto|embedded]
#                [--broker-url mqtt://127.0.0.1:1883] [--no-build] [-- extra loadgen flags]
#   bench/run.sh matrix      # 1k and 10k devices on Mosquitto, 1k on the embedded broker
#   bench/table.sh           # results.jsonl as a Markdown table
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
devices=1000 period=60 warmup=20 duration=180 broker=mosquitto broker_url=mqtt://127.0.0.1:1883
http=127.0.0.1:18480 mqtt=127.0.0.1:18483 build=1 extra=()

if [[ "${1:-}" == matrix ]]; then
  shift
  "$0" --devices 1000 --broker mosquitto "$@"
  "$0" --devices 1000 --broker embedded --no-build "$@"
  "$0" --devices 10000 --broker mosquitto --no-build "$@"
  exec "$here/table.sh"
fi
while [[ $# -gt 0 ]]; do
  case "$1" in
    --devices) devices="$2"; shift 2 ;;
    --period) period="$2"; shift 2 ;;
    --warmup) warmup="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    --broker) broker="$2"; shift 2 ;;
    --broker-url) broker_url="$2"; shift 2 ;;
    --http) http="$2"; shift 2 ;;
    --no-build) build=0; shift ;;
    --) shift; extra=("$@"); break ;;
    *) echo "unknown flag $1" >&2; exit 2 ;;
  esac
done

if [[ $build == 1 ]]; then
  (cd "$root" && cargo build --release -p halyard-server --bin halyard-server --example loadgen)
fi
# One socket per simulated device, plus the server's and the broker's.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if (( $(ulimit -n) < devices + 1000 )); then
  echo "ulimit -n is $(ulimit -n): too low for $devices connections" >&2
  exit 1
fi

data="$(mktemp -d "${TMPDIR:-/tmp}/halyard-bench.XXXXXX")"
server_args=(--data-dir "$data/server" --http "$http")
broker_pid=()
case "$broker" in
  mosquitto)
    server_args+=(--broker "$broker_url")
    pid="$(pgrep -o -x mosquitto || true)"
    [[ -n $pid ]] && broker_pid=(--broker-pid "$pid")
    ;;
  embedded)
    server_args+=(--mqtt "$mqtt")
    broker_url="mqtt://$mqtt"
    ;;
  *) echo "--broker is mosquitto or embedded" >&2; exit 2 ;;
esac

"$target/release/halyard-server" "${server_args[@]}" >"$data/server.out" 2>"$data/server.log" &
server=$!
cleanup() { kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$data"; }
trap cleanup EXIT
for _ in $(seq 100); do
  curl -fsS "http://$http/healthz" >/dev/null 2>&1 && break
  kill -0 "$server" 2>/dev/null || { cat "$data/server.log" >&2; exit 1; }
  sleep 0.1
done
token="$("$target/release/halyard-server" --data-dir "$data/server" --print-admin-token)"

echo "bench: $devices devices, a report every ${period}s, broker $broker ($broker_url), server pid $server" >&2
result="$(HALYARD_ADMIN_TOKEN="$token" "$target/release/examples/loadgen" \
  --http "http://$http" --broker "$broker_url" --broker-name "$broker" \
  --devices "$devices" --period "$period" --warmup "$warmup" --duration "$duration" \
  --server-pid "$server" "${broker_pid[@]}" "${extra[@]}")"
mkdir -p "$here/results"
result="$(jq -c --arg rev "$(git -C "$root" rev-parse --short HEAD)" --arg date "$(date -u +%FT%TZ)" \
  '. + {rev: $rev, date: $date}' <<<"$result")"
echo "$result" >>"$here/results/results.jsonl"
echo "$result" | jq .
