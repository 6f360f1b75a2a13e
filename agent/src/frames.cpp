#include "helm/agent/frames.hpp"

namespace helm::agent {
namespace {

Expected<std::string> required_string(const nlohmann::json& doc, const char* key,
                                      std::string_view t) {
  const auto it = doc.find(key);
  if (it == doc.end() || !it->is_string() || it->get_ref<const std::string&>().empty()) {
    return Error{std::string(t) + " frame needs a non-empty string \"" + key + "\""};
  }
  return it->get<std::string>();
}

std::string optional_string(const nlohmann::json& doc, const char* key) {
  const auto it = doc.find(key);
  return it != doc.end() && it->is_string() ? it->get<std::string>() : std::string();
}

}  // namespace

Expected<HubFrame> parse_hub_frame(std::string_view text) {
  const auto doc = nlohmann::json::parse(text, nullptr, false);
  if (doc.is_discarded()) return Error{"frame is not valid JSON"};
  if (!doc.is_object()) return Error{"frame is not a JSON object"};
  const auto t_it = doc.find("t");
  if (t_it == doc.end() || !t_it->is_string()) return Error{"frame has no string field \"t\""};
  const auto& t = t_it->get_ref<const std::string&>();
  if (t == "welcome") {
    WelcomeFrame frame;
    frame.device_id = optional_string(doc, "device_id");
    const auto hb = doc.find("heartbeat_s");
    if (hb != doc.end() && hb->is_number_integer() && hb->get<long long>() > 0 &&
        hb->get<long long>() <= 3600) {
      frame.heartbeat_s = hb->get<int>();
    }
    return HubFrame{frame};
  }
  if (t == "hb_ack") {
    const auto seq = doc.find("seq");
    if (seq == doc.end() || !seq->is_number_integer() || seq->get<long long>() < 0) {
      return Error{"hb_ack frame needs an unsigned integer \"seq\""};
    }
    return HubFrame{HbAckFrame{seq->get<std::uint64_t>()}};
  }
  if (t == "cmd") {
    CmdFrame frame;
    auto id = required_string(doc, "id", t);
    if (!id) return id.error();
    auto kind = required_string(doc, "kind", t);
    if (!kind) return kind.error();
    frame.id = std::move(id.value());
    frame.kind = std::move(kind.value());
    const auto args = doc.find("args");
    if (args != doc.end() && !args->is_null()) {
      if (!args->is_object()) return Error{"cmd frame \"args\" must be an object"};
      frame.args = *args;
    } else {
      frame.args = nlohmann::json::object();
    }
    const auto deadline = doc.find("deadline");
    if (deadline != doc.end()) frame.deadline = *deadline;
    return HubFrame{std::move(frame)};
  }
  if (t == "error") {
    return HubFrame{HubErrorFrame{optional_string(doc, "code"), optional_string(doc, "message"),
                                  optional_string(doc, "ref")}};
  }
  return HubFrame{UnknownFrame{t}};
}

nlohmann::json make_hello(std::string_view agent_version, std::string_view hostname,
                          std::string_view os, std::string_view boot_id) {
  return {{"t", "hello"},
          {"agent_version", agent_version},
          {"hostname", hostname},
          {"os", os},
          {"boot_id", boot_id}};
}

nlohmann::json make_hb(std::uint64_t seq) {
  return {{"t", "hb"}, {"seq", seq}};
}

nlohmann::json make_ack(std::string_view id) {
  return {{"t", "ack"}, {"id", id}};
}

nlohmann::json make_error(std::string_view code, std::string_view message, std::string_view ref) {
  return {{"t", "error"}, {"code", code}, {"message", message}, {"ref", ref}};
}

nlohmann::json make_result(std::string_view id, std::string_view status, int exit_code,
                           std::string_view stdout_text, std::string_view stderr_text,
                           nlohmann::json data) {
  return {{"t", "result"},          {"id", id},
          {"status", status},       {"exit_code", exit_code},
          {"stdout", stdout_text},  {"stderr", stderr_text},
          {"data", std::move(data)}};
}

}  // namespace helm::agent
