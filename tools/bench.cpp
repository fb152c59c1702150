// bench: the framework against PyTorch on the same machine, same workloads, same thread count.
//
//   bench [--workload W]... [--threads 2] [--runs 5] [--block 1] [--run-seconds 0.5] [--idle stop|alive]
//         [--no-pytorch] [--no-pytorch-best] [--alone [--alone-tolerance 0.05]] [--side-limit-seconds 300]
//         [--profile]
//         [--python /usr/bin/python3] [--torch-script tools/bench_torch.py]
//
// Workloads (images/s unless noted; median of --runs timed runs after a warm-up, each run long enough
// to last about --run-seconds):
//   sgemm_1024              C = A B, 1024^3, float32                               GFLOP/s
//   scratch_train_b64       the scratch CNN (models/scratch_cnn.h), 1x28x28, batch 64: forward, cross
//                           entropy, backward, Adam step
//   resnet18_fwd_224_b32    ResNet18 (1000 classes), eval, no grad, 3x224x224, batch 32
//   resnet18_fwd_64_b128    the same at 3x64x64, batch 128
//   resnet18_train_64_b64   ResNet18 (10 classes, the study's head), train mode, 3x64x64, batch 64:
//                           forward, cross entropy, backward, SGD (lr 0.01, momentum 0.9) step
// bfloat16 mixed precision (tensor/autocast.h), each against PyTorch under torch.autocast("cpu",
// dtype=torch.bfloat16):
//   gemm_bf16_1024          C = A B, 1024^3, float32 matrices multiplied under autocast (rounded to
//                           bfloat16 while packed, float32 sums)                  GFLOP/s
//   <model workload>_bf16   the same iteration inside dl::autocast(kCPU, BFloat16): matmuls and
//                           convolutions in bfloat16, the rest (and the weights) float32
//
// Sides. Every workload runs in processes of its own, so each side's peak resident memory is its own:
// the framework (bench spawns itself with --serve), PyTorch as a user writes it
// (`python3 tools/bench_torch.py --serve --config default`) and, unless --no-pytorch-best, "PyTorch at
// its best" (--config best: the fastest of channels_last, inference_mode, a traced, frozen and
// BN-folded graph (torch.jit.freeze + optimize_for_inference), foreach=True optimizers, torch.mm with a
// preallocated out=, whichever apply to the workload; bench_torch.py lists the candidates and the record
// names the one chosen). Ratios are quoted against both: ratio_default and ratio_best.
//
// Threads. Every child gets OMP_NUM_THREADS, OPENBLAS_NUM_THREADS and MKL_NUM_THREADS = --threads in
// its environment (libgomp and the BLAS read them once, at load time); the framework also calls
// omp_set_num_threads, the PyTorch side torch.set_num_threads(N) and torch.set_num_interop_threads(1),
// and reports the BLAS it mapped (and OpenBLAS's own configuration and thread count) and a summary of
// torch.__config__.parallel_info(); both go into every JSON line and the summary on stderr.
//
// The protocol, and why the figures are clean. A side that is not being timed is stopped with SIGSTOP
// (bench waits, with waitpid(WUNTRACED), until every thread of it has stopped) and continued with
// SIGCONT just before its own timed run. With both processes merely alive, the idle side's OpenMP
// workers (libgomp spins after each parallel region) and OpenBLAS's server threads (they spin with
// sched_yield for a long while) can take a core from the timed side: on a 2-core machine the old
// protocol read SGEMM at about half its alone figure. A stopped process cannot spin, whatever its wait policy. The alternative, passive wait
// policies (OMP_WAIT_POLICY=PASSIVE, GOMP_SPINCOUNT=0) for the idle side, cannot be switched per phase:
// libgomp reads them once at start-up, so the same process would also be passive while it is timed, and
// passive workers add a futex wake-up to every parallel region (hundreds per training step), a cost
// the timed side would pay and a user's run does not. With SIGSTOP each side keeps the default (partly active) policy it has when run
// by a user, and only ever competes with nothing: set-up and warm-up run one side at a time, the driver
// sleeps in a blocking read while a side is timed, and the FP32 peak and the FLOP count run before any
// side starts (the count in a short-lived process of its own). Timed runs go in blocks of --block runs
// per side, in the order A B C, C B A, A B C, ... (so no side is always first after a switch); each
// side's figure is the median of its --runs runs. "idle_sides_cpu_seconds" in the record (the stopped
// sides' CPU time during the others' timed blocks, from /proc) shows that they did idle. --idle alive
// keeps the old protocol (sides left running, blocked on their pipe, while another is timed) only to
// show the difference.
//
// --alone checks that claim: after the same-run measurement, each side is started again with no other
// side's process in existence, timed for --runs runs with the same iterations per run (and, for
// PyTorch at its best, the same configuration), and each JSON line gets "alone": {side: {"same_run",
// "alone", "rel_diff"}} and "alone_ok" (every |rel_diff| <= --alone-tolerance, 5% by default); the
// summary on stderr flags a side outside it.
//
// Output. First one JSON line {"machine": {...}}: the CPU model, CPUs online, the measured FP32 FMA
// peak (a register-only FMA loop, AVX-512 or AVX2+FMA as CPUID allows, on --threads threads), kernel,
// host, date, command line. Then one JSON object per workload:
//   {"workload", "unit", "framework", "pytorch", "pytorch_best" (throughputs, from the medians),
//    "ratio_default" (framework / pytorch; "ratio" is the same number, kept for old readers),
//    "ratio_best" (framework / pytorch_best), "pytorch_best_config", "pytorch_best_candidates_ms_per_iter",
//    "paired_ratio_median" (median over the pairs of runs of the same round), "threads", "batch", "runs",
//    "block", "protocol", "idle_sides_cpu_seconds" (CPU time the stopped sides used while another side was
//    timed, read from /proc in 10 ms clock ticks: 0 unless a stop failed), "iters_per_run", "run_seconds_per_iter" (every timed run, per side),
//    "framework_ms_per_iter", "pytorch_ms_per_iter", "pytorch_best_ms_per_iter", "peak_rss_mb",
//    "pytorch_peak_rss_mb", "rss_growth_mb" / "pytorch_rss_growth_mb" (peak minus the resident size
//    before the workload was built), "conv_gflop_per_iter" (counted from the convolutions' shapes),
//    "conv_gflop_s" / "pytorch_conv_gflop_s" (that count over the whole iteration's time), "pytorch_blas",
//    "pytorch_threading", "torch", "cpu_model", "cpu_caches" (as Linux reports them), "sgemm_blocks" (the micro-kernel
//    and the cache blocks derived from them), "fp32_peak_gflop_s", "load_average", with --alone
//    "alone" and "alone_ok", and with --profile "framework_profile_ms_per_iter" (per kernel),
//    "framework_profile_gb_s" (GB/s of each memory-bound kernel and the optimizer step: the bytes of its tensor
//    arguments, each read or written once, over its time), "framework_profile_conv_layers" (ms and GFLOP/s per
//    convolution pass and layer shape) and
//    "framework_profile_conv_algorithms" (the algorithm chosen per shape, under the search), and
//    "missing_sides" (side -> why it has no figures) where a side went over the limit below}
//
// Time limit. A PyTorch side that gives no answer (its set-up and warm-up, one timed run, its final record)
// within --side-limit-seconds (300 s by default) is killed; its throughput is null, its ratio absent, and
// "missing_sides" says why. PyTorch 1.13's bfloat16 autocast is slow on CPUs without AVX512_BF16: on a Zen 3,
// 11-21 s per ResNet18 iteration in its default form, while its best form's set-up (the candidates' search) gave
// no answer within 120 s, and an earlier run without a limit spent 19 CPU-minutes on one such side without one.
// The framework side has no limit.
// scripts/bench.sh keeps these lines as a benchmark record (bench_records/), and tools/bench_table.py
// turns a record into the README's table.
//
// --profile, and only --profile, wraps every kernel of the CPU dispatch table in a timer (without it the
// table is never touched in a timed process) and prints, to stderr, where the framework's time goes per
// kernel ("optimizer_step" is the update; "outside kernels" is the rest: autograd, allocation, views; GEMMs of
// linear layers run through bmm are counted as bmm), "conv_only_gflop_s" (over the time spent in the convolution kernels
// alone), and PyTorch's own profile of the same workload (torch.autograd.profiler, self CPU time per op).
// The convolution FLOP count is taken without --profile too, by a separate short-lived process
// (`--serve --count-flops`) that wraps the table, runs two iterations and exits before any timing.
#include <fcntl.h>
#include <immintrin.h>
#include <omp.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "autograd/functional.h"
#include "autograd/node.h"
#include "models/resnet.h"
#include "tensor/cpu/conv.h"
#include "tensor/cpu/cpu_info.h"
#include "tensor/cpu/gemm.h"
#include "tensor/cpu/gemm_bf16.h"
#include "models/scratch_cnn.h"
#include "nn/loss.h"
#include "nn/optim/adam.h"
#include "nn/optim/sgd.h"
#include "tensor/dispatch.h"
#include "tensor/ops.h"

