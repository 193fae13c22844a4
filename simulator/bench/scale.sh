#!/usr/bin/env bash
# Scale benchmark of the simulator: how large a fleet runs through the real server core and rollout
# engine (a 4-wave rollout, every device the real agent over fake hardware).
#
#   bench/scale.sh virtual [N ...]     # virtual time; default sizes 1000 5000 20000
#   bench/scale.sh real [N ...]        # real time, real sockets, a Mosquitto of its own; default 1000 10000
#   bench/scale.sh largest             # virtual time, doubling from 2000 while a run takes < 60 s
#
# Prints one Markdown table row per run (wall time, virtual time covered, device steps and messages
# per wall second, peak RSS of the whole process and per device) and appends JSON to results/.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
mode="${1:-virtual}"; shift || true
mkdir -p "$here/results"
work="$(mktemp -d)"; broker_pid=""
trap '[[ -n $broker_pid ]] && kill "$broker_pid" 2>/dev/null; rm -rf "$work"' EXIT

# HALYARD_SIM_BIN=path uses that binary instead of building the release one.
sim="${HALYARD_SIM_BIN:-$target/release/halyard-sim}"
[[ -n "${HALYARD_SIM_BIN:-}" ]] || (cd "$root" && cargo build --release -q -p halyard-sim)

scenario() { # clock devices
  local clock=$1 n=$2 per=$(( $2 / 8 )) rest=$(( $2 - 7 * ($2 / 8) ))
  cat <<EOT
name = "scale $clock $n"
clock = "$clock"
seed = 3
image_kib = 4
$([[ $clock == real ]] && echo "broker = \"mqtt://127.0.0.1:$mqtt_port\"")
$(if [[ $clock == real ]]; then
    # Real time on a loaded machine: a health check may time out now and then (the wave's failure
    # budget of 1 % absorbs it, as it would in a real fleet).
    echo "expect = ['rollout(\"r-scale\").state == \"completed\"', 'devices_on(\"2.0.0\") >= 99%', 'bricked == 0']"
  else
    echo "expect = ['rollout(\"r-scale\").state == \"completed\"', 'all_on(\"2.0.0\")', 'bricked == 0']"
  fi)
$([[ $clock == virtual ]] && printf '[virtual]\nstability_window = "2m"\nhealth_interval = "1m"\nengine_tick = "1m"\nsample = "5m"\n')
EOT
  for s in 1 2 3 4; do printf '[[site]]\nname = "site-%s"\ntz = "UTC"\n' "$s"; done
  local i=0
  for s in 1 2 3 4; do for hw in pos-x86 kiosk-arm; do
    i=$((i + 1)); local c=$per; [[ $i == 8 ]] && c=$rest
    printf '[[devices]]\nsite = "site-%s"\nhw = "%s"\ncount = %s\n' "$s" "$hw" "$c"
  done; done
  local soak=600; [[ $clock == real ]] && soak=5
  cat <<EOT
[[release]]
version = "2.0.0"
[[rollout]]
id = "r-scale"
version = "2.0.0"
timeout_secs = 86400
[rollout.policy]
on_breach = "pause"
silent_after_secs = 3600
respect_windows = false
waves = [
  { size = { percent = 1 }, soak_secs = $soak, failure_budget = { count = 0 } },
  { size = { percent = 10 }, soak_secs = $soak, failure_budget = { percent = 1 } },
  { size = { percent = 40 }, soak_secs = $soak, failure_budget = { percent = 1 } },
  { size = { percent = 100 }, soak_secs = $soak, failure_budget = { percent = 1 } },
]
EOT
}

