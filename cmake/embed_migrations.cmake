# Generates a C++ source that holds every host/migrations/NNNN_name.sql as a string, so the
# binary carries its schema. Run with -DMIGRATIONS_DIR=... -DOUTPUT=...
file(GLOB files "${MIGRATIONS_DIR}/*.sql")
list(SORT files)
set(body "")
set(last 0)
foreach(f IN LISTS files)
  get_filename_component(base "${f}" NAME_WE)
  if(NOT base MATCHES "^([0-9][0-9][0-9][0-9])_([a-z0-9_]+)$")
    message(FATAL_ERROR "migration file name must be NNNN_name.sql: ${f}")
  endif()
  math(EXPR version "${CMAKE_MATCH_1}")
  set(name "${CMAKE_MATCH_2}")
  math(EXPR expected "${last} + 1")
  if(NOT version EQUAL expected)
    message(FATAL_ERROR "migrations must be numbered without gaps: expected ${expected}, got ${f}")
  endif()
  set(last ${version})
  file(READ "${f}" sql)
  string(APPEND body "      {${version}, \"${name}\", R\"helm_sql(${sql})helm_sql\"},\n")
endforeach()
file(WRITE "${OUTPUT}.tmp" "// Generated from host/migrations by cmake/embed_migrations.cmake. Do not edit.
#include \"helm/storage/migrations.hpp\"

namespace helm::storage {
const std::vector<Migration>& builtin_migrations() {
  static const std::vector<Migration> migrations = {
${body}  };
  return migrations;
}
}  // namespace helm::storage
")
file(COPY_FILE "${OUTPUT}.tmp" "${OUTPUT}" ONLY_IF_DIFFERENT)
