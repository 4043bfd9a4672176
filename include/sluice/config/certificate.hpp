// Checks of TLS certificate and key files (OpenSSL), shared by the loader and the TLS listener.
#pragma once

#include <string>
#include <vector>

struct x509_st;  // OpenSSL's X509, kept out of this header

namespace sluice::config {

/// What check_certificate found.
struct certificate_check {
  enum class problem { none, cert, key };
  problem what = problem::none;    ///< which of the two files is at fault
  std::string message;             ///< why, when `what` is not none
  std::vector<std::string> names;  ///< the certificate's DNS names (see dns_names)
};

/// Reads `cert_file` (PEM: a certificate, then optionally its chain) and `key_file` (PEM, an
/// unencrypted private key) the way a TLS listener loads them, and checks that the key belongs
/// to the certificate. Never throws; a file that cannot be read or holds no usable PEM is a
/// problem of that file, a key that does not match is a problem of the key.
certificate_check check_certificate(const std::string& cert_file, const std::string& key_file);

/// The same on contents already read (`cert_file`/`key_file` only name them in messages).
certificate_check check_certificate_pem(const std::string& cert_pem, const std::string& key_pem,
                                        const std::string& cert_file, const std::string& key_file);

/// Reads a PEM file whole into `out`. Only regular files of at most 1 MiB: a FIFO or a device
/// could block or never end. False with `*why` set ("cannot read 'F': ...") otherwise.
bool read_pem_file(const std::string& path, std::string& out, std::string* why);

/// Empty when OpenSSL accepts `ciphers` as a TLS 1.2 cipher list that selects at least one
/// cipher, else why not.
std::string check_cipher_list(const std::string& ciphers);

/// The DNS names `cert` is for, lowercased: its subjectAltName DNS entries, or its subject CN
/// when it has none. Empty for a null pointer or a certificate naming no host.
std::vector<std::string> dns_names(const x509_st* cert);

}  // namespace sluice::config
