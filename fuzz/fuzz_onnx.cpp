// libFuzzer target "onnx": see dl::fuzz::onnx_model in fuzz/targets.h for what it exercises.
#include "fuzz/targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  dl::fuzz::onnx_model(data, size);
  return 0;
}