#ifndef DL_SOURCE_DIR
#define DL_SOURCE_DIR "."
#endif

extern char** environ;

using namespace dl;
using json = nlohmann::ordered_json;  // keeps the fields in the order they are written

namespace {

const std::vector<std::string> kWorkloads = {"sgemm_1024",
                                             "scratch_train_b64",
                                             "resnet18_fwd_224_b32",
                                             "resnet18_fwd_64_b128",
                                             "resnet18_train_64_b64",
                                             "gemm_bf16_1024",
                                             "scratch_train_b64_bf16",
                                             "resnet18_fwd_224_b32_bf16",
                                             "resnet18_fwd_64_b128_bf16",
                                             "resnet18_train_64_b64_bf16"};

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double median(std::vector<double> v) {
  if (v.empty()) return std::nan("");
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

double peak_rss_mb() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) / 1024.0;  // Linux: kilobytes
}

// The 1-minute load average: other jobs on the machine skew both sides of a comparison.
double load_average() {
  std::ifstream f("/proc/loadavg");
  double l = -1;
  f >> l;
  return l;
}

double current_rss_mb() {
  std::ifstream f("/proc/self/statm");
  long pages = 0, resident = 0;
  f >> pages >> resident;
  return static_cast<double>(resident) * static_cast<double>(sysconf(_SC_PAGESIZE)) / (1024.0 * 1024.0);
}

// ---- the machine: CPU model and a measured FP32 FMA peak -----------------------------------------

std::string cpu_model() {
  const std::string model = dl::cpu::cpu_model_name();
  return model.empty() ? "unknown" : model;
}

// Independent FMA chains on registers only: enough of them to cover the FMA latency (4 cycles) times
// the FMA ports (2), so the loop runs at the core's FMA throughput. Different start values keep the
// compiler from merging chains; a multiplier just below 1 keeps the values finite and normal.
#define DL_FMA16(f)                                                                                   \
  f(0) f(1) f(2) f(3) f(4) f(5) f(6) f(7) f(8) f(9) f(10) f(11) f(12) f(13) f(14) f(15)
#define DL_FMA12(f) f(0) f(1) f(2) f(3) f(4) f(5) f(6) f(7) f(8) f(9) f(10) f(11)

__attribute__((target("avx512f"))) float fma_loop_avx512(int64_t iters) {
  const __m512 m = _mm512_set1_ps(0.9999999f), c = _mm512_set1_ps(1e-3f);
#define DL_INIT(k) __m512 a##k = _mm512_set1_ps(1.0f + 0.01f * (k));
  DL_FMA16(DL_INIT)
#undef DL_INIT
  for (int64_t i = 0; i < iters; ++i) {
#define DL_STEP(k) a##k = _mm512_fmadd_ps(a##k, m, c);
    DL_FMA16(DL_STEP)
#undef DL_STEP
  }
  __m512 s = _mm512_setzero_ps();
#define DL_SUM(k) s = _mm512_add_ps(s, a##k);
  DL_FMA16(DL_SUM)
#undef DL_SUM
  alignas(64) float v[16];
  _mm512_store_ps(v, s);
  float r = 0;
  for (float x : v) r += x;
  return r;
}
constexpr double kFlopsPerIterAvx512 = 16 * 16 * 2;

__attribute__((target("avx2,fma"))) float fma_loop_avx2(int64_t iters) {
  const __m256 m = _mm256_set1_ps(0.9999999f), c = _mm256_set1_ps(1e-3f);
#define DL_INIT(k) __m256 a##k = _mm256_set1_ps(1.0f + 0.01f * (k));
  DL_FMA12(DL_INIT)
#undef DL_INIT
  for (int64_t i = 0; i < iters; ++i) {
#define DL_STEP(k) a##k = _mm256_fmadd_ps(a##k, m, c);
    DL_FMA12(DL_STEP)
#undef DL_STEP
  }
  __m256 s = _mm256_setzero_ps();
#define DL_SUM(k) s = _mm256_add_ps(s, a##k);
  DL_FMA12(DL_SUM)
#undef DL_SUM
  alignas(32) float v[8];
  _mm256_store_ps(v, s);
  return v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7];
}
constexpr double kFlopsPerIterAvx2 = 12 * 8 * 2;
#undef DL_FMA16
#undef DL_FMA12

// Memory bandwidth on `threads` OpenMP threads, STREAM's way: copy (c = a) and triad (a = b + s c) over
// arrays of 64 Mi floats (256 MiB each, far past any cache), bytes read plus bytes written over the time, best
// of three. What a memory-bound kernel can reach at most; the profile's GB/s compare with it.
struct Bandwidth {
  double copy_gb_s = 0, triad_gb_s = 0;
};
Bandwidth measure_memory_bandwidth(int threads) {
  const int64_t n = int64_t{64} << 20;
  std::unique_ptr<float[]> a(new float[static_cast<size_t>(n)]), b(new float[static_cast<size_t>(n)]),
      c(new float[static_cast<size_t>(n)]);
  float* pa = a.get();
  float* pb = b.get();
  float* pc = c.get();
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t i = 0; i < n; ++i) pa[i] = 1.0f, pb[i] = 2.0f, pc[i] = 0.5f;  // first touch, same threads
  Bandwidth bw;
  const double bytes = static_cast<double>(n) * sizeof(float);
  for (int rep = 0; rep < 3; ++rep) {
    double t0 = now_s();
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < n; ++i) pc[i] = pa[i];
    bw.copy_gb_s = std::max(bw.copy_gb_s, 2 * bytes / (now_s() - t0) * 1e-9);
    t0 = now_s();
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < n; ++i) pa[i] = pb[i] + 3.0f * pc[i];
    bw.triad_gb_s = std::max(bw.triad_gb_s, 3 * bytes / (now_s() - t0) * 1e-9);
  }
  if (pa[n / 2] == 12345.f) std::fprintf(stderr, " ");  // keeps the stores alive
  return bw;
}

struct FmaPeak {
  std::string isa;  // "AVX-512", "AVX2+FMA" or "none"
  double gflop_s = 0;
  int threads = 0;
};

