// The draft-07 meta-schema, built in so that "$ref": "http://json-schema.org/draft-07/schema#"
// resolves without network access.
#pragma once

#include <string_view>

namespace helm::schema::detail {

/// URI of the draft-07 meta-schema without its (empty) fragment.
inline constexpr std::string_view kDraft7MetaSchemaUri = "http://json-schema.org/draft-07/schema";

/// The meta-schema's JSON text.
std::string_view draft7_metaschema_text();

}  // namespace helm::schema::detail
