// URI references (RFC 3986, and RFC 3987 IRIs): splitting, resolution against a base for $id and
// $ref, and the syntax checks behind the uri, uri-reference, iri and iri-reference formats.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace helm::schema::detail {

/// The five components of a URI reference; an absent component differs from an empty one.
struct UriParts {
  std::optional<std::string> scheme;
  std::optional<std::string> authority;
  std::string path;
  std::optional<std::string> query;
  std::optional<std::string> fragment;
};

/// Splits any string the way RFC 3986 appendix B does; it never fails and never validates.
UriParts split_uri(std::string_view reference);

/// Reassembles components split by split_uri.
std::string join_uri(const UriParts& parts);

/// Resolves `reference` against `base` (RFC 3986 section 5.2). A relative or empty base works
/// too: the result is then as relative as the inputs, which is what an id-less schema needs.
std::string resolve_uri(std::string_view base, std::string_view reference);

/// `uri` without its fragment ("http://x/y#foo" -> "http://x/y").
std::string strip_fragment(std::string_view uri);

/// Decodes %XX escapes; nullopt when an escape is malformed.
std::optional<std::string> percent_decode(std::string_view text);

/// Which grammar is_valid_uri checks.
enum class UriGrammar { kUri, kUriReference, kIri, kIriReference };

/// Whether `text` is a syntactically valid URI (or reference, or IRI) per RFC 3986 / RFC 3987.
bool is_valid_uri(std::string_view text, UriGrammar grammar);

/// Whether `text` is an IPv6 address in the RFC 4291 text form (no zone identifier).
bool is_valid_ipv6(std::string_view text);

/// Whether `text` is a dotted-quad IPv4 address without leading zeros.
bool is_valid_ipv4(std::string_view text);

}  // namespace helm::schema::detail
