#include "models/io/pickle.h"

#include <bit>
#include <cstring>

#include "tensor/error.h"

namespace dl::io::pickle {

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::None: return "None";
    case Kind::Bool: return "bool";
    case Kind::Int: return "int";
    case Kind::Float: return "float";
    case Kind::Str: return "str";
    case Kind::Bytes: return "bytes";
    case Kind::Tuple: return "tuple";
    case Kind::List: return "list";
    case Kind::Dict: return "dict";
    case Kind::Global: return "global";
    case Kind::Storage: return "storage";
    case Kind::Tensor: return "tensor";
  }
  return "?";
}

const Value* Value::get(const std::string& key) const {
  if (!index) return nullptr;
  auto it = index->find("s:" + key);
  return it == index->end() ? nullptr : entries[it->second].second.get();
}

bool storage_dtype(const std::string& name, RawDType* out) {
  static const std::pair<const char*, RawDType> kStorages[] = {
      {"torch.FloatStorage", RawDType::F32},   {"torch.DoubleStorage", RawDType::F64},
      {"torch.HalfStorage", RawDType::F16},    {"torch.BFloat16Storage", RawDType::BF16},
      {"torch.LongStorage", RawDType::I64},    {"torch.IntStorage", RawDType::I32},
      {"torch.ShortStorage", RawDType::I16},   {"torch.CharStorage", RawDType::I8},
      {"torch.ByteStorage", RawDType::U8},     {"torch.BoolStorage", RawDType::Bool}};
  for (const auto& [n, t] : kStorages) {
    if (name == n) {
      *out = t;
      return true;
    }
  }
  return false;
}

namespace {

constexpr const char* kOrderedDict = "collections.OrderedDict";
constexpr const char* kRebuildTensorV2 = "torch._utils._rebuild_tensor_v2";
constexpr const char* kRebuildTensor = "torch._utils._rebuild_tensor";
constexpr const char* kRebuildParameter = "torch._utils._rebuild_parameter";

bool is_allowed_global(const std::string& name) {
  RawDType dt;
  return name == kOrderedDict || name == kRebuildTensorV2 || name == kRebuildTensor ||
         name == kRebuildParameter || storage_dtype(name, &dt);
}

bool is_container(Kind k) { return k == Kind::Tuple || k == Kind::List || k == Kind::Dict; }

// Printable rendering of untrusted text for messages.
std::string printable(const std::string& s, size_t max_len = 120) {
  std::string out;
  for (size_t i = 0; i < s.size() && i < max_len; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\')
      out.push_back(static_cast<char>(c));
    else
      out += fmt::format("\\x{:02x}", c);
  }
  if (s.size() > max_len) out += "...";
  return out;
}

bool valid_utf8(const std::string& s) {
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    int len;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      len = 2, cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      len = 3, cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      len = 4, cp = c & 0x07;
    } else {
      return false;
    }
    if (n - i < static_cast<size_t>(len)) return false;
    for (int k = 1; k < len; ++k) {
      const unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
      return false;
    i += static_cast<size_t>(len);
  }
  return true;
}

class Unpickler {
 public:
  Unpickler(const uint8_t* data, size_t size, const std::string& source,
            const PersistentLoader& loader, const Limits& limits)
      : d_(data), n_(size), src_(source), loader_(loader), lim_(limits) {}

  ValuePtr run();

 private:
  [[noreturn]] void bad(const std::string& msg) const {
    throw Error(fmt::format("'{}': invalid or unsupported pickle data (at byte {} of {}): {}", src_,
                            op_pos_, n_, msg));
  }

