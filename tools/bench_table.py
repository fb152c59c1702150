"""bench_table.py: a benchmark record (scripts/bench.sh writes bench_records/<date>-<host>-<cpu>/) as the
markdown table the README quotes, so figures are regenerated from a record and never typed.

    python3 tools/bench_table.py bench_records/<record>            # the folder (reads bench.jsonl, meta.json)
    python3 tools/bench_table.py some_run.jsonl                     # or bench's JSON lines themselves

Prints markdown to stdout: one line on the record (date, CPU, measured FP32 peak, kernel, torch, BLAS,
threads, command), then | workload | framework | PyTorch default | PyTorch best | ratio to default |
ratio to best | alone check |, then the configuration PyTorch's best row used per workload. Ratios are
framework throughput / PyTorch throughput (above 1: the framework is faster). "alone check" is the
largest difference between a side's same-run figure and its figure measured with no other side alive
(bench --alone); a record without it says "not run". A side that went over bench's --side-limit-seconds has "—"
and a line below the table gives the reason."""
import json
import os
import sys


def load(path):
    meta = {}
    if os.path.isdir(path):
        if os.path.exists(os.path.join(path, "meta.json")):
            with open(os.path.join(path, "meta.json")) as f:
                meta = json.load(f)
        path = os.path.join(path, "bench.jsonl")
    machine, rows = {}, []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line.startswith("{"):
                continue
            j = json.loads(line)
            if "machine" in j:
                machine = j["machine"]
            elif "workload" in j:
                rows.append(j)
    return meta, machine, rows


def num(v, digits=1):
    return "—" if v is None else f"{v:,.{digits}f}"


def alone_cell(r):
    if "alone" not in r:
        return "not run"
    diffs = {k: v["rel_diff"] for k, v in r["alone"].items()}
    worst = max(diffs, key=lambda k: abs(diffs[k]))
    tol = r.get("alone_tolerance", 0.05)
    verdict = "ok" if r.get("alone_ok") else f"**off by more than {tol:.0%}**"
    return f"{verdict} (largest: {worst} {diffs[worst]:+.1%})"


def table(meta, machine, rows):
    out = []
    first = rows[0] if rows else {}
    blas = first.get("pytorch_blas", {})
    blas_text = blas.get("name", "—")
    if "openblas_config" in blas:
        blas_text += f" ({blas['openblas_config']}, {blas.get('openblas_threads')} threads, {blas.get('openblas_parallel')})"
    th = first.get("pytorch_threading", {})
    date = machine.get("date_utc") or meta.get("date_utc", "unknown date")
    loads = [r["load_average"][0] for r in rows if "load_average" in r]
    out.append(
        f"Record `{meta.get('record', '?')}`: {date}, {machine.get('cpu_model', meta.get('cpu_model', '?'))}, "
        f"{machine.get('cpus_online', meta.get('cpus', '?'))} CPUs, measured FP32 FMA peak "
        f"{num(machine.get('fp32_peak_gflop_s'))} GFLOP/s ({machine.get('fp32_peak_isa', '?')}, "
        f"{machine.get('fp32_peak_threads', '?')} threads)"
        f"{bf16_peak_text(machine)}{bandwidth_text(machine)}, {machine.get('kernel', meta.get('kernel', '?'))}; "
        f"torch {first.get('torch', '—')} with {blas_text}, ATen backend {th.get('backend', '—')}, "
        f"{th.get('torch_threads', '—')} threads; bench threads {machine.get('threads', '?')}, "
        f"git {meta.get('git_commit', '?')[:10]}{' (uncommitted changes)' if meta.get('git_dirty') else ''}; "
        f"1-min load average at the start of each workload: {', '.join(f'{l:.2f}' for l in loads) or '—'}.")
    out.append("")
    out.append(f"Command: `{meta.get('command') or machine.get('command', '?')}`")
    out.append("")
    out.append("| workload | unit | framework | PyTorch default | PyTorch best | ratio to default | ratio to best | alone check |")
    out.append("|---|---|---:|---:|---:|---:|---:|---|")
    for r in rows:
        out.append(f"| {r['workload']} | {r['unit']} | {num(r.get('framework'))} | {num(r.get('pytorch'))} | "
                   f"{num(r.get('pytorch_best'))} | {num(r.get('ratio_default', r.get('ratio')), 2)} | "
                   f"{num(r.get('ratio_best'), 2)} | {alone_cell(r)} |")
    out.append("")
    protocols = sorted({r.get("protocol", "not recorded (an older bench: sides left running, contaminated)")
                        for r in rows})
    idle_cpu = sum(r.get("idle_sides_cpu_seconds", 0.0) for r in rows)
    out.append("Ratios: framework throughput / PyTorch throughput (above 1: the framework is faster); each figure is "
               f"the median of {', '.join(sorted({str(r.get('runs')) for r in rows}))} runs. Protocol: "
               f"{'; '.join(protocols)}; the sides not being timed used {idle_cpu:.2f} s of CPU meanwhile.")
    if any(not p.startswith("idle sides stopped") for p in protocols):
        out.append("")
        out.append("**Not a clean record: some sides were left running while another was timed.**")
    missing = [f"{r['workload']}: {side}, {why}" for r in rows for side, why in r.get("missing_sides", {}).items()]
    if missing:
        out.append("")
        out.append("Missing figures (a side stopped at bench's --side-limit-seconds; \"—\" in the table): " +
                   "; ".join(missing) + ".")
    note = gemm_peak_note(machine, rows)
    if note:
        out.append(note)
    best = [(r["workload"], r["pytorch_best_config"]) for r in rows if r.get("pytorch_best_config")]
    if best:
        out.append("PyTorch best, per workload: " + "; ".join(f"{w}: {c}" for w, c in best) + ".")
    return "\n".join(out) + "\n"


