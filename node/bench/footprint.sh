#!/usr/bin/env bash
# Footprint of halyard-agent, the three numbers of issue 4 (targets in brackets):
#   1. stripped release binary size                                    [< 6 MiB]
#   2. idle RSS of `halyard-agent run` after it connected to the broker  [< 6 MiB]
#   3. peak RSS of `halyard-agent install BUNDLE` applying a signed delta bundle to a 150 MB ext4
#      image, through the agent's real path (copy into the data dir, verify, delta-apply from the
#      active slot file into the inactive slot file, read back, arm the file boot env)  [< 24 MiB]
#
# The two 150 MB images are ota/bench/corpus.py's `ext4` pair (mkfs.ext4 -d of a site-packages tree
# with numpy, pandas and cryptography; the new tree bumps each one: wheels pinned by sha256, fixed
# timestamps and UUID, so the images are byte-for-byte reproducible). The delta bundle is made and
# signed with the halyard-ota CLI with a fixed creation time, and cached in the work directory.
#
# Usage: node/bench/footprint.sh [--no-build]
#   env: CARGO_TARGET_DIR (default target/), WORK (default /tmp/halyard-footprint: corpus, bundle),
#        BROKER (default mqtt://127.0.0.1:1883), SECS (idle wait, default 5)
# Needs: cargo, python3 + pip (corpus), mkfs.ext4, /usr/bin/time, a broker for the idle row.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
AGENT=$TARGET/release-agent/halyard-agent
OTA=$TARGET/release/halyard-ota
WORK=${WORK:-/tmp/halyard-footprint}
BROKER=${BROKER:-mqtt://127.0.0.1:1883}
SECS=${SECS:-5}
MIB=1048576

log() { echo "footprint: $*" >&2; }

if [[ "${1:-}" != --no-build ]]; then
    log "building halyard-agent (profile release-agent) and halyard-ota (release)"
    (cd "$REPO" && cargo build -q -j2 --profile release-agent -p halyard-node --bin halyard-agent &&
        cargo build -q -j2 --release -p halyard-ota)
fi
mkdir -p "$WORK"
run=$(mktemp -d "$WORK/run.XXXXXX")
pid=
cleanup() {
    if [[ -n "$pid" ]]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    clear_retained
    rm -rf "$run"
}
trap cleanup EXIT

# Keys, trust root and server key shared by both measurements.
keys() {
    for k in root release server; do "$OTA" keygen "$run/$k.key" >/dev/null; done
    "$OTA" root init --root-key "$run/root.pub" --release-key "$run/release.pub" \
        --expires 2035-01-01T00:00:00Z --sign "$run/root.key" -o "$run/root.json" >/dev/null
}

# agent.toml for a file-backed device: slots $1 and $2, factory image = the first $3 bytes of slot A.
config() {
    local a="$1" b="$2" size="$3" sha
    sha=$(head -c "$size" "$a" | sha256sum | cut -d' ' -f1)
    echo "root=/dev/vda2 halyard.slot=A" >"$run/cmdline"
    cat >"$run/agent.toml" <<EOF
data_dir = "$run/data"
product = "bench-box"
trust_root = "$run/root.json"
server_key = "$run/server.pub"
[server]
broker = "$BROKER"
[boot]
backend = "file"
env = "$run/bootenv"
current = "cmdline"
cmdline = "$run/cmdline"
reboot = "/bin/true"
[slots]
a = "$a"
b = "$b"
[factory]
version = "1.0.0"
size = $size
sha256 = "$sha"
EOF
}

# Clear the retained report and presence (its will) the idle agent left on the broker.
clear_retained() {
    local id hostport
    id=$(sed 's/\x1b\[[0-9;]*m//g' "$run/idle.log" 2>/dev/null | grep -o 'device=dev-[0-9a-f]*' | head -1 | cut -d= -f2) || true
    hostport=${BROKER#mqtt://}
    if [[ -n "$id" ]] && command -v mosquitto_pub >/dev/null; then
        for t in report presence; do
            mosquitto_pub -h "${hostport%:*}" -p "${hostport##*:}" -r -n -t "halyard/v1/devices/$id/$t" || true
        done
    fi
}

# Sets IDLE_RSS, IDLE_HWM (KiB) and CONNECTED.
idle() {
    head -c $((4 * MIB)) /dev/urandom >"$run/slot-a"
    truncate -s $((4 * MIB)) "$run/slot-b"
    config "$run/slot-a" "$run/slot-b" $((4 * MIB))
    "$AGENT" --config "$run/agent.toml" 2>"$run/idle.log" &
    pid=$!
    sleep "$SECS"
    kill -0 "$pid" 2>/dev/null || { cat "$run/idle.log" >&2; log "agent exited early"; exit 1; }
    grep -q "mqtt connected" "$run/idle.log" && CONNECTED=yes || CONNECTED=no
    IDLE_RSS=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
    IDLE_HWM=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status")
    kill -TERM "$pid"
    wait "$pid" || true
    pid=
    rm -rf "$run/data" "$run/bootenv"
}

# The signed delta bundle old → new (cached: the diff of two 150 MB images takes a while).
bundle() {
    local corpus="$WORK/corpus"
    python3 "$REPO/ota/bench/corpus.py" "$corpus" --pairs ext4 2> >(grep -v '^Creating regular file' >&2)
    OLD="$corpus/ext4/old" NEW="$corpus/ext4/new"
    BUNDLE="$WORK/ext4-delta.hyd"
    local stamp="$WORK/ext4-delta.inputs" want
    want="$(sha256sum "$OLD" "$NEW" | cut -d' ' -f1 | tr '\n' ' ')"
    if [[ -f "$BUNDLE" && -f "$WORK/release.key" && "$(cat "$stamp" 2>/dev/null)" == "$want" ]]; then
        return
    fi
    log "making the delta bundle (halyard-ota bundle create --from)"
    rm -f "$WORK/release.key" "$WORK/release.pub" "$BUNDLE"
    "$OTA" keygen "$WORK/release.key" >/dev/null
    "$OTA" bundle create --product bench-box --version 2.0.0 --security-version 1 \
        --image "$NEW" --from "$OLD" --from-version 1.0.0 --key "$WORK/release.key" \
        --created 2026-11-01T00:00:00Z -o "$BUNDLE" >/dev/null
    echo "$want" >"$stamp"
}

# Sets PEAK_RSS (KiB), INSTALL_SECS and the bundle facts.
install() {
    bundle
    # This run's root trusts the cached bundle's release key.
    "$OTA" root init --root-key "$run/root.pub" --release-key "$WORK/release.pub" \
        --expires 2035-01-01T00:00:00Z --sign "$run/root.key" -o "$run/root.json" >/dev/null
    cp "$OLD" "$run/slot-a"
    truncate -s "$(stat -c %s "$OLD")" "$run/slot-b"
    config "$run/slot-a" "$run/slot-b" "$(stat -c %s "$OLD")"
    local start end
    start=$(date +%s%N)
    /usr/bin/time -v -o "$run/install.time" \
        "$AGENT" --config "$run/agent.toml" install "$BUNDLE" 2>"$run/install.log" ||
        { cat "$run/install.log" >&2; log "install failed"; exit 1; }
    end=$(date +%s%N)
    INSTALL_SECS=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')
    PEAK_RSS=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$run/install.time")
    cmp -s <(head -c "$(stat -c %s "$NEW")" "$run/slot-b") "$NEW" || { log "slot B != new image"; exit 1; }
    IMAGE_BYTES=$(stat -c %s "$NEW")
    BUNDLE_BYTES=$(stat -c %s "$BUNDLE")
}

verdict() { awk -v v="$1" -v t="$2" 'BEGIN { print (v < t ? "ok" : "OVER") }'; }
mib() { awk -v k="$1" 'BEGIN { printf "%.2f MiB", k / 1024 }'; }

keys
SIZE=$(stat -c %s "$AGENT")
file "$AGENT" 2>/dev/null | grep -q "not stripped" && STRIPPED=no || STRIPPED=yes
idle
install

printf '%-44s %-22s %-10s %s\n' "metric" "value" "target" "verdict"
printf '%-44s %-22s %-10s %s\n' "binary size (release-agent, stripped=$STRIPPED)" \
    "$(mib $((SIZE / 1024))) ($SIZE B)" "< 6 MiB" "$(verdict "$SIZE" $((6 * MIB)))"
printf '%-44s %-22s %-10s %s\n' "idle RSS after ${SECS}s, connected=$CONNECTED" \
    "$(mib "$IDLE_RSS")" "< 6 MiB" "$(verdict "$IDLE_RSS" $((6 * 1024)))"
printf '%-44s %-22s %-10s %s\n' "idle peak (VmHWM)" "$(mib "$IDLE_HWM")" "" ""
printf '%-44s %-22s %-10s %s\n' "peak RSS, install delta (${INSTALL_SECS}s)" \
    "$(mib "$PEAK_RSS")" "< 24 MiB" "$(verdict "$PEAK_RSS" $((24 * 1024)))"
printf '%-44s %-22s\n' "  image / delta bundle bytes" "$IMAGE_BYTES / $BUNDLE_BYTES"
