#include "models/io/zip.h"

#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <memory>

#include "tensor/error.h"

namespace dl::io {

namespace {

constexpr uint32_t kSigLocal = 0x04034b50;
constexpr uint32_t kSigCentral = 0x02014b50;
constexpr uint32_t kSigEocd = 0x06054b50;
constexpr uint32_t kSigZip64Eocd = 0x06064b50;
constexpr uint32_t kSigZip64Locator = 0x07064b50;
constexpr uint64_t kMaxCentralDirBytes = 1ull << 30;
// Deflate cannot expand data by more than about 1032:1.
constexpr uint64_t kMaxDeflateRatio = 1032;

uint16_t rd16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t rd32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}
uint64_t rd64(const uint8_t* p) {
  return static_cast<uint64_t>(rd32(p)) | (static_cast<uint64_t>(rd32(p + 4)) << 32);
}

struct InflateGuard {
  z_stream* zs;
  ~InflateGuard() { inflateEnd(zs); }
};

}  // namespace

bool has_zip_signature(const uint8_t* head, size_t n) {
  if (n < 4) return false;
  const uint32_t sig = rd32(head);
  return sig == kSigLocal || sig == kSigEocd;
}

void ZipReader::error(const std::string& msg) const {
  throw Error(fmt::format("'{}': {}", path_, msg));
}

void ZipReader::read_at(uint64_t offset, void* dst, uint64_t n, const char* what) {
  if (offset > file_size_ || n > file_size_ - offset)
    error(fmt::format("{} (offset {}, {} bytes) lies beyond the end of the {}-byte file; the "
                      "archive is truncated or corrupt",
                      what, offset, n, file_size_));
  if (n == 0) return;
  f_.clear();
  f_.seekg(static_cast<std::streamoff>(offset));
  f_.read(static_cast<char*>(dst), static_cast<std::streamsize>(n));
  if (!f_ || static_cast<uint64_t>(f_.gcount()) != n)
    error(fmt::format("I/O error reading {} ({} bytes at offset {})", what, n, offset));
}

