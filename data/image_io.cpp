#include "data/image_io.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "data/file_util.h"
#include "tensor/ops.h"

// stb's implementations, private to this file (static functions), only the formats we support.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wtype-limits"
#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_PNG
#define STBI_ONLY_JPEG
#define STBI_ONLY_BMP
#define STBI_NO_STDIO
#include <stb/stb_image.h>
#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STBI_WRITE_NO_STDIO
#include <stb/stb_image_write.h>
#pragma GCC diagnostic pop

namespace dl::data {

Image::Image(int64_t w, int64_t h, int64_t c, uint8_t fill)
    : width(w), height(h), channels(c), pixels(static_cast<size_t>(w * h * c), fill) {}

namespace {
// stb_image 2.27 (Debian's) writes past its Huffman tables when a JPEG's DHT segment declares more
// than 256 codes in one table: check every DHT segment before handing the file to stb.
void check_jpeg_huffman_tables(const uint8_t* p, size_t size, const std::string& name) {
  size_t i = 2;  // after SOI
  while (i + 4 <= size) {
    if (p[i] != 0xFF) return;  // not at a marker: leave the rest to stb's own checks
    uint8_t marker = p[i + 1];
    if (marker == 0xFF) {  // fill byte
      ++i;
      continue;
    }
    if (marker == 0xD9) return;  // end of image
    if (marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7)) {
      i += 2;
      continue;
    }
    size_t len = (size_t{p[i + 2]} << 8) | p[i + 3];
    if (len < 2 || i + 2 + len > size) return;  // truncated: stb reports it
    if (marker == 0xC4) {
      size_t j = i + 4, end = i + 2 + len;
      while (j < end) {
        if (j + 17 > end) fail("JPEG image '{}' has a truncated Huffman table", name);
        size_t codes = 0;
        for (int k = 1; k <= 16; ++k) codes += p[j + k];
        if (codes > 256) fail("JPEG image '{}' has a Huffman table with {} codes (at most 256 are possible)", name, codes);
        j += 17 + codes;
      }
    }
    i += 2 + len;
    if (marker == 0xDA) {  // a scan's entropy-coded data: skip to the next real marker (progressive files have more tables)
      while (i + 1 < size && !(p[i] == 0xFF && p[i + 1] != 0x00 && !(p[i + 1] >= 0xD0 && p[i + 1] <= 0xD7))) ++i;
    }
  }
}
}  // namespace

Image decode_image(const void* data, size_t size, int channels, const ImageLimits& limits, const std::string& name) {
  if (channels < 0 || channels > 4) fail("decoding image '{}': channels must be 0 (as stored) to 4, got {}", name, channels);
  if (static_cast<int64_t>(size) > limits.max_file_bytes)
    fail("image '{}' is {} bytes, more than the limit of {} bytes", name, size, limits.max_file_bytes);
  if (size > static_cast<size_t>(INT32_MAX)) fail("image '{}' is too large to decode ({} bytes)", name, size);
  const auto* bytes = static_cast<const stbi_uc*>(data);
  int w = 0, h = 0, c = 0;
  if (!stbi_info_from_memory(bytes, static_cast<int>(size), &w, &h, &c))
    fail("'{}' is not a readable PNG, JPEG or BMP image ({})", name, stbi_failure_reason());
  // a top-down BMP reports a negative height (and a hostile one INT_MIN: negate in 64 bits)
  if (h < 0 && h != INT32_MIN) h = -h;
  if (w <= 0 || h <= 0) fail("image '{}' has an empty or invalid size {}x{}", name, w, h);
  if (int64_t{w} * h > limits.max_pixels)
    fail("image '{}' is {}x{} = {} pixels, more than the limit of {} pixels", name, w, h, int64_t{w} * h,
         limits.max_pixels);
  // A file can only hold so many pixels per byte: refuse tiny files that declare huge images before
  // decoding (stb would fill the missing data, allocating and working for the declared size).
  const int64_t pixels = int64_t{w} * h;
  const auto* u = static_cast<const uint8_t*>(data);
  bool is_png = size >= 8 && u[0] == 0x89 && u[1] == 'P' && u[2] == 'N' && u[3] == 'G';
  bool is_jpeg = size >= 3 && u[0] == 0xFF && u[1] == 0xD8 && u[2] == 0xFF;
  bool is_bmp = size >= 2 && u[0] == 'B' && u[1] == 'M';
  // deflate expands at most ~1032x (PNG); a JPEG spends at least a bit on each 8x8 block; an
  // uncompressed BMP at least a bit per pixel. Each bound has a 4x margin.
  int64_t max_pixels_for_size = is_png ? static_cast<int64_t>(size) * 1032 * 4
                                : is_jpeg ? static_cast<int64_t>(size) * 8 * 64 * 4
                                : is_bmp  ? static_cast<int64_t>(size) * 8 * 4
                                          : limits.max_pixels;
  if (pixels > max_pixels_for_size)
    fail("image '{}' declares {}x{} pixels but is only {} bytes: it is truncated or crafted", name, w, h, size);
  if (is_jpeg) check_jpeg_huffman_tables(u, size, name);
  int fw = 0, fh = 0, fc = 0;
  stbi_uc* px = stbi_load_from_memory(bytes, static_cast<int>(size), &fw, &fh, &fc, channels);
  if (!px) fail("cannot decode image '{}': the data is corrupt or truncated (stb_image: {})", name, stbi_failure_reason());
  Image img;
  img.width = fw;
  img.height = fh;
  img.channels = channels ? channels : fc;
  img.pixels.assign(px, px + static_cast<size_t>(int64_t{fw} * fh * img.channels));
  stbi_image_free(px);
  return img;
}

