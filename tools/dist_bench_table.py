#!/usr/bin/env python3
"""Writes <record>/table.md from <record>/bench.jsonl and meta.json (scripts/dist_bench.sh)."""
import json, statistics, sys
out = sys.argv[1]
rows = [json.loads(l) for l in open(f"{out}/bench.jsonl")]
meta = json.load(open(f"{out}/meta.json"))
by = {}
for r in rows:
    by.setdefault(r["config"], []).append(r["result"])
base = statistics.median(x["step_ms"] for x in by["dl single 2x1"])
lines = [f"# Data-parallel scaling, {meta['date_utc']} on {meta['cpu_model']} ({meta['cpus']} cores)", "",
         f"Study CNN (1.45M parameters, 5.5 MiB of float32 gradients), global batch 64, Adam; median over "
         f"{meta['runs']} runs of each run's median of {meta['steps']} steps; runs interleaved. "
         f"Load average before: {meta['load_before']}.", "",
         "| configuration | step ms: median (each run) | best run | img/s (median) | vs dl 1x2 | buckets | hooks ms | wait ms | comm share |",
         "|---|---|---|---|---|---|---|---|---|"]
for name, res in by.items():
    step = statistics.median(x["step_ms"] for x in res)
    ips = statistics.median(x["img_per_s"] for x in res)
    runs = ", ".join(f"{x['step_ms']:.0f}" for x in res)
    b = res[0].get("buckets", "")
    hook = statistics.median(x["hook_ms"] for x in res) if "hook_ms" in res[0] else None
    wait = statistics.median(x["wait_ms"] for x in res) if "wait_ms" in res[0] else None
    share = f"{(hook + wait) / step:.0%} ({wait / step:.0%} exposed wait)" if hook is not None else ""
    best = min(x["step_ms"] for x in res)
    lines.append(f"| {name} | {step:.1f} ({runs}) | {best:.1f} | {ips:.0f} | {base / step:.2f}x | {b} | "
                 f"{'' if hook is None else f'{hook:.1f}'} | {'' if wait is None else f'{wait:.1f}'} | {share} |")
lines += ["", "hooks ms: time inside the gradient hooks during backward (copying gradients into a bucket, "
          "starting its all-reduce, polling the ones in flight); wait ms: at the end of backward, waiting for "
          "the all-reduces still running and copying the averages back. comm share = (hooks + wait) / step.",
          "dl local 2x1: the same 2 ranks with no gradient exchange at all, the compute-only floor.",
          "best run: the least disturbed of the runs; on a shared machine, another process's work shows as runs "
          "about twice as slow (each run's load average is in bench.jsonl)."]
open(f"{out}/table.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
