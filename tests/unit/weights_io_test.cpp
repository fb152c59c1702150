// Tests for models/io: zip reader, restricted unpickler, .pth and .safetensors loading, SHA-256.
// Fixture tests need DL_FIXTURES_DIR (written by tests/fixtures/make_weight_fixtures.py) and are
// skipped with a message otherwise; everything else builds its inputs in a temporary directory.
#include <doctest/doctest.h>

#include "unit/file_test_util.h"
#include "test_util.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "models/io/pth.h"
#include "models/io/raw_tensor.h"
#include "models/io/safetensors.h"
#include "models/io/sha256.h"
#include "tensor/error.h"

namespace fs = std::filesystem;
using dl::io::RawDType;
using dl::io::RawStateDict;
using dl::io::RawTensor;

namespace {

// ------------------------------------------------------------------------------------------ utils

using dl::test::TmpDir;
using dl::test::read_file;
using dl::test::write_file;

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

// Runs f, which must throw a dl::Error whose message names `file` and contains `phrase`.
template <class F>
void expect_error(F&& f, const std::string& file, const std::string& phrase) {
  std::string msg = "<no exception>";
  bool is_dl_error = false;
  try {
    f();
  } catch (const dl::Error& e) {
    msg = e.what();
    is_dl_error = true;
  } catch (const std::exception& e) {
    msg = std::string("<non-dl::Error exception> ") + e.what();
  }
  INFO("expected a dl::Error naming '" << file << "' containing '" << phrase << "'; got: " << msg);
  CHECK(is_dl_error);
  CHECK(contains(msg, file));
  CHECK(contains(msg, phrase));
}

void put16(std::string& s, size_t at, uint16_t v) {
  for (int i = 0; i < 2; ++i) s[at + i] = static_cast<char>(v >> (8 * i));
}
void put32(std::string& s, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) s[at + i] = static_cast<char>(v >> (8 * i));
}
void app16(std::string& s, uint16_t v) { s.append(2, '\0'), put16(s, s.size() - 2, v); }
void app32(std::string& s, uint32_t v) { s.append(4, '\0'), put32(s, s.size() - 4, v); }
void app64(std::string& s, uint64_t v) {
  for (int i = 0; i < 8; ++i) s.push_back(static_cast<char>(v >> (8 * i)));
}

uint32_t crc32_of(const std::string& d) {
  uint32_t c = 0xffffffffu;
  for (unsigned char b : d) {
    c ^= b;
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
  }
  return ~c;
}

