// The C ABI header: C and C++ agree on every layout, the 1.0 sizes are pinned, and the rules for
// struct_size and status codes hold.
#include <helm/plugin_abi.h>

#include <gtest/gtest.h>

#include <cstddef>
#include <map>
#include <string>
#include <utility>

#include "plugin_abi_c_layout.h"

namespace {

#define HELM_CXX_FIELD(type, field)              \
  {                                              \
#type "." #field, {                          \
      offsetof(type, field), sizeof(type::field) \
    }                                            \
  }
#define HELM_CXX_SIZE(type) \
  {                         \
#type, {                \
      0, sizeof(type)       \
    }                       \
  }

std::map<std::string, std::pair<std::size_t, std::size_t>> cxx_layout() {
  return {
      HELM_CXX_SIZE(helm_error),
      HELM_CXX_FIELD(helm_error, struct_size),
      HELM_CXX_FIELD(helm_error, status),
      HELM_CXX_FIELD(helm_error, message),
      HELM_CXX_SIZE(helm_http_header),
      HELM_CXX_FIELD(helm_http_header, name),
      HELM_CXX_FIELD(helm_http_header, value_len),
      HELM_CXX_SIZE(helm_http_request),
      HELM_CXX_FIELD(helm_http_request, timeout_ms),
      HELM_CXX_FIELD(helm_http_request, method),
      HELM_CXX_FIELD(helm_http_request, headers),
      HELM_CXX_FIELD(helm_http_request, body_len),
      HELM_CXX_SIZE(helm_http_response),
      HELM_CXX_FIELD(helm_http_response, status_code),
      HELM_CXX_FIELD(helm_http_response, body_len),
      HELM_CXX_SIZE(helm_host_api),
      HELM_CXX_FIELD(helm_host_api, abi_major),
      HELM_CXX_FIELD(helm_host_api, abi_minor),
      HELM_CXX_FIELD(helm_host_api, host_ctx),
      HELM_CXX_FIELD(helm_host_api, log),
      HELM_CXX_FIELD(helm_host_api, http_request),
      HELM_CXX_FIELD(helm_host_api, session_info),
      HELM_CXX_SIZE(helm_call),
      HELM_CXX_FIELD(helm_call, timeout_ms),
      HELM_CXX_FIELD(helm_call, call_id),
      HELM_CXX_FIELD(helm_call, op),
      HELM_CXX_FIELD(helm_call, session),
      HELM_CXX_FIELD(helm_call, complete),
      HELM_CXX_FIELD(helm_call, call_ctx),
      HELM_CXX_SIZE(helm_event),
      HELM_CXX_FIELD(helm_event, source),
      HELM_CXX_FIELD(helm_event, payload_len),
      HELM_CXX_SIZE(helm_plugin_v1),
      HELM_CXX_FIELD(helm_plugin_v1, abi_major),
      HELM_CXX_FIELD(helm_plugin_v1, abi_minor),
      HELM_CXX_FIELD(helm_plugin_v1, struct_size),
      HELM_CXX_FIELD(helm_plugin_v1, name),
      HELM_CXX_FIELD(helm_plugin_v1, create),
      HELM_CXX_FIELD(helm_plugin_v1, invoke),
      HELM_CXX_FIELD(helm_plugin_v1, on_event),
  };
}

TEST(PluginAbi, CAndCxxCompilersAgreeOnEveryLayout) {
  const auto expected = cxx_layout();
  std::size_t count = 0;
  const helm_c_layout_entry* entries = helm_c_layout(&count);
  ASSERT_EQ(count, expected.size());
  for (std::size_t i = 0; i < count; ++i) {
    const auto found = expected.find(entries[i].name);
    ASSERT_NE(found, expected.end()) << entries[i].name;
    EXPECT_EQ(entries[i].offset, found->second.first) << entries[i].name;
    EXPECT_EQ(entries[i].size, found->second.second) << entries[i].name;
  }
  EXPECT_EQ(helm_c_plugin_v1_0_size(), HELM_PLUGIN_V1_0_SIZE);
  EXPECT_EQ(helm_c_host_api_v1_0_size(), HELM_HOST_API_V1_0_SIZE);
  EXPECT_EQ(helm_c_call_v1_0_size(), HELM_CALL_V1_0_SIZE);
}

