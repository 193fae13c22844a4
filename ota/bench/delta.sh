#!/usr/bin/env bash
# Delta benchmark: Halyard's `halyard-ota diff/apply` against bsdiff, qbsdiff, xdelta3, zstd
# --patch-from and HDiffPatch on real upstream artifact pairs (see corpus.py and ota/README.md).
#
# Usage: ota/bench/delta.sh [--pairs shlib,exe,ext4] [--tools LIST] [--quick] [--timeout SECS]
#                           [--halyard BIN] [--halyard-rev REV] [--worktree] [--no-build]
#                           [--corpus-only] [--keep]
#   --pairs        which corpus pairs to run (default: all three)
#   --tools        comma list from: halyard (default codecs) halyard-zstd (diff --codec zstd) bsdiff qbsdiff
#                  xdelta3 zstd hdiffpatch-zstd
#                  hdiffpatch-lzma hdiffpatch-lzma2 (default: all)
#   --quick        skip the slow runs: bsdiff/qbsdiff on ext4, and hdiffpatch other than lzma2
#   --timeout      per-command limit in seconds (default 600); a run past it is "timeout"
#   --halyard BIN  use this halyard-ota binary instead of building it
#   --halyard-rev REV  build halyard-ota from this commit (default HEAD), exported with
#                  `git archive` so other people's uncommitted edits do not leak in
#   --worktree     build halyard-ota from the working tree instead of a commit
#   --no-build     do not run cargo; use $CARGO_TARGET_DIR/release/halyard-ota as it is
#   --corpus-only  build the corpus (ota/bench/work/corpus/<pair>/{old,new}) and stop
#   --keep         keep patches and outputs under ota/bench/work/results/<run>/
# It is a benchmark, not a test: nothing in the test suite runs it. Needs root for apt-get
# when a system tool is missing. Results: ota/bench/work/results/<run>.{tsv,json,md}.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
WORK="$HERE/work"
ALL_TOOLS="halyard,halyard-zstd,bsdiff,qbsdiff,xdelta3,zstd,hdiffpatch-zstd,hdiffpatch-lzma,hdiffpatch-lzma2"
PAIRS="shlib,exe,ext4"
TOOLS="$ALL_TOOLS"
QUICK=0
TIMEOUT=600
HALYARD_BIN=""
HALYARD_REV="HEAD"
HALYARD_BUILT=""
NO_BUILD=0
CORPUS_ONLY=0
KEEP=0
QBSDIFF_VERSION="1.4.4"
HDIFFPATCH_VERSION="2.6.0"

die() { echo "delta.sh: $*" >&2; exit 1; }
log() { echo "delta.sh: $*" >&2; }

while (($#)); do
    case "$1" in
        --pairs) PAIRS="${2:?}"; shift 2 ;;
        --tools) TOOLS="${2:?}"; shift 2 ;;
        --quick) QUICK=1; shift ;;
        --timeout) TIMEOUT="${2:?}"; shift 2 ;;
        --halyard) HALYARD_BIN="${2:?}"; shift 2 ;;
        --halyard-rev) HALYARD_REV="${2:?}"; shift 2 ;;
        --worktree) HALYARD_REV=""; shift ;;
        --no-build) NO_BUILD=1; shift ;;
        --corpus-only) CORPUS_ONLY=1; shift ;;
        --keep) KEEP=1; shift ;;
        -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done

