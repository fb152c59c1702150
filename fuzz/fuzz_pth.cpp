// libFuzzer target "pth": see dl::fuzz::pth in fuzz/targets.h for what it exercises.
#include "fuzz/targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  dl::fuzz::pth(data, size);
  return 0;
}
