#include "formats.hpp"

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "ecma_regex.hpp"
#include "idna_tables.hpp"
#include "uri.hpp"
#include "utf8.hpp"

namespace helm::schema::detail {

namespace {

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
bool is_alpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
bool is_hex(char c) {
  return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

// Reads exactly `count` digits at `pos` into `value`.
bool read_digits(std::string_view text, std::size_t pos, std::size_t count, int& value) {
  if (pos + count > text.size()) return false;
  value = 0;
  for (std::size_t i = pos; i < pos + count; ++i) {
    if (!is_digit(text[i])) return false;
    value = value * 10 + (text[i] - '0');
  }
  return true;
}

int days_in_month(int year, int month) {
  static constexpr std::array<int, 12> kDays = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  return month == 2 && leap ? 29 : kDays[static_cast<std::size_t>(month - 1)];
}

// RFC 3339 full-date: YYYY-MM-DD.
bool is_full_date(std::string_view text) {
  int year = 0;
  int month = 0;
  int day = 0;
  return text.size() == 10 && read_digits(text, 0, 4, year) && text[4] == '-' &&
         read_digits(text, 5, 2, month) && text[7] == '-' && read_digits(text, 8, 2, day) &&
         month >= 1 && month <= 12 && day >= 1 && day <= days_in_month(year, month);
}

// RFC 3339 full-time: HH:MM:SS[.frac](Z|+HH:MM|-HH:MM). A leap second (:60) is accepted only
// when the time is 23:59 in UTC, the one minute that can have one.
bool is_full_time(std::string_view text) {
  int hour = 0;
  int minute = 0;
  int second = 0;
  if (!(read_digits(text, 0, 2, hour) && text.size() > 2 && text[2] == ':' &&
        read_digits(text, 3, 2, minute) && text.size() > 5 && text[5] == ':' &&
        read_digits(text, 6, 2, second))) {
    return false;
  }
  if (hour > 23 || minute > 59 || second > 60) return false;
  std::size_t pos = 8;
  if (pos < text.size() && text[pos] == '.') {
    const std::size_t start = ++pos;
    while (pos < text.size() && is_digit(text[pos]))
      ++pos;
    if (pos == start) return false;
  }
  if (pos >= text.size()) return false;
  int offset_minutes = 0;
  if (text[pos] == 'Z' || text[pos] == 'z') {
    if (pos + 1 != text.size()) return false;
  } else if (text[pos] == '+' || text[pos] == '-') {
    int offset_hour = 0;
    int offset_minute = 0;
    if (!(text.size() == pos + 6 && read_digits(text, pos + 1, 2, offset_hour) &&
          text[pos + 3] == ':' && read_digits(text, pos + 4, 2, offset_minute))) {
      return false;
    }
    if (offset_hour > 23 || offset_minute > 59) return false;
    offset_minutes = (offset_hour * 60 + offset_minute) * (text[pos] == '-' ? -1 : 1);
  } else {
    return false;
  }
  if (second == 60) {
    const int utc_minutes = ((hour * 60 + minute - offset_minutes) % 1440 + 1440) % 1440;
    return utc_minutes == 23 * 60 + 59;
  }
  return true;
}

bool is_date_time(std::string_view text) {
  return text.size() > 11 && (text[10] == 'T' || text[10] == 't') &&
         is_full_date(text.substr(0, 10)) && is_full_time(text.substr(11));
}

bool is_ldh_label(std::string_view label) {
  if (label.empty() || label.size() > 63) return false;
  if (label.front() == '-' || label.back() == '-') return false;
  return std::all_of(label.begin(), label.end(),
                     [](char c) { return is_alpha(c) || is_digit(c) || c == '-'; });
}

// RFC 1123 host name: dot-separated LDH labels of 1 to 63 characters, 253 in all; one trailing
// dot (the DNS root) is allowed.
bool is_hostname(std::string_view text) {
  if (!text.empty() && text.back() == '.') text.remove_suffix(1);
  if (text.empty() || text.size() > 253) return false;
  std::size_t start = 0;
  while (true) {
    const std::size_t dot = text.find('.', start);
    if (!is_ldh_label(text.substr(start, dot - start))) return false;
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

// Length of the RFC 3492 Punycode encoding of `label` (without the "xn--" prefix).
std::size_t punycode_length(const std::u32string& label) {
  constexpr std::uint64_t kBase = 36;
  constexpr std::uint64_t kTMin = 1;
  constexpr std::uint64_t kTMax = 26;
  constexpr std::uint64_t kSkew = 38;
  constexpr std::uint64_t kDamp = 700;
  const auto adapt = [&](std::uint64_t delta, std::uint64_t points, bool first) {
    delta = first ? delta / kDamp : delta / 2;
    delta += delta / points;
    std::uint64_t k = 0;
    while (delta > ((kBase - kTMin) * kTMax) / 2) {
      delta /= kBase - kTMin;
      k += kBase;
    }
    return k + (kBase - kTMin + 1) * delta / (delta + kSkew);
  };
  std::size_t length = 0;
  std::uint64_t basic = 0;
  for (const char32_t c : label) {
    if (c < 0x80) ++basic;
  }
  length = basic + (basic > 0 ? 1 : 0);
  std::uint64_t n = 0x80;
  std::uint64_t delta = 0;
  std::uint64_t bias = 72;
  std::uint64_t handled = basic;
  while (handled < label.size()) {
    std::uint64_t m = UINT64_MAX;
    for (const char32_t c : label) {
      if (c >= n && c < m) m = c;
    }
    delta += (m - n) * (handled + 1);
    n = m;
    for (const char32_t c : label) {
      if (c < n) ++delta;
      if (c != n) continue;
      std::uint64_t q = delta;
      for (std::uint64_t k = kBase;; k += kBase) {
        const std::uint64_t t = k <= bias ? kTMin : (k >= bias + kTMax ? kTMax : k - bias);
        if (q < t) break;
        ++length;
        q = (q - t) / (kBase - t);
      }
      ++length;
      bias = adapt(delta, handled + 1, handled == basic);
      delta = 0;
      ++handled;
    }
    ++delta;
    ++n;
  }
  return length;
}

bool in_range(char32_t c, char32_t first, char32_t last) {
  return c >= first && c <= last;
}

bool is_greek(char32_t c) {
  return in_range(c, 0x370, 0x3FF) || in_range(c, 0x1F00, 0x1FFF);
}
bool is_hebrew(char32_t c) {
  return in_range(c, 0x590, 0x5FF);
}
bool is_arabic(char32_t c) {
  return in_range(c, 0x600, 0x6FF) || in_range(c, 0x750, 0x77F) || in_range(c, 0x8A0, 0x8FF) ||
         in_range(c, 0xFB50, 0xFDFF) || in_range(c, 0xFE70, 0xFEFF);
}
bool is_hiragana_katakana_han(char32_t c) {
  return (in_range(c, 0x3040, 0x30FF) && c != 0x30FB) || in_range(c, 0x31F0, 0x31FF) ||
         in_range(c, 0x2E80, 0x2FDF) || c == 0x3005 || c == 0x3007 || in_range(c, 0x3021, 0x3029) ||
         in_range(c, 0x3038, 0x303B) || in_range(c, 0x3400, 0x4DBF) ||
         in_range(c, 0x4E00, 0x9FFF) || in_range(c, 0xF900, 0xFAFF) ||
         in_range(c, 0x20000, 0x3FFFF);
}

// RFC 5892 appendix A context rules for the CONTEXTJ and CONTEXTO code points. The ZERO WIDTH
// NON-JOINER's second rule needs Arabic joining types; we approximate it with "between two Arabic
// letters", which accepts the names it exists for.
bool context_allows(const std::u32string& label, std::size_t i) {
  const char32_t c = label[i];
  const char32_t before = i > 0 ? label[i - 1] : 0;
  const char32_t after = i + 1 < label.size() ? label[i + 1] : 0;
  const auto label_has = [&](char32_t first, char32_t last) {
    return std::any_of(label.begin(), label.end(),
                       [&](char32_t x) { return in_range(x, first, last); });
  };
  switch (c) {
    case 0x200D:
      return in_ranges(virama_ranges(), before);
    case 0x200C:
      return in_ranges(virama_ranges(), before) || (is_arabic(before) && is_arabic(after));
    case 0x00B7:
      return before == U'l' && after == U'l';
    case 0x0375:
      return is_greek(after);
    case 0x05F3:
    case 0x05F4:
      return is_hebrew(before);
    case 0x30FB:
      return std::any_of(label.begin(), label.end(), is_hiragana_katakana_han);
    default:
      if (in_range(c, 0x660, 0x669)) return !label_has(0x6F0, 0x6F9);
      if (in_range(c, 0x6F0, 0x6F9)) return !label_has(0x660, 0x669);
      return false;
  }
}

// One label of an internationalized host name (RFC 5890/5891/5892): its code points must be
// PVALID or satisfy their context rule, it may not start with a combining mark, the hyphen rules
// apply, and its A-label ("xn--" + Punycode) must fit in 63 octets. ASCII letters are compared
// case-insensitively, as the mapping step of UTS #46 would. Not checked: the Bidi rule
// (RFC 5893) and Punycode validity of labels already in A-label form.
bool is_idn_label(std::u32string label, std::size_t& ace_length) {
  if (label.empty()) return false;
  const bool ascii = std::all_of(label.begin(), label.end(), [](char32_t c) { return c < 0x80; });
  if (ascii) {
    std::string narrow(label.begin(), label.end());
    ace_length = narrow.size();
    return is_ldh_label(narrow);
  }
  for (char32_t& c : label) {
    if (c >= U'A' && c <= U'Z') c = c - U'A' + U'a';
  }
  if (label.front() == U'-' || label.back() == U'-') return false;
  if (label.size() >= 4 && label[2] == U'-' && label[3] == U'-') return false;
  if (in_ranges(combining_mark_ranges(), label.front())) return false;
  for (std::size_t i = 0; i < label.size(); ++i) {
    if (!in_ranges(idna_pvalid_ranges(), label[i]) && !context_allows(label, i)) return false;
  }
  ace_length = 4 + punycode_length(label);
  return ace_length <= 63;
}

bool is_idn_hostname(std::string_view text) {
  std::u32string name = decode_utf8(text);
  // IDNA treats the ideographic and fullwidth full stops as label separators too.
  for (char32_t& c : name) {
    if (c == 0x3002 || c == 0xFF0E || c == 0xFF61) c = U'.';
  }
  if (!name.empty() && name.back() == U'.') name.pop_back();
  if (name.empty()) return false;
  std::size_t total = 0;
  std::size_t start = 0;
  while (true) {
    const std::size_t dot = name.find(U'.', start);
    std::size_t ace_length = 0;
    if (!is_idn_label(name.substr(start, dot - start), ace_length)) return false;
    total += ace_length + 1;
    if (dot == std::u32string::npos) break;
    start = dot + 1;
  }
  return total - 1 <= 253;
}

bool is_atext(char c, bool allow_utf8) {
  if (is_alpha(c) || is_digit(c)) return true;
  if (allow_utf8 && static_cast<unsigned char>(c) >= 0x80) return true;
  return std::string_view("!#$%&'*+-/=?^_`{|}~").find(c) != std::string_view::npos;
}

// RFC 5321 Local-part: a dot-string of atext atoms, or a quoted string.
bool is_local_part(std::string_view local, bool allow_utf8) {
  if (local.empty() || local.size() > 64) return false;
  if (local.front() == '"') {
    if (local.size() < 2 || local.back() != '"') return false;
    for (std::size_t i = 1; i + 1 < local.size(); ++i) {
      const auto c = static_cast<unsigned char>(local[i]);
      if (c == '\\') {
        ++i;
        if (i + 1 >= local.size()) return false;
        const auto escaped = static_cast<unsigned char>(local[i]);
        if (escaped < 32 || escaped > 126) return false;
      } else if (c == '"' || (c < 32 && c != '\t') || (c >= 0x7F && !(allow_utf8 && c >= 0x80))) {
        return false;
      }
    }
    return true;
  }
  if (local.front() == '.' || local.back() == '.') return false;
  for (std::size_t i = 0; i < local.size(); ++i) {
    if (local[i] == '.') {
      if (local[i + 1] == '.') return false;
    } else if (!is_atext(local[i], allow_utf8)) {
      return false;
    }
  }
  return true;
}

// RFC 5321 Mailbox: Local-part "@" ( Domain / address-literal ).
bool is_email(std::string_view text, bool idn) {
  const std::size_t at = text.rfind('@');
  if (at == std::string_view::npos) return false;
  if (!is_local_part(text.substr(0, at), idn)) return false;
  const std::string_view domain = text.substr(at + 1);
  if (domain.size() >= 2 && domain.front() == '[' && domain.back() == ']') {
    const std::string_view literal = domain.substr(1, domain.size() - 2);
    if (literal.starts_with("IPv6:")) return is_valid_ipv6(literal.substr(5));
    return is_valid_ipv4(literal);
  }
  return idn ? is_idn_hostname(domain) : is_hostname(domain);
}

bool is_json_pointer(std::string_view text) {
  if (text.empty()) return true;
  if (text.front() != '/') return false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '~' && (i + 1 >= text.size() || (text[i + 1] != '0' && text[i + 1] != '1'))) {
      return false;
    }
  }
  return true;
}

// draft-handrews-relative-json-pointer-01: a non-negative integer, then "#" or a JSON Pointer.
bool is_relative_json_pointer(std::string_view text) {
  std::size_t digits = 0;
  while (digits < text.size() && is_digit(text[digits]))
    ++digits;
  if (digits == 0 || (digits > 1 && text[0] == '0')) return false;
  const std::string_view rest = text.substr(digits);
  return rest == "#" || is_json_pointer(rest);
}

bool is_uri_template_literal(unsigned char c) {
  if (c <= 0x20 || c == 0x7F) return false;
  return std::string_view("\"'<>\\^`{|}").find(static_cast<char>(c)) == std::string_view::npos;
}

// RFC 6570 URI Template syntax (any level): literals and {operator? varspec,...} expressions.
bool is_uri_template(std::string_view text) {
  std::size_t i = 0;
  while (i < text.size()) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c == '%') {
      if (i + 2 >= text.size() || !is_hex(text[i + 1]) || !is_hex(text[i + 2])) return false;
      i += 3;
      continue;
    }
    if (c != '{') {
      if (!is_uri_template_literal(c)) return false;
      ++i;
      continue;
    }
    ++i;
    if (i < text.size() &&
        std::string_view("+#./;?&=,!@|").find(text[i]) != std::string_view::npos) {
      ++i;
    }
    while (true) {
      // varname = varchar *( ["."] varchar ), varchar = ALPHA / DIGIT / "_" / pct-encoded
      bool previous_was_dot = true;
      std::size_t varchars = 0;
      while (i < text.size()) {
        const char v = text[i];
        if (is_alpha(v) || is_digit(v) || v == '_') {
          ++i;
        } else if (v == '%') {
          if (i + 2 >= text.size() || !is_hex(text[i + 1]) || !is_hex(text[i + 2])) return false;
          i += 3;
        } else if (v == '.' && !previous_was_dot) {
          previous_was_dot = true;
          ++i;
          continue;
        } else {
          break;
        }
        previous_was_dot = false;
        ++varchars;
      }
      if (varchars == 0 || previous_was_dot) return false;
      if (i < text.size() && text[i] == ':') {
        const std::size_t start = ++i;
        while (i < text.size() && is_digit(text[i]))
          ++i;
        if (i == start || i - start > 4 || text[start] == '0') return false;
      } else if (i < text.size() && text[i] == '*') {
        ++i;
      }
      if (i >= text.size()) return false;
      if (text[i] == ',') {
        ++i;
        continue;
      }
      if (text[i] != '}') return false;
      ++i;
      break;
    }
  }
  return true;
}

}  // namespace