template <class T>
std::string bytes_of(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

// ------------------------------------------------------------------------------ zip/pickle writers

struct Zip {
  std::string bytes;
  std::vector<size_t> local;  // local header offsets
  std::vector<size_t> central;  // central directory entry offsets
  size_t eocd = 0;
};

Zip make_zip(const std::vector<std::pair<std::string, std::string>>& entries) {
  Zip z;
  std::string cd;
  for (const auto& [name, data] : entries) {
    const uint32_t crc = crc32_of(data);
    z.local.push_back(z.bytes.size());
    std::string& o = z.bytes;
    app32(o, 0x04034b50), app16(o, 20), app16(o, 0), app16(o, 0), app16(o, 0), app16(o, 0);
    app32(o, crc), app32(o, static_cast<uint32_t>(data.size())),
        app32(o, static_cast<uint32_t>(data.size()));
    app16(o, static_cast<uint16_t>(name.size())), app16(o, 0);
    o += name;
    o += data;
    z.central.push_back(cd.size());
    app32(cd, 0x02014b50), app16(cd, 20), app16(cd, 20), app16(cd, 0), app16(cd, 0);
    app16(cd, 0), app16(cd, 0), app32(cd, crc), app32(cd, static_cast<uint32_t>(data.size()));
    app32(cd, static_cast<uint32_t>(data.size())), app16(cd, static_cast<uint16_t>(name.size()));
    app16(cd, 0), app16(cd, 0), app16(cd, 0), app16(cd, 0), app32(cd, 0);
    app32(cd, static_cast<uint32_t>(z.local.back()));
    cd += name;
  }
  const size_t cd_off = z.bytes.size();
  for (size_t& c : z.central) c += cd_off;
  z.bytes += cd;
  z.eocd = z.bytes.size();
  std::string& o = z.bytes;
  app32(o, 0x06054b50), app16(o, 0), app16(o, 0);
  app16(o, static_cast<uint16_t>(entries.size())), app16(o, static_cast<uint16_t>(entries.size()));
  app32(o, static_cast<uint32_t>(cd.size())), app32(o, static_cast<uint32_t>(cd_off)), app16(o, 0);
  return z;
}

struct Pk {
  std::string b;
  Pk& op(int c) { return b.push_back(static_cast<char>(c)), *this; }
  Pk& proto() { return op(0x80).op(2); }
  Pk& global(const std::string& m, const std::string& n) { return op('c'), b += m + "\n" + n + "\n", *this; }
  Pk& str(const std::string& s) {
    op('X'), app32(b, static_cast<uint32_t>(s.size()));
    return b += s, *this;
  }
  Pk& integer(int64_t v) {
    if (v >= 0 && v < 256) return op('K').op(static_cast<int>(v));
    if (v >= INT32_MIN && v <= INT32_MAX) return op('J'), app32(b, static_cast<uint32_t>(v)), *this;
    return op(0x8a).op(8), app64(b, static_cast<uint64_t>(v)), *this;
  }
  Pk& ints(const std::vector<int64_t>& v) {
    op('(');
    for (int64_t x : v) integer(x);
    return op('t');
  }
  Pk& mark() { return op('('); }
  Pk& tuple() { return op('t'); }
  Pk& empty_tuple() { return op(')'); }
  Pk& empty_dict() { return op('}'); }
  Pk& reduce() { return op('R'); }
  Pk& setitems() { return op('u'); }
  Pk& stop() { return op('.'); }
};

struct TSpec {
  std::string name;
  std::string storage_type = "FloatStorage";
  std::string key = "0";
  int64_t numel = 0;
  int64_t offset = 0;
  std::vector<int64_t> shape, strides;
};

// The pickle torch.save writes for an OrderedDict of tensors (optionally inside
// {"epoch": 3, "state_dict": ...}).
std::string sd_pickle(const std::vector<TSpec>& ts, bool wrapped = false) {
  Pk p;
  p.proto();
  if (wrapped) p.empty_dict().mark().str("epoch").integer(3).str("state_dict");
  p.global("collections", "OrderedDict").empty_tuple().reduce().mark();
  for (const TSpec& t : ts) {
    p.str(t.name).global("torch._utils", "_rebuild_tensor_v2").mark();
    p.mark().str("storage").global("torch", t.storage_type).str(t.key).str("cpu").integer(t.numel);
    p.tuple().op('Q');
    p.integer(t.offset).ints(t.shape).ints(t.strides).op(0x89);
    p.global("collections", "OrderedDict").empty_tuple().reduce().tuple().reduce();
  }
  p.setitems();
  if (wrapped) p.setitems();
  return p.stop().b;
}

std::string pth_bytes(const std::string& pickle,
                      const std::vector<std::pair<std::string, std::string>>& storages,
                      const std::string& top = "archive", const char* byteorder = "little") {
  std::vector<std::pair<std::string, std::string>> e;
  e.emplace_back(top + "/data.pkl", pickle);
  if (byteorder) e.emplace_back(top + "/byteorder", byteorder);
  for (const auto& [k, d] : storages) e.emplace_back(top + "/data/" + k, d);
  e.emplace_back(top + "/version", "3\n");
  return make_zip(e).bytes;
}

// A valid two-tensor checkpoint: w (2x3 float, transposed view of storage 0) and b (int64).
std::string good_pth() {
  std::vector<TSpec> ts = {{"w", "FloatStorage", "0", 6, 0, {3, 2}, {1, 3}},
                           {"b", "LongStorage", "1", 3, 1, {2}, {1}}};
  return pth_bytes(sd_pickle(ts), {{"0", bytes_of<float>({1, 2, 3, 4, 5, 6})},
                                   {"1", bytes_of<int64_t>({7, 8, 9})}});
}

std::string pth_with_pickle(const std::string& pickle) {
  return pth_bytes(pickle, {{"0", bytes_of<float>({1, 2, 3, 4, 5, 6})}});
}

const char* fixtures_dir() {
  const char* d = std::getenv("DL_FIXTURES_DIR");
  return (d && *d) ? d : nullptr;
}

const RawTensor& find(const RawStateDict& sd, const std::string& name) {
  for (const auto& [k, t] : sd)
    if (k == name) return t;
  FAIL("no tensor named " << name);
  throw std::logic_error("unreachable");
}

nlohmann::ordered_json read_json(const std::string& path) {
  std::ifstream f(path);
  REQUIRE(f.good());
  return nlohmann::ordered_json::parse(f);
}

bool is_float(RawDType t) {
  return t == RawDType::F16 || t == RawDType::BF16 || t == RawDType::F32 || t == RawDType::F64;
}

// Compares a loaded state dict with the expectations written by make_weight_fixtures.py.
void check_against_json(const RawStateDict& sd, const nlohmann::ordered_json& exp,
                        bool check_layout) {
  size_t n_expected = 0;
  for (const auto& [name, e] : exp.items()) {
    if (name == "__metadata__") continue;
    INFO("tensor " << name);
    REQUIRE(n_expected < sd.size());
    CHECK(sd[n_expected].first == name);  // file order preserved
    ++n_expected;
    const RawTensor& t = find(sd, name);
    CHECK(std::string(dl::io::dtype_name(t.dtype)) == e["dtype"].get<std::string>());
    CHECK(t.shape == e["shape"].get<std::vector<int64_t>>());
    if (check_layout) {
      CHECK(t.strides == e["strides"].get<std::vector<int64_t>>());
      CHECK(t.storage_offset == e["storage_offset"].get<int64_t>());
    }
    const auto& vals = e["values"];
    if (is_float(t.dtype)) {
      const std::vector<double> v = t.to_f64();
      REQUIRE(v.size() >= vals.size());
      for (size_t i = 0; i < vals.size(); ++i) CHECK(v[i] == vals[i].get<double>());
      double sum = 0;
      for (double x : v) sum += x;
      const double want = e["sum"].get<double>();
      CHECK(std::fabs(sum - want) <= 1e-6 * (1.0 + std::fabs(want)));
      const std::vector<float> f = t.to_f32();
      REQUIRE(f.size() == v.size());
      size_t mismatches = 0;
      for (size_t i = 0; i < f.size(); ++i) mismatches += f[i] != static_cast<float>(v[i]);
      CHECK(mismatches == 0);
    } else {
      const std::vector<int64_t> v = t.to_i64();
      REQUIRE(v.size() >= vals.size());
      for (size_t i = 0; i < vals.size(); ++i) CHECK(v[i] == vals[i].get<int64_t>());
      int64_t sum = 0;
      for (int64_t x : v) sum += x;
      CHECK(sum == e["sum"].get<int64_t>());
    }
  }
  CHECK(sd.size() == n_expected);
}

void check_same(const RawStateDict& a, const RawStateDict& b) {
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    INFO("tensor " << a[i].first);
    CHECK(a[i].first == b[i].first);
    CHECK(a[i].second.dtype == b[i].second.dtype);
    CHECK(a[i].second.shape == b[i].second.shape);
    CHECK(a[i].second.contiguous_bytes() == b[i].second.contiguous_bytes());
  }
}

}  // namespace

