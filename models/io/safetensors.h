#pragma once
// safetensors: 8-byte little-endian header length N, N bytes of JSON
// {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}, then the
// data section (offsets are relative to its start).
#include <map>
#include <string>

#include "models/io/raw_tensor.h"

namespace dl::io {

// Loads every tensor (in header order) as a contiguous tensor with its own storage. When
// `metadata` is given it receives "__metadata__". Every problem is a dl::Error naming the file.
RawStateDict load_safetensors(const std::string& path,
                              std::map<std::string, std::string>* metadata = nullptr);

// Writes atomically (<path>.tmp, then rename). Tensors may be non-contiguous views; they are
// written row-major. The header is padded with spaces to a multiple of 8 bytes.
void save_safetensors(const std::string& path, const RawStateDict& tensors,
                      const std::map<std::string, std::string>& metadata = {});

}  // namespace dl::io
