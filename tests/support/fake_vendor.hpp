/// @brief A fake vendor server (tests/fakes/<vendor>/fake_<vendor>.py) as a child process on
/// loopback, and its control endpoints under /_fake/ (shared by every fake): recorded requests,
/// reset, fault injection, state.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace helm::test {

class FakeVendor {
 public:
  /// Runs `python3 script --cert cert --key key args...` and waits (up to 30 s) for the line
  /// "READY <port>" on its standard output. port() is 0 when it did not start.
  FakeVendor(const std::string& script, const std::string& cert, const std::string& key,
             const std::vector<std::string>& args = {});
  ~FakeVendor();  ///< SIGTERM, then waits for the exit
  FakeVendor(const FakeVendor&) = delete;
  FakeVendor& operator=(const FakeVendor&) = delete;

  std::uint16_t port() const { return port_; }
  /// "https://localhost:<port>" (the certificate the tests make names localhost).
  std::string base_url() const;

  /// A control request (no auth); expects 200 and returns the parsed body (discarded if not
  /// JSON).
  nlohmann::json control(const std::string& method, const std::string& path,
                         const nlohmann::json& body = nullptr) const;
  void reset(const nlohmann::json& body = nlohmann::json::object()) const;
  void inject(const nlohmann::json& rule) const;
  void state(const nlohmann::json& doc) const;
  /// Every request the fake recorded since the last reset, oldest first.
  nlohmann::json requests() const;
  /// The recorded requests whose path starts with `prefix`.
  std::vector<nlohmann::json> requests_to(const std::string& prefix) const;

 private:
  std::string ca_file_;
  pid_t pid_ = -1;
  std::uint16_t port_ = 0;
};

}  // namespace helm::test
