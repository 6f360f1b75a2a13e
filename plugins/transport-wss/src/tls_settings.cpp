#include "tls_settings.hpp"

namespace helm::transport {

void apply_agent_tls_settings(SSL_CTX* tls) {
  // Agents speak TLS 1.3 only (agent protocol §2): a TLS 1.2 client fails the handshake.
  SSL_CTX_set_min_proto_version(tls, TLS1_3_VERSION);
  SSL_CTX_set_max_proto_version(tls, TLS1_3_VERSION);
  SSL_CTX_set_options(tls, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF);
  // RELEASE_BUFFERS: no record buffers while idle (about 33 KiB per connection). The other two
  // fit the stream's write path (partial writes, a rebuilt copy on retry).
  SSL_CTX_set_mode(tls, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                            SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  // Read ahead: one read() takes a record's header and body (and whatever follows) instead of
  // two. Safe with the stream: it waits for the socket only when SSL_read asks for more bytes.
  SSL_CTX_set_read_ahead(tls, 1);
  // No session tickets: OpenSSL 3 sends two after every TLS 1.3 handshake by default (an
  // encoded, encrypted session each, about a tenth of a handshake's CPU), agents do not resume
  // sessions, and a restarted hub could not decrypt tickets from before anyway.
  SSL_CTX_set_num_tickets(tls, 0);
  SSL_CTX_set_options(tls, SSL_OP_NO_TICKET);
  SSL_CTX_set_session_cache_mode(tls, SSL_SESS_CACHE_OFF);
}

}  // namespace helm::transport
