#pragma once
// What a weights file is, checked rather than assumed. A file is "verified" only when its full
// SHA-256 equals the published digest of a known file (torchvision's resnet18-f37072fd.pth), or
// when its tensors' digest equals that of such a verified file (a safetensors conversion of it).
// Everything else is "weights of unknown origin", whatever its name or the user's flags say.
#include <string>
#include <vector>

#include "models/weights.h"

namespace dl::models {

struct KnownWeights {
  std::string file_name;       // the published file's name
  std::string description;     // what it holds, for logs and reports
  std::string file_sha256;     // the published file's full SHA-256
  int64_t file_size = 0;       // its size in bytes (0: not checked)
  std::string tensors_sha256;  // tensors_sha256() of its contents; empty when not known to this project
};

// The files this project knows: torchvision's ResNet18 IMAGENET1K_V1 weights.
const std::vector<KnownWeights>& known_weights();

// A digest of a state dict's contents, independent of the file format: SHA-256 over every tensor
// (in name order, `num_batches_tracked` counters left out) of its name, dtype, shape and
// contiguous little-endian bytes (floating tensors as float32, as load_weights gives them).
std::string tensors_sha256(const TensorDict& tensors);

enum class WeightsOrigin { Verified, Unknown, StandIn };

struct WeightsIdentity {
  WeightsOrigin origin = WeightsOrigin::Unknown;
  std::string file_sha256, tensors_sha256;
  std::string known_as;  // the known file it was matched with (Verified only)
  std::string how;       // how the verdict was reached, in words
  // "ImageNet-pretrained (torchvision resnet18-f37072fd.pth, SHA-256 verified)", "weights of
  // unknown origin" or "stand-in weights (randomly initialised, not ImageNet's)"
  std::string label() const;
  const char* origin_name() const;  // "verified", "unknown", "stand_in"
};

// Identifies the file at `path` (loading it to compute the tensor digest). A file that matches no
// known digest is Unknown; `stand_in` (the user said it is a random stand-in) turns Unknown into
// StandIn but never overrides a verified match. For a file whose tensor digest is not in the
// table, a verified copy of the known file in the same folder (or in `extra_dirs`) is used to
// learn that digest, so a safetensors conversion beside the real .pth is recognised.
WeightsIdentity identify_weights(const std::string& path, bool stand_in = false,
                                 const std::vector<KnownWeights>& known = known_weights(),
                                 const std::vector<std::string>& extra_dirs = {"weights"});

}  // namespace dl::models
