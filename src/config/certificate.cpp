#include "sluice/config/certificate.hpp"

#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

namespace sluice::config {

namespace {

struct x509_free {
  void operator()(X509* x) const noexcept { X509_free(x); }
};
struct pkey_free {
  void operator()(EVP_PKEY* k) const noexcept { EVP_PKEY_free(k); }
};
struct ctx_free {
  void operator()(SSL_CTX* c) const noexcept { SSL_CTX_free(c); }
};

// The newest OpenSSL error as text, and the queue emptied (it is per thread and would otherwise
// leak into the next caller's diagnostics).
std::string openssl_reason() {
  unsigned long e = ERR_peek_last_error();
  std::string out;
  if (e != 0) {
    const char* r = ERR_reason_error_string(e);
    out = r ? r : "error " + std::to_string(e);
  }
  ERR_clear_error();
  return out;
}

// Refuses encrypted keys without asking for a passphrase (nobody could type it).
int no_passphrase(char*, int, int, void*) { return -1; }

constexpr std::size_t max_pem_bytes = 1 << 20;

struct bio_free {
  void operator()(BIO* b) const noexcept { BIO_free(b); }
};
using bio_ptr = std::unique_ptr<BIO, bio_free>;

bio_ptr memory_bio(const std::string& text) {
  return bio_ptr(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

std::vector<std::string> dns_names(const x509_st* cert) {
  std::vector<std::string> out;
  if (!cert) return out;
  auto* sans = static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(const_cast<X509*>(cert), NID_subject_alt_name, nullptr, nullptr));
  if (sans) {
    for (int i = 0; i < sk_GENERAL_NAME_num(sans); ++i) {
      const GENERAL_NAME* n = sk_GENERAL_NAME_value(sans, i);
      if (n->type != GEN_DNS) continue;
      const ASN1_IA5STRING* s = n->d.dNSName;
      if (!s || s->length <= 0) continue;
      out.push_back(lower(std::string(reinterpret_cast<const char*>(s->data),
                                      static_cast<std::size_t>(s->length))));
    }
    GENERAL_NAMES_free(sans);
  }
  if (!out.empty()) return out;
  const X509_NAME* subject = X509_get_subject_name(cert);
  int idx = subject ? X509_NAME_get_index_by_NID(subject, NID_commonName, -1) : -1;
  if (idx >= 0) {
    const ASN1_STRING* cn = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, idx));
    unsigned char* utf8 = nullptr;
    int len = cn ? ASN1_STRING_to_UTF8(&utf8, cn) : -1;
    if (len > 0) out.push_back(lower(std::string(reinterpret_cast<char*>(utf8), len)));
    OPENSSL_free(utf8);
  }
  return out;
}

bool read_pem_file(const std::string& path, std::string& out, std::string* why) {
  auto fail = [&](const std::string& reason) {
    if (why) *why = "cannot read '" + path + "': " + reason;
    return false;
  };
  // O_NONBLOCK: opening a FIFO without a writer must not hang; it is refused below anyway.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return fail(std::strerror(errno));
  struct closer {
    int fd;
    ~closer() { ::close(fd); }
  } close_fd{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) return fail(std::strerror(errno));
  if (S_ISDIR(st.st_mode)) return fail("is a directory");
  if (!S_ISREG(st.st_mode)) return fail("not a regular file");
  if (static_cast<std::uint64_t>(st.st_size) > max_pem_bytes)
    return fail("larger than 1 MiB, not a PEM file");
  out.clear();
  char buf[16384];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(std::strerror(errno));
    if (n == 0) break;
    out.append(buf, static_cast<std::size_t>(n));
    if (out.size() > max_pem_bytes) return fail("larger than 1 MiB, not a PEM file");
  }
  return true;
}

certificate_check check_certificate(const std::string& cert_file, const std::string& key_file) {
  certificate_check out;
  std::string cert_pem, key_pem, why;
  if (!read_pem_file(cert_file, cert_pem, &why)) {
    out.what = certificate_check::problem::cert;
    out.message = why;
    return out;
  }
  if (!read_pem_file(key_file, key_pem, &why)) {
    out.what = certificate_check::problem::key;
    out.message = why;
    return out;
  }
  return check_certificate_pem(cert_pem, key_pem, cert_file, key_file);
}

certificate_check check_certificate_pem(const std::string& cert_pem, const std::string& key_pem,
                                        const std::string& cert_file, const std::string& key_file) {
  certificate_check out;
  auto fail = [&](certificate_check::problem p, std::string why) {
    out.what = p;
    out.message = std::move(why);
    out.names.clear();
    ERR_clear_error();
    return out;
  };
  auto cb = memory_bio(cert_pem);
  std::unique_ptr<X509, x509_free> cert(cb ? PEM_read_bio_X509(cb.get(), nullptr, nullptr, nullptr)
                                           : nullptr);
  if (!cert)
    return fail(certificate_check::problem::cert,
                "'" + cert_file + "' holds no PEM certificate (" + openssl_reason() + ")");
  // The rest of the file is the chain: every block in it must parse too.
  for (;;) {
    std::unique_ptr<X509, x509_free> extra(PEM_read_bio_X509(cb.get(), nullptr, nullptr, nullptr));
    if (extra) continue;
    unsigned long e = ERR_peek_last_error();
    if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE) {
      ERR_clear_error();  // the end of the file
      break;
    }
    return fail(certificate_check::problem::cert,
                "'" + cert_file + "': a certificate of the chain is unreadable (" +
                    openssl_reason() + ")");
  }
  out.names = dns_names(cert.get());

  auto kb = memory_bio(key_pem);
  std::unique_ptr<EVP_PKEY, pkey_free> key(
      kb ? PEM_read_bio_PrivateKey(kb.get(), nullptr, &no_passphrase, nullptr) : nullptr);
  if (!key)
    return fail(certificate_check::problem::key,
                "'" + key_file + "' holds no unencrypted PEM private key (" + openssl_reason() + ")");
  if (X509_check_private_key(cert.get(), key.get()) != 1)
    return fail(certificate_check::problem::key,
                "the private key in '" + key_file + "' does not match the certificate in '" +
                    cert_file + "'");
  ERR_clear_error();
  return out;
}

std::string check_cipher_list(const std::string& ciphers) {
  std::unique_ptr<SSL_CTX, ctx_free> ctx(SSL_CTX_new(TLS_server_method()));
  if (!ctx) return "cannot create a TLS context (" + openssl_reason() + ")";
  if (SSL_CTX_set_cipher_list(ctx.get(), ciphers.c_str()) != 1) {
    openssl_reason();
    return "OpenSSL selects no TLS 1.2 cipher with '" + ciphers + "'";
  }
  ERR_clear_error();
  return {};
}

}  // namespace sluice::config
