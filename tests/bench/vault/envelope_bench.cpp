// Cost of releasing a secret: raw XChaCha20-Poly1305 against open_secret (validation, additional
// data, secure-memory allocation) and unwrap_data_key, plus the audit-chain hash per record.
#include <benchmark/benchmark.h>
#include <sodium.h>

#include <array>
#include <string>
#include <vector>

#include "helm/vault/audit_chain.hpp"
#include "helm/vault/envelope.hpp"

namespace helm::vault {
namespace {

constexpr std::string_view kOrg = "acme-msp";
constexpr std::string_view kName = "halopsa/api-key";
constexpr std::string_view kSecret =
    "ssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssss";
static_assert(kSecret.size() == 64);

void bench_raw_aead_open_64(benchmark::State& state) {
  ensure_sodium_initialized();
  std::array<std::uint8_t, crypto_aead_xchacha20poly1305_ietf_KEYBYTES> key{};
  crypto_aead_xchacha20poly1305_ietf_keygen(key.data());
  std::array<std::uint8_t, kNonceBytes> nonce{};
  randombytes_buf(nonce.data(), nonce.size());
  const Bytes ad = secret_additional_data(kSealFormatVersion, kOrg, kName, 1, 1);
  std::vector<std::uint8_t> ciphertext(kSecret.size() + kAeadTagBytes);
  unsigned long long length = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(ciphertext.data(), &length, bytes_of(kSecret).data(),
                                             kSecret.size(), ad.data(), ad.size(), nullptr,
                                             nonce.data(), key.data());
  std::array<std::uint8_t, 64> plaintext{};
  for (auto _ : state) {
    const int rc = crypto_aead_xchacha20poly1305_ietf_decrypt(
        plaintext.data(), &length, nullptr, ciphertext.data(), ciphertext.size(), ad.data(),
        ad.size(), nonce.data(), key.data());
    benchmark::DoNotOptimize(rc);
    benchmark::DoNotOptimize(plaintext.data());
    benchmark::ClobberMemory();
  }
}
BENCHMARK(bench_raw_aead_open_64);

void bench_open_secret_64(benchmark::State& state) {
  const DataKey key = DataKey::generate(1).value();
  const SealedSecret sealed = seal_secret(key, kOrg, kName, 1, bytes_of(kSecret)).value();
  for (auto _ : state) {
    auto opened = open_secret(key, kOrg, kName, sealed);
    if (!opened) {
      state.SkipWithError("open_secret failed");
    }
    benchmark::DoNotOptimize(opened);
  }
}
BENCHMARK(bench_open_secret_64);

void bench_seal_secret_64(benchmark::State& state) {
  const DataKey key = DataKey::generate(1).value();
  for (auto _ : state) {
    auto sealed = seal_secret(key, kOrg, kName, 1, bytes_of(kSecret));
    benchmark::DoNotOptimize(sealed);
  }
}
BENCHMARK(bench_seal_secret_64);

void bench_unwrap_data_key(benchmark::State& state) {
  const MasterKey master = MasterKey::generate();
  const DataKey key = DataKey::generate(1).value();
  const WrappedDataKey wrapped = wrap_data_key(master, kOrg, key).value();
  for (auto _ : state) {
    auto unwrapped = unwrap_data_key(master, kOrg, wrapped);
    if (!unwrapped) {
      state.SkipWithError("unwrap_data_key failed");
    }
    benchmark::DoNotOptimize(unwrapped);
  }
}
BENCHMARK(bench_unwrap_data_key);

// The share of open_secret spent building the canonical additional data.
void bench_secret_additional_data(benchmark::State& state) {
  for (auto _ : state) {
    Bytes ad = secret_additional_data(kSealFormatVersion, kOrg, kName, 1, 1);
    benchmark::DoNotOptimize(ad.data());
  }
}
BENCHMARK(bench_secret_additional_data);

// The share of open_secret spent obtaining locked, guarded memory for the plaintext.
void bench_secure_buffer_allocate_64(benchmark::State& state) {
  ensure_sodium_initialized();
  for (auto _ : state) {
    SecureBuffer buffer(64);
    benchmark::DoNotOptimize(buffer.data());
  }
}
BENCHMARK(bench_secure_buffer_allocate_64);

void bench_audit_record_link_and_hash(benchmark::State& state) {
  AuditRecord record;
  record.actor = "tech:alice";
  record.session_id = "sess-0123456789abcdef";
  record.plugin = "psa-halopsa";
  record.org_id = std::string(kOrg);
  record.action = "secret.release";
  record.secret_name = std::string(kName);
  record.secret_version = 1;
  record.extra = {{"operation", "tickets.list"}};
  ChainAnchor anchor = ChainAnchor::genesis();
  for (auto _ : state) {
    if (!link_audit_record(record, anchor)) {
      state.SkipWithError("link_audit_record failed");
    }
    anchor = ChainAnchor::after(record);
    benchmark::DoNotOptimize(record.hash);
  }
}
BENCHMARK(bench_audit_record_link_and_hash);

}  // namespace
}  // namespace helm::vault
