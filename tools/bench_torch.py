"""bench_torch.py: the PyTorch side of tools/bench.cpp. Runs one workload exactly as the C++ side
does (same shapes, batch, model, optimizer, thread count, timing rule).

    /usr/bin/python3 tools/bench_torch.py --workload W [--threads 2] [--runs 5] [--run-seconds 0.5]
                                          [--config default|best] [--profile]
    /usr/bin/python3 tools/bench_torch.py --serve --workload W ...   (driven by tools/bench.cpp)

Alone, it runs --runs timed runs and prints one JSON line. With --serve it speaks bench.cpp's protocol
on stdin/stdout: after set-up and warm-up it prints {"ready": true, "iters_per_run": k}; each "run"
line runs k iterations and answers {"seconds_per_iter": t}; "done" prints the final record and exits.
--iters-per-run K fixes k (bench.cpp passes it to its "alone" processes so they time the same k).

Threads: --threads N pins everything torch may use. OMP_NUM_THREADS, OPENBLAS_NUM_THREADS and
MKL_NUM_THREADS are set to N before torch (and with it libgomp and the BLAS) is imported, since those
libraries read them once at load time; then torch.set_num_threads(N) and
torch.set_num_interop_threads(1). The record says what was found: "blas" (the shared objects mapped
after a matmul, and for OpenBLAS its own configuration, core and thread count) and "threading"
(a summary of torch.__config__.parallel_info()).

--config default runs the workload as a user would write it (eager, contiguous NCHW tensors,
torch.no_grad() for inference, the optimizers' default implementation). --config best is "PyTorch at
its best" on this CPU: every candidate listed in BEST_CANDIDATES for the workload is built, warmed up
and timed for about --run-seconds, and the fastest one is kept and served (its label is in "config";
all candidates' times are in "candidates_ms_per_iter"; --candidate LABEL skips the search). The
candidates: torch.mm with a preallocated out= tensor (sgemm); channels_last memory format (conv
workloads); torch.inference_mode() (forward workloads); torch.jit.trace + torch.jit.freeze +
torch.jit.optimize_for_inference (frozen graph, BatchNorm folded into the convolutions, oneDNN
layouts: eval ResNet18); foreach=True optimizers (Adam, SGD; 1.13's fused optimizers are CUDA-only).

Workloads (see tools/bench.cpp): sgemm_1024, scratch_train_b64, resnet18_fwd_224_b32,
resnet18_fwd_64_b128, resnet18_train_64_b64; in bfloat16, gemm_bf16_1024 (default: torch.mm of the
float32 matrices under autocast; best: also bfloat16 matrices cast once, with out=) and each model
workload + "_bf16": the forward (and loss) under torch.autocast("cpu", dtype=torch.bfloat16), as the
autocast documentation writes it, with the same candidates for "best", plus autocast inside the
traced and frozen graph where torch can trace it (a candidate that fails to build is listed with its
error, not timed). The output holds "value" (GFLOP/s or images/s, the median
over runs), "ms_per_iter", "peak_rss_mb" (this process's high-water mark, interpreter and torch
included; for --config best it includes the candidates built during the search), "rss_growth_mb"
(peak minus the resident size after `import torch`), the convolution FLOPs per iteration counted from
the layers' shapes (default config) and "conv_gflop_s" (those over the iteration's time).
--profile prints torch.autograd.profiler's table of self CPU time per op to stderr."""
import argparse
import gc
import json
import os
import resource
import statistics
import sys
import time

FP32_WORKLOADS = ["sgemm_1024", "scratch_train_b64", "resnet18_fwd_224_b32", "resnet18_fwd_64_b128",
                  "resnet18_train_64_b64"]
# bfloat16 mixed precision: gemm_bf16_1024, and each model workload + "_bf16", run under
# torch.autocast("cpu", dtype=torch.bfloat16) (the framework side: dl::autocast(kCPU, BFloat16))
WORKLOADS = FP32_WORKLOADS + ["gemm_bf16_1024"] + [w + "_bf16" for w in FP32_WORKLOADS[1:]]


