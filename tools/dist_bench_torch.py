#!/usr/bin/env python3
"""PyTorch counterpart of tools/dist_bench.cpp: the study's CNN, Adam, synthetic 1x28x28 batches.

  dist_bench_torch.py --mode single --threads 2 --batch 64
  mpirun -np 2 dist_bench_torch.py --mode ddp --threads 1 --batch 64 [--bucket-mb 25]

Under mpirun the rank and world size come from Open MPI's environment; the process group is gloo
over TCP on 127.0.0.1 (mpirun only launches, as it does for dist_bench). DDP keeps its defaults
(bucket_cap_mb=25, gradients all-reduced from autograd hooks during backward) except
broadcast_buffers=False, which dist_bench's DDP does not do either (it broadcasts buffers once, at
construction). Prints one JSON line from rank 0. Needs Debian's /usr/bin/python3 (torch 1.13).
"""
import argparse
import json
import os
import statistics
import time

import torch
import torch.distributed as tdist
import torch.nn as nn
import torch.nn.functional as F

from torch_models import scratch_cnn  # tools/, beside this script


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["single", "ddp"], default="single")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--bucket-mb", type=float, default=25)
    ap.add_argument("--port", type=int, default=29517)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    rank, world = 0, 1
    if a.mode == "ddp":
        rank = int(os.environ["OMPI_COMM_WORLD_RANK"])
        world = int(os.environ["OMPI_COMM_WORLD_SIZE"])
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(a.port))
        tdist.init_process_group("gloo", rank=rank, world_size=world)
    b = a.batch // world
    torch.manual_seed(1)
    model = scratch_cnn()
    if a.mode == "ddp":
        model = nn.parallel.DistributedDataParallel(model, bucket_cap_mb=a.bucket_mb, broadcast_buffers=False)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(100 + rank)
    x = torch.randn(b, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (b,), generator=g)
    times = []
    for i in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
        dt = time.perf_counter() - t0
        if i >= a.warmup:
            times.append(dt)
    if a.mode == "ddp":
        tdist.barrier()
    if rank == 0:
        step = statistics.median(times)
        out = {"impl": "torch", "mode": a.mode, "ranks": world, "threads": a.threads, "global_batch": a.batch,
               "step_ms": step * 1e3, "img_per_s": a.batch / step, "steps": a.steps, "torch": torch.__version__}
        if a.mode == "ddp":
            out.update({"backend": "gloo", "bucket_mb": a.bucket_mb, "overlap": True})
        print(json.dumps(out), flush=True)
    if a.mode == "ddp":
        tdist.destroy_process_group()


if __name__ == "__main__":
    main()
