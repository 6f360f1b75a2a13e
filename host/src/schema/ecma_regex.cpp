#include "ecma_regex.hpp"

#include <algorithm>
#include <cstddef>
#include <set>
#include <utility>
#include <vector>

#include "utf8.hpp"

namespace helm::schema::detail {

namespace {

// Group nesting deeper than this is refused so that checking an instance's `regex`-format string
// cannot exhaust the stack.
constexpr int kMaxGroupNesting = 200;

bool is_ascii_digit(char32_t c) {
  return c >= U'0' && c <= U'9';
}
bool is_ascii_letter(char32_t c) {
  return (c >= U'a' && c <= U'z') || (c >= U'A' && c <= U'Z');
}
bool is_hex_digit(char32_t c) {
  return is_ascii_digit(c) || (c >= U'a' && c <= U'f') || (c >= U'A' && c <= U'F');
}
bool is_syntax_character(char32_t c) {
  return std::u32string_view(U"^$\\.*+?()[]{}|/").find(c) != std::u32string_view::npos;
}

std::string describe(char32_t c) {
  std::string out = "'";
  append_utf8(out, c);
  out += "'";
  return out;
}

// Recursive-descent recogniser for the ECMA 262 Pattern grammar (section 22.2.1) with the `u`
// flag: identity escapes are limited to syntax characters, lone braces and brackets are errors,
// and backreferences must name an existing group.
class RegexSyntaxChecker {
 public:
  explicit RegexSyntaxChecker(std::u32string pattern) : text_(std::move(pattern)) {}

  std::optional<std::string> check() {
    if (!disjunction()) return error_;
    if (pos_ < text_.size()) return "unmatched ')'";
    if (highest_backreference_ > capture_groups_) {
      return "backreference \\" + std::to_string(highest_backreference_) + " but only " +
             std::to_string(capture_groups_) + " capturing groups";
    }
    for (const auto& name : named_references_) {
      if (!group_names_.contains(name)) return "reference to undefined group name";
    }
    return std::nullopt;
  }

 private:
  bool fail(std::string message) {
    error_ = std::move(message);
    return false;
  }
  bool at_end() const { return pos_ >= text_.size(); }
  char32_t peek(std::size_t ahead = 0) const {
    return pos_ + ahead < text_.size() ? text_[pos_ + ahead] : U'\0';
  }
  bool has(std::size_t ahead) const { return pos_ + ahead < text_.size(); }

  bool disjunction() {
    if (++depth_ > kMaxGroupNesting) return fail("groups nested too deeply");
    if (!alternative()) return false;
    while (!at_end() && peek() == U'|') {
      ++pos_;
      if (!alternative()) return false;
    }
    --depth_;
    return true;
  }

  bool alternative() {
    while (!at_end() && peek() != U'|' && peek() != U')') {
      if (!term()) return false;
    }
    return true;
  }

  bool term() {
    const char32_t c = peek();
    if (c == U'^' || c == U'$') {
      ++pos_;
      return no_quantifier_follows();
    }
    if (c == U'\\' && (peek(1) == U'b' || peek(1) == U'B')) {
      pos_ += 2;
      return no_quantifier_follows();
    }
    if (c == U'(' && peek(1) == U'?') {
      const char32_t kind = peek(2);
      const bool lookahead = kind == U'=' || kind == U'!';
      const bool lookbehind = kind == U'<' && (peek(3) == U'=' || peek(3) == U'!');
      if (lookahead || lookbehind) {
        pos_ += lookahead ? 3 : 4;
        if (!group_body()) return false;
        return no_quantifier_follows();
      }
    }
    if (!atom()) return false;
    return optional_quantifier();
  }

  bool no_quantifier_follows() {
    if (at_end()) return true;
    const char32_t c = peek();
    if (c == U'*' || c == U'+' || c == U'?' || (c == U'{' && quantifier_braces_ahead())) {
      return fail("nothing to repeat before " + describe(c));
    }
    return true;
  }

  // Whether text at pos_ is "{n}", "{n,}" or "{n,m}".
  bool quantifier_braces_ahead() const {
    std::size_t i = pos_ + 1;
    const std::size_t digits_start = i;
    while (i < text_.size() && is_ascii_digit(text_[i]))
      ++i;
    if (i == digits_start) return false;
    if (i < text_.size() && text_[i] == U',') {
      ++i;
      while (i < text_.size() && is_ascii_digit(text_[i]))
        ++i;
    }
    return i < text_.size() && text_[i] == U'}';
  }

