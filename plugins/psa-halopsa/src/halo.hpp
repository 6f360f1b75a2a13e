/// @brief What the psa-halopsa plugin knows about HaloPSA's wire format, as pure functions: the
/// organization's settings, URLs and form bodies, Retry-After, normalization of tickets, actions
/// and clients into the `psa` vocabulary (sdk-docs/psa-operations.md), and vendor answers mapped
/// to typed errors.
#pragma once

#include <helm/plugin.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace helm::halopsa {

/// The organization's settings (org_config_schema), read once per call.
struct OrgSettings {
  std::string resource_url;  ///< e.g. https://x.halopsa.com/api, without a trailing slash
  std::string auth_url;      ///< e.g. https://x.halopsa.com/auth, without a trailing slash
  std::string tenant;        ///< Halo-hosted instances: sent as ?tenant= to the token endpoint
  std::string client_id;     ///< the API application's client id (not a secret)
  std::string client_secret_secret = "halopsa/client-secret";  ///< vault name of the secret
  std::string scope = "all";
  std::chrono::milliseconds request_timeout{20'000};
  std::map<std::string, std::int64_t> hub_to_vendor;  ///< hub client uuid → Halo client id
  std::map<std::int64_t, std::string> vendor_to_hub;  ///< the reverse

  /// Which cached access token these settings may use: organization, client id, token URL and
  /// tenant. A change to any of them means a new token.
  std::string token_cache_key(std::string_view organization_id) const;
  /// The hub client uuid linked to a Halo client id, if any.
  std::optional<std::string> hub_client(std::int64_t vendor_client_id) const;
};

/// Reads the settings; what is missing or malformed is named for the admin.
sdk::Result<OrgSettings> read_settings(const sdk::Config& config);

/// Percent-encodes one URL query value or form field (RFC 3986 unreserved characters kept).
std::string url_encode(std::string_view text);

/// A query string from name/value pairs (already-plain values; this encodes them), without '?'.
std::string query_string(const std::vector<std::pair<std::string, std::string>>& pairs);

/// The token endpoint: {auth_url}/token, with ?tenant= when a tenant is configured.
std::string token_url(const OrgSettings& settings);

/// The form body of a client-credentials token request. Holds the secret: the caller zeroes it.
std::string token_form(const OrgSettings& settings, std::string_view client_secret);

/// Seconds from a Retry-After header (delta-seconds; an HTTP date or garbage gives `fallback`).
std::chrono::seconds retry_after(const std::string* header, std::chrono::seconds fallback);

/// A JSON integer (or a string of digits) as an int64; nullopt otherwise.
std::optional<std::int64_t> as_id(const nlohmann::json& value);

/// A Halo ticket in our field names (see sdk-docs/psa-operations.md, "Ticket").
nlohmann::json normalize_ticket(const nlohmann::json& ticket, const OrgSettings& settings,
                                bool include_raw);

/// A Halo action (note) in our field names.
nlohmann::json normalize_action(const nlohmann::json& action, bool include_raw);

/// A Halo client in our field names.
nlohmann::json normalize_client(const nlohmann::json& client, const OrgSettings& settings,
                                bool include_raw);

/// The readable message of a Halo error body: .NET {"ClassName","Message"}, {"Message"},
/// {"error","error_description"} or plain text; shortened and free of control characters, with
/// `redact` (e.g. the access token) replaced if the vendor echoed it.
std::string vendor_message(std::string_view body, std::string_view redact = {});

/// Maps a Halo resource-server answer that is not 2xx, 401 or 429 to a typed error.
/// `writing` says whether the request changed data (a 400 is then the technician's input).
sdk::Error map_status(std::uint32_t status, std::string_view body, bool writing,
                      std::string_view redact);

/// Maps an error answer of the token endpoint (never includes the secret).
sdk::Error map_token_error(std::uint32_t status, std::string_view body,
                           const OrgSettings& settings);

/// Maps a failure below HTTP (timeout, TLS, refused host) to the call's error.
sdk::Error map_transport_error(const sdk::Error& error, std::chrono::milliseconds timeout);

}  // namespace helm::halopsa
