#include "helm/agent/state.hpp"

#include <fcntl.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "helm/agent/log.hpp"

namespace helm::agent {
namespace {

std::string errno_text() {
  return std::strerror(errno);
}

Status write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error{errno_text()};
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return {};
}

Expected<std::string> read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error{"cannot read " + path.string()};
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

std::filesystem::path state_file_path(const std::filesystem::path& state_dir) {
  return state_dir / "state.json";
}

Status write_file_atomic(const std::filesystem::path& path, std::string_view contents,
                         unsigned mode) {
  const auto dir = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
  std::string temp = (dir / ("." + path.filename().string() + ".XXXXXX")).string();
  const int fd = ::mkstemp(temp.data());
  if (fd < 0)
    return Error{"cannot create a temporary file in " + dir.string() + ": " + errno_text()};
  auto fail = [&](const std::string& what) -> Status {
    const std::string reason = what + " " + temp + ": " + errno_text();
    ::close(fd);
    ::unlink(temp.c_str());
    return Error{reason};
  };
  if (::fchmod(fd, static_cast<mode_t>(mode)) != 0) return fail("cannot chmod");
  if (auto written = write_all(fd, contents); !written) return fail("cannot write");
  if (::fsync(fd) != 0) return fail("cannot fsync");
  if (::close(fd) != 0) {
    ::unlink(temp.c_str());
    return Error{"cannot close " + temp + ": " + errno_text()};
  }
  if (::rename(temp.c_str(), path.c_str()) != 0) {
    const std::string reason =
        "cannot rename " + temp + " to " + path.string() + ": " + errno_text();
    ::unlink(temp.c_str());
    return Error{reason};
  }
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) return Error{"cannot open directory " + dir.string() + ": " + errno_text()};
  const int rc = ::fsync(dir_fd);
  ::close(dir_fd);
  if (rc != 0) return Error{"cannot fsync directory " + dir.string() + ": " + errno_text()};
  return {};
}

Status ensure_state_dir(const std::filesystem::path& state_dir) {
  std::error_code ec;
  if (std::filesystem::is_directory(state_dir, ec)) return {};
  std::filesystem::create_directories(state_dir, ec);
  if (ec) return Error{"cannot create state directory " + state_dir.string() + ": " + ec.message()};
  if (::chmod(state_dir.c_str(), 0700) != 0) {
    return Error{"cannot chmod state directory " + state_dir.string() + ": " + errno_text()};
  }
  return {};
}

Status save_state(const std::filesystem::path& state_dir, const AgentState& state) {
  nlohmann::json doc = {{"server", state.server},
                        {"device_id", state.device_id},
                        {"device_token", state.device_token},
                        {"transport_url", state.transport_url},
                        {"heartbeat_s", state.heartbeat_s}};
  if (!state.ca_pin.empty()) doc["ca_pin"] = state.ca_pin;
  if (!state.ca_file.empty()) doc["ca_file"] = state.ca_file;
  if (!state.revoked_reason.empty()) doc["revoked"] = state.revoked_reason;
  return write_file_atomic(state_file_path(state_dir), doc.dump(2) + "\n", 0600);
}

Expected<AgentState> load_state(const std::filesystem::path& state_dir) {
  const auto path = state_file_path(state_dir);
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return Error{"no state file " + path.string() + " (" + errno_text() +
                 "); enroll first: helm-agent enroll --server URL --key KEY"};
  }
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return Error{"state file " + path.string() + " has mode " + mode +
                 " and holds the device token; refusing to use it. Run: chmod 600 " +
                 path.string()};
  }
  auto text = read_file(path);
  if (!text) return text.error();
  const auto doc = nlohmann::json::parse(text.value(), nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) {
    return Error{"state file " + path.string() + " is not a JSON object; enroll again"};
  }
  AgentState state;
  auto str = [&](const char* key) { return doc.value(key, std::string()); };
  state.server = str("server");
  state.device_id = str("device_id");
  state.device_token = str("device_token");
  state.transport_url = str("transport_url");
  state.ca_pin = str("ca_pin");
  state.ca_file = str("ca_file");
  state.revoked_reason = str("revoked");
  if (doc.contains("heartbeat_s") && doc["heartbeat_s"].is_number_integer()) {
    state.heartbeat_s = doc["heartbeat_s"].get<int>();
  }
  if (state.device_token.empty() || state.transport_url.empty()) {
    return Error{"state file " + path.string() +
                 " lacks device_token or transport_url; enroll again"};
  }
  if (state.heartbeat_s <= 0 || state.heartbeat_s > 3600) state.heartbeat_s = 30;
  return state;
}

Expected<std::string> machine_id(const std::filesystem::path& state_dir,
                                 const std::filesystem::path& system_file) {
  auto trimmed = [](std::string text) {
    while (!text.empty() && (text.back() == '\n' || text.back() == ' '))
      text.pop_back();
    return text;
  };
  if (auto text = read_file(system_file); text && !trimmed(text.value()).empty()) {
    return trimmed(text.value());
  }
  const auto kept = state_dir / "machine-id";
  if (auto text = read_file(kept); text && !trimmed(text.value()).empty()) {
    return trimmed(text.value());
  }
  unsigned char bytes[16];
  if (RAND_bytes(bytes, sizeof bytes) != 1) return Error{"cannot generate a machine id"};
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id;
  for (const auto b : bytes) {
    id.push_back(kHex[b >> 4]);
    id.push_back(kHex[b & 0xf]);
  }
  if (auto saved = write_file_atomic(kept, id + "\n", 0600); !saved) {
    return Error{"cannot keep the generated machine id: " + saved.error().message};
  }
  log::info("generated a machine id (no " + system_file.string() + ")", {{"file", kept.string()}});
  return id;
}

}  // namespace helm::agent