// The FP32 FMA peak on `threads` threads (std::threads, joined before returning: nothing lingers).
FmaPeak measure_fp32_peak(int threads) {
  __builtin_cpu_init();
  FmaPeak p;
  p.threads = threads;
  float (*loop)(int64_t) = nullptr;
  double flops_per_iter = 0;
  if (__builtin_cpu_supports("avx512f")) {
    p.isa = "AVX-512";
    loop = fma_loop_avx512;
    flops_per_iter = kFlopsPerIterAvx512;
  } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    p.isa = "AVX2+FMA";
    loop = fma_loop_avx2;
    flops_per_iter = kFlopsPerIterAvx2;
  } else {
    p.isa = "none";
    return p;
  }
  std::atomic<float> sink{0};
  // calibrate: iterations for about 0.15 s on one thread
  loop(100000);
  double t0 = now_s();
  sink = sink + loop(1000000);
  const double per_iter = (now_s() - t0) / 1e6;
  const auto iters = static_cast<int64_t>(0.15 / std::max(per_iter, 1e-12));
  for (int rep = 0; rep < 3; ++rep) {
    std::atomic<int> arrived{0};
    std::atomic<bool> go{false};
    std::vector<std::thread> pool;
    for (int k = 0; k < threads; ++k) {
      pool.emplace_back([&] {
        arrived++;
        while (!go.load()) {
        }
        const float r = loop(iters);
        float cur = sink.load();
        while (!sink.compare_exchange_weak(cur, cur + r)) {
        }
      });
    }
    while (arrived.load() < threads) {
    }
    t0 = now_s();
    go = true;
    for (auto& t : pool) t.join();
    const double dt = now_s() - t0;
    p.gflop_s = std::max(p.gflop_s, flops_per_iter * static_cast<double>(iters) * threads / dt * 1e-9);
  }
  if (sink.load() == 12345.f) std::fprintf(stderr, " ");  // keeps the loops' results alive
  return p;
}

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

// ---- kernel profile: every entry of the CPU dispatch table wrapped by a timer --------------------

struct KernelStat {
  double seconds = 0;
  int64_t calls = 0;
  double flops = 0;  // convolutions only, counted from shapes
  double bytes = 0;  // the others: each tensor argument's memory read or written once (compulsory traffic)
};
std::map<std::string, KernelStat>& kernel_stats() {
  static std::map<std::string, KernelStat> s;
  return s;
}
bool g_in_kernel = false;  // a kernel that calls another through the table is timed once (outermost)
bool g_profiling = false;  // install_kernel_timers ran: the optimizer's step is timed too
// The convolutions again, per pass and layer shape ("fwd 64x56x56 -> 64 3x3/1 bf16"): where the conv
// time goes, layer by layer.
std::map<std::string, KernelStat>& conv_layer_stats() {
  static std::map<std::string, KernelStat> s;
  return s;
}
std::string conv_layer_key(const char* pass, const Conv2dParams& p) {
  return fmt::format("{} {}x{}x{} -> {} {}x{}/{}{}{}", pass, p.C, p.H, p.W, p.O, p.kh, p.kw, p.stride[0],
                     p.groups > 1 ? fmt::format(" g{}", p.groups) : "",
                     p.gemm_dtype == DType::Float32 ? "" : fmt::format(" {}", dtype_name(p.gemm_dtype)));
}

double conv_flops(const Tensor& out, const Tensor& w) {
  // 2 * N * O * Ho * Wo * (C/g) * kh * kw: one multiply-add per weight tap per output element
  const auto& ws = w.sizes();
  return 2.0 * static_cast<double>(out.numel()) * static_cast<double>(ws[1] * ws[2] * ws[3]);
}

// The bytes of memory a tensor argument spans (a broadcast dimension, stride 0, counts once).
inline double tensor_bytes(const Tensor& t) {
  if (!t.defined()) return 0;
  double n = static_cast<double>(t.element_size());
  for (int64_t d = 0; d < t.dim(); ++d)
    if (t.strides()[static_cast<size_t>(d)] != 0) n *= static_cast<double>(t.sizes()[static_cast<size_t>(d)]);
  return n;
}
template <typename U>
inline double tensor_bytes(const U&) {
  return 0;
}

template <auto Field, typename F = std::remove_cvref_t<decltype(std::declval<KernelTable>().*Field)>>
struct Timed;
template <auto Field, typename... A>
struct Timed<Field, void (*)(A...)> {
  static inline void (*original)(A...) = nullptr;
  static inline KernelStat* stat = nullptr;
  static inline double (*flops)(A...) = nullptr;
  static inline std::string (*layer)(A...) = nullptr;  // conv_layer_stats' key, for the convolutions
  static inline bool memory_bound = true;                 // count bytes (GB/s) when there is no FLOP count
  static void call(A... a) {
    if (g_in_kernel) return original(a...);
    g_in_kernel = true;
    const double t0 = now_s();
    try {
      original(a...);
    } catch (...) {
      g_in_kernel = false;
      throw;
    }
    const double dt = now_s() - t0;
    stat->seconds += dt;
    stat->calls++;
    if (flops)
      stat->flops += flops(a...);
    else if (memory_bound)
      stat->bytes += (tensor_bytes(a) + ...);
    if (layer) {
      KernelStat& ls = conv_layer_stats()[layer(a...)];
      ls.seconds += dt;
      ls.calls++;
      if (flops) ls.flops += flops(a...);
    }
    g_in_kernel = false;
  }
  static void install(KernelTable& t, const char* name, double (*f)(A...) = nullptr,
                      std::string (*layer_key)(A...) = nullptr, bool bytes = true) {
    original = t.*Field;
    memory_bound = bytes;
    if (!original) return;
    stat = &kernel_stats()[name];
    flops = f;
    layer = layer_key;
    t.*Field = &call;
  }
};

void install_kernel_timers() {
  g_profiling = true;
  KernelTable& t = kernels(DeviceType::CPU);
#define DL_TIME(field) Timed<&KernelTable::field>::install(t, #field)
  DL_TIME(unary);
  DL_TIME(pow_scalar);
  DL_TIME(binary);
  DL_TIME(where);
  DL_TIME(copy);
  DL_TIME(fill);
  DL_TIME(reduce_rows);
  DL_TIME(max_rows);
  Timed<&KernelTable::bmm>::install(t, "bmm", nullptr, nullptr, false);  // compute-bound: no GB/s
  DL_TIME(softmax);
  DL_TIME(softmax_backward);
  DL_TIME(gather);
  DL_TIME(scatter_add);
  DL_TIME(conv2d_backward_bias);
  DL_TIME(batch_norm_forward);
  DL_TIME(batch_norm_backward);
  DL_TIME(max_pool2d_forward);
  DL_TIME(max_pool2d_backward);
  DL_TIME(avg_pool2d_forward);
  DL_TIME(avg_pool2d_backward);
  DL_TIME(adaptive_avg_pool2d_forward);
  DL_TIME(adaptive_avg_pool2d_backward);
  DL_TIME(cross_entropy_forward);
  DL_TIME(cross_entropy_backward);
  DL_TIME(relu_backward);
  DL_TIME(batch_norm_relu_forward);
#undef DL_TIME
  Timed<&KernelTable::conv2d_forward>::install(
      t, "conv2d_forward",
      [](const Tensor& out, const Tensor&, const Tensor& w, const Tensor&, const Conv2dParams&) {
        return conv_flops(out, w);
      },
      [](const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Conv2dParams& p) {
        return conv_layer_key("fwd", p);
      });
  // the inference path of Conv2d + BatchNorm2d (+ ReLU): BatchNorm2d::forward_conv
  Timed<&KernelTable::conv2d_forward_affine>::install(
      t, "conv2d_forward_affine",
      [](const Tensor& out, const Tensor&, const Tensor& w, const Tensor&, const Tensor&, const Tensor&, bool,
         const Conv2dParams&) { return conv_flops(out, w); },
      [](const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, bool,
         const Conv2dParams& p) { return conv_layer_key("fwd", p); });
  Timed<&KernelTable::conv2d_backward_input>::install(
      t, "conv2d_backward_input",
      [](const Tensor&, const Tensor& gout, const Tensor& w, const Conv2dParams&) { return conv_flops(gout, w); },
      [](const Tensor&, const Tensor&, const Tensor&, const Conv2dParams& p) { return conv_layer_key("dx ", p); });
  Timed<&KernelTable::conv2d_backward_weight>::install(
      t, "conv2d_backward_weight",
      [](const Tensor& gw, const Tensor& gout, const Tensor&, const Conv2dParams&) { return conv_flops(gout, gw); },
      [](const Tensor&, const Tensor&, const Tensor&, const Conv2dParams& p) { return conv_layer_key("dw ", p); });
}

void reset_kernel_stats() {
  for (auto& [name, s] : kernel_stats()) s = KernelStat{};
  conv_layer_stats().clear();
}

// ---- workloads ------------------------------------------------------------------------------------

