#include "data/image_draw.h"

#include <algorithm>
#include <cmath>
#include <vector>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#include <stb/stb_easy_font.h>
#pragma GCC diagnostic pop

namespace dl::data {

namespace {
void check(const Image& img, const char* op) {
  if (img.channels < 1 || img.channels > 4 ||
      img.pixels.size() != static_cast<size_t>(img.width * img.height * img.channels))
    fail("{}: the image is malformed ({}x{}x{}, {} bytes)", op, img.width, img.height, img.channels, img.pixels.size());
}
std::string printable(const std::string& text) {
  std::string s;
  for (char c : text) s.push_back((c >= 32 && c < 127) || c == '\n' ? c : ' ');
  return s;
}
}  // namespace

void fill_rect(Image& img, int64_t x, int64_t y, int64_t w, int64_t h, Color color) {
  check(img, "fill_rect");
  const int64_t x0 = std::max<int64_t>(x, 0), y0 = std::max<int64_t>(y, 0);
  const int64_t x1 = std::min(x + w, img.width), y1 = std::min(y + h, img.height);
  for (int64_t yy = y0; yy < y1; ++yy)
    for (int64_t xx = x0; xx < x1; ++xx)
      for (int64_t c = 0; c < img.channels; ++c) img.at(yy, xx, c) = color[static_cast<size_t>(c)];
}

int64_t text_width(const std::string& text, int64_t scale) {
  std::string s = printable(text);
  return static_cast<int64_t>(stb_easy_font_width(s.data())) * scale;
}

int64_t text_height(const std::string& text, int64_t scale) {
  std::string s = printable(text);
  return static_cast<int64_t>(stb_easy_font_height(s.data())) * scale;
}

void draw_text(Image& img, int64_t x, int64_t y, const std::string& text, int64_t scale, Color color) {
  check(img, "draw_text");
  if (scale < 1) fail("draw_text: scale must be at least 1, got {}", scale);
  std::string s = printable(text);
  // stb_easy_font emits quads of 4 vertices (x, y, z floats + 4 color bytes = 16 bytes each);
  // a character needs at most ~30 quads
  std::vector<char> buf((s.size() + 1) * 64 * 16 * 4);
  unsigned char col[4] = {255, 255, 255, 255};
  int quads = stb_easy_font_print(0, 0, s.data(), col, buf.data(), static_cast<int>(buf.size()));
  for (int q = 0; q < quads; ++q) {
    float xs[4], ys[4];
    for (int v = 0; v < 4; ++v) {
      const float* f = reinterpret_cast<const float*>(buf.data() + (q * 4 + v) * 16);
      xs[v] = f[0];
      ys[v] = f[1];
    }
    const auto qx0 = static_cast<int64_t>(std::lround(*std::min_element(xs, xs + 4)));
    const auto qx1 = static_cast<int64_t>(std::lround(*std::max_element(xs, xs + 4)));
    const auto qy0 = static_cast<int64_t>(std::lround(*std::min_element(ys, ys + 4)));
    const auto qy1 = static_cast<int64_t>(std::lround(*std::max_element(ys, ys + 4)));
    fill_rect(img, x + qx0 * scale, y + qy0 * scale, (qx1 - qx0) * scale, (qy1 - qy0) * scale, color);
  }
}

void paste_gray(Image& img, int64_t x, int64_t y, const uint8_t* tile, int64_t h, int64_t w, int64_t scale) {
  check(img, "paste_gray");
  if (scale < 1) fail("paste_gray: scale must be at least 1, got {}", scale);
  for (int64_t ty = 0; ty < h * scale; ++ty) {
    const int64_t iy = y + ty;
    if (iy < 0 || iy >= img.height) continue;
    for (int64_t tx = 0; tx < w * scale; ++tx) {
      const int64_t ix = x + tx;
      if (ix < 0 || ix >= img.width) continue;
      const uint8_t v = tile[(ty / scale) * w + tx / scale];
      const int64_t color_channels = img.channels == 2 || img.channels == 4 ? img.channels - 1 : img.channels;
      for (int64_t c = 0; c < color_channels; ++c) img.at(iy, ix, c) = v;
      if (color_channels != img.channels) img.at(iy, ix, img.channels - 1) = 255;
    }
  }
}

}  // namespace dl::data
