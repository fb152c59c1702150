#include "models/io/raw_tensor.h"

#include <bit>
#include <cmath>
#include <cstring>

#include <fmt/ranges.h>

#include "tensor/error.h"

static_assert(std::endian::native == std::endian::little,
              "models/io assumes a little-endian host (storage bytes are little-endian)");

namespace dl::io {

int64_t dtype_size(RawDType t) {
  switch (t) {
    case RawDType::F16: return 2;
    case RawDType::BF16: return 2;
    case RawDType::F32: return 4;
    case RawDType::F64: return 8;
    case RawDType::I64: return 8;
    case RawDType::I32: return 4;
    case RawDType::I16: return 2;
    case RawDType::I8: return 1;
    case RawDType::U8: return 1;
    case RawDType::Bool: return 1;
  }
  fail("invalid RawDType {}", static_cast<int>(t));
}

const char* dtype_name(RawDType t) {
  switch (t) {
    case RawDType::F16: return "F16";
    case RawDType::BF16: return "BF16";
    case RawDType::F32: return "F32";
    case RawDType::F64: return "F64";
    case RawDType::I64: return "I64";
    case RawDType::I32: return "I32";
    case RawDType::I16: return "I16";
    case RawDType::I8: return "I8";
    case RawDType::U8: return "U8";
    case RawDType::Bool: return "BOOL";
  }
  return "?";
}

bool dtype_from_name(const std::string& name, RawDType* out) {
  static const std::pair<const char*, RawDType> kNames[] = {
      {"F16", RawDType::F16}, {"BF16", RawDType::BF16}, {"F32", RawDType::F32},
      {"F64", RawDType::F64}, {"I64", RawDType::I64},   {"I32", RawDType::I32},
      {"I16", RawDType::I16}, {"I8", RawDType::I8},     {"U8", RawDType::U8},
      {"BOOL", RawDType::Bool}};
  for (const auto& [n, t] : kNames) {
    if (name == n) {
      *out = t;
      return true;
    }
  }
  return false;
}

bool checked_mul(int64_t a, int64_t b, int64_t* out) {
  if (a < 0 || b < 0) return false;
  return !__builtin_mul_overflow(a, b, out);
}

bool checked_add(int64_t a, int64_t b, int64_t* out) {
  if (a < 0 || b < 0) return false;
  return !__builtin_add_overflow(a, b, out);
}

int64_t RawTensor::numel() const {
  int64_t n = 1;
  for (int64_t s : shape) {
    if (s < 0) fail("raw tensor has a negative size {}", s);
    if (!checked_mul(n, s, &n)) fail("raw tensor element count overflows");
  }
  return n;
}

int64_t RawTensor::storage_numel() const {
  if (!storage) return 0;
  return static_cast<int64_t>(storage->size()) / dtype_size(dtype);
}

std::vector<int64_t> contiguous_strides(const std::vector<int64_t>& shape) {
  std::vector<int64_t> st(shape.size());
  int64_t acc = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    st[i] = acc;
    int64_t s = shape[i] > 0 ? shape[i] : 1;
    if (!checked_mul(acc, s, &acc)) fail("shape element count overflows");
  }
  return st;
}

bool RawTensor::is_contiguous() const {
  int64_t expected = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    if (shape[i] == 1) continue;
    if (strides[i] != expected) return false;
    expected *= shape[i];
  }
  return true;
}

void validate_view(const RawTensor& t, const std::string& what) {
  if (t.shape.size() != t.strides.size())
    fail("{}: shape has {} dims but strides have {}", what, t.shape.size(), t.strides.size());
  if (t.shape.size() > 64) fail("{}: too many dimensions ({})", what, t.shape.size());
  if (t.storage_offset < 0) fail("{}: negative storage offset {}", what, t.storage_offset);
  int64_t n = 1;
  for (size_t i = 0; i < t.shape.size(); ++i) {
    if (t.shape[i] < 0) fail("{}: negative size {} in dim {}", what, t.shape[i], i);
    if (t.strides[i] < 0) fail("{}: negative stride {} in dim {}", what, t.strides[i], i);
    if (!checked_mul(n, t.shape[i], &n)) fail("{}: element count overflows int64", what);
  }
  if (!t.storage) fail("{}: has no storage", what);
  if (t.storage->size() % static_cast<size_t>(dtype_size(t.dtype)) != 0)
    fail("{}: storage size {} bytes is not a multiple of the element size {}", what,
         t.storage->size(), dtype_size(t.dtype));
  const int64_t storage_numel = t.storage_numel();
  if (n == 0) {
    if (t.storage_offset > storage_numel)
      fail("{}: storage offset {} is out of bounds for a storage of {} elements", what,
           t.storage_offset, storage_numel);
    return;
  }
  int64_t max_index = t.storage_offset;
  for (size_t i = 0; i < t.shape.size(); ++i) {
    int64_t span = 0;
    if (!checked_mul(t.shape[i] - 1, t.strides[i], &span) ||
        !checked_add(max_index, span, &max_index))
      fail("{}: offset/size/stride arithmetic overflows int64", what);
  }
  if (max_index >= storage_numel)
    fail("{}: view (offset {}, shape [{}], strides [{}]) reaches element {}, out of bounds for a "
         "storage of {} elements",
         what, t.storage_offset, fmt::join(t.shape, ", "), fmt::join(t.strides, ", "), max_index,
         storage_numel);
}

