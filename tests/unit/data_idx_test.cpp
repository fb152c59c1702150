// IDX reading (plain and gzip), its validation errors, and Fashion-MNIST loading.
#include <zlib.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "data/fashion_mnist.h"
#include "data/file_util.h"
#include "data/idx.h"
#include "data_test_util.h"
#include "test_util.h"

using namespace dl;
using namespace dl::data;

namespace {

std::vector<uint8_t> iota_bytes(size_t n, int mod = 251) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>((i * 7 + 3) % mod);
  return v;
}

// Raw bytes of a file (header included), to corrupt them.
std::string raw_idx(IdxType type, const Shape& dims, const std::vector<uint8_t>& data) {
  std::string s = {0, 0, static_cast<char>(type), static_cast<char>(dims.size())};
  for (int64_t d : dims)
    for (int sh = 24; sh >= 0; sh -= 8) s.push_back(static_cast<char>((d >> sh) & 0xff));
  s.append(data.begin(), data.end());
  return s;
}

void write_gz(const std::string& path, const std::string& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  REQUIRE(f != nullptr);
  REQUIRE(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())) == static_cast<int>(bytes.size()));
  REQUIRE(gzclose(f) == Z_OK);
}

// A small labelled set: n images h x w, labels i % classes.
void write_set(const test::TempDir& dir, const std::string& stem, int64_t n, int64_t h, int64_t w, bool gzip,
               int64_t classes = 10) {
  std::vector<uint8_t> labels(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) labels[static_cast<size_t>(i)] = static_cast<uint8_t>(i % classes);
  std::string ext = gzip ? ".gz" : "";
  write_idx(dir.file(stem + "-images-idx3-ubyte" + ext), IdxType::UInt8, {n, h, w}, iota_bytes(static_cast<size_t>(n * h * w)), gzip);
  write_idx(dir.file(stem + "-labels-idx1-ubyte" + ext), IdxType::UInt8, {n}, labels, gzip);
}

}  // namespace

TEST_CASE("IDX round trip, plain and gzipped, uint8 images and labels") {
  test::TempDir dir;
  for (bool gz : {false, true}) {
    CAPTURE(gz);
    const std::string path = dir.file(gz ? "a.idx.gz" : "a.idx");
    auto bytes = iota_bytes(5 * 3 * 4);
    write_idx(path, IdxType::UInt8, {5, 3, 4}, bytes, gz);
    // the gzipped file really is gzip (magic 1f 8b), the plain one starts with the IDX magic
    std::string head = read_file(path).substr(0, 4);
    if (gz) CHECK((static_cast<uint8_t>(head[0]) == 0x1f && static_cast<uint8_t>(head[1]) == 0x8b));
    else CHECK(head == std::string({0, 0, 0x08, 3}));
    IdxArray a = read_idx(path);
    CHECK(a.type == IdxType::UInt8);
    CHECK(a.dims == Shape{5, 3, 4});
    CHECK(a.bytes == bytes);
    Tensor t = a.to_tensor();
    CHECK(t.dtype() == DType::UInt8);
    CHECK(t.sizes() == Shape{5, 3, 4});
    CHECK(t.at<uint8_t>({4, 2, 3}) == bytes[4 * 12 + 2 * 4 + 3]);
  }
}

TEST_CASE("IDX multi-byte types are big-endian") {
  test::TempDir dir;
  // int32 -2 and 258, float32 1.5, float64 -0.25
  write_idx(dir.file("i32"), IdxType::Int32, {2}, {0xff, 0xff, 0xff, 0xfe, 0x00, 0x00, 0x01, 0x02}, false);
  CHECK(read_idx(dir.file("i32")).to_tensor().to_vector<int64_t>() == std::vector<int64_t>{-2, 258});
  write_idx(dir.file("f32"), IdxType::Float32, {1}, {0x3f, 0xc0, 0x00, 0x00}, true);
  CHECK(read_idx(dir.file("f32")).to_tensor().item<float>() == 1.5f);
  write_idx(dir.file("f64"), IdxType::Float64, {1}, {0xbf, 0xd0, 0, 0, 0, 0, 0, 0}, false);
  CHECK(read_idx(dir.file("f64")).to_tensor().item<double>() == -0.25);
}

