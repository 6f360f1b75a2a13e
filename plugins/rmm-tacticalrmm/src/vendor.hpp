/// @brief What the rmm-tacticalrmm plugin knows about Tactical RMM's wire format, as pure
/// functions: the organization's settings, URLs, normalization of agents and scripts into the
/// `rmm` vocabulary (sdk-docs/rmm-operations.md), and vendor answers mapped to typed errors.
#pragma once

#include <helm/plugin.hpp>

#include <map>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace helm::tacticalrmm {

/// The organization's settings (org_config_schema), read once per call.
struct OrgSettings {
  std::string base_url;  ///< without a trailing slash
  std::string api_key_secret = "tacticalrmm/api-key";
  std::map<std::string, std::string> hub_to_vendor;  ///< hub client uuid → vendor client id
  std::map<std::string, std::string> vendor_to_hub;  ///< the reverse
};

/// Reads the settings; a missing or malformed base_url or client_map is an error for the admin.
sdk::Result<OrgSettings> read_settings(const sdk::Config& config);

/// `base` + `path` (which starts and ends with '/') + an optional query string.
std::string make_url(const std::string& base, std::string_view path, std::string_view query = {});

/// Percent-encodes one URL path segment or query value (RFC 3986 unreserved kept).
std::string url_encode(std::string_view text);

/// The client's name → vendor id, and for every site its vendor id → (name, client id), from
/// GET /clients/.
struct Directory {
  std::map<std::string, std::string> client_id_by_name;
  std::map<std::string, std::string> client_name_by_id;
  struct Site {
    std::string name;
    std::string client_id;
  };
  std::map<std::string, Site> sites;  ///< vendor site id → site
};

/// Parses GET /clients/; nullopt when the answer is not the array of clients it should be.
std::optional<Directory> parse_directory(const nlohmann::json& clients);

/// A JSON value as a vendor id string: integers and strings; anything else is "".
std::string id_string(const nlohmann::json& value);

/// A Tactical RMM agent (a row of GET /agents/ or GET /agents/{id}/) in our field names.
nlohmann::json normalize_agent(const nlohmann::json& agent, const Directory& directory,
                               const OrgSettings& settings, bool include_raw);

/// A Tactical RMM script (a row of GET /scripts/) in our field names.
nlohmann::json normalize_script(const nlohmann::json& script, bool include_raw);

/// The output of a "wait" script run or a command: the JSON string, or the stdout of a
/// {stdout, stderr, retcode, execution_time} object; nullopt for anything else.
std::optional<nlohmann::json> command_output(const nlohmann::json& body);

/// Removes every occurrence of `secret` from `text` and shortens it for an error message.
std::string scrub(std::string text, std::string_view secret);

/// What an operation is doing, for error messages: "listing devices", "running the command".
struct Context {
  std::string action;
  std::string not_found;  ///< the message for a 404, e.g. "Tactical RMM has no device X"
};

/// Maps a vendor answer that is not a success to a typed error, or nullopt for a 2xx. `secret` is
/// scrubbed from every piece of vendor text the message quotes.
std::optional<sdk::Error> error_for(const sdk::HttpResponse& response, const Context& context,
                                    std::string_view secret);

/// The message of the typed error for an agent that did not answer.
inline constexpr std::string_view kOfflineMessage =
    "the device did not answer (offline or unreachable)";

}  // namespace helm::tacticalrmm
