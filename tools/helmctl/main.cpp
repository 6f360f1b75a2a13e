// helmctl: a small command-line client over Helm Hub's REST API, for admins and their scripts.
//
// Human output (tables, key/value lines) goes to stdout, `-o json` prints the API's JSON instead;
// errors go to stderr with the problem's status, title, detail and field errors.
// Exit codes: 0 ok, 1 API error, 2 usage error, 3 connection or TLS error.
#include <curl/curl.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using nlohmann::json;
namespace fs = std::filesystem;

constexpr int kOk = 0;
constexpr int kApiError = 1;
constexpr int kUsage = 2;
constexpr int kConnection = 3;

/// Ends the command with an exit code after its message was printed.
struct Exit {
  int code;
};

[[noreturn]] void usage_error(const std::string& message) {
  std::cerr << "helmctl: " << message << "\nRun 'helmctl --help' for usage.\n";
  throw Exit{kUsage};
}

// ---------------------------------------------------------------------------------------------
// Command line

/// Flags that take no value.
const std::set<std::string> kBoolFlags = {"help", "password-stdin", "wait"};

struct Args {
  std::vector<std::string> positional;
  std::map<std::string, std::string> flags;  ///< without the leading dashes

  bool has(const std::string& name) const { return flags.contains(name); }
  std::optional<std::string> get(const std::string& name) const {
    auto it = flags.find(name);
    if (it == flags.end()) return std::nullopt;
    return it->second;
  }
};

Args parse_args(int argc, char** argv) {
  Args args;
  bool only_positional = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (only_positional || a.size() < 2 || a[0] != '-') {
      args.positional.push_back(a);
      continue;
    }
    if (a == "--") {
      only_positional = true;
      continue;
    }
    std::string name;
    std::optional<std::string> value;
    if (a == "-h") {
      name = "help";
    } else if (a == "-o") {
      name = "output";
    } else if (a.rfind("--", 0) == 0) {
      name = a.substr(2);
      if (auto eq = name.find('='); eq != std::string::npos) {
        value = name.substr(eq + 1);
        name = name.substr(0, eq);
      }
    } else {
      usage_error("unknown flag " + a);
    }
    if (kBoolFlags.contains(name)) {
      if (value) usage_error("--" + name + " takes no value");
      args.flags[name] = "true";
      continue;
    }
    if (!value) {
      if (i + 1 >= argc) usage_error("--" + name + " needs a value");
      value = argv[++i];
    }
    args.flags[name] = *value;
  }
  return args;
}

const char* kUsageText = R"(helmctl - command-line client for Helm Hub's REST API

Usage: helmctl [global flags] <group> <command> [args] [flags]

Global flags:
  --server URL        hub API URL, e.g. https://hub.example:8443 (env HELM_SERVER)
  --ca-file FILE      CA certificate to verify the hub with (env HELM_CA_FILE)
  --pin SHA256        pin the hub's public key instead (sha256//BASE64 or hex of the SPKI hash)
  --token TOKEN       bearer token (env HELM_TOKEN; else the one saved by login)
  --config-dir DIR    where login saves the token (default ~/.config/helmctl)
  --org ID            organization (default: the caller's, from GET /api/v1/me)
  -o, --output FMT    table (default) or json

Commands:
  login --email E [--password-stdin] [--totp CODE]   log in and save the token
  logout                                             end the session, forget the token
  whoami                                             who the token belongs to
  plugins      list | get | install | uninstall | enable | disable | reload | config |
               validate | schema | org-enable | org-disable | org-config | grants | invoke
  secrets      put NAME (value on stdin) | list | delete NAME
  clients      create NAME | list
  sites        create CLIENT NAME | list CLIENT
  enrollment-keys  create --client ID --site ID [--group ID] [--uses N] [--expires-in S] |
                   list | revoke ID
  devices      list | delete ID
  commands     run DEVICE KIND [--args-json JSON] [--deadline S] [--wait] | get ID
  workspaces   open CLIENT | list | close WORKSPACE   [--plugin NAME] (default kasm)

Run 'helmctl <group> --help' for a group's commands.
Exit codes: 0 ok, 1 API error, 2 usage error, 3 connection/TLS error.
)";

