// ECMA 262 regular expressions for `pattern`, `patternProperties` and the `regex` format: a syntax
// check that follows ECMA 262 (with the strictness of the `u` flag, as JSON Schema recommends) and
// matching through std::wregex over code points.
#pragma once

#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <string_view>

namespace helm::schema::detail {

/// nullopt when `pattern` is a valid ECMA 262 regular expression, otherwise why it is not. Never
/// compiles anything, so it is safe on untrusted input (the `regex` format checks instances).
std::optional<std::string> ecma_regex_syntax_error(std::string_view pattern);

/// A compiled `pattern`. Copies share the compiled automaton, which is immutable.
class EcmaRegex {
 public:
  /// Compiles `pattern`; on failure returns nullopt and sets `error` to a readable reason.
  static std::optional<EcmaRegex> compile(std::string_view pattern, std::string& error);

  /// Whether the pattern matches anywhere in `subject` (JSON Schema patterns are not anchored).
  bool search(std::string_view subject) const;

  const std::string& source() const { return source_; }

 private:
  EcmaRegex(std::string source, std::shared_ptr<const std::wregex> regex)
      : source_(std::move(source)), regex_(std::move(regex)) {}

  std::string source_;
  std::shared_ptr<const std::wregex> regex_;
};

}  // namespace helm::schema::detail
