#pragma once
// Image files: PNG, JPEG and BMP decoding through stb_image (with limits on file size and pixel
// count checked before decoding), PNG encoding through stb_image_write, written atomically.
// Pixels are 8-bit, interleaved rows (HWC), the layout files use; image_to_tensor / tensor_to_image
// convert to and from the framework's CHW tensors.
#include <cstdint>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace dl::data {

struct Image {
  int64_t width = 0, height = 0, channels = 0;  // channels: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA
  std::vector<uint8_t> pixels;                  // height * width * channels, row-major HWC

  Image() = default;
  Image(int64_t w, int64_t h, int64_t c, uint8_t fill = 0);
  uint8_t& at(int64_t y, int64_t x, int64_t c = 0) { return pixels[static_cast<size_t>((y * width + x) * channels + c)]; }
  uint8_t at(int64_t y, int64_t x, int64_t c = 0) const {
    return pixels[static_cast<size_t>((y * width + x) * channels + c)];
  }
};

struct ImageLimits {
  int64_t max_file_bytes = int64_t{256} << 20;  // refused before reading
  int64_t max_pixels = int64_t{1} << 26;        // width * height, refused before decoding
};

// Reads a PNG, JPEG or BMP file. `channels` 0 keeps the file's channels; 1..4 converts. Throws
// dl::Error naming the file: missing, too big, not an image, corrupt.
Image read_image(const std::string& path, int channels = 0, const ImageLimits& limits = {});
// The same from bytes in memory; `name` is used in error messages.
Image decode_image(const void* data, size_t size, int channels = 0, const ImageLimits& limits = {},
                   const std::string& name = "<memory>");

// PNG bytes of an image (1 to 4 channels).
std::string encode_png(const Image& img);
// Writes a PNG file atomically (temporary file + rename).
void write_png(const std::string& path, const Image& img);

// (C, H, W) uint8 tensor of an image.
Tensor image_to_tensor(const Image& img);
// An image from a (H, W) or (C, H, W) tensor, C in 1..4: uint8 as is, float values in [0, 1]
// scaled by 255, rounded and clamped.
Image tensor_to_image(const Tensor& t);

}  // namespace dl::data
