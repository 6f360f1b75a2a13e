#include "helm/vault/names.hpp"

#include <vector>

namespace helm::vault {

namespace {

bool is_lower_alnum(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

bool is_name_char(char c) noexcept {
  return is_lower_alnum(c) || c == '.' || c == '_' || c == '/' || c == '-';
}

enum class GlobToken : char { kLiteral, kAnyChar, kStar, kDoubleStar };

struct GlobPart {
  GlobToken token;
  char literal;
};

}  // namespace

bool is_valid_org_id(std::string_view org_id) noexcept {
  if (org_id.empty() || org_id.size() > kMaxOrgIdLength) {
    return false;
  }
  if (!is_lower_alnum(org_id.front()) || !is_lower_alnum(org_id.back())) {
    return false;
  }
  for (const char c : org_id) {
    if (!is_lower_alnum(c) && c != '-') {
      return false;
    }
  }
  return true;
}

bool is_valid_secret_name(std::string_view name) noexcept {
  if (name.empty() || name.size() > kMaxSecretNameLength) {
    return false;
  }
  if (!is_lower_alnum(name.front()) || name.back() == '/') {
    return false;
  }
  for (const char c : name) {
    if (!is_name_char(c)) {
      return false;
    }
  }
  std::size_t start = 0;
  while (start <= name.size()) {
    std::size_t end = name.find('/', start);
    if (end == std::string_view::npos) {
      end = name.size();
    }
    const std::string_view segment = name.substr(start, end - start);
    if (segment.empty() || segment == "." || segment == "..") {
      return false;
    }
    start = end + 1;
  }
  return true;
}

bool is_valid_secret_glob(std::string_view pattern) noexcept {
  if (pattern.empty() || pattern.size() > kMaxSecretNameLength) {
    return false;
  }
  if (pattern.find("***") != std::string_view::npos) {
    return false;
  }
  for (const char c : pattern) {
    if (!is_name_char(c) && c != '*' && c != '?') {
      return false;
    }
  }
  return true;
}

bool glob_match(std::string_view pattern, std::string_view name) {
  if (!is_valid_secret_glob(pattern) || !is_valid_secret_name(name)) {
    return false;
  }

  std::vector<GlobPart> parts;
  parts.reserve(pattern.size());
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] == '*') {
      if (i + 1 < pattern.size() && pattern[i + 1] == '*') {
        parts.push_back({GlobToken::kDoubleStar, 0});
        ++i;
      } else {
        parts.push_back({GlobToken::kStar, 0});
      }
    } else if (pattern[i] == '?') {
      parts.push_back({GlobToken::kAnyChar, 0});
    } else {
      parts.push_back({GlobToken::kLiteral, pattern[i]});
    }
  }

  // matches[p * (n + 1) + j]: parts[p..] match name[j..]. Filled from the end, so the work is
  // bounded by |parts| * |name| (at most 129 * 129) with no backtracking blow-up.
  const std::size_t n = name.size();
  const std::size_t width = n + 1;
  std::vector<char> matches((parts.size() + 1) * width, 0);
  matches[parts.size() * width + n] = 1;
  for (std::size_t p = parts.size(); p-- > 0;) {
    for (std::size_t j = width; j-- > 0;) {
      const bool more = j < n;
      bool match = false;
      switch (parts[p].token) {
        case GlobToken::kLiteral:
          match = more && name[j] == parts[p].literal && matches[(p + 1) * width + j + 1] != 0;
          break;
        case GlobToken::kAnyChar:
          match = more && name[j] != '/' && matches[(p + 1) * width + j + 1] != 0;
          break;
        case GlobToken::kStar:
          match = matches[(p + 1) * width + j] != 0 ||
                  (more && name[j] != '/' && matches[p * width + j + 1] != 0);
          break;
        case GlobToken::kDoubleStar:
          match = matches[(p + 1) * width + j] != 0 || (more && matches[p * width + j + 1] != 0);
          break;
      }
      matches[p * width + j] = match ? 1 : 0;
    }
  }
  return matches[0] != 0;
}

}  // namespace helm::vault
