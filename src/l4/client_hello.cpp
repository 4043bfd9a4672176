#include "sluice/l4/client_hello.hpp"

#include <cctype>
#include <cstring>

namespace sluice::l4 {

namespace {

// TLS limits: a record carries at most 2^14 plaintext bytes (+ 2048 slack allowed by some
// stacks); a ClientHello this large is far beyond anything real.
constexpr std::size_t max_record = 16384 + 2048;
constexpr std::size_t max_handshake = 65536;

class reader {
 public:
  reader(const std::uint8_t* p, std::size_t n) : p_(p), n_(n) {}
  bool u8(std::size_t& v) {
    if (n_ < 1) return false;
    v = p_[0];
    skip_unchecked(1);
    return true;
  }
  bool u16(std::size_t& v) {
    if (n_ < 2) return false;
    v = (std::size_t{p_[0]} << 8) | p_[1];
    skip_unchecked(2);
    return true;
  }
  bool skip(std::size_t k) {
    if (n_ < k) return false;
    skip_unchecked(k);
    return true;
  }
  // A sub-reader over the next k bytes.
  bool sub(std::size_t k, reader& out) {
    if (n_ < k) return false;
    out = reader(p_, k);
    skip_unchecked(k);
    return true;
  }
  std::size_t left() const { return n_; }
  const std::uint8_t* data() const { return p_; }

 private:
  void skip_unchecked(std::size_t k) {
    p_ += k;
    n_ -= k;
  }
  const std::uint8_t* p_;
  std::size_t n_;
};

client_hello invalid() { return client_hello{client_hello::status::invalid, {}, false}; }

// Parses the ClientHello body (after the 4-byte handshake header).
client_hello parse_body(reader r) {
  client_hello out;
  out.state = client_hello::status::complete;
  std::size_t v = 0, len = 0;
  if (!r.u16(v) || !r.skip(32)) return invalid();  // legacy_version, random
  if (!r.u8(len) || len > 32 || !r.skip(len)) return invalid();  // session id
  if (!r.u16(len) || len < 2 || (len & 1) || !r.skip(len)) return invalid();  // cipher suites
  if (!r.u8(len) || len < 1 || !r.skip(len)) return invalid();  // compression methods
  if (r.left() == 0) return out;  // no extensions (SSLv3-style hello)
  reader exts(nullptr, 0);
  if (!r.u16(len) || !r.sub(len, exts)) return invalid();
  bool seen_sni = false;
  while (exts.left() > 0) {
    std::size_t type = 0, elen = 0;
    reader ext(nullptr, 0);
    if (!exts.u16(type) || !exts.u16(elen) || !exts.sub(elen, ext)) return invalid();
    if (type != 0) continue;
    if (seen_sni) return invalid();  // RFC 8446 4.2: at most one of each extension
    seen_sni = true;
    reader list(nullptr, 0);
    if (!ext.u16(len) || !ext.sub(len, list) || ext.left() != 0) return invalid();
    while (list.left() > 0) {
      std::size_t name_type = 0, nlen = 0;
      if (!list.u8(name_type) || !list.u16(nlen)) return invalid();
      const std::uint8_t* name = list.data();
      if (!list.skip(nlen)) return invalid();
      if (name_type != 0 || !out.server_name.empty() || out.bad_name) continue;
      std::size_t n = nlen;
      if (n > 0 && name[n - 1] == '.') --n;
      bool ok = n > 0 && n <= 253;
      std::string host;
      if (ok) {
        host.resize(n);
        for (std::size_t i = 0; i < n; ++i) {
          const unsigned char c = name[i];
          if (!(std::isalnum(c) || c == '-' || c == '.' || c == '_')) {
            ok = false;
            break;
          }
          host[i] = static_cast<char>(std::tolower(c));
        }
      }
      if (ok)
        out.server_name = std::move(host);
      else
        out.bad_name = true;
    }
  }
  return out;
}

}  // namespace

client_hello parse_client_hello(std::span<const std::uint8_t> data) {
  // Walk the records, collecting handshake bytes until the ClientHello is whole. The common
  // case (one record holding the whole message) parses in place without copying.
  std::string gathered;  // only used when the message spans records
  std::size_t off = 0;
  std::size_t hs_len = 0;
  bool have_hs_len = false;
  const std::uint8_t* single = nullptr;
  std::size_t single_len = 0;
  for (int records = 0;; ++records) {
    if (data.size() - off < 5) {
      // Check what we have of the header so garbage is rejected without waiting.
      if (off < data.size() && data[off] != 0x16) return invalid();
      if (data.size() - off >= 2 && data[off + 1] != 0x03) return invalid();
      return {};
    }
    const std::uint8_t* h = data.data() + off;
    if (h[0] != 0x16 || h[1] != 0x03) return invalid();
    const std::size_t rlen = (std::size_t{h[3]} << 8) | h[4];
    if (rlen == 0 || rlen > max_record) return invalid();
    if (data.size() - off - 5 < rlen) {
      // Partial record: if it is the first and already holds the handshake header, reject a
      // message that is not a ClientHello now rather than after more bytes.
      if (records == 0 && data.size() - off - 5 >= 1 && h[5] != 0x01) return invalid();
      return {};
    }
    const std::uint8_t* frag = h + 5;
    if (records == 0 && rlen >= 4 && gathered.empty()) {
      if (frag[0] != 0x01) return invalid();
      hs_len = (std::size_t{frag[1]} << 16) | (std::size_t{frag[2]} << 8) | frag[3];
      have_hs_len = true;
      if (hs_len > max_handshake) return invalid();
      if (rlen >= 4 + hs_len) {
        single = frag + 4;
        single_len = hs_len;
        break;
      }
    }
    gathered.append(reinterpret_cast<const char*>(frag), rlen);
    off += 5 + rlen;
    if (!have_hs_len && gathered.size() >= 4) {
      const auto* g = reinterpret_cast<const std::uint8_t*>(gathered.data());
      if (g[0] != 0x01) return invalid();
      hs_len = (std::size_t{g[1]} << 16) | (std::size_t{g[2]} << 8) | g[3];
      have_hs_len = true;
      if (hs_len > max_handshake) return invalid();
    }
    if (have_hs_len && gathered.size() >= 4 + hs_len) break;
  }
  if (single) return parse_body(reader(single, single_len));
  return parse_body(reader(reinterpret_cast<const std::uint8_t*>(gathered.data()) + 4, hs_len));
}

}  // namespace sluice::l4
