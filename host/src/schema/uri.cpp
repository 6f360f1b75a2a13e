#include "uri.hpp"

#include <cstddef>
#include <vector>

namespace helm::schema::detail {

namespace {

bool is_alpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
bool is_hex(char c) {
  return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

int hex_value(char c) {
  if (is_digit(c)) return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return c - 'A' + 10;
}

bool is_unreserved(char c) {
  return is_alpha(c) || is_digit(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

bool is_sub_delim(char c) {
  switch (c) {
    case '!':
    case '$':
    case '&':
    case '\'':
    case '(':
    case ')':
    case '*':
    case '+':
    case ',':
    case ';':
    case '=':
      return true;
    default:
      return false;
  }
}

bool is_non_ascii(char c) {
  return static_cast<unsigned char>(c) >= 0x80;
}

// Checks that every character of `text` is pct-encoded, unreserved, a sub-delim, one of `extra`,
// or (for IRIs) non-ASCII. RFC 3987's ucschar excludes a few non-ASCII ranges; we accept them all
// because telling them apart needs decoding and the distinction has no practical use here.
bool all_chars_allowed(std::string_view text, std::string_view extra, bool iri) {
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '%') {
      if (i + 2 >= text.size() || !is_hex(text[i + 1]) || !is_hex(text[i + 2])) return false;
      i += 2;
    } else if (!(is_unreserved(c) || is_sub_delim(c) || extra.find(c) != std::string_view::npos ||
                 (iri && is_non_ascii(c)))) {
      return false;
    }
  }
  return true;
}

bool is_valid_scheme(std::string_view scheme) {
  if (scheme.empty() || !is_alpha(scheme.front())) return false;
  for (const char c : scheme) {
    if (!(is_alpha(c) || is_digit(c) || c == '+' || c == '-' || c == '.')) return false;
  }
  return true;
}

bool is_valid_ip_literal(std::string_view inside) {
  if (!inside.empty() && (inside.front() == 'v' || inside.front() == 'V')) {
    // IPvFuture: "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" )
    const std::size_t dot = inside.find('.');
    if (dot == std::string_view::npos || dot < 2 || dot + 1 == inside.size()) return false;
    for (std::size_t i = 1; i < dot; ++i) {
      if (!is_hex(inside[i])) return false;
    }
    for (std::size_t i = dot + 1; i < inside.size(); ++i) {
      const char c = inside[i];
      if (!(is_unreserved(c) || is_sub_delim(c) || c == ':')) return false;
    }
    return true;
  }
  return is_valid_ipv6(inside);
}

bool is_valid_authority(std::string_view authority, bool iri) {
  const std::size_t at = authority.find('@');
  if (at != std::string_view::npos) {
    if (!all_chars_allowed(authority.substr(0, at), ":", iri)) return false;
    authority.remove_prefix(at + 1);
  }
  std::string_view host = authority;
  if (!authority.empty() && authority.front() == '[') {
    const std::size_t close = authority.find(']');
    if (close == std::string_view::npos) return false;
    if (!is_valid_ip_literal(authority.substr(1, close - 1))) return false;
    host = authority.substr(0, close + 1);
    authority.remove_prefix(close + 1);
    if (!authority.empty() && authority.front() != ':') return false;
  } else {
    const std::size_t colon = authority.find(':');
    host = authority.substr(0, colon);
    authority = colon == std::string_view::npos ? std::string_view{} : authority.substr(colon);
    if (!all_chars_allowed(host, "", iri)) return false;
  }
  if (!authority.empty()) {
    // ":" port, where port is *DIGIT
    for (std::size_t i = 1; i < authority.size(); ++i) {
      if (!is_digit(authority[i])) return false;
    }
  }
  return true;
}

std::string remove_dot_segments(std::string_view path) {
  // RFC 3986 section 5.2.4, step by step.
  std::string input(path);
  std::string output;
  while (!input.empty()) {
    if (input.starts_with("../")) {
      input.erase(0, 3);
    } else if (input.starts_with("./") || input.starts_with("/./")) {
      input.erase(0, 2);
    } else if (input == "/.") {
      input = "/";
    } else if (input.starts_with("/../") || input == "/..") {
      input = input.size() == 3 ? std::string("/") : input.substr(3);
      const std::size_t last = output.rfind('/');
      output.erase(last == std::string::npos ? 0 : last);
    } else if (input == "." || input == "..") {
      input.clear();
    } else {
      const std::size_t next = input.find('/', input.front() == '/' ? 1 : 0);
      const std::size_t length = next == std::string::npos ? input.size() : next;
      output.append(input, 0, length);
      input.erase(0, length);
    }
  }
  return output;
}

std::string merge_paths(const UriParts& base, std::string_view reference_path) {
  if (base.authority && base.path.empty()) return "/" + std::string(reference_path);
  const std::size_t last = base.path.rfind('/');
  if (last == std::string::npos) return std::string(reference_path);
  return base.path.substr(0, last + 1) + std::string(reference_path);
}

}  // namespace

UriParts split_uri(std::string_view reference) {
  UriParts parts;
  const std::size_t hash = reference.find('#');
  if (hash != std::string_view::npos) {
    parts.fragment = std::string(reference.substr(hash + 1));
    reference = reference.substr(0, hash);
  }
  const std::size_t question = reference.find('?');
  if (question != std::string_view::npos) {
    parts.query = std::string(reference.substr(question + 1));
    reference = reference.substr(0, question);
  }
  const std::size_t colon = reference.find(':');
  if (colon != std::string_view::npos && colon > 0 &&
      reference.substr(0, colon).find('/') == std::string_view::npos) {
    parts.scheme = std::string(reference.substr(0, colon));
    reference.remove_prefix(colon + 1);
  }
  if (reference.starts_with("//")) {
    reference.remove_prefix(2);
    const std::size_t slash = reference.find('/');
    parts.authority = std::string(reference.substr(0, slash));
    reference = slash == std::string_view::npos ? std::string_view{} : reference.substr(slash);
  }
  parts.path = std::string(reference);
  return parts;
}

std::string join_uri(const UriParts& parts) {
  std::string out;
  if (parts.scheme) out += *parts.scheme + ":";
  if (parts.authority) out += "//" + *parts.authority;
  out += parts.path;
  if (parts.query) out += "?" + *parts.query;
  if (parts.fragment) out += "#" + *parts.fragment;
  return out;
}

std::string resolve_uri(std::string_view base_text, std::string_view reference_text) {
  const UriParts base = split_uri(base_text);
  const UriParts reference = split_uri(reference_text);
  UriParts target;
  if (reference.scheme) {
    target = reference;
    target.path = remove_dot_segments(reference.path);
  } else {
    if (reference.authority) {
      target.authority = reference.authority;
      target.path = remove_dot_segments(reference.path);
      target.query = reference.query;
    } else {
      if (reference.path.empty()) {
        target.path = base.path;
        target.query = reference.query ? reference.query : base.query;
      } else {
        if (reference.path.front() == '/') {
          target.path = remove_dot_segments(reference.path);
        } else {
          target.path = remove_dot_segments(merge_paths(base, reference.path));
        }
        target.query = reference.query;
      }
      target.authority = base.authority;
    }
    target.scheme = base.scheme;
  }
  target.fragment = reference.fragment;
  return join_uri(target);
}

std::string strip_fragment(std::string_view uri) {
  return std::string(uri.substr(0, uri.find('#')));
}

std::optional<std::string> percent_decode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out.push_back(text[i]);
      continue;
    }
    if (i + 2 >= text.size() || !is_hex(text[i + 1]) || !is_hex(text[i + 2])) return std::nullopt;
    out.push_back(static_cast<char>(hex_value(text[i + 1]) * 16 + hex_value(text[i + 2])));
    i += 2;
  }
  return out;
}

