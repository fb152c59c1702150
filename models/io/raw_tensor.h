#pragma once
// Device-independent raw form of weights read from a file (.pth, .safetensors). A RawTensor is a
// strided view into a whole storage's bytes (little-endian), which several views may share.
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace dl::io {

enum class RawDType { F16, BF16, F32, F64, I64, I32, I16, I8, U8, Bool };

// Bytes per element.
int64_t dtype_size(RawDType t);
// Safetensors spelling: "F16", "BF16", "F32", "F64", "I64", "I32", "I16", "I8", "U8", "BOOL".
const char* dtype_name(RawDType t);
// Inverse of dtype_name; false when the name is unknown.
bool dtype_from_name(const std::string& name, RawDType* out);

struct RawTensor {
  RawDType dtype = RawDType::F32;
  std::vector<int64_t> shape;
  std::vector<int64_t> strides;  // in elements
  int64_t storage_offset = 0;    // in elements
  // Whole storage bytes (shared between views of one storage).
  std::shared_ptr<const std::vector<uint8_t>> storage;

  // Product of shape (1 for a scalar). Throws dl::Error on a negative size or overflow.
  int64_t numel() const;
  // Number of elements the storage holds.
  int64_t storage_numel() const;
  bool is_contiguous() const;
  // Contiguous row-major copies. F16 and BF16 are converted exactly. to_i64 truncates floating
  // values toward zero and throws dl::Error for NaN/inf/out-of-range values. All validate the view
  // first (see validate_view) and throw dl::Error if it is inconsistent.
  std::vector<float> to_f32() const;
  std::vector<double> to_f64() const;
  std::vector<int64_t> to_i64() const;
  // Row-major copy of the element bytes (numel() * dtype_size(dtype) bytes).
  std::vector<uint8_t> contiguous_bytes() const;
};

using RawStateDict = std::vector<std::pair<std::string, RawTensor>>;  // order as in the file

// Row-major strides for a shape.
std::vector<int64_t> contiguous_strides(const std::vector<int64_t>& shape);

// Checks that shape/strides/offset are non-negative, have matching ranks, and that every element
// the view reaches lies inside the storage (overflow-checked). Throws dl::Error starting with
// `what` (e.g. "'model.pth': tensor 'fc.weight'").
void validate_view(const RawTensor& t, const std::string& what);

// Makes a contiguous tensor owning a copy of `bytes` (size must be numel * dtype_size).
RawTensor make_raw_tensor(RawDType dtype, std::vector<int64_t> shape, std::vector<uint8_t> bytes);

// Exact conversions.
float half_to_float(uint16_t h);
float bfloat16_to_float(uint16_t b);

// Overflow-checked arithmetic on non-negative int64; false on overflow.
bool checked_mul(int64_t a, int64_t b, int64_t* out);
bool checked_add(int64_t a, int64_t b, int64_t* out);

}  // namespace dl::io
