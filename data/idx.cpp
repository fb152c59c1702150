#include "data/idx.h"

#include <zlib.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <filesystem>
#include <limits>

#include "data/file_util.h"

namespace dl::data {

int64_t idx_type_size(IdxType t) {
  switch (t) {
    case IdxType::UInt8: return 1;
    case IdxType::Int8: return 1;
    case IdxType::Int16: return 2;
    case IdxType::Int32: return 4;
    case IdxType::Float32: return 4;
    case IdxType::Float64: return 8;
  }
  return 0;
}

const char* idx_type_name(IdxType t) {
  switch (t) {
    case IdxType::UInt8: return "uint8";
    case IdxType::Int8: return "int8";
    case IdxType::Int16: return "int16";
    case IdxType::Int32: return "int32";
    case IdxType::Float32: return "float32";
    case IdxType::Float64: return "float64";
  }
  return "?";
}

namespace {

bool valid_type(uint8_t code) {
  return code == 0x08 || code == 0x09 || code == 0x0B || code == 0x0C || code == 0x0D || code == 0x0E;
}

uint32_t be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

struct GzReader {
  gzFile f = nullptr;
  std::string path;
  ~GzReader() {
    if (f) gzclose(f);
  }
  // Reads up to n bytes (fewer only at the end of the data); throws on a corrupt stream.
  int64_t read(uint8_t* dst, int64_t n) {
    int64_t got = 0;
    while (got < n) {
      unsigned chunk = static_cast<unsigned>(std::min<int64_t>(n - got, int64_t{1} << 30));
      int r = gzread(f, dst + got, chunk);
      if (r < 0) {
        int err = 0;
        const char* msg = gzerror(f, &err);
        fail("cannot read IDX file '{}': corrupt gzip data ({})", path, msg ? msg : "unknown zlib error");
      }
      if (r == 0) break;
      got += r;
    }
    return got;
  }
  // After a short read: a gzip stream that ended early says so here.
  std::string stream_note() const {
    int err = Z_OK;
    const char* msg = gzerror(f, &err);
    if (err != Z_OK && msg && *msg) return fmt::format(" (zlib: {})", msg);
    return "";
  }
};

}  // namespace

IdxArray read_idx(const std::string& path, const IdxReadOptions& opts) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) fail("IDX file '{}' does not exist", path);
  if (!std::filesystem::is_regular_file(path, ec)) fail("IDX file '{}' is not a regular file", path);
  const int64_t file_size = static_cast<int64_t>(std::filesystem::file_size(path, ec));
  if (ec) fail("cannot read IDX file '{}': {}", path, ec.message());

  GzReader in;
  in.path = path;
  in.f = gzopen(path.c_str(), "rb");
  if (!in.f) fail("cannot open IDX file '{}'", path);
  gzbuffer(in.f, 1 << 18);
  const bool compressed = gzdirect(in.f) == 0;
  const char* kind = compressed ? "gzip-compressed IDX file" : "IDX file";

  uint8_t magic[4];
  int64_t got = in.read(magic, 4);
  if (got < 4)
    fail("{} '{}' is truncated: the header needs 4 magic bytes, the file holds {}{}", kind, path, got, in.stream_note());
  if (magic[0] != 0 || magic[1] != 0)
    fail("{} '{}' has a wrong magic number 0x{:08x}: expected 0x0000TTNN (two zero bytes, a type code, the "
         "number of dims)", kind, path, be32(magic));
  if (!valid_type(magic[2]))
    fail("{} '{}' has an unknown element type code 0x{:02x} (magic 0x{:08x}); expected 0x08 (uint8), 0x09, "
         "0x0B, 0x0C, 0x0D or 0x0E", kind, path, magic[2], be32(magic));
  const int64_t ndim = magic[3];
  if (ndim < 1 || ndim > opts.max_dims)
    fail("{} '{}' declares {} dimensions (magic 0x{:08x}); expected 1 to {}", kind, path, ndim, be32(magic),
         opts.max_dims);

  IdxArray out;
  out.type = static_cast<IdxType>(magic[2]);
  std::vector<uint8_t> dimbytes(4 * ndim);
  got = in.read(dimbytes.data(), 4 * ndim);
  if (got < 4 * ndim)
    fail("{} '{}' is truncated: the header declares {} dimensions ({} bytes of sizes) but only {} bytes "
         "follow{}", kind, path, ndim, 4 * ndim, got, in.stream_note());
  int64_t numel = 1;
  bool overflow = false;
  for (int64_t d = 0; d < ndim; ++d) {
    int64_t s = be32(&dimbytes[4 * d]);
    out.dims.push_back(s);
    if (s != 0 && numel > std::numeric_limits<int64_t>::max() / 16 / s) overflow = true;
    else numel *= s;
  }
  const int64_t esize = idx_type_size(out.type);
  if (overflow || numel * esize > opts.max_bytes)
    fail("{} '{}' declares dims {} of {} ({} bytes), more than the limit of {} bytes", kind, path,
         shape_str(out.dims), idx_type_name(out.type), overflow ? std::string("too many") : std::to_string(numel * esize),
         opts.max_bytes);
  const int64_t header = 4 + 4 * ndim;
  const int64_t data_bytes = numel * esize;
  const std::string what = fmt::format("dims {} of {} need {} data bytes after the {}-byte header",
                                       shape_str(out.dims), idx_type_name(out.type), data_bytes, header);

  if (!compressed) {
    // The plain file's size is known: check it before allocating.
    if (file_size < header + data_bytes)
      fail("IDX file '{}' is truncated: {}, but the file has only {}", path, what, file_size - header);
    if (file_size > header + data_bytes)
      fail("IDX file '{}' has {} bytes of trailing data: {}", path, file_size - header - data_bytes, what);
    out.bytes.resize(static_cast<size_t>(data_bytes));
    got = in.read(out.bytes.data(), data_bytes);
    if (got != data_bytes) fail("IDX file '{}' is truncated: {}, read only {}", path, what, got);
    return out;
  }

  // Compressed: grow the buffer with what actually arrives, never past the declared size.
  const int64_t chunk = int64_t{1} << 22;
  int64_t have = 0;
  out.bytes.reserve(static_cast<size_t>(std::min(data_bytes, std::max<int64_t>(file_size * 4, chunk))));
  while (have < data_bytes) {
    int64_t want = std::min(chunk, data_bytes - have);
    if (static_cast<int64_t>(out.bytes.capacity()) < have + want)
      out.bytes.reserve(static_cast<size_t>(std::min(data_bytes, std::max(have + want, have * 2))));
    out.bytes.resize(static_cast<size_t>(have + want));
    int64_t r = in.read(out.bytes.data() + have, want);
    have += r;
    if (r < want) {
      std::string note = in.stream_note();
      fail("gzip-compressed IDX file '{}' is truncated: {}, but the decompressed data has only {}{}", path, what,
           have, note);
    }
  }
  uint8_t extra[256];
  int64_t more = in.read(extra, sizeof extra);
  if (more > 0)
    fail("gzip-compressed IDX file '{}' has trailing data after the declared elements ({}{} more bytes): {}", path,
         more, more == static_cast<int64_t>(sizeof extra) ? "+" : "", what);
  // the data is complete; the stream must also end cleanly (its CRC and length trailer read and checked)
  int zerr = Z_OK;
  const char* zmsg = gzerror(in.f, &zerr);
  if (zerr != Z_OK)
    fail("gzip-compressed IDX file '{}' is truncated or corrupt after its data (zlib: {})", path,
         zmsg && *zmsg ? zmsg : "unexpected end of stream");
  return out;
}

