// UTF-8 helpers: the validator counts and matches strings by Unicode code point, not by byte.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace helm::schema::detail {

/// Code point that stands in for a malformed UTF-8 sequence.
inline constexpr char32_t kReplacementCharacter = 0xFFFD;

/// Number of code points in `text`; each malformed byte counts as one.
std::size_t count_code_points(std::string_view text);

/// Decodes `text`; malformed sequences become U+FFFD so a match never reads past the input.
std::u32string decode_utf8(std::string_view text);

/// Same as decode_utf8 but into wchar_t, which std::wregex needs (32 bits on the platforms we
/// build for, so every code point fits).
std::wstring decode_utf8_wide(std::string_view text);

/// Encodes one code point (values above U+10FFFF or surrogates become U+FFFD).
void append_utf8(std::string& out, char32_t code_point);

}  // namespace helm::schema::detail
