// The README's library quick-start is examples/quickstart.cpp, word for word, and it builds, trains,
// saves, reloads and predicts (the program exits non-zero below 95% accuracy after reloading).
#include <filesystem>

#include "test_util.h"
#include "unit/file_test_util.h"

namespace fs = std::filesystem;

TEST_CASE("the README shows examples/quickstart.cpp as it is") {
  const std::string code = dl::test::read_file(dl::test::source_dir() + "/examples/quickstart.cpp");
  const std::string readme = dl::test::read_file(dl::test::source_dir() + "/README.md");
  REQUIRE(code.size() > 500);
  CHECK_MESSAGE(readme.find("```cpp\n" + code + "```") != std::string::npos,
                "README.md's quick-start block differs from examples/quickstart.cpp: copy the file into it");
}

TEST_CASE("the quick-start trains, saves to safetensors, reloads and predicts") {
  dl::test::TmpDir tmp;
  auto r = dl::test::run_program({"/bin/sh", "-c", "cd \"$0\" && exec \"$1\"", tmp.dir.string(),
                                  dl::test::bin_dir() + "/quickstart"},
                                 tmp.path("out.log"));
  INFO(r.output);
  CHECK(r.code == 0);
  CHECK(r.output.find("step 75  loss") != std::string::npos);
  CHECK(r.output.find("accuracy after reloading: ") != std::string::npos);
  CHECK(fs::file_size(tmp.path("quickstart.safetensors")) > 16 * 4);
}
