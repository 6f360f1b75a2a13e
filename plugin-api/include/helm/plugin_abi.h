/**
 * @file helm/plugin_abi.h
 * @brief The Helm Hub plugin ABI: everything that crosses the boundary between helm-hub and a
 * plugin shared library. Pure C (C99 or later, or any C++), so a plugin may be built with any
 * compiler and any C++ standard library, and nothing C++ ever crosses the boundary.
 *
 * ---------------------------------------------------------------------------------------------
 * 1. VERSIONS AND COMPATIBILITY
 * ---------------------------------------------------------------------------------------------
 * The ABI is versioned MAJOR.MINOR (HELM_PLUGIN_ABI_MAJOR / HELM_PLUGIN_ABI_MINOR below).
 *
 *  - A MINOR release only appends: new fields at the end of structs, new status codes, new log
 *    levels. It never removes, reorders, retypes or re-means anything that exists.
 *  - A MAJOR release may change anything except the first eight bytes of the entry struct
 *    (abi_major, abi_minor, struct_size), which are frozen forever so that any hub can read the
 *    version of any plugin and refuse an unknown major with a clear error.
 *
 * The rule for plugin authors and hub operators:
 *  - A plugin built against 1.x loads in every hub implementing 1.y with y >= x.
 *  - A plugin built against 1.x also works in an older 1.y hub (y < x) as long as it uses
 *    nothing that hub lacks. Each side learns what the other knows from `struct_size`: a field
 *    exists for the reader only if the writer's struct_size covers it (HELM_HAS_FIELD below).
 *  - A hub refuses a plugin whose abi_major differs from its own, naming both versions.
 *
 * ---------------------------------------------------------------------------------------------
 * 2. CONVENTIONS THAT APPLY TO EVERY DECLARATION IN THIS FILE
 * ---------------------------------------------------------------------------------------------
 * Struct sizes. Every struct starts with `uint32_t struct_size` (the entry struct with its
 * version first, then struct_size). Whoever fills a struct sets struct_size to sizeof(the
 * struct) as *it* was compiled. Whoever reads it touches a field only if struct_size covers it;
 * fields past the end are treated as absent (NULL pointer, zero number). Nobody ever writes a
 * field beyond the struct_size set by the struct's owner. The HELM_*_V1_0_SIZE macros give the
 * smallest size that a 1.0 peer may report; a smaller struct_size is a broken peer.
 *
 * Arrays of structs are passed as arrays of pointers (`const T* const* items; size_t count`),
 * so every element carries its own struct_size and there is never a question of stride.
 *
 * Integers. Only fixed-width integers and size_t cross the boundary; enums are carried as
 * int32_t (their C enum types only name the constants). A receiver must accept values it does
 * not know: an unknown status is handled as HELM_STATUS_INTERNAL, an unknown log level as the
 * nearest known one.
 *
 * Strings are UTF-8, passed as (pointer, length in bytes); the length never counts a NUL. Every
 * string the HOST passes is also NUL-terminated (data[len] == '\0') for the convenience of C
 * code; strings the PLUGIN passes need not be. A length of 0 with a NULL pointer is the empty
 * string. JSON is a complete UTF-8 JSON document passed the same way.
 *
 * Ownership words used on every pointer below:
 *  - "borrowed for the call": valid only until the function it was passed to returns; copy
 *    anything you need to keep.
 *  - "borrowed until X": valid until event X, then dangling.
 *  - "owned by the plugin" / "owned by the host": only that side frees it, through the function
 *    named next to it, never with free() or delete.
 *
 * Threads:
 *  - "host worker thread": a thread of the hub's worker pool. Blocking there is permitted but
 *    costs the hub capacity, so block only briefly (milliseconds). The host never calls into a
 *    plugin from its network I/O threads.
 *  - "any thread": any thread at all, including threads the plugin created itself, and
 *    including the thread that is currently inside a call from the host into the plugin.
 *
 * No unwinding across the boundary. No function declared here, on either side, may let a C++
 * exception, a longjmp or any other unwinding escape it. A plugin catches everything at its own
 * edge (the C++ layer in helm/plugin.hpp does this for you) and reports it as a status.
 *
 * Re-entrancy. A plugin may call any host function from inside any plugin function, and may
 * complete a call before invoke() returns. Host functions never call back into the plugin
 * synchronously, except where documented (a bytes sink is called before its host function
 * returns).
 *
 * Secrets. Secret bytes never appear in a log message, an event, an error message or an
 * operation's output.
 */
#ifndef HELM_PLUGIN_ABI_H
#define HELM_PLUGIN_ABI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ============================================================================================
 * Versions, symbol name, helper macros
 * ========================================================================================== */

/** Major version of this ABI. A hub loads only plugins whose abi_major equals its own. */
#define HELM_PLUGIN_ABI_MAJOR 1
/** Minor version of this ABI. Grows whenever anything is appended. */
#define HELM_PLUGIN_ABI_MINOR 2

/** Name of the one symbol a plugin library exports (see helm_plugin_entry at the end). */
#define HELM_PLUGIN_ENTRY_SYMBOL "helm_plugin_entry"

