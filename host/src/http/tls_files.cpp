#include "helm/http/tls_files.hpp"

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <memory>

namespace helm::http {
namespace fs = std::filesystem;
namespace {

template <class T, void (*F)(T*)>
struct Deleter {
  void operator()(T* p) const { F(p); }
};
using X509Ptr = std::unique_ptr<X509, Deleter<X509, X509_free>>;
using KeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY, EVP_PKEY_free>>;
using BioPtr = std::unique_ptr<BIO, Deleter<BIO, BIO_free_all>>;

bool add_extension(X509* cert, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (ext == nullptr) return false;
  const bool ok = X509_add_ext(cert, ext, -1) == 1;
  X509_EXTENSION_free(ext);
  return ok;
}

// Writes `data` to `path` through a temp file and rename, with the given mode.
Status write_atomically(const fs::path& path, const std::string& data, mode_t mode) {
  const fs::path tmp = path.string() + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return Error{"cannot write " + tmp.string()};
  const bool ok = ::write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size()) &&
                  ::fsync(fd) == 0;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0)
    return Error{"cannot write " + path.string()};
  return {};
}

std::string bio_to_string(BIO* bio) {
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(len));
}

}  // namespace

Expected<TlsFiles> ensure_development_certificate(const std::string& data_dir) {
  const fs::path dir = fs::path(data_dir) / "tls";
  TlsFiles files{(dir / "hub.crt").string(), (dir / "hub.key").string(), false};
  if (fs::exists(files.cert_file) && fs::exists(files.key_file)) return files;

  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Error{"cannot create " + dir.string() + ": " + ec.message()};

  KeyPtr key(EVP_EC_gen("P-256"));
  X509Ptr cert(X509_new());
  if (!key || !cert) return Error{"OpenSSL could not create a key pair"};
  X509_set_version(cert.get(), 2);
  unsigned char serial[16];
  RAND_bytes(serial, sizeof serial);
  serial[0] &= 0x7f;
  BIGNUM* bn = BN_bin2bn(serial, sizeof serial, nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get()));
  BN_free(bn);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 60L * 60 * 24 * 825);
  X509_set_pubkey(cert.get(), key.get());
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("Helm Hub"), -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("helm-hub development"), -1, -1,
                             0);
  X509_set_issuer_name(cert.get(), name);

  char host[256] = {0};
  std::string san = "DNS:localhost,IP:127.0.0.1,IP:::1";
  if (::gethostname(host, sizeof host - 1) == 0 && host[0] != '\0' &&
      std::string(host) != "localhost") {
    san += std::string(",DNS:") + host;
  }
  if (!add_extension(cert.get(), NID_basic_constraints, "critical,CA:FALSE") ||
      !add_extension(cert.get(), NID_key_usage, "critical,digitalSignature") ||
      !add_extension(cert.get(), NID_ext_key_usage, "serverAuth") ||
      !add_extension(cert.get(), NID_subject_key_identifier, "hash") ||
      !add_extension(cert.get(), NID_subject_alt_name, san)) {
    return Error{"OpenSSL could not add certificate extensions"};
  }
  if (X509_sign(cert.get(), key.get(), EVP_sha256()) == 0) {
    return Error{"OpenSSL could not sign the development certificate"};
  }

  BioPtr key_bio(BIO_new(BIO_s_mem()));
  BioPtr cert_bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_PrivateKey(key_bio.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr);
  PEM_write_bio_X509(cert_bio.get(), cert.get());
  if (auto st = write_atomically(files.key_file, bio_to_string(key_bio.get()), 0600); !st) {
    return st.error();
  }
  if (auto st = write_atomically(files.cert_file, bio_to_string(cert_bio.get()), 0644); !st) {
    return st.error();
  }
  files.generated = true;
  return files;
}

Expected<std::string> certificate_fingerprint_sha256(const std::string& cert_file) {
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(cert_file.c_str(), "r"), &std::fclose);
  if (!f) return Error{"cannot read certificate " + cert_file};
  X509Ptr cert(PEM_read_X509(f.get(), nullptr, nullptr, nullptr));
  if (!cert) return Error{cert_file + " holds no PEM certificate"};
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (X509_digest(cert.get(), EVP_sha256(), md, &len) != 1) return Error{"cannot hash certificate"};
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (unsigned i = 0; i < len; ++i) {
    if (i > 0) out.push_back(':');
    out.push_back(kHex[md[i] >> 4]);
    out.push_back(kHex[md[i] & 15]);
  }
  return out;
}

}  // namespace helm::http
