/// @brief The seam between the hub's agent service (devices, tokens, command outbox) and the
/// transport plugin (ABI 1.1, helm/plugin_abi.h "Agent transport"). The plugin manager turns the
/// transport plugin's host calls into calls on a TransportHost, and offers the agent service a
/// TransportLink to push frames to devices and close their connections.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include <helm/plugin_abi.h>

namespace helm::plugins {

/// Implemented by the agent service; called by the plugin manager on behalf of the transport
/// plugin. Every function must be quick and must not block (queue database work); any thread.
class TransportHost {
 public:
  virtual ~TransportHost() = default;

  /// Result of a device token check: OK with {"device_id","organization_id","heartbeat_s"},
  /// UNAUTHORIZED with a message, or UNAVAILABLE when the check cannot be made now.
  using AuthDone = std::function<void(helm_status status, std::string device_json)>;

  /// Checks a device token; calls `done` exactly once, later, on another thread.
  virtual void authenticate_device(std::string token, AuthDone done) = 0;

  /// A connection said hello (frame_json is its hello frame). Push its pending commands.
  virtual void device_connected(std::uint64_t connection_id, const std::string& device_id,
                                const std::string& hello_json) = 0;

  /// An ack, result or event frame from a connection (a JSON object as received).
  virtual void device_frame(std::uint64_t connection_id, const std::string& device_id,
                            const std::string& frame_json) = 0;

  /// The connection is gone. A newer connection of the same device may already exist.
  virtual void device_disconnected(std::uint64_t connection_id, const std::string& device_id) = 0;

  /// The transport listens at `url` (host part may be unspecific, e.g. 0.0.0.0).
  virtual void transport_listening(const std::string& url) = 0;

  /// {"tls_cert_file","tls_key_file","heartbeat_s","max_frame_bytes"} for the transport.
  virtual std::string transport_settings() = 0;
};

/// Implemented by the plugin manager; used by the agent service to reach connected devices
/// through whichever transport plugin is running. Thread-safe; never blocks for long.
class TransportLink {
 public:
  virtual ~TransportLink() = default;
  /// OK when queued on the device's live connection; NOT_FOUND when it has none (or no
  /// transport is running); RESOURCE_EXHAUSTED when its send queue is full.
  virtual helm_status send_to_device(const std::string& device_id,
                                     const std::string& frame_json) = 0;
  /// Closes the device's live connection, if any, with `code` (4001: revoked or deleted).
  virtual void close_device(const std::string& device_id, std::uint16_t code,
                            const std::string& reason) = 0;
};

}  // namespace helm::plugins