/** Gives a symbol default visibility, so it is exported even under -fvisibility=hidden. */
#if defined(_WIN32)
#define HELM_PLUGIN_EXPORT __declspec(dllexport)
#elif defined(__GNUC__) || defined(__clang__)
#define HELM_PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#define HELM_PLUGIN_EXPORT
#endif

/**
 * Whether the struct at `ptr` (of type `type`) is large enough to contain `field`, judged by
 * the struct_size its owner set. Use it before reading any field added after 1.0, and before
 * writing any field of a struct the peer allocated (helm_error).
 *   if (HELM_HAS_FIELD(host, helm_host_api, session_info)) { ... }
 */
#define HELM_HAS_FIELD(ptr, type, field) \
  ((ptr)->struct_size >= offsetof(type, field) + sizeof((ptr)->field))

/* ============================================================================================
 * Status codes and errors
 * ========================================================================================== */

/**
 * Outcome of an operation or a host/plugin function. Carried as int32_t; the enum only names
 * the values. Values are stable forever; new ones are only appended. The host maps them to REST
 * problem types, so pick the most specific one that is true.
 */
typedef int32_t helm_status;
enum helm_status_code {
  /** Success. */
  HELM_STATUS_OK = 0,
  /** The input or configuration is malformed or makes no sense. Retrying will not help. */
  HELM_STATUS_INVALID_INPUT = 1,
  /** The thing asked for (device, ticket, secret, key) does not exist. */
  HELM_STATUS_NOT_FOUND = 2,
  /** The session is not, or no longer, valid (expired, logged out, account disabled). */
  HELM_STATUS_UNAUTHORIZED = 3,
  /** The session is valid but may not do this, or the plugin did not declare or was not granted
   *  the capability (secret, outbound host, event topic) it tried to use. */
  HELM_STATUS_FORBIDDEN = 4,
  /** The request conflicts with the current state (already exists, version mismatch). */
  HELM_STATUS_CONFLICT = 5,
  /** The vendor rejected the credentials the plugin used (its 401/403). */
  HELM_STATUS_UPSTREAM_UNAUTHORIZED = 6,
  /** The vendor is rate limiting (its 429). Retry later. */
  HELM_STATUS_UPSTREAM_RATE_LIMITED = 7,
  /** The vendor could not be reached or answered 5xx (DNS, connect, TLS, 502/503/504). */
  HELM_STATUS_UPSTREAM_UNAVAILABLE = 8,
  /** The vendor answered with an error or a shape the plugin does not understand. */
  HELM_STATUS_UPSTREAM_ERROR = 9,
  /** The deadline passed before the work finished. */
  HELM_STATUS_TIMEOUT = 10,
  /** The work was cancelled (cancel(), timer_cancel(), or the instance is stopping). */
  HELM_STATUS_CANCELLED = 11,
  /** Not implemented: an unknown operation, an absent optional function, or a configuration
   *  change the plugin refuses to apply at run time. */
  HELM_STATUS_UNSUPPORTED = 12,
  /** Temporarily unable to serve (not started yet, stopping, a dependency is down). */
  HELM_STATUS_UNAVAILABLE = 13,
  /** Out of memory, a queue is full, or a size limit was exceeded. */
  HELM_STATUS_RESOURCE_EXHAUSTED = 14,
  /** A bug: a broken invariant, an exception caught at the boundary. Unknown codes mean this. */
  HELM_STATUS_INTERNAL = 15
};

/** Capacity of helm_error.message in bytes, including the terminating NUL. Fixed forever. */
#define HELM_ERROR_MESSAGE_CAPACITY 512

/**
 * Details of a failure, filled by a callee for its caller.
 *
 * Ownership: allocated and owned by the CALLER (usually on its stack), which sets struct_size
 * (and should zero the rest). Passed as `helm_error* err`, it is borrowed for the call: the
 * callee writes it only before returning, only on failure, and never beyond struct_size. A
 * callee given err == NULL writes nothing. Thread: the thread making the call.
 */
typedef struct helm_error {
  /** Set by the caller: sizeof(helm_error) as the caller was compiled. */
  uint32_t struct_size;
  /** Written by the callee on failure: the same value the function returns. */
  helm_status status;
  /** Written by the callee on failure: what went wrong and what to do, for a person. UTF-8,
   *  always NUL-terminated, truncated at a character boundary to fit. Never contains secrets. */
  char message[HELM_ERROR_MESSAGE_CAPACITY];
} helm_error;

#define HELM_ERROR_V1_0_SIZE (offsetof(helm_error, message) + HELM_ERROR_MESSAGE_CAPACITY)

/** Log severities, carried as int32_t. */
typedef int32_t helm_log_level;
enum helm_log_level_code {
  HELM_LOG_TRACE = 0,
  HELM_LOG_DEBUG = 1,
  HELM_LOG_INFO = 2,
  HELM_LOG_WARN = 3,
  HELM_LOG_ERROR = 4
};

/* ============================================================================================
 * Opaque handles
 * ========================================================================================== */

/**
 * One instance of a plugin, defined by the plugin. Created by helm_plugin_v1.create, owned by
 * the plugin, and freed only by helm_plugin_v1.destroy. The host never looks inside it.
 */