std::optional<Format> format_from_name(std::string_view name) {
  static constexpr std::array<std::pair<std::string_view, Format>, 17> kFormats = {{
      {"date-time", Format::kDateTime},
      {"date", Format::kDate},
      {"time", Format::kTime},
      {"email", Format::kEmail},
      {"idn-email", Format::kIdnEmail},
      {"hostname", Format::kHostname},
      {"idn-hostname", Format::kIdnHostname},
      {"ipv4", Format::kIpv4},
      {"ipv6", Format::kIpv6},
      {"uri", Format::kUri},
      {"uri-reference", Format::kUriReference},
      {"iri", Format::kIri},
      {"iri-reference", Format::kIriReference},
      {"uri-template", Format::kUriTemplate},
      {"json-pointer", Format::kJsonPointer},
      {"relative-json-pointer", Format::kRelativeJsonPointer},
      {"regex", Format::kRegex},
  }};
  for (const auto& [format_name, format] : kFormats) {
    if (format_name == name) return format;
  }
  return std::nullopt;
}

bool matches_format(Format format, std::string_view text) {
  switch (format) {
    case Format::kDateTime:
      return is_date_time(text);
    case Format::kDate:
      return is_full_date(text);
    case Format::kTime:
      return is_full_time(text);
    case Format::kEmail:
      return is_email(text, /*idn=*/false);
    case Format::kIdnEmail:
      return is_email(text, /*idn=*/true);
    case Format::kHostname:
      return is_hostname(text);
    case Format::kIdnHostname:
      return is_idn_hostname(text);
    case Format::kIpv4:
      return is_valid_ipv4(text);
    case Format::kIpv6:
      return is_valid_ipv6(text);
    case Format::kUri:
      return is_valid_uri(text, UriGrammar::kUri);
    case Format::kUriReference:
      return is_valid_uri(text, UriGrammar::kUriReference);
    case Format::kIri:
      return is_valid_uri(text, UriGrammar::kIri);
    case Format::kIriReference:
      return is_valid_uri(text, UriGrammar::kIriReference);
    case Format::kUriTemplate:
      return is_uri_template(text);
    case Format::kJsonPointer:
      return is_json_pointer(text);
    case Format::kRelativeJsonPointer:
      return is_relative_json_pointer(text);
    case Format::kRegex:
      return !ecma_regex_syntax_error(text).has_value();
  }
  return true;
}

std::optional<std::string> decode_base64(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  const auto sextet = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::string out;
  out.reserve(text.size() / 4 * 3);
  for (std::size_t i = 0; i < text.size(); i += 4) {
    const bool last_quad = i + 4 == text.size();
    std::uint32_t bits = 0;
    int padding = 0;
    for (std::size_t j = 0; j < 4; ++j) {
      const char c = text[i + j];
      if (c == '=' && last_quad && j >= 2) {
        ++padding;
        bits <<= 6;
        continue;
      }
      const int value = sextet(c);
      if (value < 0 || padding > 0) return std::nullopt;
      bits = (bits << 6) | static_cast<std::uint32_t>(value);
    }
    out.push_back(static_cast<char>((bits >> 16) & 0xFF));
    if (padding < 2) out.push_back(static_cast<char>((bits >> 8) & 0xFF));
    if (padding < 1) out.push_back(static_cast<char>(bits & 0xFF));
  }
  return out;
}

bool is_json_document(std::string_view text) {
  return nlohmann::json::accept(text);
}

}  // namespace helm::schema::detail
