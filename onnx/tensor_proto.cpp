// onnx.TensorProto <-> dl::Tensor, with every size checked against the data actually present
// before anything is allocated; external data confined to the model's folder.
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include <fmt/ranges.h>

#include "data/file_util.h"
#include "onnx/import_internal.h"
#include "onnx/onnx.h"

namespace dl::onnx {
namespace detail {
namespace fs = std::filesystem;
using ::onnx::TensorProto;

std::string data_type_name(int32_t data_type) {
  if (TensorProto::DataType_IsValid(data_type))
    return TensorProto::DataType_Name(static_cast<TensorProto::DataType>(data_type));
  return fmt::format("unknown data type {}", data_type);
}

bool dtype_of_elem_type(int32_t elem_type, DType* out) {
  switch (elem_type) {
    case TensorProto::FLOAT: *out = DType::Float32; return true;
    case TensorProto::DOUBLE: *out = DType::Float64; return true;
    case TensorProto::INT64: *out = DType::Int64; return true;
    case TensorProto::UINT8: *out = DType::UInt8; return true;
    default: return false;
  }
}

int64_t checked_numel(const std::vector<int64_t>& dims, int64_t cap, const std::string& what) {
  // the product of the non-zero dims is capped too: an empty tensor's strides are still computed
  int64_t n = 1;
  bool zero = false;
  for (int64_t d : dims) {
    if (d < 0) fail("{}: negative dim {} in {}", what, d, fmt::join(dims, "x"));
    if (d == 0) {
      zero = true;
      continue;
    }
    if (d > cap || n > cap / d) fail("{}: dims {} claim more than {} elements", what, fmt::join(dims, "x"), cap);
    n *= d;
  }
  return zero ? 0 : n;
}

namespace {

// The element size in the file's raw_data for a data type, and the tensor's dtype.
bool file_layout(int32_t data_type, DType* dtype, int64_t* file_size) {
  switch (data_type) {
    case TensorProto::FLOAT: *dtype = DType::Float32; *file_size = 4; return true;
    case TensorProto::DOUBLE: *dtype = DType::Float64; *file_size = 8; return true;
    case TensorProto::INT64: *dtype = DType::Int64; *file_size = 8; return true;
    case TensorProto::INT32: *dtype = DType::Int64; *file_size = 4; return true;
    case TensorProto::UINT8: *dtype = DType::UInt8; *file_size = 1; return true;
    case TensorProto::BOOL: *dtype = DType::UInt8; *file_size = 1; return true;
    case TensorProto::FLOAT16: *dtype = DType::Float16; *file_size = 2; return true;
    case TensorProto::BFLOAT16: *dtype = DType::BFloat16; *file_size = 2; return true;
    default: return false;
  }
}

// `location` resolved under base_dir; refused when absolute, when any part is "..", or when the
// resolved file (symlinks followed) lies outside base_dir.
fs::path resolve_external(const std::string& base_dir, const std::string& location, const std::string& what) {
  if (base_dir.empty())
    fail("{}: external data '{}' is not allowed here (the model was given as bytes without a folder)", what,
         location);
  if (location.empty()) fail("{}: external data has an empty location", what);
  if (location.find('\0') != std::string::npos) fail("{}: external data location contains a NUL byte", what);
  const fs::path rel(location);
  if (rel.is_absolute() || rel.has_root_name() || rel.has_root_directory())
    fail("{}: external data location '{}' is absolute; it must be relative to the model's folder", what, location);
  for (const auto& part : rel)
    if (part == "..")
      fail("{}: external data location '{}' leaves the model's folder ('..')", what, location);
  std::error_code ec;
  const fs::path base = fs::weakly_canonical(fs::path(base_dir), ec);
  if (ec) fail("{}: cannot resolve the model's folder '{}': {}", what, base_dir, ec.message());
  const fs::path full = fs::weakly_canonical(base / rel, ec);
  if (ec) fail("{}: cannot resolve external data '{}': {}", what, location, ec.message());
  auto b = base.begin(), f = full.begin();
  for (; b != base.end(); ++b, ++f)
    if (f == full.end() || *b != *f)
      fail("{}: external data '{}' resolves to '{}', outside the model's folder '{}'", what, location, full.string(),
           base.string());
  if (!fs::is_regular_file(full, ec))
    fail("{}: external data file '{}' ({}) does not exist or is not a regular file", what, location, full.string());
  return full;
}

int64_t parse_int(const std::string& s, const std::string& key, const std::string& what) {
  if (s.empty() || s.size() > 18 || s.find_first_not_of("0123456789") != std::string::npos)
    fail("{}: external data '{}' is '{}', not a non-negative integer", what, key, s);
  return std::stoll(s);
}

std::string read_external(const TensorProto& t, const std::string& base_dir, const std::string& what,
                          int64_t expected_bytes, int64_t* budget) {
  if (!budget) fail("{}: external data is not allowed here", what);
  std::string location;
  int64_t offset = 0, length = -1;
  bool have_location = false;
  for (const auto& kv : t.external_data()) {
    if (kv.key() == "location") {
      location = kv.value();
      have_location = true;
    } else if (kv.key() == "offset") {
      offset = parse_int(kv.value(), "offset", what);
    } else if (kv.key() == "length") {
      length = parse_int(kv.value(), "length", what);
    } else if (kv.key() != "checksum") {
      fail("{}: unknown external data key '{}'", what, kv.key());
    }
  }
  if (!have_location) fail("{}: external data without a 'location'", what);
  const fs::path file = resolve_external(base_dir, location, what);
  if (length >= 0 && length != expected_bytes)
    fail("{}: external data length {} does not match its dims ({} bytes)", what, length, expected_bytes);
  std::error_code ec;
  const auto file_size = static_cast<int64_t>(fs::file_size(file, ec));
  if (ec) fail("{}: cannot read the size of '{}': {}", what, location, ec.message());
  if (offset > file_size || expected_bytes > file_size - offset)
    fail("{}: external data '{}' holds {} bytes from offset {}, but the tensor needs {}", what, location,
         std::max<int64_t>(file_size - offset, 0), offset, expected_bytes);
  if (expected_bytes > *budget) fail("{}: the model's external data exceeds {} bytes", what, kMaxExternalBytes);
  *budget -= expected_bytes;
  std::ifstream in(file, std::ios::binary);
  if (!in) fail("{}: cannot open external data '{}'", what, location);
  in.seekg(offset);
  std::string bytes(static_cast<size_t>(expected_bytes), '\0');
  if (expected_bytes > 0 && !in.read(bytes.data(), expected_bytes))
    fail("{}: reading {} bytes of external data '{}' failed", what, expected_bytes, location);
  return bytes;
}

template <typename Src, typename Dst>
void copy_converted(const Src* src, Dst* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<Dst>(src[i]);
}

}  // namespace

Tensor tensor_from_proto(const TensorProto& t, const std::string& base_dir, const std::string& what,
                         int64_t* external_budget) {
  DType dtype;
  int64_t esize = 0;
  if (!file_layout(t.data_type(), &dtype, &esize))
    fail("{}: data type {} is not supported (FLOAT, DOUBLE, INT64, INT32, UINT8, BOOL, FLOAT16, BFLOAT16 are)", what,
         data_type_name(t.data_type()));
  if (t.has_segment()) fail("{}: segmented tensors are not supported", what);
  if (t.dims_size() > 16) fail("{}: {} dims (at most 16 are supported)", what, t.dims_size());
  const std::vector<int64_t> dims(t.dims().begin(), t.dims().end());
  const int64_t numel = checked_numel(dims, kMaxTensorElements, what);
  const int64_t bytes = numel * esize;

  const bool external = t.has_data_location() && t.data_location() == TensorProto::EXTERNAL;
  if (!external && t.external_data_size() > 0) fail("{}: external_data given but data_location is not EXTERNAL", what);
  const int typed = t.float_data_size() + t.double_data_size() + t.int64_data_size() + t.int32_data_size() +
                    t.uint64_data_size() + t.string_data_size();
  std::string ext;
  const std::string* raw = nullptr;
  if (external) {
    if (t.has_raw_data() || typed > 0) fail("{}: external data and inline data at once", what);
    ext = read_external(t, base_dir, what, bytes, external_budget);
    raw = &ext;
  } else if (t.has_raw_data()) {
    if (typed > 0) fail("{}: both raw_data and typed data", what);
    if (static_cast<int64_t>(t.raw_data().size()) != bytes)
      fail("{}: raw_data holds {} bytes but dims {} of {} need {}", what, t.raw_data().size(), fmt::join(dims, "x"),
           data_type_name(t.data_type()), bytes);
    raw = &t.raw_data();
  }

  auto count_mismatch = [&](int64_t have, const char* field) {
    fail("{}: {} holds {} values but dims {} need {}", what, field, have, fmt::join(dims, "x"), numel);
  };
  if (!raw) {  // typed data: its count must match the dims before anything of that size is allocated
    switch (t.data_type()) {
      case TensorProto::FLOAT:
        if (t.float_data_size() != numel) count_mismatch(t.float_data_size(), "float_data");
        break;
      case TensorProto::DOUBLE:
        if (t.double_data_size() != numel) count_mismatch(t.double_data_size(), "double_data");
        break;
      case TensorProto::INT64:
        if (t.int64_data_size() != numel) count_mismatch(t.int64_data_size(), "int64_data");
        break;
      default:  // INT32, UINT8, BOOL, FLOAT16 and BFLOAT16 (the 16 bits of each) are stored in int32_data
        if (t.int32_data_size() != numel) count_mismatch(t.int32_data_size(), "int32_data");
    }
  }

  Tensor out = empty(Shape(dims.begin(), dims.end()), dtype);
  if (raw) {
    const char* src = raw->data();
    switch (t.data_type()) {
      case TensorProto::INT32: {
        std::vector<int32_t> tmp(static_cast<size_t>(numel));
        if (numel) std::memcpy(tmp.data(), src, static_cast<size_t>(bytes));
        copy_converted(tmp.data(), out.data_ptr<int64_t>(), numel);
        break;
      }
      case TensorProto::BOOL: {
        uint8_t* dst = out.data_ptr<uint8_t>();
        for (int64_t i = 0; i < numel; ++i) dst[i] = src[i] != 0;
        break;
      }
      default:
        if (bytes) std::memcpy(out.raw_data(), src, static_cast<size_t>(bytes));
    }
    return out;
  }
  switch (t.data_type()) {  // the counts were checked above
    case TensorProto::FLOAT:
      copy_converted(t.float_data().data(), out.data_ptr<float>(), numel);
      break;
    case TensorProto::DOUBLE:
      copy_converted(t.double_data().data(), out.data_ptr<double>(), numel);
      break;
    case TensorProto::INT64:
      copy_converted(t.int64_data().data(), out.data_ptr<int64_t>(), numel);
      break;
    case TensorProto::INT32:
      copy_converted(t.int32_data().data(), out.data_ptr<int64_t>(), numel);
      break;
    case TensorProto::FLOAT16:
    case TensorProto::BFLOAT16: {
      uint16_t* dst = static_cast<uint16_t*>(out.raw_data());
      for (int64_t i = 0; i < numel; ++i) {
        const int32_t v = t.int32_data(static_cast<int>(i));
        if (v < 0 || v > 0xFFFF) fail("{}: value {} is not the bits of a {}", what, v, data_type_name(t.data_type()));
        dst[i] = static_cast<uint16_t>(v);
      }
      break;
    }
    case TensorProto::UINT8:
    case TensorProto::BOOL: {
      uint8_t* dst = out.data_ptr<uint8_t>();
      for (int64_t i = 0; i < numel; ++i) {
        const int32_t v = t.int32_data(static_cast<int>(i));
        if (v < 0 || v > 255) fail("{}: value {} does not fit {}", what, v, data_type_name(t.data_type()));
        dst[i] = static_cast<uint8_t>(t.data_type() == TensorProto::BOOL ? v != 0 : v);
      }
      break;
    }
    default: break;
  }
  return out;
}

void tensor_to_proto(const Tensor& t_in, const std::string& name, TensorProto* out) {
  if (!t_in.defined()) fail("write_tensor_proto: tensor '{}' is undefined", name);
  Tensor t = t_in.detach().to(kCPU).contiguous();
  out->Clear();
  out->set_name(name);
  switch (t.dtype()) {
    case DType::Float32: out->set_data_type(TensorProto::FLOAT); break;
    case DType::Float64: out->set_data_type(TensorProto::DOUBLE); break;
    case DType::Int64: out->set_data_type(TensorProto::INT64); break;
    case DType::UInt8: out->set_data_type(TensorProto::UINT8); break;
    case DType::BFloat16: out->set_data_type(TensorProto::BFLOAT16); break;
    case DType::Float16: out->set_data_type(TensorProto::FLOAT16); break;
    default: fail("write_tensor_proto: tensor '{}' has dtype {}, which has no TensorProto form here", name,
                  dtype_name(t.dtype()));
  }
  for (int64_t d : t.sizes()) out->add_dims(d);
  out->set_raw_data(std::string(static_cast<const char*>(t.raw_data()),
                                static_cast<size_t>(t.numel() * t.element_size())));
}

}  // namespace detail

Tensor read_tensor_proto(const std::string& path, std::string* name) {
  std::string bytes;
  try {
    bytes = data::read_file(path, detail::kMaxModelBytes);
  } catch (const Error& e) {
    fail("read_tensor_proto: {}", e.what());
  }
  ::onnx::TensorProto proto;
  if (!proto.ParseFromString(bytes)) fail("read_tensor_proto: '{}' is not a serialized onnx.TensorProto", path);
  if (name) *name = proto.name();
  return detail::tensor_from_proto(proto, "", fmt::format("read_tensor_proto: '{}'", path), nullptr);
}

void write_tensor_proto(const std::string& path, const Tensor& t, const std::string& name) {
  ::onnx::TensorProto proto;
  detail::tensor_to_proto(t, name, &proto);
  std::string bytes;
  if (!proto.SerializeToString(&bytes)) fail("write_tensor_proto: could not serialise '{}' for '{}'", name, path);
  data::write_file_atomic(path, bytes);
}

}  // namespace dl::onnx
