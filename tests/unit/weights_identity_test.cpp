// What a weights file is: verified against published digests, never assumed from its name or a
// flag. The tensor digest is the same for the same tensors in any file format or order.
#include <filesystem>

#include "models/io/sha256.h"
#include "models/weights_identity.h"
#include "tensor/ops.h"
#include "test_util.h"
#include "unit/file_test_util.h"

using namespace dl;
using models::identify_weights;
using models::KnownWeights;
using models::WeightsOrigin;
namespace fs = std::filesystem;

namespace {

TensorDict small_weights(float bump = 0.0f) {
  Generator g(11);
  Tensor w = randn({4, 3}, DType::Float32, &g);
  if (bump != 0.0f) w = w + bump;
  return {{"conv1.weight", w},
          {"bn1.running_mean", randn({4}, DType::Float32, &g)},
          {"bn1.num_batches_tracked", from_vector<int64_t>({7}, {})}};
}

KnownWeights known_for(const std::string& path, const std::string& name) {
  return {name, "a test file", io::sha256_file(path), static_cast<int64_t>(fs::file_size(path)), ""};
}

}  // namespace

TEST_CASE("the tensor digest depends on the tensors only: not on order, format or counters") {
  test::TmpDir dir;
  TensorDict a = small_weights();
  const std::string d = models::tensors_sha256(a);
  CHECK(d.size() == 64);
  TensorDict reordered(a.rbegin(), a.rend());
  CHECK(models::tensors_sha256(reordered) == d);
  save_safetensors(dir.path("a.safetensors"), a, {{"note", "one"}});
  save_safetensors(dir.path("b.safetensors"), reordered, {{"note", "two"}});
  CHECK(io::sha256_file(dir.path("a.safetensors")) != io::sha256_file(dir.path("b.safetensors")));
  CHECK(models::tensors_sha256(load_weights(dir.path("b.safetensors"))) == d);
  // a counter is not a weight
  TensorDict counted = a;
  counted[2].second = from_vector<int64_t>({8}, {});
  CHECK(models::tensors_sha256(counted) == d);
  // one changed value, a renamed tensor, another shape: another digest
  CHECK(models::tensors_sha256(small_weights(1e-3f)) != d);
  TensorDict renamed = a;
  renamed[0].first = "conv2.weight";
  CHECK(models::tensors_sha256(renamed) != d);
  TensorDict reshaped = a;
  reshaped[0].second = a[0].second.reshape({3, 4});
  CHECK(models::tensors_sha256(reshaped) != d);
}

TEST_CASE("a file is verified by its full digest, a conversion by its tensors, anything else is of unknown origin") {
  test::TmpDir dir;
  const std::string published = dir.path("published.safetensors");
  save_safetensors(published, small_weights(), {{"from", "the publisher"}});
  const std::vector<KnownWeights> known{known_for(published, "published.safetensors")};

  auto id = identify_weights(published, false, known, {});
  CHECK(id.origin == WeightsOrigin::Verified);
  CHECK(id.file_sha256 == known[0].file_sha256);
  CHECK(id.label().find("SHA-256 verified") != std::string::npos);
  CHECK(id.how.find("full SHA-256") != std::string::npos);
  CHECK(std::string(id.origin_name()) == "verified");
  // the user's --stand-in-weights does not override a verified digest
  CHECK(identify_weights(published, true, known, {}).origin == WeightsOrigin::Verified);

  // the same tensors in another file beside the verified one: recognised through it
  const std::string converted = dir.path("converted.safetensors");
  save_safetensors(converted, small_weights(), {{"converted", "yes"}});
  id = identify_weights(converted, false, known, {});
  CHECK(id.origin == WeightsOrigin::Verified);
  CHECK(id.how.find("tensors' digest") != std::string::npos);
  CHECK(id.how.find(published) != std::string::npos);

  // other tensors: unknown origin, whatever the name says; stand-in only when the user says so
  const std::string other = dir.path("published-" + known[0].file_sha256.substr(0, 8) + ".safetensors");
  save_safetensors(other, small_weights(0.5f));
  id = identify_weights(other, false, known, {});
  CHECK(id.origin == WeightsOrigin::Unknown);
  CHECK(id.label() == "weights of unknown origin");
  CHECK(id.how.find(id.file_sha256) != std::string::npos);
  CHECK(identify_weights(other, true, known, {}).origin == WeightsOrigin::StandIn);
  CHECK(identify_weights(other, true, known, {}).label().find("stand-in") != std::string::npos);

  // without the verified file at hand, the conversion is recognised only by a known tensor digest
  test::TmpDir elsewhere;
  const std::string lone = elsewhere.path("converted.safetensors");
  fs::copy_file(converted, lone);
  CHECK(identify_weights(lone, false, known, {}).origin == WeightsOrigin::Unknown);
  std::vector<KnownWeights> with_digest = known;
  with_digest[0].tensors_sha256 = models::tensors_sha256(small_weights());
  CHECK(identify_weights(lone, false, with_digest, {}).origin == WeightsOrigin::Verified);
  // a file that claims the published name but has other bytes is not verified by its name
  const std::string impostor = elsewhere.path("published.safetensors");
  save_safetensors(impostor, small_weights(2.0f));
  CHECK(identify_weights(impostor, false, known, {}).origin == WeightsOrigin::Unknown);
  // and a wrong size with the right digest cannot happen, but a wrong recorded size refuses it
  std::vector<KnownWeights> wrong_size = known;
  wrong_size[0].file_size += 1;
  CHECK(identify_weights(published, false, wrong_size, {}).origin == WeightsOrigin::Unknown);
}

TEST_CASE("the project knows torchvision's ResNet18 file by its full published digest") {
  const auto& k = models::known_weights();
  REQUIRE(k.size() >= 1);
  CHECK(k[0].file_name == "resnet18-f37072fd.pth");
  CHECK(k[0].file_sha256.size() == 64);
  CHECK(k[0].file_sha256.rfind("f37072fd", 0) == 0);  // the prefix torchvision puts in the name
  CHECK(k[0].file_size == 46830571);
}

TEST_CASE("a PyTorch-written random ResNet18 is of unknown origin, or a stand-in when the user says so") {
  const std::string fx = test::fixtures_dir();
  if (fx.empty() || !fs::exists(fx + "/resnet18_random.pth"))
    DL_SKIP("the fixture resnet18_random.pth is not there (ctest's make_torch_fixtures writes it)");
  auto id = identify_weights(fx + "/resnet18_random.pth");
  CHECK(id.origin == WeightsOrigin::Unknown);
  CHECK(identify_weights(fx + "/resnet18_random.pth", true).origin == WeightsOrigin::StandIn);
  // its safetensors twin holds the same tensors
  if (fs::exists(fx + "/resnet18_random.safetensors"))
    CHECK(identify_weights(fx + "/resnet18_random.safetensors").tensors_sha256 == id.tensors_sha256);
}