const std::map<std::string, std::string> kGroupUsage = {
    {"login",
     "helmctl login --email E [--password-stdin] [--totp CODE]\n"
     "  Reads the password from stdin (prompting without echo on a terminal), saves the token\n"
     "  in <config-dir>/token (mode 0600) and prints who you are.\n"},
    {"logout", "helmctl logout\n  Ends the session on the hub and removes the saved token.\n"},
    {"whoami", "helmctl whoami\n  Prints the technician the token belongs to.\n"},
    {"plugins",
     "helmctl plugins <command>\n"
     "  list                                  installed plugins and their state\n"
     "  get NAME                              one plugin (hub operators)\n"
     "  install BUNDLE                        upload a signed bundle (helm-plugin pack);\n"
     "                                        it is installed disabled\n"
     "  uninstall NAME                        stop and remove a plugin and its settings\n"
     "  enable NAME | disable NAME            switch a plugin hub-wide\n"
     "  reload NAME                           reload a plugin from disk\n"
     "  config NAME [--set-json JSON | --file F] [--if-match ETAG]\n"
     "                                        show (with ETag) or replace hub-wide config\n"
     "  validate NAME --file F                dry-run a hub-wide config\n"
     "  schema NAME                           config and operation schemas\n"
     "  org-enable NAME | org-disable NAME    switch a plugin for your organization\n"
     "  org-config NAME [--set-json JSON | --file F] [--if-match ETAG]\n"
     "                                        show or replace the organization's settings\n"
     "  grants NAME [--set a,b,c]             show or replace the secrets the plugin may use\n"
     "  invoke NAME OP [--input-json JSON]    run a plugin operation\n"},
    {"secrets",
     "helmctl secrets <command>\n"
     "  put NAME          store a new version; the value is read from stdin (one trailing\n"
     "                    newline is dropped), never from the command line\n"
     "  list              names, versions, timestamps (never values)\n"
     "  delete NAME       delete all versions\n"},
    {"clients", "helmctl clients <command>\n  create NAME\n  list\n"},
    {"sites", "helmctl sites <command>\n  create CLIENT NAME\n  list CLIENT\n"},
    {"enrollment-keys",
     "helmctl enrollment-keys <command>\n"
     "  create --client ID --site ID [--group ID] [--uses N] [--expires-in S]\n"
     "                    prints the key once; it cannot be shown again\n"
     "  list\n"
     "  revoke ID\n"},
    {"devices", "helmctl devices <command>\n  list\n  delete ID\n"},
    {"commands",
     "helmctl commands <command>\n"
     "  run DEVICE KIND [--args-json JSON] [--deadline S] [--wait]\n"
     "                    queue a command (ping, inventory, run_script); --wait polls until it\n"
     "                    is done or expired and prints the result\n"
     "  get ID\n"},
    {"workspaces",
     "helmctl workspaces <command> [--plugin NAME]\n"
     "  open CLIENT       open (or return this session's) disposable remote workspace for a\n"
     "                    client (hub client id) and print its URL; the image is the one your\n"
     "                    organization chose for the client\n"
     "  list              the workspaces of this login session\n"
     "  close WORKSPACE   destroy one now (all of them go when the session ends: logout,\n"
     "                    idle or absolute timeout)\n"
     "  --plugin NAME     the remote-session plugin (default kasm); calls POST\n"
     "                    /api/v1/orgs/{org}/plugins/NAME/ops/workspaces.open|list|close\n"
     "  Workspaces belong to the hub session of the token: use the same login (the token\n"
     "  'helmctl login' saved) to list or close what you opened.\n"},
};

// ---------------------------------------------------------------------------------------------
// HTTP

struct Response {
  long status = 0;
  std::string body;
  std::map<std::string, std::string> headers;  ///< lower-case names
};

size_t on_body(char* data, size_t size, size_t n, void* user) {
  static_cast<std::string*>(user)->append(data, size * n);
  return size * n;
}

size_t on_header(char* data, size_t size, size_t n, void* user) {
  std::string line(data, size * n);
  auto colon = line.find(':');
  if (colon != std::string::npos) {
    std::string name = line.substr(0, colon);
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    std::string value = line.substr(colon + 1);
    auto first = value.find_first_not_of(" \t");
    auto last = value.find_last_not_of(" \t\r\n");
    value = first == std::string::npos ? std::string() : value.substr(first, last - first + 1);
    (*static_cast<std::map<std::string, std::string>*>(user))[name] = value;
  }
  return size * n;
}

std::string url_encode(const std::string& s) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
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

/// "sha256//BASE64" as libcurl wants it, from that form or from 64 hex digits.
std::string pin_for_curl(const std::string& pin) {
  if (pin.rfind("sha256//", 0) == 0) return pin;
  std::string hex;
  for (char c : pin) {
    if (c != ':') hex += c;
  }
  if (hex.size() != 64 ||
      !std::all_of(hex.begin(), hex.end(), [](unsigned char c) { return std::isxdigit(c) != 0; })) {
    usage_error("--pin needs sha256//BASE64 or the 64 hex digits of the key's SHA-256");
  }
  std::string bytes;
  for (size_t i = 0; i < 64; i += 2)
    bytes += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
  static const char* kB64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const unsigned v = static_cast<unsigned char>(bytes[i]) << 16 |
                       static_cast<unsigned char>(bytes[i + 1]) << 8 |
                       static_cast<unsigned char>(bytes[i + 2]);
    out += kB64[(v >> 18) & 63];
    out += kB64[(v >> 12) & 63];
    out += kB64[(v >> 6) & 63];
    out += kB64[v & 63];
  }
  // 32 bytes: two left over.
  const unsigned v =
      static_cast<unsigned char>(bytes[i]) << 16 | static_cast<unsigned char>(bytes[i + 1]) << 8;
  out += kB64[(v >> 18) & 63];
  out += kB64[(v >> 12) & 63];
  out += kB64[(v >> 6) & 63];
  out += '=';
  return "sha256//" + out;
}

struct Client {
  std::string server;
  std::string ca_file;
  std::string pin;
  std::string token;

  Response request(const std::string& method, const std::string& path,
                   const std::optional<json>& body = std::nullopt,
                   const std::vector<std::string>& extra_headers = {}) const {
    return send(method, path, body ? std::optional<std::string>(body->dump()) : std::nullopt,
                "application/json", extra_headers);
  }