struct Workload {
  std::string unit;      // "images/s" or "GFLOP/s"
  int64_t batch = 0;     // images per iteration (0 for sgemm)
  double work_per_iter;  // images, or GFLOP for sgemm
  std::function<void()> iteration;
};

Tensor random_targets(int64_t n, int64_t classes) {
  Generator g(7);
  Tensor t = empty({n}, DType::Int64);
  for (int64_t i = 0; i < n; ++i) t.data_ptr<int64_t>()[i] = static_cast<int64_t>(g.below(classes));
  return t;
}

// opt.step(), timed in profiles as "optimizer_step" (kernels it calls through the table count in it), with its
// compulsory traffic: bytes_per_element for each of the `elements` parameter values (SGD with momentum reads
// the parameter, its gradient and the momentum and writes two of them: 20 bytes in float32; Adam reads four
// and writes three: 28).
void optimizer_step(optim::Optimizer& opt, double bytes_per_element, int64_t elements) {
  if (!g_profiling || g_in_kernel) return opt.step();
  g_in_kernel = true;
  const double t0 = now_s();
  try {
    opt.step();
  } catch (...) {
    g_in_kernel = false;
    throw;
  }
  KernelStat& st = kernel_stats()["optimizer_step"];
  st.seconds += now_s() - t0;
  st.calls++;
  st.bytes += bytes_per_element * static_cast<double>(elements);
  g_in_kernel = false;
}

int64_t parameter_elements(nn::Module& m) {
  int64_t n = 0;
  for (const Tensor& p : m.parameters()) n += p.numel();
  return n;
}

// Holds whatever a workload's iteration needs alive.
struct State {
  std::shared_ptr<nn::Module> model;
  std::unique_ptr<optim::Optimizer> opt;
  Tensor x, y, a, b;
};

Workload make_workload(const std::string& name, State& s) {
  // the bfloat16 workloads: the float32 one's iteration inside an autocast scope
  const std::string suffix = "_bf16";
  if (name == "gemm_bf16_1024" || (name.size() > suffix.size() && name.ends_with(suffix))) {
    Workload w = make_workload(name == "gemm_bf16_1024" ? "sgemm_1024" : name.substr(0, name.size() - suffix.size()), s);
    w.iteration = [inner = std::move(w.iteration)] {
      auto scope = autocast(kCPU, DType::BFloat16);
      inner();
    };
    return w;
  }
  manual_seed(0);
  if (name == "sgemm_1024") {
    const int64_t n = 1024;
    s.a = randn({n, n});
    s.b = randn({n, n});
    return {"GFLOP/s", 0, 2.0 * n * n * n * 1e-9, [&s] { s.a.matmul(s.b); }};  // the public call: it reads the autocast state
  }
  if (name == "scratch_train_b64") {
    auto m = std::make_shared<models::ScratchCnn>();
    m->train();
    s.opt = std::make_unique<optim::Adam>(m->parameters(), optim::AdamOptions{});
    s.model = m;
    s.x = randn({64, 1, 28, 28});
    s.y = random_targets(64, 10);
    return {"images/s", 64, 64.0, [&s, m, n = parameter_elements(*m)] {
              s.opt->zero_grad();
              Tensor loss = cross_entropy((*m)(s.x), s.y);
              loss.backward();
              optimizer_step(*s.opt, 28.0, n);
            }};
  }
  if (name == "resnet18_fwd_224_b32" || name == "resnet18_fwd_64_b128") {
    const bool big = name == "resnet18_fwd_224_b32";
    const int64_t n = big ? 32 : 128, side = big ? 224 : 64;
    auto m = std::make_shared<models::ResNet18>(1000);
    m->eval();
    s.model = m;
    s.x = randn({n, 3, side, side});
    return {"images/s", n, static_cast<double>(n), [&s, m] {
              NoGradGuard ng;
              (*m)(s.x);
            }};
  }
  if (name == "resnet18_train_64_b64") {
    auto m = std::make_shared<models::ResNet18>(10);
    m->train();
    optim::SGDOptions o;
    o.lr = 0.01;
    o.momentum = 0.9;
    s.opt = std::make_unique<optim::SGD>(m->parameters(), o);
    s.model = m;
    s.x = randn({64, 3, 64, 64});
    s.y = random_targets(64, 10);
    return {"images/s", 64, 64.0, [&s, m, n = parameter_elements(*m)] {
              s.opt->zero_grad();
              Tensor loss = cross_entropy((*m)(s.x), s.y);
              loss.backward();
              optimizer_step(*s.opt, 20.0, n);
            }};
  }
  fail("unknown workload '{}'; expected one of: {}", name, fmt::join(kWorkloads, ", "));
}

// ---- one side of a workload, driven over a pipe --------------------------------------------------
//
// Every side runs as a child of the driving bench process and follows one protocol on stdin/stdout
// (tools/bench_torch.py speaks it too):
//   child: builds the workload, runs a warm-up iteration and a counted one (or takes
//          --iters-per-run), prints {"ready": true, "iters_per_run": k}
//   "run\n"  -> runs k iterations, prints {"seconds_per_iter": t}
//   "done\n" -> prints its final record (memory, FLOPs, profile) and exits
// Between its runs the driver keeps it stopped (SIGSTOP; see the top of this file).