typedef struct helm_plugin_instance helm_plugin_instance;

/**
 * The session a call runs in (who, which organization, which roles, until when), defined by the
 * host. Owned by the host; borrowed by the plugin from invoke() until the plugin calls that
 * call's complete(). Pass it back to host functions to act on behalf of the session; never
 * dereference it. Using it after completing the call is a bug the host may detect.
 */
typedef struct helm_session helm_session;

/**
 * A released secret, defined by the host. Owned by the plugin from a successful
 * release_secret() until it passes the lease to release_lease(), exactly once.
 */
typedef struct helm_secret_lease helm_secret_lease;

/* ============================================================================================
 * Host services (implemented by helm-hub, called by the plugin)
 * ========================================================================================== */

/**
 * Writes one log line attributed to the plugin instance.
 * host_ctx: helm_host_api.host_ctx. message: borrowed for the call, need not be NUL-terminated,
 * must not contain secrets. Thread: any thread, from the start of create() until destroy()
 * returns. Never blocks for long.
 */
typedef void (*helm_log_fn)(void* host_ctx, helm_log_level level, const char* message,
                            size_t message_len);

/**
 * Releases the current value of the secret `name` of the session's organization to the plugin.
 * The host checks, on every release, that the session is still valid, that `name` matches a
 * glob the plugin declared in capabilities.secrets, and that the organization granted it; each
 * release is audited. Returns HELM_STATUS_OK and stores a lease in *out_lease, or returns
 * UNAUTHORIZED (session no longer valid), FORBIDDEN (not declared or not granted), NOT_FOUND
 * (no such secret) or another status, fills err, and leaves *out_lease untouched.
 * session: the session of the call on whose behalf the secret is needed, borrowed (see
 * helm_session); never NULL, because secrets are released only inside a session (a NULL session
 * gets UNAUTHORIZED). name: borrowed for the call. out_lease: written only on
 * success; the lease is then owned by the plugin. err: borrowed for the call, may be NULL.
 * Thread: any thread; blocks while the vault is read and decrypted, so call it from a host
 * worker thread or one of the plugin's own threads.
 */
typedef helm_status (*helm_release_secret_fn)(void* host_ctx, const helm_session* session,
                                              const char* name, size_t name_len,
                                              helm_secret_lease** out_lease, helm_error* err);

/**
 * The plaintext bytes of a lease: owned by the host, read-only, valid until release_lease(),
 * and followed by one NUL byte that secret_size() does not count. The plaintext lives for one
 * call: when the call the lease was released for completes, the host zeroes any lease still
 * open (secret_size() then returns 0), so release leases before completing. Thread: any thread.
 */
typedef const uint8_t* (*helm_secret_data_fn)(const helm_secret_lease* lease);

/** Length in bytes of the plaintext of a lease. Thread: any thread. */
typedef size_t (*helm_secret_size_fn)(const helm_secret_lease* lease);

/**
 * Ends a lease: the host zeroes and frees the plaintext. Call exactly once per lease; the lease
 * pointer dangles afterwards. Thread: any thread.
 */
typedef void (*helm_release_lease_fn)(helm_secret_lease* lease);

/**
 * One HTTP header. Used inside requests (owned by the plugin, borrowed by the host for the
 * http_request() call) and responses (owned by the host, borrowed by the plugin for the
 * completion callback). name and value: UTF-8 bytes as they go on the wire.
 */
typedef struct helm_http_header {
  uint32_t struct_size;
  const char* name;
  size_t name_len;
  const char* value;
  size_t value_len;
} helm_http_header;

#define HELM_HTTP_HEADER_V1_0_SIZE (offsetof(helm_http_header, value_len) + sizeof(size_t))

/**
 * An outbound HTTPS request, brokered by the host. Owned by the plugin; the host copies what it
 * needs before http_request() returns, so the struct, the header array and every pointer in it
 * are borrowed for that call only.
 */
typedef struct helm_http_request {
  uint32_t struct_size;
  /** Whole-request deadline in milliseconds; 0 means the host's default. The host may cap it. */
  uint32_t timeout_ms;
  /** "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD". */
  const char* method;
  size_t method_len;
  /** Absolute https:// URL. Its host (and port) must match capabilities.outbound_hosts. */
  const char* url;
  size_t url_len;
  /** header_count pointers to headers, in order. Host, Content-Length and Connection are set by
   *  the host and refused here. */
  const helm_http_header* const* headers;
  size_t header_count;
  /** Request body, any bytes; NULL with body_len 0 for none. */
  const uint8_t* body;
  size_t body_len;
  /* ---- ABI 1.2: check the host's abi_minor >= 2 before relying on it ---- */
  /** For a request made without a session (session NULL: an event handler, a timer), the
   *  organization it is made for (a UUID; length 0: none). The host then applies that
   *  organization's settings for the plugin as for a call in its session — its ca_pem and the
   *  hosts of capabilities.outbound_hosts_from_org_config — provided the plugin is turned on for
   *  the organization. Ignored when a session is given (the session's organization applies). */
  const char* organization_id;
  size_t organization_id_len;
} helm_http_request;

