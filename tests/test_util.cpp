#include "test_util.h"

#include <omp.h>

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <mutex>

#include "models/io/safetensors.h"
#include "tensor/ops.h"

extern char** environ;

namespace dl::test {

namespace {
std::atomic<int> g_skipped{0};
}

void mark_skipped(const std::string& reason) {
  ++g_skipped;
  MESSAGE("SKIPPED: " << reason);
  std::printf("SKIPPED: %s\n", reason.c_str());
  std::fflush(stdout);
}

int skipped_count() { return g_skipped.load(); }

int spawn_program(const std::vector<std::string>& args, const std::string& log, bool append) {
  REQUIRE(!args.empty());
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC), 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = 0;
  int rc = posix_spawn(&pid, args[0].c_str(), &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  REQUIRE_MESSAGE(rc == 0, "could not start " << args[0]);
  return pid;
}

int wait_program(int pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

ProgramResult run_program(const std::vector<std::string>& args, const std::string& log) {
  const int code = wait_program(spawn_program(args, log));
  std::ifstream f(log);
  return {code, std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>())};
}

std::string source_dir() {
  const char* d = std::getenv("DL_SOURCE_DIR");
  return d ? d : DL_TEST_SOURCE_DIR;
}

std::string bin_dir() {
  const char* d = std::getenv("DL_BIN_DIR");
  return d ? d : DL_TEST_BIN_DIR;
}

std::string fixtures_dir() {
  const char* d = std::getenv("DL_FIXTURES_DIR");
  return d ? d : "";
}

std::optional<Tensor> load_fixture(const std::string& group, const std::string& name) {
  static std::mutex mu;
  static std::map<std::string, io::RawStateDict> cache;
  std::lock_guard<std::mutex> lock(mu);
  std::string path = fixtures_dir() + "/" + group + ".safetensors";
  auto it = cache.find(path);
  if (it == cache.end()) {
    if (fixtures_dir().empty() || !std::filesystem::exists(path)) return std::nullopt;
    it = cache.emplace(path, io::load_safetensors(path)).first;
  }
  for (const auto& [key, raw] : it->second) {
    if (key != name) continue;
    switch (raw.dtype) {
      case io::RawDType::F64: return from_vector<double>(raw.to_f64(), raw.shape);
      case io::RawDType::I64: return from_vector<int64_t>(raw.to_i64(), raw.shape);
      case io::RawDType::U8: {
        auto v = raw.to_i64();
        return ops::to_dtype(from_vector<int64_t>(v, raw.shape), DType::UInt8);
      }
      default: return from_vector<float>(raw.to_f32(), raw.shape);
    }
  }
  return std::nullopt;
}

Tensor fixture(const std::string& group, const std::string& name) {
  auto t = load_fixture(group, name);
  if (!t) {
    std::string msg = fmt::format("fixture {}/{} is missing (DL_FIXTURES_DIR='{}'); run the "
                                  "make_torch_fixtures test first (ctest does that)", group, name, fixtures_dir());
    FAIL(msg);
  }
  return *t;
}

Tensor random_input(const Shape& shape, uint64_t seed, double lo, double hi, bool requires_grad) {
  Generator g(seed);
  Tensor t = ops::binary_scalar(ops::BinaryOp::Add,
                                ops::binary_scalar(ops::BinaryOp::Mul, rand(shape, DType::Float64, &g), hi - lo), lo);
  if (requires_grad) t.requires_grad_();
  return t;
}

Close close(const Tensor& actual, const Tensor& expected, double rtol, double atol) {
  if (actual.sizes() != expected.sizes())
    return {false, fmt::format("shape {} vs expected {}", shape_str(actual.sizes()), shape_str(expected.sizes()))};
  auto a = actual.to_vector<double>();
  auto b = expected.to_vector<double>();
  double worst = -1;
  size_t wi = 0;
  bool ok = true;
  for (size_t i = 0; i < a.size(); ++i) {
    double d = std::abs(a[i] - b[i]);
    if (std::isnan(a[i]) != std::isnan(b[i])) d = INFINITY;
    double excess = d - (atol + rtol * std::abs(b[i]));
    if (excess > 0) ok = false;
    if (excess > worst || worst < 0) {
      worst = excess;
      wi = i;
    }
  }
  if (a.empty()) return {true, "empty"};
  return {ok, fmt::format("worst element {}: actual {:.9g}, expected {:.9g}, |diff| {:.3g}, rel {:.3g} "
                          "(rtol {:g}, atol {:g})",
                          wi, a[wi], b[wi], std::abs(a[wi] - b[wi]),
                          std::abs(a[wi] - b[wi]) / std::max(std::abs(b[wi]), 1e-30), rtol, atol)};
}

ScopedEnv::ScopedEnv(const char* name, const char* value) : name_(name) {
  if (const char* prev = std::getenv(name)) had_ = true, prev_ = prev;
  if (value != nullptr)
    setenv(name, value, 1);
  else
    unsetenv(name);
}
ScopedEnv::~ScopedEnv() {
  if (had_)
    setenv(name_.c_str(), prev_.c_str(), 1);
  else
    unsetenv(name_.c_str());
}

ScopedThreads::ScopedThreads(int n) : prev_(omp_get_max_threads()) { omp_set_num_threads(n); }
ScopedThreads::~ScopedThreads() { omp_set_num_threads(prev_); }

}  // namespace dl::test