  // --- input
  const uint8_t* take(size_t k) {
    if (n_ - pos_ < k)
      bad(fmt::format("truncated: needs {} more bytes, only {} left", k, n_ - pos_));
    const uint8_t* p = d_ + pos_;
    pos_ += k;
    return p;
  }
  uint8_t u8() { return *take(1); }
  uint64_t le(size_t k) {
    const uint8_t* p = take(k);
    uint64_t v = 0;
    for (size_t j = 0; j < k; ++j) v |= static_cast<uint64_t>(p[j]) << (8 * j);
    return v;
  }
  std::string line() {
    const size_t max_len = 1024;
    for (size_t j = pos_; j < n_ && j - pos_ <= max_len; ++j) {
      if (d_[j] == '\n') {
        std::string s(reinterpret_cast<const char*>(d_ + pos_), j - pos_);
        pos_ = j + 1;
        return s;
      }
    }
    bad("truncated or overlong text line in GLOBAL");
  }
  std::string bytes(uint64_t k) {
    if (k > lim_.max_string) bad(fmt::format("string of {} bytes exceeds the limit", k));
    const uint8_t* p = take(static_cast<size_t>(k));
    return std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(k));
  }

  // --- values
  ValuePtr make(Kind k) {
    if (++values_ > lim_.max_values)
      bad(fmt::format("more than {} values; refusing to continue", lim_.max_values));
    auto v = std::make_shared<Value>();
    v->kind = k;
    return v;
  }
  ValuePtr make_int(int64_t i) {
    auto v = make(Kind::Int);
    v->i = i;
    return v;
  }
  void push(ValuePtr v) {
    if (stack_.size() >= lim_.max_stack) bad("stack grows beyond the limit");
    stack_.push_back(std::move(v));
  }
  size_t floor() const { return marks_.empty() ? 0 : marks_.back(); }
  ValuePtr pop() {
    if (stack_.size() <= floor()) bad("stack underflow");
    ValuePtr v = std::move(stack_.back());
    stack_.pop_back();
    return v;
  }
  ValuePtr& top() {
    if (stack_.size() <= floor()) bad("stack underflow");
    return stack_.back();
  }
  std::vector<ValuePtr> pop_mark() {
    if (marks_.empty()) bad("MARK expected but not found");
    const size_t m = marks_.back();
    marks_.pop_back();
    std::vector<ValuePtr> items(std::make_move_iterator(stack_.begin() + static_cast<long>(m)),
                                std::make_move_iterator(stack_.end()));
    stack_.resize(m);
    return items;
  }

  // Records that `child` is now inside `parent`: freezes child containers (so no cycle can be
  // closed later) and bounds the nesting depth.
  void attach(Value& parent, const ValuePtr& child) {
    if (child.get() == &parent) bad("a container contains itself (recursive structure)");
    if (is_container(child->kind)) child->frozen = true;
    const int d = child->depth + 1;
    if (d > lim_.max_depth) bad(fmt::format("nesting deeper than {} levels", lim_.max_depth));
    if (d > parent.depth) parent.depth = d;
  }
  void check_mutable(const Value& v, const char* op) {
    if (v.frozen)
      bad(fmt::format("{} modifies a {} after it was nested in another container "
                      "(recursive structures are not supported)",
                      op, kind_name(v.kind)));
  }
  ValuePtr make_tuple(std::vector<ValuePtr> items) {
    auto t = make(Kind::Tuple);
    for (const auto& it : items) attach(*t, it);
    t->items = std::move(items);
    return t;
  }
  std::string key_repr(const Value& k) {
    switch (k.kind) {
      case Kind::Str: return "s:" + k.s;
      case Kind::Int: return "i:" + std::to_string(k.i);
      case Kind::Bool: return "i:" + std::to_string(k.b ? 1 : 0);
      case Kind::None: return "n:";
      default: bad(fmt::format("unsupported dict key of type {}", kind_name(k.kind)));
    }
  }
  void set_item(const ValuePtr& dict, ValuePtr key, ValuePtr value) {
    if (!dict->is(Kind::Dict))
      bad(fmt::format("SETITEM(S) on a {}, not a dict", kind_name(dict->kind)));
    check_mutable(*dict, "SETITEM");
    attach(*dict, key);
    attach(*dict, value);
    if (!dict->index) dict->index = std::make_unique<std::unordered_map<std::string, size_t>>();
    auto [it, inserted] = dict->index->emplace(key_repr(*key), dict->entries.size());
    if (inserted)
      dict->entries.emplace_back(std::move(key), std::move(value));
    else
      dict->entries[it->second].second = std::move(value);  // Python keeps the first position
  }
  void append(const ValuePtr& list, ValuePtr v) {
    if (!list->is(Kind::List))
      bad(fmt::format("APPEND(S) on a {}, not a list", kind_name(list->kind)));
    check_mutable(*list, "APPEND");
    attach(*list, v);
    list->items.push_back(std::move(v));
  }
  void memo_put(uint64_t idx, const ValuePtr& v) {
    if (memo_.size() >= lim_.max_memo && !memo_.count(idx)) bad("memo grows beyond the limit");
    memo_[idx] = v;
  }
  ValuePtr memo_get(uint64_t idx) {
    auto it = memo_.find(idx);
    if (it == memo_.end()) bad(fmt::format("memo key {} is not defined", idx));
    return it->second;
  }
  ValuePtr global(const std::string& module, const std::string& name) {
    const std::string full = module + "." + name;
    if (!is_allowed_global(full)) {
      const bool nn_module = full.rfind("torch.nn.", 0) == 0;
      throw Error(fmt::format(
          "refusing to load '{}': pickle references global '{}', which is not part of a PyTorch "
          "state dict; nothing from the file was executed{}",
          src_, printable(full),
          nn_module ? " (the file seems to hold a whole pickled module; save and load "
                      "model.state_dict() instead)"
                    : ""));
    }
    auto v = make(Kind::Global);
    v->s = full;
    return v;
  }

  int64_t as_int(const Value& v, const char* what) {
    if (v.is(Kind::Int)) return v.i;
    if (v.is(Kind::Bool)) return v.b;
    bad(fmt::format("{} must be an int, got {}", what, kind_name(v.kind)));
  }
  std::vector<int64_t> int_tuple(const Value& v, const char* what) {
    if (!v.is(Kind::Tuple) && !v.is(Kind::List))
      bad(fmt::format("{} must be a tuple of ints, got {}", what, kind_name(v.kind)));
    if (v.items.size() > 64) bad(fmt::format("{} has {} dimensions", what, v.items.size()));
    std::vector<int64_t> out;
    for (const auto& x : v.items) out.push_back(as_int(*x, what));
    return out;
  }

  ValuePtr reduce(const Value& fn, const Value& args) {
    if (!fn.is(Kind::Global))
      bad(fmt::format("REDUCE calls a {}, not an allowed global", kind_name(fn.kind)));
    if (!args.is(Kind::Tuple))
      bad(fmt::format("REDUCE arguments are a {}, not a tuple", kind_name(args.kind)));
    const auto& a = args.items;
    if (fn.s == kOrderedDict) {
      if (!a.empty()) bad("collections.OrderedDict called with arguments (unsupported)");
      return make(Kind::Dict);
    }
    if (fn.s == kRebuildTensorV2 || fn.s == kRebuildTensor) {
      const bool v2 = fn.s == kRebuildTensorV2;
      if (v2 ? (a.size() != 6 && a.size() != 7) : a.size() != 4)
        bad(fmt::format("{} called with {} arguments", fn.s, a.size()));
      if (!a[0]->is(Kind::Storage) || !a[0]->tensor)
        bad(fmt::format("{}: first argument is a {}, not a storage", fn.s, kind_name(a[0]->kind)));
      auto t = make(Kind::Tensor);
      t->tensor = std::make_unique<RawTensor>();
      RawTensor& r = *t->tensor;
      r.dtype = a[0]->tensor->dtype;
      r.storage = a[0]->tensor->storage;
      r.storage_offset = as_int(*a[1], "storage offset");
      r.shape = int_tuple(*a[2], "tensor size");
      r.strides = int_tuple(*a[3], "tensor stride");
      if (r.shape.size() != r.strides.size())
        bad(fmt::format("tensor size has {} dims but stride has {}", r.shape.size(),
                        r.strides.size()));
      return t;
    }
    if (fn.s == kRebuildParameter) {
      if (a.size() != 3 || !a[0]->is(Kind::Tensor))
        bad("torch._utils._rebuild_parameter expects (tensor, requires_grad, hooks)");
      auto t = make(Kind::Tensor);
      t->tensor = std::make_unique<RawTensor>(*a[0]->tensor);
      return t;
    }
    bad(fmt::format("calling '{}' is not supported", fn.s));
  }

  const uint8_t* d_;
  size_t n_;
  size_t pos_ = 0;
  size_t op_pos_ = 0;
  const std::string& src_;
  const PersistentLoader& loader_;
  Limits lim_;
  size_t values_ = 0;
  std::vector<ValuePtr> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, ValuePtr> memo_;
};