#define HELM_HTTP_REQUEST_V1_0_SIZE (offsetof(helm_http_request, body_len) + sizeof(size_t))
#define HELM_HTTP_REQUEST_V1_2_SIZE \
  (offsetof(helm_http_request, organization_id_len) + sizeof(size_t))

/**
 * An HTTP response as the vendor sent it. Owned by the host; the struct, the header array and
 * every pointer in them are borrowed for the duration of the completion callback only. The host
 * does not follow redirects: a 3xx is returned as is.
 */
typedef struct helm_http_response {
  uint32_t struct_size;
  /** HTTP status code, 100..599. */
  uint32_t status_code;
  const helm_http_header* const* headers;
  size_t header_count;
  const uint8_t* body;
  size_t body_len;
} helm_http_response;

#define HELM_HTTP_RESPONSE_V1_0_SIZE (offsetof(helm_http_response, body_len) + sizeof(size_t))

/**
 * Completion of an accepted http_request(). Called by the host exactly once, on a host worker
 * thread, never before http_request() has returned.
 * user: the value given to http_request(), returned untouched; the plugin owns what it points
 * to. status: HELM_STATUS_OK when an HTTP response arrived, whatever its HTTP status code (then
 * response is non-NULL and error is NULL); otherwise TIMEOUT, CANCELLED (timer or instance
 * stopping), UPSTREAM_UNAVAILABLE (DNS, connect, TLS), RESOURCE_EXHAUSTED (response larger than
 * the host allows) or another status, with response NULL and error non-NULL. response and
 * error: owned by the host, borrowed for the duration of this callback.
 */
typedef void (*helm_http_complete_fn)(void* user, helm_status status,
                                      const helm_http_response* response, const helm_error* error);

/**
 * Starts an outbound HTTPS request. The host enforces capabilities.outbound_hosts, TLS
 * verification (with the organization's CA when it configured one) and its own size and time
 * limits. Returns HELM_STATUS_OK when the request was accepted: `complete` will then be called
 * exactly once. Returns another status (FORBIDDEN for an undeclared host, INVALID_INPUT for a
 * malformed request, ...) and fills err when it was refused: `complete` is then never called.
 * session: borrowed (see helm_session), or NULL for a request not made on behalf of a call.
 * request: borrowed for the call. complete: plugin code; must stay callable until it has been
 * called. user: opaque to the host. err: borrowed for the call, may be NULL.
 * Thread: any thread; does not block.
 */
typedef helm_status (*helm_http_request_fn)(void* host_ctx, const helm_session* session,
                                            const helm_http_request* request,
                                            helm_http_complete_fn complete, void* user,
                                            helm_error* err);

/**
 * Publishes an event to the hub's event bus. topic must be declared in
 * capabilities.events.publish (else FORBIDDEN). organization_id scopes the event to one
 * organization; length 0 publishes hub-wide. topic, organization_id, payload_json: borrowed for
 * the call. err: borrowed for the call, may be NULL. Thread: any thread; does not block.
 */
typedef helm_status (*helm_publish_event_fn)(void* host_ctx, const char* organization_id,
                                             size_t organization_id_len, const char* topic,
                                             size_t topic_len, const char* payload_json,
                                             size_t payload_len, helm_error* err);

/**
 * Receives bytes from a host function. Called at most once, synchronously, on the thread that
 * called the host function and before that function returns. data: owned by the host, borrowed
 * for the duration of the sink call, not NUL-terminated. sink_ctx: the plugin's, untouched.
 */
typedef void (*helm_bytes_sink_fn)(void* sink_ctx, const uint8_t* data, size_t size);

/**
 * Reads a value from the plugin's private key-value store, which the host persists. Keys are
 * scoped to the plugin and to organization_id (length 0: hub-wide). On HELM_STATUS_OK the value
 * has been passed to `sink` exactly once; NOT_FOUND when the key is absent (sink not called).
 * organization_id, key: borrowed for the call; key is 1..256 bytes of UTF-8. err: borrowed for
 * the call, may be NULL. Thread: any thread; blocks on the database.
 */
typedef helm_status (*helm_kv_get_fn)(void* host_ctx, const char* organization_id,
                                      size_t organization_id_len, const char* key, size_t key_len,
                                      helm_bytes_sink_fn sink, void* sink_ctx, helm_error* err);

/**
 * Stores (value non-NULL) or deletes (value NULL) a key in the plugin's private key-value store.
 * A non-NULL value with value_len 0 stores an empty value. The host may refuse large values
 * with RESOURCE_EXHAUSTED. All pointers borrowed for the call; err may be NULL. Thread: any
 * thread; blocks on the database.
 */
typedef helm_status (*helm_kv_put_fn)(void* host_ctx, const char* organization_id,
                                      size_t organization_id_len, const char* key, size_t key_len,
                                      const uint8_t* value, size_t value_len, helm_error* err);

/**
 * A timer callback. Called by the host exactly once per accepted timer_schedule(), on a host
 * worker thread, never before timer_schedule() has returned: status HELM_STATUS_OK when the
 * delay elapsed, HELM_STATUS_CANCELLED after timer_cancel() or when the instance is stopping.
 * user: the plugin's, untouched.
 */
