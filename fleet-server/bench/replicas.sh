#!/usr/bin/env bash
# Load benchmark of two halyard-server replicas on one PostgreSQL database and one Mosquitto: a fresh
# database (dropped afterwards) and data directory, replica A started first (it takes the engine
# lease), replica B second; the load generator (examples/loadgen) enrolls and probes through B and
# sums both replicas' /metrics. Appends the result (one JSON object, with both replicas' memory) to
# bench/replicas.jsonl and prints it. See ../README.md, "Several replicas on PostgreSQL".
#
#   bench/replicas.sh [--devices N] [--period S] [--warmup S] [--duration S] [--no-build]
#                     [--database-url postgres://postgres@127.0.0.1:5432/postgres]
#                     [--broker mqtt://127.0.0.1:PORT --broker-pid PID] [-- extra loadgen flags]
#
# --broker points both replicas and the load at another Mosquitto (one tuned as deploy/README.md says,
# so the test suite's shared broker on 1883 is left alone); --broker-pid is that broker's process,
# whose memory the result reports.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
devices=10000 period=60 warmup=20 duration=120 build=1 extra=() broker_pid_flag=""
admin_url="postgres://postgres@127.0.0.1:5432/postgres" broker_url=mqtt://127.0.0.1:1883
http_a=127.0.0.1:18490 http_b=127.0.0.1:18491
while [[ $# -gt 0 ]]; do
  case "$1" in
    --devices) devices="$2"; shift 2 ;;
    --period) period="$2"; shift 2 ;;
    --warmup) warmup="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    --database-url) admin_url="$2"; shift 2 ;;
    --broker) broker_url="$2"; shift 2 ;;
    --broker-pid) broker_pid_flag="$2"; shift 2 ;;
    --no-build) build=0; shift ;;
    --) shift; extra=("$@"); break ;;
    *) echo "unknown flag $1" >&2; exit 2 ;;
  esac
done

if [[ $build == 1 ]]; then
  (cd "$root" && cargo build --release -p halyard-server --bin halyard-server --example loadgen)
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if (( $(ulimit -n) < devices + 1000 )); then
  echo "ulimit -n is $(ulimit -n): too low for $devices connections" >&2
  exit 1
fi

db="halyard_bench_$$"
db_url="${admin_url%/*}/$db"
psql "$admin_url" -qc "CREATE DATABASE $db"
data="$(mktemp -d "${TMPDIR:-/tmp}/halyard-replicas.XXXXXX")"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  psql "$admin_url" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true
  rm -rf "$data"
}
trap cleanup EXIT

# Both replicas share the data directory (server key, artifacts) and hand devices B's URL, as
# replicas behind one load balancer would hand out the balancer's.
start_replica() { # name http
  "$target/release/halyard-server" --data-dir "$data/server" --http "$2" --broker "$broker_url" \
    --database-url "$db_url" --public-url "http://$http_b" >"$data/$1.out" 2>"$data/$1.log" &
  pids+=($!)
  for _ in $(seq 200); do
    curl -fsS "http://$2/healthz" >/dev/null 2>&1 && return 0
    kill -0 "${pids[-1]}" 2>/dev/null || { cat "$data/$1.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "replica $1 did not come up" >&2; exit 1
}
start_replica a "$http_a"; pid_a="${pids[-1]}"
start_replica b "$http_b"; pid_b="${pids[-1]}"
token="$(cat "$data/server/admin-token")"
leader="$(psql "$db_url" -tAc "SELECT holder FROM leases WHERE name = 'engine'")"
broker_pid=()
bpid="${broker_pid_flag:-$(pgrep -o -x mosquitto || true)}"
[[ -n $bpid ]] && broker_pid=(--broker-pid "$bpid")
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
a0="$(cpu_ticks "$pid_a")" t0="$(date +%s.%N)"

echo "bench: 2 replicas (a=$pid_a, b=$pid_b; engine leader $leader), $devices devices, a report every ${period}s, Mosquitto" >&2
result="$(HALYARD_ADMIN_TOKEN="$token" "$target/release/examples/loadgen" \
  --http "http://$http_b" --also-metrics "http://$http_a" --broker "$broker_url" --broker-name mosquitto \
  --devices "$devices" --period "$period" --warmup "$warmup" --duration "$duration" \
  --server-pid "$pid_b" "${broker_pid[@]}" "${extra[@]}")"

a1="$(cpu_ticks "$pid_a")" t1="$(date +%s.%N)"
hz="$(getconf CLK_TCK)"
vm() { awk -v k="$2:" '$1 == k {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
db_mib="$(psql "$db_url" -tAc "SELECT pg_database_size('$db') / 1048576")"
result="$(jq -c --arg rev "$(git -C "$root" rev-parse --short HEAD)" --arg date "$(date -u +%FT%TZ)" \
  --argjson a_hwm "$(vm "$pid_a" VmHWM)" --argjson a_rss "$(vm "$pid_a" VmRSS)" \
  --argjson b_rss "$(vm "$pid_b" VmRSS)" --argjson db_mib "$db_mib" \
  --argjson a_cpu "$(echo "($a1 - $a0) / $hz / ($t1 - $t0) * 100" | bc -l | xargs printf '%.0f')" \
  '. + {replicas: 2, database: "postgres", rev: $rev, date: $date,
        replica_a_vmhwm_mib: $a_hwm, replica_a_rss_end_mib: $a_rss, replica_a_cpu_pct_whole_run: $a_cpu,
        replica_b_vmhwm_mib: .server_vmhwm_mib, replica_b_rss_end_mib: $b_rss, database_mib: $db_mib}' \
  <<<"$result")"
echo "$result" >>"$here/replicas.jsonl"
echo "$result" | jq .
