# helm_add_plugin(): builds a Helm Hub plugin the same way in this tree and out of it.
#
#   helm_add_plugin(<name>
#                   SOURCES <file>...
#                   MANIFEST <manifest.json>
#                   [SIGN_KEY <publisher.key>]
#                   [OUTPUT_DIRECTORY <dir>]
#                   [INSTALL_DESTINATION <dir>])
#
# Creates the MODULE library target <name> and lays the plugin out as the hub loads it:
#
#   <OUTPUT_DIRECTORY or ${CMAKE_BINARY_DIR}/plugins>/<name>/
#       <library>        the shared library, named exactly as the manifest's "library" says
#       manifest.json    copied from MANIFEST
#       signature        with SIGN_KEY: helm-plugin sign over manifest.json and the library
#
# <name> must equal the manifest's "name"; the manifest's "library" must be "<something>.so" and
# becomes the file name (no "lib" prefix is added). Everything is built with hidden visibility
# (-fvisibility=hidden, -fvisibility-inlines-hidden) so the only exported symbol of the plugin is
# helm_plugin_entry (HELM_PLUGIN_EXPORT / HELM_EXPORT_PLUGIN), with -fno-gnu-unique under GCC so
# the library can be unloaded, and linked with --no-undefined so
# a plugin cannot lean on symbols of the hub (set HELM_PLUGIN_ALLOW_UNDEFINED to skip that, e.g.
# for sanitizer builds). With INSTALL_DESTINATION, `cmake --install` copies the three files to
# <INSTALL_DESTINATION>/<name>/.
include_guard(GLOBAL)

