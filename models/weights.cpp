#include "models/weights.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>

#include "models/io/pth.h"
#include "models/io/safetensors.h"
#include "tensor/ops.h"

namespace dl {
namespace {

// The file's bytes as a tensor of `dtype` (same element size), without conversion.
Tensor from_bytes(const io::RawTensor& raw, DType dtype) {
  const std::vector<uint8_t> b = raw.contiguous_bytes();
  Tensor t = empty(Shape(raw.shape.begin(), raw.shape.end()), dtype);
  if (!b.empty()) std::memcpy(t.raw_data(), b.data(), b.size());
  return t;
}

// keep_float64 / keep_16bit: float64 / bfloat16 and float16 stay as they are in the file; otherwise
// they become float32 (what a float32 model's load_state_dict expects; 16-bit values convert exactly).
Tensor to_tensor(const io::RawTensor& raw, bool keep_float64, bool keep_16bit) {
  switch (raw.dtype) {
    case io::RawDType::F64:
      return keep_float64 ? from_vector<double>(raw.to_f64(), raw.shape) : from_vector<float>(raw.to_f32(), raw.shape);
    case io::RawDType::F16:
      return keep_16bit ? from_bytes(raw, DType::Float16) : from_vector<float>(raw.to_f32(), raw.shape);
    case io::RawDType::BF16:
      return keep_16bit ? from_bytes(raw, DType::BFloat16) : from_vector<float>(raw.to_f32(), raw.shape);
    case io::RawDType::F32: return from_vector<float>(raw.to_f32(), raw.shape);
    case io::RawDType::U8: {
      auto b = raw.contiguous_bytes();
      return from_vector<uint8_t>(std::vector<uint8_t>(b.begin(), b.end()), raw.shape);
    }
    default: return from_vector<int64_t>(raw.to_i64(), raw.shape);
  }
}

TensorDict convert(const io::RawStateDict& raw, bool keep_float64, bool keep_16bit, const std::string& path) {
  TensorDict out;
  out.reserve(raw.size());
  for (const auto& [name, t] : raw) {
    try {
      out.emplace_back(name, to_tensor(t, keep_float64, keep_16bit));
    } catch (const dl::Error& e) {
      fail("'{}': tensor '{}': {}", path, name, e.what());
    }
  }
  return out;
}

io::RawTensor to_raw(const Tensor& t) {
  Tensor c = ops::contiguous(ops::to_device(t, kCPU));
  io::RawDType dt = io::RawDType::F32;
  switch (c.dtype()) {
    case DType::Float32: dt = io::RawDType::F32; break;
    case DType::Float64: dt = io::RawDType::F64; break;
    case DType::Int64: dt = io::RawDType::I64; break;
    case DType::UInt8: dt = io::RawDType::U8; break;
    case DType::BFloat16: dt = io::RawDType::BF16; break;
    case DType::Float16: dt = io::RawDType::F16; break;
  }
  const auto* p = static_cast<const uint8_t*>(c.raw_data());
  std::vector<uint8_t> bytes(p, p + c.numel() * c.element_size());
  return io::make_raw_tensor(dt, c.sizes(), std::move(bytes));
}

bool is_zip(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  char magic[4] = {};
  f.read(magic, 4);
  return f.gcount() == 4 && std::memcmp(magic, "PK\x03\x04", 4) == 0;
}

}  // namespace

namespace {
std::map<std::string, WeightsReader>& readers() {
  static std::map<std::string, WeightsReader> r;
  return r;
}
}  // namespace

void register_weights_reader(const std::string& extension, WeightsReader read) { readers()[extension] = read; }

TensorDict load_weights(const std::string& path, bool keep_float64) {
  if (!std::filesystem::exists(path)) fail("weights file '{}' does not exist", path);
  if (std::filesystem::is_directory(path)) fail("weights path '{}' is a directory, not a file", path);
  std::string ext = std::filesystem::path(path).extension().string();
  if (auto it = readers().find(ext); it != readers().end()) {
    TensorDict d = it->second(path);
    for (auto& [name, t] : d)
      if ((t.dtype() == DType::Float64 && !keep_float64) || is_low_precision(t.dtype()))
        t = ops::to_dtype(t, DType::Float32);
    return d;
  }
  if (ext == ".safetensors" && !is_zip(path)) return convert(io::load_safetensors(path), keep_float64, false, path);
  if (is_zip(path) || ext == ".pth" || ext == ".pt") {
    io::check_torchvision_hash(path);
    return convert(io::load_pth(path), keep_float64, false, path);
  }
  return convert(io::load_safetensors(path), keep_float64, false, path);
}

void save_safetensors(const std::string& path, const TensorDict& tensors,
                      const std::map<std::string, std::string>& metadata) {
  io::RawStateDict raw;
  raw.reserve(tensors.size());
  for (const auto& [name, t] : tensors) raw.emplace_back(name, to_raw(t));
  io::save_safetensors(path, raw, metadata);
}

TensorDict load_safetensors(const std::string& path, std::map<std::string, std::string>* metadata,
                            bool keep_dtypes) {
  if (!std::filesystem::exists(path)) fail("safetensors file '{}' does not exist", path);
  return convert(io::load_safetensors(path, metadata), keep_dtypes, keep_dtypes, path);
}

const Tensor* find_tensor(const TensorDict& d, const std::string& name) {
  for (const auto& [n, t] : d)
    if (n == name) return &t;
  return nullptr;
}

}  // namespace dl
