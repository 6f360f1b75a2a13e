// What TLS itself costs the agent transport's server side, in process (no sockets, no kernel):
// the floor under tests/bench/agents.sh's "hub CPU per new TLS connection" and "per heartbeat".
//
// The server context gets the transport's own settings (plugins/transport-wss/src/
// tls_settings.cpp: TLS 1.3 only, SSL_MODE_RELEASE_BUFFERS, read-ahead, no session tickets) and an
// ECDSA P-256 certificate like the hub's, loaded from PEM files as the server loads its own; the
// client is OpenSSL's default TLS 1.3 client, like helm-agent's. Only the server's calls are
// timed, with the thread's CPU clock, and reported as the iteration time.
//
//   build/<dir>/tests/bench/transport/helm_tls_bench --benchmark_repetitions=5
//     --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>
#include <openssl/bio.h>
#include <openssl/ssl.h>

#include <ctime>
#include <stdexcept>
#include <string>

#include "test_certificate.hpp"
#include "tls_settings.hpp"

namespace {

double thread_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) * 1e-9;
}

struct Contexts {
  SSL_CTX* server = nullptr;
  SSL_CTX* client = nullptr;
  explicit Contexts(int tickets) {
    const auto& identity = helm::transport::testing::certificate();
    server = SSL_CTX_new(TLS_server_method());
    helm::transport::apply_agent_tls_settings(server);
    if (tickets > 0) {  // OpenSSL's defaults, for comparison
      SSL_CTX_clear_options(server, SSL_OP_NO_TICKET);
      SSL_CTX_set_session_cache_mode(server, SSL_SESS_CACHE_SERVER);
      SSL_CTX_set_num_tickets(server, static_cast<size_t>(tickets));
    }
    if (SSL_CTX_use_certificate_chain_file(server, identity.cert_file.c_str()) != 1 ||
        SSL_CTX_use_PrivateKey_file(server, identity.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
      throw std::runtime_error("cannot load the test certificate");
    }
    client = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(client, TLS1_3_VERSION);
  }
  ~Contexts() {
    SSL_CTX_free(server);
    SSL_CTX_free(client);
  }
  Contexts(const Contexts&) = delete;
  Contexts& operator=(const Contexts&) = delete;
};

/// A client and a server connected by a memory BIO pair.
struct Pair {
  SSL* client;
  SSL* server;
  Pair(const Contexts& contexts)
      : client(SSL_new(contexts.client)), server(SSL_new(contexts.server)) {
    BIO* client_end = nullptr;
    BIO* server_end = nullptr;
    BIO_new_bio_pair(&client_end, 64 * 1024, &server_end, 64 * 1024);
    SSL_set_bio(client, client_end, client_end);
    SSL_set_bio(server, server_end, server_end);
    SSL_set_connect_state(client);
    SSL_set_accept_state(server);
  }
  ~Pair() {
    SSL_free(client);
    SSL_free(server);
  }
  Pair(const Pair&) = delete;
  Pair& operator=(const Pair&) = delete;

  /// Runs the handshake to the end; returns the server's CPU seconds for it.
  double handshake() {
    double server_cpu = 0;
    for (int round = 0; round < 16; ++round) {
      const int c = SSL_do_handshake(client);
      const double t0 = thread_cpu_seconds();
      const int s = SSL_do_handshake(server);
      server_cpu += thread_cpu_seconds() - t0;
      if (c == 1 && s == 1) return server_cpu;
    }
    throw std::runtime_error("the handshake did not finish");
  }
};

// A whole server handshake (ClientHello to the client's Finished), plus the first application
// record (OpenSSL writes the tickets, if any, with it) and freeing the connection. Arg: tickets.
void BM_ServerHandshake(benchmark::State& state) {
  const Contexts contexts(static_cast<int>(state.range(0)));
  char buffer[64];
  for (auto _ : state) {
    Pair pair(contexts);
    double server_cpu = pair.handshake();
    SSL_write(pair.client, "hello", 5);
    double t0 = thread_cpu_seconds();
    const int read = SSL_read(pair.server, buffer, sizeof buffer);
    SSL_write(pair.server, "welcome", 7);
    server_cpu += thread_cpu_seconds() - t0;
    if (read != 5) state.SkipWithError("the first record did not arrive");
    SSL_read(pair.client, buffer, sizeof buffer);
    t0 = thread_cpu_seconds();
    SSL_free(pair.server);
    pair.server = nullptr;
    server_cpu += thread_cpu_seconds() - t0;
    state.SetIterationTime(server_cpu);
  }
}
BENCHMARK(BM_ServerHandshake)
    ->ArgName("tickets")
    ->Arg(0)
    ->Arg(2)
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

// One heartbeat's TLS work on the server: decrypt a small record, encrypt the answer (with
// RELEASE_BUFFERS, as on the transport: the record buffers come and go each time).
void BM_ServerHeartbeatRecords(benchmark::State& state) {
  const Contexts contexts(0);
  Pair pair(contexts);
  pair.handshake();
  const std::string hb = R"({"seq":12345,"t":"hb"})";
  const std::string ack = R"({"seq":12345,"t":"hb_ack"})";
  char buffer[256];
  for (auto _ : state) {
    SSL_write(pair.client, hb.data(), static_cast<int>(hb.size()));
    const double t0 = thread_cpu_seconds();
    const int read = SSL_read(pair.server, buffer, sizeof buffer);
    SSL_write(pair.server, ack.data(), static_cast<int>(ack.size()));
    state.SetIterationTime(thread_cpu_seconds() - t0);
    if (read != static_cast<int>(hb.size())) state.SkipWithError("short read");
    SSL_read(pair.client, buffer, sizeof buffer);
  }
}
BENCHMARK(BM_ServerHeartbeatRecords)->UseManualTime()->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
