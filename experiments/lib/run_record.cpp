#include "experiments/lib/run_record.h"

#include <sys/utsname.h>

#include <chrono>
#include <ctime>
#include <fstream>
#include <sstream>
#include <thread>

#include "tensor/cpu/cpu_info.h"
#include "tensor/error.h"

#ifndef DL_SOURCE_DIR
#define DL_SOURCE_DIR "."
#endif

namespace dl::exp {

void write_text_atomic(const fs::path& path, const std::string& text) {
  fs::path tmp = path;
  tmp += ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) fail("cannot write '{}': the folder is missing or not writable", tmp.string());
    f << text;
    f.flush();
    if (!f) fail("writing '{}' failed (disk full?)", tmp.string());
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) fail("cannot rename '{}' to '{}': {}", tmp.string(), path.string(), ec.message());
}

void write_json(const fs::path& path, const nlohmann::json& j) { write_text_atomic(path, j.dump(2) + "\n"); }

nlohmann::json read_json(const fs::path& path) {
  std::ifstream f(path);
  if (!f) fail("cannot read '{}'", path.string());
  try {
    return nlohmann::json::parse(f);
  } catch (const std::exception& e) {
    fail("'{}' is not valid JSON: {}", path.string(), e.what());
  }
}

namespace {
std::vector<std::string> split(const std::string& line, char sep) {
  std::vector<std::string> out;
  std::string cur;
  std::istringstream is(line);
  while (std::getline(is, cur, sep)) out.push_back(cur);
  if (!line.empty() && line.back() == sep) out.push_back("");
  return out;
}
double to_double(const std::string& s, const fs::path& path, size_t line) {
  try {
    size_t used = 0;
    double v = std::stod(s, &used);
    if (used != s.size()) throw std::invalid_argument(s);
    return v;
  } catch (const std::exception&) {
    fail("'{}' line {}: '{}' is not a number", path.string(), line, s);
  }
}
std::vector<std::vector<std::string>> read_csv(const fs::path& path, size_t min_cols) {
  std::ifstream f(path);
  if (!f) fail("cannot read '{}'", path.string());
  std::vector<std::vector<std::string>> rows;
  std::string line;
  size_t n = 0;
  while (std::getline(f, line)) {
    ++n;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    auto cells = split(line, ',');
    if (cells.size() < min_cols) fail("'{}' line {}: expected at least {} columns, got {}", path.string(), n, min_cols, cells.size());
    rows.push_back(std::move(cells));
  }
  if (rows.empty()) fail("'{}' is empty", path.string());
  return rows;
}
}  // namespace

void write_history(const fs::path& path, const std::vector<EpochRecord>& rows) {
  std::string s = "epoch,train_loss,train_acc,val_loss,val_acc,lr,seconds\n";
  for (const auto& r : rows)
    s += fmt::format("{},{:.6f},{:.6f},{:.6f},{:.6f},{:.8g},{:.3f}\n", r.epoch, r.train_loss, r.train_acc, r.val_loss,
                     r.val_acc, r.lr, r.seconds);
  write_text_atomic(path, s);
}

std::vector<EpochRecord> read_history(const fs::path& path) {
  auto rows = read_csv(path, 7);
  std::vector<EpochRecord> out;
  for (size_t i = 1; i < rows.size(); ++i) {
    const auto& c = rows[i];
    EpochRecord r;
    r.epoch = static_cast<int64_t>(to_double(c[0], path, i + 1));
    r.train_loss = to_double(c[1], path, i + 1);
    r.train_acc = to_double(c[2], path, i + 1);
    r.val_loss = to_double(c[3], path, i + 1);
    r.val_acc = to_double(c[4], path, i + 1);
    r.lr = to_double(c[5], path, i + 1);
    r.seconds = to_double(c[6], path, i + 1);
    out.push_back(r);
  }
  return out;
}

void write_confusion(const fs::path& path, const std::vector<std::vector<int64_t>>& confusion,
                     const std::vector<std::string>& names) {
  std::string s = "true\\predicted";
  for (size_t c = 0; c < confusion.size(); ++c) s += "," + (c < names.size() ? names[c] : std::to_string(c));
  s += "\n";
  for (size_t t = 0; t < confusion.size(); ++t) {
    s += t < names.size() ? names[t] : std::to_string(t);
    for (int64_t v : confusion[t]) s += fmt::format(",{}", v);
    s += "\n";
  }
  write_text_atomic(path, s);
}

std::vector<std::vector<int64_t>> read_confusion(const fs::path& path) {
  auto rows = read_csv(path, 2);
  size_t n = rows[0].size() - 1;
  if (rows.size() != n + 1) fail("'{}': {} class columns but {} rows", path.string(), n, rows.size() - 1);
  std::vector<std::vector<int64_t>> conf(n, std::vector<int64_t>(n));
  for (size_t t = 0; t < n; ++t) {
    if (rows[t + 1].size() != n + 1) fail("'{}' line {}: expected {} columns", path.string(), t + 2, n + 1);
    for (size_t p = 0; p < n; ++p) conf[t][p] = static_cast<int64_t>(to_double(rows[t + 1][p + 1], path, t + 2));
  }
  return conf;
}

void write_predictions(const fs::path& path, const std::vector<Prediction>& preds) {
  std::string s = "index,label,prediction";
  size_t c = preds.empty() ? 0 : preds[0].probs.size();
  for (size_t k = 0; k < c; ++k) s += fmt::format(",prob_{}", k);
  s += "\n";
  for (const auto& p : preds) {
    s += fmt::format("{},{},{}", p.index, p.label, p.prediction);
    for (float v : p.probs) s += fmt::format(",{:.6g}", v);
    s += "\n";
  }
  write_text_atomic(path, s);
}

std::vector<Prediction> read_predictions(const fs::path& path) {
  auto rows = read_csv(path, 3);
  std::vector<Prediction> out;
  for (size_t i = 1; i < rows.size(); ++i) {
    Prediction p;
    p.index = static_cast<int64_t>(to_double(rows[i][0], path, i + 1));
    p.label = static_cast<int64_t>(to_double(rows[i][1], path, i + 1));
    p.prediction = static_cast<int64_t>(to_double(rows[i][2], path, i + 1));
    for (size_t k = 3; k < rows[i].size(); ++k) p.probs.push_back(static_cast<float>(to_double(rows[i][k], path, i + 1)));
    out.push_back(std::move(p));
  }
  return out;
}

std::string git_commit() {
  fs::path git = fs::path(DL_SOURCE_DIR) / ".git";
  std::ifstream head(git / "HEAD");
  std::string line;
  if (!head || !std::getline(head, line)) return "unknown";
  if (line.rfind("ref: ", 0) != 0) return line.substr(0, 40);
  std::string ref = line.substr(5);
  std::ifstream rf(git / ref);
  std::string sha;
  if (rf && std::getline(rf, sha)) return sha.substr(0, 40);
  std::ifstream packed(git / "packed-refs");
  while (packed && std::getline(packed, line))
    if (line.size() > 41 && line.substr(41) == ref) return line.substr(0, 40);
  return "unknown";
}

std::string machine_description() {
  utsname u{};
  uname(&u);
  std::string cpu = dl::cpu::cpu_model_name();
  if (cpu.empty()) cpu = "unknown CPU";
  return fmt::format("{} {} {}, {} ({} hardware threads)", u.sysname, u.release, u.machine, cpu,
                     std::thread::hardware_concurrency());
}

std::string timestamp() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%d-%H%M%S", &tm);
  return buf;
}

}  // namespace dl::exp
