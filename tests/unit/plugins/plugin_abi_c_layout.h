/* The layout of the ABI structs as a C compiler sees it (see plugin_abi_c_layout.c). */
#ifndef HELM_TESTS_PLUGIN_ABI_C_LAYOUT_H
#define HELM_TESTS_PLUGIN_ABI_C_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct helm_c_layout_entry {
  const char* name; /* "type" or "type.field" */
  size_t offset;    /* 0 for a whole type */
  size_t size;
} helm_c_layout_entry;

const helm_c_layout_entry* helm_c_layout(size_t* count);
size_t helm_c_plugin_v1_0_size(void);
size_t helm_c_host_api_v1_0_size(void);
size_t helm_c_call_v1_0_size(void);
int helm_c_has_field(uint32_t struct_size);

#ifdef __cplusplus
}
#endif

#endif
