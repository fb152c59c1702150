#pragma once
// Drawing on 8-bit images for figures (sample grids, mean images): text labels rendered with
// stb_easy_font (a tiny built-in vector font for printable ASCII, drawn as filled rectangles),
// tiles pasted with nearest-neighbour upscaling, rectangles filled.
#include <array>
#include <cstdint>
#include <string>

#include "data/image_io.h"

namespace dl::data {

using Color = std::array<uint8_t, 4>;  // channel values; an image with fewer channels uses the first ones

// Draws printable ASCII text with its top-left corner at (x, y), each font unit `scale` pixels.
// Characters outside the image are clipped. Non-printable characters draw nothing.
void draw_text(Image& img, int64_t x, int64_t y, const std::string& text, int64_t scale, Color color);
// The size in pixels that draw_text would cover.
int64_t text_width(const std::string& text, int64_t scale);
int64_t text_height(const std::string& text, int64_t scale);

void fill_rect(Image& img, int64_t x, int64_t y, int64_t w, int64_t h, Color color);

// Pastes a grayscale tile (h x w bytes, row-major) at (x, y), each pixel as a scale x scale block,
// into every channel of `img` (alpha, if any, set opaque). Clipped at the image's edges.
void paste_gray(Image& img, int64_t x, int64_t y, const uint8_t* tile, int64_t h, int64_t w, int64_t scale);

}  // namespace dl::data