ensure_system_packages() {
    local missing=() entry cmd pkg
    for entry in /usr/bin/time:time bsdiff:bsdiff bspatch:bsdiff xdelta3:xdelta3 zstd:zstd \
        mkfs.ext4:e2fsprogs debugfs:e2fsprogs unzip:unzip timeout:coreutils; do
        cmd="${entry%%:*}" pkg="${entry##*:}"
        command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
    done
    if ((${#missing[@]})); then
        log "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

ensure_qbsdiff() {
    local root="$WORK/tools"
    if [[ ! -x "$root/bin/qbsdiff" || ! -x "$root/bin/qbspatch" ]]; then
        log "cargo install qbsdiff $QBSDIFF_VERSION into $root"
        # qbsdiff 1.4.4's published Cargo.lock pins qbsdiff 1.4.3 through a dev helper, which
        # `--locked` cannot resolve: fall back to a fresh resolution.
        CARGO_TARGET_DIR="$WORK/tools/target" cargo install --locked --quiet -j2 \
            qbsdiff --version "=$QBSDIFF_VERSION" --features cmd --root "$root" 2>/dev/null ||
            CARGO_TARGET_DIR="$WORK/tools/target" cargo install --quiet -j2 \
                qbsdiff --version "=$QBSDIFF_VERSION" --features cmd --root "$root"
    fi
}

ensure_hdiffpatch() {
    python3 -c 'import hdiffpatch' 2>/dev/null ||
        python3 -m pip install --quiet "hdiffpatch==$HDIFFPATCH_VERSION"
}

# Sets HALYARD_SRC to the tree to build Halyard from (the working tree, or HALYARD_REV
# exported under work/halyard-src/<sha>) and HALYARD_BUILT to a description of it.
halyard_source() {
    if [[ -z "$HALYARD_REV" ]]; then
        HALYARD_BUILT="working tree at $(git -C "$REPO" rev-parse --short HEAD)"
        [[ -z "$(git -C "$REPO" status --porcelain -- ota 2>/dev/null)" ]] ||
            HALYARD_BUILT+=" + uncommitted changes in ota/"
        HALYARD_SRC="$REPO"
        return
    fi
    local sha dest
    sha=$(git -C "$REPO" rev-parse --verify "$HALYARD_REV^{commit}") || return 1
    HALYARD_BUILT="commit ${sha:0:10}"
    dest="$WORK/halyard-src/$sha"
    if [[ ! -f "$dest/Cargo.toml" ]]; then
        rm -rf "$dest.tmp" && mkdir -p "$dest.tmp"
        git -C "$REPO" archive "$sha" | tar -x -C "$dest.tmp" || return 1
        mv "$dest.tmp" "$dest"
    fi
    HALYARD_SRC="$dest"
}

# Sets HALYARD (binary path) or HALYARD_WHY (why it is unavailable).
ensure_halyard() {
    HALYARD="" HALYARD_WHY=""
    local bin="$HALYARD_BIN"
    if [[ -z "$bin" ]]; then
        local target="${CARGO_TARGET_DIR:-$REPO/target}"
        bin="$target/release/halyard-ota"
        if ((!NO_BUILD)); then
            halyard_source || { HALYARD_WHY="cannot export revision $HALYARD_REV"; return; }
            log "cargo build --release -p halyard-ota: $HALYARD_BUILT (target dir $target)"
            if ! (cd "$HALYARD_SRC" && CARGO_TARGET_DIR="$target" cargo build --release -q -j2 \
                -p halyard-ota >"$WORK/results/halyard-build.log" 2>&1); then
                HALYARD_WHY="build of $HALYARD_BUILT failed (see work/results/halyard-build.log)"
                return
            fi
        fi
    fi
    if [[ ! -x "$bin" ]]; then
        HALYARD_WHY="no binary at $bin"
    elif "$bin" no-such-subcommand >/dev/null 2>&1 || ! "$bin" diff --help >/dev/null 2>&1 ||
        ! "$bin" apply --help >/dev/null 2>&1; then
        HALYARD_WHY="halyard-ota has no diff/apply subcommands yet"
    else
        HALYARD="$bin"
    fi
}

# Smallest zstd window log (>= 27) that covers the larger of the two files.
zstd_wlog() {
    python3 -c 'import math,os,sys; print(max(27, math.ceil(math.log2(max(os.path.getsize(p) for p in sys.argv[1:])))))' "$@"
}

# Fills CMD with the argv that makes PATCH from OLD and NEW.
diff_cmd() {
    local tool="$1" old="$2" new="$3" patch="$4"
    case "$tool" in
        halyard) CMD=("$HALYARD" diff "$old" "$new" -o "$patch") ;;
        halyard-zstd) CMD=("$HALYARD" diff --codec zstd "$old" "$new" -o "$patch") ;;
        bsdiff) CMD=(bsdiff "$old" "$new" "$patch") ;;
        qbsdiff) CMD=("$WORK/tools/bin/qbsdiff" "$old" "$new" "$patch") ;;
        xdelta3) CMD=(xdelta3 -f -9 -S djw -B "$(xdelta_srcwin "$old")" -e -s "$old" "$new" "$patch") ;;
        zstd) CMD=(zstd -q -f -19 "--long=$(zstd_wlog "$old" "$new")" "--patch-from=$old" "$new" -o "$patch") ;;
        hdiffpatch-*) CMD=(python3 "$HERE/hdiff.py" diff "${tool#hdiffpatch-}" "$old" "$new" "$patch") ;;
        *) die "unknown tool $tool" ;;
    esac
}

