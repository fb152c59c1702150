// libFuzzer target "zip": see dl::fuzz::zip in fuzz/targets.h for what it exercises.
#include "fuzz/targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  dl::fuzz::zip(data, size);
  return 0;
}