  /// A request whose body is `payload` (when given) of `content_type`.
  Response send(const std::string& method, const std::string& path,
                const std::optional<std::string>& body, const std::string& content_type,
                const std::vector<std::string>& extra_headers = {}) const {
    if (server.empty()) usage_error("no server: give --server URL or set HELM_SERVER");
    CURL* curl = curl_easy_init();
    if (curl == nullptr) {
      std::cerr << "helmctl: cannot initialise libcurl\n";
      throw Exit{kConnection};
    }
    Response r;
    std::string url = server;
    while (!url.empty() && url.back() == '/')
      url.pop_back();
    url += path;
    const std::string payload = body ? *body : std::string();
    curl_slist* headers = nullptr;
    headers = curl_slist_append(headers, "Accept: application/json, application/problem+json");
    if (body) headers = curl_slist_append(headers, ("Content-Type: " + content_type).c_str());
    if (!token.empty())
      headers = curl_slist_append(headers, ("Authorization: Bearer " + token).c_str());
    for (const auto& h : extra_headers)
      headers = curl_slist_append(headers, h.c_str());
    curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method.c_str());
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, 10'000L);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 120'000L);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "https,http");
    if (body) {
      curl_easy_setopt(curl, CURLOPT_POSTFIELDS, payload.c_str());
      curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, static_cast<long>(payload.size()));
    }
    if (!ca_file.empty()) curl_easy_setopt(curl, CURLOPT_CAINFO, ca_file.c_str());
    std::string curl_pin;
    if (!pin.empty()) {
      curl_pin = pin_for_curl(pin);
      curl_easy_setopt(curl, CURLOPT_PINNEDPUBLICKEY, curl_pin.c_str());
      if (ca_file.empty()) {
        // The pinned key is the trust anchor: a self-signed hub certificate is fine.
        curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 0L);
      }
    }
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &r.body);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, &r.headers);
    char error[CURL_ERROR_SIZE] = {0};
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error);
    const CURLcode rc = curl_easy_perform(curl);
    if (rc == CURLE_OK) curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &r.status);
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
    if (rc != CURLE_OK) {
      std::cerr << "helmctl: cannot reach " << server << ": "
                << (error[0] != 0 ? error : curl_easy_strerror(rc)) << "\n";
      throw Exit{kConnection};
    }
    return r;
  }
};

/// Prints a problem (or whatever the hub answered) to stderr and ends with exit code 1.
[[noreturn]] void fail_with(const Response& r) {
  const json p = json::parse(r.body, nullptr, false);
  std::cerr << "Error: HTTP " << r.status;
  if (p.is_object()) {
    if (p.contains("title") && p["title"].is_string())
      std::cerr << " " << p["title"].get<std::string>();
    std::cerr << "\n";
    if (p.contains("detail") && p["detail"].is_string())
      std::cerr << "  " << p["detail"].get<std::string>() << "\n";
    if (p.contains("errors") && p["errors"].is_array()) {
      for (const auto& e : p["errors"]) {
        if (!e.is_object()) continue;
        std::cerr << "  - " << e.value("field", std::string("?")) << ": "
                  << e.value("message", e.value("detail", std::string())) << "\n";
      }
    }
    if (r.status == 429) {
      auto it = r.headers.find("retry-after");
      if (it != r.headers.end()) std::cerr << "  retry after " << it->second << " s\n";
    }
  } else {
    std::cerr << "\n";
    if (!r.body.empty()) std::cerr << "  " << r.body.substr(0, 500) << "\n";
  }
  throw Exit{kApiError};
}

/// The JSON of a successful answer; any other status ends the command with the problem.
json expect(const Response& r, std::initializer_list<long> ok = {200}) {
  if (std::find(ok.begin(), ok.end(), r.status) == ok.end()) fail_with(r);
  if (r.body.empty()) return json();
  json j = json::parse(r.body, nullptr, false);
  if (j.is_discarded()) {
    std::cerr << "helmctl: the hub answered HTTP " << r.status << " with something not JSON\n";
    throw Exit{kApiError};
  }
  return j;
}

// ---------------------------------------------------------------------------------------------
// Output

std::string cell(const json& v) {
  if (v.is_null()) return "-";
  if (v.is_string()) return v.get<std::string>().empty() ? "-" : v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "yes" : "no";
  return v.dump();
}

struct Column {
  std::string header;
  std::string key;
};

void print_table(const json& items, const std::vector<Column>& columns) {
  std::vector<std::vector<std::string>> rows;
  std::vector<size_t> width;
  for (const auto& c : columns)
    width.push_back(c.header.size());
  for (const auto& item : items) {
    std::vector<std::string> row;
    for (size_t i = 0; i < columns.size(); ++i) {
      std::string text = item.is_object() && item.contains(columns[i].key)
                             ? cell(item[columns[i].key])
                             : std::string("-");
      width[i] = std::max(width[i], text.size());
      row.push_back(std::move(text));
    }
    rows.push_back(std::move(row));
  }
  auto print_row = [&](const std::vector<std::string>& row) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(width[i] - row[i].size() + 2, ' ');
    }
    std::cout << line << "\n";
  };
  std::vector<std::string> header;
  for (const auto& c : columns)
    header.push_back(c.header);
  print_row(header);
  for (const auto& row : rows)
    print_row(row);
}

void print_fields(const json& obj, const std::vector<Column>& fields) {
  size_t width = 0;
  for (const auto& f : fields)
    width = std::max(width, f.header.size());
  for (const auto& f : fields) {
    if (!obj.contains(f.key)) continue;
    const json& v = obj[f.key];
    std::cout << f.header << ":" << std::string(width - f.header.size() + 1, ' ')
              << (v.is_object() || v.is_array() ? v.dump() : cell(v)) << "\n";
  }
}

// ---------------------------------------------------------------------------------------------
// Context

struct Ctx {
  Args args;
  Client client;
  bool json_out = false;
  fs::path config_dir;
  std::optional<std::string> org_cache;

  std::string org() {
    if (org_cache) return *org_cache;
    if (auto o = args.get("org")) {
      org_cache = *o;
    } else {
      const json me = expect(client.request("GET", "/api/v1/me"));
      org_cache = me.value("org_id", std::string());
    }
    return *org_cache;
  }
  std::string org_path() { return "/api/v1/orgs/" + url_encode(org()); }

  /// The n-th positional after the group and command (0-based), or a usage error.
  std::string arg(size_t n, const std::string& what) const {
    if (args.positional.size() <= n + 2) usage_error("missing " + what);
    return args.positional[n + 2];
  }
  void no_more_args(size_t n) const {
    if (args.positional.size() > n + 2)
      usage_error("unexpected argument " + args.positional[n + 2]);
  }
  /// Prints the raw JSON with -o json, else calls `human`.
  template <typename F>
  void show(const json& j, F human) const {
    if (json_out) {
      std::cout << j.dump(2) << "\n";
    } else {
      human();
    }
  }
};

