// The experiments' training runtime: non-finite losses, gradient clipping, output-folder checks,
// device errors, resume refusing a checkpoint written with other options, --precision.
#include <filesystem>

#include "autograd/node.h"
#include "cuda/cuda.h"
#include "experiments/lib/study.h"
#include "experiments/lib/train.h"
#include "nn/layers.h"
#include "nn/optim/sgd.h"
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

TEST_CASE("--precision: bf16 runs the forward under autocast, fp16 is refused on the CPU before any work") {
  Fixture f;
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

  o.precision = "fp16";
  o.out = (f.dir / "fp16-run").string();
  CHECK_THROWS_WITH_AS(exp::prepare_run("scratch_cnn", o), doctest::Contains("float16"), dl::Error);
  CHECK_FALSE(fs::exists(f.dir / "fp16-run"));
}
