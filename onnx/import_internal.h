#pragma once
// Internals of the ONNX importer (onnx/import.cpp, onnx/import_ops.cpp, onnx/tensor_proto.cpp).
// Not part of the public API (onnx/onnx.h).
#include <onnx/onnx_pb.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace dl::onnx::detail {

// ---- limits -------------------------------------------------------------------------------------
inline constexpr int64_t kMaxModelBytes = (int64_t{1} << 31) - 1;      // protobuf's own limit: 2 GiB
inline constexpr int64_t kMaxTensorElements = int64_t{1} << 34;         // one initializer
inline constexpr int64_t kMaxExternalBytes = int64_t{1} << 34;          // all external data of a model (16 GiB)
inline constexpr int64_t kMaxRunElements = int64_t{1} << 31;            // one value computed while running
inline constexpr int64_t kMaxFoldElements = int64_t{1} << 20;           // one value folded at load
inline constexpr int64_t kMaxFoldTotal = int64_t{1} << 24;              // all values folded at load

// ---- TensorProto <-> Tensor (onnx/tensor_proto.cpp) --------------------------------------------
// Checks dims (no negative, no overflow, at most kMaxTensorElements), the data type (FLOAT,
// DOUBLE, INT64, INT32 -> int64, UINT8, BOOL -> uint8), and that the data present (raw_data, the
// typed field, or an external file under base_dir) holds exactly the elements the dims claim,
// before anything of that size is allocated. `what` names the tensor in errors.
// `external_budget` (bytes) is decreased by external data read; nullptr = no external data allowed.
Tensor tensor_from_proto(const ::onnx::TensorProto& t, const std::string& base_dir, const std::string& what,
                         int64_t* external_budget);
void tensor_to_proto(const Tensor& t, const std::string& name, ::onnx::TensorProto* out);
std::string data_type_name(int32_t data_type);
// DType for an ONNX elem_type (graph inputs); false when unsupported.
bool dtype_of_elem_type(int32_t elem_type, DType* out);

// Product of dims, refusing negative dims and overflow beyond `cap` (`what` names it).
int64_t checked_numel(const std::vector<int64_t>& dims, int64_t cap, const std::string& what);

// ---- ops (onnx/import_ops.cpp) ------------------------------------------------------------------
// A node compiled at load: attributes parsed and checked; called with one tensor per node input
// (undefined for an absent optional input), returns one per node output it produces.
using OpFn = std::function<std::vector<Tensor>(const std::vector<Tensor>&)>;

struct NodeContext {
  const ::onnx::NodeProto& node;
  int64_t opset;
  std::string where;  // "node 'conv1' (#3, Conv)"
  const bool* training = nullptr;  // the model's train()/eval() mode (read when the node runs)
};

// Compiles one node; throws dl::Error naming the node for an unsupported op, attribute, attribute
// value, or number of inputs/outputs.
OpFn compile_node(const NodeContext& ctx);
// Which inputs of an op are read as running statistics (buffers), e.g. BatchNormalization 3, 4.
bool is_running_stat_input(const std::string& op_type, size_t input_index);
// Which inputs are read as plain numbers, never differentiated (Clip's min/max, Pad's value, Pow's
// exponent, Dropout's ratio/training_mode): a floating initializer used only there is a constant.
bool is_scalar_input(const std::string& op_type, size_t input_index);
// Whether a node whose inputs are all constant may be evaluated at load, and an upper bound of
// the elements it would produce (so folding never allocates much).
bool foldable(const std::string& op_type);
int64_t fold_output_bound(const std::string& op_type, const std::vector<Tensor>& inputs);

}  // namespace dl::onnx::detail
