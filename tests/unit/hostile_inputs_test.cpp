// Hostile inputs for every file parser a user can point at a file from anywhere: the project's
// checkpoints, IDX files, images, and (where tests/unit/weights_io_test.cpp leaves gaps) .pth /
// safetensors through the user-facing dl::load_weights. Each bad file must give a dl::Error that
// names the file and the problem, and must not allocate anything huge first.
//
// Allocation guard: tests/unit/alloc_guard.h (operator new refuses and counts requests above
// 512 MB; malloc users are judged by the peak RSS).
#include <doctest/doctest.h>

#include "unit/file_test_util.h"

#include <unistd.h>
#include <zlib.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/idx.h"
#include "data/image_io.h"
#include "models/checkpoint.h"
#include "models/io/safetensors.h"
#include "models/weights.h"
#include "tensor/error.h"
#include "unit/alloc_guard.h"

// stb's writers for building JPEG and BMP inputs (data/image_io.cpp keeps its copy private).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STBI_WRITE_NO_STDIO
#include <stb/stb_image_write.h>
#pragma GCC diagnostic pop

namespace {

namespace fs = std::filesystem;

// ------------------------------------------------------------------------------------------ utils

using dl::test::TmpDir;
using dl::test::read_file;
using dl::test::write_file;

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

using dl::test::kHugeAllocation;
using dl::test::kMaxRssGrowthKb;
using dl::test::Outcome;
const auto run = dl::test::run_guarded;

void check_no_huge_allocation(const Outcome& o) {
  INFO("operator new was asked for " << o.largest_huge << " bytes (" << o.huge_requests
                                     << " requests above " << kHugeAllocation << ")");
  CHECK(o.huge_requests == 0);
  INFO("peak RSS grew by " << o.rss_growth_kb / 1024 << " MB");
  CHECK(o.rss_growth_kb <= kMaxRssGrowthKb);
}

// f must throw a dl::Error whose message names `file` and contains `phrase`, without allocating
// anything huge.
void expect_error(const std::function<void()>& f, const std::string& file, const std::string& phrase) {
  const Outcome o = run(f);
  INFO("expected a dl::Error naming '" << file << "' and saying '" << phrase << "'; got: " << o.message);
  CHECK(o.dl_error);
  CHECK(contains(o.message, file));
  CHECK(contains(o.message, phrase));
  check_no_huge_allocation(o);
}

// f may succeed or throw a dl::Error, nothing else, and allocates nothing huge. Returns true when
// it threw a dl::Error.
bool expect_error_or_success(const std::function<void()>& f, const std::string& what) {
  const Outcome o = run(f);
  INFO(what << ": " << o.message);
  CHECK_FALSE(o.other_exception);
  check_no_huge_allocation(o);
  return o.dl_error;
}

void put_le(std::string& s, size_t at, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) s[at + i] = static_cast<char>(v >> (8 * i));
}
void put_be(std::string& s, size_t at, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) s[at + i] = static_cast<char>(v >> (8 * (bytes - 1 - i)));
}
std::string le64(uint64_t v) {
  std::string s(8, '\0');
  put_le(s, 0, v, 8);
  return s;
}

