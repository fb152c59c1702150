#pragma once
// Restricted unpickler for PyTorch state dicts (protocol 2 as torch.save writes; frames of
// protocol 4/5 are accepted). Nothing is ever executed: GLOBAL/STACK_GLOBAL accept only an
// allow-list (collections.OrderedDict, torch._utils._rebuild_tensor[_v2], _rebuild_parameter,
// torch.<Type>Storage) and REDUCE is interpreted only for those. Nesting depth, stack, memo and
// the number of values are bounded; every error is a dl::Error naming the source.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "models/io/raw_tensor.h"

namespace dl::io::pickle {

enum class Kind {
  None, Bool, Int, Float, Str, Bytes,
  Tuple, List, Dict,  // containers
  Global,             // an allow-listed class/function, name "module.qualname"
  Storage,            // from the persistent loader; `tensor` holds dtype + storage, shape {numel}
  Tensor,             // result of _rebuild_tensor_v2; `tensor` is the (unvalidated) view
};
const char* kind_name(Kind k);

struct Value;
using ValuePtr = std::shared_ptr<Value>;

struct Value {
  Kind kind = Kind::None;
  bool b = false;
  int64_t i = 0;
  double f = 0;
  std::string s;                                     // Str, Bytes, Global name
  std::vector<ValuePtr> items;                       // Tuple, List
  std::vector<std::pair<ValuePtr, ValuePtr>> entries;  // Dict, in insertion order
  std::unique_ptr<std::unordered_map<std::string, size_t>> index;  // Dict: key repr -> position
  std::unique_ptr<RawTensor> tensor;                 // Storage, Tensor
  // Bookkeeping that keeps the object graph acyclic and shallow.
  bool frozen = false;  // a container once it was put into another one
  int depth = 1;

  bool is(Kind k) const { return kind == k; }
  // For Dict with string keys: nullptr when absent.
  const Value* get(const std::string& key) const;
};

struct Limits {
  int max_depth = 1000;           // nesting of containers and of MARKs
  size_t max_stack = 1u << 22;    // stack entries
  size_t max_memo = 1u << 22;     // memo entries
  size_t max_values = 1u << 21;   // values created in total (~160 bytes each)
  size_t max_string = 1u << 26;   // bytes in one string/bytes object
};

// Maps a persistent id (BINPERSID argument) to a value, typically Kind::Storage.
using PersistentLoader = std::function<ValuePtr(const Value& pid)>;

// Unpickles `size` bytes. `source` names the file for error messages (e.g. "'x.pth'").
ValuePtr unpickle(const uint8_t* data, size_t size, const std::string& source,
                  const PersistentLoader& persistent_load, const Limits& limits = {});

// Storage class name ("FloatStorage", ...) -> dtype; false when not one we support.
bool storage_dtype(const std::string& global_name, RawDType* out);

}  // namespace dl::io::pickle
