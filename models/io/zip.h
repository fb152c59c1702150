#pragma once
// Minimal, strict ZIP reader: (zip64) end of central directory, central directory, local headers,
// methods 0 (stored) and 8 (deflate), CRC-32 check. Every offset and size is validated against
// the file size before use; errors are dl::Error naming the archive (and entry).
#include <cstdint>
#include <fstream>
#include <string>
#include <unordered_map>
#include <vector>

namespace dl::io {

struct ZipEntry {
  std::string name;
  uint16_t method = 0;  // 0 stored, 8 deflate
  uint16_t flags = 0;
  uint32_t crc32 = 0;
  uint64_t compressed_size = 0;
  uint64_t uncompressed_size = 0;
  uint64_t local_header_offset = 0;
  uint64_t data_offset = 0;  // first byte of the (compressed) data
};

class ZipReader {
 public:
  static constexpr uint64_t kMaxEntries = 1u << 20;

  // Opens and validates the archive's directory (no entry data is read yet).
  explicit ZipReader(const std::string& path);

  const std::string& path() const { return path_; }
  uint64_t file_size() const { return file_size_; }
  const std::vector<ZipEntry>& entries() const { return entries_; }
  // nullptr when absent.
  const ZipEntry* find(const std::string& name) const;
  // Reads and decompresses an entry, checking its CRC-32. Throws if its uncompressed size
  // exceeds max_size.
  std::vector<uint8_t> read(const ZipEntry& e, uint64_t max_size = UINT64_MAX);

 private:
  void read_at(uint64_t offset, void* dst, uint64_t n, const char* what);
  [[noreturn]] void error(const std::string& msg) const;

  std::string path_;
  std::ifstream f_;
  uint64_t file_size_ = 0;
  std::vector<ZipEntry> entries_;
  std::unordered_map<std::string, size_t> by_name_;
};

// True when the file starts with a ZIP local-header or empty-archive signature.
bool has_zip_signature(const uint8_t* head, size_t n);

}  // namespace dl::io