int serve_framework(const std::string& name, int threads, double run_seconds, double warmup_seconds, bool profile,
                    int64_t iters_per_run) {
  omp_set_num_threads(threads);
  if (profile) install_kernel_timers();  // never in a timed process without --profile
  const double rss0 = current_rss_mb();
  State s;
  Workload w = make_workload(name, s);
  w.iteration();  // lazy state (optimizer buffers, scratch buffers, the allocator's cache)
  double t0 = now_s();
  w.iteration();
  const double t_iter = now_s() - t0;
  // Warm up for a fixed time, the same on every side and in both modes (same run, alone): the first
  // seconds of a process are slower (page faults, malloc's adaptive mmap threshold, lazy caches),
  // and a side that warmed up longer would look faster.
  for (double w0 = now_s(); now_s() - w0 < warmup_seconds;) w.iteration();
  reset_kernel_stats();
  const int64_t iters = iters_per_run > 0 ? iters_per_run
                                          : std::max<int64_t>(1, std::llround(run_seconds / std::max(t_iter, 1e-6)));
  std::printf("%s\n", json{{"ready", true}, {"iters_per_run", iters}}.dump().c_str());
  std::fflush(stdout);
  std::vector<double> per_iter;
  char line[64];
  while (std::fgets(line, sizeof line, stdin)) {
    if (std::strncmp(line, "run", 3) != 0) break;
    t0 = now_s();
    for (int64_t i = 0; i < iters; ++i) w.iteration();
    per_iter.push_back((now_s() - t0) / static_cast<double>(iters));
    std::printf("%s\n", json{{"seconds_per_iter", per_iter.back()}}.dump().c_str());
    std::fflush(stdout);
  }
  const int64_t timed_iters = iters * static_cast<int64_t>(per_iter.size());
  json j;
  j["unit"] = w.unit;
  j["work_per_iter"] = w.work_per_iter;
  j["batch"] = w.batch;
  j["peak_rss_mb"] = peak_rss_mb();
  j["rss_growth_mb"] = peak_rss_mb() - rss0;
  if (profile && timed_iters > 0) {
    double total_s = 0;
    for (double t : per_iter) total_s += t * static_cast<double>(iters);
    double conv_seconds = 0, kernel_seconds = 0, conv_flops_total = 0;
    for (const auto& [k, st] : kernel_stats()) {
      kernel_seconds += st.seconds;
      if (k.rfind("conv2d", 0) == 0 && k != "conv2d_backward_bias") conv_seconds += st.seconds;
      conv_flops_total += st.flops;
    }
    if (conv_flops_total > 0 && conv_seconds > 0) j["conv_only_gflop_s"] = conv_flops_total * 1e-9 / conv_seconds;
    // milliseconds per iteration in each kernel (means over the timed iterations), largest first
    const double total_ms = total_s * 1e3 / static_cast<double>(timed_iters);
    std::vector<std::pair<std::string, KernelStat>> rows(kernel_stats().begin(), kernel_stats().end());
    std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.second.seconds > b.second.seconds; });
    std::fprintf(stderr, "\n[profile] %s, framework: %.2f ms per iteration (mean of %ld timed iterations)\n",
                 name.c_str(), total_ms, static_cast<long>(timed_iters));
    std::fprintf(stderr, "  %-30s %10s %7s %8s %18s\n", "kernel", "ms/iter", "share", "calls", "GFLOP/s or GB/s");
    json prof = json::object(), bandwidth = json::object();
    for (const auto& [k, st] : rows) {
      if (st.calls == 0) continue;
      const double ms = st.seconds * 1e3 / static_cast<double>(timed_iters);
      std::fprintf(stderr, "  %-30s %10.2f %6.1f%% %8.1f", k.c_str(), ms, 100.0 * ms / total_ms,
                   static_cast<double>(st.calls) / static_cast<double>(timed_iters));
      if (st.flops > 0) std::fprintf(stderr, " %10.1f GFLOP/s", st.flops * 1e-9 / st.seconds);
      if (st.bytes > 0 && st.seconds > 0) {
        std::fprintf(stderr, " %10.1f GB/s", st.bytes * 1e-9 / st.seconds);
        bandwidth[k] = st.bytes * 1e-9 / st.seconds;
      }
      std::fprintf(stderr, "\n");
      prof[k] = ms;
    }
    // the memory-bound kernels' compulsory traffic (each tensor argument once) over their time: compare with
    // the record's measured copy bandwidth (a kernel that reads its input twice, as training batch norm
    // does, shows less than it moves)
    j["profile_gb_s"] = bandwidth;
    const double outside = total_ms - kernel_seconds * 1e3 / static_cast<double>(timed_iters);
    std::fprintf(stderr, "  %-30s %10.2f %6.1f%%  (autograd engine, allocation, views)\n",
                 "outside kernels", outside, 100.0 * outside / total_ms);
    prof["outside_kernels"] = outside;
    j["profile_ms_per_iter"] = prof;
    // the convolutions per pass and layer shape, in the order of their keys (pass, then input size)
    std::fprintf(stderr, "  per convolution layer (pass, input CxHxW -> output channels, kernel/stride):\n");
    json layers = json::object();
    for (const auto& [k, st] : conv_layer_stats()) {
      const double ms = st.seconds * 1e3 / static_cast<double>(timed_iters);
      const double gf = st.seconds > 0 ? st.flops * 1e-9 / st.seconds : 0;
      std::fprintf(stderr, "    %-40s %8.2f ms %6.1f calls %8.1f GFLOP/s\n", k.c_str(), ms,
                   static_cast<double>(st.calls) / static_cast<double>(timed_iters), gf);
      layers[k] = {{"ms_per_iter", ms}, {"gflop_s", gf}};
    }
    j["profile_conv_layers"] = layers;
    // the algorithm each convolution pass runs (tensor/cpu/conv.h): searched per shape, or the fixed rules
    if (dl::cpu::conv_algo_search_enabled()) {
      std::fprintf(stderr, "  convolution algorithms chosen per shape (cache %s):\n",
                   dl::cpu::conv_algo_cache_path().c_str());
      json algos = json::object();
      for (const auto& [k, a] : dl::cpu::conv_algo_choices()) {
        std::fprintf(stderr, "    %-90s %s\n", k.c_str(), a.c_str());
        algos[k] = a;
      }
      j["profile_conv_algorithms"] = algos;
    } else {
      std::fprintf(stderr, "  convolution algorithms: the fixed rules (DL_CONV_ALGO=heuristic)\n");
    }
  }
  std::printf("%s\n", j.dump().c_str());
  std::fflush(stdout);
  return 0;
}

// `--serve --count-flops`: the convolution FLOPs of one iteration, counted by the kernel wrappers in a
// process of its own that exits before any side is timed.
int count_conv_flops(const std::string& name, int threads) {
  omp_set_num_threads(threads);
  install_kernel_timers();
  State s;
  Workload w = make_workload(name, s);
  w.iteration();
  reset_kernel_stats();
  w.iteration();
  double flops = 0;
  for (const auto& [k, st] : kernel_stats()) flops += st.flops;
  std::printf("%s\n", json{{"conv_gflop_per_iter", flops * 1e-9}}.dump().c_str());
  std::fflush(stdout);
  return 0;
}

// The environment of every child: the driver's, with the thread counts pinned to --threads.
std::vector<std::string> child_environment(int threads) {
  const std::vector<std::string> pinned = {"OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"};
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) {
    const std::string kv = *e;
    const bool overridden = std::any_of(pinned.begin(), pinned.end(),
                                        [&](const std::string& v) { return kv.rfind(v + "=", 0) == 0; });
    if (!overridden) env.push_back(kv);
  }
  for (const auto& v : pinned) env.push_back(v + "=" + std::to_string(threads));
  return env;
}

// The live children, so that a driver ended by a signal does not leave them stopped forever: the
// handler passes the signal on, continues them (a stopped process only acts on it once continued),
// and ends the driver the way the signal would have.
constexpr int kMaxChildren = 8;
std::atomic<pid_t> g_children[kMaxChildren];

void on_fatal_signal(int sig) {
  for (auto& c : g_children) {
    const pid_t p = c.load();
    if (p > 0) {
      kill(p, SIGTERM);
      kill(p, SIGCONT);
    }
  }
  signal(sig, SIG_DFL);
  raise(sig);
}

void register_child(pid_t p, pid_t old) {
  for (auto& c : g_children) {
    pid_t expected = old;
    if (c.compare_exchange_strong(expected, p)) return;
  }
}

