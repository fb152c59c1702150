#pragma once
// SHA-256 (FIPS 180-4), small self-contained implementation.
#include <cstddef>
#include <cstdint>
#include <string>

namespace dl::io {

// Lower-case hex digest of a buffer.
std::string sha256_hex(const void* data, size_t size);
// Lower-case hex digest of a file's contents; dl::Error naming the file if it cannot be read.
std::string sha256_file(const std::string& path);

}  // namespace dl::io