# Fills CMD with the argv that rebuilds OUT from OLD and PATCH.
apply_cmd() {
    local tool="$1" old="$2" patch="$3" out="$4" new="$5"
    case "$tool" in
        halyard|halyard-zstd) CMD=("$HALYARD" apply "$old" "$patch" -o "$out") ;;
        bsdiff) CMD=(bspatch "$old" "$out" "$patch") ;;
        qbsdiff) CMD=("$WORK/tools/bin/qbspatch" "$old" "$out" "$patch") ;;
        xdelta3) CMD=(xdelta3 -f -d -B "$(xdelta_srcwin "$old")" -s "$old" "$patch" "$out") ;;
        zstd) CMD=(zstd -q -f -d "--long=$(zstd_wlog "$old" "$new")" "--patch-from=$old" "$patch" -o "$out") ;;
        hdiffpatch-*) CMD=(python3 "$HERE/hdiff.py" apply "$old" "$patch" "$out") ;;
        *) die "unknown tool $tool" ;;
    esac
}

# xdelta3's source window (-B): the whole old file (at least the 64 MiB default), so large
# images are not penalised by a window shorter than the file.
xdelta_srcwin() {
    local size
    size=$(stat -c %s "$1")
    echo $((size > 67108864 ? size : 67108864))
}

# measure LOGFILE CMD... -> prints "status seconds max_rss_kb"
measure() {
    local logf="$1"; shift
    local tf="$logf.time" rc start end status secs rss
    start=$(date +%s%N)
    set +e
    timeout -k 10 "$TIMEOUT" /usr/bin/time -v -o "$tf" "$@" >"$logf" 2>&1
    rc=$?
    set -e
    end=$(date +%s%N)
    secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')
    rss=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$tf" 2>/dev/null || true)
    case "$rc" in
        0) status=ok ;;
        124|137) status=timeout rss="" ;;
        *) status="fail($rc)" ;;
    esac
    echo "$status $secs ${rss:--}"
}

skip_reason() {
    local pair="$1" tool="$2"
    if ((QUICK)); then
        [[ "$pair" == ext4 && ( "$tool" == bsdiff || "$tool" == qbsdiff ) ]] && { echo "skipped (--quick)"; return; }
        [[ "$tool" == hdiffpatch-zstd || "$tool" == hdiffpatch-lzma ]] && { echo "skipped (--quick)"; return; }
    fi
    [[ "$tool" == halyard* && -z "$HALYARD" ]] && { echo "unavailable: $HALYARD_WHY"; return; }
    echo ""
}