def split_name(name):
    """(fp32 workload, bf16?): 'resnet18_fwd_64_b128_bf16' -> ('resnet18_fwd_64_b128', True)."""
    if name == "gemm_bf16_1024":
        return "sgemm_1024", True
    if name.endswith("_bf16"):
        return name[:-len("_bf16")], True
    return name, False
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workload", required=True, choices=WORKLOADS)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--run-seconds", type=float, default=0.5)
    p.add_argument("--warmup-seconds", type=float, default=2.0,
                   help="iterate this long before the first timed run (as the framework side does)")
    p.add_argument("--config", choices=["default", "best"], default="default")
    p.add_argument("--candidate", help="with --config best: serve this candidate without the search")
    p.add_argument("--iters-per-run", type=int, default=0, help="iterations per timed run (default: calibrated)")
    p.add_argument("--profile", action="store_true")
    p.add_argument("--serve", action="store_true", help="driven by tools/bench.cpp over stdin/stdout")
    return p.parse_args()


ARGS = parse_args()
# before torch is imported: libgomp and the BLAS read these once, when they are loaded
for var in THREAD_VARS:
    os.environ[var] = str(ARGS.threads)

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import torchvision  # noqa: E402

from torch_models import scratch_cnn  # noqa: E402  (tools/, beside this script)

torch.set_num_threads(ARGS.threads)
torch.set_num_interop_threads(1)


def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGESIZE") / 2**20


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def loaded_blas():
    """The BLAS shared objects this process has mapped (after a matmul), the Debian alternative, and
    for OpenBLAS what it says of itself (configuration, core, threads, threading model)."""
    torch.mm(torch.ones(64, 64), torch.ones(64, 64))
    libs = set()
    with open("/proc/self/maps") as f:
        for line in f:
            path = line.split()[-1] if len(line.split()) >= 6 else ""
            name = os.path.basename(path)
            if "blas" in name or "lapack" in name or "mkl" in name:
                libs.add(os.path.realpath(path))
    alt = "/etc/alternatives/libblas.so.3-x86_64-linux-gnu"
    out = {"mapped": sorted(libs), "alternative": os.path.realpath(alt) if os.path.exists(alt) else None}
    names = " ".join(os.path.basename(p) for p in libs)
    out["name"] = ("OpenBLAS" if "openblas" in names else "MKL" if "mkl" in names
                   else "reference BLAS (netlib)" if "libblas" in names else "none mapped")
    for path in sorted(libs):
        if "openblas" not in os.path.basename(path):
            continue
        try:
            import ctypes
            lib = ctypes.CDLL(path)  # already mapped: the same instance torch uses
            lib.openblas_get_config.restype = ctypes.c_char_p
            lib.openblas_get_corename.restype = ctypes.c_char_p
            out["openblas_config"] = lib.openblas_get_config().decode()
            out["openblas_core"] = lib.openblas_get_corename().decode()
            out["openblas_threads"] = lib.openblas_get_num_threads()
            out["openblas_parallel"] = {0: "sequential", 1: "pthreads", 2: "OpenMP"}.get(
                lib.openblas_get_parallel(), "unknown")
        except (OSError, AttributeError) as e:
            out["openblas_error"] = str(e)
        break
    return out


