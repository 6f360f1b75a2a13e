/// @brief The agent listener's TLS settings, in one place for the server and its benchmark
/// (tests/bench/transport/tls_bench.cpp), so that what is measured is what agents get.
#pragma once

#include <openssl/ssl.h>

namespace helm::transport {

/// Applies the transport's protocol, mode and session settings to a fresh server context. The
/// certificate and key are loaded by the caller.
void apply_agent_tls_settings(SSL_CTX* tls);

}  // namespace helm::transport
