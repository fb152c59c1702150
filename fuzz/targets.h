#pragma once
// What each libFuzzer target does with one input, shared by the fuzz_<name>.cpp executables and by
// tests/unit/fuzz_regressions_test.cpp (which replays saved crashing inputs through the very same
// code). Every function feeds the bytes to one parser through the public API users call; a
// dl::Error is the expected answer to a bad file and is swallowed. Anything else (another
// exception, a sanitizer report, an allocation above libFuzzer's -malloc_limit_mb, a hang) is a
// finding.
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "data/idx.h"
#include "data/image_io.h"
#include "fuzz/fuzz_common.h"
#include "models/checkpoint.h"
#include "models/io/pickle.h"
#include "models/io/raw_tensor.h"
#include "models/io/zip.h"
#include "models/weights.h"
#include "onnx/onnx.h"

namespace dl::fuzz {

// PyTorch .pth checkpoints (zip + restricted unpickler + storages) through dl::load_weights,
// which also converts every tensor (views included) to a dl::Tensor.
inline void pth(const uint8_t* data, size_t size) {
  const std::string& path = write_input(data, size, ".pth");
  expect_dl_errors_only([&] { (void)dl::load_weights(path); });
}

// safetensors through dl::load_safetensors: header JSON, offsets, dtype conversion, metadata.
inline void safetensors(const uint8_t* data, size_t size) {
  const std::string& path = write_input(data, size, ".safetensors");
  expect_dl_errors_only([&] {
    std::map<std::string, std::string> metadata;
    (void)dl::load_safetensors(path, &metadata);
  });
}

// The project's checkpoints (safetensors + format tag + JSON metadata) through load_checkpoint.
inline void checkpoint(const uint8_t* data, size_t size) {
  const std::string& path = write_input(data, size, ".ckpt");
  expect_dl_errors_only([&] { (void)dl::load_checkpoint(path); });
}

// The ZIP reader alone: directory, zip64 records, local headers; every entry read and inflated
// with its CRC-32 checked, as load_pth reads storages.
inline void zip(const uint8_t* data, size_t size) {
  const std::string& path = write_input(data, size, ".zip");
  expect_dl_errors_only([&] {
    dl::io::ZipReader z(path);
    for (const dl::io::ZipEntry& e : z.entries()) {
      if (z.find(e.name) != &e) __builtin_trap();  // the name index must agree with the list
      (void)z.read(e);
    }
  });
}

namespace detail {
inline void check_pickled_tensors(const dl::io::pickle::Value& v, int depth) {
  namespace pk = dl::io::pickle;
  if (depth > 2) return;
  if (v.is(pk::Kind::Tensor)) {
    dl::io::validate_view(*v.tensor, "'fuzz-input': tensor");
    if (v.tensor->numel() <= (int64_t{1} << 16)) (void)v.tensor->to_f64();
    return;
  }
  for (const auto& [k, x] : v.entries) check_pickled_tensors(*x, depth + 1);
  for (const auto& x : v.items) check_pickled_tensors(*x, depth + 1);
}
}  // namespace detail

// The restricted unpickler on its own, from memory. Persistent ids resolve to small synthetic
// storages (as load_pth resolves them to zip entries); tensors are then checked as load_pth
// checks them (validate_view) and small ones converted.
inline void pickle(const uint8_t* data, size_t size) {
  namespace pk = dl::io::pickle;
  constexpr int64_t kMaxStorageElements = 4096;
  expect_dl_errors_only([&] {
    std::unordered_map<std::string, pk::ValuePtr> storages;
    auto load_storage = [&](const pk::Value& pid) -> pk::ValuePtr {
      const auto& it = pid.items;
      dl::io::RawDType dt;
      if (!pid.is(pk::Kind::Tuple) || it.size() != 5 || !it[1]->is(pk::Kind::Global) ||
          !pk::storage_dtype(it[1]->s, &dt) || !it[2]->is(pk::Kind::Str) || !it[4]->is(pk::Kind::Int) ||
          it[4]->i < 0 || it[4]->i > kMaxStorageElements)
        dl::fail("'fuzz-input': unsupported persistent id");
      if (auto c = storages.find(it[2]->s); c != storages.end()) return c->second;
      std::vector<uint8_t> bytes(static_cast<size_t>(it[4]->i * dl::io::dtype_size(dt)));
      for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(i * 37 + 11);
      auto v = std::make_shared<pk::Value>();
      v->kind = pk::Kind::Storage;
      v->tensor = std::make_unique<dl::io::RawTensor>();
      v->tensor->dtype = dt;
      v->tensor->shape = {it[4]->i};
      v->tensor->strides = {1};
      v->tensor->storage = std::make_shared<const std::vector<uint8_t>>(std::move(bytes));
      storages.emplace(it[2]->s, v);
      return v;
    };
    pk::ValuePtr root = pk::unpickle(data, size, "'fuzz-input'", load_storage);
    if (!root) __builtin_trap();
    detail::check_pickled_tensors(*root, 0);
  });
}

// IDX files (plain or gzip, detected from the content) through read_idx, then to_tensor.
inline void idx(const uint8_t* data, size_t size) {
  const std::string& path = write_input(data, size, ".idx");
  expect_dl_errors_only([&] {
    const dl::data::IdxArray a = dl::data::read_idx(path);
    (void)a.to_tensor();
  });
}

// PNG / JPEG / BMP through decode_image (stb_image behind size and pixel limits), from memory.
// A decoded image is decoded again with a channel conversion chosen from the input size, and
// turned into a tensor.
inline void image(const uint8_t* data, size_t size) {
  expect_dl_errors_only([&] {
    const dl::data::Image img = dl::data::decode_image(data, size, 0, {}, "fuzz-input");
    if (img.pixels.size() != static_cast<size_t>(img.width * img.height * img.channels)) __builtin_trap();
    const int channels = 1 + static_cast<int>(size % 4);
    const dl::data::Image conv = dl::data::decode_image(data, size, channels, {}, "fuzz-input");
    if (conv.channels != channels || conv.width != img.width || conv.height != img.height) __builtin_trap();
    (void)dl::data::image_to_tensor(conv);
  });
}

// ONNX models through dl::onnx::load_from_bytes, from memory with no folder (so external data is
// refused): protobuf parsing (ONNX's own types), initializer sizes against their data, attributes,
// graph order and cycles, onnx::checker, and the constant folding done at load (bounded: see
// kMaxFoldElements in onnx/import_internal.h). The model is not run.
inline void onnx_model(const uint8_t* data, size_t size) {
  expect_dl_errors_only([&] {
    auto m = dl::onnx::load_from_bytes(std::string(reinterpret_cast<const char*>(data), size), "");
    if (!m || m->output_names().empty()) __builtin_trap();  // a loaded model has outputs
  });
}

using Target = void (*)(const uint8_t*, size_t);
struct NamedTarget {
  const char* name;
  Target run;
};
// Every target by name (the file stem after "fuzz_"; crash files are named "<name>-...").
inline const std::vector<NamedTarget>& all_targets() {
  static const std::vector<NamedTarget> t = {{"checkpoint", checkpoint}, {"idx", idx},
                                             {"image", image},           {"onnx", onnx_model},
                                             {"pickle", pickle},         {"pth", pth},
                                             {"safetensors", safetensors}, {"zip", zip}};
  return t;
}

}  // namespace dl::fuzz
