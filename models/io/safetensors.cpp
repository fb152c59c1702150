#include "models/io/safetensors.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>

#include <nlohmann/json.hpp>

#include "tensor/error.h"

namespace dl::io {

namespace {

using ojson = nlohmann::ordered_json;
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

struct Slot {
  std::string name;
  RawDType dtype;
  std::vector<int64_t> shape;
  uint64_t begin, end;
};

uint64_t as_u64(const ojson& v, const std::string& path, const std::string& name, const char* what) {
  if (!v.is_number_integer())
    fail("'{}': tensor '{}': {} must contain integers, got {}", path, name, what, v.dump());
  if (!v.is_number_unsigned())
    fail("'{}': tensor '{}': {} contains a negative value {}", path, name, what, v.dump());
  return v.get<uint64_t>();
}

}  // namespace

RawStateDict load_safetensors(const std::string& path,
                              std::map<std::string, std::string>* metadata) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_regular_file(path, ec))
    fail("'{}': cannot open: not a regular file or does not exist", path);
  const uint64_t file_size = fs::file_size(path, ec);
  if (ec) fail("'{}': cannot determine file size: {}", path, ec.message());
  std::ifstream f(path, std::ios::binary);
  if (!f) fail("'{}': cannot open file for reading", path);
  if (file_size < 8)
    fail("'{}': file is {} bytes, too small for a safetensors header (truncated?)", path, file_size);
  uint8_t lenb[8];
  f.read(reinterpret_cast<char*>(lenb), 8);
  if (f.gcount() != 8) fail("'{}': I/O error reading the header length", path);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(lenb[i]) << (8 * i);
  if (n > kMaxHeaderBytes)
    fail("'{}': header length {} exceeds the limit of {} bytes; not a safetensors file or corrupt",
         path, n, kMaxHeaderBytes);
  if (n > file_size - 8)
    fail("'{}': header length {} runs past the end of the {}-byte file (truncated?)", path, n,
         file_size);
  std::string header(n, '\0');
  f.read(header.data(), static_cast<std::streamsize>(n));
  if (static_cast<uint64_t>(f.gcount()) != n) fail("'{}': I/O error reading the header", path);
  const uint64_t data_size = file_size - 8 - n;

  ojson j;
  std::set<std::string> seen;
  std::string duplicate;
  try {
    j = ojson::parse(header, [&](int depth, ojson::parse_event_t ev, ojson& parsed) {
      if (ev == ojson::parse_event_t::key && depth == 1 && parsed.is_string() &&
          !seen.insert(parsed.get<std::string>()).second && duplicate.empty())
        duplicate = parsed.get<std::string>();
      return true;
    });
  } catch (const nlohmann::json::exception& e) {
    fail("'{}': header is not valid JSON: {}", path, e.what());
  }
  if (!j.is_object()) fail("'{}': header is not a JSON object", path);
  if (!duplicate.empty()) fail("'{}': header names tensor '{}' twice", path, duplicate);

  std::vector<Slot> slots;
  for (const auto& [name, info] : j.items()) {
    if (name == "__metadata__") {
      if (!info.is_object()) fail("'{}': __metadata__ is not a JSON object", path);
      for (const auto& [k, v] : info.items()) {
        if (!v.is_string()) fail("'{}': __metadata__ value for '{}' is not a string", path, k);
        if (metadata) (*metadata)[k] = v.get<std::string>();
      }
      continue;
    }
    if (!info.is_object()) fail("'{}': tensor '{}': header entry is not an object", path, name);
    Slot s;
    s.name = name;
    auto dt = info.find("dtype");
    if (dt == info.end() || !dt->is_string())
      fail("'{}': tensor '{}': missing or non-string dtype", path, name);
    if (!dtype_from_name(dt->get<std::string>(), &s.dtype))
      fail("'{}': tensor '{}': unknown dtype '{}'", path, name, dt->get<std::string>());
    auto sh = info.find("shape");
    if (sh == info.end() || !sh->is_array())
      fail("'{}': tensor '{}': missing or non-array shape", path, name);
    if (sh->size() > 64) fail("'{}': tensor '{}': shape has {} dimensions", path, name, sh->size());
    int64_t numel = 1;
    for (const auto& d : *sh) {
      const uint64_t v = as_u64(d, path, name, "shape");
      if (v > static_cast<uint64_t>(INT64_MAX) ||
          !checked_mul(numel, static_cast<int64_t>(v), &numel))
        fail("'{}': tensor '{}': shape {} overflows the element count", path, name, sh->dump());
      s.shape.push_back(static_cast<int64_t>(v));
    }
    int64_t nbytes = 0;
    if (!checked_mul(numel, dtype_size(s.dtype), &nbytes))
      fail("'{}': tensor '{}': shape {} overflows the byte count", path, name, sh->dump());
    auto off = info.find("data_offsets");
    if (off == info.end() || !off->is_array() || off->size() != 2)
      fail("'{}': tensor '{}': data_offsets must be [begin, end]", path, name);
    s.begin = as_u64((*off)[0], path, name, "data_offsets");
    s.end = as_u64((*off)[1], path, name, "data_offsets");
    if (s.begin > s.end || s.end > data_size)
      fail("'{}': tensor '{}': data_offsets [{}, {}] are out of range for a data section of {} "
           "bytes",
           path, name, s.begin, s.end, data_size);
    if (s.end - s.begin != static_cast<uint64_t>(nbytes))
      fail("'{}': tensor '{}': data_offsets [{}, {}] span {} bytes but shape {} of {} needs {}",
           path, name, s.begin, s.end, s.end - s.begin, sh->dump(), dtype_name(s.dtype), nbytes);
    slots.push_back(std::move(s));
  }

  std::vector<const Slot*> order;
  for (const Slot& s : slots) order.push_back(&s);
  std::sort(order.begin(), order.end(), [](const Slot* a, const Slot* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  for (size_t i = 1; i < order.size(); ++i) {
    if (order[i - 1]->end > order[i]->begin)
      fail("'{}': tensors '{}' and '{}' overlap in the data section", path, order[i - 1]->name,
           order[i]->name);
  }

  RawStateDict out;
  out.reserve(slots.size());
  for (Slot& s : slots) {
    std::vector<uint8_t> bytes(s.end - s.begin);
    f.clear();
    f.seekg(static_cast<std::streamoff>(8 + n + s.begin));
    f.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    if (!f || static_cast<uint64_t>(f.gcount()) != bytes.size())
      fail("'{}': tensor '{}': I/O error reading its data", path, s.name);
    out.emplace_back(s.name, make_raw_tensor(s.dtype, std::move(s.shape), std::move(bytes)));
  }
  return out;
}

void save_safetensors(const std::string& path, const RawStateDict& tensors,
                      const std::map<std::string, std::string>& metadata) {
  ojson h = ojson::object();
  if (!metadata.empty()) {
    ojson m = ojson::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    h["__metadata__"] = std::move(m);
  }
  std::set<std::string> names;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    if (name == "__metadata__") fail("'{}': cannot save a tensor named '__metadata__'", path);
    if (!names.insert(name).second) fail("'{}': tensor name '{}' appears twice", path, name);
    validate_view(t, fmt::format("'{}': tensor '{}'", path, name));
    const uint64_t nbytes = static_cast<uint64_t>(t.numel() * dtype_size(t.dtype));
    h[name] = ojson{{"dtype", dtype_name(t.dtype)},
                    {"shape", t.shape},
                    {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
  }
  std::string header;
  try {
    header = h.dump();
  } catch (const nlohmann::json::exception& e) {
    fail("'{}': cannot write header (tensor names and metadata must be valid UTF-8): {}", path,
         e.what());
  }
  header.append((8 - header.size() % 8) % 8, ' ');

  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) fail("'{}': cannot open '{}' for writing", path, tmp);
    uint8_t lenb[8];
    for (int i = 0; i < 8; ++i) lenb[i] = static_cast<uint8_t>(header.size() >> (8 * i));
    f.write(reinterpret_cast<const char*>(lenb), 8);
    f.write(header.data(), static_cast<std::streamsize>(header.size()));
    for (const auto& [name, t] : tensors) {
      const std::vector<uint8_t> bytes = t.contiguous_bytes();
      f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    }
    f.flush();
    if (!f) {
      f.close();
      std::error_code ec;
      std::filesystem::remove(tmp, ec);
      fail("'{}': write to '{}' failed (disk full?)", path, tmp);
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::error_code ec2;
    std::filesystem::remove(tmp, ec2);
    fail("'{}': cannot rename '{}' into place: {}", path, tmp, ec.message());
  }
}

}  // namespace dl::io