def bandwidth_text(machine):
    """The measured memory bandwidth (records from before it was measured have none)."""
    if "memory_copy_gb_s" not in machine:
        return ""
    return (f", measured memory bandwidth {num(machine['memory_copy_gb_s'])} GB/s copy, "
            f"{num(machine.get('memory_triad_gb_s'))} GB/s triad (STREAM-style, 256 MiB arrays)")


def bf16_peak_text(machine):
    """', measured bfloat16 peak ... (kernel)' when the record has one (bench.cpp's tile/register-only loop)."""
    if "bf16_kernel" not in machine:
        return ""
    peak = machine.get("bf16_peak_gflop_s")
    if not peak:
        return f", bfloat16 GEMM kernel {machine['bf16_kernel']} (no peak loop)"
    how = "tdpbf16ps, 16384 FLOP each" if machine["bf16_kernel"] == "amx" else "vdpbf16ps, 64 FLOP each"
    return f", measured bfloat16 peak {num(peak)} GFLOP/s ({machine['bf16_kernel']}: {how})"


def gemm_peak_note(machine, rows):
    """The bf16 GEMM row against the measured bf16 peak, and SGEMM's against the FP32 one."""
    notes = []
    for r in rows:
        peak = {"sgemm_1024": machine.get("fp32_peak_gflop_s"),
                "gemm_bf16_1024": machine.get("bf16_peak_gflop_s")}.get(r["workload"])
        if peak and r.get("framework"):
            text = f"{r['workload']}: framework {100 * r['framework'] / peak:.0f}%"
            if r.get("pytorch_best"):
                text += f", PyTorch best {100 * r['pytorch_best'] / peak:.0f}%"
            notes.append(text)
    return ("Share of the measured peak: " + "; ".join(notes) + ".") if notes else ""


def main():
    if len(sys.argv) != 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        return 0 if len(sys.argv) == 2 else 2
    meta, machine, rows = load(sys.argv[1])
    if not rows:
        print(f"bench_table: no workload lines in {sys.argv[1]}", file=sys.stderr)
        return 1
    if "record" not in meta:
        meta["record"] = os.path.normpath(sys.argv[1])
    sys.stdout.write(table(meta, machine, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