// =========================================================================================== raw

TEST_CASE("weights_io: RawTensor conversions and view validation") {
  CHECK(dl::io::half_to_float(0x3c00) == 1.0f);
  CHECK(dl::io::half_to_float(0xc100) == -2.5f);
  CHECK(dl::io::half_to_float(0x0001) == std::ldexp(1.0f, -24));  // smallest subnormal
  CHECK(dl::io::half_to_float(0x7bff) == 65504.0f);
  CHECK(std::isinf(dl::io::half_to_float(0x7c00)));
  CHECK(std::isnan(dl::io::half_to_float(0x7e00)));
  CHECK(std::signbit(dl::io::half_to_float(0x8000)));
  CHECK(dl::io::bfloat16_to_float(0x3f80) == 1.0f);
  CHECK(dl::io::bfloat16_to_float(0xc0a0) == -5.0f);

  RawTensor t = dl::io::make_raw_tensor(RawDType::F32, {2, 3},
                                        {0, 0, 128, 63, 0, 0, 0, 64, 0, 0, 64, 64,  // 1 2 3
                                         0, 0, 128, 64, 0, 0, 160, 64, 0, 0, 192, 64});  // 4 5 6
  CHECK(t.to_f32() == std::vector<float>{1, 2, 3, 4, 5, 6});
  RawTensor tt = t;
  tt.shape = {3, 2};
  tt.strides = {1, 3};
  CHECK_FALSE(tt.is_contiguous());
  CHECK(tt.to_f64() == std::vector<double>{1, 4, 2, 5, 3, 6});
  CHECK(tt.to_i64() == std::vector<int64_t>{1, 4, 2, 5, 3, 6});
  tt.storage_offset = 1;
  expect_error([&] { dl::io::validate_view(tt, "'view'"); }, "'view'", "out of bounds");
  tt.storage_offset = -1;
  expect_error([&] { dl::io::validate_view(tt, "'view'"); }, "'view'", "negative storage offset");
  tt.storage_offset = 0;
  tt.strides = {1, -3};
  expect_error([&] { dl::io::validate_view(tt, "'view'"); }, "'view'", "negative stride");
  tt.strides = {INT64_MAX / 2, INT64_MAX / 2};
  expect_error([&] { dl::io::validate_view(tt, "'view'"); }, "'view'", "overflows");
  RawTensor inf = dl::io::make_raw_tensor(RawDType::F32, {1}, {0, 0, 128, 127});
  CHECK_THROWS_AS(inf.to_i64(), dl::Error);
}

// ====================================================================================== sha256

