/// @brief The hub's TLS certificate on disk: a development certificate generated on first start
/// when none is configured, and the SHA-256 fingerprint that agents and admins pin.
#pragma once

#include <string>

#include "helm/core/expected.hpp"

namespace helm::http {

struct TlsFiles {
  std::string cert_file;
  std::string key_file;
  bool generated = false;  ///< true when this call created them
};

/// Returns DATA_DIR/tls/hub.crt and hub.key, creating a self-signed ECDSA P-256 certificate for
/// localhost, 127.0.0.1, ::1 and this host's name when they do not exist yet (key mode 0600).
Expected<TlsFiles> ensure_development_certificate(const std::string& data_dir);

/// SHA-256 over the DER of the first certificate in a PEM file: "AB:CD:…" (upper-case hex).
Expected<std::string> certificate_fingerprint_sha256(const std::string& cert_file);

}  // namespace helm::http
