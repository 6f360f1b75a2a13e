#include "vendor.hpp"

#include <algorithm>
#include <cctype>
#include <string>
#include <utility>
#include <vector>

namespace helm::tacticalrmm {

using nlohmann::json;
using sdk::Error;
using sdk::Status;

namespace {

constexpr std::size_t kMaxQuoted = 300;  // vendor text quoted in an error message, at most

const json* member(const json& object, const char* name) {
  if (!object.is_object()) return nullptr;
  const auto found = object.find(name);
  return found == object.end() || found->is_null() ? nullptr : &*found;
}

json string_or_null(const json& object, const char* name) {
  const json* value = member(object, name);
  return value != nullptr && value->is_string() ? *value : json(nullptr);
}

json bool_or_null(const json& object, const char* name) {
  const json* value = member(object, name);
  return value != nullptr && value->is_boolean() ? *value : json(nullptr);
}

std::string lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

std::string trim(std::string_view text) {
  const auto first = text.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) return {};
  const auto last = text.find_last_not_of(" \t\r\n");
  return std::string(text.substr(first, last - first + 1));
}

// Tactical RMM sends local_ips as one comma-separated string ("10.0.0.5, 192.168.1.9").
json ip_list(const json* value) {
  json out = json::array();
  if (value == nullptr) return out;
  if (value->is_array()) {
    for (const auto& item : *value)
      if (item.is_string() && !item.get<std::string>().empty()) out.push_back(item);
    return out;
  }
  if (!value->is_string()) return out;
  const std::string text = value->get<std::string>();
  std::size_t start = 0;
  while (start <= text.size()) {
    const auto comma = text.find(',', start);
    const std::string item = trim(std::string_view(text).substr(
        start, comma == std::string::npos ? std::string::npos : comma - start));
    if (!item.empty()) out.push_back(item);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

std::string quoted(std::string_view text, std::string_view secret) {
  return scrub(std::string(text), secret);
}

}  // namespace

std::string id_string(const json& value) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_number_integer()) return value.dump();
  return {};
}

sdk::Result<OrgSettings> read_settings(const sdk::Config& config) {
  OrgSettings settings;
  const auto base = config.find<std::string>("base_url");
  if (!base || base->rfind("https://", 0) != 0 || base->size() <= 8) {
    return Error{Status::kInvalidInput,
                 "the organization's Tactical RMM settings need \"base_url\", the https:// URL of "
                 "its API (e.g. https://api.example.com); an admin sets it with PUT "
                 "/api/v1/orgs/{org}/plugins/rmm-tacticalrmm/config"};
  }
  settings.base_url = *base;
  while (!settings.base_url.empty() && settings.base_url.back() == '/')
    settings.base_url.pop_back();
  settings.api_key_secret =
      config.get_or<std::string>("api_key_secret", std::string(settings.api_key_secret));
  if (const auto map = config.find<json>("client_map")) {
    if (!map->is_object()) {
      return Error{Status::kInvalidInput, "the setting \"client_map\" must be an object"};
    }
    for (const auto& [hub_id, vendor] : map->items()) {
      const std::string vendor_id = id_string(vendor);
      if (vendor_id.empty()) {
        return Error{Status::kInvalidInput,
                     "client_map[\"" + hub_id + "\"] must be a Tactical RMM client id (a number)"};
      }
      settings.hub_to_vendor[hub_id] = vendor_id;
      settings.vendor_to_hub[vendor_id] = hub_id;
    }
  }
  return settings;
}

std::string url_encode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(c);
    } else {
      out.push_back('%');
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 0x0F]);
    }
  }
  return out;
}

std::string make_url(const std::string& base, std::string_view path, std::string_view query) {
  std::string url = base;
  url += path;
  if (!query.empty()) {
    url += '?';
    url += query;
  }
  return url;
}

