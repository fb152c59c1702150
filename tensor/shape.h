#pragma once
// Shapes and strides are plain vectors of int64 (strides in elements, not bytes).
#include <cstdint>
#include <string>
#include <vector>

namespace dl {

using Shape = std::vector<int64_t>;

int64_t shape_numel(const Shape& s);             // product, overflow-checked
Shape contiguous_strides(const Shape& s);        // row-major
Shape broadcast_shapes(const Shape& a, const Shape& b);  // NumPy rules; throws on mismatch
std::string shape_str(const Shape& s);           // "[2, 3]"
int64_t wrap_dim(int64_t dim, int64_t ndim);     // negative dims count from the end; checked

}  // namespace dl
