#include "helm/agent/system_info.hpp"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/statvfs.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <set>
#include <sstream>

namespace helm::agent {
namespace {

std::string read_trimmed(const char* path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  while (!line.empty() && (line.back() == '\n' || line.back() == ' '))
    line.pop_back();
  return line;
}

std::map<std::string, std::string> os_release() {
  std::map<std::string, std::string> fields;
  std::ifstream in("/etc/os-release");
  std::string line;
  while (std::getline(in, line)) {
    const auto eq = line.find('=');
    if (eq == std::string::npos || line.starts_with('#')) continue;
    std::string value = line.substr(eq + 1);
    if (value.size() >= 2 && (value.front() == '"' || value.front() == '\'')) {
      value = value.substr(1, value.size() - 2);
    }
    fields[line.substr(0, eq)] = value;
  }
  return fields;
}

std::string hostname() {
  char name[256] = {};
  if (::gethostname(name, sizeof name - 1) != 0) return "unknown";
  return name;
}

// Values of /proc/meminfo in KiB.
std::map<std::string, std::uint64_t> meminfo() {
  std::map<std::string, std::uint64_t> out;
  std::ifstream in("/proc/meminfo");
  std::string key;
  std::uint64_t value = 0;
  std::string unit;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    if (fields >> key >> value) {
      if (!key.empty() && key.back() == ':') key.pop_back();
      out[key] = value;
    }
  }
  return out;
}

nlohmann::json cpu_info() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  std::string model;
  int logical = 0;
  while (std::getline(in, line)) {
    if (line.starts_with("processor")) ++logical;
    if (model.empty() && line.starts_with("model name")) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) model = line.substr(colon + 2);
    }
  }
  if (logical == 0) logical = static_cast<int>(::sysconf(_SC_NPROCESSORS_ONLN));
  return {{"model", model}, {"logical_cpus", logical}};
}

nlohmann::json disks() {
  static const std::set<std::string> kPseudo = {
      "proc",      "sysfs",   "devtmpfs",   "devpts",   "tmpfs",    "cgroup",
      "cgroup2",   "pstore",  "securityfs", "debugfs",  "tracefs",  "mqueue",
      "hugetlbfs", "fusectl", "configfs",   "bpf",      "autofs",   "binfmt_misc",
      "overlay",   "nsfs",    "rpc_pipefs", "squashfs", "efivarfs", "ramfs"};
  nlohmann::json out = nlohmann::json::array();
  std::ifstream in("/proc/mounts");
  std::string device, mount_point, fs_type, rest;
  std::set<std::string> seen;
  while (in >> device >> mount_point >> fs_type && std::getline(in, rest)) {
    if (kPseudo.count(fs_type) || !seen.insert(mount_point).second) continue;
    struct statvfs st {};
    if (::statvfs(mount_point.c_str(), &st) != 0 || st.f_blocks == 0) continue;
    out.push_back({{"device", device},
                   {"mount", mount_point},
                   {"fs", fs_type},
                   {"total_bytes", static_cast<std::uint64_t>(st.f_blocks) * st.f_frsize},
                   {"free_bytes", static_cast<std::uint64_t>(st.f_bavail) * st.f_frsize}});
  }
  return out;
}

nlohmann::json interfaces() {
  std::map<std::string, nlohmann::json> by_name;
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return nlohmann::json::array();
  for (ifaddrs* ifa = list; ifa; ifa = ifa->ifa_next) {
    auto& item = by_name[ifa->ifa_name];
    if (item.is_null()) {
      item = {{"name", ifa->ifa_name},
              {"up", (ifa->ifa_flags & IFF_UP) != 0},
              {"loopback", (ifa->ifa_flags & IFF_LOOPBACK) != 0},
              {"addresses", nlohmann::json::array()}};
    }
    if (!ifa->ifa_addr) continue;
    char text[INET6_ADDRSTRLEN] = {};
    const int family = ifa->ifa_addr->sa_family;
    if (family == AF_INET) {
      const auto* in4 = reinterpret_cast<const sockaddr_in*>(ifa->ifa_addr);
      ::inet_ntop(AF_INET, &in4->sin_addr, text, sizeof text);
      item["addresses"].push_back(text);
    } else if (family == AF_INET6) {
      const auto* in6 = reinterpret_cast<const sockaddr_in6*>(ifa->ifa_addr);
      ::inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof text);
      item["addresses"].push_back(text);
    } else if (family == AF_PACKET) {
      const auto* ll = reinterpret_cast<const sockaddr_ll*>(ifa->ifa_addr);
      if (ll->sll_halen == 6) {
        char mac[18];
        std::snprintf(mac, sizeof mac, "%02x:%02x:%02x:%02x:%02x:%02x", ll->sll_addr[0],
                      ll->sll_addr[1], ll->sll_addr[2], ll->sll_addr[3], ll->sll_addr[4],
                      ll->sll_addr[5]);
        item["mac"] = mac;
      }
    }
  }
  ::freeifaddrs(list);
  nlohmann::json out = nlohmann::json::array();
  for (auto& [name, item] : by_name)
    out.push_back(std::move(item));
  return out;
}

}  // namespace

HostIdentity host_identity() {
  HostIdentity id;
  id.hostname = hostname();
  id.os = "linux";
  auto release = os_release();
  id.os_version = release.count("PRETTY_NAME") ? release["PRETTY_NAME"] : release["VERSION_ID"];
  utsname uts{};
  if (::uname(&uts) == 0) id.arch = uts.machine;
  id.boot_id = read_trimmed("/proc/sys/kernel/random/boot_id");
  return id;
}

nlohmann::json collect_inventory() {
  const HostIdentity id = host_identity();
  auto release = os_release();
  utsname uts{};
  ::uname(&uts);
  auto mem = meminfo();
  double uptime_s = 0;
  {
    std::ifstream in("/proc/uptime");
    in >> uptime_s;
  }
  return {{"hostname", id.hostname},
          {"os",
           {{"name", release["NAME"]},
            {"id", release["ID"]},
            {"version", release["VERSION_ID"]},
            {"pretty_name", id.os_version},
            {"kernel", uts.release},
            {"arch", id.arch}}},
          {"cpu", cpu_info()},
          {"memory",
           {{"total_bytes", mem["MemTotal"] * 1024},
            {"available_bytes", mem["MemAvailable"] * 1024},
            {"swap_total_bytes", mem["SwapTotal"] * 1024}}},
          {"disks", disks()},
          {"network_interfaces", interfaces()},
          {"agent_version", kAgentVersion},
          {"uptime_s", static_cast<std::uint64_t>(uptime_s)},
          {"boot_id", id.boot_id}};
}

}  // namespace helm::agent