fs::path default_config_dir() {
  if (const char* x = std::getenv("XDG_CONFIG_HOME"); x != nullptr && *x != 0)
    return fs::path(x) / "helmctl";
  if (const char* h = std::getenv("HOME"); h != nullptr && *h != 0)
    return fs::path(h) / ".config" / "helmctl";
  return fs::path(".helmctl");
}

std::optional<std::string> read_saved_token(const fs::path& dir) {
  std::ifstream in(dir / "token");
  if (!in) return std::nullopt;
  std::string token;
  std::getline(in, token);
  while (!token.empty() && (token.back() == '\r' || token.back() == ' '))
    token.pop_back();
  if (token.empty()) return std::nullopt;
  return token;
}

/// Writes the token to <dir>/token with mode 0600: a temporary file, fsync, rename.
void save_token(const fs::path& dir, const std::string& token) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  ::chmod(dir.c_str(), 0700);
  const fs::path tmp = dir / (".token." + std::to_string(::getpid()));
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) {
    std::cerr << "helmctl: cannot write " << tmp << ": " << std::strerror(errno) << "\n";
    throw Exit{kApiError};
  }
  ::fchmod(fd, 0600);
  const std::string data = token + "\n";
  bool ok = ::write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size());
  ok = ok && ::fsync(fd) == 0;
  ok = ::close(fd) == 0 && ok;
  if (!ok || ::rename(tmp.c_str(), (dir / "token").c_str()) != 0) {
    std::cerr << "helmctl: cannot save the token in " << dir << ": " << std::strerror(errno)
              << "\n";
    ::unlink(tmp.c_str());
    throw Exit{kApiError};
  }
}

std::string read_stdin_all() {
  std::ostringstream s;
  s << std::cin.rdbuf();
  return s.str();
}

std::string drop_one_newline(std::string s) {
  if (!s.empty() && s.back() == '\n') s.pop_back();
  if (!s.empty() && s.back() == '\r') s.pop_back();
  return s;
}

std::string read_password(bool from_stdin) {
  if (!from_stdin && ::isatty(STDIN_FILENO) != 0) {
    std::cerr << "Password: " << std::flush;
    termios old{};
    ::tcgetattr(STDIN_FILENO, &old);
    termios quiet = old;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    ::tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
    std::string line;
    std::getline(std::cin, line);
    ::tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
    std::cerr << "\n";
    return drop_one_newline(line);
  }
  std::string line;
  std::getline(std::cin, line);
  return drop_one_newline(line);
}

json parse_json_flag(const std::string& flag, const std::string& text) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded()) usage_error(flag + " is not valid JSON");
  return j;
}

/// The JSON given by --set-json or --file, if either.
std::optional<json> json_input(const Ctx& c, const std::string& inline_flag = "set-json") {
  auto inline_text = c.args.get(inline_flag);
  auto file = c.args.get("file");
  if (inline_text && file) usage_error("give --" + inline_flag + " or --file, not both");
  if (inline_text) return parse_json_flag("--" + inline_flag, *inline_text);
  if (file) {
    std::ifstream in(*file);
    if (!in) usage_error("cannot read " + *file);
    std::ostringstream s;
    s << in.rdbuf();
    return parse_json_flag(*file, s.str());
  }
  return std::nullopt;
}

long int_flag(const Ctx& c, const std::string& name) {
  const std::string v = *c.args.get(name);
  try {
    size_t used = 0;
    long n = std::stol(v, &used);
    if (used == v.size()) return n;
  } catch (...) {
  }
  usage_error("--" + name + " needs a whole number");
}

/// Every item of a paged list, following next_cursor.
json list_all(Ctx& c, const std::string& path) {
  json items = json::array();
  std::string cursor;
  for (int page = 0; page < 10'000; ++page) {
    std::string url = path + (path.find('?') == std::string::npos ? "?" : "&") + "limit=500";
    if (!cursor.empty()) url += "&cursor=" + url_encode(cursor);
    const json j = expect(c.client.request("GET", url));
    if (j.is_object() && j.contains("items") && j["items"].is_array()) {
      for (const auto& item : j["items"])
        items.push_back(item);
    }
    if (!j.is_object() || !j.contains("next_cursor") || !j["next_cursor"].is_string()) break;
    cursor = j["next_cursor"].get<std::string>();
    if (cursor.empty()) break;
  }
  return json{{"items", items}, {"next_cursor", nullptr}};
}

// ---------------------------------------------------------------------------------------------
// Commands

const std::vector<Column> kMeFields = {
    {"Email", "email"}, {"ID", "id"}, {"Organization", "org_id"}, {"Role", "role"}};

int cmd_login(Ctx& c) {
  auto email = c.args.get("email");
  if (!email) usage_error("login needs --email");
  const std::string password = read_password(c.args.has("password-stdin"));
  if (password.empty()) usage_error("empty password");
  json body = {{"email", *email}, {"password", password}};
  if (auto totp = c.args.get("totp")) body["totp"] = *totp;
  Client anonymous = c.client;
  anonymous.token.clear();
  const json j = expect(anonymous.request("POST", "/api/v1/auth/login", body));
  if (!j.contains("token") || !j["token"].is_string()) {
    std::cerr << "helmctl: the login answer has no token\n";
    return kApiError;
  }
  save_token(c.config_dir, j["token"].get<std::string>());
  json shown = j;
  shown.erase("token");  // saved, not printed
  c.show(shown, [&] {
    const json t = j.value("technician", json::object());
    std::cout << "Logged in as " << t.value("email", *email) << " (" << t.value("role", "?")
              << ", organization " << t.value("org_id", "?") << ")\n";
    if (j.contains("expires_at"))
      std::cout << "Session expires at " << cell(j["expires_at"]) << "\n";
    std::cout << "Token saved in " << (c.config_dir / "token").string() << "\n";
  });
  return kOk;
}

