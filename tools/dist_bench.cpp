// dist_bench: training-step time of the study's CNN (models/scratch_cnn.h, Adam, synthetic 1x28x28
// batches), one process against data-parallel ranks, and how much of a step goes to gradient
// communication. scripts/dist_bench.sh runs it next to tools/dist_bench_torch.py (PyTorch DDP,
// gloo) and writes the table (docs/distributed.md).
//
//   dist_bench --mode single --threads 2 --batch 64                 one process, global batch 64
//   mpirun -np 2 dist_bench --mode ddp --threads 1 --batch 64       2 ranks x 32, DDP
//          [--no-overlap] [--bucket-mb 25]
//   mpirun -np 2 dist_bench --mode local --threads 1 --batch 64     2 ranks x 32, no gradient sync
//                                                                   (the compute-only floor)
// Prints one JSON line (rank 0): per-step times, and for ddp the time inside the hooks during
// backward and the time waiting at the end of backward, per step.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <iostream>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "autograd/functional.h"
#include "dist/ddp.h"
#include "models/scratch_cnn.h"
#include "nn/optim/adam.h"

using namespace dl;
using Clock = std::chrono::steady_clock;

namespace {
double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"dist_bench: data-parallel step time and communication share"};
  std::string mode = "single";
  int threads = 1, steps = 20, warmup = 3;
  int64_t batch = 64;
  double bucket_mb = 25;
  bool no_overlap = false;
  app.add_option("--mode", mode, "single, ddp or local")->check(CLI::IsMember({"single", "ddp", "local"}));
  app.add_option("--threads", threads, "OpenMP threads per process")->check(CLI::PositiveNumber);
  app.add_option("--batch", batch, "global batch (split over the ranks)")->check(CLI::PositiveNumber);
  app.add_option("--steps", steps, "timed steps")->check(CLI::PositiveNumber);
  app.add_option("--warmup", warmup, "untimed steps first")->check(CLI::NonNegativeNumber);
  app.add_option("--bucket-mb", bucket_mb, "DDP bucket size in MiB")->check(CLI::PositiveNumber);
  app.add_flag("--no-overlap", no_overlap, "start the all-reduces only after backward");
  CLI11_PARSE(app, argc, argv);
  try {
    omp_set_num_threads(threads);
    dist::ProcessGroup* pg = mode == "single" ? nullptr : &dist::ProcessGroup::init();
    const int world = pg ? pg->world_size() : 1, rank = pg ? pg->rank() : 0;
    if (batch % world) throw std::runtime_error("--batch must divide over the ranks");
    const int64_t b = batch / world;
    manual_seed(1);
    auto model = std::make_shared<models::ScratchCnn>();
    std::unique_ptr<dist::DistributedDataParallel> ddp;
    if (mode == "ddp")
      ddp = std::make_unique<dist::DistributedDataParallel>(model, *pg,
                                                            dist::DdpOptions{.bucket_mb = bucket_mb, .overlap = !no_overlap});
    optim::Adam opt(model->parameters(), {.lr = 1e-3});
    Generator g(100 + rank);
    Tensor x = randn({b, 1, 28, 28}, {}, &g);
    Tensor y = (rand({b}, {}, &g) * 10.0).to(DType::Int64);
    std::vector<double> step_s, hook_s, wait_s;
    for (int i = 0; i < warmup + steps; ++i) {
      dist::DdpStats before = ddp ? ddp->stats() : dist::DdpStats{};
      auto t0 = Clock::now();
      opt.zero_grad();
      cross_entropy((*model)(x), y).backward();
      opt.step();
      double dt = std::chrono::duration<double>(Clock::now() - t0).count();
      if (i < warmup) continue;
      step_s.push_back(dt);
      if (ddp) {
        hook_s.push_back(ddp->stats().hook_seconds - before.hook_seconds);
        wait_s.push_back(ddp->stats().wait_seconds - before.wait_seconds);
      }
    }
    if (pg) pg->barrier();
    if (rank == 0) {
      double step = median(step_s);
      nlohmann::json j = {{"impl", "dl"},
                          {"mode", mode},
                          {"ranks", world},
                          {"threads", threads},
                          {"global_batch", batch},
                          {"step_ms", step * 1e3},
                          {"img_per_s", batch / step},
                          {"steps", steps}};
      if (ddp) {
        j["overlap"] = !no_overlap;
        j["bucket_mb"] = bucket_mb;
        j["buckets"] = ddp->bucket_layout().size();
        j["hook_ms"] = median(hook_s) * 1e3;
        j["wait_ms"] = median(wait_s) * 1e3;
        j["grad_mb"] = ddp->stats().bytes / ddp->stats().steps / (1024.0 * 1024.0);
      }
      std::cout << j.dump() << std::endl;
    }
  } catch (const std::exception& e) {
    std::cerr << "dist_bench: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
