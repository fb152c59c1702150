#include "experiments/lib/study.h"

#include "dist/process_group.h"

#include <omp.h>

#include <algorithm>

#include "experiments/lib/run_dir.h"
#include "tensor/autocast.h"
#include "tensor/cpu/conv_direct.h"
#include "tensor/cpu/cpu_info.h"
#include "tensor/cpu/gemm_bf16.h"
#include "tensor/ops.h"

namespace dl::exp {

void CommonOptions::add_to(CLI::App& app, bool dist_ok) {
  if (dist_ok) {
    app.add_flag("--distributed", distributed,
                 "one rank of an MPI job (mpirun -np N ...): data-parallel training, --batch-size split over the ranks");
    app.add_option("--bucket-mb", bucket_mb, "--distributed: gradient all-reduce bucket size in MiB")
        ->check(CLI::PositiveNumber);
    app.add_flag("--sync-bn", sync_bn, "--distributed: batch norm statistics over the global batch (SyncBatchNorm)");
  }
  app.add_option("--data-dir", data_dir, "Fashion-MNIST folder (default: $DL_DATA_DIR or /usr/share/datasets/fashion-mnist)");
  app.add_option("--out", out, "run folder (default: runs/<program>-<date-time>)");
  app.add_option("--device", device, "cpu or cuda[:N]");
  app.add_option("--seed", seed, "seed for the split, initialisation, shuffling and dropout");
  app.add_option("--split-seed", split_seed, "seed of the train/validation split and the subsets (default: --seed)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--val-fraction", val_fraction, "validation share of the 60,000 training images")->check(CLI::Range(0.0, 0.9));
  app.add_option("--train-limit", train_limit, "use only this many training images (0 = all)")->check(CLI::NonNegativeNumber);
  app.add_option("--val-limit", val_limit, "use only this many validation images (0 = all)")->check(CLI::NonNegativeNumber);
  app.add_option("--test-limit", test_limit, "use only this many test images (0 = all)")->check(CLI::NonNegativeNumber);
  app.add_option("--batch-size", batch_size, "batch size")->check(CLI::PositiveNumber);
  app.add_option("--workers", workers, "background loader threads (0 = load on the training thread)")->check(CLI::Range(0, 64));
  app.add_option("--threads", threads, "compute threads (0 = all cores)")->check(CLI::NonNegativeNumber);
  app.add_flag("--resume", resume, "continue from the run folder's last checkpoint");
  app.add_option("--clip-grad-norm", clip_grad_norm, "clip the gradients' global L2 norm (0 = off)")->check(CLI::NonNegativeNumber);
  app.add_flag("--skip-nonfinite", skip_nonfinite, "skip batches whose loss is NaN or Inf instead of stopping");
  app.add_option("--precision", precision,
                 "fp32, or mixed precision: bf16 (matmuls and convolutions in bfloat16 with float32 sums, the rest "
                 "and the weights float32), fp16 (CUDA)")
      ->check(CLI::IsMember({"fp32", "bf16", "fp16"}));
}

std::optional<optim::GradScalerOptions> CommonOptions::loss_scaling() const {
  if (parse_precision(precision) == DType::Float16) return optim::GradScalerOptions{};
  return std::nullopt;
}

ForwardFn CommonOptions::with_precision(ForwardFn forward, Device device) const {
  const DType t = parse_precision(precision);
  if (t == DType::Float32) return forward;
  return [forward = std::move(forward), device, t](const Tensor& x) {
    auto scope = autocast(device, t);
    return forward(x);
  };
}

nlohmann::json CommonOptions::to_json() const {
  return {{"data_dir", data_dir}, {"device", device}, {"seed", seed}, {"split_seed", data_seed()}, {"val_fraction", val_fraction},
          {"train_limit", train_limit}, {"val_limit", val_limit}, {"test_limit", test_limit},
          {"batch_size", batch_size}, {"workers", workers}, {"threads", threads}, {"resume", resume},
          {"clip_grad_norm", clip_grad_norm}, {"skip_nonfinite", skip_nonfinite}, {"out", out},
          {"sync_bn", sync_bn}, {"precision", precision},
          {"distributed", {{"on", distributed}, {"world_size", pg ? pg->world_size() : 1}, {"bucket_mb", bucket_mb}}}};
}

bool CommonOptions::is_main() const { return !pg || pg->rank() == 0; }

data::LoaderOptions CommonOptions::shard(data::LoaderOptions lo, bool training) const {
  if (!pg) return lo;
  const int n = pg->world_size();
  if (lo.batch_size % n != 0)
    fail("--batch-size {} is the global batch under --distributed; it must divide evenly over the {} ranks",
         lo.batch_size, n);
  lo.batch_size /= n;
  lo.num_replicas = n;
  lo.rank = pg->rank();
  lo.tail = training ? data::LoaderOptions::Tail::Pad : data::LoaderOptions::Tail::Uneven;
  return lo;
}

namespace {
std::vector<int64_t> limited(std::vector<int64_t> idx, int64_t limit, uint64_t seed) {
  if (limit <= 0 || limit >= static_cast<int64_t>(idx.size())) return idx;
  Generator g(seed);
  for (int64_t i = 0; i < limit; ++i) std::swap(idx[i], idx[i + g.below(idx.size() - i)]);
  idx.resize(limit);
  std::sort(idx.begin(), idx.end());
  return idx;
}
}  // namespace

Tensor select_rows(const Tensor& t, const std::vector<int64_t>& idx) {
  return ops::index_select(t, 0, from_vector<int64_t>(idx, {static_cast<int64_t>(idx.size())})).contiguous();
}

std::vector<int64_t> labels_of(const data::ImageSet& s, const std::vector<int64_t>& idx) {
  return select_rows(s.labels.to(DType::Int64), idx).to_vector<int64_t>();
}

StudyData load_study_data(const CommonOptions& o) {
  StudyData d;
  d.dir = data::fashion_mnist_dir(o.data_dir.empty() ? std::nullopt : std::optional<std::string>(o.data_dir));
  d.train_set = data::load_fashion_mnist(d.dir, data::FashionSplit::Train);
  d.test_set = data::load_fashion_mnist(d.dir, data::FashionSplit::Test);
  d.split = data::stratified_split(d.train_set.labels, data::kFashionMnistClasses, o.val_fraction, o.data_seed());
  d.train_idx = limited(d.split.train, o.train_limit, o.data_seed() + 1);
  d.val_idx = limited(d.split.val, o.val_limit, o.data_seed() + 2);
  std::vector<int64_t> all(d.test_set.size());
  for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<int64_t>(i);
  d.test_idx = limited(all, o.test_limit, o.data_seed() + 3);
  return d;
}

nlohmann::json cpu_bf16_kernels() {
  const std::string gemm = cpu::gemm_bf16_kernel_name();
  const cpu::DirectKernels* k = cpu::direct_kernels();
  std::string conv = "none (the GEMM paths only)";
  if (k != nullptr && k->bf16 != nullptr)
    conv = std::string(k->name) + ", " + k->bf16 +
           (std::string(k->bf16) == "emulated" ? " (bfloat16-rounded operands, float32 FMAs)" : "");
  else if (k != nullptr)
    conv = "none (no AVX512_BF16: the GEMM paths only)";
  return {{"cpu", cpu::cpu_model_name()}, {"gemm_bf16", gemm}, {"direct_convolution_bf16", conv},
          {"bfloat16_instructions", gemm != "portable"}};
}

std::filesystem::path prepare_run(const std::string& program, CommonOptions& o) {
  if (o.threads > 0) omp_set_num_threads(o.threads);
  if (o.distributed) {
    o.pg = &dist::ProcessGroup::init();
    if (o.device == "cuda") o.device = fmt::format("cuda:{}", o.pg->local_rank());  // one GPU per rank of a node
    if (o.batch_size % o.pg->world_size() != 0)
      fail("--batch-size {} is the global batch under --distributed; it must divide evenly over the {} ranks",
           o.batch_size, o.pg->world_size());
  }
  const Device device = parse_device(o.device);
  {
    // a precision the device cannot autocast to fails here, before any work, naming both
    // (fp16 is CUDA only: the CPU has no float16 GEMM; fit() scales its losses, loss_scaling())
    if (o.precision == "fp16" && !device.is_cuda())
      fail("--precision fp16 runs on CUDA only (--device {} has no float16 GEMM); use bf16 on the CPU", o.device);
    auto check = autocast(device, parse_precision(o.precision));
  }
  if (o.is_main() && o.precision == "bf16" && !device.is_cuda()) {  // what bf16 runs on here, said once
    const nlohmann::json k = cpu_bf16_kernels();
    fmt::print(stderr, "bf16 on this CPU ({}): bfloat16 GEMM kernel {}; direct convolution {}.{}\n",
               k["cpu"].get<std::string>(), k["gemm_bf16"].get<std::string>(),
               k["direct_convolution_bf16"].get<std::string>(),
               k["bfloat16_instructions"].get<bool>()
                   ? ""
                   : " This CPU has no bfloat16 instructions (AVX512_BF16, AMX): the results are rounded as "
                     "bfloat16, but expect no speed-up over fp32.");
  }
  std::string run, error;
  if (o.is_main()) {
    try {
      run = create_run_dir(program, o.out.empty() ? std::nullopt : std::optional<std::string>(o.out)).string();
      check_writable(run);
    } catch (const std::exception& e) {
      if (!o.pg) throw;
      error = e.what();
    }
  }
  if (o.pg) {  // every rank uses rank 0's folder (or fails with rank 0's reason)
    error = o.pg->broadcast(error, 0);
    if (!error.empty()) fail("{}", error);
    run = o.pg->broadcast(run, 0);
  }
  o.out = run;
  manual_seed(o.seed);
  return std::filesystem::path(run);
}

nlohmann::json base_config(const std::string& program, const CommonOptions& o, const StudyData& d) {
  nlohmann::json j = o.to_json();
  j["program"] = program;
  j["split"] = d.split.identity.to_json();
  j["data"] = {{"dir", d.dir}, {"train_images", d.train_set.images_path}, {"test_images", d.test_set.images_path},
               {"train_used", d.train_idx.size()}, {"val_used", d.val_idx.size()}, {"test_used", d.test_idx.size()}};
  j["git_commit"] = git_commit();
  j["machine"] = machine_description();
  if (o.precision == "bf16" && !parse_device(o.device).is_cuda()) j["bf16_cpu_kernels"] = cpu_bf16_kernels();
  j["started"] = timestamp();
  j["omp_threads"] = omp_get_max_threads();
  return j;
}

std::vector<std::string> class_names() {
  std::vector<std::string> v;
  for (auto n : data::kFashionMnistClassNames) v.emplace_back(n);
  return v;
}

nlohmann::json write_test_outputs(const std::filesystem::path& run, nlohmann::json desc, const EvalResult& test) {
  std::vector<int64_t> labels, preds;
  for (const auto& p : test.predictions) {
    labels.push_back(p.label);
    preds.push_back(p.prediction);
  }
  Metrics m = compute_metrics(labels, preds, data::kFashionMnistClasses);
  desc["class_names"] = class_names();
  desc["test"] = m.to_json(class_names());
  desc["test"]["loss"] = test.loss;
  write_json(run / "metrics.json", desc);
  write_confusion(run / "confusion.csv", m.confusion, class_names());
  write_predictions(run / "predictions.csv", test.predictions);
  return desc;
}

}  // namespace dl::exp
