// Helpers every host file of the backend uses to turn Tensors into kernel launches (cuda/host.h).
#include <array>
#include <vector>

#include "cuda/host.h"
#include "tensor/error.h"

namespace dl::cuda::host {

void check_device(const Tensor& t, const char* op) {
  if (!t.device().is_cuda()) fail("{}: expected a CUDA tensor, got one on {}", op, t.device().str());
  if (t.device().index != detail::current_device())
    fail("{}: tensor on {} but this backend runs on the current device cuda:{} (one GPU per process; choose it "
         "with CUDA_VISIBLE_DEVICES)",
         op, t.device().str(), detail::current_device());
}

k::Iter make_iter(std::initializer_list<const Tensor*> ts) {
  k::Iter it;
  it.nops = static_cast<int>(ts.size());
  DL_CHECK(it.nops >= 1 && it.nops <= k::kMaxOperands, "make_iter: {} operands", it.nops);
  const Tensor& first = **ts.begin();
  const Shape& shape = first.sizes();
  it.numel = shape_numel(shape);
  std::vector<int64_t> sizes;
  std::vector<std::array<int64_t, k::kMaxOperands>> strides;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    std::array<int64_t, k::kMaxOperands> s{};
    int op = 0;
    for (const Tensor* t : ts) s[op++] = t->strides()[d];
    sizes.push_back(shape[d]);
    strides.push_back(s);
  }
  // merge dim i into i + 1 when it is contiguous with it for every operand (as tensor/cpu/loops.h)
  for (int64_t i = static_cast<int64_t>(sizes.size()) - 2; i >= 0; --i) {
    bool ok = true;
    for (int op = 0; op < it.nops; ++op) ok = ok && strides[i][op] == strides[i + 1][op] * sizes[i + 1];
    if (ok) {
      sizes[i] *= sizes[i + 1];
      strides[i] = strides[i + 1];
      sizes.erase(sizes.begin() + i + 1);
      strides.erase(strides.begin() + i + 1);
    }
  }
  if (static_cast<int>(sizes.size()) > k::kMaxDims)
    fail("CUDA elementwise op on shape {}: {} dims remain after merging contiguous ones; at most {} are supported "
         "(make the operands contiguous first)",
         shape_str(shape), sizes.size(), k::kMaxDims);
  it.ndim = static_cast<int>(sizes.size());
  for (int d = 0; d < it.ndim; ++d) {
    it.sizes[d] = sizes[d];
    for (int op = 0; op < it.nops; ++op) it.strides[op][d] = strides[d][op];
  }
  return it;
}

}  // namespace dl::cuda::host