  bool optional_quantifier() {
    if (at_end()) return true;
    const char32_t c = peek();
    if (c == U'*' || c == U'+' || c == U'?') {
      ++pos_;
    } else if (c == U'{') {
      if (!quantifier_braces_ahead()) return fail("incomplete quantifier '{'");
      ++pos_;
      const auto read_number = [this] {
        unsigned long long value = 0;
        while (!at_end() && is_ascii_digit(peek())) {
          value = value > 1'000'000'000ULL ? value : value * 10 + (peek() - U'0');
          ++pos_;
        }
        return value;
      };
      const unsigned long long low = read_number();
      unsigned long long high = low;
      if (peek() == U',') {
        ++pos_;
        high = is_ascii_digit(peek()) ? read_number() : ~0ULL;
      }
      ++pos_;  // '}'
      if (high < low) return fail("numbers out of order in {} quantifier");
    } else {
      return true;
    }
    if (!at_end() && peek() == U'?') ++pos_;
    return no_quantifier_follows();
  }

  bool group_body() {
    if (!disjunction()) return false;
    if (at_end() || peek() != U')') return fail("missing ')'");
    ++pos_;
    return true;
  }

  bool atom() {
    const char32_t c = peek();
    switch (c) {
      case U'.':
        ++pos_;
        return true;
      case U'(':
        return group();
      case U'[':
        return character_class();
      case U'\\':
        return atom_escape();
      case U'*':
      case U'+':
      case U'?':
        return fail("nothing to repeat before " + describe(c));
      case U'{':
        return fail(quantifier_braces_ahead() ? "nothing to repeat before '{'" : "lone '{'");
      case U'}':
        return fail("lone '}'");
      case U']':
        return fail("lone ']'");
      default:
        ++pos_;
        return true;
    }
  }

  bool group() {
    ++pos_;  // '('
    if (peek() == U'?') {
      if (peek(1) == U':') {
        pos_ += 2;
      } else if (peek(1) == U'<') {
        pos_ += 2;
        std::u32string name;
        if (!group_name(name)) return false;
        if (!group_names_.insert(name).second) return fail("duplicate group name");
        ++capture_groups_;
      } else {
        return fail("invalid group '(?'");
      }
    } else {
      ++capture_groups_;
    }
    return group_body();
  }

  // Reads "name>" (the '<' already consumed).
  bool group_name(std::u32string& name) {
    while (!at_end() && peek() != U'>') {
      const char32_t c = peek();
      const bool identifier_part = is_ascii_letter(c) || c == U'_' || c == U'$' || c >= 0x80 ||
                                   (!name.empty() && is_ascii_digit(c));
      if (!identifier_part) return fail("invalid character in group name");
      name.push_back(c);
      ++pos_;
    }
    if (at_end() || name.empty()) return fail("invalid group name");
    ++pos_;  // '>'
    return true;
  }

  bool atom_escape() {
    ++pos_;  // '\'
    if (at_end()) return fail("\\ at end of pattern");
    const char32_t c = peek();
    if (c >= U'1' && c <= U'9') {
      int value = 0;
      while (!at_end() && is_ascii_digit(peek())) {
        value = value > 100000 ? value : value * 10 + static_cast<int>(peek() - U'0');
        ++pos_;
      }
      highest_backreference_ = std::max(highest_backreference_, value);
      return true;
    }
    if (c == U'k') {
      ++pos_;
      if (peek() != U'<') return fail("invalid named reference");
      ++pos_;
      std::u32string name;
      if (!group_name(name)) return false;
      named_references_.push_back(std::move(name));
      return true;
    }
    bool is_class_escape = false;
    return character_escape(/*in_class=*/false, is_class_escape);
  }

  // Escapes valid both inside and outside classes; pos_ is just past the backslash.
  bool character_escape(bool in_class, bool& is_class_escape) {
    const char32_t c = peek();
    ++pos_;
    is_class_escape = false;
    switch (c) {
      case U'd':
      case U'D':
      case U's':
      case U'S':
      case U'w':
      case U'W':
        is_class_escape = true;
        return true;
      case U'p':
      case U'P': {
        is_class_escape = true;
        if (peek() != U'{') return fail("invalid Unicode property escape");
        ++pos_;
        std::size_t length = 0;
        while (!at_end() && (is_ascii_letter(peek()) || is_ascii_digit(peek()) || peek() == U'_' ||
                             peek() == U'=')) {
          ++pos_;
          ++length;
        }
        if (length == 0 || peek() != U'}') return fail("invalid Unicode property escape");
        ++pos_;
        return true;
      }
      case U'f':
      case U'n':
      case U'r':
      case U't':
      case U'v':
        return true;
      case U'c':
        if (!is_ascii_letter(peek())) return fail("invalid control escape '\\c'");
        ++pos_;
        return true;
      case U'0':
        if (is_ascii_digit(peek())) return fail("invalid decimal escape");
        return true;
      case U'x':
        if (!is_hex_digit(peek()) || !is_hex_digit(peek(1))) return fail("invalid escape '\\x'");
        pos_ += 2;
        return true;
      case U'u':
        return unicode_escape();
      case U'-':
        if (in_class) return true;
        return fail("invalid escape '\\-'");
      case U'b':
        if (in_class) return true;  // backspace; outside a class it is an assertion (see term())
        return fail("invalid escape '\\b'");
      default:
        if (is_syntax_character(c)) return true;
        return fail("invalid escape '\\" + describe(c).substr(1));
    }
  }