ZipReader::ZipReader(const std::string& path) : path_(path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const auto st = fs::status(path, ec);
  if (ec || !fs::exists(st)) error("cannot open: file does not exist");
  if (!fs::is_regular_file(st)) error("cannot open: not a regular file");
  file_size_ = fs::file_size(path, ec);
  if (ec) error(fmt::format("cannot determine file size: {}", ec.message()));
  f_.open(path, std::ios::binary);
  if (!f_) error("cannot open file for reading");
  if (file_size_ < 22)
    error(fmt::format("file is {} bytes, too small to be a zip archive (truncated?)", file_size_));

  // --- End of central directory: the last signature whose comment ends at the end of file.
  const uint64_t tail_len = std::min<uint64_t>(file_size_, 22 + 65535);
  std::vector<uint8_t> tail(tail_len);
  read_at(file_size_ - tail_len, tail.data(), tail_len, "end of central directory");
  int64_t found = -1;
  for (int64_t i = static_cast<int64_t>(tail_len) - 22; i >= 0; --i) {
    const uint8_t* p = &tail[static_cast<size_t>(i)];
    if (rd32(p) == kSigEocd && static_cast<uint64_t>(i) + 22 + rd16(p + 20) == tail_len) {
      found = i;
      break;
    }
  }
  if (found < 0)
    error("end-of-central-directory record not found: not a zip archive, or truncated");
  const uint64_t eocd = file_size_ - tail_len + static_cast<uint64_t>(found);
  const uint8_t* e = &tail[static_cast<size_t>(found)];
  uint64_t disk = rd16(e + 4), cd_disk = rd16(e + 6);
  uint64_t n_disk = rd16(e + 8), n_total = rd16(e + 10);
  uint64_t cd_size = rd32(e + 12), cd_off = rd32(e + 16);
  uint64_t cd_end = eocd;  // the central directory must end exactly here

  // --- zip64 locator (20 bytes right before the EOCD) and zip64 EOCD record.
  if (eocd >= 20) {
    uint8_t loc[20];
    read_at(eocd - 20, loc, 20, "zip64 end-of-central-directory locator");
    if (rd32(loc) == kSigZip64Locator) {
      const uint32_t z_disk = rd32(loc + 4);
      const uint64_t z_off = rd64(loc + 8);
      const uint32_t n_disks = rd32(loc + 16);
      if (z_disk != 0 || n_disks > 1) error("multi-disk zip archives are not supported");
      const uint64_t loc_pos = eocd - 20;
      if (z_off > loc_pos || loc_pos - z_off < 56)
        error(fmt::format("zip64 end-of-central-directory offset {} is out of bounds", z_off));
      uint8_t z[56];
      read_at(z_off, z, 56, "zip64 end-of-central-directory record");
      if (rd32(z) != kSigZip64Eocd)
        error(fmt::format("zip64 end-of-central-directory signature missing at offset {}", z_off));
      const uint64_t rec_size = rd64(z + 4);
      if (rec_size < 44 || rec_size > loc_pos - z_off - 12)
        error(fmt::format("zip64 end-of-central-directory record size {} is invalid", rec_size));
      disk = rd32(z + 16);
      cd_disk = rd32(z + 20);
      n_disk = rd64(z + 24);
      n_total = rd64(z + 32);
      cd_size = rd64(z + 40);
      cd_off = rd64(z + 48);
      cd_end = z_off;
    }
  }
  if (disk != 0 || cd_disk != 0 || n_disk != n_total)
    error("multi-disk zip archives are not supported");
  if (n_total > kMaxEntries)
    error(fmt::format("archive declares {} entries, more than the limit of {}", n_total,
                      kMaxEntries));
  if (cd_off > cd_end || cd_size != cd_end - cd_off)
    error(fmt::format("central directory (offset {}, size {}) does not end at the "
                      "end-of-central-directory record (offset {}); truncated or corrupt archive",
                      cd_off, cd_size, cd_end));
  if (cd_size > kMaxCentralDirBytes)
    error(fmt::format("central directory of {} bytes is larger than the limit", cd_size));
  if (n_total * 46 > cd_size)
    error(fmt::format("central directory of {} bytes is too small for the {} entries declared",
                      cd_size, n_total));

  // --- Central directory.
  std::vector<uint8_t> cd(cd_size);
  read_at(cd_off, cd.data(), cd_size, "central directory");
  uint64_t pos = 0;
  entries_.reserve(n_total);
  for (uint64_t k = 0; k < n_total; ++k) {
    if (cd_size - pos < 46)
      error(fmt::format("central directory entry #{} is truncated", k));
    const uint8_t* p = &cd[pos];
    if (rd32(p) != kSigCentral)
      error(fmt::format("central directory entry #{} has a bad signature", k));
    ZipEntry en;
    en.flags = rd16(p + 8);
    en.method = rd16(p + 10);
    en.crc32 = rd32(p + 16);
    const uint32_t csize32 = rd32(p + 20), usize32 = rd32(p + 24);
    const uint16_t nlen = rd16(p + 28), xlen = rd16(p + 30), clen = rd16(p + 32);
    const uint16_t disk_start16 = rd16(p + 34);
    const uint32_t lho32 = rd32(p + 42);
    if (cd_size - pos - 46 < static_cast<uint64_t>(nlen) + xlen + clen)
      error(fmt::format("central directory entry #{} runs past the central directory", k));
    en.name.assign(reinterpret_cast<const char*>(p + 46), nlen);
    en.compressed_size = csize32;
    en.uncompressed_size = usize32;
    en.local_header_offset = lho32;
    uint64_t disk_start = disk_start16;
    // Extra fields; zip64 (id 1) holds, in order, the fields whose 32-bit values are all ones.
    const uint8_t* x = p + 46 + nlen;
    const uint8_t* xend = x + xlen;
    bool need_u = usize32 == 0xffffffffu, need_c = csize32 == 0xffffffffu,
         need_o = lho32 == 0xffffffffu, need_d = disk_start16 == 0xffffu;
    while (xend - x >= 4) {
      const uint16_t id = rd16(x), len = rd16(x + 2);
      if (xend - x - 4 < len)
        error(fmt::format("entry '{}': extra field runs past its end", en.name));
      if (id == 0x0001) {
        const uint8_t* f = x + 4;
        const uint8_t* fend = f + len;
        auto take = [&](uint64_t* dst, int bytes) {
          if (fend - f < bytes)
            error(fmt::format("entry '{}': zip64 extra field is too short", en.name));
          *dst = bytes == 8 ? rd64(f) : rd32(f);
          f += bytes;
        };
        if (need_u) take(&en.uncompressed_size, 8), need_u = false;
        if (need_c) take(&en.compressed_size, 8), need_c = false;
        if (need_o) take(&en.local_header_offset, 8), need_o = false;
        if (need_d) take(&disk_start, 4), need_d = false;
      }
      x += 4 + len;
    }
    // Values of all ones without a zip64 field are taken literally and validated below.
    pos += 46 + static_cast<uint64_t>(nlen) + xlen + clen;

    if (en.name.empty()) error(fmt::format("central directory entry #{} has an empty name", k));
    if (en.name.find('\0') != std::string::npos)
      error(fmt::format("central directory entry #{} has a name containing NUL", k));
    if (disk_start != 0) error(fmt::format("entry '{}': multi-disk archives are not supported", en.name));
    if (en.flags & 0x41)
      error(fmt::format("entry '{}' is encrypted, which is not supported", en.name));
    if (en.method != 0 && en.method != 8)
      error(fmt::format("entry '{}' uses compression method {}; only 0 (stored) and 8 (deflate) "
                        "are supported",
                        en.name, en.method));
    if (en.method == 0 && en.compressed_size != en.uncompressed_size)
      error(fmt::format("entry '{}' is stored but its compressed size {} differs from its size {}",
                        en.name, en.compressed_size, en.uncompressed_size));
    if (en.method == 8 && en.uncompressed_size / kMaxDeflateRatio > en.compressed_size + 1)
      error(fmt::format("entry '{}' declares {} bytes from {} compressed bytes, which deflate "
                        "cannot produce",
                        en.name, en.uncompressed_size, en.compressed_size));
    if (!by_name_.emplace(en.name, entries_.size()).second)
      error(fmt::format("entry '{}' appears twice in the central directory", en.name));
    entries_.push_back(std::move(en));
  }
  if (pos != cd_size)
    error(fmt::format("central directory has {} unexpected trailing bytes", cd_size - pos));

  // --- Local headers; every entry's data must lie before the central directory.
  for (ZipEntry& en : entries_) {
    if (en.local_header_offset > cd_off || cd_off - en.local_header_offset < 30)
      error(fmt::format("entry '{}': local header offset {} is out of bounds", en.name,
                        en.local_header_offset));
    uint8_t h[30];
    read_at(en.local_header_offset, h, 30, "local header");
    if (rd32(h) != kSigLocal)
      error(fmt::format("entry '{}': bad local header signature at offset {}", en.name,
                        en.local_header_offset));
    const uint16_t nlen = rd16(h + 26), xlen = rd16(h + 28);
    const uint64_t hdr_end = en.local_header_offset + 30 + nlen + xlen;
    if (hdr_end > cd_off)
      error(fmt::format("entry '{}': local header runs into the central directory", en.name));
    std::string lname(nlen, '\0');
    read_at(en.local_header_offset + 30, lname.data(), nlen, "local header name");
    if (lname != en.name)
      error(fmt::format("entry '{}': local header names it '{}'", en.name, lname));
    if (rd16(h + 8) != en.method)
      error(fmt::format("entry '{}': local header and central directory disagree on the "
                        "compression method",
                        en.name));
    en.data_offset = hdr_end;
    if (en.compressed_size > cd_off - hdr_end)
      error(fmt::format("entry '{}': its {} bytes of data (at offset {}) run past the start of the "
                        "central directory at {}; truncated or corrupt archive",
                        en.name, en.compressed_size, hdr_end, cd_off));
  }
  std::vector<const ZipEntry*> order;
  order.reserve(entries_.size());
  for (const ZipEntry& en : entries_) order.push_back(&en);
  std::sort(order.begin(), order.end(), [](const ZipEntry* a, const ZipEntry* b) {
    return a->local_header_offset < b->local_header_offset;
  });
  for (size_t i = 1; i < order.size(); ++i) {
    const ZipEntry* a = order[i - 1];
    const ZipEntry* b = order[i];
    if (a->data_offset + a->compressed_size > b->local_header_offset)
      error(fmt::format("entries '{}' and '{}' overlap", a->name, b->name));
  }
}

