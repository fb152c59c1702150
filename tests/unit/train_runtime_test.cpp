// The experiments' training runtime: non-finite losses, gradient clipping, output-folder checks,
// device errors, resume refusing a checkpoint written with other options, --precision and loss scaling.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>

#include "autograd/node.h"
#include "cuda/cuda.h"
#include "experiments/lib/study.h"
#include "experiments/lib/train.h"
#include "nn/layers.h"
#include "nn/optim/sgd.h"
#include "tensor/cpu/convert16.h"
#include "tensor/cpu/cpu_info.h"
#include "tensor/cpu/gemm_bf16.h"
#include "test_util.h"

using namespace dl;
namespace fs = std::filesystem;

namespace {
struct Fixture {
  fs::path dir = fs::temp_directory_path() / "dl_train_runtime_test";
  Fixture() {
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  ~Fixture() { fs::remove_all(dir); }
};

// 8 samples of 4 features, 3 classes; sample 5 (in batch 2 of size 4) optionally holds a NaN.
struct Data {
  Tensor x, y;
  std::vector<int64_t> idx{0, 1, 2, 3, 4, 5, 6, 7};
  explicit Data(bool with_nan) {
    manual_seed(0);
    x = randn({8, 4});
    if (with_nan) x.data_ptr<float>()[5 * 4 + 1] = NAN;
    y = from_vector<int64_t>({0, 1, 2, 0, 1, 2, 0, 1}, {8});
  }
};
}  // namespace

TEST_CASE("a non-finite loss stops training naming epoch and batch, or is skipped when asked") {
  Fixture f;
  Data d(true);
  data::LoaderOptions lo{.batch_size = 4, .shuffle = false};
  data::DataLoader train(d.x, d.y, d.idx, nullptr, lo), val(d.x, d.y, d.idx, nullptr, lo);
  auto model = std::make_shared<nn::Linear>(4, 3);
  optim::SGD opt(model->parameters(), {.lr = 0.1});
  exp::Logger log(f.dir / "log.txt");
  auto fwd = [&](const Tensor& x) { return (*model)(x); };
  exp::FitOptions fo{.epochs = 1};
  CHECK_THROWS_WITH_AS(exp::fit(*model, fwd, opt, nullptr, train, val, f.dir / "a", fo, log),
                       doctest::Contains("at epoch 1, batch 2 of 2"), dl::Error);
  fo.skip_nonfinite = true;
  // validation sees the NaN sample too: it must not stop the run, only count as a wrong answer
  auto r = exp::fit(*model, fwd, opt, nullptr, train, val, f.dir / "b", fo, log);
  CHECK(r.history.size() == 1);
  CHECK(std::isfinite(r.history[0].train_loss));
}

TEST_CASE("gradient clipping by global norm") {
  auto a = ones({2}, DType::Float64).requires_grad_();
  auto b = ones({1}, DType::Float64).requires_grad_();
  (a * 3.0 + b * 4.0).sum().backward();  // grads (3, 3) and (8) (b is broadcast twice): norm sqrt(82)
  double n = exp::clip_grad_norm({a, b}, 1.0);
  CHECK(n == doctest::Approx(std::sqrt(82.0)));
  double after = std::sqrt(a.grad().pow(2.0).sum().item<double>() + b.grad().pow(2.0).sum().item<double>());
  CHECK(after == doctest::Approx(1.0).epsilon(1e-5));
  CHECK(exp::clip_grad_norm({a, b}, 10.0) == doctest::Approx(after));  // below the limit: unchanged
}

TEST_CASE("an unwritable output folder and an unusable device fail before training") {
  CHECK_THROWS_WITH_AS(exp::check_writable("/proc/dl-cannot-write-here"), doctest::Contains("/proc/dl-cannot-write-here"),
                       dl::Error);
  if (!cuda::is_available()) {
    CHECK_THROWS_WITH_AS(exp::parse_device("cuda"), doctest::Contains("--device cuda"), dl::Error);
  }
  CHECK_THROWS_WITH_AS(exp::parse_device("gpu"), doctest::Contains("unknown device"), dl::Error);
}

TEST_CASE("resume refuses a checkpoint written with other options") {
  Fixture f;
  Data d(false);
  data::LoaderOptions lo{.batch_size = 4, .shuffle = true, .seed = 1};
  data::DataLoader train(d.x, d.y, d.idx, nullptr, lo), val(d.x, d.y, d.idx, nullptr, lo);
  auto model = std::make_shared<nn::Linear>(4, 3);
  optim::SGD opt(model->parameters(), {.lr = 0.1});
  exp::Logger log(f.dir / "log.txt");
  auto fwd = [&](const Tensor& x) { return (*model)(x); };
  exp::FitOptions fo{.epochs = 1, .config = {{"lr", 0.1}}};
  exp::fit(*model, fwd, opt, nullptr, train, val, f.dir / "r", fo, log);
  fo.resume = true;
  fo.epochs = 2;
  fo.config = {{"lr", 0.5}};
  CHECK_THROWS_WITH_AS(exp::fit(*model, fwd, opt, nullptr, train, val, f.dir / "r", fo, log),
                       doctest::Contains("lr: checkpoint 0.1 vs now 0.5"), dl::Error);
  fo.config = {{"lr", 0.1}};
  auto r = exp::fit(*model, fwd, opt, nullptr, train, val, f.dir / "r", fo, log);
  CHECK(r.history.size() == 2);
}

namespace {
// A small fit with loss scaling (or not), `epochs` epochs into `dir`, resuming when asked.
struct ScaledRun {
  Data d{false};
  data::LoaderOptions lo{.batch_size = 2, .shuffle = true, .seed = 3};
  data::DataLoader train{d.x, d.y, d.idx, nullptr, lo}, val{d.x, d.y, d.idx, nullptr, lo};
  std::shared_ptr<nn::Linear> model;
  std::unique_ptr<optim::SGD> opt;
  ScaledRun() {
    manual_seed(7);
    model = std::make_shared<nn::Linear>(4, 3);
    opt = std::make_unique<optim::SGD>(model->parameters(), optim::SGDOptions{.lr = 0.1, .momentum = 0.9});
  }
  exp::FitResult fit(const fs::path& dir, int64_t epochs, std::optional<optim::GradScalerOptions> scaling,
                     bool resume = false, double clip = 0) {
    exp::Logger log(dir.parent_path() / "log.txt");
    auto fwd = [this](const Tensor& x) { return (*model)(x); };
    exp::FitOptions fo{.epochs = epochs, .clip_grad_norm = clip, .resume = resume, .config = {{"lr", 0.1}}};
    fo.loss_scaling = scaling;
    return exp::fit(*model, fwd, *opt, nullptr, train, val, dir, fo, log);
  }
  std::vector<float> weights() const { return model->parameters()[0].to_vector<float>(); }
};
}  // namespace

TEST_CASE("fit with loss scaling: power-of-two scales leave float32 training bit-identical") {
  Fixture f;
  ScaledRun plain, scaled;
  auto a = plain.fit(f.dir / "plain", 3, std::nullopt);
  auto b = scaled.fit(f.dir / "scaled", 3, optim::GradScalerOptions{.init_scale = 1024.0, .growth_interval = 5});
  CHECK(plain.weights() == scaled.weights());
  REQUIRE(a.history.size() == b.history.size());
  for (size_t i = 0; i < a.history.size(); ++i) CHECK(a.history[i].train_loss == b.history[i].train_loss);
  CHECK(b.overflow_steps == 0);
  CHECK(b.loss_scale == 4096.0);  // 12 clean steps: grown at the 5th and the 10th
  CHECK(a.loss_scale == 1.0);
  // with clipping too (unscaled before the clip)
  ScaledRun pc, sc;
  pc.fit(f.dir / "pc", 2, std::nullopt, false, 0.05);
  sc.fit(f.dir / "sc", 2, optim::GradScalerOptions{}, false, 0.05);
  CHECK(pc.weights() == sc.weights());
}

TEST_CASE("fit with loss scaling skips overflowing steps, backs off, and logs them") {
  Fixture f;
  ScaledRun r;
  // 2^140 is beyond float32: the scaled loss and so the gradients are inf/NaN until two backoffs
  // of 2^-8 bring the scale to 2^124
  const auto w0 = r.weights();
  auto res = r.fit(f.dir / "o", 2,
                   optim::GradScalerOptions{.init_scale = std::ldexp(1.0, 140), .backoff_factor = 1.0 / 256});
  CHECK(res.overflow_steps == 2);
  CHECK(res.loss_scale == std::ldexp(1.0, 124));
  CHECK(r.weights() != w0);
  for (const auto& h : res.history) CHECK(std::isfinite(h.train_loss));
  std::ifstream log(f.dir / "log.txt");
  std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  CHECK(text.find("steps skipped (inf/NaN gradients)") != std::string::npos);
}

TEST_CASE("fit with loss scaling resumes exactly: the scaler's state is in the checkpoint") {
  Fixture f;
  // overflows first, then grows every 3 clean steps (2^124 -> 2^127, which may overflow again)
  const optim::GradScalerOptions so{.init_scale = std::ldexp(1.0, 140), .backoff_factor = 1.0 / 256,
                                    .growth_interval = 3};
  ScaledRun whole, part;
  auto a = whole.fit(f.dir / "whole", 3, so);
  part.fit(f.dir / "part", 1, so);
  ScaledRun resumed;  // a fresh process: model, optimizer and scaler from last.ckpt
  auto b = resumed.fit(f.dir / "part", 3, so, true);
  CHECK(whole.weights() == resumed.weights());
  CHECK(a.loss_scale == b.loss_scale);
  REQUIRE(a.history.size() == b.history.size());
  for (size_t i = 0; i < a.history.size(); ++i) CHECK(a.history[i].train_loss == b.history[i].train_loss);
}

TEST_CASE("--precision fp16 is refused on the CPU before any work, and only fp16 gets loss scaling") {
  Fixture f;
  exp::CommonOptions o;
  o.device = "cpu";
  o.out = (f.dir / "fp16").string();
  o.precision = "fp16";
  CHECK(o.loss_scaling().has_value());
  CHECK(o.loss_scaling()->init_scale == 65536.0);
  CHECK_THROWS_WITH_AS(exp::prepare_run("scratch_cnn", o), doctest::Contains("runs on CUDA only"), dl::Error);
  CHECK_FALSE(fs::exists(f.dir / "fp16"));
  o.precision = "bf16";
  CHECK_FALSE(o.loss_scaling().has_value());
  o.precision = "fp32";
  CHECK_FALSE(o.loss_scaling().has_value());
}

TEST_CASE("--precision bf16 runs the forward under autocast, and the scope ends with it") {
  manual_seed(3);
  auto model = std::make_shared<nn::Linear>(64, 5);
  Tensor x = randn({7, 64});
  exp::CommonOptions o;
  auto plain = [&](const Tensor& in) { return (*model)(in); };
  Tensor y32 = o.with_precision(plain, kCPU)(x);
  CHECK((y32 - plain(x)).abs().max().item<float>() == 0.0f);
  o.precision = "bf16";
  Tensor y16 = o.with_precision(plain, kCPU)(x);
  Tensor expected;
  {
    auto scope = autocast(kCPU, DType::BFloat16);
    expected = plain(x);
  }
  CHECK((y16 - expected).abs().max().item<float>() == 0.0f);
  CHECK((y16 - y32).abs().max().item<float>() > 0.0f);  // bfloat16 products differ from float32 ones
  CHECK(autocast_dtype(DeviceType::CPU) == DType::Float32);  // the scope ended with the forward
}

TEST_CASE("--precision bf16 on the CPU records which kernels bfloat16 runs on, and whether the CPU has the instructions") {
  const nlohmann::json k = exp::cpu_bf16_kernels();
  const std::string gemm = k.at("gemm_bf16").get<std::string>();
  CHECK(gemm == cpu::gemm_bf16_kernel_name());
  CHECK(k.at("bfloat16_instructions").get<bool>() == (gemm == "amx" || gemm == "avx512_bf16"));
  const std::string conv = k.at("direct_convolution_bf16").get<std::string>();
  if (cpu::cpu_has_avx512f() && cpu::has_avx512_bf16())
    CHECK(conv == "avx512, vdpbf16ps");
  else if (cpu::cpu_has_avx2() && !cpu::cpu_has_avx512f())
    CHECK(conv.rfind("avx2, emulated", 0) == 0);
  else
    CHECK(conv.rfind("none", 0) == 0);
  CHECK(k.at("cpu").get<std::string>() == cpu::cpu_model_name());
}
