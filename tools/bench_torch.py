"""bench_torch.py: the PyTorch side of tools/bench.cpp. Runs one workload exactly as the C++ side
does (same shapes, batch, model, optimizer, thread count, timing rule).

    /usr/bin/python3 tools/bench_torch.py --workload W [--threads 2] [--runs 5] [--run-seconds 0.5] [--profile]
    /usr/bin/python3 tools/bench_torch.py --serve --workload W ...   (driven by tools/bench.cpp)

Alone, it runs --runs timed runs and prints one JSON line. With --serve it speaks bench.cpp's protocol
on stdin/stdout: after set-up and warm-up it prints {"ready": true, "iters_per_run": k}; each "run"
line runs k iterations and answers {"seconds_per_iter": t}; "done" prints the final record and exits.

Workloads (see tools/bench.cpp): sgemm_1024, scratch_train_b64, resnet18_fwd_224_b32,
resnet18_fwd_64_b128, resnet18_train_64_b64. The output holds "value" (GFLOP/s or images/s, the median
over runs), "ms_per_iter", "peak_rss_mb" (this process's high-water mark, interpreter and torch
included), "rss_growth_mb" (peak minus the resident size after `import torch`), the convolution FLOPs
per iteration counted from the layers' shapes and "conv_gflop_s" (those over the iteration's time),
and "blas" (the BLAS library torch's matmul loaded). --profile prints torch.autograd.profiler's
table of self CPU time per op to stderr."""
import argparse
import json
import os
import resource
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

WORKLOADS = ["sgemm_1024", "scratch_train_b64", "resnet18_fwd_224_b32", "resnet18_fwd_64_b128",
             "resnet18_train_64_b64"]


def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGESIZE") / 2**20


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def loaded_blas():
    """The BLAS shared objects this process has mapped (after a matmul), and the Debian alternative."""
    libs = set()
    with open("/proc/self/maps") as f:
        for line in f:
            path = line.split()[-1] if len(line.split()) >= 6 else ""
            name = os.path.basename(path)
            if "blas" in name or "lapack" in name or "mkl" in name:
                libs.add(os.path.realpath(path))
    alt = "/etc/alternatives/libblas.so.3-x86_64-linux-gnu"
    return {"mapped": sorted(libs), "alternative": os.path.realpath(alt) if os.path.exists(alt) else None}


def scratch_cnn(channels=(48, 96, 256, 512), classes=10, dropout=0.3, in_channels=1):
    """models/scratch_cnn.h rebuilt with the same layers in the same order."""
    def block(cin, cout, pool):
        layers = [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]
        if pool:
            layers.append(nn.MaxPool2d(2))
        return nn.Sequential(*layers)
    c = channels
    return nn.Sequential(block(in_channels, c[0], True), block(c[0], c[1], True), block(c[1], c[2], True),
                         block(c[2], c[3], False), nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Dropout(dropout),
                         nn.Linear(c[3], classes))


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


def make_workload(name):
    """Returns (unit, batch, work per iteration, iteration function, model or None)."""
    torch.manual_seed(0)
    if name == "sgemm_1024":
        n = 1024
        a, b = torch.randn(n, n), torch.randn(n, n)
        return "GFLOP/s", 0, 2.0 * n ** 3 * 1e-9, lambda: torch.mm(a, b), None
    targets = lambda n, classes: torch.randint(0, classes, (n,), generator=torch.Generator().manual_seed(7))
    if name == "scratch_train_b64":
        m = scratch_cnn().train()
        opt = torch.optim.Adam(m.parameters())
        x, y = torch.randn(64, 1, 28, 28), targets(64, 10)

        def it():
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(m(x), y).backward()
            opt.step()
        return "images/s", 64, 64.0, it, m
    if name in ("resnet18_fwd_224_b32", "resnet18_fwd_64_b128"):
        big = name == "resnet18_fwd_224_b32"
        n, side = (32, 224) if big else (128, 64)
        m = torchvision.models.resnet18(num_classes=1000).eval()
        x = torch.randn(n, 3, side, side)

        def it():
            with torch.no_grad():
                m(x)
        return "images/s", n, float(n), it, m
    if name == "resnet18_train_64_b64":
        m = torchvision.models.resnet18(num_classes=10).train()
        opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
        x, y = torch.randn(64, 3, 64, 64), targets(64, 10)

        def it():
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(m(x), y).backward()
            opt.step()
        return "images/s", 64, 64.0, it, m
    raise SystemExit(f"unknown workload {name!r}; expected one of {', '.join(WORKLOADS)}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workload", required=True, choices=WORKLOADS)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--run-seconds", type=float, default=0.5)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--serve", action="store_true", help="driven by tools/bench.cpp over stdin/stdout")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    rss0 = rss_mb()
    unit, batch, work, it, model = make_workload(a.workload)
    counter = ConvFlops(model) if model is not None else None
    # warm-up (lazy state: optimizer buffers, oneDNN primitives), the FLOP count, the timed runs
    it()
    if counter:
        counter.total = 0.0
    t0 = time.perf_counter()
    it()
    t_iter = time.perf_counter() - t0
    conv_flops = counter.total if counter else 0.0
    if counter:
        for m in model.modules():
            m._forward_hooks.clear()
    iters = max(1, round(a.run_seconds / max(t_iter, 1e-6)))

    def timed_run():
        t0 = time.perf_counter()
        for _ in range(iters):
            it()
        return (time.perf_counter() - t0) / iters

    per_iter = []
    if a.serve:
        print(json.dumps({"ready": True, "iters_per_run": iters}), flush=True)
        for line in sys.stdin:
            if not line.startswith("run"):
                break
            per_iter.append(timed_run())
            print(json.dumps({"seconds_per_iter": per_iter[-1]}), flush=True)
    else:
        per_iter = [timed_run() for _ in range(a.runs)]
    s = statistics.median(per_iter) if per_iter else float("nan")
    out = {"workload": a.workload, "unit": unit, "value": work / s, "ms_per_iter": s * 1e3, "threads": a.threads,
           "batch": batch, "torch": torch.__version__, "peak_rss_mb": peak_rss_mb(),
           "rss_growth_mb": peak_rss_mb() - rss0, "blas": loaded_blas()}
    if conv_flops:
        out["conv_gflop_per_iter"] = conv_flops * 1e-9
        out["conv_gflop_s"] = conv_flops * 1e-9 / s
    if a.profile:
        from torch.autograd import profiler
        with profiler.profile() as prof:
            for _ in range(iters):
                it()
        print(f"\n[profile] {a.workload}, PyTorch: {s * 1e3:.2f} ms per iteration (median); self CPU time over "
              f"{iters} more iterations:", file=sys.stderr)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=18), file=sys.stderr)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