# A Mosquitto of our own per real-time run (fresh retained state; the shared one on 1883 keeps
# every earlier run's retained reports). Tuned as deploy/README.md says for a fleet server: the
# server's one subscription carries every device's messages, so its queue must not be capped at
# Mosquitto's default of 1,000 (it drops messages beyond that).
mqtt_port=0
start_broker() {
  mqtt_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  cat > "$work/mosquitto.conf" <<EOT
listener $mqtt_port 127.0.0.1
allow_anonymous true
persistence false
max_connections -1
max_queued_messages 0
max_inflight_messages 0
log_dest stderr
log_type error
EOT
  mosquitto -c "$work/mosquitto.conf" 2> "$work/mosquitto.log" &
  broker_pid=$!
  for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$mqtt_port") 2>/dev/null && return; sleep 0.1; done
  echo "mosquitto did not start: $(cat "$work/mosquitto.log")" >&2; exit 1
}
stop_broker() { # prints the broker's peak RSS in KiB
  local peak; peak=$(awk '/VmHWM/ {print $2}' "/proc/$broker_pid/status" 2>/dev/null || echo 0)
  kill "$broker_pid" 2>/dev/null; wait "$broker_pid" 2>/dev/null || true
  echo "${peak:-0}"
}

run_one() { # clock devices -> prints a table row, returns wall seconds in $wall
  local clock=$1 n=$2 file="$work/scale-$1-$2.toml" out="$work/out-$1-$2" broker_kib=0
  [[ $clock == real ]] && start_broker
  scenario "$clock" "$n" > "$file"
  local t0=$(date +%s.%N)
  /usr/bin/time -f '%M' -o "$work/rss" "$sim" run "$file" --out "$out" --json > /dev/null || true
  local t1=$(date +%s.%N)
  wall=$(echo "$t1 - $t0" | bc -l)
  local rss_kib=$(tail -1 "$work/rss")
  [[ $clock == real ]] && broker_kib=$(stop_broker)
  python3 - "$out/results.json" "$clock" "$n" "$wall" "$rss_kib" "$broker_kib" "$here/results/scale.jsonl" <<'PY'
import json, sys
res, clock, n, wall, rss, broker, log = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), sys.argv[7]
r = json.load(open(res))
sim = r.get("simulated") or {}
st = sim.get("stats", {})
srv = r.get("server") or {}
steps, msgs = st.get("device_steps", 0), st.get("messages", 0) or srv.get("ingested", 0)
ok = all(v["passed"] for v in r["verdicts"])
row = dict(clock=clock, devices=n, wall_s=round(wall, 1), virtual_h=round(sim.get("hours", 0), 2),
           device_steps=steps, messages=msgs, events_per_s=round((steps + msgs) / wall),
           peak_rss_mib=round(rss / 1024, 1), kib_per_device=round(rss / n, 1),
           broker_rss_mib=round(broker / 1024, 1), enroll_s=round(srv.get("enroll_seconds", 0), 1),
           rollout_s=round(srv.get("rollout_seconds", 0), 1), ingest_p99_ms=srv.get("ingest_p99_ms"),
           ingest_p99_above_ms=srv.get("ingest_p99_above_ms"),
           on_target=r["versions"].get("2.0.0", 0), rollout=r["rollouts"].get("r-scale"), passed=ok)
open(log, "a").write(json.dumps(row) + "\n")
# Above the histogram's top bucket the server only knows a lower bound; no server (virtual time): "-".
p99, above = row["ingest_p99_ms"], row["ingest_p99_above_ms"]
p99 = f"> {above:g} ms" if above is not None else ("-" if p99 is None else p99)
print("| {clock} | {devices} | {wall_s} | {enroll_s} | {rollout_s} | {virtual_h} | {device_steps} | {messages} | {events_per_s} | {p99} | {peak_rss_mib} | {kib_per_device} | {broker_rss_mib} | {on_target} | {rollout} | {passed} |".format(**row, p99=p99))
PY
}

echo "| clock | devices | wall s | enroll s | rollout s | virtual h | device steps | messages | (steps+messages)/s | ingest p99 ms | peak RSS MiB | KiB/device | broker RSS MiB | on 2.0.0 | rollout | expect |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
case "$mode" in
  virtual) for n in "${@:-1000 5000 20000}"; do for m in $n; do run_one virtual "$m"; done; done ;;
  real) for n in "${@:-1000 10000}"; do for m in $n; do run_one real "$m"; done; done ;;
  largest)
    n=2000
    while :; do
      run_one virtual "$n"
      (( $(echo "$wall > 60" | bc -l) )) && break
      n=$(( n * 2 ))
    done ;;
  *) echo "usage: $0 virtual|real|largest [N ...]" >&2; exit 2 ;;
esac
