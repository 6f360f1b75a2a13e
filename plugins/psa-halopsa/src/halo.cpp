#include "halo.hpp"

#include <algorithm>
#include <cctype>
#include <utility>
#include <vector>

namespace helm::halopsa {

using nlohmann::json;
using sdk::Error;
using sdk::Status;

namespace {

std::string trim_slashes(std::string url) {
  while (!url.empty() && url.back() == '/')
    url.pop_back();
  return url;
}

bool is_https_url(const std::string& url) {
  return url.rfind("https://", 0) == 0 && url.size() > 8;
}

// Only [A-Za-z0-9._-] of a vendor's error code, so a reflected value cannot smuggle anything.
std::string safe_code(std::string_view code) {
  std::string out;
  for (char c : code.substr(0, 64)) {
    if (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.') {
      out += c;
    }
  }
  return out;
}

}  // namespace

std::string OrgSettings::token_cache_key(std::string_view organization_id) const {
  std::string key(organization_id);
  for (const std::string* part : {&client_id, &auth_url, &tenant, &scope}) {
    key += '\n';
    key += *part;
  }
  return key;
}

std::optional<std::string> OrgSettings::hub_client(std::int64_t vendor_client_id) const {
  const auto it = vendor_to_hub.find(vendor_client_id);
  if (it == vendor_to_hub.end()) return std::nullopt;
  return it->second;
}

std::optional<std::int64_t> as_id(const json& value) {
  if (value.is_number_integer()) return value.get<std::int64_t>();
  if (value.is_number_float()) {
    const double d = value.get<double>();
    if (d >= 0 && d < 9e15 && d == static_cast<double>(static_cast<std::int64_t>(d))) {
      return static_cast<std::int64_t>(d);
    }
    return std::nullopt;
  }
  if (value.is_string()) {
    const auto& s = value.get_ref<const std::string&>();
    if (s.empty() || s.size() > 18 ||
        !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return std::nullopt;
    }
    return std::stoll(s);
  }
  return std::nullopt;
}

sdk::Result<OrgSettings> read_settings(const sdk::Config& config) {
  OrgSettings s;
  const auto missing = [](const char* what) {
    return Error{Status::kUnavailable,
                 std::string("psa-halopsa is not configured for this organization: set ") + what +
                     " in the plugin's organization settings"};
  };
  s.resource_url = trim_slashes(config.get_or<std::string>("resource_url", ""));
  if (s.resource_url.empty()) return missing("resource_url (e.g. https://x.halopsa.com/api)");
  if (!is_https_url(s.resource_url)) {
    return Error{Status::kInvalidInput, "resource_url must be an https:// URL"};
  }
  s.auth_url = trim_slashes(config.get_or<std::string>("auth_url", ""));
  if (s.auth_url.empty()) {
    // Halo shows both; on a single instance the authorisation server sits beside /api.
    const std::string api = "/api";
    if (s.resource_url.size() > api.size() &&
        s.resource_url.compare(s.resource_url.size() - api.size(), api.size(), api) == 0) {
      s.auth_url = s.resource_url.substr(0, s.resource_url.size() - api.size()) + "/auth";
    } else {
      return missing("auth_url (e.g. https://x.halopsa.com/auth)");
    }
  }
  if (!is_https_url(s.auth_url)) {
    return Error{Status::kInvalidInput, "auth_url must be an https:// URL"};
  }
  s.tenant = config.get_or<std::string>("tenant", "");
  s.client_id = config.get_or<std::string>("client_id", "");
  if (s.client_id.empty()) return missing("client_id (Halo → Integrations → Halo API)");
  s.client_secret_secret =
      config.get_or<std::string>("client_secret_secret", "halopsa/client-secret");
  s.scope = config.get_or<std::string>("scope", "all");
  if (s.scope.empty()) s.scope = "all";
  const auto timeout = config.get_or<std::int64_t>("request_timeout_ms", 20'000);
  s.request_timeout = std::chrono::milliseconds(std::clamp<std::int64_t>(timeout, 100, 120'000));
  const json map = config.get_or<json>("client_map", json::object());
  if (!map.is_object()) {
    return Error{Status::kInvalidInput, "client_map must map hub client ids to HaloPSA client ids"};
  }
  for (const auto& [hub, vendor] : map.items()) {
    const auto id = as_id(vendor);
    if (!id) {
      return Error{Status::kInvalidInput,
                   "client_map[" + hub + "] must be a HaloPSA client id (a whole number)"};
    }
    s.hub_to_vendor[hub] = *id;
    s.vendor_to_hub.emplace(*id, hub);
  }
  return s;
}

std::string url_encode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size());
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

std::string query_string(const std::vector<std::pair<std::string, std::string>>& pairs) {
  std::string out;
  for (const auto& [name, value] : pairs) {
    if (!out.empty()) out += '&';
    out += url_encode(name);
    out += '=';
    out += url_encode(value);
  }
  return out;
}

std::string token_url(const OrgSettings& settings) {
  std::string url = settings.auth_url + "/token";
  if (!settings.tenant.empty()) url += "?tenant=" + url_encode(settings.tenant);
  return url;
}

std::string token_form(const OrgSettings& settings, std::string_view client_secret) {
  std::string form = "grant_type=client_credentials&client_id=" + url_encode(settings.client_id);
  form += "&client_secret=";
  form += url_encode(client_secret);
  form += "&scope=" + url_encode(settings.scope);
  return form;
}

std::chrono::seconds retry_after(const std::string* header, std::chrono::seconds fallback) {
  if (header == nullptr) return fallback;
  std::string value = *header;
  value.erase(0, value.find_first_not_of(" \t"));
  value.erase(value.find_last_not_of(" \t\r\n") + 1);
  if (value.empty() || value.size() > 9 ||
      !std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return fallback;
  }
  return std::chrono::seconds(std::stoll(value));
}

namespace {

json id_or_null(const json& object, const char* key) {
  if (!object.contains(key)) return nullptr;
  const auto id = as_id(object.at(key));
  if (!id) return nullptr;
  return *id;
}

json string_or_null(const json& object, const char* key) {
  if (!object.contains(key) || !object.at(key).is_string()) return nullptr;
  return object.at(key);
}

}  // namespace

json normalize_ticket(const json& ticket, const OrgSettings& settings, bool include_raw) {
  json out = json::object();
  out["id"] = id_or_null(ticket, "id");
  out["summary"] = string_or_null(ticket, "summary");
  out["details"] = string_or_null(ticket, "details");
  const json vendor_client = id_or_null(ticket, "client_id");
  out["vendor_client_id"] = vendor_client;
  out["client_id"] = nullptr;
  if (vendor_client.is_number_integer()) {
    if (auto hub = settings.hub_client(vendor_client.get<std::int64_t>())) out["client_id"] = *hub;
  }
  out["client_name"] = string_or_null(ticket, "client_name");
  out["vendor_site_id"] = id_or_null(ticket, "site_id");
  out["site_name"] = string_or_null(ticket, "site_name");
  out["user_id"] = id_or_null(ticket, "user_id");
  out["status_id"] = id_or_null(ticket, "status_id");
  out["priority_id"] = id_or_null(ticket, "priority_id");
  out["type_id"] = id_or_null(ticket, "tickettype_id");
  out["agent_id"] = id_or_null(ticket, "agent_id");
  out["team"] = string_or_null(ticket, "team");
  out["opened_at"] = string_or_null(ticket, "dateoccurred");
  if (include_raw) out["raw"] = ticket;
  return out;
}

json normalize_action(const json& action, bool include_raw) {
  json out = json::object();
  out["id"] = id_or_null(action, "id");
  out["ticket_id"] = id_or_null(action, "ticket_id");
  out["note"] = string_or_null(action, "note");
  out["outcome"] = string_or_null(action, "outcome");
  out["hidden_from_user"] =
      action.contains("hiddenfromuser") && action.at("hiddenfromuser").is_boolean()
          ? action.at("hiddenfromuser")
          : json(false);
  out["created_at"] = string_or_null(action, "datetime");
  if (include_raw) out["raw"] = action;
  return out;
}

json normalize_client(const json& client, const OrgSettings& settings, bool include_raw) {
  json out = json::object();
  const json id = id_or_null(client, "id");
  out["id"] = id;
  out["client_id"] = nullptr;
  if (id.is_number_integer()) {
    if (auto hub = settings.hub_client(id.get<std::int64_t>())) out["client_id"] = *hub;
  }
  out["name"] = string_or_null(client, "name");
  out["inactive"] = client.contains("inactive") && client.at("inactive").is_boolean()
                        ? client.at("inactive")
                        : json(false);
  if (include_raw) out["raw"] = client;
  return out;
}

std::string vendor_message(std::string_view body, std::string_view redact) {
  std::string text;
  const json parsed = json::parse(body, nullptr, false);
  if (parsed.is_object()) {
    for (const char* key : {"Message", "message", "error_description", "error", "title"}) {
      if (parsed.contains(key) && parsed.at(key).is_string()) {
        text = parsed.at(key).get<std::string>();
        break;
      }
    }
  } else if (parsed.is_string()) {
    text = parsed.get<std::string>();
  }
  if (text.empty() && !parsed.is_object()) text = std::string(body);
  for (char& c : text) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
  }
  if (!redact.empty()) {
    for (auto at = text.find(redact); at != std::string::npos; at = text.find(redact)) {
      text.replace(at, redact.size(), "[redacted]");
    }
  }
  text.erase(0, text.find_first_not_of(' '));
  text.erase(text.find_last_not_of(' ') + 1);
  if (text.size() > 300) {
    text.resize(300);
    // Do not end in the middle of a UTF-8 sequence.
    while (!text.empty() && (static_cast<unsigned char>(text.back()) & 0xC0) == 0x80)
      text.pop_back();
    if (!text.empty() && (static_cast<unsigned char>(text.back()) & 0x80) != 0) text.pop_back();
    text += "...";
  }
  return text;
}

Error map_status(std::uint32_t status, std::string_view body, bool writing,
                 std::string_view redact) {
  const std::string message = vendor_message(body, redact);
  const std::string suffix = message.empty() ? std::string() : ": " + message;
  const std::string code = std::to_string(status);
  if (status == 400 || status == 422) {
    if (writing) return {Status::kInvalidInput, "HaloPSA refused the request" + suffix};
    return {Status::kUpstreamError, "HaloPSA answered " + code + suffix};
  }
  if (status == 401) {
    return {Status::kUpstreamUnauthorized,
            "HaloPSA refused the access token (401); check the API application's client id, "
            "secret and tenant"};
  }
  if (status == 403) {
    return {Status::kUpstreamUnauthorized,
            "HaloPSA refused the request (403): the API application lacks the permission or "
            "scope for it (e.g. read:tickets, edit:tickets, read:customers)" +
                suffix};
  }
  if (status == 404) return {Status::kNotFound, "HaloPSA has no such record" + suffix};
  if (status == 409) return {Status::kConflict, "HaloPSA reported a conflict" + suffix};
  if (status == 408 || status == 504) {
    return {Status::kUpstreamUnavailable, "HaloPSA timed out (" + code + ")"};
  }
  if (status >= 500) return {Status::kUpstreamUnavailable, "HaloPSA is unavailable (" + code + ")"};
  return {Status::kUpstreamError, "HaloPSA answered " + code + suffix};
}

Error map_token_error(std::uint32_t status, std::string_view body, const OrgSettings& settings) {
  const std::string code = std::to_string(status);
  if (status >= 500) {
    return {Status::kUpstreamUnavailable,
            "HaloPSA's authorisation server is unavailable (" + code + ")"};
  }
  std::string oauth_error;
  const json parsed = json::parse(body, nullptr, false);
  if (parsed.is_object() && parsed.contains("error") && parsed.at("error").is_string()) {
    oauth_error = safe_code(parsed.at("error").get<std::string>());
  }
  if (status == 400 || status == 401 || status == 403) {
    std::string what = oauth_error.empty() ? code : oauth_error + ", " + code;
    return {Status::kUpstreamUnauthorized,
            "HaloPSA refused the client credentials (" + what + "); check client_id, tenant, " +
                "scope and the secret " + settings.client_secret_secret};
  }
  return {Status::kUpstreamError,
          "HaloPSA's authorisation server answered " + code +
              (oauth_error.empty() ? std::string() : " (" + oauth_error + ")")};
}

Error map_transport_error(const Error& error, std::chrono::milliseconds timeout) {
  switch (error.status) {
    case Status::kTimeout:
      return {Status::kTimeout,
              "HaloPSA did not answer within " + std::to_string(timeout.count()) + " ms"};
    case Status::kForbidden:
      return {Status::kForbidden,
              "the hub does not let psa-halopsa reach this HaloPSA address: " + error.message};
    case Status::kUpstreamUnavailable:
      return {Status::kUpstreamUnavailable, "HaloPSA is unreachable: " + error.message};
    default:
      return error;
  }
}

}  // namespace helm::halopsa