TEST_CASE("a truncated IDX file is refused, naming the file") {
  test::TempDir dir;
  std::string full = raw_idx(IdxType::UInt8, {4, 5, 5}, iota_bytes(100));
  for (bool gz : {false, true}) {
    CAPTURE(gz);
    const std::string path = dir.file(gz ? "trunc.gz" : "trunc");
    // data cut short
    if (gz) write_gz(path, full.substr(0, full.size() - 7));
    else write_file_atomic(path, full.substr(0, full.size() - 7));
    CHECK_ERROR(read_idx(path), {path, "truncated", "100 data bytes", "93"});
    // header cut short
    if (gz) write_gz(path, full.substr(0, 9));
    else write_file_atomic(path, full.substr(0, 9));
    CHECK_ERROR(read_idx(path), {path, "truncated", "3 dimensions"});
    if (gz) write_gz(path, full.substr(0, 2));
    else write_file_atomic(path, full.substr(0, 2));
    CHECK_ERROR(read_idx(path), {path, "truncated", "magic"});
  }
  // a gzip stream cut in the middle (the compressed bytes themselves truncated)
  const std::string gz_path = dir.file("cut.gz");
  write_gz(gz_path, full);
  std::string compressed = read_file(gz_path);
  write_file_atomic(gz_path, compressed.substr(0, compressed.size() / 2));
  CHECK_ERROR(read_idx(gz_path), {gz_path, "truncated"});
}

TEST_CASE("an IDX file with a wrong magic number, type or rank is refused") {
  test::TempDir dir;
  std::string good = raw_idx(IdxType::UInt8, {2, 2}, iota_bytes(4));
  std::string bad = good;
  bad[0] = 0x1f;  // e.g. a PNG or some other file
  write_file_atomic(dir.file("magic"), bad);
  CHECK_ERROR(read_idx(dir.file("magic")), {dir.file("magic"), "wrong magic number", "0x1f00"});
  bad = good;
  bad[2] = 0x07;
  write_file_atomic(dir.file("type"), bad);
  CHECK_ERROR(read_idx(dir.file("type")), {dir.file("type"), "unknown element type code 0x07"});
  bad = good;
  bad[3] = 0;
  write_file_atomic(dir.file("rank"), bad);
  CHECK_ERROR(read_idx(dir.file("rank")), {dir.file("rank"), "0 dimensions"});
  CHECK_ERROR(read_idx(dir.file("missing")), {dir.file("missing"), "does not exist"});
}

TEST_CASE("trailing data after the declared elements is refused") {
  test::TempDir dir;
  std::string s = raw_idx(IdxType::UInt8, {3}, {1, 2, 3}) + "xyz";
  write_file_atomic(dir.file("plain"), s);
  CHECK_ERROR(read_idx(dir.file("plain")), {dir.file("plain"), "3 bytes of trailing data"});
  write_gz(dir.file("gz"), s);
  CHECK_ERROR(read_idx(dir.file("gz")), {dir.file("gz"), "trailing data"});
}

TEST_CASE("a lying header or a gzip bomb cannot make the reader allocate unbounded memory") {
  test::TempDir dir;
  // declares 65535 x 65535 x 2 bytes (8 GiB): refused from the header alone
  write_gz(dir.file("huge.gz"), raw_idx(IdxType::UInt8, {65535, 65535, 2}, {}));
  CHECK_ERROR(read_idx(dir.file("huge.gz")), {dir.file("huge.gz"), "more than the limit"});
  // declares 1 GiB under the limit but holds 10 bytes: "truncated", after reading what is there
  write_gz(dir.file("liar.gz"), raw_idx(IdxType::UInt8, {1024, 1024, 1024}, iota_bytes(10)));
  CHECK_ERROR(read_idx(dir.file("liar.gz")), {dir.file("liar.gz"), "truncated", "1073741824", "only 10"});
  // a custom limit applies too
  write_idx(dir.file("small"), IdxType::UInt8, {100}, iota_bytes(100), false);
  CHECK_ERROR(read_idx(dir.file("small"), IdxReadOptions{.max_bytes = 50}), {dir.file("small"), "limit of 50 bytes"});
  // a bomb: the header declares 16 bytes, the stream inflates to 32 MiB of zeros. Only the declared
  // size (+ a small probe) is ever inflated, and the file is refused for its trailing data.
  {
    std::string bomb = raw_idx(IdxType::UInt8, {16}, iota_bytes(16));
    bomb.append(size_t{32} << 20, '\0');
    write_gz(dir.file("bomb.gz"), bomb);
  }
  CHECK(std::filesystem::file_size(dir.file("bomb.gz")) < (size_t{1} << 20));
  CHECK_ERROR(read_idx(dir.file("bomb.gz")), {dir.file("bomb.gz"), "trailing data"});
}

