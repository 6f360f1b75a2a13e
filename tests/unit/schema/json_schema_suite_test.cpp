// Runs the official JSON-Schema-Test-Suite for draft 7 (required and optional tests). Remote
// references (http://localhost:1234/...) are served from the suite's remotes/ directory.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <iostream>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "helm/schema/json_schema.hpp"

namespace helm::schema {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

/// A group of suite cases we knowingly do not pass. `file` is relative to tests/draft7/; `group`
/// and `test` are descriptions from the file, or "*" for all.
struct SkippedCase {
  std::string_view file;
  std::string_view group;
  std::string_view test;
  std::string_view reason;
};

// Keep this as short as honesty allows; a stale entry (one whose cases now pass, or that matches
// nothing) fails the test so the list cannot rot. Every draft 7 case passes today, optional ones
// included, so it is empty; an entry looks like
//   {"optional/format/idn-hostname.json", "*", "*", "IDNA2008 tables not implemented"},
constexpr std::initializer_list<SkippedCase> kSkipped = {};

fs::path suite_dir() {
  return HELM_JSON_SCHEMA_SUITE_DIR;
}

constexpr std::string_view kRemoteBase = "http://localhost:1234/";

std::optional<json> read_json(const fs::path& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  return json::parse(in, nullptr, /*allow_exceptions=*/false);
}

// Serves http://localhost:1234/<path> from remotes/<path>, as the suite's README asks.
bool load_remote(const std::string& uri, json& document) {
  if (!uri.starts_with(kRemoteBase)) return false;
  const auto parsed = read_json(suite_dir() / "remotes" / uri.substr(kRemoteBase.size()));
  if (!parsed || parsed->is_discarded()) return false;
  document = *parsed;
  return true;
}

std::vector<fs::path> suite_files() {
  std::vector<fs::path> files;
  for (const char* sub :
       {"tests/draft7", "tests/draft7/optional", "tests/draft7/optional/format"}) {
    const fs::path dir = suite_dir() / sub;
    if (!fs::is_directory(dir)) continue;
    for (const auto& entry : fs::directory_iterator(dir)) {
      if (entry.is_regular_file() && entry.path().extension() == ".json") {
        files.push_back(entry.path());
      }
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

const SkippedCase* find_skip(std::string_view file, std::string_view group, std::string_view test) {
  for (const auto& skip : kSkipped) {
    if (skip.file == file && (skip.group == "*" || skip.group == group) &&
        (skip.test == "*" || skip.test == test)) {
      return &skip;
    }
  }
  return nullptr;
}

TEST(JsonSchemaSuite, Draft7PassesEveryCaseNotOnTheSkipList) {
  ASSERT_TRUE(fs::is_directory(suite_dir() / "tests/draft7"))
      << "JSON-Schema-Test-Suite not found under " << suite_dir()
      << "; install the json-schema-test-suite package";

  CompileOptions options;
  options.loader = load_remote;

  int passed = 0;
  int skipped = 0;
  std::map<const SkippedCase*, int> skip_hits;        // cases matched by each entry
  std::map<const SkippedCase*, int> skip_would_pass;  // of those, how many pass anyway
  const fs::path tests_root = suite_dir() / "tests/draft7";

  for (const auto& path : suite_files()) {
    const std::string file = fs::relative(path, tests_root).generic_string();
    const auto groups = read_json(path);
    ASSERT_TRUE(groups && !groups->is_discarded()) << file << " is not valid JSON";
    for (const auto& group : *groups) {
      const std::string group_name = group.at("description").get<std::string>();
      auto schema = JsonSchema::compile(group.at("schema"), options);
      for (const auto& test : group.at("tests")) {
        const std::string test_name = test.at("description").get<std::string>();
        const bool expected = test.at("valid").get<bool>();
        const SkippedCase* skip = find_skip(file, group_name, test_name);
        bool ok = false;
        std::string detail;
        if (!schema) {
          detail = "schema failed to compile: " + schema.error().message;
        } else {
          const bool fast = schema->is_valid(test.at("data"));
          const auto errors = schema->validate(test.at("data"));
          // is_valid() and validate() must agree, or one of them short-circuits wrongly.
          ok = fast == expected && errors.empty() == expected;
          if (!ok) {
            detail = "is_valid=" + std::string(fast ? "true" : "false") + ", validate() gave " +
                     std::to_string(errors.size()) + " errors";
            if (!errors.empty()) detail += ", first: " + errors.front().message;
          }
        }
        if (skip != nullptr) {
          ++skipped;
          ++skip_hits[skip];
          if (ok) ++skip_would_pass[skip];
          continue;
        }
        if (ok) {
          ++passed;
        } else {
          ADD_FAILURE() << file << " / " << group_name << " / " << test_name << ": expected "
                        << (expected ? "valid" : "invalid") << "; " << detail;
        }
      }
    }
  }

  std::string reasons;
  for (const auto& skip : kSkipped) {
    const int hits = skip_hits[&skip];
    EXPECT_GT(hits, 0) << "skip entry " << skip.file << " / " << skip.group
                       << " matches no case; remove it";
    EXPECT_LT(skip_would_pass[&skip], hits) << "every case under skip entry " << skip.file << " / "
                                            << skip.group << " passes now; remove it";
    reasons += std::string(reasons.empty() ? "" : "; ") + std::string(skip.file) + " / " +
               std::string(skip.group) + ": " + std::string(skip.reason) + " (" +
               std::to_string(hits) + ")";
  }
  std::cout << "schema suite: " << passed << " passed, " << skipped << " skipped ("
            << (reasons.empty() ? "none" : reasons) << ")\n";
  EXPECT_GT(passed, 0);
}

}  // namespace
}  // namespace helm::schema
