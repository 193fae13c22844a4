#!/usr/bin/env bash
# Idle footprint of halyard-agent: a file-backed device (4 MiB slots, file boot env, kernel cmdline
# file) running `halyard-agent run` connected to an MQTT broker. Prints binary size, VmRSS and VmHWM
# after SECS seconds. Needs a broker (default 127.0.0.1:1883) and the halyard-ota CLI for keys/root.
#
#   cargo build --profile release-agent -p halyard-node --bin halyard-agent
#   cargo build --release -p halyard-ota
#   AGENT=target/release-agent/halyard-agent OTA=target/release/halyard-ota node/bench/idle-rss.sh
set -euo pipefail
AGENT=${AGENT:-target/release-agent/halyard-agent}
OTA=${OTA:-target/release/halyard-ota}
SECS=${SECS:-5}
BROKER=${BROKER:-mqtt://127.0.0.1:1883}
dir=$(mktemp -d)
pid=
# Stop the agent, then clear the retained report and presence (its will) it left on the broker.
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && sleep 0.5
    local id hostport
    id=$(sed 's/\x1b\[[0-9;]*m//g' "$dir/agent.log" 2>/dev/null | grep -o 'device=dev-[0-9a-f]*' | head -1 | cut -d= -f2)
    hostport=${BROKER#mqtt://}
    if [ -n "$id" ] && command -v mosquitto_pub >/dev/null; then
        for t in report presence; do
            mosquitto_pub -h "${hostport%:*}" -p "${hostport##*:}" -r -n -t "halyard/v1/devices/$id/$t" || true
        done
    fi
    rm -rf "$dir"
}
trap cleanup EXIT

for k in root release server; do "$OTA" keygen "$dir/$k.key" >/dev/null; done
"$OTA" root init --root-key "$dir/root.pub" --release-key "$dir/release.pub" \
    --expires 2035-01-01T00:00:00Z --sign "$dir/root.key" -o "$dir/root.json" >/dev/null
head -c 4194304 /dev/urandom >"$dir/slot-a"
truncate -s 4194304 "$dir/slot-b"
echo "root=/dev/vda2 halyard.slot=A" >"$dir/cmdline"
sha=$(sha256sum "$dir/slot-a" | cut -d' ' -f1)
cat >"$dir/agent.toml" <<EOF
data_dir = "$dir/data"
product = "bench-box"
trust_root = "$dir/root.json"
server_key = "$dir/server.pub"
[server]
broker = "$BROKER"
[boot]
backend = "file"
env = "$dir/bootenv"
current = "cmdline"
cmdline = "$dir/cmdline"
reboot = "/bin/true"
[slots]
a = "$dir/slot-a"
b = "$dir/slot-b"
[factory]
version = "1.0.0"
size = 4194304
sha256 = "$sha"
EOF

"$AGENT" --config "$dir/agent.toml" 2>"$dir/agent.log" &
pid=$!
sleep "$SECS"
if ! kill -0 "$pid" 2>/dev/null; then
    echo "agent exited early:" >&2
    cat "$dir/agent.log" >&2
    exit 1
fi
grep -q "mqtt connected" "$dir/agent.log" && connected=yes || connected=no
rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status")
size=$(stat -c %s "$AGENT")
printf '%-28s %12s\n' "metric" "value"
printf '%-28s %12s\n' "binary size (bytes)" "$size"
printf '%-28s %12s\n' "connected to broker" "$connected"
printf '%-28s %12s\n' "idle VmRSS (KiB) after ${SECS}s" "$rss"
printf '%-28s %12s\n' "peak VmHWM (KiB)" "$hwm"