// gzip (not zlib) framing, as gzip(1) and Python's gzip module write it.
std::string gzip_bytes(const std::string& data, int level = 6) {
  z_stream zs{};
  REQUIRE(deflateInit2(&zs, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  std::string out(deflateBound(&zs, data.size()) + 64, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  zs.avail_in = static_cast<uInt>(data.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  REQUIRE(deflate(&zs, Z_FINISH) == Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

// gzip of `head` followed by `zeros` zero bytes, deflated in chunks (the zeros are never held in
// memory, so the peak RSS stays a fair judge of what the reader allocates).
std::string gzip_zeros(const std::string& head, size_t zeros) {
  z_stream zs{};
  REQUIRE(deflateInit2(&zs, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  std::string out;
  std::vector<char> buf(1 << 16);
  const std::string chunk(1 << 20, '\0');
  auto pump = [&](const char* data, size_t n, int flush) {
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data));
    zs.avail_in = static_cast<uInt>(n);
    int ret;
    do {
      zs.next_out = reinterpret_cast<Bytef*>(buf.data());
      zs.avail_out = static_cast<uInt>(buf.size());
      ret = deflate(&zs, flush);
      REQUIRE(ret != Z_STREAM_ERROR);
      out.append(buf.data(), buf.size() - zs.avail_out);
    } while (zs.avail_out == 0 || (flush == Z_FINISH && ret != Z_STREAM_END));
  };
  pump(head.data(), head.size(), Z_NO_FLUSH);
  for (size_t done = 0; done < zeros; done += chunk.size())
    pump(chunk.data(), std::min(chunk.size(), zeros - done), Z_NO_FLUSH);
  pump(nullptr, 0, Z_FINISH);
  deflateEnd(&zs);
  return out;
}

// ------------------------------------------------------------------------------------ zip, pickle

struct ZipItem {
  std::string name;
  std::string data;            // the bytes as stored (already deflated for method 8)
  uint16_t method = 0;         // 0 stored, 8 deflate
  uint64_t declared_size = 0;  // uncompressed size written in the headers
  uint32_t crc = 0;
  bool zip64 = false;          // sizes in a zip64 extra field (headers hold 0xffffffff)
};

ZipItem stored(const std::string& name, const std::string& data) {
  ZipItem z{name, data, 0, data.size(), 0, false};
  z.crc = static_cast<uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(data.data()), static_cast<uInt>(data.size())));
  return z;
}

// A zip archive as torch.save writes it (local headers, central directory, end record).
std::string zip_archive(const std::vector<ZipItem>& items) {
  std::string out, cd;
  for (const ZipItem& it : items) {
    const uint64_t csize = it.data.size();
    std::string extra;
    if (it.zip64) {
      extra.assign(20, '\0');
      put_le(extra, 0, 1, 2), put_le(extra, 2, 16, 2), put_le(extra, 4, it.declared_size, 8), put_le(extra, 12, csize, 8);
    }
    const uint64_t u32 = it.zip64 ? 0xffffffffu : it.declared_size, c32 = it.zip64 ? 0xffffffffu : csize;
    const size_t off = out.size();
    std::string h(30, '\0');
    put_le(h, 0, 0x04034b50, 4), put_le(h, 4, 45, 2), put_le(h, 8, it.method, 2), put_le(h, 14, it.crc, 4);
    put_le(h, 18, c32, 4), put_le(h, 22, u32, 4), put_le(h, 26, it.name.size(), 2), put_le(h, 28, extra.size(), 2);
    out += h + it.name + extra + it.data;
    std::string c(46, '\0');
    put_le(c, 0, 0x02014b50, 4), put_le(c, 4, 45, 2), put_le(c, 6, 45, 2), put_le(c, 10, it.method, 2);
    put_le(c, 16, it.crc, 4), put_le(c, 20, c32, 4), put_le(c, 24, u32, 4), put_le(c, 28, it.name.size(), 2);
    put_le(c, 30, extra.size(), 2), put_le(c, 42, off, 4);
    cd += c + it.name + extra;
  }
  std::string eocd(22, '\0');
  put_le(eocd, 0, 0x06054b50, 4), put_le(eocd, 8, items.size(), 2), put_le(eocd, 10, items.size(), 2);
  put_le(eocd, 12, cd.size(), 4), put_le(eocd, 16, out.size(), 4);
  return out + cd + eocd;
}

// The pickle torch.save writes for {name: tensor} with the tensor a view (shape, strides) of
// storage "0" holding `numel` float32 elements.
std::string state_dict_pickle(const std::string& name, int64_t numel, const std::vector<int64_t>& shape,
                              const std::vector<int64_t>& strides) {
  std::string p = "\x80\x02";
  auto str = [&](const std::string& v) {
    p += 'X';
    p.append(4, '\0');
    put_le(p, p.size() - 4, v.size(), 4);
    p += v;
  };
  auto integer = [&](int64_t v) {
    p += "\x8a\x08";
    p.append(8, '\0');
    put_le(p, p.size() - 8, static_cast<uint64_t>(v), 8);
  };
  auto ints = [&](const std::vector<int64_t>& v) {
    p += '(';
    for (int64_t x : v) integer(x);
    p += 't';
  };
  p += "ccollections\nOrderedDict\n)R(";
  str(name);
  p += "ctorch._utils\n_rebuild_tensor_v2\n((";
  str("storage");
  p += "ctorch\nFloatStorage\n";
  str("0");
  str("cpu");
  integer(numel);
  p += "tQ";
  integer(0);
  ints(shape);
  ints(strides);
  p += "\x89" "ccollections\nOrderedDict\n)RtRu.";
  return p;
}

// ---------------------------------------------------------------------------------- safetensors

// A safetensors file from a header JSON text and the data section.
std::string safetensors_file(const std::string& header, const std::string& data) {
  return le64(header.size()) + header + data;
}

std::string checkpoint_header(const nlohmann::json& tensors, const nlohmann::json& metadata) {
  nlohmann::json h = tensors;
  if (!metadata.is_null()) h["__metadata__"] = metadata;
  return h.dump();
}

const std::string kFormatTag = "dl-checkpoint-v1";

// ------------------------------------------------------------------------------------------ idx

std::string idx_header(uint8_t type, const std::vector<uint32_t>& dims) {
  std::string s = {0, 0, static_cast<char>(type), static_cast<char>(dims.size())};
  for (uint32_t d : dims) {
    s.append(4, '\0');
    put_be(s, s.size() - 4, d, 4);
  }
  return s;
}

// ---------------------------------------------------------------------------------------- image

void append_to_string(void* ctx, void* data, int size) {
  static_cast<std::string*>(ctx)->append(static_cast<const char*>(data), static_cast<size_t>(size));
}

dl::data::Image test_image(int64_t w, int64_t h, int64_t c) {
  dl::data::Image img(w, h, c);
  for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = static_cast<uint8_t>(i * 29 + 7);
  return img;
}

std::string jpeg_bytes(const dl::data::Image& img) {
  std::string out;
  REQUIRE(stbi_write_jpg_to_func(append_to_string, &out, static_cast<int>(img.width), static_cast<int>(img.height),
                                 static_cast<int>(img.channels), img.pixels.data(), 90));
  return out;
}

std::string bmp_bytes(const dl::data::Image& img) {
  std::string out;
  REQUIRE(stbi_write_bmp_to_func(append_to_string, &out, static_cast<int>(img.width), static_cast<int>(img.height),
                                 static_cast<int>(img.channels), img.pixels.data()));
  return out;
}

// Offset of the first JPEG marker 0xFF <code>.
size_t jpeg_marker(const std::string& j, uint8_t code) {
  for (size_t i = 2; i + 1 < j.size(); ++i)
    if (static_cast<uint8_t>(j[i]) == 0xff && static_cast<uint8_t>(j[i + 1]) == code) return i;
  FAIL("JPEG marker not found");
  return 0;
}

// A PNG / JPEG / BMP whose header declares width x height, with the original (small) body.
std::string png_with_size(uint32_t w, uint32_t h) {
  std::string png = dl::data::encode_png(test_image(4, 4, 3));
  put_be(png, 16, w, 4);  // IHDR: signature (8), length (4), "IHDR" (4), width, height
  put_be(png, 20, h, 4);
  return png;
}
std::string jpeg_with_size(uint16_t w, uint16_t h) {
  std::string jpg = jpeg_bytes(test_image(16, 16, 3));
  const size_t sof = jpeg_marker(jpg, 0xc0);  // FF C0, length (2), precision (1), height, width
  put_be(jpg, sof + 5, h, 2);
  put_be(jpg, sof + 7, w, 2);
  return jpg;
}
std::string bmp_with_size(int32_t w, int32_t h) {
  std::string bmp = bmp_bytes(test_image(4, 4, 3));
  put_le(bmp, 18, static_cast<uint32_t>(w), 4);  // BITMAPINFOHEADER: width, height (signed)
  put_le(bmp, 22, static_cast<uint32_t>(h), 4);
  return bmp;
}

}  // namespace

// ================================================================================== checkpoints

TEST_CASE("hostile checkpoint: a valid one loads (control for the cases below)") {
  TmpDir tmp;
  const std::string p = tmp.path("ok.ckpt");
  dl::Checkpoint c;
  c.model.emplace_back("fc.weight", dl::from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3}));
  c.optimizer.emplace_back("0.momentum_buffer", dl::from_vector<float>({0, 0}, {2}));
  c.meta = {{"epoch", 3}};
  dl::save_checkpoint(p, c);
  const dl::Checkpoint back = dl::load_checkpoint(p);
  REQUIRE(back.model.size() == 1);
  CHECK(back.model[0].first == "fc.weight");
  CHECK(back.model[0].second.to_vector<float>() == std::vector<float>{1, 2, 3, 4, 5, 6});
  REQUIRE(back.optimizer.size() == 1);
  CHECK(back.meta["epoch"] == 3);

  // the same bytes, written by hand as the cases below are: also accepted
  const std::string handmade = safetensors_file(
      checkpoint_header({{"model/w", {{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {0, 8}}}}},
                        {{"format", kFormatTag}, {"dl", R"({"epoch": 1})"}}),
      std::string(8, '\0'));
  write_file(p, handmade);
  CHECK(dl::load_checkpoint(p).model.size() == 1);
}

TEST_CASE("hostile checkpoint: missing, truncated or not safetensors at all") {
  TmpDir tmp;
  const std::string p = tmp.path("bad.ckpt");
  auto load = [&] { (void)dl::load_checkpoint(p); };
  expect_error(load, p, "does not exist");
  fs::create_directories(p);
  expect_error(load, p, "not a regular file");
  fs::remove(p);
  write_file(p, "");
  expect_error(load, p, "too small");
  write_file(p, "PK\x03\x04 not a checkpoint");
  expect_error(load, p, "header length");
  write_file(p, le64(uint64_t{1} << 62) + "{}");  // header length beyond any limit
  expect_error(load, p, "exceeds the limit");
  write_file(p, le64(uint64_t{50} << 20) + "{}");  // 50 MB header declared, 2 bytes present
  expect_error(load, p, "runs past the end");
  write_file(p, le64(8) + "{\"a\":   ");
  expect_error(load, p, "not valid JSON");
}

TEST_CASE("hostile checkpoint: safetensors that are not ours") {
  TmpDir tmp;
  const std::string p = tmp.path("foreign.ckpt");
  auto load = [&] { (void)dl::load_checkpoint(p); };
  const nlohmann::json tensor = {{"model/w", {{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {0, 8}}}}};
  const std::string data(8, '\0');

  SUBCASE("no format tag: a plain weights file") {
    dl::save_safetensors(p, dl::TensorDict{{"w", dl::from_vector<float>({1, 2}, {2})}});
    expect_error(load, p, "not a checkpoint written by this framework");
    write_file(p, safetensors_file(checkpoint_header(tensor, nullptr), data));
    expect_error(load, p, "'dl-checkpoint-v1' format tag");
  }
  SUBCASE("another format tag") {
    write_file(p, safetensors_file(checkpoint_header(tensor, {{"format", "pt"}, {"dl", "{}"}}), data));
    expect_error(load, p, "not a checkpoint written by this framework");
    write_file(p, safetensors_file(checkpoint_header(tensor, {{"format", "dl-checkpoint-v2"}, {"dl", "{}"}}), data));
    expect_error(load, p, "not a checkpoint written by this framework");
  }
  SUBCASE("metadata that is not a string map") {
    write_file(p, safetensors_file(checkpoint_header(tensor, {{"format", kFormatTag}, {"dl", {{"epoch", 1}}}}), data));
    expect_error(load, p, "__metadata__ value for 'dl' is not a string");
    write_file(p, safetensors_file(checkpoint_header(tensor, {"format", kFormatTag}), data));
    expect_error(load, p, "__metadata__ is not a JSON object");
  }
  SUBCASE("bad JSON metadata") {
    for (const char* bad : {"{\"epoch\": 3", "", "{epoch: 3}", "[1, 2", "\"unterminated", "{\"a\": 1e99999}",
                            "{\"a\": \"\\ud800\"}", "nul"}) {
      INFO("metadata text: " << bad);
      write_file(p, safetensors_file(checkpoint_header(tensor, {{"format", kFormatTag}, {"dl", bad}}), data));
      expect_error(load, p, "corrupt metadata");
    }
    // deeply nested JSON: refused or parsed, but never a stack overflow
    const std::string deep = std::string(100000, '[') + std::string(100000, ']');
    write_file(p, safetensors_file(checkpoint_header(tensor, {{"format", kFormatTag}, {"dl", deep}}), data));
    expect_error_or_success(load, "100000 nested JSON arrays in the metadata");
  }
  SUBCASE("no metadata \"dl\"") {
    write_file(p, safetensors_file(checkpoint_header(tensor, {{"format", kFormatTag}}), data));
    expect_error(load, p, "corrupt metadata");
  }
  SUBCASE("tensors with foreign names") {
    for (const char* name : {"fc.weight", "modelx/w", "Model/w", "optimizer/w", "/w", "model"}) {
      INFO("tensor name: " << name);
      const nlohmann::json t = {{name, {{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {0, 8}}}}};
      write_file(p, safetensors_file(checkpoint_header(t, {{"format", kFormatTag}, {"dl", "{}"}}), data));
      expect_error(load, p, std::string("unexpected tensor '") + name + "'");
    }
  }
  SUBCASE("tensor sizes and offsets that do not fit the file") {
    auto with = [&](const nlohmann::json& entry, const std::string& phrase) {
      write_file(p, safetensors_file(checkpoint_header({{"model/w", entry}}, {{"format", kFormatTag}, {"dl", "{}"}}),
                                     data));
      expect_error(load, p, phrase);
      expect_error(load, p, "model/w");
    };
    with({{"dtype", "F32"}, {"shape", {int64_t{1} << 40}}, {"data_offsets", {0, uint64_t{1} << 42}}}, "out of range");
    with({{"dtype", "F64"}, {"shape", {int64_t{1} << 61}}, {"data_offsets", {0, 8}}}, "overflows");
    with({{"dtype", "F32"}, {"shape", {65535, 65535, 65535, 65535}}, {"data_offsets", {0, 8}}}, "overflows");
    with({{"dtype", "F32"}, {"shape", {-1}}, {"data_offsets", {0, 8}}}, "negative");
    with({{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {4, 12}}}, "out of range");
    with({{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {uint64_t{1} << 63, (uint64_t{1} << 63) + 8}}},
         "out of range");
    with({{"dtype", "F32"}, {"shape", {4}}, {"data_offsets", {0, 8}}}, "needs 16");
    with({{"dtype", "Q4"}, {"shape", {2}}, {"data_offsets", {0, 8}}}, "unknown dtype");
    std::vector<int64_t> many(65, 1);
    with({{"dtype", "F32"}, {"shape", many}, {"data_offsets", {0, 4}}}, "dimensions");
  }
}

TEST_CASE("hostile checkpoint: every truncation and random corruption of a valid one") {
  TmpDir tmp;
  const std::string p = tmp.path("mutant.ckpt");
  dl::Checkpoint c;
  c.model.emplace_back("conv.weight", dl::from_vector<float>({1, 2, 3, 4}, {2, 2}));
  c.model.emplace_back("bn.num_batches_tracked", dl::from_vector<int64_t>({7}, {1}));
  c.optimizer.emplace_back("0.exp_avg", dl::from_vector<double>({0.5, 0.25}, {2}));
  c.meta = {{"epoch", 2}, {"history", {{{"loss", 1.5}}}}};
  dl::save_checkpoint(p, c);
  const std::string good = read_file(p);
  size_t refused = 0;
  for (size_t cut = 0; cut < good.size(); ++cut) {
    write_file(p, good.substr(0, cut));
    const bool err = expect_error_or_success([&] { (void)dl::load_checkpoint(p); }, "cut at " + std::to_string(cut));
    refused += err;
  }
  CHECK(refused == good.size());  // a cut file is never accepted
  uint64_t state = 0x2545f4914f6cdd1dull;
  auto next = [&] {
    state ^= state << 13, state ^= state >> 7, state ^= state << 17;
    return state;
  };
  for (int i = 0; i < 400; ++i) {
    std::string m = good;
    for (int k = 0, n = 1 + static_cast<int>(next() % 4); k < n; ++k) m[next() % m.size()] = static_cast<char>(next());
    write_file(p, m);
    expect_error_or_success([&] { (void)dl::load_checkpoint(p); }, "mutant " + std::to_string(i));
  }
}

TEST_CASE("hostile checkpoint: a malformed generator state in the metadata") {
  // The RNG state is read back from a checkpoint's JSON on --resume; a corrupt one must be a
  // dl::Error like any other corrupt checkpoint, not a JSON library exception.
  const Outcome ok = run([] {
    (void)dl::generator_state_from_json(nlohmann::json::parse(R"({"s": [1, 2, 3, 4], "has_spare": false, "spare": 0.0})"));
  });
  CHECK_FALSE(ok.dl_error);
  CHECK_FALSE(ok.other_exception);
  for (const char* bad : {R"({})", R"([])", R"(null)", R"({"s": "1234", "has_spare": false, "spare": 0})",
                          R"({"s": [1, 2, 3], "has_spare": false, "spare": 0})",
                          R"({"s": [1, 2, 3, -4], "has_spare": false, "spare": 0})",
                          R"({"s": [1, 2, 3, 4.5], "has_spare": false, "spare": 0})",
                          R"({"s": [1, 2, 3, 4], "spare": 0})", R"({"s": [1, 2, 3, 4], "has_spare": "no", "spare": 0})",
                          R"({"s": [1, 2, 3, 4], "has_spare": true, "spare": "x"})"}) {
    INFO("generator state " << std::string(bad));
    const Outcome o = run([&] { (void)dl::generator_state_from_json(nlohmann::json::parse(bad)); });
    INFO(o.message);
    CHECK(o.dl_error);
  }
}

// ========================================================================================== IDX

TEST_CASE("hostile IDX: headers") {
  TmpDir tmp;
  const std::string p = tmp.path("bad-idx3-ubyte");
  auto load = [&] { (void)dl::data::read_idx(p); };
  expect_error(load, p, "does not exist");
  fs::create_directories(p);
  expect_error(load, p, "not a regular file");
  fs::remove(p);
  for (size_t n = 0; n < 4; ++n) {
    write_file(p, std::string("\0\0\x08\x01", n));
    expect_error(load, p, "truncated");
  }
  write_file(p, std::string("\x01\x00\x08\x01\x00\x00\x00\x01\x05", 9));
  expect_error(load, p, "wrong magic number");
  write_file(p, std::string("\x00\x00\x07\x01\x00\x00\x00\x01\x05", 9));
  expect_error(load, p, "unknown element type code 0x07");
  write_file(p, std::string("\x00\x00\x08\x00", 4));
  expect_error(load, p, "declares 0 dimensions");
  write_file(p, idx_header(0x08, std::vector<uint32_t>(255, 1)));
  expect_error(load, p, "declares 255 dimensions");
  write_file(p, idx_header(0x08, {3, 28, 28}).substr(0, 10));  // the dims cut short
  expect_error(load, p, "truncated");
}

TEST_CASE("hostile IDX: sizes that overflow or exceed the limit are refused before allocating") {
  TmpDir tmp;
  const std::string p = tmp.path("huge-idx");
  auto load = [&] { (void)dl::data::read_idx(p); };
  const std::string body(16, '\x01');
  for (bool gz : {false, true}) {
    INFO((gz ? "gzip" : "plain"));
    auto file = [&](uint8_t type, const std::vector<uint32_t>& dims) {
      const std::string raw = idx_header(type, dims) + body;
      write_file(p, gz ? gzip_bytes(raw) : raw);
    };
    file(0x08, {65535, 65535, 65535, 65535});  // 1.8e19 elements: overflows int64 with the size
    expect_error(load, p, "more than the limit");
    file(0x0E, {0xffffffffu, 0xffffffffu});  // 1.8e19 float64
    expect_error(load, p, "too many");
    file(0x0E, {0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu});
    expect_error(load, p, "more than the limit");
    file(0x0C, {0x40000000u, 4});  // 16 GB of int32: no overflow, above the 4 GB default limit
    expect_error(load, p, "more than the limit");
    // a limit chosen by the caller
    file(0x08, {1000, 1000});
    dl::data::IdxReadOptions small;
    small.max_bytes = 1000;
    expect_error([&] { (void)dl::data::read_idx(p, small); }, p, "more than the limit of 1000 bytes");
    // zero-sized dims next to huge ones hold no data: accepted only with exactly no data
    file(0x08, {0, 0xffffffffu, 0xffffffffu});
    expect_error(load, p, "trailing data");
    // 3 GB declared (under the limit), 16 bytes present
    file(0x08, {3, 1024, 1024, 1024});
    expect_error(load, p, "truncated");
    // 60000 images of 28x28 declared, 16 bytes present
    file(0x08, {60000, 28, 28});
    expect_error(load, p, "truncated");
  }
}

TEST_CASE("hostile IDX: truncated, trailing and corrupt data") {
  TmpDir tmp;
  const std::string p = tmp.path("data-idx");
  auto load = [&] { (void)dl::data::read_idx(p); };
  std::string raw = idx_header(0x0B, {2, 3});
  for (int i = 0; i < 12; ++i) raw.push_back(static_cast<char>(i));
  write_file(p, raw);
  CHECK(dl::data::read_idx(p).numel() == 6);  // control
  const std::string gz = gzip_bytes(raw);
  write_file(p, gz);
  CHECK(dl::data::read_idx(p).to_tensor().sizes() == dl::Shape{2, 3});

  write_file(p, raw + "x");
  expect_error(load, p, "trailing data");
  write_file(p, gzip_bytes(raw + "xyz"));
  expect_error(load, p, "trailing data");
  // every cut of the plain and the gzip file
  for (size_t cut = 0; cut < raw.size(); ++cut) {
    write_file(p, raw.substr(0, cut));
    expect_error(load, p, "truncated");
  }
  size_t refused = 0;
  for (size_t cut = 0; cut < gz.size(); ++cut) {
    write_file(p, gz.substr(0, cut));
    refused += expect_error_or_success(load, "gzip cut at " + std::to_string(cut));
  }
  // A cut inside the last deflate bytes or the 8-byte CRC/length trailer still yields every
  // declared element, but the file is truncated and its CRC never checked: refused as well.
  CHECK(refused == gz.size());
  // corrupt deflate data
  std::string bad = gz;
  for (size_t i = 12; i < bad.size() - 8; ++i) bad[i] = static_cast<char>(bad[i] ^ 0x5a);
  write_file(p, bad);
  expect_error(load, p, "gzip");
  // a gzip header and then garbage
  write_file(p, std::string("\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03", 10) + std::string(64, '\xff'));
  expect_error(load, p, "gzip");
}

// ======================================================================================= images

TEST_CASE("hostile image: not an image, truncated, bad arguments") {
  TmpDir tmp;
  const std::string p = tmp.path("bad.png");
  auto load = [&] { (void)dl::data::read_image(p); };
  expect_error(load, p, "does not exist");
  write_file(p, "");
  expect_error(load, p, "not a readable PNG, JPEG or BMP image");
  write_file(p, "GIF89a, which is not supported");
  expect_error(load, p, "not a readable PNG, JPEG or BMP image");
  write_file(p, std::string(1000, '\0'));
  expect_error(load, p, "not a readable");

  const std::string png = dl::data::encode_png(test_image(5, 4, 3));
  write_file(p, png);
  CHECK(dl::data::read_image(p).width == 5);  // control
  expect_error([&] { (void)dl::data::read_image(p, 5); }, p, "channels must be 0");
  expect_error([&] { (void)dl::data::read_image(p, -1); }, p, "channels must be 0");
  dl::data::ImageLimits tiny;
  tiny.max_file_bytes = 10;
  expect_error([&] { (void)dl::data::read_image(p, 0, tiny); }, p, "more than the limit of 10 bytes");
  tiny = {};
  tiny.max_pixels = 19;
  expect_error([&] { (void)dl::data::read_image(p, 0, tiny); }, p, "more than the limit of 19 pixels");

  // PNG cut anywhere: refused (the image data or IEND is missing)
  for (size_t cut : {size_t{1}, size_t{8}, size_t{16}, size_t{24}, size_t{33}, size_t{40}, png.size() / 2,
                     png.size() - 13}) {
    INFO("PNG cut at " << cut << " of " << png.size());
    write_file(p, png.substr(0, cut));
    expect_error(load, p, p);
  }
  // JPEG and BMP cut inside the header: refused; cut later: refused or decoded, nothing else
  const std::string jpg = jpeg_bytes(test_image(16, 16, 3));
  const std::string bmp = bmp_bytes(test_image(7, 5, 3));
  for (const auto* file : {&jpg, &bmp}) {
    for (size_t cut = 0; cut < file->size(); cut += 7) {
      write_file(p, file->substr(0, cut));
      if (cut < 26)
        expect_error(load, p, p);
      else
        expect_error_or_success(load, "cut at " + std::to_string(cut));
    }
  }
}

TEST_CASE("hostile image: declared sizes beyond the pixel limit are refused before decoding") {
  TmpDir tmp;
  for (const auto& [name, bytes] : std::vector<std::pair<std::string, std::string>>{
           {"wide.png", png_with_size(100000, 100000)},
           {"max.png", png_with_size(0x7fffffffu, 0x7fffffffu)},
           {"wide.jpg", jpeg_with_size(65500, 65500)},
           {"wide.bmp", bmp_with_size(30000, 30000)},
           {"topdown.bmp", bmp_with_size(30000, -30000)},
           {"intmin.bmp", bmp_with_size(4, INT32_MIN)},
       }) {
    const std::string p = tmp.path(name);
    write_file(p, bytes);
    INFO(name);
    expect_error([&] { (void)dl::data::read_image(p); }, p, p);
  }
  const std::string p = tmp.path("wide.jpg");
  write_file(p, jpeg_with_size(65500, 65500));
  expect_error([&] { (void)dl::data::read_image(p); }, p, "more than the limit");
  for (const auto& [name, bytes] : std::vector<std::pair<std::string, std::string>>{
           {"zero.png", png_with_size(0, 5)}, {"zero.jpg", jpeg_with_size(0, 5)}, {"zero.bmp", bmp_with_size(0, 5)}}) {
    const std::string q = tmp.path(name);
    write_file(q, bytes);
    INFO(name);
    expect_error([&] { (void)dl::data::read_image(q); }, q, q);
  }
}

TEST_CASE("hostile image: a tiny file declaring a large (allowed) size is refused, not decoded") {
  // 8192 x 8192 = 2^26 pixels is exactly ImageLimits::max_pixels, so the pixel limit lets these
  // through. But a JPEG needs at least about a bit per 8x8 block and component and an
  // uncompressed BMP a bit per pixel: an ~800-byte file cannot hold such an image. stb_image
  // fills what is missing with zeros, so without a check the "image" decodes into 200 MB of
  // garbage from the header alone.
  TmpDir tmp;
  for (const auto& [name, bytes] : std::vector<std::pair<std::string, std::string>>{
           {"tiny.png", png_with_size(8192, 8192)},
           {"tiny.jpg", jpeg_with_size(8192, 8192)},
           {"tiny.bmp", bmp_with_size(8192, 8192)},
           {"tiny_topdown.bmp", bmp_with_size(8192, -8192)}}) {
    const std::string p = tmp.path(name);
    write_file(p, bytes);
    INFO(name << " (" << bytes.size() << " bytes)");
    expect_error([&] { (void)dl::data::read_image(p); }, p, p);
  }
}

TEST_CASE("hostile image: a top-down BMP (negative height) is valid") {
  // BITMAPINFOHEADER's height is signed: negative means the rows are stored top to bottom.
  TmpDir tmp;
  const dl::data::Image img = test_image(4, 3, 3);
  std::string bmp = bmp_bytes(img);
  const uint32_t off = static_cast<uint8_t>(bmp[10]) | (static_cast<uint8_t>(bmp[11]) << 8);
  const size_t stride = (4 * 3 + 3) / 4 * 4;
  std::string flipped = bmp.substr(0, off);
  for (int r = 2; r >= 0; --r) flipped += bmp.substr(off + r * stride, stride);
  put_le(flipped, 22, static_cast<uint32_t>(-3), 4);
  const std::string p = tmp.path("topdown.bmp");
  write_file(p, flipped);
  const Outcome o = run([&] {
    const dl::data::Image back = dl::data::read_image(p);
    CHECK(back.width == 4);
    CHECK(back.height == 3);
    CHECK(back.pixels == img.pixels);
  });
  INFO(o.message);
  CHECK_FALSE(o.dl_error);
  CHECK_FALSE(o.other_exception);
}

TEST_CASE("hostile image: every truncation and random corruption of PNG, JPEG and BMP") {
  const std::vector<std::pair<std::string, std::string>> files = {
      {"PNG", dl::data::encode_png(test_image(6, 5, 4))},
      {"JPEG", jpeg_bytes(test_image(16, 8, 3))},
      {"BMP", bmp_bytes(test_image(5, 3, 3))}};
  uint64_t state = 0x9e3779b97f4a7c15ull;
  auto next = [&] {
    state ^= state << 13, state ^= state >> 7, state ^= state << 17;
    return state;
  };
  for (const auto& [kind, good] : files) {
    for (size_t cut = 0; cut < good.size(); ++cut)
      expect_error_or_success([&] { (void)dl::data::decode_image(good.data(), cut, 3); },
                              kind + " cut at " + std::to_string(cut));
    for (int i = 0; i < 300; ++i) {
      std::string m = good;
      for (int k = 0, n = 1 + static_cast<int>(next() % 4); k < n; ++k) m[next() % m.size()] = static_cast<char>(next());
      expect_error_or_success(
          [&] {
            const dl::data::Image img = dl::data::decode_image(m.data(), m.size(), 0);
            CHECK(img.pixels.size() == static_cast<size_t>(img.width * img.height * img.channels));
          },
          kind + " mutant " + std::to_string(i));
    }
  }
}

// ================================================================= .pth / safetensors: the gaps

TEST_CASE("hostile weights: pickles naming foreign globals never run them, through load_weights") {
  // weights_io_test covers os.system / builtins.eval / posix.system on load_pth; here the
  // user-facing loader, the remaining classics, and a canary file the payload would create.
  TmpDir tmp;
  const std::string canary = tmp.path("canary");
  struct Payload {
    std::string module, name, expect;
  };
  for (const Payload& g : std::vector<Payload>{{"os", "system", "os.system"},
                                                {"subprocess", "Popen", "subprocess.Popen"},
                                                {"builtins", "exec", "builtins.exec"},
                                                {"__builtin__", "eval", "__builtin__.eval"},
                                                {"torch", "load", "torch.load"},
                                                {"torch.nn.modules.linear", "Linear", "torch.nn.modules.linear.Linear"},
                                                {"numpy.core.multiarray", "_reconstruct", "numpy.core.multiarray._reconstruct"}}) {
    INFO(g.expect);
    // PROTO 2, GLOBAL module\nname\n, BINUNICODE "touch <canary>", TUPLE1, REDUCE, STOP
    const std::string cmd = "touch " + canary;
    std::string pkl = std::string("\x80\x02", 2) + "c" + g.module + "\n" + g.name + "\n" + "X" + std::string(4, '\0') + cmd +
                      "\x85R.";
    put_le(pkl, 2 + 1 + g.module.size() + 1 + g.name.size() + 1 + 1, cmd.size(), 4);
    const std::string p = tmp.path("payload.pth");
    write_file(p, zip_archive({stored("archive/data.pkl", pkl), stored("archive/version", "3\n")}));
    expect_error([&] { (void)dl::load_weights(p); }, p, "pickle references global '" + g.expect + "'");
    expect_error([&] { (void)dl::load_weights(p); }, p, "nothing from the file was executed");
    CHECK_FALSE(fs::exists(canary));
  }
}

TEST_CASE("hostile weights: zip entries declaring absurd sizes") {
  TmpDir tmp;
  const std::string p = tmp.path("absurd.pth");
  auto load = [&] { (void)dl::load_weights(p); };
  const std::string pkl = state_dict_pickle("w", 4, {4}, {1});
  {  // control: the same archive with honest sizes loads
    write_file(p, zip_archive({stored("archive/data.pkl", pkl), stored("archive/data/0", std::string(16, '\0'))}));
    const dl::TensorDict d = dl::load_weights(p);
    REQUIRE(d.size() == 1);
    CHECK(d[0].second.sizes() == dl::Shape{4});
  }
  std::string garbage(100, '\0');
  for (size_t i = 0; i < garbage.size(); ++i) garbage[i] = static_cast<char>(i * 131 + 7);
  // deflate entry: 100 bytes said to inflate to 4 GB - 1
  ZipItem big{"archive/data/0", garbage, 8, 0xffffffffu, 0, false};
  write_file(p, zip_archive({stored("archive/data.pkl", pkl), big}));
  expect_error(load, p, "which deflate cannot produce");
  // the same through zip64: 2^40 bytes
  big.zip64 = true;
  big.declared_size = uint64_t{1} << 40;
  write_file(p, zip_archive({stored("archive/data.pkl", pkl), big}));
  expect_error(load, p, "which deflate cannot produce");
  // stored entry declaring 4 GB: its data would run past the end of the file
  ZipItem st{"archive/data/0", garbage, 0, uint64_t{1} << 32, 0, true};
  write_file(p, zip_archive({stored("archive/data.pkl", pkl), st}));
  expect_error(load, p, "differs from its size");
  // A storage of 2^30 float32 (4 GB) in a deflate entry whose declared sizes are consistent
  // (4.2 MB compressed, 4 GB uncompressed), holding garbage: the reader may only allocate what
  // actually inflates, never the declared 4 GB.
  std::string body((size_t{42} << 20) / 10, '\0');
  uint64_t x = 0x9e3779b97f4a7c15ull;
  for (char& c : body) x ^= x << 13, x ^= x >> 7, x ^= x << 17, c = static_cast<char>(x);
  ZipItem four_gb{"archive/data/0", body, 8, uint64_t{1} << 32, 0, true};
  write_file(p, zip_archive({stored("archive/data.pkl", state_dict_pickle("w", int64_t{1} << 30, {int64_t{1} << 30}, {1})),
                             four_gb}));
  expect_error(load, p, "entry 'archive/data/0': corrupt deflate data");
}

TEST_CASE("hostile weights: safetensors through load_weights, renamed or lying about its type") {
  TmpDir tmp;
  const std::string data(16, '\0');
  // a safetensors file named .pth is recognised by content? No: .pth goes to the zip reader,
  // which must refuse it cleanly, naming the file.
  const std::string st = safetensors_file(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", data);
  const std::string as_pth = tmp.path("renamed.pth");
  write_file(as_pth, st);
  expect_error([&] { (void)dl::load_weights(as_pth); }, as_pth, "not a PyTorch checkpoint");
  const std::string as_bin = tmp.path("weights.bin");
  write_file(as_bin, st);
  CHECK(dl::load_weights(as_bin).size() == 1);  // by content: safetensors
  // a file starting with the zip signature but named .safetensors goes to the zip reader
  const std::string fake_zip = tmp.path("fake.safetensors");
  write_file(fake_zip, std::string("PK\x03\x04", 4) + std::string(100, '\0'));
  expect_error([&] { (void)dl::load_weights(fake_zip); }, fake_zip, "end-of-central-directory");
  // a directory and an empty name
  expect_error([&] { (void)dl::load_weights(tmp.dir.string()); }, tmp.dir.string(), "directory");
  expect_error([&] { (void)dl::load_weights(""); }, "''", "does not exist");
}

// ============================================================== the guard itself, and a bomb


TEST_CASE("hostile: the allocation guard sees huge requests and peak RSS") {
  // The guard itself must work, or every "allocates nothing huge" check below is vacuous.
  const Outcome o = run([] {
    std::vector<uint8_t> v;
    v.resize(size_t{1} << 31);
  });
  CHECK(o.other_exception);  // std::bad_alloc from the guard
  CHECK(o.huge_requests == 1);
  CHECK(o.largest_huge == size_t{1} << 31);
  const Outcome touched = run([] {
    std::vector<uint8_t> v(size_t{300} << 20, 1);  // under the guard's limit, but touched
    CHECK(v[12345] == 1);
  });
  CHECK(touched.huge_requests == 0);
  CHECK(touched.rss_growth_kb > kMaxRssGrowthKb);
}

TEST_CASE("hostile IDX: a gzip bomb is never inflated past the declared size") {
  TmpDir tmp;
  const std::string p = tmp.path("bomb-idx.gz");
  // 300 MB of zeros (~300 KB compressed) behind a header that declares 1 MB: the reader must stop
  // after the declared megabyte, not inflate everything into memory.
  const std::string bomb = gzip_zeros(idx_header(0x08, {1024, 1024}), size_t{300} << 20);
  CHECK(bomb.size() < (size_t{2} << 20));
  write_file(p, bomb);
  expect_error([&] { (void)dl::data::read_idx(p); }, p, "trailing data");
  // header declares 3 GB (under the limit), the stream holds 300 MB of zeros: the buffer grows
  // with what arrives, then "truncated"; never 3 GB up front.
  write_file(p, gzip_zeros(idx_header(0x08, {3, 1024, 1024, 1024}), size_t{300} << 20));
  const Outcome o = run([&] { (void)dl::data::read_idx(p); });
  INFO(o.message);
  CHECK(o.dl_error);
  CHECK(contains(o.message, "truncated"));
  CHECK(o.huge_requests == 0);  // (the 300 MB that did arrive may be held: RSS is not judged here)
}