typedef void (*helm_timer_fn)(void* user, helm_status status);

/**
 * Schedules `fn` after delay_ms milliseconds (0: as soon as a worker is free). On
 * HELM_STATUS_OK stores a non-zero id in *out_timer_id (if out_timer_id is non-NULL) and `fn`
 * will be called exactly once; on failure fills err and never calls `fn`. fn: plugin code; must
 * stay callable until called. Thread: any thread; does not block.
 */
typedef helm_status (*helm_timer_schedule_fn)(void* host_ctx, uint64_t delay_ms, helm_timer_fn fn,
                                              void* user, uint64_t* out_timer_id, helm_error* err);

/**
 * Cancels a timer: if it has not fired yet, its callback is called with HELM_STATUS_CANCELLED
 * (soon, on a host worker thread, not from inside timer_cancel). Unknown or already fired ids are
 * ignored. Thread: any thread; does not block.
 */
typedef void (*helm_timer_cancel_fn)(void* host_ctx, uint64_t timer_id);

/**
 * Describes a session as a JSON object passed to `sink`:
 *   {"principal_kind": "technician" | "service", "principal_id": "...",
 *    "organization_id": "...", "roles": ["..."], "expires_at": "RFC 3339 time"}
 * Further keys may appear. Returns UNAUTHORIZED if the session is no longer valid.
 * session: borrowed (see helm_session). err: borrowed for the call, may be NULL.
 * Thread: any thread; does not block for long.
 */
typedef helm_status (*helm_session_info_fn)(void* host_ctx, const helm_session* session,
                                            helm_bytes_sink_fn sink, void* sink_ctx,
                                            helm_error* err);

/* --------------------------------------------------------------------------------------------
 * Agent transport (ABI 1.1). Offered only to a plugin whose manifest declares
 * "capabilities": {"transport": true}; every other plugin gets FORBIDDEN / nothing happens.
 * A transport plugin terminates the endpoint agents' connections (see the agent protocol) and
 * hands the hub what it must know; the hub owns devices, tokens and the command outbox.
 *
 * Connections are named by a `connection_id` the plugin chooses: non-zero, never reused within
 * the instance. The hub uses it to tell an old connection of a device from a newer one.
 * ------------------------------------------------------------------------------------------ */

/**
 * Result of device_authenticate(). Called exactly once per accepted device_authenticate(), on a
 * host worker thread, never before device_authenticate() has returned. status HELM_STATUS_OK:
 * device_json is {"device_id": "...", "organization_id": "...", "heartbeat_s": N} (further keys
 * may appear); UNAUTHORIZED: unknown, revoked or malformed token (device_json is a message);
 * UNAVAILABLE: the hub cannot check now (database down): refuse the connection with a 503.
 * device_json: owned by the host, borrowed for the callback, NUL-terminated.
 */
typedef void (*helm_device_auth_complete_fn)(void* user, helm_status status,
                                             const char* device_json, size_t device_json_len);

/**
 * Checks a device token presented by a connecting agent (the bearer token of the upgrade
 * request). token: borrowed for the call. complete: plugin code, callable until called.
 * Returns HELM_STATUS_OK when the check was accepted (complete() will be called once), or
 * another status with err filled (complete() is never called). Thread: any thread; does not
 * block: the check runs on a host worker thread.
 */
typedef helm_status (*helm_device_authenticate_fn)(void* host_ctx, const char* token,
                                                   size_t token_len,
                                                   helm_device_auth_complete_fn complete,
                                                   void* user, helm_error* err);

/**
 * Tells the hub about one connection: kind HELM_DEVICE_CONNECTED after the agent's `hello`
 * (frame_json is the hello frame), HELM_DEVICE_FRAME for every `ack`, `result` and `event` frame
 * (frame_json is the frame as received, a JSON object), HELM_DEVICE_DISCONNECTED once when the
 * connection is gone (frame_json empty). The plugin answers `hb` itself and does not pass it
 * on. device_id: as returned by device_authenticate(). All pointers borrowed for the call.
 * Thread: any thread; does not block (the hub queues the work). Calls for one connection_id
 * are made in order, from one thread at a time.
 */
typedef int32_t helm_device_event_kind;
enum helm_device_event_kind_code {
  HELM_DEVICE_CONNECTED = 0,
  HELM_DEVICE_FRAME = 1,
  HELM_DEVICE_DISCONNECTED = 2
};
typedef void (*helm_device_event_fn)(void* host_ctx, helm_device_event_kind kind,
                                     uint64_t connection_id, const char* device_id,
                                     size_t device_id_len, const char* frame_json,
                                     size_t frame_len);

/**
 * Tells the hub where the transport listens, once it is listening (and again if that changes):
 * url is the agents' transport URL with the host part "0.0.0.0" / "[::]" when bound to all
 * addresses, e.g. "wss://0.0.0.0:8443/agent/v1". The hub reports it to enrolling agents,
 * replacing an unspecific host with the name the agent used to reach the hub. Borrowed for the
 * call. Thread: any thread.
 */