TEST_CASE("weights_io: sha256 known vectors and torchvision hash check") {
  CHECK(dl::io::sha256_hex("abc", 3) ==
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(dl::io::sha256_hex("", 0) ==
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  const std::string two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  CHECK(dl::io::sha256_hex(two_blocks.data(), two_blocks.size()) ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");

  TmpDir tmp;
  write_file(tmp.path("million_a"), std::string(1000000, 'a'));  // spans several read chunks
  CHECK(dl::io::sha256_file(tmp.path("million_a")) ==
        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  expect_error([&] { dl::io::sha256_file(tmp.path("missing")); }, tmp.path("missing"),
               "not a regular file");

  const std::string content = "not really weights";
  const std::string digest = dl::io::sha256_hex(content.data(), content.size());
  const std::string bad = tmp.path("x-deadbeef.pth");
  write_file(bad, content);
  REQUIRE(digest.substr(0, 8) != "deadbeef");
  expect_error([&] { dl::io::check_torchvision_hash(bad); }, bad, "deadbeef");
  expect_error([&] { dl::io::check_torchvision_hash(bad); }, bad, digest);
  const std::string good = tmp.path("x-" + digest.substr(0, 8) + ".pth");
  write_file(good, content);
  CHECK(dl::io::check_torchvision_hash(good));
  const std::string plain = tmp.path("plain_weights.pth");
  write_file(plain, content);
  CHECK_FALSE(dl::io::check_torchvision_hash(plain));
}

// ============================================================================ .pth, generated

TEST_CASE("weights_io: load_pth on generated checkpoints") {
  TmpDir tmp;
  SUBCASE("valid: transposed view, offset view, custom top folder") {
    const std::string p = tmp.path("good.pth");
    write_file(p, good_pth());
    RawStateDict sd = dl::io::load_pth(p);
    REQUIRE(sd.size() == 2);
    CHECK(sd[0].first == "w");
    CHECK(sd[0].second.dtype == RawDType::F32);
    CHECK(sd[0].second.to_f32() == std::vector<float>{1, 4, 2, 5, 3, 6});
    CHECK(sd[1].first == "b");
    CHECK(sd[1].second.to_i64() == std::vector<int64_t>{8, 9});
  }
  SUBCASE("two tensors share one storage") {
    std::vector<TSpec> ts = {{"a", "FloatStorage", "0", 6, 0, {2}, {1}},
                             {"b", "FloatStorage", "0", 6, 3, {3}, {1}}};
    const std::string p = tmp.path("shared.pth");
    write_file(p, pth_bytes(sd_pickle(ts), {{"0", bytes_of<float>({1, 2, 3, 4, 5, 6})}},
                            "resnet18-f37072fd", nullptr));
    RawStateDict sd = dl::io::load_pth(p);
    REQUIRE(sd.size() == 2);
    CHECK(sd[0].second.storage.get() == sd[1].second.storage.get());
    CHECK(sd[1].second.storage_offset == 3);
    CHECK(sd[1].second.to_f32() == std::vector<float>{4, 5, 6});
  }
  SUBCASE("nested {'epoch', 'state_dict'} checkpoint") {
    std::vector<TSpec> ts = {{"w", "FloatStorage", "0", 6, 0, {6}, {1}}};
    const std::string p = tmp.path("ckpt.pth");
    write_file(p, pth_bytes(sd_pickle(ts, true), {{"0", bytes_of<float>({1, 2, 3, 4, 5, 6})}}));
    RawStateDict sd = dl::io::load_pth(p);
    REQUIRE(sd.size() == 1);
    CHECK(sd[0].first == "w");
  }
  SUBCASE("big-endian byteorder is byte-swapped") {
    std::vector<TSpec> ts = {{"w", "FloatStorage", "0", 2, 0, {2}, {1}},
                             {"h", "HalfStorage", "1", 1, 0, {}, {}}};
    std::string f = bytes_of<float>({1.5f, -2.0f});
    std::reverse(f.begin(), f.begin() + 4);
    std::reverse(f.begin() + 4, f.end());
    const std::string h = std::string("\x3c\x00", 2);  // 1.0 in big-endian half
    const std::string p = tmp.path("big.pth");
    write_file(p, pth_bytes(sd_pickle(ts), {{"0", f}, {"1", h}}, "archive", "big"));
    RawStateDict sd = dl::io::load_pth(p);
    CHECK(sd[0].second.to_f32() == std::vector<float>{1.5f, -2.0f});
    CHECK(sd[1].second.to_f32() == std::vector<float>{1.0f});
    write_file(p, pth_bytes(sd_pickle(ts), {{"0", f}, {"1", h}}, "archive", "middle"));
    expect_error([&] { dl::io::load_pth(p); }, p, "expected 'little' or 'big'");
  }
}

TEST_CASE("weights_io: load_pth refuses hostile or broken files") {
  TmpDir tmp;
  const std::string p = tmp.path("bad.pth");
  auto load = [&] { dl::io::load_pth(p); };

  SUBCASE("missing file and non-zip files") {
    expect_error(load, p, "does not exist");
    write_file(p, "");
    expect_error(load, p, "truncated");
    write_file(p, "hello, I am not a checkpoint");
    expect_error(load, p, "not a zip archive");
    // the start of a legacy torch.save file: PROTO 2, LONG1 10 <magic number>
    write_file(p, std::string("\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19\x2e", 15));
    expect_error(load, p, "legacy (pre-1.6) serialization format");
    write_file(p, std::string("\x80\x02}q\x00.", 6));
    expect_error(load, p, "bare pickle");
  }
  SUBCASE("truncated zip, cut at several points") {
    const std::string good = good_pth();
    for (size_t cut : {size_t{1}, size_t{3}, size_t{4}, size_t{30}, good.size() / 3,
                       good.size() / 2, good.size() - 60, good.size() - 22, good.size() - 1}) {
      INFO("cut at " << cut << " of " << good.size());
      write_file(p, good.substr(0, cut));
      expect_error(load, p, "truncated");
    }
  }
  SUBCASE("corrupted directory and entries") {
    Zip z = make_zip({{"archive/data.pkl", sd_pickle({})}, {"archive/data/0", "abcdefgh"}});
    auto with = [&](auto&& patch, const std::string& phrase) {
      Zip c = z;
      patch(c.bytes);
      write_file(p, c.bytes);
      expect_error(load, p, phrase);
    };
    // flipped data byte -> CRC mismatch (storage 0 is read only when referenced; data.pkl always)
    with([&](std::string& b) { b[z.local[0] + 30 + 16 + 2] ^= 0x40; }, "CRC-32 mismatch");
    // local header offset beyond the central directory
    with([&](std::string& b) { put32(b, z.central[1] + 42, 0x7fffff00); }, "out of bounds");
    // entry 0 claims more data, running into entry 1 -> overlap
    with([&](std::string& b) {
      const uint32_t sz = static_cast<uint32_t>(z.local[1] - z.local[0]);
      put32(b, z.central[0] + 20, sz), put32(b, z.central[0] + 24, sz);
    }, "overlap");
    // huge declared entry size
    with([&](std::string& b) {
      put32(b, z.central[1] + 20, 0x7fffffff), put32(b, z.central[1] + 24, 0x7fffffff);
    }, "truncated or corrupt");
    // absurd entry count
    with([&](std::string& b) { put16(b, z.eocd + 8, 0xfffe), put16(b, z.eocd + 10, 0xfffe); },
         "too small for the 65534 entries");
    // central directory offset out of range
    with([&](std::string& b) { put32(b, z.eocd + 16, 0x7fffffff); }, "central directory");
    // encrypted / unsupported compression method
    with([&](std::string& b) { put16(b, z.central[0] + 8, 1); }, "encrypted");
    with([&](std::string& b) { put16(b, z.central[0] + 10, 12); }, "compression method 12");
    // duplicate names
    write_file(p, make_zip({{"archive/data.pkl", "x"}, {"archive/data.pkl", "y"}}).bytes);
    expect_error(load, p, "appears twice");
    // local header name differs
    with([&](std::string& b) { b[z.local[1] + 30 + 1] = 'X'; }, "local header names it");
  }
  SUBCASE("no data.pkl") {
    write_file(p, make_zip({{"archive/other.pkl", "x"}}).bytes);
    expect_error(load, p, "data.pkl");
  }
  SUBCASE("wrong storage size") {
    std::vector<TSpec> ts = {{"w", "FloatStorage", "0", 10, 0, {10}, {1}}};
    write_file(p, pth_bytes(sd_pickle(ts), {{"0", bytes_of<float>({1, 2, 3})}}));
    expect_error(load, p, "wrong storage size");
    ts[0].numel = int64_t{1} << 62;  // numel * 4 overflows
    write_file(p, pth_bytes(sd_pickle(ts), {{"0", bytes_of<float>({1, 2, 3})}}));
    expect_error(load, p, "wrong storage size");
  }
  SUBCASE("missing storage entry") {
    std::vector<TSpec> ts = {{"w", "FloatStorage", "7", 3, 0, {3}, {1}}};
    write_file(p, pth_bytes(sd_pickle(ts), {{"0", bytes_of<float>({1, 2, 3})}}));
    expect_error(load, p, "is missing");
  }
  SUBCASE("out-of-bounds offset, stride, size; negative values; overflow") {
    const std::string st = bytes_of<float>({1, 2, 3, 4, 5, 6});
    auto try_view = [&](int64_t off, std::vector<int64_t> shape, std::vector<int64_t> strides,
                        const std::string& phrase) {
      INFO("offset " << off);
      write_file(p, pth_bytes(sd_pickle({{"layer.w", "FloatStorage", "0", 6, off, shape, strides}}),
                              {{"0", st}}));
      expect_error(load, p, phrase);
      expect_error(load, p, "layer.w");
    };
    try_view(5, {4}, {1}, "out of bounds");
    try_view(6, {1}, {1}, "out of bounds");
    try_view(0, {2, 3}, {3, 2}, "out of bounds");
    try_view(0, {7}, {1}, "out of bounds");
    try_view(-1, {2}, {1}, "negative storage offset");
    try_view(0, {2}, {-1}, "negative stride");
    try_view(0, {-2}, {1}, "negative size");
    try_view(0, {int64_t{1} << 31, int64_t{1} << 31, int64_t{1} << 31}, {1, 1, 1}, "overflows");
    try_view(0, {2, 2}, {int64_t{1} << 62, int64_t{1} << 62}, "overflows");
  }
  SUBCASE("pickle references forbidden globals") {
    Pk os;
    os.proto().global("os", "system").str("echo pwned").op(0x85).reduce().stop();
    write_file(p, pth_with_pickle(os.b));
    expect_error(load, p, "refusing to load");
    expect_error(load, p, "pickle references global 'os.system'");
    expect_error(load, p, "nothing from the file was executed");
    Pk ev;
    ev.proto().str("builtins").str("eval").op(0x93).str("1+1").op(0x85).reduce().stop();
    write_file(p, pth_with_pickle(ev.b));
    expect_error(load, p, "global 'builtins.eval'");
    Pk px;
    px.proto().global("posix", "system").stop();
    write_file(p, pth_with_pickle(px.b));
    expect_error(load, p, "global 'posix.system'");
    Pk cs;  // an unsupported storage type is also just a disallowed global
    cs.proto().global("torch", "ComplexFloatStorage").stop();
    write_file(p, pth_with_pickle(cs.b));
    expect_error(load, p, "global 'torch.ComplexFloatStorage'");
    Pk nw;  // allowed global, but not callable through REDUCE
    nw.proto().global("torch", "FloatStorage").empty_tuple().reduce().stop();
    write_file(p, pth_with_pickle(nw.b));
    expect_error(load, p, "not supported");
  }
  SUBCASE("deep nesting and huge declared sizes in the pickle") {
    Pk marks;
    marks.proto();
    for (int i = 0; i < 100000; ++i) marks.mark();
    marks.stop();
    write_file(p, pth_with_pickle(marks.b));
    expect_error(load, p, "nested MARKs");

    Pk lists;
    lists.proto();
    for (int i = 0; i < 100000; ++i) lists.op(']');
    for (int i = 0; i < 99999; ++i) lists.op('a');
    lists.stop();
    write_file(p, pth_with_pickle(lists.b));
    expect_error(load, p, "nesting deeper than");

    Pk tuples;
    tuples.proto().empty_tuple();
    for (int i = 0; i < 100000; ++i) tuples.op(0x85);
    tuples.stop();
    write_file(p, pth_with_pickle(tuples.b));
    expect_error(load, p, "nesting deeper than");

    Pk self;  // a list appended to itself
    self.proto().op(']').op('2').op('a').stop();
    write_file(p, pth_with_pickle(self.b));
    expect_error(load, p, "contains itself");

    Pk cyc;  // a = []; b = [a]; a.append(b)
    cyc.proto().op(']').op('q').op(0).op(']').op('h').op(0).op('a').op('a').stop();
    write_file(p, pth_with_pickle(cyc.b));
    expect_error(load, p, "recursive");

    Pk flat;  // 100000 lists side by side are fine for the unpickler, but not a state dict
    flat.proto().op(']');
    for (int i = 0; i < 100000; ++i) flat.op(']');
    flat.stop();
    write_file(p, pth_with_pickle(flat.b));
    expect_error(load, p, "not a dict");

    Pk big_str;
    big_str.proto().op('X');
    app32(big_str.b, 0xfffffff0u);
    big_str.b += "abc";
    write_file(p, pth_with_pickle(big_str.b));
    expect_error(load, p, "exceeds the limit");

    Pk short_str;
    short_str.proto().op('X');
    app32(short_str.b, 1000);
    short_str.b += "abc";
    write_file(p, pth_with_pickle(short_str.b));
    expect_error(load, p, "truncated");

    Pk big8;
    big8.proto().op(0x8d);
    app64(big8.b, uint64_t{1} << 62);
    write_file(p, pth_with_pickle(big8.b));
    expect_error(load, p, "exceeds the limit");

    Pk no_stop;
    no_stop.proto().empty_dict();
    write_file(p, pth_with_pickle(no_stop.b));
    expect_error(load, p, "before the STOP opcode");

    Pk underflow;
    underflow.proto().op('a').stop();
    write_file(p, pth_with_pickle(underflow.b));
    expect_error(load, p, "stack underflow");

    Pk memo;
    memo.proto().op('j');
    app32(memo.b, 0xffffffffu);
    memo.stop();
    write_file(p, pth_with_pickle(memo.b));
    expect_error(load, p, "memo key 4294967295 is not defined");

    Pk bad_op;
    bad_op.proto().op('i').stop();  // INST: executes code in CPython
    write_file(p, pth_with_pickle(bad_op.b));
    expect_error(load, p, "unsupported opcode 0x69");

    Pk bad_utf8;
    bad_utf8.proto().str("\xff\xfe").stop();
    write_file(p, pth_with_pickle(bad_utf8.b));
    expect_error(load, p, "UTF-8");
  }
  SUBCASE("non-tensor values") {
    Pk pk;
    pk.proto().empty_dict().str("lr").integer(3).op('s').stop();
    write_file(p, pth_with_pickle(pk.b));
    expect_error(load, p, "entry 'lr' is a int, not a tensor");
  }
}

TEST_CASE("weights_io: every truncation and random corruption gives a dl::Error or a valid load") {
  TmpDir tmp;
  const std::string p = tmp.path("mutant.pth");
  size_t other_exceptions = 0, loaded = 0, refused = 0;
  auto attempt = [&](const std::string& bytes) {
    write_file(p, bytes);
    try {
      for (const auto& [k, t] : dl::io::load_pth(p)) (void)t.to_f64();
      ++loaded;
    } catch (const dl::Error&) {
      ++refused;
    } catch (...) {
      ++other_exceptions;
    }
  };
  const std::string good = good_pth();
  for (size_t cut = 0; cut < good.size(); ++cut) attempt(good.substr(0, cut));
  CHECK(loaded == 0);
  // Mutations of the pickle inside a well-formed zip (valid CRC), so the unpickler sees them.
  std::vector<TSpec> ts = {{"w", "FloatStorage", "0", 6, 0, {3, 2}, {1, 3}},
                           {"b", "LongStorage", "1", 3, 1, {2}, {1}}};
  const std::string pkl = sd_pickle(ts);
  uint64_t state = 0x9e3779b97f4a7c15ull;
  auto next = [&] {
    state ^= state << 13, state ^= state >> 7, state ^= state << 17;
    return state;
  };
  for (int i = 0; i < 600; ++i) {
    std::string m = i % 2 ? pkl : good;
    for (int k = 0, n = 1 + static_cast<int>(next() % 3); k < n; ++k)
      m[next() % m.size()] = static_cast<char>(next());
    if (i % 2)
      attempt(pth_bytes(m, {{"0", bytes_of<float>({1, 2, 3, 4, 5, 6})},
                            {"1", bytes_of<int64_t>({7, 8, 9})}}));
    else
      attempt(m);
  }
  CHECK(other_exceptions == 0);
  CHECK(refused > 0);
}

// ============================================================================ .pth, fixtures

TEST_CASE("weights_io: torch.save fixtures") {
  const char* dir = fixtures_dir();
  if (!dir)
    DL_SKIP("DL_FIXTURES_DIR is not set, so the torch.save fixtures are not there (ctest's make_torch_fixtures "
            "writes them; by hand: /usr/bin/python3 tests/fixtures/make_weight_fixtures.py DIR)");
  const fs::path d(dir);
  const auto small_json = read_json((d / "small.json").string());

  const RawStateDict small = dl::io::load_pth((d / "small.pth").string());
  check_against_json(small, small_json, true);
  CHECK(find(small, "f32").storage.get() == find(small, "f32_t").storage.get());
  CHECK_FALSE(find(small, "f32_t").is_contiguous());
  CHECK(find(small, "share_a").storage.get() == find(small, "share_b").storage.get());
  CHECK(find(small, "share_a").storage_offset == 2);
  CHECK(find(small, "num_batches_tracked").shape.empty());
  CHECK(find(small, "num_batches_tracked").to_i64() == std::vector<int64_t>{42});

  check_same(small, dl::io::load_pth((d / "small_deflate.pth").string()));
  check_same(small, dl::io::load_pth((d / "small_zip64.pth").string()));

  const std::string legacy = (d / "small_legacy.pth").string();
  expect_error([&] { dl::io::load_pth(legacy); }, legacy,
               "' is in PyTorch's legacy (pre-1.6) serialization format, which is not supported; "
               "re-save it with torch.save(obj, path) under PyTorch >= 1.6");

  const RawStateDict rn = dl::io::load_pth((d / "resnet18.pth").string());
  CHECK(rn.size() == 122);
  check_against_json(rn, read_json((d / "resnet18.json").string()), true);
  CHECK(rn.front().first == "conv1.weight");
  CHECK(find(rn, "conv1.weight").shape == std::vector<int64_t>{64, 3, 7, 7});
  CHECK(find(rn, "layer1.0.conv1.weight").shape == std::vector<int64_t>{64, 64, 3, 3});
  CHECK(find(rn, "layer4.1.bn2.running_var").shape == std::vector<int64_t>{512});
  CHECK(find(rn, "fc.weight").shape == std::vector<int64_t>{1000, 512});
  CHECK(find(rn, "bn1.num_batches_tracked").dtype == RawDType::I64);
  CHECK(find(rn, "bn1.num_batches_tracked").shape.empty());
  int n_tracked = 0;
  for (const auto& [k, t] : rn) n_tracked += contains(k, "num_batches_tracked");
  CHECK(n_tracked == 20);

  const RawStateDict renamed = dl::io::load_pth((d / "resnet18_renamed.pth").string());
  check_same(rn, renamed);
  CHECK_FALSE(dl::io::check_torchvision_hash((d / "resnet18_renamed.pth").string()));

  // .pth -> .safetensors -> back
  TmpDir tmp;
  const std::string st = tmp.path("resnet18.safetensors");
  dl::io::save_safetensors(st, rn, {{"source", "resnet18.pth"}});
  check_same(rn, dl::io::load_safetensors(st));
}

TEST_CASE("weights_io: hand-written safetensors fixture") {
  const char* dir = fixtures_dir();
  if (!dir) DL_SKIP("DL_FIXTURES_DIR is not set, so the safetensors fixture is not there");
  const fs::path d(dir);
  const auto exp = read_json((d / "small_safetensors.json").string());
  std::map<std::string, std::string> meta;
  const RawStateDict sd = dl::io::load_safetensors((d / "small.safetensors").string(), &meta);
  check_against_json(sd, exp, false);
  CHECK(meta == exp["__metadata__"].get<std::map<std::string, std::string>>());
}

// ============================================================================== safetensors

TEST_CASE("weights_io: safetensors round trip") {
  TmpDir tmp;
  RawStateDict sd;
  auto add = [&](const std::string& name, RawDType dt, std::vector<int64_t> shape,
                 const std::string& bytes) {
    sd.emplace_back(name, dl::io::make_raw_tensor(
                              dt, std::move(shape), std::vector<uint8_t>(bytes.begin(), bytes.end())));
  };
  add("f32", RawDType::F32, {2, 3}, bytes_of<float>({1, 2, 3, 4, 5, 6}));
  add("f64", RawDType::F64, {1}, bytes_of<double>({-0.125}));
  add("f16", RawDType::F16, {2}, bytes_of<uint16_t>({0x3c00, 0x0001}));
  add("bf16", RawDType::BF16, {1, 1}, bytes_of<uint16_t>({0x3f80}));
  add("i64", RawDType::I64, {}, bytes_of<int64_t>({int64_t{1} << 50}));
  add("i32", RawDType::I32, {2}, bytes_of<int32_t>({-1, 2}));
  add("i16", RawDType::I16, {1}, bytes_of<int16_t>({-3}));
  add("i8", RawDType::I8, {3}, bytes_of<int8_t>({-4, 5, 6}));
  add("u8", RawDType::U8, {1}, bytes_of<uint8_t>({255}));
  add("bool", RawDType::Bool, {2}, bytes_of<uint8_t>({1, 0}));
  add("empty", RawDType::F32, {0, 4}, "");
  RawTensor view = sd[0].second;  // transposed view sharing f32's storage
  view.shape = {3, 2};
  view.strides = {1, 3};
  sd.emplace_back("f32_t", view);

  const std::string p = tmp.path("rt.safetensors");
  dl::io::save_safetensors(p, sd, {{"format", "pt"}, {"k", "v"}});
  CHECK_FALSE(fs::exists(p + ".tmp"));
  const std::string raw = read_file(p);
  uint64_t hlen = 0;
  std::memcpy(&hlen, raw.data(), 8);
  CHECK(hlen % 8 == 0);
  CHECK(raw[8] == '{');
  std::map<std::string, std::string> meta;
  const RawStateDict back = dl::io::load_safetensors(p, &meta);
  check_same(sd, back);
  CHECK(meta == std::map<std::string, std::string>{{"format", "pt"}, {"k", "v"}});
  CHECK(find(back, "f32_t").to_f32() == std::vector<float>{1, 4, 2, 5, 3, 6});

  // saving again is byte-identical
  const std::string p2 = tmp.path("rt2.safetensors");
  dl::io::save_safetensors(p2, back, meta);
  CHECK(read_file(p2) == raw);

  expect_error([&] { dl::io::save_safetensors(p, {{"a", sd[0].second}, {"a", sd[1].second}}); }, p,
               "appears twice");
}

TEST_CASE("weights_io: load_safetensors refuses hostile or broken files") {
  TmpDir tmp;
  const std::string p = tmp.path("bad.safetensors");
  auto load = [&] { dl::io::load_safetensors(p); };
  auto file_with = [&](const std::string& header, const std::string& data) {
    std::string b;
    app64(b, header.size());
    write_file(p, b + header + data);
  };
  const std::string data16(16, '\0');

  expect_error(load, p, "does not exist");
  write_file(p, "abc");
  expect_error(load, p, "too small");
  {
    std::string b;
    app64(b, 1000);
    write_file(p, b + "{}");
    expect_error(load, p, "runs past the end");
    b.clear();
    app64(b, uint64_t{1} << 60);
    write_file(p, b + "{}");
    expect_error(load, p, "exceeds the limit");
  }
  file_with("{\"a\": {\"dtype\": \"F32\", ", data16);
  expect_error(load, p, "not valid JSON");
  file_with("[1, 2]", data16);
  expect_error(load, p, "not a JSON object");
  file_with(R"({"a": {"dtype": "F8", "shape": [1], "data_offsets": [0, 1]}})", data16);
  expect_error(load, p, "unknown dtype 'F8'");
  file_with(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})", data16);
  expect_error(load, p, "overlap");
  file_with(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [12, 20]}})", data16);
  expect_error(load, p, "out of range");
  file_with(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 4]}})", data16);
  expect_error(load, p, "out of range");
  file_with(R"({"a": {"dtype": "F32", "shape": [4611686018427387904, 4611686018427387904], "data_offsets": [0, 16]}})", data16);
  expect_error(load, p, "overflows");
  file_with(R"({"a": {"dtype": "F64", "shape": [2305843009213693952], "data_offsets": [0, 16]}})", data16);
  expect_error(load, p, "overflows");
  file_with(R"({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})", data16);
  expect_error(load, p, "needs 12");
  file_with(R"({"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}})", data16);
  expect_error(load, p, "negative");
  file_with(R"({"a": {"dtype": "F32", "shape": [1.5], "data_offsets": [0, 8]}})", data16);
  expect_error(load, p, "integers");
  file_with(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0]}})", data16);
  expect_error(load, p, "data_offsets");
  file_with(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                "a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})", data16);
  expect_error(load, p, "twice");
  file_with(R"({"__metadata__": {"x": 1}})", data16);
  expect_error(load, p, "__metadata__");
  file_with(R"({"a": 5})", data16);
  expect_error(load, p, "not an object");

  // valid, with an unused tail and a zero-size tensor
  file_with(R"({"a": {"dtype": "I32", "shape": [2], "data_offsets": [4, 12]},
                "z": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}})", data16);
  const RawStateDict ok = dl::io::load_safetensors(p);
  REQUIRE(ok.size() == 2);
  CHECK(ok[0].first == "a");
  CHECK(ok[0].second.to_i64() == std::vector<int64_t>{0, 0});
  CHECK(ok[1].second.numel() == 0);
}
