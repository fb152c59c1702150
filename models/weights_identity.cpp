#include "models/weights_identity.h"

#include <algorithm>
#include <filesystem>

#include "models/io/sha256.h"
#include "tensor/ops.h"

namespace dl::models {

namespace fs = std::filesystem;

const std::vector<KnownWeights>& known_weights() {
  // The digest and size of https://download.pytorch.org/models/resnet18-f37072fd.pth as published
  // (torchvision's hub checks only the 8-digit prefix in the name). Its tensor digest is not known
  // here: the file has never been on this project's machines. A run on the real file logs it
  // (config.json "weights_tensors_sha256"); until it is filled in, a safetensors conversion is
  // recognised only beside a verified copy of the .pth (see identify_weights).
  static const std::vector<KnownWeights> k = {
      {"resnet18-f37072fd.pth", "torchvision ResNet18 IMAGENET1K_V1 (ImageNet-pretrained)",
       "f37072fd47e89c5e827621c5baffa7500819f7896bbacec160b1a16c560e07ec", 46830571, ""},
  };
  return k;
}

std::string tensors_sha256(const TensorDict& tensors) {
  std::vector<const std::pair<std::string, Tensor>*> order;
  for (const auto& e : tensors)
    if (!e.first.ends_with("num_batches_tracked")) order.push_back(&e);
  std::sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->first < b->first; });
  // a digest of per-tensor digests: no need to hold every tensor's bytes at once
  std::string all;
  for (const auto* e : order) {
    Tensor c = ops::contiguous(ops::to_device(e->second, kCPU));
    if (is_floating_point(c.dtype()) && c.dtype() != DType::Float32) c = ops::to_dtype(c, DType::Float32);
    std::string head = fmt::format("{}|{}|{}|", e->first, dtype_name(c.dtype()), fmt::join(c.sizes(), "x"));
    all += head + io::sha256_hex(c.raw_data(), static_cast<size_t>(c.numel() * c.element_size())) + "\n";
  }
  return io::sha256_hex(all.data(), all.size());
}

std::string WeightsIdentity::label() const {
  switch (origin) {
    case WeightsOrigin::Verified: return fmt::format("{} ({}, SHA-256 verified)", "ImageNet-pretrained", known_as);
    case WeightsOrigin::StandIn: return "stand-in weights (randomly initialised, not ImageNet's)";
    case WeightsOrigin::Unknown: break;
  }
  return "weights of unknown origin";
}

const char* WeightsIdentity::origin_name() const {
  switch (origin) {
    case WeightsOrigin::Verified: return "verified";
    case WeightsOrigin::StandIn: return "stand_in";
    case WeightsOrigin::Unknown: break;
  }
  return "unknown";
}

namespace {

bool file_matches(const std::string& path, const KnownWeights& k, const std::string& digest) {
  if (digest != k.file_sha256) return false;
  std::error_code ec;
  return k.file_size == 0 || static_cast<int64_t>(fs::file_size(path, ec)) == k.file_size;
}

}  // namespace

WeightsIdentity identify_weights(const std::string& path, bool stand_in, const std::vector<KnownWeights>& known,
                                 const std::vector<std::string>& extra_dirs) {
  WeightsIdentity id;
  id.file_sha256 = io::sha256_file(path);
  id.tensors_sha256 = tensors_sha256(load_weights(path));
  for (const auto& k : known) {
    if (file_matches(path, k, id.file_sha256)) {
      id.origin = WeightsOrigin::Verified;
      id.known_as = k.file_name;
      id.how = fmt::format("the file's full SHA-256 equals the published digest of {} ({})", k.file_name, k.description);
      return id;
    }
    std::string reference_digest = k.tensors_sha256, reference_from;
    if (reference_digest.empty()) {
      // learn the tensor digest from a verified copy of the known file, when one is at hand
      std::vector<fs::path> dirs{fs::path(path).parent_path()};
      for (const auto& d : extra_dirs) dirs.emplace_back(d);
      for (const auto& d : dirs) {
        fs::path cand = (d.empty() ? fs::path(".") : d) / k.file_name;
        std::error_code ec;
        if (!fs::is_regular_file(cand, ec) || fs::equivalent(cand, path, ec)) continue;
        if (!file_matches(cand.string(), k, io::sha256_file(cand.string()))) continue;
        reference_digest = tensors_sha256(load_weights(cand.string()));
        reference_from = cand.string();
        break;
      }
    }
    if (!reference_digest.empty() && reference_digest == id.tensors_sha256) {
      id.origin = WeightsOrigin::Verified;
      id.known_as = k.file_name;
      id.how = reference_from.empty()
                   ? fmt::format("its tensors' digest equals that of {} ({})", k.file_name, k.description)
                   : fmt::format("its tensors' digest equals that of the verified file '{}' ({})", reference_from,
                                 k.description);
      return id;
    }
  }
  id.origin = stand_in ? WeightsOrigin::StandIn : WeightsOrigin::Unknown;
  id.how = fmt::format("SHA-256 {} matches no published weights this project knows, nor do its tensors{}", id.file_sha256,
                       stand_in ? "; --stand-in-weights says it is a randomly initialised stand-in" : "");
  return id;
}

}  // namespace dl::models
