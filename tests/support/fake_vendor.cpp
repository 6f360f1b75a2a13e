#include "fake_vendor.hpp"

#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>

#include "test_support.hpp"

extern char** environ;

namespace helm::test {

FakeVendor::FakeVendor(const std::string& script, const std::string& cert, const std::string& key,
                       const std::vector<std::string>& args)
    : ca_file_(cert) {
  int out[2];
  if (::pipe(out) != 0) return;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&actions, out[0]);
  std::vector<std::string> words = {"python3", script, "--cert", cert, "--key", key};
  words.insert(words.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& word : words)
    argv.push_back(word.data());
  argv.push_back(nullptr);
  if (::posix_spawnp(&pid_, "python3", &actions, nullptr, argv.data(), environ) != 0) pid_ = -1;
  posix_spawn_file_actions_destroy(&actions);
  ::close(out[1]);
  std::string line;
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (pid_ > 0 && line.find('\n') == std::string::npos &&
         std::chrono::steady_clock::now() < until) {
    pollfd p{out[0], POLLIN, 0};
    if (::poll(&p, 1, 200) <= 0) continue;
    char buffer[256];
    const ssize_t n = ::read(out[0], buffer, sizeof buffer);
    if (n <= 0) break;
    line.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(out[0]);
  if (line.rfind("READY ", 0) == 0) port_ = static_cast<std::uint16_t>(std::stoi(line.substr(6)));
}

FakeVendor::~FakeVendor() {
  if (pid_ > 0) {
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
  }
}

std::string FakeVendor::base_url() const {
  return "https://localhost:" + std::to_string(port_);
}

nlohmann::json FakeVendor::control(const std::string& method, const std::string& path,
                                   const nlohmann::json& body) const {
  HttpRequestOptions o;
  o.method = method;
  o.ca_file = ca_file_;
  if (!body.is_null()) {
    o.body = body.dump();
    o.headers = {"Content-Type: application/json"};
  }
  const auto r = https(base_url() + path, o);
  EXPECT_EQ(r.status, 200) << method << " " << path << ": " << r.body;
  return nlohmann::json::parse(r.body, nullptr, false);
}

void FakeVendor::reset(const nlohmann::json& body) const {
  control("POST", "/_fake/reset", body);
}
void FakeVendor::inject(const nlohmann::json& rule) const {
  control("POST", "/_fake/inject", rule);
}
void FakeVendor::state(const nlohmann::json& doc) const {
  control("POST", "/_fake/state", doc);
}
nlohmann::json FakeVendor::requests() const {
  return control("GET", "/_fake/requests")["requests"];
}

std::vector<nlohmann::json> FakeVendor::requests_to(const std::string& prefix) const {
  std::vector<nlohmann::json> out;
  for (const auto& r : requests()) {
    if (r.value("path", "").rfind(prefix, 0) == 0) out.push_back(r);
  }
  return out;
}

}  // namespace helm::test
