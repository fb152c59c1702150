// libFuzzer target "safetensors": see dl::fuzz::safetensors in fuzz/targets.h for what it exercises.
#include "fuzz/targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  dl::fuzz::safetensors(data, size);
  return 0;
}