int cmd_logout(Ctx& c) {
  if (c.client.token.empty()) usage_error("not logged in");
  const Response r = c.client.request("POST", "/api/v1/auth/logout");
  std::error_code ec;
  // The saved token is forgotten even when the hub already considered it gone.
  if (!c.args.has("token") && std::getenv("HELM_TOKEN") == nullptr)
    fs::remove(c.config_dir / "token", ec);
  if (r.status != 200 && r.status != 204 && r.status != 401) fail_with(r);
  if (!c.json_out) std::cout << "Logged out\n";
  return kOk;
}

int cmd_whoami(Ctx& c) {
  const json me = expect(c.client.request("GET", "/api/v1/me"));
  c.show(me, [&] { print_fields(me, kMeFields); });
  return kOk;
}

const std::vector<Column> kPluginColumns = {{"NAME", "name"},       {"VERSION", "version"},
                                            {"KIND", "kind"},       {"STATE", "state"},
                                            {"ENABLED", "enabled"}, {"LAST ERROR", "last_error"}};
const std::vector<Column> kPluginFields = {{"Name", "name"},
                                           {"Version", "version"},
                                           {"Kind", "kind"},
                                           {"ABI", "abi"},
                                           {"State", "state"},
                                           {"Enabled", "enabled"},
                                           {"Signer", "signer"},
                                           {"Last error", "last_error"},
                                           {"Description", "description"},
                                           {"Config", "config"},
                                           {"Config version", "config_version"},
                                           {"Enabled for org", "enabled_for_org"},
                                           {"Grants", "grants"}};

int cmd_plugins(Ctx& c) {
  const std::string sub = c.args.positional.at(1);
  auto plugin_path = [&](const std::string& name) { return "/api/v1/plugins/" + url_encode(name); };
  auto org_plugin_path = [&](const std::string& name) {
    return c.org_path() + "/plugins/" + url_encode(name);
  };
  if (sub == "list") {
    c.no_more_args(0);
    const json j = list_all(c, "/api/v1/plugins");
    c.show(j, [&] { print_table(j["items"], kPluginColumns); });
    return kOk;
  }
  if (sub == "get") {
    const std::string name = c.arg(0, "plugin name");
    const Response r = c.client.request("GET", plugin_path(name));
    const json j = expect(r);
    c.show(j, [&] {
      print_fields(j, kPluginFields);
      if (auto it = r.headers.find("etag"); it != r.headers.end())
        std::cout << "ETag: " << it->second << "\n";
      if (j.contains("health")) std::cout << "Health: " << j["health"].dump() << "\n";
    });
    return kOk;
  }
  if (sub == "enable" || sub == "disable") {
    const std::string name = c.arg(0, "plugin name");
    const json j =
        expect(c.client.request("PATCH", plugin_path(name), json{{"enabled", sub == "enable"}}));
    c.show(j, [&] {
      std::cout << "Plugin " << name << " " << sub << "d hub-wide (state "
                << cell(j.value("state", json())) << ")\n";
    });
    return kOk;
  }
  if (sub == "install") {
    const std::string file = c.arg(0, "bundle file (from helm-plugin pack)");
    std::ifstream in(file, std::ios::binary);
    if (!in) usage_error("cannot read " + file);
    const std::string bundle((std::istreambuf_iterator<char>(in)),
                             std::istreambuf_iterator<char>());
    const json j =
        expect(c.client.send("POST", "/api/v1/plugins", bundle, "application/x-tar"), {201});
    c.show(j, [&] {
      std::cout << "Plugin " << cell(j.value("name", json())) << " "
                << cell(j.value("version", json())) << " installed, "
                << cell(j.value("state", json())) << " (" << cell(j.value("signer", json()))
                << "); enable it with 'helmctl plugins "
                << "enable " << cell(j.value("name", json())) << "'\n";
    });
    return kOk;
  }
  if (sub == "uninstall") {
    const std::string name = c.arg(0, "plugin name");
    expect(c.client.request("DELETE", plugin_path(name)), {204});
    c.show(json{{"name", name}, {"uninstalled", true}},
           [&] { std::cout << "Plugin " << name << " uninstalled\n"; });
    return kOk;
  }
  if (sub == "reload") {
    const std::string name = c.arg(0, "plugin name");
    const json j = expect(c.client.request("POST", plugin_path(name) + "/reload"));
    c.show(j, [&] {
      std::cout << "Plugin " << name << " reloaded (version " << cell(j.value("version", json()))
                << ", state " << cell(j.value("state", json())) << ")\n";
    });
    return kOk;
  }
  if (sub == "config" || sub == "org-config") {
    const std::string name = c.arg(0, "plugin name");
    const bool org = sub == "org-config";
    std::vector<std::string> headers;
    if (auto m = c.args.get("if-match")) headers.push_back("If-Match: " + *m);
    auto input = json_input(c);
    Response r;
    json config;
    if (!input) {
      if (c.args.has("if-match")) usage_error("--if-match goes with --set-json or --file");
      r = c.client.request("GET", org ? org_plugin_path(name) + "/config" : plugin_path(name));
      const json j = expect(r);
      config = org ? j : j.value("config", json::object());
    } else {
      if (!input->is_object()) usage_error("the configuration must be a JSON object");
      r = org ? c.client.request("PUT", org_plugin_path(name) + "/config", *input, headers)
              : c.client.request("PATCH", plugin_path(name), json{{"config", *input}}, headers);
      const json j = expect(r);
      config = org ? j : j.value("config", json::object());
    }
    std::string etag;
    if (auto it = r.headers.find("etag"); it != r.headers.end()) etag = it->second;
    if (c.json_out) {
      std::cout << json{{"config", config}, {"etag", etag}}.dump(2) << "\n";
    } else {
      if (input) std::cout << "Configuration of " << name << " replaced\n";
      std::cout << config.dump(2) << "\nETag: " << etag << "\n";
    }
    return kOk;
  }
  if (sub == "validate") {
    const std::string name = c.arg(0, "plugin name");
    auto input = json_input(c);
    if (!input) usage_error("validate needs --file F (or --set-json JSON)");
    const json j = expect(c.client.request("POST", plugin_path(name) + "/config/validate", *input));
    c.show(j, [&] { std::cout << "Configuration is valid for " << name << "\n"; });
    return kOk;
  }
  if (sub == "schema") {
    const std::string name = c.arg(0, "plugin name");
    const json j = expect(c.client.request("GET", plugin_path(name) + "/schema"));
    c.show(j, [&] {
      std::cout << "Plugin " << cell(j.value("name", json())) << " "
                << cell(j.value("version", json())) << "\n";
      if (j.contains("operations") && j["operations"].is_object()) {
        std::cout << "Operations:\n";
        for (const auto& [op, spec] : j["operations"].items())
          std::cout << "  " << op << "  " << spec.value("description", "") << "\n";
      }
      std::cout << "Config schema: " << j.value("config_schema", json::object()).dump(2) << "\n";
      std::cout << "Org config schema: " << j.value("org_config_schema", json::object()).dump(2)
                << "\n";
    });
    return kOk;
  }
  if (sub == "org-enable" || sub == "org-disable") {
    const std::string name = c.arg(0, "plugin name");
    const bool on = sub == "org-enable";
    const json j = expect(c.client.request("PATCH", org_plugin_path(name), json{{"enabled", on}}));
    c.show(j, [&] {
      std::cout << "Plugin " << name << " " << (on ? "enabled" : "disabled") << " for organization "
                << c.org() << " (state " << cell(j.value("state", json())) << ")\n";
    });
    return kOk;
  }
  if (sub == "grants") {
    const std::string name = c.arg(0, "plugin name");
    json j;
    if (auto set = c.args.get("set")) {
      json secrets = json::array();
      std::stringstream s(*set);
      std::string item;
      while (std::getline(s, item, ',')) {
        if (!item.empty()) secrets.push_back(item);
      }
      j = expect(
          c.client.request("PUT", org_plugin_path(name) + "/grants", json{{"secrets", secrets}}));
    } else {
      j = expect(c.client.request("GET", org_plugin_path(name) + "/grants"));
    }
    c.show(j, [&] {
      std::cout << "SECRET\n";
      for (const auto& s : j.value("secrets", json::array()))
        std::cout << cell(s) << "\n";
    });
    return kOk;
  }
  if (sub == "invoke") {
    const std::string name = c.arg(0, "plugin name");
    const std::string op = c.arg(1, "operation");
    json input = json::object();
    if (auto text = c.args.get("input-json")) input = parse_json_flag("--input-json", *text);
    const json j =
        expect(c.client.request("POST", org_plugin_path(name) + "/ops/" + url_encode(op), input));
    std::cout << j.dump(2) << "\n";  // an operation's output is JSON either way
    return kOk;
  }
  usage_error("unknown plugins command " + sub);
}

