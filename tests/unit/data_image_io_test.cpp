// Image files: PNG write/read round trips, decoding limits and errors, tensor conversions, the
// drawing helpers and atomic writes.
#include <filesystem>

#include "data/file_util.h"
#include "data/image_draw.h"
#include "data/image_io.h"
#include "data_test_util.h"
#include "test_util.h"

using namespace dl;
using namespace dl::data;

namespace {
Image pattern(int64_t w, int64_t h, int64_t c) {
  Image img(w, h, c);
  for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = static_cast<uint8_t>((i * 37 + i / 7) % 256);
  return img;
}
}  // namespace

TEST_CASE("PNG write/read round trip for 1 to 4 channels") {
  test::TempDir dir;
  for (int64_t c = 1; c <= 4; ++c) {
    CAPTURE(c);
    Image img = pattern(13, 7, c);
    const std::string path = dir.file(fmt::format("p{}.png", c));
    write_png(path, img);
    Image back = read_image(path);
    CHECK(back.width == 13);
    CHECK(back.height == 7);
    CHECK(back.channels == c);
    CHECK(back.pixels == img.pixels);
  }
  // conversion on read: gray -> RGB repeats the value
  Image rgb = read_image(dir.file("p1.png"), 3);
  CHECK(rgb.channels == 3);
  CHECK(rgb.at(2, 5, 0) == pattern(13, 7, 1).at(2, 5));
  CHECK(rgb.at(2, 5, 2) == pattern(13, 7, 1).at(2, 5));
  // only the final file remains: the temporary was renamed
  int files = 0;
  for (auto& e : std::filesystem::directory_iterator(dir.path)) {
    CHECK(e.path().string().find(".tmp") == std::string::npos);
    ++files;
  }
  CHECK(files == 4);
}

TEST_CASE("image tensors: (C, H, W) uint8 both ways, float scaled by 255") {
  Image img = pattern(5, 3, 3);
  Tensor t = image_to_tensor(img);
  CHECK(t.sizes() == Shape{3, 3, 5});
  CHECK(t.at<uint8_t>({2, 1, 4}) == img.at(1, 4, 2));
  CHECK(tensor_to_image(t).pixels == img.pixels);
  Tensor f = from_vector<float>({0.0f, 0.5f, 1.0f, 2.0f, -1.0f, 0.2f}, {2, 3});
  Image g = tensor_to_image(f);
  CHECK(g.channels == 1);
  CHECK(g.pixels == std::vector<uint8_t>{0, 128, 255, 255, 0, 51});
  CHECK_ERROR(tensor_to_image(zeros({5, 2, 2})), {"tensor_to_image", "1 to 4 channels"});
}

TEST_CASE("reading a missing, non-image, corrupt or oversized file gives a clear error") {
  test::TempDir dir;
  CHECK_ERROR(read_image(dir.file("none.png")), {dir.file("none.png"), "does not exist"});
  write_file_atomic(dir.file("text.png"), std::string("this is not an image at all"));
  CHECK_ERROR(read_image(dir.file("text.png")), {dir.file("text.png"), "not a readable PNG, JPEG or BMP"});
  // a PNG cut in half
  std::string png = encode_png(pattern(40, 40, 3));
  write_file_atomic(dir.file("half.png"), png.substr(0, png.size() / 2));
  CHECK_ERROR(read_image(dir.file("half.png")), {dir.file("half.png")});
  // limits: file bytes (before reading) and pixel count (before decoding)
  write_file_atomic(dir.file("big.png"), png);
  CHECK_ERROR(read_image(dir.file("big.png"), 0, ImageLimits{.max_file_bytes = 100}), {dir.file("big.png"), "limit of 100 bytes"});
  CHECK_ERROR(read_image(dir.file("big.png"), 0, ImageLimits{.max_pixels = 1000}),
              {dir.file("big.png"), "40x40", "limit of 1000 pixels"});
  CHECK(read_image(dir.file("big.png")).width == 40);
  CHECK_ERROR(read_image(dir.file("big.png"), 7), {"channels must be 0"});
  // writing into a missing folder names the file
  CHECK_ERROR(write_png(dir.file("no/such/dir/x.png"), pattern(2, 2, 1)), {"x.png"});
  CHECK_ERROR(encode_png(Image()), {"encode_png"});
}

TEST_CASE("a BMP decodes too") {
  // 2x1 24-bit BMP, bottom-up rows padded to 4 bytes: pixels (B, G, R) = (255, 0, 0), (0, 0, 255)
  const unsigned char bmp[] = {'B', 'M', 62, 0, 0, 0, 0, 0, 0, 0, 54, 0, 0, 0,                 // file header
                               40, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 1, 0, 24, 0, 0, 0, 0, 0,  // info header
                               8, 0, 0, 0, 0x13, 0x0b, 0, 0, 0x13, 0x0b, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                               255, 0, 0, 0, 0, 255, 0, 0};
  Image img = decode_image(bmp, sizeof bmp, 0, {}, "tiny.bmp");
  CHECK(img.width == 2);
  CHECK(img.height == 1);
  CHECK(img.channels == 3);
  CHECK(img.pixels == std::vector<uint8_t>{0, 0, 255, 255, 0, 0});
}

TEST_CASE("drawing: text covers pixels inside its measured box, tiles are pasted scaled") {
  Image img(200, 40, 1, 255);
  const std::string text = "T-shirt/top";
  draw_text(img, 3, 4, text, 2, {0, 0, 0, 255});
  const int64_t w = text_width(text, 2), h = text_height(text, 2);
  CHECK(w > 50);
  int64_t dark = 0, outside = 0;
  for (int64_t y = 0; y < img.height; ++y)
    for (int64_t x = 0; x < img.width; ++x)
      if (img.at(y, x) == 0) {
        ++dark;
        if (x < 3 || x >= 3 + w || y < 4 || y >= 4 + h + 2) ++outside;
      }
  CHECK(dark > 100);
  CHECK(outside == 0);
  const uint8_t tile[4] = {10, 20, 30, 40};
  paste_gray(img, 190, 30, tile, 2, 2, 3);  // clipped at the right edge
  CHECK(img.at(30, 190) == 10);
  CHECK(img.at(32, 192) == 10);
  CHECK(img.at(33, 193) == 40);
  Image rgba(4, 4, 4, 0);
  paste_gray(rgba, 0, 0, tile, 2, 2, 1);
  CHECK(rgba.at(1, 1, 0) == 40);
  CHECK(rgba.at(1, 1, 3) == 255);
}