function(helm_add_plugin name)
  cmake_parse_arguments(PARSE_ARGV 1 arg "" "MANIFEST;SIGN_KEY;OUTPUT_DIRECTORY;INSTALL_DESTINATION"
                        "SOURCES")
  if(arg_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "helm_add_plugin(${name}): unexpected arguments ${arg_UNPARSED_ARGUMENTS}")
  endif()
  if(NOT arg_SOURCES)
    message(FATAL_ERROR "helm_add_plugin(${name}): SOURCES is required")
  endif()
  if(NOT arg_MANIFEST)
    message(FATAL_ERROR "helm_add_plugin(${name}): MANIFEST is required")
  endif()
  if(NOT TARGET HelmPluginSDK::sdk)
    message(FATAL_ERROR "helm_add_plugin(${name}): the HelmPluginSDK::sdk target is missing; "
                        "use find_package(HelmPluginSDK) first")
  endif()

  # The manifest decides the plugin's name and file name; read it now so they cannot disagree.
  get_filename_component(manifest "${arg_MANIFEST}" ABSOLUTE BASE_DIR "${CMAKE_CURRENT_SOURCE_DIR}")
  if(NOT EXISTS "${manifest}")
    message(FATAL_ERROR "helm_add_plugin(${name}): manifest ${manifest} does not exist")
  endif()
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS "${manifest}")
  file(READ "${manifest}" manifest_text)
  string(JSON manifest_name ERROR_VARIABLE json_error GET "${manifest_text}" name)
  if(json_error)
    message(FATAL_ERROR "helm_add_plugin(${name}): ${manifest} has no \"name\": ${json_error}")
  endif()
  if(NOT manifest_name STREQUAL name)
    message(FATAL_ERROR "helm_add_plugin(${name}): ${manifest} names the plugin "
                        "\"${manifest_name}\"; the two must match")
  endif()
  string(JSON library ERROR_VARIABLE json_error GET "${manifest_text}" library)
  if(json_error OR NOT library MATCHES "^[A-Za-z0-9_][A-Za-z0-9._+-]*\\.so$")
    message(FATAL_ERROR "helm_add_plugin(${name}): ${manifest} must give \"library\" as a file "
                        "name ending in .so (e.g. \"${name}.so\")")
  endif()
  string(REGEX REPLACE "\\.so$" "" library_base "${library}")

  if(arg_OUTPUT_DIRECTORY)
    get_filename_component(parent "${arg_OUTPUT_DIRECTORY}" ABSOLUTE
                           BASE_DIR "${CMAKE_CURRENT_BINARY_DIR}")
  else()
    set(parent "${CMAKE_BINARY_DIR}/plugins")
  endif()
  set(out_dir "${parent}/${name}")

  add_library(${name} MODULE ${arg_SOURCES})
  target_link_libraries(${name} PRIVATE HelmPluginSDK::sdk)
  set_target_properties(${name} PROPERTIES
    PREFIX ""
    SUFFIX ".so"
    OUTPUT_NAME "${library_base}"
    # The generator expression keeps multi-config generators from adding a per-config directory.
    LIBRARY_OUTPUT_DIRECTORY "${out_dir}$<0:>"
    C_VISIBILITY_PRESET hidden
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON
    POSITION_INDEPENDENT_CODE ON
    HELM_PLUGIN_DIRECTORY "${out_dir}")
  # GCC marks some template statics STB_GNU_UNIQUE, which makes glibc refuse to ever unload the
  # library; without them a disabled or reloaded plugin really leaves the process.
  target_compile_options(${name} PRIVATE $<$<COMPILE_LANG_AND_ID:CXX,GNU>:-fno-gnu-unique>)
  # Relink (and so re-copy and re-sign) whenever the manifest changes.
  set_property(TARGET ${name} APPEND PROPERTY LINK_DEPENDS "${manifest}")
  if(NOT APPLE AND NOT HELM_PLUGIN_ALLOW_UNDEFINED AND NOT HELM_SANITIZE)
    target_link_options(${name} PRIVATE "LINKER:--no-undefined")
  endif()

  add_custom_command(TARGET ${name} POST_BUILD
    COMMAND ${CMAKE_COMMAND} -E copy_if_different "${manifest}" "${out_dir}/manifest.json"
    COMMENT "Plugin ${name}: copying manifest.json"
    VERBATIM)

  if(arg_SIGN_KEY)
    get_filename_component(key "${arg_SIGN_KEY}" ABSOLUTE BASE_DIR "${CMAKE_CURRENT_SOURCE_DIR}")
    if(NOT TARGET HelmPluginSDK::helm-plugin)
      message(FATAL_ERROR "helm_add_plugin(${name}): SIGN_KEY needs the helm-plugin tool "
                          "(target HelmPluginSDK::helm-plugin)")
    endif()
    get_target_property(tool_target HelmPluginSDK::helm-plugin ALIASED_TARGET)
    if(tool_target)
      add_dependencies(${name} ${tool_target})
    endif()
    set_property(TARGET ${name} APPEND PROPERTY LINK_DEPENDS "${key}")
    add_custom_command(TARGET ${name} POST_BUILD
      COMMAND $<TARGET_FILE:HelmPluginSDK::helm-plugin> sign --key "${key}"
              --manifest "${out_dir}/manifest.json" --library "$<TARGET_FILE:${name}>"
              --out "${out_dir}/signature"
      COMMENT "Plugin ${name}: signing"
      VERBATIM)
  else()
    # A signature left from an earlier signed build would no longer match.
    add_custom_command(TARGET ${name} POST_BUILD
      COMMAND ${CMAKE_COMMAND} -E rm -f "${out_dir}/signature"
      VERBATIM)
  endif()

  if(arg_INSTALL_DESTINATION)
    install(TARGETS ${name} LIBRARY DESTINATION "${arg_INSTALL_DESTINATION}/${name}")
    install(FILES "${out_dir}/manifest.json" DESTINATION "${arg_INSTALL_DESTINATION}/${name}")
    if(arg_SIGN_KEY)
      install(FILES "${out_dir}/signature" DESTINATION "${arg_INSTALL_DESTINATION}/${name}")
    endif()
  endif()
endfunction()