typedef void (*helm_transport_listening_fn)(void* host_ctx, const char* url, size_t url_len);

/**
 * Hub facts a transport needs, as JSON passed to `sink`: {"tls_cert_file": "...",
 * "tls_key_file": "...", "heartbeat_s": N, "max_frame_bytes": N}. The certificate is the API
 * listener's, so one pin or CA covers both. Thread: any thread; does not block.
 */
typedef helm_status (*helm_transport_settings_fn)(void* host_ctx, helm_bytes_sink_fn sink,
                                                  void* sink_ctx, helm_error* err);

/* --------------------------------------------------------------------------------------------
 * Audit (ABI 1.2). Offered to every plugin.
 * ------------------------------------------------------------------------------------------ */

/**
 * Appends a record to the hub's hash-chained audit log, for what a plugin did on its own that an
 * MSP must be able to account for (a workspace destroyed by a reconciler, a credential rotated).
 * The action is recorded as "plugin.<plugin name>.<action>"; action must match
 * ^[a-z][a-z0-9_.-]{0,63}$. session: the session the act belongs to, or NULL (the actor is then
 * the plugin itself); organization_id: the organization it concerns (a UUID), or empty for the
 * session's (or a hub-wide act). detail_json: a small JSON object of non-secret context (at most
 * 4 KiB; keys that look like secrets are refused), or empty. All pointers borrowed for the call.
 * Returns OK once the record is queued for writing; INVALID_INPUT with err filled otherwise.
 * Thread: any thread; does not block.
 */
typedef helm_status (*helm_audit_fn)(void* host_ctx, const helm_session* session,
                                     const char* organization_id, size_t organization_id_len,
                                     const char* action, size_t action_len, const char* detail_json,
                                     size_t detail_json_len, helm_error* err);

/**
 * The services the host offers one plugin instance. The host builds one per instance and passes
 * it to create(); every call a plugin makes through it is attributed to that instance and
 * checked against its manifest's capabilities.
 *
 * Ownership: owned by the host; borrowed by the plugin from the start of create() until
 * destroy() returns, so the plugin may keep the pointer for that long. Read-only for the
 * plugin. Every function pointer up to HELM_HOST_API_V1_0_SIZE is non-NULL in any 1.x host (a
 * host without a service answers HELM_STATUS_UNSUPPORTED); fields beyond struct_size are absent.
 */
typedef struct helm_host_api {
  /** sizeof(helm_host_api) as the host was compiled. */
  uint32_t struct_size;
  /** The ABI version the host implements; abi_major equals the plugin's. */
  uint16_t abi_major;
  uint16_t abi_minor;
  /** Opaque; passed back as the first argument of every function below that takes it. */
  void* host_ctx;
  helm_log_fn log;
  helm_release_secret_fn release_secret;
  helm_secret_data_fn secret_data;
  helm_secret_size_fn secret_size;
  helm_release_lease_fn release_lease;
  helm_http_request_fn http_request;
  helm_publish_event_fn publish_event;
  helm_kv_get_fn kv_get;
  helm_kv_put_fn kv_put;
  helm_timer_schedule_fn timer_schedule;
  helm_timer_cancel_fn timer_cancel;
  helm_session_info_fn session_info;
  /* ---- ABI 1.1: check with HELM_HAS_FIELD before use ---- */
  helm_device_authenticate_fn device_authenticate;
  helm_device_event_fn device_event;
  helm_transport_listening_fn transport_listening;
  helm_transport_settings_fn transport_settings;
  /* ---- ABI 1.2: check with HELM_HAS_FIELD before use ---- */
  helm_audit_fn audit;
} helm_host_api;

#define HELM_HOST_API_V1_0_SIZE \
  (offsetof(helm_host_api, session_info) + sizeof(helm_session_info_fn))
#define HELM_HOST_API_V1_1_SIZE \
  (offsetof(helm_host_api, transport_settings) + sizeof(helm_transport_settings_fn))
#define HELM_HOST_API_V1_2_SIZE (offsetof(helm_host_api, audit) + sizeof(helm_audit_fn))

/* ============================================================================================
 * Calls and events (host -> plugin)
 * ========================================================================================== */

/**
 * Completes a call. The plugin must call it exactly once per invoke(), from any thread, at any
 * time after invoke() began (even before invoke() returns), and before destroy() is called.
 * call_ctx: helm_call.call_ctx, opaque; the host may free what it refers to during this call,
 * so it (and the call's session) must not be used afterwards.
 * status: HELM_STATUS_OK, then `output` is the operation's result as a JSON document; any
 * other status, then `output` is a message for a person (UTF-8, not JSON, may be empty, never
 * secrets). output: borrowed for the call (the host copies it); need not be NUL-terminated.
 * Does not block. Completing a call twice is a plugin bug that the host ignores and reports.
 */
typedef void (*helm_call_complete_fn)(void* call_ctx, helm_status status, const char* output,
                                      size_t output_len);

/**
 * One invocation of a named operation. Owned by the host and borrowed by the plugin for the
 * duration of invoke() only: copy what you need. The values it points to live longer where
 * noted. Every string is NUL-terminated as well as sized.
 */