ValuePtr Unpickler::run() {
  while (true) {
    op_pos_ = pos_;
    if (pos_ >= n_) bad("truncated: data ends before the STOP opcode");
    const uint8_t op = u8();
    switch (op) {
      case 0x80: {  // PROTO
        const uint8_t p = u8();
        if (p > 5) bad(fmt::format("unsupported pickle protocol {}", p));
        break;
      }
      case 0x95: {  // FRAME
        const uint64_t len = le(8);
        if (len > n_ - pos_) bad("truncated: frame runs past the end of the data");
        break;
      }
      case '.': {  // STOP
        ValuePtr v = pop();
        return v;
      }
      case '(':  // MARK
        if (marks_.size() >= static_cast<size_t>(lim_.max_depth))
          bad(fmt::format("more than {} nested MARKs", lim_.max_depth));
        marks_.push_back(stack_.size());
        break;
      case '0': pop(); break;              // POP
      case '1': pop_mark(); break;         // POP_MARK
      case '2': push(top()); break;        // DUP
      case 'N': push(make(Kind::None)); break;
      case 0x88:
      case 0x89: {  // NEWTRUE / NEWFALSE
        auto v = make(Kind::Bool);
        v->b = op == 0x88;
        push(v);
        break;
      }
      case 'J': push(make_int(static_cast<int32_t>(static_cast<uint32_t>(le(4))))); break;
      case 'K': push(make_int(static_cast<int64_t>(le(1)))); break;
      case 'M': push(make_int(static_cast<int64_t>(le(2)))); break;
      case 0x8a: {  // LONG1
        const uint8_t k = u8();
        if (k > 8) bad(fmt::format("integer of {} bytes does not fit in int64", k));
        uint64_t v = le(k);
        if (k > 0 && k < 8 && (v >> (8 * k - 1)) & 1) v |= ~0ull << (8 * k);  // sign-extend
        push(make_int(static_cast<int64_t>(v)));
        break;
      }
      case 0x8b: bad("LONG4 integers are not supported");
      case 'G': {  // BINFLOAT, big-endian
        const uint8_t* p = take(8);
        uint64_t bits = 0;
        for (int j = 0; j < 8; ++j) bits = (bits << 8) | p[j];
        auto v = make(Kind::Float);
        v->f = std::bit_cast<double>(bits);
        push(v);
        break;
      }
      case 'X':      // BINUNICODE
      case 0x8c:     // SHORT_BINUNICODE
      case 0x8d: {   // BINUNICODE8
        const uint64_t len = op == 'X' ? le(4) : op == 0x8c ? le(1) : le(8);
        auto v = make(Kind::Str);
        v->s = bytes(len);
        if (!valid_utf8(v->s)) bad("string is not valid UTF-8");
        push(v);
        break;
      }
      case 'C':      // SHORT_BINBYTES
      case 'B':      // BINBYTES
      case 0x8e: {   // BINBYTES8
        const uint64_t len = op == 'C' ? le(1) : op == 'B' ? le(4) : le(8);
        auto v = make(Kind::Bytes);
        v->s = bytes(len);
        push(v);
        break;
      }
      case ')': push(make(Kind::Tuple)); break;
      case ']': push(make(Kind::List)); break;
      case '}': push(make(Kind::Dict)); break;
      case 't': push(make_tuple(pop_mark())); break;
      case 0x85:
      case 0x86:
      case 0x87: {  // TUPLE1..3
        const size_t k = static_cast<size_t>(op - 0x84);
        std::vector<ValuePtr> items(k);
        for (size_t j = k; j-- > 0;) items[j] = pop();
        push(make_tuple(std::move(items)));
        break;
      }
      case 'l': {  // LIST
        auto items = pop_mark();
        auto l = make(Kind::List);
        for (auto& it : items) append(l, std::move(it));
        push(l);
        break;
      }
      case 'd': {  // DICT
        auto items = pop_mark();
        if (items.size() % 2) bad("DICT with an odd number of items");
        auto dct = make(Kind::Dict);
        for (size_t j = 0; j < items.size(); j += 2) set_item(dct, items[j], items[j + 1]);
        push(dct);
        break;
      }
      case 'a': {  // APPEND
        ValuePtr v = pop();
        append(top(), std::move(v));
        break;
      }
      case 'e': {  // APPENDS
        auto items = pop_mark();
        ValuePtr l = top();
        for (auto& it : items) append(l, std::move(it));
        break;
      }
      case 's': {  // SETITEM
        ValuePtr v = pop();
        ValuePtr k = pop();
        set_item(top(), std::move(k), std::move(v));
        break;
      }
      case 'u': {  // SETITEMS
        auto items = pop_mark();
        if (items.size() % 2) bad("SETITEMS with an odd number of items");
        ValuePtr dct = top();
        for (size_t j = 0; j < items.size(); j += 2) set_item(dct, items[j], items[j + 1]);
        break;
      }
      case 'q': memo_put(le(1), top()); break;  // BINPUT
      case 'r': memo_put(le(4), top()); break;  // LONG_BINPUT
      case 0x94: memo_put(memo_.size(), top()); break;  // MEMOIZE
      case 'h': push(memo_get(le(1))); break;   // BINGET
      case 'j': push(memo_get(le(4))); break;   // LONG_BINGET
      case 'c': {  // GLOBAL
        std::string module = line();
        std::string name = line();
        push(global(module, name));
        break;
      }
      case 0x93: {  // STACK_GLOBAL
        ValuePtr name = pop();
        ValuePtr module = pop();
        if (!name->is(Kind::Str) || !module->is(Kind::Str))
          bad("STACK_GLOBAL needs two strings");
        push(global(module->s, name->s));
        break;
      }
      case 'R': {  // REDUCE
        ValuePtr args = pop();
        ValuePtr fn = pop();
        push(reduce(*fn, *args));
        break;
      }
      case 0x81: {  // NEWOBJ
        ValuePtr args = pop();
        ValuePtr cls = pop();
        if (cls->is(Kind::Global) && cls->s == kOrderedDict && args->is(Kind::Tuple) &&
            args->items.empty()) {
          push(make(Kind::Dict));
          break;
        }
        bad(fmt::format("NEWOBJ of a {} is not supported", kind_name(cls->kind)));
      }
      case 'b': {  // BUILD
        ValuePtr state = pop();
        const Value& inst = *top();
        // An OrderedDict's state is its attributes (state_dict's `_metadata`): ignored.
        if (!inst.is(Kind::Dict))
          bad(fmt::format("BUILD on a {} is not supported", kind_name(inst.kind)));
        break;
      }
      case 'Q': {  // BINPERSID
        ValuePtr pid = pop();
        if (!loader_) bad("persistent id found but no persistent loader is available");
        ValuePtr v = loader_(*pid);
        if (!v) bad("persistent id could not be resolved");
        ++values_;
        push(std::move(v));
        break;
      }
      default:
        bad(fmt::format("unsupported opcode 0x{:02x}", op));
    }
  }
}

}  // namespace

ValuePtr unpickle(const uint8_t* data, size_t size, const std::string& source,
                  const PersistentLoader& persistent_load, const Limits& limits) {
  Unpickler u(data, size, source, persistent_load, limits);
  return u.run();
}

}  // namespace dl::io::pickle
