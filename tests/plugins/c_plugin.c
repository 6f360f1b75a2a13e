/*
 * A plugin written in plain C99 against helm/plugin_abi.h alone: proof that the ABI needs no C++,
 * and the source of several deliberately broken test plugins, chosen at compile time:
 *
 *   HELM_TEST_PLUGIN_NAME   the name the entry struct reports (required)
 *   HELM_TEST_ABI_MAJOR     report this ABI major instead of HELM_PLUGIN_ABI_MAJOR
 *   HELM_TEST_STRUCT_SIZE   report this struct_size instead of sizeof(helm_plugin_v1)
 *   HELM_TEST_NO_ENTRY      export the entry under another name, so helm_plugin_entry is missing
 *
 * Operations of the working variant:
 *   ping            completes {"pong":true}
 *   complete.twice  completes twice (a protocol violation the host must absorb)
 *   bad.json        completes OK with output that is not JSON
 *   hang            never completes (the host must abandon, not destroy, the instance)
 *   anything else   completes UNSUPPORTED
 * start, stop, configure, cancel and on_event are NULL, which the ABI allows.
 */
#include <helm/plugin_abi.h>

#include <stdlib.h>
#include <string.h>

#ifndef HELM_TEST_PLUGIN_NAME
#error "define HELM_TEST_PLUGIN_NAME"
#endif
#ifndef HELM_TEST_ABI_MAJOR
#define HELM_TEST_ABI_MAJOR HELM_PLUGIN_ABI_MAJOR
#endif
#ifndef HELM_TEST_STRUCT_SIZE
#define HELM_TEST_STRUCT_SIZE sizeof(helm_plugin_v1)
#endif

struct helm_plugin_instance {
  const helm_host_api* host;
};

static void set_error(helm_error* err, helm_status status, const char* message) {
  size_t length;
  if (err == NULL || !HELM_HAS_FIELD(err, helm_error, message)) return;
  err->status = status;
  length = strlen(message);
  if (length >= sizeof err->message) length = sizeof err->message - 1;
  memcpy(err->message, message, length);
  err->message[length] = '\0';
}

static helm_status c_create(const helm_host_api* host, const char* config_json, size_t config_len,
                            helm_plugin_instance** out_instance, helm_error* err) {
  helm_plugin_instance* instance;
  (void)config_json;
  (void)config_len;
  instance = (helm_plugin_instance*)malloc(sizeof *instance);
  if (instance == NULL) {
    set_error(err, HELM_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    return HELM_STATUS_RESOURCE_EXHAUSTED;
  }
  instance->host = host;
  *out_instance = instance;
  return HELM_STATUS_OK;
}

static void c_destroy(helm_plugin_instance* instance) {
  free(instance);
}

static int op_is(const helm_call* call, const char* name) {
  return call->op_len == strlen(name) && memcmp(call->op, name, call->op_len) == 0;
}

static void c_invoke(helm_plugin_instance* instance, const helm_call* call) {
  static const char kPong[] = "{\"pong\":true}";
  static const char kNotJson[] = "this is not JSON";
  static const char kUnknown[] = "unknown operation";
  (void)instance;
  if (op_is(call, "ping")) {
    call->complete(call->call_ctx, HELM_STATUS_OK, kPong, sizeof kPong - 1);
  } else if (op_is(call, "complete.twice")) {
    call->complete(call->call_ctx, HELM_STATUS_OK, kPong, sizeof kPong - 1);
    call->complete(call->call_ctx, HELM_STATUS_OK, kPong, sizeof kPong - 1);
  } else if (op_is(call, "bad.json")) {
    call->complete(call->call_ctx, HELM_STATUS_OK, kNotJson, sizeof kNotJson - 1);
  } else if (op_is(call, "hang")) {
    /* Deliberately never completed. */
  } else {
    call->complete(call->call_ctx, HELM_STATUS_UNSUPPORTED, kUnknown, sizeof kUnknown - 1);
  }
}

static const helm_plugin_v1 kPlugin = {
    HELM_TEST_ABI_MAJOR,
    HELM_PLUGIN_ABI_MINOR,
    (uint32_t)(HELM_TEST_STRUCT_SIZE),
    HELM_TEST_PLUGIN_NAME,
    c_create,
    NULL, /* start */
    NULL, /* stop */
    c_destroy,
    NULL, /* configure */
    c_invoke,
    NULL, /* cancel */
    NULL, /* on_event */
    NULL, /* device_send (ABI 1.1) */
    NULL  /* device_close (ABI 1.1) */
};

#ifdef HELM_TEST_NO_ENTRY
/* The right function under the wrong name: the host must report the missing symbol. */
HELM_PLUGIN_EXPORT const helm_plugin_v1* helm_plugin_entry_v0(void);
HELM_PLUGIN_EXPORT const helm_plugin_v1* helm_plugin_entry_v0(void) {
  return &kPlugin;
}
#else
HELM_PLUGIN_EXPORT const helm_plugin_v1* helm_plugin_entry(void) {
  return &kPlugin;
}
#endif
