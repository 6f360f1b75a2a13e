/// @brief A self-signed ECDSA P-256 certificate for "localhost", made with OpenSSL when first
/// used and written as PEM files to a private temporary directory (removed at exit).
#pragma once

#include <stdlib.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <system_error>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

namespace helm::transport::testing {

struct TestCertificate {
  std::filesystem::path directory;
  std::string cert_file;
  std::string key_file;

  TestCertificate() {
    char pattern[] = "/tmp/helm-transport-test-XXXXXX";
    directory = mkdtemp(pattern);
    cert_file = (directory / "cert.pem").string();
    key_file = (directory / "key.pem").string();
    EVP_PKEY* key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
    X509* cert = X509_new();
    X509_set_version(cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert), -60);
    X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
    X509_set_pubkey(cert, key);
    X509_NAME* name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>("localhost"), -1, -1, 0);
    X509_set_issuer_name(cert, name);
    X509_sign(cert, key, EVP_sha256());
    FILE* out = std::fopen(cert_file.c_str(), "w");
    PEM_write_X509(out, cert);
    std::fclose(out);
    out = std::fopen(key_file.c_str(), "w");
    PEM_write_PrivateKey(out, key, nullptr, nullptr, 0, nullptr, nullptr);
    std::fclose(out);
    X509_free(cert);
    EVP_PKEY_free(key);
  }
  ~TestCertificate() {
    std::error_code ignored;
    std::filesystem::remove_all(directory, ignored);
  }
};

inline const TestCertificate& certificate() {
  static const TestCertificate kCertificate;
  return kCertificate;
}

}  // namespace helm::transport::testing