namespace {

// Calls fn(element index into storage) for each element in row-major order.
template <typename Fn>
void for_each_index(const RawTensor& t, Fn&& fn) {
  validate_view(t, "raw tensor");
  const int64_t n = t.numel();
  if (n == 0) return;
  const size_t nd = t.shape.size();
  std::vector<int64_t> idx(nd, 0);
  int64_t pos = t.storage_offset;
  for (int64_t k = 0; k < n; ++k) {
    fn(pos);
    for (size_t d = nd; d-- > 0;) {
      if (++idx[d] < t.shape[d]) {
        pos += t.strides[d];
        break;
      }
      pos -= (t.shape[d] - 1) * t.strides[d];
      idx[d] = 0;
    }
  }
}

template <typename T>
T load(const uint8_t* base, int64_t i) {
  T v;
  std::memcpy(&v, base + i * static_cast<int64_t>(sizeof(T)), sizeof(T));
  return v;
}

template <typename Out>
std::vector<Out> convert(const RawTensor& t) {
  validate_view(t, "raw tensor");
  // A view may reach each stored element many times (stride 0, as torch's expand writes): never
  // materialise more than the storage holds beyond a small allowance.
  constexpr int64_t kExpandAllowance = int64_t{1} << 20;
  if (t.numel() > std::max(t.storage_numel(), kExpandAllowance))
    fail("raw tensor: a view of {} elements over a storage of {} elements (an expanded tensor); refusing to "
         "materialise it", t.numel(), t.storage_numel());
  std::vector<Out> out;
  out.reserve(static_cast<size_t>(t.numel()));
  const uint8_t* b = t.storage ? t.storage->data() : nullptr;
  auto emit = [&](auto value) {
    if constexpr (std::is_same_v<Out, int64_t> &&
                  std::is_floating_point_v<std::decay_t<decltype(value)>>) {
      double d = static_cast<double>(value);
      if (!std::isfinite(d) || d >= 9223372036854775808.0 || d < -9223372036854775808.0)
        fail("raw tensor: value {} cannot be converted to int64", d);
      out.push_back(static_cast<int64_t>(d));
    } else {
      out.push_back(static_cast<Out>(value));
    }
  };
  switch (t.dtype) {
    case RawDType::F16: for_each_index(t, [&](int64_t i) { emit(half_to_float(load<uint16_t>(b, i))); }); break;
    case RawDType::BF16: for_each_index(t, [&](int64_t i) { emit(bfloat16_to_float(load<uint16_t>(b, i))); }); break;
    case RawDType::F32: for_each_index(t, [&](int64_t i) { emit(load<float>(b, i)); }); break;
    case RawDType::F64: for_each_index(t, [&](int64_t i) { emit(load<double>(b, i)); }); break;
    case RawDType::I64: for_each_index(t, [&](int64_t i) { emit(load<int64_t>(b, i)); }); break;
    case RawDType::I32: for_each_index(t, [&](int64_t i) { emit(load<int32_t>(b, i)); }); break;
    case RawDType::I16: for_each_index(t, [&](int64_t i) { emit(load<int16_t>(b, i)); }); break;
    case RawDType::I8: for_each_index(t, [&](int64_t i) { emit(load<int8_t>(b, i)); }); break;
    case RawDType::U8: for_each_index(t, [&](int64_t i) { emit(load<uint8_t>(b, i)); }); break;
    case RawDType::Bool: for_each_index(t, [&](int64_t i) { emit(static_cast<int>(b[i] != 0)); }); break;
  }
  return out;
}

}  // namespace

std::vector<float> RawTensor::to_f32() const { return convert<float>(*this); }
std::vector<double> RawTensor::to_f64() const { return convert<double>(*this); }
std::vector<int64_t> RawTensor::to_i64() const { return convert<int64_t>(*this); }

std::vector<uint8_t> RawTensor::contiguous_bytes() const {
  validate_view(*this, "raw tensor");
  const int64_t es = dtype_size(dtype);
  const int64_t n = numel();
  std::vector<uint8_t> out(static_cast<size_t>(n * es));
  if (n == 0) return out;
  if (is_contiguous()) {
    std::memcpy(out.data(), storage->data() + storage_offset * es, out.size());
    return out;
  }
  uint8_t* dst = out.data();
  const uint8_t* src = storage->data();
  for_each_index(*this, [&](int64_t i) {
    std::memcpy(dst, src + i * es, static_cast<size_t>(es));
    dst += es;
  });
  return out;
}

RawTensor make_raw_tensor(RawDType dtype, std::vector<int64_t> shape, std::vector<uint8_t> bytes) {
  RawTensor t;
  t.dtype = dtype;
  t.shape = std::move(shape);
  t.strides = contiguous_strides(t.shape);
  int64_t nbytes = 0;
  if (!checked_mul(t.numel(), dtype_size(dtype), &nbytes) ||
      nbytes != static_cast<int64_t>(bytes.size()))
    fail("make_raw_tensor: {} bytes given for shape [{}] of {}", bytes.size(),
         fmt::join(t.shape, ", "), dtype_name(dtype));
  t.storage = std::make_shared<const std::vector<uint8_t>>(std::move(bytes));
  return t;
}

float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalize
      int e = -1;
      do {
        ++e;
        mant <<= 1;
      } while ((mant & 0x400u) == 0);
      mant &= 0x3ffu;
      bits = sign | (static_cast<uint32_t>(127 - 15 - e) << 23) | (mant << 13);
    }
  } else if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  return std::bit_cast<float>(bits);
}

float bfloat16_to_float(uint16_t b) { return std::bit_cast<float>(static_cast<uint32_t>(b) << 16); }

}  // namespace dl::io