Image read_image(const std::string& path, int channels, const ImageLimits& limits) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) fail("image file '{}' does not exist", path);
  std::string bytes = read_file(path, limits.max_file_bytes);
  return decode_image(bytes.data(), bytes.size(), channels, limits, path);
}

namespace {
void check_image(const Image& img, const char* what) {
  if (img.width <= 0 || img.height <= 0 || img.channels < 1 || img.channels > 4)
    fail("{}: expected an image of positive size with 1 to 4 channels, got {}x{}x{}", what, img.width, img.height,
         img.channels);
  if (img.width > INT32_MAX / 4 || img.height > INT32_MAX / 4)
    fail("{}: image {}x{} is too large for PNG encoding", what, img.width, img.height);
  if (img.pixels.size() != static_cast<size_t>(img.width * img.height * img.channels))
    fail("{}: image {}x{}x{} holds {} bytes, expected {}", what, img.width, img.height, img.channels,
         img.pixels.size(), img.width * img.height * img.channels);
}
void append_bytes(void* ctx, void* data, int size) {
  auto* out = static_cast<std::string*>(ctx);
  out->append(static_cast<const char*>(data), static_cast<size_t>(size));
}
}  // namespace

std::string encode_png(const Image& img) {
  check_image(img, "encode_png");
  std::string out;
  int ok = stbi_write_png_to_func(append_bytes, &out, static_cast<int>(img.width), static_cast<int>(img.height),
                                  static_cast<int>(img.channels), img.pixels.data(),
                                  static_cast<int>(img.width * img.channels));
  if (!ok) fail("encode_png: stb_image_write failed for a {}x{}x{} image", img.width, img.height, img.channels);
  return out;
}

void write_png(const std::string& path, const Image& img) {
  std::string png;
  try {
    png = encode_png(img);
  } catch (const Error& e) {
    fail("cannot write PNG '{}': {}", path, e.what());
  }
  write_file_atomic(path, png);
}

Tensor image_to_tensor(const Image& img) {
  check_image(img, "image_to_tensor");
  Tensor t = empty({img.channels, img.height, img.width}, DType::UInt8);
  uint8_t* o = t.data_ptr<uint8_t>();
  const int64_t hw = img.height * img.width;
  for (int64_t c = 0; c < img.channels; ++c)
    for (int64_t i = 0; i < hw; ++i) o[c * hw + i] = img.pixels[static_cast<size_t>(i * img.channels + c)];
  return t;
}

Image tensor_to_image(const Tensor& t) {
  if (!t.defined() || !t.is_cpu() || (t.dim() != 2 && t.dim() != 3))
    fail("tensor_to_image: expected a CPU tensor (H, W) or (C, H, W)");
  Tensor x = t.dim() == 2 ? ops::unsqueeze(t, 0) : t;
  const int64_t c = x.size(0), h = x.size(1), w = x.size(2);
  if (c < 1 || c > 4) fail("tensor_to_image: expected 1 to 4 channels, got shape {}", shape_str(t.sizes()));
  Image img(w, h, c);
  if (x.dtype() == DType::UInt8) {
    auto v = ops::contiguous(x).to_vector<uint8_t>();
    for (int64_t ci = 0; ci < c; ++ci)
      for (int64_t i = 0; i < h * w; ++i) img.pixels[static_cast<size_t>(i * c + ci)] = v[static_cast<size_t>(ci * h * w + i)];
  } else if (is_floating(x.dtype())) {
    auto v = ops::contiguous(x).to_vector<double>();
    for (int64_t ci = 0; ci < c; ++ci)
      for (int64_t i = 0; i < h * w; ++i) {
        double d = v[static_cast<size_t>(ci * h * w + i)];
        d = std::isnan(d) ? 0.0 : std::clamp(std::round(d * 255.0), 0.0, 255.0);
        img.pixels[static_cast<size_t>(i * c + ci)] = static_cast<uint8_t>(d);
      }
  } else {
    fail("tensor_to_image: expected a uint8 or floating tensor, got {}", dtype_name(x.dtype()));
  }
  return img;
}

}  // namespace dl::data
