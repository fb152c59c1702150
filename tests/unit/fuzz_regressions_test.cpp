// Replays every input saved in tests/data/fuzz_regressions/ through the libFuzzer target it came
// from (the same code: fuzz/targets.h). A file is named "<target>-<what it does>.<ext>", target
// being one of checkpoint, idx, image, onnx, pickle, pth, safetensors, zip. Each must end in a dl::Error
// or a clean load: no other exception, no allocation above 512 MB (tests/unit/alloc_guard.h), no
// peak-RSS growth above 200 MB. (Sanitizer findings reproduce under ./test.sh --sanitize.)
//
// To add one: copy the crashing file from fuzz/crashes/ here with a descriptive name, and, when
// the expected outcome is more specific than "any dl::Error", add a case at the bottom.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "fuzz/targets.h"
#include "models/weights.h"
#include "onnx/onnx.h"
#include "test_util.h"
#include "unit/alloc_guard.h"

namespace fs = std::filesystem;

namespace {

fs::path regressions_dir() {
  if (const char* src = std::getenv("DL_SOURCE_DIR"); src && *src)
    return fs::path(src) / "tests" / "data" / "fuzz_regressions";
  // not __FILE__: a compiler cache (ccache base_dir) makes it relative to the build directory
  return fs::path(dl::test::source_dir()) / "tests" / "data" / "fuzz_regressions";
}

std::string read_bytes(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

std::vector<fs::path> inputs_for(const std::string& target) {
  std::vector<fs::path> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(regressions_dir(), ec)) {
    const std::string name = e.path().filename().string();
    if (e.is_regular_file() && name.rfind(target + "-", 0) == 0) out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

void replay_all(const std::string& target) {
  const auto& all = dl::fuzz::all_targets();
  const auto it = std::find_if(all.begin(), all.end(), [&](const auto& t) { return t.name == target; });
  REQUIRE(it != all.end());
  const dl::fuzz::NamedTarget& t = *it;
  const auto inputs = inputs_for(t.name);
  if (inputs.empty())  // nothing to replay: say so rather than pass having checked nothing
    DL_SKIP("no saved regression inputs for the " << t.name << " fuzz target (" << regressions_dir().string() << "/"
                                                  << t.name << "-*)");
  for (const fs::path& p : inputs) {
    const std::string bytes = read_bytes(p);
    const dl::test::Outcome o = dl::test::run_guarded(
        [&] { t.run(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()); });
    INFO("input " << p.filename().string() << " (" << bytes.size() << " bytes): " << o.message);
    CHECK_FALSE(o.other_exception);  // dl::Error is swallowed by the target: only others escape
    INFO("operator new was asked for " << o.largest_huge << " bytes; peak RSS grew by "
                                       << o.rss_growth_kb / 1024 << " MB");
    CHECK(o.huge_requests == 0);
    CHECK(o.rss_growth_kb <= dl::test::kMaxRssGrowthKb);
  }
}

}  // namespace

TEST_CASE("fuzz regressions: the saved inputs are found") {
  INFO("looking in " << regressions_dir().string());
  REQUIRE(fs::is_directory(regressions_dir()));
  size_t total = 0, unknown = 0;
  for (const auto& e : fs::directory_iterator(regressions_dir())) {
    const std::string name = e.path().filename().string();
    if (name[0] == '.' || name == "README.md") continue;
    ++total;
    const bool known = std::any_of(dl::fuzz::all_targets().begin(), dl::fuzz::all_targets().end(),
                                   [&](const auto& t) { return name.rfind(std::string(t.name) + "-", 0) == 0; });
    if (!known) {
      ++unknown;
      MESSAGE("file " << name << " does not start with a target name and a dash");
    }
  }
  CHECK(total > 0);
  CHECK(unknown == 0);
}

TEST_CASE("fuzz regressions: checkpoint") { replay_all("checkpoint"); }
TEST_CASE("fuzz regressions: idx") { replay_all("idx"); }
TEST_CASE("fuzz regressions: image") { replay_all("image"); }
TEST_CASE("fuzz regressions: onnx") { replay_all("onnx"); }
TEST_CASE("fuzz regressions: pickle") { replay_all("pickle"); }
TEST_CASE("fuzz regressions: pth") { replay_all("pth"); }
TEST_CASE("fuzz regressions: safetensors") { replay_all("safetensors"); }
TEST_CASE("fuzz regressions: zip") { replay_all("zip"); }

// ------------------------------------------------------------------------ specific expectations

TEST_CASE("fuzz regressions: a stride-0 view of 2^40 elements over a 1-element storage") {
  // torch.ones(1).expand(2**40) saved with torch.save: the view is valid (it stays inside its
  // storage) but materialising it would take 4 TiB. load_weights must refuse it with a dl::Error
  // naming the file and the tensor, before allocating.
  const fs::path p = regressions_dir() / "pth-stride0-view-of-2pow40-elements.pth";
  REQUIRE(fs::exists(p));
  const dl::test::Outcome o = dl::test::run_guarded([&] { (void)dl::load_weights(p.string()); });
  INFO(o.message << "; operator new was asked for " << o.largest_huge << " bytes");
  CHECK(o.dl_error);
  CHECK(o.message.find(p.string()) != std::string::npos);
  CHECK(o.message.find("'w'") != std::string::npos);
  CHECK(o.huge_requests == 0);
}

TEST_CASE("fuzz regressions: a JPEG whose Huffman table declares more than 256 codes") {
  // A DHT segment's 16 code-length counts sum to far more than the 256 symbols a table can hold.
  // stb_image 2.27 (Debian's libstb) writes past stbi__huffman::size[257] while building the
  // table (stb_image.h:1990, a heap overflow inside the decoder state; UBSan: "index 257 out of
  // bounds"). Decoding fails later anyway, so a normal build sees the expected dl::Error and
  // passes; the overflow itself shows under ./test.sh --sanitize (UBSan aborts this test). The
  // fix must refuse the file before stb builds the table.
  const fs::path p = regressions_dir() / "image-jpeg-dht-with-more-than-256-codes.jpg";
  REQUIRE(fs::exists(p));
  const dl::test::Outcome o = dl::test::run_guarded([&] { (void)dl::data::read_image(p.string()); });
  INFO(o.message);
  CHECK(o.dl_error);
  CHECK(o.message.find(p.string()) != std::string::npos);
}

TEST_CASE("fuzz regressions: ONNX models claiming huge tensors are refused before allocating") {
  // An initializer claiming 1e12 float elements with 4 bytes of raw_data; an empty one whose other
  // dims (2^62 x 4) would overflow its strides; ConstantOfShape of 2^62 elements from constants
  // (folded at load, so it must be bounded there). Each must be a dl::Error naming the problem,
  // with no large allocation.
  for (const char* name : {"onnx-initializer-claiming-1e12-elements-with-4-bytes.onnx",
                           "onnx-empty-initializer-whose-other-dims-overflow-strides.onnx",
                           "onnx-constant-of-shape-2pow62-elements.onnx", "onnx-external-data-at-dotdot-etc-passwd.onnx",
                           "onnx-two-node-cycle.onnx", "onnx-truncated-cnn.onnx"}) {
    const fs::path p = regressions_dir() / name;
    REQUIRE(fs::exists(p));
    const std::string bytes = read_bytes(p);
    const dl::test::Outcome o = dl::test::run_guarded([&] { (void)dl::onnx::load_from_bytes(bytes, ""); });
    INFO(std::string(name) << ": " << o.message << "; operator new was asked for " << o.largest_huge << " bytes");
    const std::string n = name;
    if (n.find("constant-of-shape") != std::string::npos) {
      // the fold is skipped (bound above kMaxFoldElements): the model loads, the op refuses when run
      CHECK_FALSE(o.dl_error);
      CHECK_FALSE(o.other_exception);
    } else {
      CHECK(o.dl_error);
    }
    CHECK(o.huge_requests == 0);
    if (n.find("1e12") != std::string::npos) CHECK(o.message.find("claim more than") != std::string::npos);
    if (n.find("strides") != std::string::npos) CHECK(o.message.find("claim more than") != std::string::npos);
    if (n.find("passwd") != std::string::npos) CHECK(o.message.find("not allowed") != std::string::npos);
    if (n.find("cycle") != std::string::npos) CHECK(o.message.find("cycle") != std::string::npos);
  }
}
