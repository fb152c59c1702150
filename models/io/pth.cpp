#include "models/io/pth.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <unordered_map>

#include "models/io/pickle.h"
#include "models/io/zip.h"
#include "tensor/error.h"

namespace dl::io {

namespace {

namespace pk = pickle;

constexpr uint64_t kMaxPickleBytes = 256ull << 20;

// torch.save's legacy format starts with the pickled magic number 0x1950a86a20f9469cfc6c:
// PROTO n, LONG1 10, then the 10 little-endian bytes.
constexpr uint8_t kLegacyMagic[10] = {0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};

bool is_tensor_dict(const pk::Value& d) {
  if (!d.is(pk::Kind::Dict)) return false;
  for (const auto& [k, v] : d.entries)
    if (!v->is(pk::Kind::Tensor)) return false;
  return true;
}

void byteswap_elements(std::vector<uint8_t>& bytes, size_t elem) {
  if (elem <= 1) return;
  for (size_t i = 0; i + elem <= bytes.size(); i += elem) std::reverse(&bytes[i], &bytes[i] + elem);
}

}  // namespace

RawStateDict load_pth(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_regular_file(path, ec))
    fail("'{}': cannot open: not a regular file or does not exist", path);
  uint8_t head[16] = {};
  size_t head_n = 0;
  {
    std::ifstream f(path, std::ios::binary);
    if (!f) fail("'{}': cannot open file for reading", path);
    f.read(reinterpret_cast<char*>(head), sizeof(head));
    head_n = static_cast<size_t>(f.gcount());
  }
  if (head_n < 4)
    fail("'{}': file is only {} bytes; it is empty or truncated, not a PyTorch checkpoint", path,
         head_n);
  if (head_n >= 14 && head[0] == 0x80 && head[2] == 0x8a && head[3] == 0x0a &&
      std::memcmp(head + 4, kLegacyMagic, sizeof(kLegacyMagic)) == 0)
    fail("'{}' is in PyTorch's legacy (pre-1.6) serialization format, which is not supported; "
         "re-save it with torch.save(obj, path) under PyTorch >= 1.6",
         path);
  if (!has_zip_signature(head, head_n)) {
    if (head_n >= 1 && head[0] == 0x80)
      fail("'{}' is a bare pickle, not a torch.save zip archive; re-save it with "
           "torch.save(obj, path) under PyTorch >= 1.6",
           path);
    fail("'{}' is not a PyTorch checkpoint: it is not a zip archive (torch.save has written zip "
         "archives since PyTorch 1.6)",
         path);
  }

  ZipReader zip(path);

  // The top folder can have any name; data.pkl sits directly inside it.
  std::string top;
  int n_pkl = 0;
  for (const ZipEntry& e : zip.entries()) {
    const std::string& n = e.name;
    const size_t slash = n.find('/');
    if (slash != std::string::npos && slash > 0 && n.compare(slash, std::string::npos, "/data.pkl") == 0) {
      if (n_pkl++ == 0) top = n.substr(0, slash);
    }
  }
  if (n_pkl == 0)
    fail("'{}': zip archive has no '<folder>/data.pkl' entry, so it is not a torch.save checkpoint",
         path);
  if (n_pkl > 1)
    fail("'{}': zip archive has {} '<folder>/data.pkl' entries; expected exactly one", path, n_pkl);

  bool big_endian = false;
  if (const ZipEntry* bo = zip.find(top + "/byteorder")) {
    std::vector<uint8_t> b = zip.read(*bo, 64);
    std::string s(b.begin(), b.end());
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
    if (s == "big")
      big_endian = true;
    else if (s != "little")
      fail("'{}': entry '{}/byteorder' says '{}'; expected 'little' or 'big'", path, top,
           s.substr(0, 32));
  }

  const ZipEntry* pkl_entry = zip.find(top + "/data.pkl");
  const std::vector<uint8_t> pkl = zip.read(*pkl_entry, kMaxPickleBytes);

