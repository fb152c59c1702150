// scripts/accuracy_spread.py on synthetic run folders: the table and the differences it prints are the ones
// computed from the files, and a folder without its files is reported as missing, not guessed.
#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "data/file_util.h"
#include "data_test_util.h"
#include "test_util.h"

namespace fs = std::filesystem;

namespace {

// A run folder as the study's programs write it: metrics.json (best epoch, its validation accuracy, the test
// accuracy of its weights) and history.csv (one row per epoch).
void write_run(const fs::path& dir, double test, int best_epoch, double best_val, const std::string& history) {
  fs::create_directories(dir);
  std::ofstream(dir / "metrics.json") << "{\"best_epoch\": " << best_epoch << ", \"best_val_acc\": " << best_val
                                      << ", \"test\": {\"accuracy\": " << test << ", \"count\": 10000}}\n";
  std::ofstream(dir / "history.csv") << "epoch,train_loss,train_acc,val_loss,val_acc,lr,seconds\n" << history;
}

std::string run_script(const std::string& args, const dl::test::TempDir& tmp, int* code) {
  const std::string script = std::string(DL_TEST_SOURCE_DIR) + "/scripts/accuracy_spread.py";
  const std::string log = tmp.file("out.txt");
  const int status = std::system(("python3 " + script + " " + args + " > " + log + " 2>&1").c_str());
  *code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return fs::exists(log) ? dl::data::read_file(log) : "";
}

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("accuracy_spread prints each run's figures and the differences to the first run") {
  if (std::system("python3 -c 'import csv, json' > /dev/null 2>&1") != 0) {
    DL_SKIP("python3 is not installed");
    return;
  }
  dl::test::TempDir tmp;
  write_run(tmp.path / "a", 0.9262, 3, 0.93,
            "1,0.40,0.8,0.30,0.90,0.001,1\n2,0.30,0.9,0.25,0.92,0.001,1\n3,0.20,0.95,0.22,0.94,0.001,1\n");
  write_run(tmp.path / "b", 0.9212, 2, 0.925,
            "1,0.41,0.8,0.30,0.91,0.001,1\n2,0.31,0.9,0.25,0.925,0.001,1\n3,0.25,0.95,0.22,0.90,0.001,1\n");
  int code = 0;
  const std::string out = run_script("--last 2 A=" + (tmp.path / "a").string() + " B=" + (tmp.path / "b").string() +
                                         " C=" + (tmp.path / "none").string(),
                                     tmp, &code);
  INFO(out);
  REQUIRE(code == 0);
  CHECK(has(out, "| A | 0.9262 (3) | 0.9300 | 0.9300 | 0.2000 |"));  // mean of 0.92 and 0.94
  CHECK(has(out, "| B | 0.9212 (2) | 0.9250 | 0.9125 | 0.2500 |"));  // mean of 0.925 and 0.90
  CHECK(has(out, "| B | -0.50 | -1.75 |"));                          // points: 100 x the differences
  CHECK(has(out, "| C | missing"));

  // a malformed argument is refused by name
  const std::string bad = run_script("not-a-pair", tmp, &code);
  CHECK(code != 0);
  CHECK(has(bad, "'not-a-pair' is not LABEL=RUN_DIR"));
}