std::optional<Directory> parse_directory(const json& clients) {
  if (!clients.is_array()) return std::nullopt;
  Directory directory;
  for (const auto& client : clients) {
    if (!client.is_object()) return std::nullopt;
    const std::string id = id_string(client.value("id", json()));
    const json name = string_or_null(client, "name");
    if (id.empty() || !name.is_string()) return std::nullopt;
    directory.client_id_by_name[name.get<std::string>()] = id;
    directory.client_name_by_id[id] = name.get<std::string>();
    const json* sites = member(client, "sites");
    if (sites == nullptr || !sites->is_array()) continue;
    for (const auto& site : *sites) {
      const std::string site_id = id_string(site.value("id", json()));
      const json site_name = string_or_null(site, "name");
      if (site_id.empty() || !site_name.is_string()) continue;
      directory.sites[site_id] = {site_name.get<std::string>(), id};
    }
  }
  return directory;
}

json normalize_agent(const json& agent, const Directory& directory, const OrgSettings& settings,
                     bool include_raw) {
  // List rows carry client_name/site_name; the detail object carries client (a name), site (the
  // site's id) and site_name. Neither carries the client's id: the directory supplies it.
  json client_name = string_or_null(agent, "client_name");
  if (client_name.is_null()) client_name = string_or_null(agent, "client");
  const json site_name = string_or_null(agent, "site_name");
  std::string site_id;
  if (const json* site = member(agent, "site"); site != nullptr && site->is_number_integer())
    site_id = site->dump();

  std::string vendor_client;
  if (!site_id.empty()) {
    if (const auto found = directory.sites.find(site_id); found != directory.sites.end())
      vendor_client = found->second.client_id;
  }
  if (vendor_client.empty() && client_name.is_string()) {
    if (const auto found = directory.client_id_by_name.find(client_name.get<std::string>());
        found != directory.client_id_by_name.end())
      vendor_client = found->second;
  }
  if (site_id.empty() && site_name.is_string() && !vendor_client.empty()) {
    for (const auto& [id, site] : directory.sites) {
      if (site.client_id == vendor_client && site.name == site_name.get<std::string>()) {
        site_id = id;
        break;
      }
    }
  }
  json hub_client = nullptr;
  if (!vendor_client.empty()) {
    if (const auto found = settings.vendor_to_hub.find(vendor_client);
        found != settings.vendor_to_hub.end())
      hub_client = found->second;
  }
  json logged_in = string_or_null(agent, "logged_username");
  if (logged_in.is_null()) logged_in = string_or_null(agent, "logged_in_username");

  json out = {
      {"id", string_or_null(agent, "agent_id")},
      {"hostname", string_or_null(agent, "hostname")},
      {"client_id", hub_client},
      {"vendor_client_id", vendor_client.empty() ? json(nullptr) : json(vendor_client)},
      {"client_name", client_name},
      {"vendor_site_id", site_id.empty() ? json(nullptr) : json(site_id)},
      {"site_name", site_name},
      {"platform", string_or_null(agent, "plat")},
      {"os", string_or_null(agent, "operating_system")},
      {"status", string_or_null(agent, "status")},
      {"last_seen", string_or_null(agent, "last_seen")},
      {"public_ip", string_or_null(agent, "public_ip")},
      {"local_ips", ip_list(member(agent, "local_ips"))},
      {"needs_reboot", bool_or_null(agent, "needs_reboot")},
      {"maintenance_mode", bool_or_null(agent, "maintenance_mode")},
      {"monitoring_type", string_or_null(agent, "monitoring_type")},
      {"description", string_or_null(agent, "description")},
      {"logged_in_user", logged_in},
      {"agent_version", string_or_null(agent, "version")},
  };
  if (include_raw) out["raw"] = agent;
  return out;
}

json normalize_script(const json& script, bool include_raw) {
  json platforms = json::array();
  if (const json* list = member(script, "supported_platforms"); list != nullptr && list->is_array())
    for (const auto& p : *list)
      if (p.is_string()) platforms.push_back(p);
  json args = json::array();
  if (const json* list = member(script, "args"); list != nullptr && list->is_array())
    for (const auto& a : *list)
      if (a.is_string()) args.push_back(a);
  const json* timeout = member(script, "default_timeout");
  const std::string id = id_string(script.value("id", json()));
  json out = {
      {"id", id.empty() ? json(nullptr) : json(id)},
      {"name", string_or_null(script, "name")},
      {"description", string_or_null(script, "description")},
      {"shell", string_or_null(script, "shell")},
      {"category", string_or_null(script, "category")},
      {"default_timeout",
       timeout != nullptr && timeout->is_number_integer() ? *timeout : json(nullptr)},
      {"platforms", platforms},
      {"default_args", args},
      {"builtin", script.is_object() && script.value("script_type", json()) == "builtin"},
  };
  if (include_raw) out["raw"] = script;
  return out;
}

