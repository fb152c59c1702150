#pragma once
// IDX files (the MNIST / Fashion-MNIST container), gzip-compressed or plain.
//
// Layout: a big-endian header `00 00 <type> <ndim>`, then ndim big-endian uint32 sizes, then the
// elements in row-major order (big-endian for multi-byte types). Everything is validated before
// it is trusted: the magic, the type code, the number of dims, that the element count does not
// overflow and stays under a limit, and that the data that follows holds exactly that many
// elements (a short file says "truncated", a longer one "trailing data").
//
// Memory: a plain file's size is compared with the header before anything big is allocated. A
// gzip file's decompressed size is unknown until it has been inflated, so its data is read in
// chunks into a buffer that grows with what actually arrives and never beyond the header's
// declared size (+1 byte to detect trailing data): a gzip bomb or a lying header cannot make the
// reader allocate more than the declared size, which is itself capped by `max_bytes`.
#include <cstdint>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace dl::data {

// IDX element type codes (the third byte of the magic number).
enum class IdxType : uint8_t { UInt8 = 0x08, Int8 = 0x09, Int16 = 0x0B, Int32 = 0x0C, Float32 = 0x0D, Float64 = 0x0E };

int64_t idx_type_size(IdxType t);
const char* idx_type_name(IdxType t);

struct IdxArray {
  IdxType type = IdxType::UInt8;
  Shape dims;                  // e.g. (60000, 28, 28) for images, (60000) for labels
  std::vector<uint8_t> bytes;  // the raw elements, as stored (big-endian)

  int64_t numel() const { return shape_numel(dims); }
  // The array as a tensor: uint8 -> UInt8, int8/int16/int32 -> Int64, float32 -> Float32,
  // float64 -> Float64 (byte order converted).
  Tensor to_tensor() const;
};

struct IdxReadOptions {
  // Largest data payload accepted (bytes); a header declaring more is refused before reading.
  int64_t max_bytes = int64_t{4} << 30;
  int64_t max_dims = 8;
};

// Reads a .gz or plain IDX file (gzip is detected from the content, not the name). Throws
// dl::Error naming the file and what was wrong.
IdxArray read_idx(const std::string& path, const IdxReadOptions& opts = {});

// Writes an IDX file (gzip-compressed when `gzip`), for tests and tools. Atomic (tmp + rename).
// `bytes` must hold numel * element-size bytes, big-endian for multi-byte types.
void write_idx(const std::string& path, IdxType type, const Shape& dims, const std::vector<uint8_t>& bytes,
               bool gzip);

}  // namespace dl::data