int cmd_secrets(Ctx& c) {
  const std::string sub = c.args.positional.at(1);
  if (sub == "put") {
    const std::string name = c.arg(0, "secret name");
    c.no_more_args(1);
    if (c.args.has("value"))
      usage_error("secret values are read from stdin, never the command line");
    if (::isatty(STDIN_FILENO) != 0) std::cerr << "Secret value (end with Ctrl-D): " << std::flush;
    const std::string value = drop_one_newline(read_stdin_all());
    if (value.empty()) usage_error("empty secret value on stdin");
    const Response r = c.client.request("PUT", c.org_path() + "/secrets/" + url_encode(name),
                                        json{{"value", value}});
    expect(r, {200, 201, 204});
    if (c.json_out) {
      std::cout << json{{"name", name}, {"stored", true}}.dump(2) << "\n";
    } else {
      std::cout << "Secret " << name << " stored\n";
    }
    return kOk;
  }
  if (sub == "list") {
    const json j = list_all(c, c.org_path() + "/secrets");
    c.show(j, [&] {
      print_table(j["items"],
                  {{"NAME", "name"}, {"VERSION", "version"}, {"UPDATED", "updated_at"}});
    });
    return kOk;
  }
  if (sub == "delete") {
    const std::string name = c.arg(0, "secret name");
    const Response r = c.client.request("DELETE", c.org_path() + "/secrets/" + url_encode(name));
    const json j = expect(r, {200, 204});
    c.show(j.is_null() ? json{{"name", name}, {"deleted", true}} : j,
           [&] { std::cout << "Secret " << name << " deleted\n"; });
    return kOk;
  }
  usage_error("unknown secrets command " + sub);
}

int cmd_clients(Ctx& c) {
  const std::string sub = c.args.positional.at(1);
  if (sub == "create") {
    const std::string name = c.arg(0, "client name");
    const json j = expect(c.client.request("POST", c.org_path() + "/clients", json{{"name", name}}),
                          {200, 201});
    c.show(j, [&] { print_fields(j, {{"ID", "id"}, {"Name", "name"}}); });
    return kOk;
  }
  if (sub == "list") {
    const json j = list_all(c, c.org_path() + "/clients");
    c.show(j, [&] { print_table(j["items"], {{"ID", "id"}, {"NAME", "name"}}); });
    return kOk;
  }
  usage_error("unknown clients command " + sub);
}

