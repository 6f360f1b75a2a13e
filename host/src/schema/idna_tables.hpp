// Unicode code point tables for the idn-hostname format check (generated data in idna_tables.cpp).
#pragma once

#include <cstdint>
#include <span>

namespace helm::schema::detail {

/// Inclusive range of Unicode code points.
struct CodePointRange {
  std::uint32_t first;
  std::uint32_t last;
};

/// Code points IDNA2008 allows anywhere in a label (RFC 5892 derived property PVALID).
std::span<const CodePointRange> idna_pvalid_ranges();

/// Combining marks (General Category Mn, Mc, Me); a label may not start with one (RFC 5891).
std::span<const CodePointRange> combining_mark_ranges();

/// Viramas (Canonical_Combining_Class 9); they license a following ZERO WIDTH (NON-)JOINER.
std::span<const CodePointRange> virama_ranges();

/// Whether `code_point` lies in one of the sorted `ranges`.
bool in_ranges(std::span<const CodePointRange> ranges, std::uint32_t code_point);

}  // namespace helm::schema::detail