bool is_valid_uri(std::string_view text, UriGrammar grammar) {
  const bool iri = grammar == UriGrammar::kIri || grammar == UriGrammar::kIriReference;
  const bool relative_allowed =
      grammar == UriGrammar::kUriReference || grammar == UriGrammar::kIriReference;

  std::string_view rest = text;
  std::string_view fragment;
  bool has_fragment = false;
  if (const std::size_t hash = rest.find('#'); hash != std::string_view::npos) {
    fragment = rest.substr(hash + 1);
    has_fragment = true;
    rest = rest.substr(0, hash);
  }
  std::string_view query;
  bool has_query = false;
  if (const std::size_t question = rest.find('?'); question != std::string_view::npos) {
    query = rest.substr(question + 1);
    has_query = true;
    rest = rest.substr(0, question);
  }
  const std::size_t colon = rest.find(':');
  const std::size_t slash = rest.find('/');
  const bool has_scheme =
      colon != std::string_view::npos && (slash == std::string_view::npos || colon < slash);
  if (has_scheme) {
    if (!is_valid_scheme(rest.substr(0, colon))) return false;
    rest.remove_prefix(colon + 1);
  } else if (!relative_allowed) {
    return false;
  }
  if (rest.starts_with("//")) {
    rest.remove_prefix(2);
    const std::size_t path_start = rest.find('/');
    if (!is_valid_authority(rest.substr(0, path_start), iri)) return false;
    rest = path_start == std::string_view::npos ? std::string_view{} : rest.substr(path_start);
  }
  // What is left is the path: pchars and slashes. A scheme-less reference whose first segment
  // holds a ':' was already rejected above, because that prefix is not a valid scheme.
  if (!all_chars_allowed(rest, ":@/", iri)) return false;
  if (has_query && !all_chars_allowed(query, ":@/?", iri)) return false;
  if (has_fragment && !all_chars_allowed(fragment, ":@/?", iri)) return false;
  return true;
}