// ABI 1.1 appended the transport fields to helm_host_api and helm_plugin_v1, ABI 1.2 the audit
// function to helm_host_api and organization_id to helm_http_request: earlier sizes stay where they
// were (an older peer still works) and the newest sizes are the whole structs. Every other struct
// is still exactly its 1.0 size.
TEST(PluginAbi, Version1_1AppendsOnlyAtTheEnd) {
  EXPECT_EQ(HELM_PLUGIN_ABI_MAJOR, 1);
  EXPECT_EQ(HELM_PLUGIN_ABI_MINOR, 2);
  EXPECT_EQ(HELM_PLUGIN_V1_1_SIZE, sizeof(helm_plugin_v1));
  EXPECT_EQ(HELM_HOST_API_V1_1_SIZE, offsetof(helm_host_api, audit));
  EXPECT_EQ(HELM_HOST_API_V1_2_SIZE, sizeof(helm_host_api));
  EXPECT_EQ(HELM_PLUGIN_V1_0_SIZE, offsetof(helm_plugin_v1, device_send));
  EXPECT_EQ(HELM_HOST_API_V1_0_SIZE, offsetof(helm_host_api, device_authenticate));
  EXPECT_EQ(HELM_CALL_V1_0_SIZE, sizeof(helm_call));
  EXPECT_EQ(HELM_EVENT_V1_0_SIZE, sizeof(helm_event));
  EXPECT_EQ(HELM_ERROR_V1_0_SIZE, sizeof(helm_error));
  EXPECT_EQ(HELM_HTTP_HEADER_V1_0_SIZE, sizeof(helm_http_header));
  EXPECT_EQ(HELM_HTTP_REQUEST_V1_0_SIZE, offsetof(helm_http_request, organization_id));
  EXPECT_EQ(HELM_HTTP_REQUEST_V1_2_SIZE, sizeof(helm_http_request));
  EXPECT_EQ(HELM_HTTP_RESPONSE_V1_0_SIZE, sizeof(helm_http_response));
}

#if defined(__x86_64__) || defined(__aarch64__)
// The LP64 layout of ABI 1.2 (1.0, the 1.1 transport fields, the 1.2 audit function), pinned: a
// change here breaks every plugin already built.
TEST(PluginAbi, Lp64LayoutOfVersion1_1IsPinned) {
  EXPECT_EQ(HELM_PLUGIN_V1_0_SIZE, 80U);
  EXPECT_EQ(HELM_HOST_API_V1_0_SIZE, 112U);
  EXPECT_EQ(sizeof(helm_plugin_v1), 96U);
  EXPECT_EQ(offsetof(helm_plugin_v1, struct_size), 4U);
  EXPECT_EQ(offsetof(helm_plugin_v1, create), 16U);
  EXPECT_EQ(HELM_HOST_API_V1_1_SIZE, 144U);
  EXPECT_EQ(sizeof(helm_host_api), 152U);
  EXPECT_EQ(sizeof(helm_call), 104U);
  EXPECT_EQ(sizeof(helm_event), 72U);
  EXPECT_EQ(sizeof(helm_error), 520U);
  EXPECT_EQ(sizeof(helm_http_header), 40U);
  EXPECT_EQ(HELM_HTTP_REQUEST_V1_0_SIZE, 72U);
  EXPECT_EQ(sizeof(helm_http_request), 88U);
  EXPECT_EQ(sizeof(helm_http_response), 40U);
}
#endif

TEST(PluginAbi, HasFieldIsTrueOnlyWhenStructSizeCoversTheField) {
  const std::size_t end = offsetof(helm_host_api, session_info) + sizeof(helm_session_info_fn);
  EXPECT_TRUE(helm_c_has_field(static_cast<uint32_t>(end)));
  EXPECT_FALSE(helm_c_has_field(static_cast<uint32_t>(end - 1)));
  EXPECT_FALSE(helm_c_has_field(8));

  helm_plugin_v1 plugin{};
  plugin.struct_size = static_cast<uint32_t>(offsetof(helm_plugin_v1, invoke));
  EXPECT_TRUE(HELM_HAS_FIELD(&plugin, helm_plugin_v1, configure));
  EXPECT_FALSE(HELM_HAS_FIELD(&plugin, helm_plugin_v1, invoke));
}

TEST(PluginAbi, StatusCodesKeepTheirNumbers) {
  EXPECT_EQ(HELM_STATUS_OK, 0);
  EXPECT_EQ(HELM_STATUS_INVALID_INPUT, 1);
  EXPECT_EQ(HELM_STATUS_NOT_FOUND, 2);
  EXPECT_EQ(HELM_STATUS_UNAUTHORIZED, 3);
  EXPECT_EQ(HELM_STATUS_FORBIDDEN, 4);
  EXPECT_EQ(HELM_STATUS_CONFLICT, 5);
  EXPECT_EQ(HELM_STATUS_UPSTREAM_UNAUTHORIZED, 6);
  EXPECT_EQ(HELM_STATUS_UPSTREAM_RATE_LIMITED, 7);
  EXPECT_EQ(HELM_STATUS_UPSTREAM_UNAVAILABLE, 8);
  EXPECT_EQ(HELM_STATUS_UPSTREAM_ERROR, 9);
  EXPECT_EQ(HELM_STATUS_TIMEOUT, 10);
  EXPECT_EQ(HELM_STATUS_CANCELLED, 11);
  EXPECT_EQ(HELM_STATUS_UNSUPPORTED, 12);
  EXPECT_EQ(HELM_STATUS_UNAVAILABLE, 13);
  EXPECT_EQ(HELM_STATUS_RESOURCE_EXHAUSTED, 14);
  EXPECT_EQ(HELM_STATUS_INTERNAL, 15);
  EXPECT_EQ(HELM_ERROR_MESSAGE_CAPACITY, 512);
}

}  // namespace