typedef struct helm_call {
  uint32_t struct_size;
  /** The operation's deadline in milliseconds (from the manifest's timeout_ms or the host's
   *  default). After it the host reports TIMEOUT to its caller and calls cancel(); the plugin
   *  must still complete the call. */
  uint32_t timeout_ms;
  /** Unique among this instance's calls; the argument of cancel(). Never 0. */
  uint64_t call_id;
  /** Operation name, one the manifest declares. */
  const char* op;
  size_t op_len;
  /** The input, already validated against the operation's input_schema. */
  const char* input_json;
  size_t input_len;
  /** The session the call runs in: borrowed until this call is completed (see helm_session). */
  const helm_session* session;
  /** The organization the session belongs to. */
  const char* organization_id;
  size_t organization_id_len;
  /** The organization's settings for this plugin, valid against org_config_schema ("{}" when
   *  the organization has none). */
  const char* org_config_json;
  size_t org_config_len;
  /** How to complete the call: complete(call_ctx, ...). Host code, callable until called. */
  helm_call_complete_fn complete;
  /** Opaque; owned by the host; valid until complete() is called with it. */
  void* call_ctx;
} helm_call;

#define HELM_CALL_V1_0_SIZE (offsetof(helm_call, call_ctx) + sizeof(void*))

/**
 * An event from the hub's event bus on a topic the plugin subscribed to in its manifest. Owned
 * by the host and borrowed for the duration of on_event() only, including every pointer in it.
 */
typedef struct helm_event {
  uint32_t struct_size;
  const char* topic;
  size_t topic_len;
  /** Organization the event belongs to; length 0 for a hub-wide event. */
  const char* organization_id;
  size_t organization_id_len;
  /** Who published it: a plugin name, or "hub" for the hub itself. */
  const char* source;
  size_t source_len;
  const char* payload_json;
  size_t payload_len;
} helm_event;

#define HELM_EVENT_V1_0_SIZE (offsetof(helm_event, payload_len) + sizeof(size_t))

/* ============================================================================================
 * The plugin (implemented by the plugin, called by the host)
 * ========================================================================================== */

/*
 * Lifecycle of one instance, all on host worker threads:
 *
 *   create ─► start ─► { invoke, cancel, on_event, configure }* ─► stop ─► destroy
 *      │         └─(failed)───────────────────────────────────────────────► destroy
 *      └─(failed): nothing else; the instance does not exist.
 *
 * create, start, stop and destroy are each called at most once per instance, one after the
 * other, never concurrently with anything else on that instance. invoke, cancel and on_event
 * run concurrently with each other and with configure, from several threads; configure is never
 * concurrent with another configure. After stop() is called the host makes no more invoke,
 * cancel, on_event or configure calls; it then cancels the host work it still owes the instance
 * (http completions, timers: delivered with HELM_STATUS_CANCELLED), waits until every call has
 * been completed, and only then calls destroy(). A plugin that never completes a call is never
 * destroyed and its library is never unloaded; the hub marks it failed instead.
 *
 * A library may be asked for several instances (one after the other or at once); keep all
 * state in the instance.
 */

/**
 * Creates an instance. host: borrowed until destroy() returns (see helm_host_api).
 * config_json: the hub-wide configuration, already valid against the manifest's config_schema
 * ("{}" when there is none), borrowed for the call. out_instance: on HELM_STATUS_OK the plugin
 * stores its new instance there (owned by the plugin until destroy()); on failure it stores
 * nothing, fills err, and destroy() will not be called. Must not call into the network or start
 * threads that call the host before start(). Thread: a host worker thread.
 */
typedef helm_status (*helm_plugin_create_fn)(const helm_host_api* host, const char* config_json,
                                             size_t config_len, helm_plugin_instance** out_instance,
                                             helm_error* err);

/**
 * Starts the instance (open listeners, start threads). On failure fills err; the host then
 * calls destroy() without stop(). Optional: NULL means there is nothing to start.
 * Thread: a host worker thread; may block briefly.
 */
typedef helm_status (*helm_plugin_start_fn)(helm_plugin_instance* instance, helm_error* err);

/**
 * Asks the instance to stop: stop accepting work, cancel or finish outstanding calls (each must
 * still be completed, typically with HELM_STATUS_CANCELLED), stop timers. It need not wait for
 * completions the host still owes it. Optional: NULL means nothing to stop.
 * Thread: a host worker thread; may block briefly.
 */
typedef void (*helm_plugin_stop_fn)(helm_plugin_instance* instance);

/**
 * Frees the instance. Before returning, the plugin joins every thread it started and makes sure
 * none of its code will run again for this instance, because the host may unload the library
 * right after. `instance` and the host api dangle afterwards. Thread: a host worker thread.
 */
typedef void (*helm_plugin_destroy_fn)(helm_plugin_instance* instance);

/**
 * Applies a new hub-wide configuration at run time (already valid against config_schema).
 * Returns HELM_STATUS_OK once the new configuration is in effect, or refuses (UNSUPPORTED: needs
 * a restart; INVALID_INPUT: the plugin's own checks failed) with err filled and the old
 * configuration still in effect. config_json: borrowed for the call. Optional: NULL means every
 * change needs a restart. Thread: a host worker thread; concurrent with invoke/cancel/on_event.
 */
