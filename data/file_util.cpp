#include "data/file_util.h"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "tensor/error.h"

namespace dl::data {

std::string temp_path_for(const std::string& path) {
  static std::atomic<uint64_t> counter{0};
  return fmt::format("{}.tmp.{}.{}", path, static_cast<long>(::getpid()), counter.fetch_add(1));
}

void replace_file_atomic(const std::string& path, const std::function<void(const std::string& tmp)>& write) {
  std::string tmp = temp_path_for(path);
  try {
    write(tmp);
  } catch (...) {
    std::error_code ec;
    std::filesystem::remove(tmp, ec);
    throw;
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::error_code ignored;
    std::filesystem::remove(tmp, ignored);
    fail("cannot write '{}': rename from temporary '{}' failed: {}", path, tmp, ec.message());
  }
}

void write_file_atomic(const std::string& path, const void* data, size_t size) {
  replace_file_atomic(path, [&](const std::string& tmp) {
    std::FILE* f = std::fopen(tmp.c_str(), "wb");
    if (!f) fail("cannot write '{}': cannot create '{}': {}", path, tmp, std::strerror(errno));
    size_t written = size ? std::fwrite(data, 1, size, f) : 0;
    bool ok = written == size && std::fflush(f) == 0;
    ok = (std::fclose(f) == 0) && ok;
    if (!ok) fail("cannot write '{}': wrote {} of {} bytes to '{}' ({})", path, written, size, tmp, std::strerror(errno));
  });
}

void write_file_atomic(const std::string& path, const std::string& text) {
  write_file_atomic(path, text.data(), text.size());
}

std::string read_file(const std::string& path, int64_t max_bytes) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) fail("cannot read '{}': no such file", path);
  auto size = std::filesystem::file_size(path, ec);
  if (ec) fail("cannot read '{}': {}", path, ec.message());
  if (static_cast<int64_t>(size) > max_bytes)
    fail("cannot read '{}': {} bytes is more than the limit of {} bytes", path, size, max_bytes);
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot read '{}': cannot open it", path);
  std::string out(size, '\0');
  in.read(out.data(), static_cast<std::streamsize>(size));
  if (in.gcount() != static_cast<std::streamsize>(size))
    fail("cannot read '{}': got {} of {} bytes", path, in.gcount(), size);
  return out;
}

}  // namespace dl::data