Tensor IdxArray::to_tensor() const {
  const int64_t n = numel();
  DL_CHECK(static_cast<int64_t>(bytes.size()) == n * idx_type_size(type), "IDX array holds {} bytes for {} elements",
           bytes.size(), n);
  const uint8_t* p = bytes.data();
  switch (type) {
    case IdxType::UInt8: {
      Tensor t = empty(dims, DType::UInt8);
      if (n) std::memcpy(t.data_ptr<uint8_t>(), p, static_cast<size_t>(n));
      return t;
    }
    case IdxType::Int8:
    case IdxType::Int16:
    case IdxType::Int32: {
      Tensor t = empty(dims, DType::Int64);
      int64_t* o = t.data_ptr<int64_t>();
      for (int64_t i = 0; i < n; ++i) {
        if (type == IdxType::Int8) o[i] = static_cast<int8_t>(p[i]);
        else if (type == IdxType::Int16) o[i] = static_cast<int16_t>((p[2 * i] << 8) | p[2 * i + 1]);
        else o[i] = static_cast<int32_t>(be32(p + 4 * i));
      }
      return t;
    }
    case IdxType::Float32: {
      Tensor t = empty(dims, DType::Float32);
      float* o = t.data_ptr<float>();
      for (int64_t i = 0; i < n; ++i) o[i] = std::bit_cast<float>(be32(p + 4 * i));
      return t;
    }
    case IdxType::Float64: {
      Tensor t = empty(dims, DType::Float64);
      double* o = t.data_ptr<double>();
      for (int64_t i = 0; i < n; ++i) {
        uint64_t v = (uint64_t{be32(p + 8 * i)} << 32) | be32(p + 8 * i + 4);
        o[i] = std::bit_cast<double>(v);
      }
      return t;
    }
  }
  fail("IDX array has an unknown element type");
}

void write_idx(const std::string& path, IdxType type, const Shape& dims, const std::vector<uint8_t>& bytes,
               bool gzip) {
  if (dims.empty() || dims.size() > 255) fail("write_idx('{}'): expected 1 to 255 dims, got {}", path, dims.size());
  for (int64_t d : dims)
    if (d < 0 || d > 0xffffffffLL) fail("write_idx('{}'): dim {} does not fit in uint32", path, d);
  if (static_cast<int64_t>(bytes.size()) != shape_numel(dims) * idx_type_size(type))
    fail("write_idx('{}'): dims {} of {} need {} bytes, got {}", path, shape_str(dims), idx_type_name(type),
         shape_numel(dims) * idx_type_size(type), bytes.size());
  std::vector<uint8_t> buf = {0, 0, static_cast<uint8_t>(type), static_cast<uint8_t>(dims.size())};
  for (int64_t d : dims)
    for (int s = 24; s >= 0; s -= 8) buf.push_back(static_cast<uint8_t>((d >> s) & 0xff));
  buf.insert(buf.end(), bytes.begin(), bytes.end());
  if (!gzip) {
    write_file_atomic(path, buf.data(), buf.size());
    return;
  }
  replace_file_atomic(path, [&](const std::string& tmp) {
    gzFile f = gzopen(tmp.c_str(), "wb6");
    if (!f) fail("write_idx: cannot create '{}'", tmp);
    size_t done = 0;
    bool ok = true;
    while (done < buf.size() && ok) {
      unsigned n = static_cast<unsigned>(std::min<size_t>(buf.size() - done, size_t{1} << 30));
      ok = gzwrite(f, buf.data() + done, n) == static_cast<int>(n);
      done += n;
    }
    ok = (gzclose(f) == Z_OK) && ok;
    if (!ok) fail("write_idx: cannot write gzip data to '{}'", tmp);
  });
}

}  // namespace dl::data