run_one() {
    local pair="$1" tool="$2" dir="$3" tsv="$4"
    local old="$WORK/corpus/$pair/old" new="$WORK/corpus/$pair/new"
    local patch="$dir/$pair.$tool.patch" out="$dir/$pair.$tool.out"
    local old_b new_b reason d a pbytes verify
    old_b=$(stat -c %s "$old") new_b=$(stat -c %s "$new")
    reason=$(skip_reason "$pair" "$tool")
    if [[ -n "$reason" ]]; then
        printf '%s\t%s\t%s\t%s\t-\t-\t-\t%s\t-\t-\t-\t-\n' "$pair" "$tool" "$old_b" "$new_b" "$reason" >>"$tsv"
        log "$pair $tool: $reason"
        return
    fi
    diff_cmd "$tool" "$old" "$new" "$patch"
    log "$pair $tool: ${CMD[*]##*/}"
    read -r -a d < <(measure "$dir/$pair.$tool.diff.log" "${CMD[@]}")
    pbytes="-" a=(- - -) verify="-"
    [[ "${d[0]}" == ok && ! -f "$patch" ]] && d[0]="fail(no patch)"
    if [[ "${d[0]}" == ok && -f "$patch" ]]; then
        pbytes=$(stat -c %s "$patch")
        apply_cmd "$tool" "$old" "$patch" "$out" "$new"
        read -r -a a < <(measure "$dir/$pair.$tool.apply.log" "${CMD[@]}")
        if [[ "${a[0]}" == ok ]]; then
            cmp -s "$out" "$new" && verify=identical || verify=MISMATCH
        fi
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$pair" "$tool" "$old_b" "$new_b" \
        "$pbytes" "${d[1]}" "${d[2]}" "${d[0]}" "${a[1]}" "${a[2]}" "${a[0]}" "$verify" >>"$tsv"
    log "$pair $tool: patch=$pbytes diff=${d[0]}/${d[1]}s/${d[2]}KB apply=${a[0]}/${a[1]}s/${a[2]}KB $verify"
    ((KEEP)) || rm -f "$patch" "$out"
}

# What the measured binary is.
halyard_revision() {
    if [[ -n "$HALYARD_BIN" ]]; then
        echo "$HALYARD_BIN (given with --halyard)"
    elif ((NO_BUILD)); then
        echo "prebuilt binary (--no-build)"
    else
        echo "$HALYARD_BUILT"
    fi
}

tool_versions() {
    {
        echo "bsdiff: $(dpkg-query -W -f '${Version}' bsdiff 2>/dev/null)"
        echo "xdelta3: $(xdelta3 -V 2>&1 | head -1)"
        echo "zstd: $(zstd --version)"
        echo "qbsdiff: $QBSDIFF_VERSION (crates.io)"
        echo "hdiffpatch: $(python3 -m pip show hdiffpatch 2>/dev/null | awk '/^Version/ { print $2 }') (PyPI wrapper)"
        echo "halyard: ${HALYARD:+$(halyard_revision)}${HALYARD_WHY:+unavailable ($HALYARD_WHY)}"
        echo "cpu: $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo) x $(nproc)"
        echo "mem: $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
    }
}

main() {
    mkdir -p "$WORK/corpus" "$WORK/tools" "$WORK/results"
    ensure_system_packages
    python3 "$HERE/corpus.py" "$WORK/corpus" --pairs "$PAIRS" 2> >(grep -v '^Creating regular file' >&2)
    ((CORPUS_ONLY)) && return
    [[ ",$TOOLS," == *,qbsdiff,* ]] && ensure_qbsdiff
    [[ ",$TOOLS," == *,hdiffpatch-* ]] && ensure_hdiffpatch
    HALYARD="" HALYARD_WHY="not requested"
    [[ ",$TOOLS," == *,halyard* ]] && ensure_halyard
    local run dir tsv pair tool
    run="run-$(date -u +%Y%m%dT%H%M%SZ)"
    dir="$WORK/results/$run" tsv="$WORK/results/$run.tsv"
    mkdir -p "$dir"
    printf 'pair\ttool\told_bytes\tnew_bytes\tpatch_bytes\tdiff_s\tdiff_rss_kb\tdiff_status\tapply_s\tapply_rss_kb\tapply_status\tverify\n' >"$tsv"
    tool_versions >"$WORK/results/$run.env"
    for pair in ${PAIRS//,/ }; do
        for tool in ${TOOLS//,/ }; do
            run_one "$pair" "$tool" "$dir" "$tsv"
        done
    done
    ((KEEP)) || rm -rf "$dir"
    python3 "$HERE/report.py" "$tsv" "$WORK/results/$run.env" --timeout "$TIMEOUT" \
        --json "$WORK/results/$run.json" --md "$WORK/results/$run.md"
    ln -sfn "$run.md" "$WORK/results/latest.md"
    ln -sfn "$run.json" "$WORK/results/latest.json"
    ln -sfn "$run.tsv" "$WORK/results/latest.tsv"
}

main; exit $?  # on one line so that editing this file during a run cannot feed bash new lines