std::optional<json> command_output(const json& body) {
  if (body.is_string()) return body;
  if (body.is_object() && body.contains("stdout") && body["stdout"].is_string()) {
    return body["stdout"];
  }
  return std::nullopt;
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

std::optional<Error> error_for(const sdk::HttpResponse& response, const Context& context,
                               std::string_view secret) {
  const std::uint32_t code = response.status_code;
  if (code >= 200 && code < 300) return std::nullopt;
  const json body = json::parse(response.body, nullptr, /*allow_exceptions=*/false);
  std::string detail;
  if (body.is_object() && body.contains("detail") && body["detail"].is_string())
    detail = quoted(body["detail"].get<std::string>(), secret);

  if (code == 401) {
    return Error{Status::kUpstreamUnauthorized,
                 "Tactical RMM refused the API key (" +
                     (detail.empty() ? std::string("HTTP 401") : detail) +
                     "); an admin stores a valid key in the organization's vault"};
  }
  if (code == 403) {
    return Error{Status::kUpstreamUnauthorized,
                 "Tactical RMM refused " + context.action +
                     ": the API key's user lacks the permission (" +
                     (detail.empty() ? std::string("HTTP 403") : detail) + ")"};
  }
  if (code == 404) return Error{Status::kNotFound, context.not_found};
  if (code == 429) {
    std::string seconds = "30";
    if (const std::string* after = response.header("Retry-After"); after != nullptr) {
      const std::string value = trim(*after);
      if (!value.empty() && value.size() < 7 &&
          std::all_of(value.begin(), value.end(), [](unsigned char c) { return std::isdigit(c); }))
        seconds = value;
    }
    return Error{Status::kUpstreamRateLimited,
                 "Tactical RMM is rate limiting (retry after " + seconds + " s)"};
  }
  if (code >= 500) {
    return Error{Status::kUpstreamUnavailable, "Tactical RMM is unavailable (HTTP " +
                                                   std::to_string(code) + " while " +
                                                   context.action + ")"};
  }
  if (code >= 300 && code < 400) {
    const std::string* location = response.header("Location");
    return Error{Status::kUpstreamError,
                 "Tactical RMM redirected the request (HTTP " + std::to_string(code) +
                     (location != nullptr ? " to " + quoted(*location, secret) : std::string()) +
                     "); check the base_url setting"};
  }
  if (code == 400) {
    if (body.is_string()) {
      const std::string text = body.get<std::string>();
      if (lower(text).find("unable to contact the agent") != std::string::npos) {
        return Error{Status::kUpstreamUnavailable, std::string(kOfflineMessage)};
      }
      return Error{Status::kUpstreamError,
                   "Tactical RMM refused " + context.action + ": " + quoted(text, secret)};
    }
    if (!detail.empty()) {
      return Error{Status::kUpstreamError,
                   "Tactical RMM refused " + context.action + ": " + detail};
    }
    if (body.is_object() && !body.empty()) {
      // Django REST Framework validation: {"field": ["message", ...], ...}.
      std::string fields;
      for (const auto& [field, messages] : body.items()) {
        std::string text;
        if (messages.is_array()) {
          for (const auto& m : messages) {
            if (!m.is_string()) continue;
            if (!text.empty()) text += " ";
            text += m.get<std::string>();
          }
        } else if (messages.is_string()) {
          text = messages.get<std::string>();
        }
        if (!fields.empty()) fields += "; ";
        fields += field + ": " + (text.empty() ? std::string("invalid") : text);
      }
      return Error{Status::kInvalidInput,
                   "Tactical RMM refused the input (" + quoted(fields, secret) + ")"};
    }
  }
  return Error{Status::kUpstreamError,
               "Tactical RMM answered HTTP " + std::to_string(code) + " while " + context.action};
}

}  // namespace helm::tacticalrmm
