// Built instead of the CUDA backend when CUDA is off: every query says there is no GPU.
#include "cuda/cuda.h"

namespace dl::cuda {
bool built_with_cuda() { return false; }
int device_count() { return 0; }
bool is_available() { return false; }
std::string unavailable_reason() { return "this build has no CUDA backend (configured with DL_CUDA=OFF or without nvcc)"; }
std::string device_name(int) { return "none"; }
}  // namespace dl::cuda
