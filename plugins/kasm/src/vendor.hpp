/// @brief What the kasm plugin knows about the Kasm Workspaces developer API, as pure functions:
/// the organization's settings, the credential carriers (body fields or Basic), answers mapped
/// to typed errors (HTTP 200 + error_message included), ids and times normalized.
#pragma once

#include <helm/plugin.hpp>

#include <map>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace helm::kasm {

enum class AuthStyle { kBody, kBasic };
enum class UserMode { kShared, kPerSession };

/// The organization's settings (org_config_schema), read once per call.
struct OrgSettings {
  std::string base_url;  ///< without a trailing slash
  std::string origin;    ///< scheme://host[:port] of base_url, for the relative kasm_url
  std::string api_key;   ///< the key id (not secret); the secret lives in the vault
  std::string secret_name = "kasm/api-key-secret";
  AuthStyle auth_style = AuthStyle::kBody;
  UserMode user_mode = UserMode::kShared;
  std::string kasm_user_id;                          ///< shared mode: the dedicated Kasm user
  std::map<std::string, std::string> client_images;  ///< hub client uuid → Kasm image_id
  std::string default_image_id;
};

/// Reads the settings; what an admin must fix is an INVALID_INPUT error naming the setting.
sdk::Result<OrgSettings> read_settings(const sdk::Config& config);

/// The Kasm image for a hub client: its client_images entry, else default_image_id, else "".
std::string image_for(const OrgSettings& settings, const std::string& client_id);

/// Overwrites a string's bytes before it is released (credentials).
void wipe(std::string& text) noexcept;

/// A Kasm API key and its secret, kept only in memory; wiped when destroyed.
struct Credential {
  std::string organization_id;  ///< whose settings the host applies to a session-less request
  std::string base_url;
  std::string origin;
  AuthStyle style = AuthStyle::kBody;
  std::string key;
  std::string secret;

  Credential() = default;
  Credential(const Credential& other) = default;
  Credential& operator=(const Credential& other) {
    if (this != &other) {
      wipe(secret);
      organization_id = other.organization_id;
      base_url = other.base_url;
      origin = other.origin;
      style = other.style;
      key = other.key;
      secret = other.secret;
    }
    return *this;
  }
  ~Credential() { wipe(secret); }
};

/// An id as Kasm compares them: lower case, without hyphens.
std::string normalize_id(std::string_view id);

/// RFC 4648 base64.
std::string base64(std::string_view bytes);

/// `count` random bytes as lower-case hex (from the operating system's random source).
std::string random_hex(std::size_t count);

/// A Kasm time ("2026-11-30 12:00:00.000000", UTC) as RFC 3339 ("2026-11-30T12:00:00Z"); other
/// strings are returned as they are, non-strings as null.
nlohmann::json rfc3339(const nlohmann::json& kasm_time);

/// The URL a technician opens: kasm_url made absolute against the server's origin.
std::string absolute_url(const std::string& origin, const std::string& kasm_url);

/// Whether a Kasm username is one this plugin creates ("helm-" and 8 hex digits).
bool is_helm_username(std::string_view username);

/// Removes every occurrence of `secret` from `text` and shortens it for an error message.
std::string scrub(std::string text, std::string_view secret);

/// Maps a Kasm answer to its JSON body or a typed error. `method` names the Kasm method for
/// messages; HTTP 200 with error_message is an error except get_kasm_status's "still starting"
/// answer (it carries operational_status). 400 "Invalid kasm_id"/"Invalid user_id" are
/// NOT_FOUND, so callers can tell a session that is gone.
sdk::Result<nlohmann::json> read_answer(const sdk::HttpResponse& response, std::string_view method,
                                        std::string_view secret);

}  // namespace helm::kasm
