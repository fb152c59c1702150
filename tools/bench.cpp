// bench: the framework against PyTorch on the same machine, same workloads, same thread count.
//
//   bench [--workload W]... [--threads 2] [--runs 5] [--run-seconds 0.5] [--no-pytorch] [--profile]
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
//
// Every workload runs in processes of its own, so each side's peak resident memory is its own: bench
// spawns itself (`--serve`) and `python3 tools/bench_torch.py --serve --workload W --threads N ...`
// (the identical workload in PyTorch), lets each set up and warm up in turn, then alternates their
// timed runs (see the protocol below), and prints one JSON object per workload:
//   {"workload", "framework", "pytorch", "ratio" (framework / pytorch, from the medians), "unit",
//    "peak_rss_mb" (framework), "paired_ratio_median" (median over the pairs of back-to-back runs),
//    "threads", "batch", "runs", "framework_ms_per_iter", "pytorch_ms_per_iter", "pytorch_peak_rss_mb",
//    "rss_growth_mb" / "pytorch_rss_growth_mb" (peak minus the resident size before the workload was built),
//    "conv_gflop_per_iter" (counted from the convolutions' shapes), "conv_gflop_s" / "pytorch_conv_gflop_s"
//    (that count over the whole iteration's time), "conv_only_gflop_s" (framework: over the time spent in
//    the convolution kernels alone), "pytorch_blas", "torch"}
// --profile also prints, to stderr, where the framework's time goes per kernel (every kernel of the CPU
// dispatch table is wrapped by a timer; "outside kernels" is the rest: autograd, allocation, optimizer,
// GEMMs of linear layers run through bmm are counted as bmm) and PyTorch's own profile of the same
// workload (torch.autograd.profiler, self CPU time per op).
#include <omp.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "autograd/functional.h"
#include "autograd/node.h"
#include "models/resnet.h"
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

const std::vector<std::string> kWorkloads = {"sgemm_1024", "scratch_train_b64", "resnet18_fwd_224_b32",
                                             "resnet18_fwd_64_b128", "resnet18_train_64_b64"};

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double median(std::vector<double> v) {
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

// ---- kernel profile: every entry of the CPU dispatch table wrapped by a timer --------------------

struct KernelStat {
  double seconds = 0;
  int64_t calls = 0;
  double flops = 0;  // convolutions only, counted from shapes
};
std::map<std::string, KernelStat>& kernel_stats() {
  static std::map<std::string, KernelStat> s;
  return s;
}
bool g_in_kernel = false;  // a kernel that calls another through the table is timed once (outermost)

double conv_flops(const Tensor& out, const Tensor& w) {
  // 2 * N * O * Ho * Wo * (C/g) * kh * kw: one multiply-add per weight tap per output element
  const auto& ws = w.sizes();
  return 2.0 * static_cast<double>(out.numel()) * static_cast<double>(ws[1] * ws[2] * ws[3]);
}

template <auto Field, typename F = std::remove_cvref_t<decltype(std::declval<KernelTable>().*Field)>>
struct Timed;
template <auto Field, typename... A>
struct Timed<Field, void (*)(A...)> {
  static inline void (*original)(A...) = nullptr;
  static inline KernelStat* stat = nullptr;
  static inline double (*flops)(A...) = nullptr;
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
    stat->seconds += now_s() - t0;
    stat->calls++;
    if (flops) stat->flops += flops(a...);
    g_in_kernel = false;
  }
  static void install(KernelTable& t, const char* name, double (*f)(A...) = nullptr) {
    original = t.*Field;
    if (!original) return;
    stat = &kernel_stats()[name];
    flops = f;
    t.*Field = &call;
  }
};

void install_kernel_timers() {
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
  DL_TIME(bmm);
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
      [](const Tensor& out, const Tensor&, const Tensor& w, const Tensor&, const ops::Conv2dParams&) {
        return conv_flops(out, w);
      });
  Timed<&KernelTable::conv2d_backward_input>::install(
      t, "conv2d_backward_input",
      [](const Tensor&, const Tensor& gout, const Tensor& w, const ops::Conv2dParams&) { return conv_flops(gout, w); });
  Timed<&KernelTable::conv2d_backward_weight>::install(
      t, "conv2d_backward_weight",
      [](const Tensor& gw, const Tensor& gout, const Tensor&, const ops::Conv2dParams&) { return conv_flops(gout, gw); });
}