  bool unicode_escape() {
    if (peek() == U'{') {
      ++pos_;
      unsigned long value = 0;
      std::size_t digits = 0;
      while (!at_end() && is_hex_digit(peek())) {
        const char32_t d = peek();
        const unsigned long digit = is_ascii_digit(d) ? d - U'0' : (d | 0x20) - U'a' + 10;
        value = value > 0x10FFFF ? value : value * 16 + digit;
        ++digits;
        ++pos_;
      }
      if (digits == 0 || peek() != U'}' || value > 0x10FFFF) return fail("invalid escape '\\u{'");
      ++pos_;
      return true;
    }
    for (std::size_t i = 0; i < 4; ++i) {
      if (!is_hex_digit(peek(i))) return fail("invalid escape '\\u'");
    }
    pos_ += 4;
    return true;
  }

  // A class atom; sets `value` for a single character or `is_class_escape` for \d-like sets.
  bool class_atom(char32_t& value, bool& is_class_escape) {
    is_class_escape = false;
    const char32_t c = peek();
    if (c != U'\\') {
      value = c;
      ++pos_;
      return true;
    }
    ++pos_;
    if (at_end()) return fail("\\ at end of pattern");
    const std::size_t escape_start = pos_;
    if (!character_escape(/*in_class=*/true, is_class_escape)) return false;
    // Reduce the escape to a comparable code point for range ordering; exact values only matter
    // for single-character escapes.
    const char32_t first = text_[escape_start];
    value = first;
    if (first == U'x' || first == U'u') {
      value = 0;
      for (std::size_t i = escape_start + 1; i < pos_; ++i) {
        const char32_t d = text_[i];
        if (!is_hex_digit(d)) continue;
        value = value * 16 + (is_ascii_digit(d) ? d - U'0' : (d | 0x20) - U'a' + 10);
      }
    } else if (first == U'0') {
      value = 0;
    } else if (first == U'b') {
      value = 8;
    } else if (first == U'c') {
      value = text_[escape_start + 1] % 32;
    } else if (first == U'f' || first == U'n' || first == U'r' || first == U't' || first == U'v') {
      value = std::u32string_view(U"\f\n\r\t\v")[std::u32string_view(U"fnrtv").find(first)];
    }
    return true;
  }

  bool character_class() {
    ++pos_;  // '['
    if (peek() == U'^') ++pos_;
    while (true) {
      if (at_end()) return fail("missing ']'");
      if (peek() == U']') {
        ++pos_;
        return true;
      }
      char32_t low = 0;
      bool low_is_set = false;
      if (!class_atom(low, low_is_set)) return false;
      if (peek() == U'-' && has(1) && peek(1) != U']') {
        ++pos_;
        char32_t high = 0;
        bool high_is_set = false;
        if (!class_atom(high, high_is_set)) return false;
        if (low_is_set || high_is_set) return fail("invalid character class range");
        if (high < low) return fail("range out of order in character class");
      }
    }
  }

  std::u32string text_;
  std::size_t pos_ = 0;
  int depth_ = 0;
  int capture_groups_ = 0;
  int highest_backreference_ = 0;
  std::set<std::u32string> group_names_;
  std::vector<std::u32string> named_references_;
  std::string error_;
};

}  // namespace

std::optional<std::string> ecma_regex_syntax_error(std::string_view pattern) {
  return RegexSyntaxChecker(decode_utf8(pattern)).check();
}

std::optional<EcmaRegex> EcmaRegex::compile(std::string_view pattern, std::string& error) {
  if (auto syntax_error = ecma_regex_syntax_error(pattern)) {
    error = "is not a valid ECMA 262 regular expression: " + *syntax_error;
    return std::nullopt;
  }
  try {
    auto regex = std::make_shared<const std::wregex>(decode_utf8_wide(pattern),
                                                     std::regex_constants::ECMAScript);
    return EcmaRegex(std::string(pattern), std::move(regex));
  } catch (const std::regex_error& e) {
    // Valid ECMA 262 that std::regex does not implement: lookbehind, named groups, \p{...},
    // \u{...}. Refusing at compile time beats silently matching something else.
    error = std::string("uses a regular-expression feature this validator cannot run (") +
            e.what() + ")";
    return std::nullopt;
  }
}

bool EcmaRegex::search(std::string_view subject) const {
  return std::regex_search(decode_utf8_wide(subject), *regex_);
}

}  // namespace helm::schema::detail