def threading_info():
    """torch.__config__.parallel_info() in a few fields, and the thread variables as set."""
    info = {"torch_threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads()}
    for line in torch.__config__.parallel_info().splitlines():
        line = line.strip()
        if line.startswith("ATen parallel backend:"):
            info["backend"] = line.split(":", 1)[1].strip()
        elif line.startswith("omp_get_max_threads()"):
            info["omp_max_threads"] = int(line.split(":", 1)[1])
        elif ":" not in line and ("OpenMP" in line or "MKL" in line or "oneDNN" in line):
            info.setdefault("libraries", []).append(line)
    info["env"] = {v: os.environ.get(v) for v in THREAD_VARS + ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    return info


class ConvFlops:
    """Counts convolution FLOPs from shapes: 2 * output elements * (C/groups) * kh * kw for the forward,
    the same again for the input gradient (when the input needs one) and for the weight gradient."""
    def __init__(self, model):
        self.total = 0.0
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                m.register_forward_hook(self.hook)

    def hook(self, m, inputs, out):
        f = 2.0 * out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        self.total += f
        if torch.is_grad_enabled():
            if inputs[0].requires_grad:
                self.total += f
            if m.weight.requires_grad:
                self.total += f


def targets(n, classes):
    return torch.randint(0, classes, (n,), generator=torch.Generator().manual_seed(7))


def workload_shape(name):
    """(unit, batch, work per iteration)"""
    name, _ = split_name(name)
    if name == "sgemm_1024":
        return "GFLOP/s", 0, 2.0 * 1024 ** 3 * 1e-9
    return "images/s", {"scratch_train_b64": 64, "resnet18_fwd_224_b32": 32, "resnet18_fwd_64_b128": 128,
                        "resnet18_train_64_b64": 64}[name], None


def autocast(on):
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=on)


def train_step(m, opt, x, y, bf16=False):
    def it():
        opt.zero_grad(set_to_none=True)
        with autocast(bf16):
            loss = F.cross_entropy(m(x), y)
        loss.backward()
        opt.step()
    return it


def make_default(full_name):
    """The workload as a user writes it: returns (iteration function, model or None)."""
    torch.manual_seed(0)
    name, bf16 = split_name(full_name)
    if name == "sgemm_1024":
        n = 1024
        a, b = torch.randn(n, n), torch.randn(n, n)

        def mm():
            with autocast(bf16):
                torch.mm(a, b)
        return mm, None
    if name == "scratch_train_b64":
        m = scratch_cnn().train()
        opt = torch.optim.Adam(m.parameters())
        return train_step(m, opt, torch.randn(64, 1, 28, 28), targets(64, 10), bf16), m
    if name in ("resnet18_fwd_224_b32", "resnet18_fwd_64_b128"):
        big = name == "resnet18_fwd_224_b32"
        n, side = (32, 224) if big else (128, 64)
        m = torchvision.models.resnet18(num_classes=1000).eval()
        x = torch.randn(n, 3, side, side)

        def it():
            with torch.no_grad(), autocast(bf16):
                m(x)
        return it, m
    if name == "resnet18_train_64_b64":
        m = torchvision.models.resnet18(num_classes=10).train()
        opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
        return train_step(m, opt, torch.randn(64, 3, 64, 64), targets(64, 10), bf16), m
    raise SystemExit(f"unknown workload {name!r}; expected one of {', '.join(WORKLOADS)}")


# ---- PyTorch at its best: candidates per workload, each a builder returning an iteration function ----

def best_sgemm_out(dtype=torch.float32):
    def build():
        torch.manual_seed(0)
        n = 1024
        a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
        c = torch.empty(n, n, dtype=dtype)
        return lambda: torch.mm(a, b, out=c)
    return build


def best_train(name, channels_last, bf16=False):
    def build():
        torch.manual_seed(0)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        if name == "scratch_train_b64":
            m = scratch_cnn().train().to(memory_format=fmt)
            opt = torch.optim.Adam(m.parameters(), foreach=True)
            x, y = torch.randn(64, 1, 28, 28), targets(64, 10)
        else:
            m = torchvision.models.resnet18(num_classes=10).train().to(memory_format=fmt)
            opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, foreach=True)
            x, y = torch.randn(64, 3, 64, 64), targets(64, 10)
        return train_step(m, opt, x.contiguous(memory_format=fmt), y, bf16)
    return build


def best_forward(name, channels_last, frozen, bf16=False):
    def build():
        torch.manual_seed(0)
        big = name == "resnet18_fwd_224_b32"
        n, side = (32, 224) if big else (128, 64)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        m = torchvision.models.resnet18(num_classes=1000).eval().to(memory_format=fmt)
        x = torch.randn(n, 3, side, side).contiguous(memory_format=fmt)
        if frozen:
            with torch.no_grad(), autocast(bf16):
                # freeze folds BatchNorm into the convolutions; optimize_for_inference adds oneDNN layouts
                # (under autocast the trace's re-run check fails on bf16 rounding noise; it is skipped)
                m = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(m, x, check_trace=not bf16)))

        def it():
            with torch.inference_mode(), autocast(bf16):
                m(x)
        return it
    return build


def best_candidates(full_name):
    """[(label, builder)] for --config best."""
    name, bf16 = split_name(full_name)
    ac = "autocast bf16, " if bf16 else ""
    if name == "sgemm_1024":
        if bf16:
            return [("autocast bf16, torch.mm(float32 operands)", make_default_builder(full_name)),
                    ("torch.mm(bfloat16 operands cast once, out=preallocated)", best_sgemm_out(torch.bfloat16))]
        return [("torch.mm(out=preallocated)", best_sgemm_out())]
    if name == "scratch_train_b64":
        opt = "Adam(foreach=True)"
    elif name == "resnet18_train_64_b64":
        opt = "SGD(foreach=True)"
    else:
        return [(f"{ac}inference_mode", best_forward(name, False, False, bf16)),
                (f"{ac}inference_mode, channels_last", best_forward(name, True, False, bf16)),
                (f"{ac}inference_mode, jit trace+freeze+optimize_for_inference", best_forward(name, False, True, bf16)),
                (f"{ac}inference_mode, channels_last, jit trace+freeze+optimize_for_inference",
                 best_forward(name, True, True, bf16))]
    return [(f"{ac}{opt}", best_train(name, False, bf16)), (f"{ac}channels_last, {opt}", best_train(name, True, bf16))]


