// libFuzzer target "image": see dl::fuzz::image in fuzz/targets.h for what it exercises.
#include "fuzz/targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  dl::fuzz::image(data, size);
  return 0;
}
