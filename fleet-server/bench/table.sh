#!/usr/bin/env bash
# Prints bench/results/results.jsonl (or the file given) as a Markdown table.
set -euo pipefail
file="${1:-$(cd "$(dirname "$0")" && pwd)/results/results.jsonl}"
echo "| devices | period | broker | offered msg/s | ingested msg/s | lost | e2e p50 / p99 / max ms | server hist p99 ms | PUBACK p99 ms | server CPU | broker CPU | loadgen CPU | server peak RSS (VmHWM) MiB | load avg |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
jq -r '"| \(.devices) | \(.period_s) s | \(.broker) | \(.offered_per_s) | \(.ingested_per_s) | \(.lost) | \(.e2e_p50_ms) / \(.e2e_p99_ms) / \(.e2e_max_ms) | \(.server_hist_p99_ms) | \(.puback_p99_ms) | \(.server_cpu_pct)% | \(.broker_cpu_pct // "in server")% | \(.loadgen_cpu_pct)% | \(.server_rss_peak_mib) (\(.server_vmhwm_mib * 10 | round / 10)) | \(.loadavg) |"' "$file"