def make_default_builder(name):
    return lambda: make_default(name)[0]


def time_iters(it, iters):
    t0 = time.perf_counter()
    for _ in range(iters):
        it()
    return (time.perf_counter() - t0) / iters


def choose_best(name, run_seconds, forced):
    """Builds and times each candidate (3 warm-up iterations: the JIT's profiling runs), keeps the fastest."""
    cands = best_candidates(name)
    if forced:
        cands = [c for c in cands if c[0] == forced]
        if not cands:
            raise SystemExit(f"no candidate {forced!r} for {name}")
    times, best = {}, None
    for label, build in cands:
        try:
            it = build()
            it()
        except Exception as e:  # noqa: BLE001  (a configuration torch cannot build here is reported, not fatal)
            times[label] = f"failed: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
            gc.collect()
            continue
        for _ in range(3):
            it()
        t1 = time_iters(it, 1)
        t = time_iters(it, max(2, round(run_seconds / max(t1, 1e-6)))) if len(cands) > 1 else t1
        times[label] = t * 1e3
        if best is None or t < best[2]:
            best = (label, it, t)
        del it
        gc.collect()
    if best is None:
        raise SystemExit(f"no candidate for {name} could be built: {times}")
    return best[0], best[1], times


def main():
    a = ARGS
    rss0 = rss_mb()
    unit, batch, work = workload_shape(a.workload)
    if work is None:
        work = float(batch)
    counter, conv_flops, extra = None, 0.0, {}
    if a.config == "default":
        it, model = make_default(a.workload)
        counter = ConvFlops(model) if model is not None else None
        # warm-up (lazy state: optimizer buffers, oneDNN primitives), the FLOP count, the timed runs
        it()
        if counter:
            counter.total = 0.0
        t_iter = time_iters(it, 1)
        conv_flops = counter.total if counter else 0.0
        if counter:
            for m in model.modules():
                m._forward_hooks.clear()
    else:
        label, it, times = choose_best(a.workload, a.run_seconds, a.candidate)
        extra = {"config_label": label, "candidates_ms_per_iter": times}
        t_iter = times[label] * 1e-3
    # the same fixed-time warm-up as the framework side, in both modes (see tools/bench.cpp)
    w0 = time.perf_counter()
    while time.perf_counter() - w0 < a.warmup_seconds:
        it()
    iters = a.iters_per_run if a.iters_per_run > 0 else max(1, round(a.run_seconds / max(t_iter, 1e-6)))

    per_iter = []
    if a.serve:
        print(json.dumps({"ready": True, "iters_per_run": iters, **extra}), flush=True)
        for line in sys.stdin:
            if not line.startswith("run"):
                break
            per_iter.append(time_iters(it, iters))
            print(json.dumps({"seconds_per_iter": per_iter[-1]}), flush=True)
    else:
        per_iter = [time_iters(it, iters) for _ in range(a.runs)]
    s = statistics.median(per_iter) if per_iter else float("nan")
    out = {"workload": a.workload, "config": a.config, **extra, "unit": unit, "value": work / s,
           "ms_per_iter": s * 1e3, "threads": a.threads, "batch": batch, "torch": torch.__version__,
           "peak_rss_mb": peak_rss_mb(), "rss_growth_mb": peak_rss_mb() - rss0, "blas": loaded_blas(),
           "threading": threading_info()}
    if conv_flops:
        out["conv_gflop_per_iter"] = conv_flops * 1e-9
        out["conv_gflop_s"] = conv_flops * 1e-9 / s
    if a.profile:
        from torch.autograd import profiler
        with profiler.profile() as prof:
            for _ in range(iters):
                it()
        print(f"\n[profile] {a.workload}, PyTorch ({a.config}{': ' + extra['config_label'] if extra else ''}): "
              f"{s * 1e3:.2f} ms per iteration (median); self CPU time over {iters} more iterations:",
              file=sys.stderr)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=18), file=sys.stderr)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