bool is_valid_ipv4(std::string_view text) {
  int parts = 0;
  std::size_t i = 0;
  while (true) {
    const std::size_t start = i;
    int value = 0;
    while (i < text.size() && is_digit(text[i]) && i - start < 3) {
      value = value * 10 + (text[i] - '0');
      ++i;
    }
    const std::size_t length = i - start;
    if (length == 0 || value > 255 || (length > 1 && text[start] == '0')) return false;
    ++parts;
    if (i == text.size()) break;
    if (text[i] != '.' || parts == 4) return false;
    ++i;
  }
  return parts == 4;
}

bool is_valid_ipv6(std::string_view text) {
  // Up to eight 16-bit groups, one "::" standing for one or more zero groups, and optionally a
  // trailing dotted IPv4 address counting as two groups.
  int groups = 0;
  bool compressed = false;
  std::size_t i = 0;
  if (text.starts_with("::")) {
    compressed = true;
    i = 2;
    if (i == text.size()) return true;
  } else if (text.starts_with(":")) {
    return false;
  }
  while (i < text.size()) {
    const std::size_t start = i;
    while (i < text.size() && is_hex(text[i]) && i - start < 5)
      ++i;
    const std::size_t length = i - start;
    if (i < text.size() && text[i] == '.') {
      // The rest must be an IPv4 address.
      if (!is_valid_ipv4(text.substr(start))) return false;
      groups += 2;
      i = text.size();
      break;
    }
    if (length == 0 || length > 4) return false;
    ++groups;
    if (i == text.size()) break;
    if (text[i] != ':') return false;
    ++i;
    if (i < text.size() && text[i] == ':') {
      if (compressed) return false;
      compressed = true;
      ++i;
      if (i == text.size()) break;
    } else if (i == text.size()) {
      return false;  // trailing single ':'
    }
  }
  return compressed ? groups < 8 : groups == 8;
}

}  // namespace helm::schema::detail