typedef helm_status (*helm_plugin_configure_fn)(helm_plugin_instance* instance,
                                                const char* config_json, size_t config_len,
                                                helm_error* err);

/**
 * Runs an operation. call: borrowed for the duration of invoke() (see helm_call for what
 * outlives it). The plugin completes the call exactly once through call->complete, also for an
 * unknown operation (UNSUPPORTED) or bad input (INVALID_INPUT): there is no other way to report
 * a result. Must not block for long: do slow work asynchronously (http_request, timers, own
 * threads) and complete later. Thread: host worker threads, several at once.
 */
typedef void (*helm_plugin_invoke_fn)(helm_plugin_instance* instance, const helm_call* call);

/**
 * Asks the plugin to abandon a call; best effort. The plugin still completes the call, usually
 * with HELM_STATUS_CANCELLED. May race with the call's completion, and may arrive before
 * invoke() of that call has returned; ignore ids that are unknown or already completed.
 * Optional: NULL means calls run to the end. Thread: a host worker thread, concurrent with
 * invoke.
 */
typedef void (*helm_plugin_cancel_fn)(helm_plugin_instance* instance, uint64_t call_id);

/**
 * Delivers an event on a subscribed topic. event: borrowed for the call. Must not block for
 * long. Optional: NULL only if the manifest subscribes to nothing. Thread: host worker threads,
 * several at once, concurrent with invoke.
 */
typedef void (*helm_plugin_on_event_fn)(helm_plugin_instance* instance, const helm_event* event);

/**
 * Transport plugins (ABI 1.1): sends one text frame (a complete JSON object, e.g. a `cmd`) to
 * the device's live connection. Returns OK when queued, NOT_FOUND when the device has no live
 * connection, RESOURCE_EXHAUSTED when that connection's send queue is full (the plugin closes
 * it). frame_json, device_id: borrowed for the call. Thread: host worker threads; must not block.
 */
typedef helm_status (*helm_plugin_device_send_fn)(helm_plugin_instance* instance,
                                                  const char* device_id, size_t device_id_len,
                                                  const char* frame_json, size_t frame_len);

/**
 * Transport plugins (ABI 1.1): closes the device's live connection, if any, with WebSocket
 * close code `code` (4001 when its token was revoked or the device deleted) and `reason`.
 * Borrowed for the call. Thread: host worker threads; must not block.
 */
typedef void (*helm_plugin_device_close_fn)(helm_plugin_instance* instance, const char* device_id,
                                            size_t device_id_len, uint16_t code, const char* reason,
                                            size_t reason_len);

/**
 * What a plugin library offers: returned by helm_plugin_entry().
 *
 * Ownership: owned by the plugin library, in static storage, constant, valid (with every pointer
 * in it) until the library is unloaded. The host reads it and never writes it.
 * create, destroy and invoke are required; the other function pointers may be NULL.
 */
typedef struct helm_plugin_v1 {
  /** HELM_PLUGIN_ABI_MAJOR / HELM_PLUGIN_ABI_MINOR the plugin was built against. These first
   *  eight bytes keep their meaning in every major version. */
  uint16_t abi_major;
  uint16_t abi_minor;
  /** sizeof(helm_plugin_v1) as the plugin was compiled. */
  uint32_t struct_size;
  /** The plugin's name, NUL-terminated, static; must equal the manifest's "name". */
  const char* name;
  helm_plugin_create_fn create;
  helm_plugin_start_fn start;
  helm_plugin_stop_fn stop;
  helm_plugin_destroy_fn destroy;
  helm_plugin_configure_fn configure;
  helm_plugin_invoke_fn invoke;
  helm_plugin_cancel_fn cancel;
  helm_plugin_on_event_fn on_event;
  /* ---- ABI 1.1: the host treats them as NULL when struct_size does not cover them ---- */
  /** Required when the manifest declares capabilities.transport, NULL otherwise. */
  helm_plugin_device_send_fn device_send;
  helm_plugin_device_close_fn device_close;
} helm_plugin_v1;

#define HELM_PLUGIN_V1_0_SIZE (offsetof(helm_plugin_v1, on_event) + sizeof(helm_plugin_on_event_fn))
#define HELM_PLUGIN_V1_1_SIZE \
  (offsetof(helm_plugin_v1, device_close) + sizeof(helm_plugin_device_close_fn))

/** Type of helm_plugin_entry, for hosts that look the symbol up. */
typedef const helm_plugin_v1* (*helm_plugin_entry_fn)(void);

/**
 * The one symbol a plugin library exports, with default visibility (HELM_PLUGIN_EXPORT).
 * Returns the plugin's static entry struct; never NULL. It must do nothing else (no
 * allocation, no threads, no I/O): the host calls it to read the ABI version before it trusts
 * anything else in the library. Thread: any thread, any number of times.
 */
HELM_PLUGIN_EXPORT const helm_plugin_v1* helm_plugin_entry(void);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* HELM_PLUGIN_ABI_H */