int cmd_sites(Ctx& c) {
  const std::string sub = c.args.positional.at(1);
  if (sub == "create") {
    const std::string client = c.arg(0, "client id");
    const std::string name = c.arg(1, "site name");
    const json j =
        expect(c.client.request("POST", c.org_path() + "/clients/" + url_encode(client) + "/sites",
                                json{{"name", name}}),
               {200, 201});
    c.show(j, [&] { print_fields(j, {{"ID", "id"}, {"Name", "name"}}); });
    return kOk;
  }
  if (sub == "list") {
    const std::string client = c.arg(0, "client id");
    const json j = list_all(c, c.org_path() + "/clients/" + url_encode(client) + "/sites");
    c.show(j, [&] { print_table(j["items"], {{"ID", "id"}, {"NAME", "name"}}); });
    return kOk;
  }
  usage_error("unknown sites command " + sub);
}

int cmd_enrollment_keys(Ctx& c) {
  const std::string sub = c.args.positional.at(1);
  if (sub == "create") {
    auto client = c.args.get("client");
    auto site = c.args.get("site");
    if (!client || !site) usage_error("enrollment-keys create needs --client ID and --site ID");
    json body = {{"client_id", *client}, {"site_id", *site}};
    if (auto g = c.args.get("group")) body["device_group_id"] = *g;
    if (c.args.has("uses")) body["uses"] = int_flag(c, "uses");
    if (c.args.has("expires-in")) body["expires_in_s"] = int_flag(c, "expires-in");
    const json j =
        expect(c.client.request("POST", c.org_path() + "/enrollment-keys", body), {200, 201});
    c.show(j, [&] {
      print_fields(j, {{"ID", "id"},
                       {"Client", "client_id"},
                       {"Site", "site_id"},
                       {"Group", "device_group_id"},
                       {"Uses", "uses"},
                       {"Expires", "expires_at"}});
      std::cout << "Key: " << cell(j.value("key", json())) << "\n"
                << "The key is shown only this once; store it now.\n";
    });
    return kOk;
  }
  if (sub == "list") {
    const json j = list_all(c, c.org_path() + "/enrollment-keys");
    c.show(j, [&] {
      print_table(j["items"], {{"ID", "id"},
                               {"PREFIX", "key_prefix"},
                               {"CLIENT", "client_id"},
                               {"SITE", "site_id"},
                               {"USES LEFT", "uses_left"},
                               {"EXPIRES", "expires_at"},
                               {"REVOKED", "revoked"},
                               {"USABLE", "usable"}});
    });
    return kOk;
  }
  if (sub == "revoke") {
    const std::string id = c.arg(0, "key id");
    const json j =
        expect(c.client.request("DELETE", c.org_path() + "/enrollment-keys/" + url_encode(id)),
               {200, 204});
    c.show(j.is_null() ? json{{"id", id}, {"revoked", true}} : j,
           [&] { std::cout << "Enrollment key " << id << " revoked\n"; });
    return kOk;
  }
  usage_error("unknown enrollment-keys command " + sub);
}

int cmd_devices(Ctx& c) {
  const std::string sub = c.args.positional.at(1);
  if (sub == "list") {
    const json j = list_all(c, c.org_path() + "/devices");
    c.show(j, [&] {
      print_table(j["items"], {{"ID", "id"},
                               {"HOSTNAME", "hostname"},
                               {"OS", "os"},
                               {"CLIENT", "client_name"},
                               {"SITE", "site_name"},
                               {"GROUP", "device_group_name"},
                               {"ONLINE", "online"},
                               {"LAST SEEN", "last_seen"}});
    });
    return kOk;
  }
  if (sub == "delete") {
    const std::string id = c.arg(0, "device id");
    const json j =
        expect(c.client.request("DELETE", c.org_path() + "/devices/" + url_encode(id)), {200, 204});
    c.show(j.is_null() ? json{{"id", id}, {"deleted", true}} : j,
           [&] { std::cout << "Device " << id << " deleted\n"; });
    return kOk;
  }
  usage_error("unknown devices command " + sub);
}

const std::vector<Column> kCommandFields = {{"ID", "id"},
                                            {"Device", "device_id"},
                                            {"Kind", "kind"},
                                            {"State", "state"},
                                            {"Deadline", "deadline"},
                                            {"Created", "created_at"},
                                            {"Finished", "finished_at"},
                                            {"Result", "result"}};

int cmd_commands(Ctx& c) {
  const std::string sub = c.args.positional.at(1);
  if (sub == "run") {
    const std::string device = c.arg(0, "device id");
    const std::string kind = c.arg(1, "command kind");
    json body = {{"kind", kind}, {"args", json::object()}};
    if (auto a = c.args.get("args-json")) body["args"] = parse_json_flag("--args-json", *a);
    if (c.args.has("deadline")) body["deadline_s"] = int_flag(c, "deadline");
    json j =
        expect(c.client.request(
                   "POST", c.org_path() + "/devices/" + url_encode(device) + "/commands", body),
               {200, 201, 202});
    if (!c.args.has("wait")) {
      c.show(j, [&] { print_fields(j, kCommandFields); });
      return kOk;
    }
    const std::string id = j.value("id", std::string());
    if (id.empty()) {
      std::cerr << "helmctl: the hub's answer has no command id\n";
      return kApiError;
    }
    const long deadline = c.args.has("deadline") ? int_flag(c, "deadline") : 3600;
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(deadline + 30);
    auto delay = std::chrono::milliseconds(250);
    while (true) {
      const std::string state = j.value("state", std::string());
      if (state == "done" || state == "expired") break;
      if (std::chrono::steady_clock::now() > give_up) {
        std::cerr << "helmctl: command " << id << " still " << state << " after its deadline\n";
        return kApiError;
      }
      std::this_thread::sleep_for(delay);
      delay = std::min(delay * 2, std::chrono::milliseconds(2000));
      j = expect(c.client.request("GET", c.org_path() + "/commands/" + url_encode(id)));
    }
    c.show(j, [&] { print_fields(j, kCommandFields); });
    if (j.value("state", std::string()) == "expired") {
      std::cerr << "Command " << id << " expired before the device answered\n";
      return kApiError;
    }
    return kOk;
  }
  if (sub == "get") {
    const std::string id = c.arg(0, "command id");
    const json j = expect(c.client.request("GET", c.org_path() + "/commands/" + url_encode(id)));
    c.show(j, [&] { print_fields(j, kCommandFields); });
    return kOk;
  }
  usage_error("unknown commands command " + sub);
}