// A side that gave no answer within --side-limit-seconds (Child::receive).
struct OverLimit : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A child process with a pipe to its stdin and one from its stdout; stderr passes through. It can be
// stopped (SIGSTOP) while another side is timed and continued (SIGCONT) for its own runs.
class Child {
 public:
  Child(const std::vector<std::string>& args, std::string who, const std::vector<std::string>& env)
      : who_(std::move(who)) {
    int in[2], out[2];
    // close-on-exec: a side started later must not inherit this side's pipe ends (it would keep this side's stdin
    // open, so this side never saw its end and a destructor's waitpid would wait for ever); the ends dup2'ed onto
    // the child's stdin and stdout below are not close-on-exec
    if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) fail("bench: pipe() failed: {}", std::strerror(errno));
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addclose(&fa, in[1]);
    posix_spawn_file_actions_addclose(&fa, out[0]);
    posix_spawn_file_actions_adddup2(&fa, in[0], STDIN_FILENO);
    posix_spawn_file_actions_adddup2(&fa, out[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&fa, in[0]);
    posix_spawn_file_actions_addclose(&fa, out[1]);
    std::vector<char*> argv, envp;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    for (const auto& e : env) envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);
    // The side ignores SIGHUP (an ignored signal stays ignored across exec; the driver's handler is put back at
    // once). A bench started in the background from a shell that then ended lost a stopped side to a hangup while
    // the driver carried on ("framework sgemm_1024 ended (signal 1 (Hangup))"; likely the kernel's rule for a
    // process group left without a parent outside it while a member is stopped: SIGHUP, then SIGCONT). A hangup of
    // the driver itself still ends the sides (on_fatal_signal sends them SIGTERM).
    struct sigaction ignore{}, handler{};
    ignore.sa_handler = SIG_IGN;
    sigemptyset(&ignore.sa_mask);
    sigaction(SIGHUP, &ignore, &handler);
    const int rc = posix_spawn(&pid_, argv[0], &fa, nullptr, argv.data(), envp.data());
    sigaction(SIGHUP, &handler, nullptr);
    posix_spawn_file_actions_destroy(&fa);
    close(in[0]);
    close(out[1]);
    if (rc != 0) {
      close(in[1]);
      close(out[0]);
      pid_ = -1;
      fail("bench: could not start '{}': {}", args[0], std::strerror(rc));
    }
    register_child(pid_, 0);
    to_ = fdopen(in[1], "w");
    from_ = fdopen(out[0], "r");
  }
  ~Child() {
    if (stopped_ && pid_ > 0) kill(pid_, SIGCONT);
    close_pipes();
    reap();
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  void send(const char* line) {
    std::fputs(line, to_);
    std::fputc('\n', to_);
    std::fflush(to_);
  }
  // The next line that is a JSON object (other output is passed on to stderr). With limit_s > 0, a child that has
  // not answered within limit_s seconds is killed and OverLimit is thrown.
  json receive(double limit_s = 0) {
    if (limit_s <= 0) return read_answer();
    std::mutex m;
    std::condition_variable cv;
    bool answered = false, fired = false;
    std::thread watchdog([&] {
      std::unique_lock<std::mutex> lock(m);
      if (!cv.wait_for(lock, std::chrono::duration<double>(limit_s), [&] { return answered; })) {
        fired = true;
        kill(pid_, SIGKILL);  // its pipe closes, so the read below returns
      }
    });
    std::optional<json> j;
    try {
      j = read_answer();
    } catch (const std::exception&) {
    }
    {
      std::lock_guard<std::mutex> lock(m);
      answered = true;
    }
    cv.notify_one();
    watchdog.join();
    if (fired) {
      close_pipes();
      reap();
      throw OverLimit(fmt::format("no answer within {:.0f} s (--side-limit-seconds)", limit_s));
    }
    if (!j) fail("bench: {} ended without its JSON answer (see its messages above)", who_);
    return *j;
  }
  json read_answer() {
    char* buf = nullptr;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&buf, &cap, from_)) > 0) {
      std::string line(buf, static_cast<size_t>(n));
      while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
      if (!line.empty() && line[0] == '{') {
        json j = json::parse(line, nullptr, false);
        if (!j.is_discarded() && j.is_object()) {
          std::free(buf);
          return j;
        }
      }
      std::fprintf(stderr, "%s: %s\n", who_.c_str(), line.c_str());
    }
    std::free(buf);
    fail("bench: {} ended without its JSON answer (see its messages above)", who_);
  }
  // Stops the child and returns once all its threads have stopped.
  void stop() {
    if (kill(pid_, SIGSTOP) != 0) fail("bench: cannot stop {}: {}", who_, std::strerror(errno));
    wait_for(WUNTRACED, "stop");
    stopped_ = true;
  }
  void resume() {
    if (kill(pid_, SIGCONT) != 0) fail("bench: cannot continue {}: {}", who_, std::strerror(errno));
    wait_for(WCONTINUED, "continue");
    stopped_ = false;
  }
  // CPU time (user + system, all threads) the child has used so far, from /proc/<pid>/stat.
  double cpu_seconds() const {
    std::ifstream f(fmt::format("/proc/{}/stat", pid_));
    std::string stat((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    const auto close_paren = stat.rfind(')');  // the command name may hold spaces
    if (close_paren == std::string::npos) return 0;
    std::istringstream rest(stat.substr(close_paren + 2));
    std::string field;
    double ticks = 0;
    for (int i = 3; i <= 15 && rest >> field; ++i)
      if (i == 14 || i == 15) ticks += std::stod(field);  // utime, stime
    return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
  }
  // "done": the child's final record; the child has exited when this returns.
  json finish(double limit_s = 0) {
    if (stopped_) resume();
    send("done");
    json j = receive(limit_s);
    close_pipes();
    reap();
    return j;
  }

 private:
  void wait_for(int flag, const char* what) {
    int status = 0;
    for (;;) {
      const pid_t r = waitpid(pid_, &status, flag);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) fail("bench: waiting for {} to {}: {}", who_, what, std::strerror(errno));
      if (WIFEXITED(status) || WIFSIGNALED(status)) {
        register_child(0, pid_);
        pid_ = -1;
        const std::string how = WIFEXITED(status) ? fmt::format("exit status {}", WEXITSTATUS(status))
                                                  : fmt::format("signal {} ({})", WTERMSIG(status),
                                                                strsignal(WTERMSIG(status)));
        fail("bench: {} ended ({}) while it should {} (see its messages above)", who_, how, what);
      }
      if ((flag == WUNTRACED && WIFSTOPPED(status)) || (flag == WCONTINUED && WIFCONTINUED(status))) return;
    }
  }
  void close_pipes() {
    if (to_) std::fclose(to_);
    if (from_) std::fclose(from_);
    to_ = from_ = nullptr;
  }
  void reap() {
    if (pid_ <= 0) return;
    int status = 0;
    while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    register_child(0, pid_);
    pid_ = -1;
  }
  std::string who_;
  pid_t pid_ = -1;
  bool stopped_ = false;
  FILE* to_ = nullptr;
  FILE* from_ = nullptr;
};

// One side of a comparison: its command line, its process while it lives, and its timed runs.
struct Side {
  Side(std::string k, std::vector<std::string> a) : key(std::move(k)), args(std::move(a)) {}
  std::string key;  // "framework", "pytorch", "pytorch_best": the JSON field of its throughput
  std::vector<std::string> args;
  std::unique_ptr<Child> child;
  json ready;
  int64_t iters = 0;
  std::vector<double> t;  // seconds per iteration, one per timed run
  json final;
  std::vector<double> alone_t;
  std::string missing;        // why this side has no figures (it went over --side-limit-seconds), else empty
  std::string alone_missing;  // the same for its --alone runs
  bool has() const { return missing.empty(); }
};

