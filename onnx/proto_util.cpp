#include "onnx/proto_util.h"

#include <cmath>
#include <limits>

#include "autograd/node.h"
#include "data/file_util.h"

namespace dl::onnx {

int32_t onnx_elem_type(DType dt) {
  switch (dt) {
    case DType::Float32: return ::onnx::TensorProto::FLOAT;
    case DType::Float64: return ::onnx::TensorProto::DOUBLE;
    case DType::Int64: return ::onnx::TensorProto::INT64;
    case DType::UInt8: return ::onnx::TensorProto::UINT8;
    case DType::BFloat16: return ::onnx::TensorProto::BFLOAT16;
    case DType::Float16: return ::onnx::TensorProto::FLOAT16;
  }
  fail("onnx: dtype {} has no ONNX code", dtype_name(dt));
}

OutputDifference output_difference(const Tensor& got, const Tensor& want) {
  if (got.sizes() != want.sizes())
    fail("onnx: outputs of shape {} and {} cannot be compared", shape_str(got.sizes()), shape_str(want.sizes()));
  Tensor g = got.detach().to(kCPU).to(DType::Float64), w = want.detach().to(kCPU).to(DType::Float64);
  OutputDifference d;
  if (w.numel() == 0) return d;
  d.max_abs = (g - w).abs().max().item<double>();
  d.scale = w.abs().max().item<double>();
  if (std::isnan(d.max_abs)) d.max_abs = std::numeric_limits<double>::infinity();
  return d;
}

void write_model_atomically(const ::onnx::ModelProto& model, const std::string& path) {
  std::string bytes;
  if (!model.SerializeToString(&bytes))
    fail("onnx: could not serialise the model for {} (is it over protobuf's 2 GiB limit?)", path);
  data::write_file_atomic(path, bytes);
}

}  // namespace dl::onnx