const std::vector<Column> kWorkspaceColumns = {{"WORKSPACE", "workspace_id"},
                                               {"CLIENT", "client_id"},
                                               {"STATUS", "status"},
                                               {"URL", "url"},
                                               {"EXPIRES", "expires_at"}};

int cmd_workspaces(Ctx& c) {
  const std::string sub = c.args.positional.at(1);
  const std::string plugin = c.args.get("plugin").value_or("kasm");
  if (plugin.empty()) usage_error("--plugin needs a plugin name");
  auto op = [&](const std::string& name, const json& input) {
    return expect(c.client.request(
        "POST", c.org_path() + "/plugins/" + url_encode(plugin) + "/ops/" + name, input));
  };
  if (sub == "open") {
    const std::string client = c.arg(0, "client id");
    c.no_more_args(1);
    const json j = op("workspaces.open", json{{"client_id", client}});
    c.show(j, [&] { print_table(json::array({j}), kWorkspaceColumns); });
    return kOk;
  }
  if (sub == "list") {
    c.no_more_args(0);
    const json j = op("workspaces.list", json::object());
    c.show(j, [&] { print_table(j.value("workspaces", json::array()), kWorkspaceColumns); });
    return kOk;
  }
  if (sub == "close") {
    const std::string id = c.arg(0, "workspace id");
    c.no_more_args(1);
    const json j = op("workspaces.close", json{{"workspace_id", id}});
    c.show(j, [&] {
      std::cout << "Workspace " << cell(j.value("workspace_id", json(id))) << " closed\n";
    });
    return kOk;
  }
  usage_error("unknown workspaces command " + sub);
}

int run(int argc, char** argv) {
  Ctx c;
  c.args = parse_args(argc, argv);
  const auto& pos = c.args.positional;
  if (pos.empty()) {
    if (c.args.has("help")) {
      std::cout << kUsageText;
      return kOk;
    }
    std::cerr << kUsageText;
    return kUsage;
  }
  const std::string group = pos[0];
  if (c.args.has("help") || (pos.size() > 1 && pos[1] == "help")) {
    auto it = kGroupUsage.find(group);
    if (it == kGroupUsage.end()) usage_error("unknown command " + group);
    std::cout << it->second;
    return kOk;
  }
  if (group == "help") {
    std::cout << kUsageText;
    return kOk;
  }
  const std::string output = c.args.get("output").value_or("table");
  if (output != "table" && output != "json") usage_error("-o takes table or json");
  c.json_out = output == "json";

  auto env = [](const char* name) -> std::string {
    const char* v = std::getenv(name);
    return v == nullptr ? std::string() : std::string(v);
  };
  c.client.server = c.args.get("server").value_or(env("HELM_SERVER"));
  c.client.ca_file = c.args.get("ca-file").value_or(env("HELM_CA_FILE"));
  c.client.pin = c.args.get("pin").value_or("");
  c.config_dir =
      c.args.has("config-dir") ? fs::path(*c.args.get("config-dir")) : default_config_dir();
  if (auto t = c.args.get("token")) {
    c.client.token = *t;
  } else if (auto e = env("HELM_TOKEN"); !e.empty()) {
    c.client.token = e;
  } else if (auto saved = read_saved_token(c.config_dir)) {
    c.client.token = *saved;
  }
  if (!c.client.ca_file.empty() && !fs::exists(c.client.ca_file))
    usage_error("no CA file " + c.client.ca_file);

  if (group == "login") return cmd_login(c);
  if (group == "logout") return cmd_logout(c);
  if (group == "whoami") return cmd_whoami(c);
  static const std::map<std::string, int (*)(Ctx&)> kGroups = {
      {"plugins", cmd_plugins},
      {"secrets", cmd_secrets},
      {"clients", cmd_clients},
      {"sites", cmd_sites},
      {"enrollment-keys", cmd_enrollment_keys},
      {"devices", cmd_devices},
      {"commands", cmd_commands},
      {"workspaces", cmd_workspaces}};
  auto it = kGroups.find(group);
  if (it == kGroups.end()) usage_error("unknown command " + group);
  if (pos.size() < 2) {
    std::cerr << kGroupUsage.at(group);
    return kUsage;
  }
  if (c.client.token.empty()) {
    std::cerr << "helmctl: not logged in: run 'helmctl login', or give --token / HELM_TOKEN\n";
    return kUsage;
  }
  return it->second(c);
}

}  // namespace

int main(int argc, char** argv) {
  curl_global_init(CURL_GLOBAL_DEFAULT);
  int code = kOk;
  try {
    code = run(argc, argv);
    std::cout.flush();
  } catch (const Exit& e) {
    code = e.code;
  } catch (const std::exception& e) {
    std::cerr << "helmctl: " << e.what() << "\n";
    code = kApiError;
  }
  curl_global_cleanup();
  return code;
}
