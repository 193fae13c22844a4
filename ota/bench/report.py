#!/usr/bin/env python3
"""Turn one delta benchmark run (TSV from delta.sh) into a markdown table, ratios and JSON.

Usage: report.py RUN.tsv RUN.env [--timeout S] [--json OUT.json] [--md OUT.md]
"""

import argparse
import csv
import json
import os

PAIR_LABEL = {
    "shlib": "shlib (cryptography _rust.abi3.so 42.0.7→42.0.8)",
    "exe": "exe (uv 0.4.20→0.4.21)",
    "ext4": "ext4 (150 MiB image, numpy/pandas/cryptography bumped)",
}


def num(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def human_bytes(n):
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} GiB"


def mib(kb):
    v = num(kb)
    return "-" if v is None else f"{v / 1024:.0f}"


def load(tsv):
    with open(tsv, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    for r in rows:
        r["ok"] = r["verify"] == "identical"
        for k in ("old_bytes", "new_bytes", "patch_bytes", "diff_s", "diff_rss_kb", "apply_s", "apply_rss_kb"):
            r[k] = num(r[k])
    return rows


def row_md(r, timeout):
    name = r["tool"]
    if r["patch_bytes"] is None:
        status = r["diff_status"]
        if status == "timeout":
            status = f"timeout (>{timeout:.0f} s)"
        return f"| {name} | {status} | | | | | | |"
    pct = 100.0 * r["patch_bytes"] / r["new_bytes"]
    apply_s = f"{r['apply_s']:.2f}" if r["apply_status"] == "ok" else r["apply_status"]
    check = "ok" if r["ok"] else f"**{r['verify'] if r['verify'] != '-' else 'apply ' + r['apply_status']}**"
    return (f"| {name} | {human_bytes(r['patch_bytes'])} | {pct:.2f}% | {r['diff_s']:.2f} | "
            f"{mib(r['diff_rss_kb'])} | {apply_s} | {mib(r['apply_rss_kb'])} | {check} |")


def ratios(rows):
    """Each Halyard variant (tools named halyard*) against the best peer of the same pair."""
    out = []
    for pair in dict.fromkeys(r["pair"] for r in rows):
        peers = [r for r in rows if r["pair"] == pair and not r["tool"].startswith("halyard") and r["ok"]]
        mine = [r for r in rows if r["pair"] == pair and r["tool"].startswith("halyard") and r["ok"]]
        if not peers:
            continue
        best = min(peers, key=lambda r: r["patch_bytes"])
        fastest = min(peers, key=lambda r: r["apply_s"])
        leanest = min(peers, key=lambda r: r["apply_rss_kb"] or float("inf"))
        for h in mine:
            out.append({
                "pair": pair, "tool": h["tool"],
                "size_ratio": h["patch_bytes"] / best["patch_bytes"], "best_peer": best["tool"],
                "apply_time_ratio": h["apply_s"] / max(fastest["apply_s"], 0.01),
                "fastest_peer": fastest["tool"],
                "apply_rss_ratio": (h["apply_rss_kb"] or 0) / (leanest["apply_rss_kb"] or 1),
                "leanest_peer": leanest["tool"],
            })
    return out


def markdown(rows, env, timeout, ratio_rows):
    lines = ["Machine and tools:", ""]
    lines += [f"- {line}" for line in env]
    for pair in dict.fromkeys(r["pair"] for r in rows):
        new_b = next(r["new_bytes"] for r in rows if r["pair"] == pair)
        lines += ["", f"**{PAIR_LABEL.get(pair, pair)}**, new = {human_bytes(new_b)}", "",
                  "| tool | patch | % of new | diff s | diff MiB | apply s | apply MiB | output |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
        lines += [row_md(r, timeout) for r in rows if r["pair"] == pair]
    lines += ["", "Halyard against the peers of the same run (lower is better for Halyard):", ""]
    if ratio_rows:
        lines += ["| pair | Halyard | patch size / smallest peer | apply time / fastest peer | apply RSS / leanest peer |",
                  "| --- | --- | ---: | ---: | ---: |"]
        for x in ratio_rows:
            lines.append(f"| {x['pair']} | {x['tool']} | {x['size_ratio']:.3f} ({x['best_peer']}) | "
                         f"{x['apply_time_ratio']:.2f} ({x['fastest_peer']}) | "
                         f"{x['apply_rss_ratio']:.2f} ({x['leanest_peer']}) |")
    else:
        mine = [r for r in rows if r["tool"].startswith("halyard")]
        if not mine:
            why = "Halyard was not in this run"
        elif not any(r["ok"] for r in mine):
            h = mine[0]
            why = f"Halyard diff {h['diff_status']}"
            if h["verify"] != "-" or h["apply_status"] != "-":
                why += f", apply {h['apply_status']}, output {h['verify']}"
        else:
            why = "no peer produced a verified output in this run"
        lines.append(f"- no ratios: {why}")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("tsv")
    ap.add_argument("env")
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--json")
    ap.add_argument("--md")
    args = ap.parse_args()
    rows = load(args.tsv)
    with open(args.env) as f:
        env = [line.rstrip("\n") for line in f if line.strip()]
    ratio_rows = ratios(rows)
    md = markdown(rows, env, args.timeout, ratio_rows)
    print(md)
    if args.md:
        with open(args.md, "w") as f:
            f.write(md)
    if args.json:
        run = os.path.splitext(os.path.basename(args.tsv))[0]
        with open(args.json, "w") as f:
            json.dump({"run": run, "timeout_s": args.timeout, "env": env, "rows": rows,
                       "halyard_vs_peers": ratio_rows}, f, indent=1)


if __name__ == "__main__":
    main()