std::string fmt_value(double v) { return fmt::format("{:.1f}", v); }

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench: framework vs PyTorch, same workloads, same threads"};
  std::vector<std::string> workloads;
  int threads = 2, runs = 5, block = 1;
  int64_t iters_per_run = 0;
  double run_seconds = 0.5, warmup_seconds = 2.0, alone_tolerance = 0.05, side_limit_seconds = 300;
  std::string idle = "stop";
  bool no_pytorch = false, pytorch_best = true, alone = false, serve = false, count_flops = false, profile = false;
  std::string python = "/usr/bin/python3", script = std::string(DL_SOURCE_DIR) + "/tools/bench_torch.py";
  app.add_option("--workload", workloads, "workload(s) to run (default: all)")->check(CLI::IsMember(kWorkloads));
  app.add_option("--threads", threads, "threads on every side")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--runs", runs, "timed runs per side (the median is reported)")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--block", block, "timed runs of one side in a row before the next side's")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--run-seconds", run_seconds, "target length of one timed run")->capture_default_str();
  app.add_option("--warmup-seconds", warmup_seconds,
                 "every side iterates this long before its first timed run (the same in the alone check)")
      ->capture_default_str();
  app.add_flag("--no-pytorch", no_pytorch, "skip the PyTorch sides");
  app.add_flag("--pytorch-best,!--no-pytorch-best", pytorch_best,
               "also time PyTorch at its best (channels_last, inference_mode, frozen graph, foreach optimizers)")
      ->capture_default_str();
  app.add_option("--idle", idle,
                 "what the sides not being timed do: stop (SIGSTOP, the clean protocol) or alive (left running, "
                 "blocked on their pipe: the old, contaminated protocol, kept to show the difference)")
      ->capture_default_str()
      ->check(CLI::IsMember({"stop", "alive"}));
  app.add_flag("--alone", alone, "also time each side with no other side's process alive, and compare");
  app.add_option("--alone-tolerance", alone_tolerance, "largest |same-run / alone - 1| counted as agreeing")
      ->capture_default_str();
  app.add_option("--side-limit-seconds", side_limit_seconds,
                 "longest a PyTorch side may take to give one answer (its set-up and warm-up, one timed run, its "
                 "final record); a side over it is stopped and its figures are reported as missing, with the "
                 "reason (PyTorch 1.13's bfloat16 autocast can take minutes to answer on CPUs without "
                 "AVX512_BF16); 0: no limit")
      ->capture_default_str();
  app.add_flag("--profile", profile, "time every kernel and print where the time goes (stderr)");
  app.add_option("--python", python, "interpreter with torch")->capture_default_str();
  app.add_option("--torch-script", script, "the PyTorch side")->capture_default_str();
  app.add_flag("--serve", serve, "internal: run one workload as a child of the driving bench (see the protocol above)");
  app.add_flag("--count-flops", count_flops, "internal, with --serve: print one iteration's convolution FLOPs");
  app.add_option("--iters-per-run", iters_per_run, "internal, with --serve: iterations per timed run");
  CLI11_PARSE(app, argc, argv);
  try {
    if (serve) {
      if (workloads.size() != 1) fail("bench: --serve needs exactly one --workload");
      if (count_flops) return count_conv_flops(workloads[0], threads);
      return serve_framework(workloads[0], threads, run_seconds, warmup_seconds, profile, iters_per_run);
    }
    if (workloads.empty()) workloads = kWorkloads;
    char self[4096];
    const ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0) fail("bench: cannot find its own executable (/proc/self/exe)");
    self[len] = '\0';
    const std::vector<std::string> env = child_environment(threads);
    for (int sig : {SIGINT, SIGTERM, SIGHUP}) signal(sig, on_fatal_signal);

    // the machine, once: before any child exists
    const std::string model = cpu_model();
    const FmaPeak peak = measure_fp32_peak(threads);
    utsname un{};
    uname(&un);
    std::string command;
    for (int i = 0; i < argc; ++i) command += (i ? " " : "") + std::string(argv[i]);
    json machine;
    machine["cpu_model"] = model;
    machine["cpus_online"] = sysconf(_SC_NPROCESSORS_ONLN);
    machine["fp32_peak_gflop_s"] = peak.gflop_s;
    machine["fp32_peak_isa"] = peak.isa;
    machine["fp32_peak_threads"] = peak.threads;
    // the bfloat16 peak of the kernel the bf16 GEMM uses here (AMX tiles or vdpbf16ps; none for the
    // portable one), measured the same way: a tile/register-only loop on --threads threads
    const std::string bf16_kernel = cpu::gemm_bf16_kernel_name();
    const double bf16_peak = cpu::measure_bf16_peak_gflops(bf16_kernel.c_str(), threads, 0.5);
    const Bandwidth bw = measure_memory_bandwidth(threads);
    machine["memory_copy_gb_s"] = bw.copy_gb_s;
    machine["memory_triad_gb_s"] = bw.triad_gb_s;
    machine["bf16_kernel"] = bf16_kernel;
    if (bf16_peak > 0) machine["bf16_peak_gflop_s"] = bf16_peak;
    machine["kernel"] = std::string(un.sysname) + " " + un.release;
    machine["host"] = un.nodename;
    machine["date_utc"] = utc_now();
    machine["command"] = command;
    machine["threads"] = threads;
    machine["load_average"] = load_average();
    std::printf("%s\n", json{{"machine", machine}}.dump().c_str());
    std::fflush(stdout);
    std::fprintf(stderr, "bench: %s, %ld CPUs online; FP32 FMA peak %.1f GFLOP/s (%s, %d threads, measured); "
                 "bf16 peak %.0f GFLOP/s (%s); memory bandwidth %.1f GB/s copy, %.1f GB/s triad\n", model.c_str(),
                 sysconf(_SC_NPROCESSORS_ONLN), peak.gflop_s, peak.isa.c_str(), threads, bf16_peak,
                 bf16_kernel.c_str(), bw.copy_gb_s, bw.triad_gb_s);
    std::fprintf(stderr, "bench: protocol: the idle sides are %s while one side is timed; blocks of %d run(s) per side; "
                 "%d runs each%s\n", idle == "stop" ? "stopped (SIGSTOP)" : "left alive (--idle alive: NOT clean)",
                 block, runs, alone ? "; then each side alone" : "");

    bool said_torch = false;
    std::vector<std::string> summary;
    for (const auto& w : workloads) {
      const double load_before = load_average();
      const std::vector<std::string> common = {"--workload", w, "--threads", std::to_string(threads), "--run-seconds",
                                               fmt::format("{}", run_seconds), "--warmup-seconds",
                                               fmt::format("{}", warmup_seconds)};
      double conv_gflop_per_iter = 0;
      if (w != "sgemm_1024") {
        std::vector<std::string> a = {self, "--serve", "--count-flops"};
        a.insert(a.end(), common.begin(), common.end());
        Child counter(a, "framework " + w + " (FLOP count)", env);
        conv_gflop_per_iter = counter.receive().at("conv_gflop_per_iter").get<double>();
      }
      std::vector<Side> sides;
      sides.emplace_back("framework", std::vector<std::string>{self, "--serve"});
      if (!no_pytorch) {
        sides.emplace_back("pytorch", std::vector<std::string>{python, script, "--serve", "--config", "default"});
        if (pytorch_best)
          sides.emplace_back("pytorch_best", std::vector<std::string>{python, script, "--serve", "--config", "best"});
      }
      for (auto& s : sides) s.args.insert(s.args.end(), common.begin(), common.end());

      // set-up and warm-up one side at a time; each is stopped once ready
      // (the PyTorch sides under --side-limit-seconds: one over it is dropped from this workload, and said so)
      auto limit_of = [&](const Side& s) { return s.key == "framework" ? 0.0 : side_limit_seconds; };
      auto drop = [&](Side& s, const OverLimit& e) {
        s.missing = e.what();
        s.child.reset();
        std::fprintf(stderr, "bench: %s %s: %s; stopped, its figures are missing\n", s.key.c_str(), w.c_str(),
                     s.missing.c_str());
      };
      for (auto& s : sides) {
        std::vector<std::string> a = s.args;
        if (profile) a.push_back("--profile");
        s.child = std::make_unique<Child>(a, s.key + " " + w, env);
        try {
          s.ready = s.child->receive(limit_of(s));
        } catch (const OverLimit& e) {
          drop(s, e);
          continue;
        }
        s.iters = s.ready.at("iters_per_run").get<int64_t>();
        if (idle == "stop") s.child->stop();
      }
      // timed runs: blocks of `block` runs per side, A B C then C B A, ...; only the timed side runs.
      // The CPU time the stopped sides use meanwhile is measured too (it must be 0: the proof they idle).
      double idle_cpu_s = 0;
      auto idle_cpu = [&](const Side& timed) {
        double c = 0;
        for (const auto& o : sides)
          if (&o != &timed && o.child) c += o.child->cpu_seconds();
        return c;
      };
      for (int round = 0; static_cast<int>(sides[0].t.size()) < runs; ++round) {
        for (size_t k = 0; k < sides.size(); ++k) {
          Side& s = sides[round % 2 == 0 ? k : sides.size() - 1 - k];
          if (!s.has()) continue;
          const double idle0 = idle_cpu(s);
          if (idle == "stop") s.child->resume();
          try {
            for (int b = 0; b < block && static_cast<int>(s.t.size()) < runs; ++b) {
              s.child->send("run");
              s.t.push_back(s.child->receive(limit_of(s)).at("seconds_per_iter").get<double>());
            }
          } catch (const OverLimit& e) {
            drop(s, e);
            continue;
          }
          if (idle == "stop") s.child->stop();
          idle_cpu_s += idle_cpu(s) - idle0;
        }
      }
      for (auto& s : sides) {
        if (!s.has()) continue;
        try {
          s.final = s.child->finish(limit_of(s));  // one at a time: PyTorch's --profile runs more iterations here
        } catch (const OverLimit& e) {
          drop(s, e);
          continue;
        }
        s.child.reset();
      }
      // --alone: each side again, with no other side's process in existence
      if (alone) {
        for (auto& s : sides) {
          if (!s.has()) continue;
          std::vector<std::string> a = s.args;
          a.push_back("--iters-per-run");
          a.push_back(std::to_string(s.iters));
          if (s.ready.contains("config_label")) {
            a.push_back("--candidate");
            a.push_back(s.ready["config_label"].get<std::string>());
          }
          Child c(a, s.key + " " + w + " (alone)", env);
          try {
            c.receive(limit_of(s));
            for (int r = 0; r < runs; ++r) {
              c.send("run");
              s.alone_t.push_back(c.receive(limit_of(s)).at("seconds_per_iter").get<double>());
            }
            c.finish(limit_of(s));
          } catch (const OverLimit& e) {
            s.alone_missing = e.what();
            std::fprintf(stderr, "bench: %s %s (alone): %s; stopped\n", s.key.c_str(), w.c_str(),
                         s.alone_missing.c_str());
          }
        }
      }

      const json& f = sides[0].final;
      const double work = f.at("work_per_iter").get<double>();
      auto value = [&](const std::vector<double>& t) { return work / median(t); };
      json out;
      out["workload"] = w;
      out["unit"] = f["unit"];
      for (const auto& s : sides) out[s.key] = s.has() ? json(value(s.t)) : json(nullptr);
      const bool has_default = sides.size() > 1 && sides[1].has(), has_best = sides.size() > 2 && sides[2].has();
      json missing = json::object();
      for (const auto& s : sides)
        if (!s.has()) missing[s.key] = s.missing;
      if (!missing.empty()) out["missing_sides"] = missing;  // why a side has no figures
      if (has_default) {
        out["ratio_default"] = median(sides[1].t) / median(sides[0].t);
        out["ratio"] = out["ratio_default"];
      }
      if (has_best) {
        out["ratio_best"] = median(sides[2].t) / median(sides[0].t);
        out["pytorch_best_config"] = sides[2].ready["config_label"];
        out["pytorch_best_candidates_ms_per_iter"] = sides[2].ready["candidates_ms_per_iter"];
      }
      if (has_default) {
        std::vector<double> paired;
        for (int r = 0; r < runs; ++r)
          paired.push_back(sides[1].t[static_cast<size_t>(r)] / sides[0].t[static_cast<size_t>(r)]);
        out["paired_ratio_median"] = median(paired);  // of the rounds' ratios
      }
      out["threads"] = threads;
      out["batch"] = f["batch"];
      out["runs"] = runs;
      out["block"] = block;
      out["protocol"] = idle == "stop" ? "idle sides stopped (SIGSTOP) while one side is timed"
                                       : "idle sides alive (not stopped) while one side is timed: contaminated";
      out["idle_sides_cpu_seconds"] = idle_cpu_s;  // used by the stopped sides during the timed blocks
      json iters = json::object(), raw = json::object();
      for (const auto& s : sides) {
        if (!s.has()) continue;
        iters[s.key] = s.iters;
        raw[s.key] = s.t;
        out[s.key + "_ms_per_iter"] = median(s.t) * 1e3;
      }
      out["iters_per_run"] = iters;
      out["run_seconds_per_iter"] = raw;
      out["peak_rss_mb"] = f["peak_rss_mb"];
      out["rss_growth_mb"] = f["rss_growth_mb"];
      if (conv_gflop_per_iter > 0) {
        out["conv_gflop_per_iter"] = conv_gflop_per_iter;
        out["conv_gflop_s"] = conv_gflop_per_iter / median(sides[0].t);
        if (f.contains("conv_only_gflop_s")) out["conv_only_gflop_s"] = f["conv_only_gflop_s"];
      }
      if (has_best) out["pytorch_best_peak_rss_mb"] = sides[2].final["peak_rss_mb"];
      if (has_default || has_best) {  // PyTorch's own facts, from the default side where it has figures
        const json& p = sides[has_default ? 1 : 2].final;
        if (has_default) {
          out["pytorch_peak_rss_mb"] = p["peak_rss_mb"];
          out["pytorch_rss_growth_mb"] = p["rss_growth_mb"];
        }
        if (has_default && p.contains("conv_gflop_per_iter")) {
          out["pytorch_conv_gflop_per_iter"] = p["conv_gflop_per_iter"];
          out["pytorch_conv_gflop_s"] = p["conv_gflop_per_iter"].get<double>() / median(sides[1].t);
        }
        out["pytorch_blas"] = p["blas"];
        out["pytorch_threading"] = p["threading"];
        out["torch"] = p["torch"];
        if (!said_torch) {
          said_torch = true;
          const json& b = p["blas"];
          const json& th = p["threading"];
          std::string blas = b.value("name", std::string("?"));
          if (b.contains("openblas_config"))
            blas += fmt::format(" ({}; core {}; {} threads, {})", b["openblas_config"].get<std::string>(),
                                b["openblas_core"].get<std::string>(), b["openblas_threads"].get<int>(),
                                b["openblas_parallel"].get<std::string>());
          std::fprintf(stderr, "bench: PyTorch %s: BLAS %s; ATen parallel backend %s, %d threads, %d inter-op; %s\n",
                       p["torch"].get<std::string>().c_str(), blas.c_str(),
                       th.value("backend", std::string("?")).c_str(), th.value("torch_threads", 0),
                       th.value("interop_threads", 0),
                       th.contains("libraries") ? fmt::format("{}", fmt::join(th["libraries"].get<std::vector<std::string>>(), ", ")).c_str()
                                                : "");
        }
      }
      out["cpu_model"] = model;
      out["cpu_caches"] = cpu::cpu_caches().str();
      out["sgemm_blocks"] = cpu::sgemm_blocks().str();
      out["fp32_peak_gflop_s"] = peak.gflop_s;
      out["load_average"] = {load_before, load_average()};  // 1-minute, before and after: other jobs
      if (f.contains("profile_ms_per_iter")) out["framework_profile_ms_per_iter"] = f["profile_ms_per_iter"];
      for (const char* k : {"profile_conv_layers", "profile_conv_algorithms", "profile_gb_s"})
        if (f.contains(k)) out[std::string("framework_") + k] = f[k];
      std::string alone_note;
      if (alone) {
        json a = json::object();
        bool ok = true;
        for (const auto& s : sides) {
          if (!s.has()) continue;
          if (!s.alone_missing.empty()) {
            a[s.key] = {{"missing", s.alone_missing}};
            ok = false;
            alone_note += fmt::format("{}{} missing", alone_note.empty() ? "" : ", ", s.key);
            continue;
          }
          const double same = value(s.t), by_itself = value(s.alone_t), rel = same / by_itself - 1.0;
          a[s.key] = {{"same_run", same}, {"alone", by_itself}, {"rel_diff", rel}, {"alone_runs_seconds_per_iter", s.alone_t}};
          const bool side_ok = std::fabs(rel) <= alone_tolerance;
          ok = ok && side_ok;
          alone_note += fmt::format("{}{} {}{:+.1f}%", alone_note.empty() ? "" : ", ", s.key, side_ok ? "" : "OFF ", 100 * rel);
        }
        out["alone"] = a;
        out["alone_tolerance"] = alone_tolerance;
        out["alone_ok"] = ok;
        alone_note = fmt::format("; same run vs alone: {}{}", alone_note,
                                 ok ? " (all within tolerance)" : fmt::format(" (more than {:.0f}% off: NOT clean)", 100 * alone_tolerance));
      }
      std::printf("%s\n", out.dump().c_str());
      std::fflush(stdout);
      std::string line = fmt::format("{}: framework {} {}", w, fmt_value(value(sides[0].t)), f["unit"].get<std::string>());
      if (has_default)
        line += fmt::format(", PyTorch {} (ratio {:.2f})", fmt_value(value(sides[1].t)), out["ratio_default"].get<double>());
      else if (sides.size() > 1)
        line += ", PyTorch missing (over --side-limit-seconds)";
      if (has_best)
        line += fmt::format(", PyTorch best {} (ratio {:.2f}; {})", fmt_value(value(sides[2].t)),
                            out["ratio_best"].get<double>(), out["pytorch_best_config"].get<std::string>());
      else if (sides.size() > 2)
        line += ", PyTorch best missing (over --side-limit-seconds)";
      line += fmt::format("; idle sides used {:.2f} s CPU while another was timed", idle_cpu_s) + alone_note;
      std::fprintf(stderr, "bench: %s\n", line.c_str());
      summary.push_back(line);
    }
    if (summary.size() > 1) {
      std::fprintf(stderr, "\nbench: summary (ratio = framework / PyTorch, above 1: the framework is faster)\n");
      for (const auto& l : summary) std::fprintf(stderr, "  %s\n", l.c_str());
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