TEST_CASE("image and label files must agree in count, and labels lie in the class range") {
  test::TempDir dir;
  write_idx(dir.file("img"), IdxType::UInt8, {6, 2, 2}, iota_bytes(24), true);
  write_idx(dir.file("lab5"), IdxType::UInt8, {5}, {0, 1, 2, 3, 4}, true);
  CHECK_ERROR(load_idx_image_set(dir.file("img"), dir.file("lab5"), 10),
              {dir.file("img"), dir.file("lab5"), "6 images", "5 labels"});
  write_idx(dir.file("lab_bad"), IdxType::UInt8, {6}, {0, 1, 2, 10, 4, 5}, false);
  CHECK_ERROR(load_idx_image_set(dir.file("img"), dir.file("lab_bad"), 10),
              {dir.file("lab_bad"), "label 10", "sample 3", "out of range", "0 to 9"});
  // labels that are not a 1-D uint8 array, images that are not 3-D
  write_idx(dir.file("lab2d"), IdxType::UInt8, {6, 1}, {0, 1, 2, 3, 4, 5}, false);
  CHECK_ERROR(load_idx_image_set(dir.file("img"), dir.file("lab2d"), 10), {dir.file("lab2d"), "expected uint8 labels"});
  write_idx(dir.file("img2d"), IdxType::UInt8, {6, 4}, iota_bytes(24), false);
  CHECK_ERROR(load_idx_image_set(dir.file("img2d"), dir.file("lab5"), 10), {dir.file("img2d"), "expected uint8 images"});
  // the good case
  write_idx(dir.file("lab6"), IdxType::UInt8, {6}, {9, 1, 2, 3, 4, 0}, false);
  ImageSet set = load_idx_image_set(dir.file("img"), dir.file("lab6"), 10);
  CHECK(set.size() == 6);
  CHECK(set.labels.dtype() == DType::Int64);
  CHECK(set.labels.to_vector<int64_t>() == std::vector<int64_t>{9, 1, 2, 3, 4, 0});
  CHECK(set.images.sizes() == Shape{6, 2, 2});
}

TEST_CASE("Fashion-MNIST files: --data-dir, DL_DATA_DIR, gz or plain, and a helpful message when missing") {
  test::TempDir dir;
  CHECK(fashion_mnist_dir(std::string("/some/dir")) == "/some/dir");
  const char* old = std::getenv("DL_DATA_DIR");
  std::string saved = old ? old : "";
  ::setenv("DL_DATA_DIR", dir.path.c_str(), 1);
  CHECK(fashion_mnist_dir() == dir.path.string());
  CHECK(fashion_mnist_dir(std::string("/explicit")) == "/explicit");
  ::unsetenv("DL_DATA_DIR");
  CHECK(fashion_mnist_dir() == kDefaultFashionMnistDir);
  if (old) ::setenv("DL_DATA_DIR", saved.c_str(), 1);

  CHECK_ERROR(load_fashion_mnist(dir.file("nope"), FashionSplit::Train),
              {dir.file("nope"), "does not exist", "apt-get install dataset-fashion-mnist", "--data-dir"});
  CHECK_ERROR(load_fashion_mnist(dir.path.string(), FashionSplit::Test),
              {"t10k-images-idx3-ubyte", "missing", "apt-get install dataset-fashion-mnist", "--data-dir"});
  write_set(dir, "train", 30, 28, 28, true);  // gzipped
  write_set(dir, "t10k", 20, 28, 28, false);  // plain
  ImageSet train = load_fashion_mnist(dir.path.string(), FashionSplit::Train);
  ImageSet test = load_fashion_mnist(dir.path.string(), FashionSplit::Test);
  CHECK(train.size() == 30);
  CHECK(test.size() == 20);
  CHECK(train.images_path.ends_with(".gz"));
  CHECK(!test.images_path.ends_with(".gz"));
  CHECK(kFashionMnistClassNames[0] == "T-shirt/top");
  CHECK(kFashionMnistClassNames[9] == "Ankle boot");
  // not 28 x 28
  test::TempDir other;
  write_set(other, "t10k", 4, 14, 14, true);
  CHECK_ERROR(load_fashion_mnist(other.path.string(), FashionSplit::Test), {"14x14", "expected 28x28"});
}

TEST_CASE("the real Fashion-MNIST test split loads (when the data set is installed)") {
  const std::string dir = fashion_mnist_dir();
  DL_SKIP_WITHOUT_FASHION_MNIST(dir, "t10k-labels-idx1-ubyte");
  ImageSet test = load_fashion_mnist(dir, FashionSplit::Test);
  CHECK(test.images.sizes() == Shape{10000, 28, 28});
  std::vector<int64_t> counts(10, 0);
  for (int64_t l : test.labels.to_vector<int64_t>()) ++counts[static_cast<size_t>(l)];
  CHECK(counts == std::vector<int64_t>(10, 1000));
}
