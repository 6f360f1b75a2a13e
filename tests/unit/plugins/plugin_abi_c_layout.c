/*
 * Compiled as C99 with -Wall -Wextra -pedantic (-Werror in CI): proves helm/plugin_abi.h is
 * valid C, and reports the layout a C compiler gives every struct so plugin_abi_test.cpp can
 * check that C and C++ agree byte for byte.
 */
#include <helm/plugin_abi.h>

#include <string.h>

#include "plugin_abi_c_layout.h"

#define HELM_LAYOUT_FIELD(type, field) \
  { #type "." #field, offsetof(type, field), sizeof(((type*)0)->field) }
#define HELM_LAYOUT_SIZE(type) \
  { #type, 0, sizeof(type) }

static const helm_c_layout_entry kLayout[] = {
    HELM_LAYOUT_SIZE(helm_error),
    HELM_LAYOUT_FIELD(helm_error, struct_size),
    HELM_LAYOUT_FIELD(helm_error, status),
    HELM_LAYOUT_FIELD(helm_error, message),
    HELM_LAYOUT_SIZE(helm_http_header),
    HELM_LAYOUT_FIELD(helm_http_header, name),
    HELM_LAYOUT_FIELD(helm_http_header, value_len),
    HELM_LAYOUT_SIZE(helm_http_request),
    HELM_LAYOUT_FIELD(helm_http_request, timeout_ms),
    HELM_LAYOUT_FIELD(helm_http_request, method),
    HELM_LAYOUT_FIELD(helm_http_request, headers),
    HELM_LAYOUT_FIELD(helm_http_request, body_len),
    HELM_LAYOUT_SIZE(helm_http_response),
    HELM_LAYOUT_FIELD(helm_http_response, status_code),
    HELM_LAYOUT_FIELD(helm_http_response, body_len),
    HELM_LAYOUT_SIZE(helm_host_api),
    HELM_LAYOUT_FIELD(helm_host_api, abi_major),
    HELM_LAYOUT_FIELD(helm_host_api, abi_minor),
    HELM_LAYOUT_FIELD(helm_host_api, host_ctx),
    HELM_LAYOUT_FIELD(helm_host_api, log),
    HELM_LAYOUT_FIELD(helm_host_api, http_request),
    HELM_LAYOUT_FIELD(helm_host_api, session_info),
    HELM_LAYOUT_SIZE(helm_call),
    HELM_LAYOUT_FIELD(helm_call, timeout_ms),
    HELM_LAYOUT_FIELD(helm_call, call_id),
    HELM_LAYOUT_FIELD(helm_call, op),
    HELM_LAYOUT_FIELD(helm_call, session),
    HELM_LAYOUT_FIELD(helm_call, complete),
    HELM_LAYOUT_FIELD(helm_call, call_ctx),
    HELM_LAYOUT_SIZE(helm_event),
    HELM_LAYOUT_FIELD(helm_event, source),
    HELM_LAYOUT_FIELD(helm_event, payload_len),
    HELM_LAYOUT_SIZE(helm_plugin_v1),
    HELM_LAYOUT_FIELD(helm_plugin_v1, abi_major),
    HELM_LAYOUT_FIELD(helm_plugin_v1, abi_minor),
    HELM_LAYOUT_FIELD(helm_plugin_v1, struct_size),
    HELM_LAYOUT_FIELD(helm_plugin_v1, name),
    HELM_LAYOUT_FIELD(helm_plugin_v1, create),
    HELM_LAYOUT_FIELD(helm_plugin_v1, invoke),
    HELM_LAYOUT_FIELD(helm_plugin_v1, on_event),
};

const helm_c_layout_entry* helm_c_layout(size_t* count) {
  *count = sizeof kLayout / sizeof kLayout[0];
  return kLayout;
}

size_t helm_c_plugin_v1_0_size(void) {
  return HELM_PLUGIN_V1_0_SIZE;
}
size_t helm_c_host_api_v1_0_size(void) {
  return HELM_HOST_API_V1_0_SIZE;
}
size_t helm_c_call_v1_0_size(void) {
  return HELM_CALL_V1_0_SIZE;
}

int helm_c_has_field(uint32_t struct_size) {
  helm_host_api api;
  memset(&api, 0, sizeof api);
  api.struct_size = struct_size;
  return HELM_HAS_FIELD(&api, helm_host_api, session_info);
}
