/// @brief Frames of agent protocol version 1: parsing what the hub sends, building what the
/// agent sends.
#pragma once

#include "helm/agent/result.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

namespace helm::agent {

inline constexpr std::string_view kSubprotocol = "helm.agent.v1";
inline constexpr std::size_t kMaxFrameBytes = 1024 * 1024;

struct WelcomeFrame {
  std::string device_id;
  int heartbeat_s = 0;  // 0 when the hub did not say
};
struct HbAckFrame {
  std::uint64_t seq = 0;
};
struct CmdFrame {
  std::string id;
  std::string kind;
  nlohmann::json args;      // object (empty if absent)
  nlohmann::json deadline;  // as sent (RFC 3339 text or epoch seconds); null if absent
};
struct HubErrorFrame {
  std::string code;
  std::string message;
  std::string ref;
};
/// A well-formed frame whose `t` this version does not know: answered with an `error` frame.
struct UnknownFrame {
  std::string t;
};

using HubFrame = std::variant<WelcomeFrame, HbAckFrame, CmdFrame, HubErrorFrame, UnknownFrame>;

/// Errors: not JSON, not an object, no string `t`, or a known `t` with a missing/mistyped field.
Expected<HubFrame> parse_hub_frame(std::string_view text);

nlohmann::json make_hello(std::string_view agent_version, std::string_view hostname,
                          std::string_view os, std::string_view boot_id);
nlohmann::json make_hb(std::uint64_t seq);
nlohmann::json make_ack(std::string_view id);
nlohmann::json make_error(std::string_view code, std::string_view message, std::string_view ref);
/// status is "ok", "error" or "timeout".
nlohmann::json make_result(std::string_view id, std::string_view status, int exit_code,
                           std::string_view stdout_text, std::string_view stderr_text,
                           nlohmann::json data);

}  // namespace helm::agent
