#pragma once
// The CUDA backend's entry points. In a build without CUDA the same functions exist and report
// that no GPU can be used, so callers (tests, --device cuda) need no #ifdef.
#include <string>

namespace dl::cuda {

bool built_with_cuda();
int device_count();             // 0 when no usable GPU (or no CUDA build)
bool is_available();            // device_count() > 0
std::string unavailable_reason();  // why is_available() is false, for skip messages and errors
std::string device_name(int index);

}  // namespace dl::cuda
