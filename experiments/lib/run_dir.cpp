#include "experiments/lib/run_dir.h"

#include "experiments/lib/run_record.h"
#include "tensor/error.h"

namespace dl::exp {

std::filesystem::path create_run_dir(const std::string& prefix, const std::optional<std::string>& explicit_dir,
                                     const std::filesystem::path& runs_root) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (explicit_dir && !explicit_dir->empty()) {
    fs::path dir(*explicit_dir);
    if (fs::exists(dir, ec) && !fs::is_directory(dir, ec)) fail("run folder '{}' exists and is not a folder", dir.string());
    fs::create_directories(dir, ec);
    if (ec) fail("cannot create run folder '{}': {}", dir.string(), ec.message());
    return dir;
  }
  fs::create_directories(runs_root, ec);
  if (ec) fail("cannot create the runs folder '{}': {}", runs_root.string(), ec.message());
  const std::string base = prefix + "-" + timestamp();
  for (int n = 1; n < 1000; ++n) {
    fs::path dir = runs_root / (n == 1 ? base : fmt::format("{}-{}", base, n));
    // create_directory reports false (no error) when the folder exists: another run has it
    if (fs::create_directory(dir, ec)) return dir;
    if (ec) fail("cannot create run folder '{}': {}", dir.string(), ec.message());
  }
  fail("cannot create a run folder '{}/{}-N': 999 of them exist", runs_root.string(), base);
}

}  // namespace dl::exp
