#pragma once
// Small file helpers shared by the data pipeline and the experiment programs.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

namespace dl::data {

// A temporary name next to `path` (same directory, so a rename is atomic), unique per process and
// call: "<path>.tmp.<pid>.<n>".
std::string temp_path_for(const std::string& path);

// Writes `size` bytes to `path` atomically: a temporary file in the same directory, flushed, then
// renamed over `path`. Readers see the old file or the new one, never half of one. Throws
// dl::Error naming the file on failure (and removes the temporary).
void write_file_atomic(const std::string& path, const void* data, size_t size);
void write_file_atomic(const std::string& path, const std::string& text);

// Runs `write(tmp)` to produce a temporary file, then renames it over `path`; the temporary is
// removed when `write` throws. For writers that need a file name (zlib, stb).
void replace_file_atomic(const std::string& path, const std::function<void(const std::string& tmp)>& write);

// The whole file, refusing files larger than max_bytes. Throws dl::Error naming the file.
std::string read_file(const std::string& path, int64_t max_bytes = int64_t{1} << 30);

}  // namespace dl::data
