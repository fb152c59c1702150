#!/usr/bin/env python3
"""Per-layer convolution efficiency, before and after, from benchmark records made with --profile.

    python3 tools/conv_layer_table.py --before REC [REC ...] --after REC [REC ...]

Each REC is a bench_records/ folder written by `scripts/bench.sh --profile`. For every workload in the records it
prints the throughput (median over the records of each side) and, per convolution pass and layer shape, the
GFLOP/s (median) and its share of the FP32 peak each side measured (median), with the algorithm the "after"
records ran (their framework_profile_conv_algorithms); then the kernels the profile measures in GB/s (batch norm,
pooling, the optimizer step: ms per step and GB/s, medians). Reads the records only; prints markdown."""
import argparse
import json
import re
import statistics as st
import sys
from pathlib import Path


def load(rec):
    lines = [json.loads(l) for l in Path(rec, "bench.jsonl").read_text().splitlines() if l.strip()]
    machine = next((l["machine"] for l in lines if "machine" in l), None)
    if machine is None:
        sys.exit(f"{rec}: no machine line in bench.jsonl")
    return machine["fp32_peak_gflop_s"], {l["workload"]: l for l in lines if "workload" in l}


def algorithm(algos, key, batch):
    m = re.match(r"(fwd|dx|dw)\s+(\d+)x(\d+)x(\d+) -> (\d+) (\d+)x(\d+)/(\d+)", key)
    if not m:
        return "?"
    p = {"fwd": "fwd", "dx": "bwd_input", "dw": "bwd_weight"}[m.group(1)]
    want = (f"{p} float32 float32 N={batch} C={m.group(2)} H={m.group(3)} W={m.group(4)} O={m.group(5)} "
            f"k={m.group(6)}x{m.group(7)} s={m.group(8)}x{m.group(8)} ")
    found = sorted({v for k, v in algos.items() if k.startswith(want)})
    return ", ".join(found) or "(fixed rule)"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", nargs="+", required=True)
    ap.add_argument("--after", nargs="+", required=True)
    a = ap.parse_args()
    before, after = [load(r) for r in a.before], [load(r) for r in a.after]
    pb, pa = st.median(p for p, _ in before), st.median(p for p, _ in after)
    print(f"Measured FP32 peak (median of each side's runs): before {pb:.0f}, after {pa:.0f} GFLOP/s.")
    print(f"Before: {', '.join(a.before)}. After: {', '.join(a.after)}.")
    for w in before[0][1]:
        if any(w not in d for _, d in before + after):
            continue
        fb = [d[w]["framework"] for _, d in before]
        fa = [d[w]["framework"] for _, d in after]
        unit = before[0][1][w].get("unit", "")
        print(f"\n**{w}**: {st.median(fb):.1f} -> {st.median(fa):.1f} {unit} (x{st.median(fa) / st.median(fb):.2f}; "
              f"runs before {[round(x, 1) for x in fb]}, after {[round(x, 1) for x in fa]})\n")
        layers = before[0][1][w].get("framework_profile_conv_layers")
        if not layers:
            print("(no per-layer profile in these records)")
            continue
        algos = after[0][1][w].get("framework_profile_conv_algorithms", {})
        batch = after[0][1][w].get("batch")
        print("| pass, layer (input CxHxW -> output channels, kernel/stride) | before GFLOP/s (% of peak) "
              "| after GFLOP/s (% of peak) | algorithm after |")
        print("|---|---:|---:|---|")
        for k in sorted(layers):
            try:
                gb = st.median(d[w]["framework_profile_conv_layers"][k]["gflop_s"] for _, d in before)
                ga = st.median(d[w]["framework_profile_conv_layers"][k]["gflop_s"] for _, d in after)
            except KeyError:
                continue
            print(f"| {' '.join(k.split())} | {gb:.0f} ({100 * gb / pb:.0f}%) | {ga:.0f} ({100 * ga / pa:.0f}%) "
                  f"| {algorithm(algos, k, batch)} |")
        memory_bound(w, before, after)


def memory_bound(w, before, after):
    """The kernels the profile gives in GB/s (batch norm, pooling, the optimizer step, ...): ms per iteration and
    GB/s, medians of each side, those over 0.5 ms a step."""
    def med(side, field, k):
        vals = [d[w][field][k] for _, d in side if k in d[w].get(field, {})]
        return st.median(vals) if vals else None
    keys = sorted(before[0][1][w].get("framework_profile_gb_s", {}),
                  key=lambda k: -(med(before, "framework_profile_ms_per_iter", k) or 0))
    rows = []
    for k in keys:
        mb, ma = med(before, "framework_profile_ms_per_iter", k), med(after, "framework_profile_ms_per_iter", k)
        gb, ga = med(before, "framework_profile_gb_s", k), med(after, "framework_profile_gb_s", k)
        if None in (mb, ma, gb, ga) or max(mb, ma) < 0.5:
            continue
        rows.append(f"| {k} | {mb:.2f} ({gb:.1f} GB/s) | {ma:.2f} ({ga:.1f} GB/s) |")
    if rows:
        print("\n| memory-bound kernel | before ms per step (GB/s) | after ms per step (GB/s) |")
        print("|---|---:|---:|")
        print("\n".join(rows))


if __name__ == "__main__":
    main()