  std::unordered_map<std::string, pk::ValuePtr> storages;
  auto load_storage = [&](const pk::Value& pid) -> pk::ValuePtr {
    const auto& it = pid.items;
    if (!pid.is(pk::Kind::Tuple) || it.size() != 5 || !it[0]->is(pk::Kind::Str) ||
        it[0]->s != "storage")
      fail("'{}': data.pkl has a persistent id that is not ('storage', type, key, location, "
           "numel)",
           path);
    RawDType dt;
    if (!it[1]->is(pk::Kind::Global) || !pk::storage_dtype(it[1]->s, &dt))
      fail("'{}': data.pkl uses an unsupported storage type '{}'", path,
           it[1]->is(pk::Kind::Global) ? it[1]->s : pk::kind_name(it[1]->kind));
    if (!it[2]->is(pk::Kind::Str)) fail("'{}': data.pkl has a storage key that is not a string", path);
    if (!it[4]->is(pk::Kind::Int) || it[4]->i < 0)
      fail("'{}': data.pkl has a storage with an invalid element count", path);
    const std::string& key = it[2]->s;
    const int64_t numel = it[4]->i;
    if (auto c = storages.find(key); c != storages.end()) {
      const RawTensor& t = *c->second->tensor;
      if (t.dtype != dt || t.shape[0] != numel)
        fail("'{}': storage '{}' is declared twice with different types or sizes", path, key);
      return c->second;
    }
    const std::string entry_name = top + "/data/" + key;
    const ZipEntry* e = zip.find(entry_name);
    if (!e) fail("'{}': storage '{}' used by data.pkl is missing (no entry '{}')", path, key, entry_name);
    int64_t nbytes = 0;
    if (!checked_mul(numel, dtype_size(dt), &nbytes) ||
        static_cast<uint64_t>(nbytes) != e->uncompressed_size)
      fail("'{}': storage '{}' declares {} elements of {} bytes but entry '{}' holds {} bytes; "
           "wrong storage size",
           path, key, numel, dtype_size(dt), entry_name, e->uncompressed_size);
    std::vector<uint8_t> bytes = zip.read(*e);
    if (big_endian) byteswap_elements(bytes, static_cast<size_t>(dtype_size(dt)));
    auto v = std::make_shared<pk::Value>();
    v->kind = pk::Kind::Storage;
    v->tensor = std::make_unique<RawTensor>();
    v->tensor->dtype = dt;
    v->tensor->shape = {numel};
    v->tensor->strides = {1};
    v->tensor->storage = std::make_shared<const std::vector<uint8_t>>(std::move(bytes));
    storages.emplace(key, v);
    return v;
  };

  pk::ValuePtr root = pk::unpickle(pkl.data(), pkl.size(), path, load_storage);

  if (!root->is(pk::Kind::Dict))
    fail("'{}': data.pkl holds a {}, not a dict of tensors (a state dict)", path,
         pk::kind_name(root->kind));
  const pk::Value* sd = root.get();
  if (!is_tensor_dict(*root)) {
    for (const char* name : {"state_dict", "model"}) {
      const pk::Value* inner = root->get(name);
      if (inner && is_tensor_dict(*inner)) {
        sd = inner;
        break;
      }
    }
  }
  RawStateDict out;
  out.reserve(sd->entries.size());
  for (const auto& [k, v] : sd->entries) {
    if (!k->is(pk::Kind::Str))
      fail("'{}': state dict has a key of type {}, not a string", path, pk::kind_name(k->kind));
    if (!v->is(pk::Kind::Tensor))
      fail("'{}': state dict entry '{}' is a {}, not a tensor", path, k->s, pk::kind_name(v->kind));
    validate_view(*v->tensor, fmt::format("'{}': tensor '{}'", path, k->s));
    out.emplace_back(k->s, *v->tensor);
  }
  return out;
}

bool check_torchvision_hash(const std::string& path) {
  const std::string fn = std::filesystem::path(path).filename().string();
  const std::string ext = ".pth";
  if (fn.size() <= ext.size() || fn.compare(fn.size() - ext.size(), ext.size(), ext) != 0)
    return false;
  const std::string stem = fn.substr(0, fn.size() - ext.size());
  const size_t dash = stem.rfind('-');
  if (dash == std::string::npos || dash == 0) return false;
  const std::string hex = stem.substr(dash + 1);
  if (hex.size() < 8 || hex.size() > 64) return false;
  if (!std::all_of(hex.begin(), hex.end(),
                   [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }))
    return false;
  const std::string digest = sha256_file(path);
  if (digest.compare(0, hex.size(), hex) != 0)
    fail("'{}': SHA-256 hash mismatch: the file name says the hash starts with {}, but the file's "
         "SHA-256 is {}; the download is corrupt or the file is not the published weights",
         path, hex, digest);
  return true;
}

}  // namespace dl::io
