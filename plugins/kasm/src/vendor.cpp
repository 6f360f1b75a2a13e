#include "vendor.hpp"

#include <string.h>  // explicit_bzero

#include <algorithm>
#include <cctype>
#include <fstream>
#include <random>
#include <regex>

namespace helm::kasm {

using nlohmann::json;
using sdk::Error;
using sdk::Status;

namespace {

constexpr std::size_t kMaxQuoted = 300;

std::string lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

Error settings_error(const std::string& what) {
  return Error{Status::kInvalidInput,
               "the organization's Kasm settings are incomplete: " + what +
                   "; an admin sets them with PUT /api/v1/orgs/{org}/plugins/kasm/config"};
}

}  // namespace

void wipe(std::string& text) noexcept {
  if (!text.empty()) explicit_bzero(text.data(), text.size());
  text.clear();
}

std::string normalize_id(std::string_view id) {
  std::string out;
  out.reserve(id.size());
  for (const char c : id)
    if (c != '-') out.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  return out;
}

sdk::Result<OrgSettings> read_settings(const sdk::Config& config) {
  OrgSettings s;
  const auto base = config.find<std::string>("base_url");
  if (!base || base->rfind("https://", 0) != 0 || base->size() <= 8) {
    return settings_error("\"base_url\" must be the https:// URL of the Kasm server");
  }
  s.base_url = *base;
  while (!s.base_url.empty() && s.base_url.back() == '/')
    s.base_url.pop_back();
  const auto slash = s.base_url.find('/', 8);
  s.origin = slash == std::string::npos ? s.base_url : s.base_url.substr(0, slash);
  const auto key = config.find<std::string>("api_key");
  if (!key || key->empty()) return settings_error("\"api_key\" (the Kasm API key id) is missing");
  s.api_key = *key;
  s.secret_name = config.get_or<std::string>("api_key_secret_name", s.secret_name);
  const std::string style = config.get_or<std::string>("auth_style", "body");
  if (style == "basic") {
    s.auth_style = AuthStyle::kBasic;
  } else if (style != "body") {
    return settings_error("\"auth_style\" must be \"body\" or \"basic\"");
  }
  const std::string mode = config.get_or<std::string>("user_mode", "shared");
  if (mode == "per_session") {
    s.user_mode = UserMode::kPerSession;
  } else if (mode == "shared") {
    s.kasm_user_id = normalize_id(config.get_or<std::string>("kasm_user_id", ""));
    if (s.kasm_user_id.empty()) {
      return settings_error(
          "\"user_mode\" \"shared\" needs \"kasm_user_id\", the Kasm user the workspaces run as");
    }
  } else {
    return settings_error("\"user_mode\" must be \"shared\" or \"per_session\"");
  }
  if (const auto images = config.find<json>("client_images")) {
    if (!images->is_object()) return settings_error("\"client_images\" must be an object");
    for (const auto& [client, image] : images->items()) {
      if (!image.is_string() || image.get<std::string>().empty()) {
        return settings_error("client_images[\"" + client + "\"] must be a Kasm image_id");
      }
      s.client_images[lower(client)] = normalize_id(image.get<std::string>());
    }
  }
  s.default_image_id = normalize_id(config.get_or<std::string>("default_image_id", ""));
  return s;
}

std::string image_for(const OrgSettings& settings, const std::string& client_id) {
  const auto found = settings.client_images.find(lower(client_id));
  if (found != settings.client_images.end()) return found->second;
  return settings.default_image_id;
}

std::string base64(std::string_view bytes) {
  static constexpr char kTable[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const unsigned v = (static_cast<unsigned char>(bytes[i]) << 16) |
                       (static_cast<unsigned char>(bytes[i + 1]) << 8) |
                       static_cast<unsigned char>(bytes[i + 2]);
    out += kTable[(v >> 18) & 63];
    out += kTable[(v >> 12) & 63];
    out += kTable[(v >> 6) & 63];
    out += kTable[v & 63];
  }
  if (i + 1 == bytes.size()) {
    const unsigned v = static_cast<unsigned char>(bytes[i]) << 16;
    out += kTable[(v >> 18) & 63];
    out += kTable[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == bytes.size()) {
    const unsigned v = (static_cast<unsigned char>(bytes[i]) << 16) |
                       (static_cast<unsigned char>(bytes[i + 1]) << 8);
    out += kTable[(v >> 18) & 63];
    out += kTable[(v >> 12) & 63];
    out += kTable[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

std::string random_hex(std::size_t count) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::random_device device;  // the OS random source on Linux
  std::string out;
  out.reserve(count * 2);
  for (std::size_t i = 0; i < count; ++i) {
    const unsigned byte = device() & 0xFFU;
    out += kHex[byte >> 4];
    out += kHex[byte & 0x0FU];
  }
  return out;
}

json rfc3339(const json& kasm_time) {
  if (!kasm_time.is_string()) return nullptr;
  const std::string text = kasm_time.get<std::string>();
  static const std::regex kKasm(R"(^(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}:\d{2})(\.\d+)?Z?$)");
  std::smatch m;
  if (std::regex_match(text, m, kKasm)) return m[1].str() + "T" + m[2].str() + "Z";
  return text;
}

std::string absolute_url(const std::string& origin, const std::string& kasm_url) {
  if (kasm_url.rfind("https://", 0) == 0) return kasm_url;
  if (!kasm_url.empty() && kasm_url.front() == '/') return origin + kasm_url;
  return origin + "/" + kasm_url;
}

bool is_helm_username(std::string_view username) {
  if (username.size() != 13 || username.substr(0, 5) != "helm-") return false;
  return std::all_of(username.begin() + 5, username.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

std::string scrub(std::string text, std::string_view secret) {
  if (!secret.empty()) {
    for (auto at = text.find(secret); at != std::string::npos; at = text.find(secret, at))
      text.replace(at, secret.size(), "[redacted]");
  }
  if (text.size() > kMaxQuoted) {
    std::size_t cut = kMaxQuoted;
    while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0U) == 0x80U)
      --cut;
    text.resize(cut);
    text += "...";
  }
  return text;
}

sdk::Result<json> read_answer(const sdk::HttpResponse& response, std::string_view method,
                              std::string_view secret) {
  const std::uint32_t code = response.status_code;
  const std::string m(method);
  json body = json::parse(response.body, nullptr, /*allow_exceptions=*/false);
  std::string message;
  if (body.is_object() && body.contains("error_message") && body["error_message"].is_string())
    message = scrub(body["error_message"].get<std::string>(), secret);
  const std::string said = message.empty() ? "HTTP " + std::to_string(code) : message;
  const std::string low = lower(message);

  if (code == 401 || code == 403) {
    if (low.find("expired") != std::string::npos) {
      return Error{Status::kUpstreamUnauthorized, "Kasm refused the API key: it has expired (" +
                                                      said + "); an admin stores a new key"};
    }
    if (low.find("unauthorized") != std::string::npos) {
      return Error{Status::kUpstreamUnauthorized,
                   "Kasm refused " + m + ": the API key lacks the permission (" + said + ")"};
    }
    return Error{Status::kUpstreamUnauthorized,
                 "Kasm refused the API key and secret (" + said +
                     "); check the organization's api_key and its secret in the vault"};
  }
  if (code == 429) {
    std::string seconds = "30";
    if (const std::string* after = response.header("Retry-After");
        after != nullptr && !after->empty() && after->size() < 7 &&
        std::all_of(after->begin(), after->end(), ::isdigit))
      seconds = *after;
    return Error{Status::kUpstreamRateLimited,
                 "Kasm is rate limiting (retry after " + seconds + " s)"};
  }
  if (code >= 500) {
    return Error{Status::kUpstreamUnavailable,
                 "Kasm is unavailable (HTTP " + std::to_string(code) + " for " + m + ")"};
  }
  if (body.is_discarded() || !body.is_object()) {
    return Error{Status::kUpstreamError, "Kasm answered " + m + " with HTTP " +
                                             std::to_string(code) + " and a body that is not JSON"};
  }
  if (code == 400 && (low.rfind("invalid kasm_id", 0) == 0 || low.rfind("invalid user_id", 0) == 0))
    return Error{Status::kNotFound, "Kasm: " + said};
  if (code != 200) {
    return Error{Status::kUpstreamError,
                 "Kasm refused " + m + " (HTTP " + std::to_string(code) + ": " + said + ")"};
  }
  if (!message.empty()) {
    // 200 + error_message is a failure, except a status poll of a session still starting.
    if (m == "get_kasm_status" && body.contains("operational_status")) return body;
    if (low.find("access denied") != std::string::npos ||
        low.find("unauthorized") != std::string::npos) {
      return Error{Status::kUpstreamUnauthorized, "Kasm refused " + m + " (" + message + ")"};
    }
    return Error{Status::kUpstreamError, "Kasm could not " + m + ": " + message};
  }
  return body;
}

}  // namespace helm::kasm