void reset_kernel_stats() {
  for (auto& [name, s] : kernel_stats()) s = KernelStat{};
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

// Holds whatever a workload's iteration needs alive.
struct State {
  std::shared_ptr<nn::Module> model;
  std::unique_ptr<optim::Optimizer> opt;
  Tensor x, y, a, b;
};

Workload make_workload(const std::string& name, State& s) {
  manual_seed(0);
  if (name == "sgemm_1024") {
    const int64_t n = 1024;
    s.a = randn({n, n});
    s.b = randn({n, n});
    return {"GFLOP/s", 0, 2.0 * n * n * n * 1e-9, [&s] { ops::matmul(s.a, s.b); }};
  }
  if (name == "scratch_train_b64") {
    auto m = std::make_shared<models::ScratchCnn>();
    m->train();
    s.opt = std::make_unique<optim::Adam>(m->parameters(), optim::AdamOptions{});
    s.model = m;
    s.x = randn({64, 1, 28, 28});
    s.y = random_targets(64, 10);
    return {"images/s", 64, 64.0, [&s, m] {
              s.opt->zero_grad();
              Tensor loss = cross_entropy((*m)(s.x), s.y);
              loss.backward();
              s.opt->step();
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
    return {"images/s", 64, 64.0, [&s, m] {
              s.opt->zero_grad();
              Tensor loss = cross_entropy((*m)(s.x), s.y);
              loss.backward();
              s.opt->step();
            }};
  }
  fail("unknown workload '{}'; expected one of: {}", name, fmt::join(kWorkloads, ", "));
}

// ---- one side of a workload, driven over a pipe --------------------------------------------------
//
// Both sides run as children of the driving bench process and follow one protocol on stdin/stdout
// (tools/bench_torch.py speaks it too), so their timed runs can alternate: F, P, P, F, F, P, ...
// On this shared 2-core machine other jobs come and go; alternating puts both sides under the same
// conditions, which back-to-back blocks of runs do not.
//   child: builds the workload, runs a warm-up iteration and a counted one, prints
//          {"ready": true, "iters_per_run": k}
//   "run\n"  -> runs k iterations, prints {"seconds_per_iter": t}
//   "done\n" -> prints its final record (memory, FLOPs, profile) and exits

int serve_framework(const std::string& name, int threads, double run_seconds, bool profile) {
  omp_set_num_threads(threads);
  install_kernel_timers();
  const double rss0 = current_rss_mb();
  State s;
  Workload w = make_workload(name, s);
  w.iteration();  // lazy state (optimizer buffers, scratch buffers, the allocator's cache)
  reset_kernel_stats();
  double t0 = now_s();
  w.iteration();
  const double t_iter = now_s() - t0;
  double conv_flops_iter = 0;
  for (const auto& [k, st] : kernel_stats()) conv_flops_iter += st.flops;
  reset_kernel_stats();
  const int64_t iters = std::max<int64_t>(1, std::llround(run_seconds / std::max(t_iter, 1e-6)));
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
  double total_s = 0;
  for (double t : per_iter) total_s += t * static_cast<double>(iters);
  double conv_seconds = 0, kernel_seconds = 0;
  for (const auto& [k, st] : kernel_stats()) {
    kernel_seconds += st.seconds;
    if (k.rfind("conv2d", 0) == 0 && k != "conv2d_backward_bias") conv_seconds += st.seconds;
  }
  json j;
  j["unit"] = w.unit;
  j["work_per_iter"] = w.work_per_iter;
  j["batch"] = w.batch;
  j["peak_rss_mb"] = peak_rss_mb();
  j["rss_growth_mb"] = peak_rss_mb() - rss0;
  j["conv_gflop_per_iter"] = conv_flops_iter * 1e-9;
  if (conv_flops_iter > 0 && conv_seconds > 0)
    j["conv_only_gflop_s"] = conv_flops_iter * 1e-9 * static_cast<double>(timed_iters) / conv_seconds;
  if (profile && timed_iters > 0) {
    // milliseconds per iteration in each kernel (means over the timed iterations), largest first
    const double total_ms = total_s * 1e3 / static_cast<double>(timed_iters);
    std::vector<std::pair<std::string, KernelStat>> rows(kernel_stats().begin(), kernel_stats().end());
    std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.second.seconds > b.second.seconds; });
    std::fprintf(stderr, "\n[profile] %s, framework: %.2f ms per iteration (mean of %ld timed iterations)\n",
                 name.c_str(), total_ms, static_cast<long>(timed_iters));
    std::fprintf(stderr, "  %-30s %10s %7s %8s %10s\n", "kernel", "ms/iter", "share", "calls", "GFLOP/s");
    json prof = json::object();
    for (const auto& [k, st] : rows) {
      if (st.calls == 0) continue;
      const double ms = st.seconds * 1e3 / static_cast<double>(timed_iters);
      std::fprintf(stderr, "  %-30s %10.2f %6.1f%% %8.1f", k.c_str(), ms, 100.0 * ms / total_ms,
                   static_cast<double>(st.calls) / static_cast<double>(timed_iters));
      if (st.flops > 0) std::fprintf(stderr, " %10.1f", st.flops * 1e-9 / st.seconds);
      std::fprintf(stderr, "\n");
      prof[k] = ms;
    }
    const double outside = total_ms - kernel_seconds * 1e3 / static_cast<double>(timed_iters);
    std::fprintf(stderr, "  %-30s %10.2f %6.1f%%  (autograd engine, allocation, optimizer update, views)\n",
                 "outside kernels", outside, 100.0 * outside / total_ms);
    prof["outside_kernels"] = outside;
    j["profile_ms_per_iter"] = prof;
  }
  std::printf("%s\n", j.dump().c_str());
  std::fflush(stdout);
  return 0;
}

// A child process with a pipe to its stdin and one from its stdout; stderr passes through.
class Child {
 public:
  Child(const std::vector<std::string>& args, std::string who) : who_(std::move(who)) {
    int in[2], out[2];
    if (pipe(in) != 0 || pipe(out) != 0) fail("bench: pipe() failed: {}", std::strerror(errno));
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addclose(&fa, in[1]);
    posix_spawn_file_actions_addclose(&fa, out[0]);
    posix_spawn_file_actions_adddup2(&fa, in[0], STDIN_FILENO);
    posix_spawn_file_actions_adddup2(&fa, out[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&fa, in[0]);
    posix_spawn_file_actions_addclose(&fa, out[1]);
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    const int rc = posix_spawn(&pid_, argv[0], &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    close(in[0]);
    close(out[1]);
    if (rc != 0) {
      close(in[1]);
      close(out[0]);
      fail("bench: could not start '{}': {}", args[0], std::strerror(rc));
    }
    to_ = fdopen(in[1], "w");
    from_ = fdopen(out[0], "r");
  }
  ~Child() {
    if (to_) std::fclose(to_);
    if (from_) std::fclose(from_);
    if (pid_ > 0) {
      int status = 0;
      while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
      }
    }
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  void send(const char* line) {
    std::fputs(line, to_);
    std::fputc('\n', to_);
    std::fflush(to_);
  }
  // The next line that is a JSON object (other output is passed on to stderr).
  json receive() {
    std::string out;
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

 private:
  std::string who_;
  pid_t pid_ = -1;
  FILE* to_ = nullptr;
  FILE* from_ = nullptr;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench: framework vs PyTorch, same workloads, same threads"};
  std::vector<std::string> workloads;
  int threads = 2, runs = 5;
  double run_seconds = 0.5;
  bool no_pytorch = false, serve = false, profile = false;
  std::string python = "/usr/bin/python3", script = std::string(DL_SOURCE_DIR) + "/tools/bench_torch.py";
  app.add_option("--workload", workloads, "workload(s) to run (default: all)")->check(CLI::IsMember(kWorkloads));
  app.add_option("--threads", threads, "threads on both sides")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--runs", runs, "timed runs per side (the median is reported)")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--run-seconds", run_seconds, "target length of one timed run")->capture_default_str();
  app.add_flag("--no-pytorch", no_pytorch, "skip the PyTorch side");
  app.add_flag("--profile", profile, "print where the time goes, per kernel (stderr)");
  app.add_option("--python", python, "interpreter with torch")->capture_default_str();
  app.add_option("--torch-script", script, "the PyTorch side")->capture_default_str();
  app.add_flag("--serve", serve, "internal: run one workload as a child of the driving bench (see the protocol above)");
  CLI11_PARSE(app, argc, argv);
  try {
    if (serve) {
      if (workloads.size() != 1) fail("bench: --serve needs exactly one --workload");
      return serve_framework(workloads[0], threads, run_seconds, profile);
    }
    if (workloads.empty()) workloads = kWorkloads;
    char self[4096];
    const ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0) fail("bench: cannot find its own executable (/proc/self/exe)");
    self[len] = '\0';
    for (const auto& w : workloads) {
      const double load_before = load_average();
      const std::vector<std::string> common = {"--workload", w, "--threads", std::to_string(threads), "--run-seconds",
                                               fmt::format("{}", run_seconds)};
      std::vector<std::string> fw_args = {self, "--serve"}, py_args = {python, script, "--serve"};
      fw_args.insert(fw_args.end(), common.begin(), common.end());
      py_args.insert(py_args.end(), common.begin(), common.end());
      if (profile) {
        fw_args.push_back("--profile");
        py_args.push_back("--profile");
      }
      // start one side at a time (set-up and warm-up never overlap), then alternate the timed runs
      std::vector<std::unique_ptr<Child>> sides;
      sides.push_back(std::make_unique<Child>(fw_args, "framework " + w));
      sides[0]->receive();
      if (!no_pytorch) {
        sides.push_back(std::make_unique<Child>(py_args, "pytorch " + w));
        sides[1]->receive();
      }
      std::vector<std::vector<double>> t(sides.size());
      for (int r = 0; r < runs; ++r) {
        for (size_t k = 0; k < sides.size(); ++k) {
          const size_t i = (r % 2 == 0) ? k : sides.size() - 1 - k;
          sides[i]->send("run");
          t[i].push_back(sides[i]->receive().at("seconds_per_iter").get<double>());
        }
      }
      std::vector<json> final;
      for (auto& c : sides) {
        c->send("done");
        final.push_back(c->receive());
      }
      sides.clear();  // waits for the children
      const json& f = final[0];
      const double work = f.at("work_per_iter").get<double>();
      const double fw_s = median(t[0]);
      json out;
      out["workload"] = w;
      out["framework"] = work / fw_s;
      if (!no_pytorch) {
        const double py_s = median(t[1]);
        out["pytorch"] = work / py_s;
        out["ratio"] = py_s / fw_s;
        std::vector<double> paired;
        for (int r = 0; r < runs; ++r) paired.push_back(t[1][static_cast<size_t>(r)] / t[0][static_cast<size_t>(r)]);
        out["paired_ratio_median"] = median(paired);  // of the runs' ratios, each pair run back to back
      }
      out["unit"] = f["unit"];
      out["peak_rss_mb"] = f["peak_rss_mb"];
      out["threads"] = threads;
      out["batch"] = f["batch"];
      out["runs"] = runs;
      out["load_average"] = {load_before, load_average()};  // 1-minute, before and after: other jobs
      out["framework_ms_per_iter"] = fw_s * 1e3;
      out["rss_growth_mb"] = f["rss_growth_mb"];
      if (f["conv_gflop_per_iter"].get<double>() > 0) {
        out["conv_gflop_per_iter"] = f["conv_gflop_per_iter"];
        out["conv_gflop_s"] = f["conv_gflop_per_iter"].get<double>() / fw_s;
        if (f.contains("conv_only_gflop_s")) out["conv_only_gflop_s"] = f["conv_only_gflop_s"];
      }
      if (!no_pytorch) {
        const json& p = final[1];
        out["pytorch_ms_per_iter"] = median(t[1]) * 1e3;
        out["pytorch_peak_rss_mb"] = p["peak_rss_mb"];
        out["pytorch_rss_growth_mb"] = p["rss_growth_mb"];
        if (p.contains("conv_gflop_per_iter")) {
          out["pytorch_conv_gflop_per_iter"] = p["conv_gflop_per_iter"];
          out["pytorch_conv_gflop_s"] = p["conv_gflop_per_iter"].get<double>() / median(t[1]);
        }
        out["pytorch_blas"] = p["blas"];
        out["torch"] = p["torch"];
      }
      if (f.contains("profile_ms_per_iter")) out["framework_profile_ms_per_iter"] = f["profile_ms_per_iter"];
      std::printf("%s\n", out.dump().c_str());
      std::fflush(stdout);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
