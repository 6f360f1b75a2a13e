// The `format` values this validator asserts, and the `contentEncoding` / `contentMediaType`
// checks. Each check takes the instance string as UTF-8 and only looks at syntax.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace helm::schema::detail {

enum class Format {
  kDateTime,
  kDate,
  kTime,
  kEmail,
  kIdnEmail,
  kHostname,
  kIdnHostname,
  kIpv4,
  kIpv6,
  kUri,
  kUriReference,
  kIri,
  kIriReference,
  kUriTemplate,
  kJsonPointer,
  kRelativeJsonPointer,
  kRegex,
};

/// The format named `name`, or nullopt for a format this validator does not know (which passes).
std::optional<Format> format_from_name(std::string_view name);

/// Whether `text` is a valid instance of `format`.
bool matches_format(Format format, std::string_view text);

/// Decodes RFC 4648 base64 (standard alphabet, padding required); nullopt when malformed.
std::optional<std::string> decode_base64(std::string_view text);

/// Whether `text` is a single JSON document.
bool is_json_document(std::string_view text);

}  // namespace helm::schema::detail