const ZipEntry* ZipReader::find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &entries_[it->second];
}

std::vector<uint8_t> ZipReader::read(const ZipEntry& en, uint64_t max_size) {
  if (en.uncompressed_size > max_size)
    error(fmt::format("entry '{}' is {} bytes, more than the {} allowed for it", en.name,
                      en.uncompressed_size, max_size));
  std::vector<uint8_t> out;
  if (en.method == 0) {
    out.resize(en.uncompressed_size);  // == compressed size, validated to lie inside the file
    read_at(en.data_offset, out.data(), en.compressed_size, "entry data");
  } else {
    z_stream zs{};
    if (inflateInit2(&zs, -MAX_WBITS) != Z_OK)
      error(fmt::format("entry '{}': cannot initialize zlib", en.name));
    InflateGuard guard{&zs};
    std::vector<uint8_t> in(std::min<uint64_t>(en.compressed_size, 1u << 20));
    uint64_t in_pos = en.data_offset, in_left = en.compressed_size, produced = 0;
    const uint64_t limit = en.uncompressed_size;
    int ret = Z_OK;
    while (ret != Z_STREAM_END) {
      if (zs.avail_in == 0) {
        if (in_left == 0)
          error(fmt::format("entry '{}': deflate data is truncated", en.name));
        const uint64_t n = std::min<uint64_t>(in_left, in.size());
        read_at(in_pos, in.data(), n, "entry data");
        zs.next_in = in.data();
        zs.avail_in = static_cast<uInt>(n);
        in_pos += n;
        in_left -= n;
      }
      if (produced == out.size()) {
        // Grow with the data actually produced (never trusting the declared size up front);
        // one byte past the declared size detects overlong streams.
        const uint64_t grow = std::clamp<uint64_t>(produced, 1u << 16, 1u << 28);
        out.resize(std::min<uint64_t>(produced + grow, limit + 1));
      }
      const uint64_t avail = std::min<uint64_t>(out.size() - produced, 1u << 30);
      zs.next_out = out.data() + produced;
      zs.avail_out = static_cast<uInt>(avail);
      ret = inflate(&zs, Z_NO_FLUSH);
      produced += avail - zs.avail_out;
      if (ret == Z_NEED_DICT || ret == Z_DATA_ERROR || ret == Z_MEM_ERROR || ret == Z_STREAM_ERROR)
        error(fmt::format("entry '{}': corrupt deflate data ({})", en.name,
                          zs.msg ? zs.msg : "zlib error"));
      if (produced > limit)
        error(fmt::format("entry '{}' inflates to more than its declared {} bytes", en.name, limit));
      if (ret == Z_BUF_ERROR && zs.avail_in != 0 && zs.avail_out != 0)
        error(fmt::format("entry '{}': deflate stream makes no progress", en.name));
    }
    if (zs.avail_in != 0 || in_left != 0)
      error(fmt::format("entry '{}': trailing bytes after the deflate stream", en.name));
    if (produced != limit)
      error(fmt::format("entry '{}' inflates to {} bytes but declares {}", en.name, produced,
                        limit));
    out.resize(produced);
  }
  uLong crc = crc32_z(0L, Z_NULL, 0);
  crc = crc32_z(crc, out.data(), out.size());
  if (static_cast<uint32_t>(crc) != en.crc32)
    error(fmt::format("entry '{}': CRC-32 mismatch (stored {:08x}, computed {:08x}); the archive "
                      "is corrupt",
                      en.name, en.crc32, static_cast<uint32_t>(crc)));
  return out;
}

}  // namespace dl::io
