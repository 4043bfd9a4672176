// Fuzz target: what sluice reads from etcd's JSON gateway (range, watch, lease, auth answers,
// error bodies, base64 `bytes` fields) and the endpoint values registered under a key.
//
// Input: the body as the gateway (or a registrant) wrote it. Every parser sees every input;
// the watch stream is also fed in pieces, which must not change what it decodes.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_check.hpp"
#include "sluice/discovery/etcd_protocol.hpp"
#include "sluice/discovery/registration.hpp"

namespace {

namespace etcd = sluice::discovery::etcd;

// Decodes a watch stream, fed in pieces whose sizes come from `seed` (0: all at once).
bool decode_stream(std::string_view in, std::uint32_t seed, std::size_t max_message,
                   std::vector<etcd::watch_message>& out) {
  etcd::watch_decoder d(max_message);
  std::string error;
  std::uint32_t x = seed;
  while (!in.empty()) {
    std::size_t n = in.size();
    if (seed != 0) {
      x = x * 1103515245u + 12345u;
      n = std::min<std::size_t>(in.size(), 1 + (x >> 16) % 23);
    }
    if (!d.feed(in.substr(0, n), out, &error)) {
      FUZZ_CHECK(!error.empty());
      // A failed decoder stays failed.
      std::string again;
      FUZZ_CHECK(!d.feed("{}", out, &again) && !again.empty());
      return false;
    }
    in.remove_prefix(n);
  }
  return true;
}

bool same_messages(const std::vector<etcd::watch_message>& a,
                   const std::vector<etcd::watch_message>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i].revision != b[i].revision || a[i].error != b[i].error ||
        a[i].events.size() != b[i].events.size())
      return false;
    for (std::size_t j = 0; j < a[i].events.size(); ++j)
      if (a[i].events[j].kv.key != b[i].events[j].kv.key ||
          a[i].events[j].kv.value != b[i].events[j].kv.value ||
          a[i].events[j].type != b[i].events[j].type)
        return false;
  }
  return true;
}

template <class T>
void check_result(const std::optional<T>& r, const std::string& error) {
  // Either a value or a reason, never neither.
  if (!r) FUZZ_CHECK(!error.empty());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::vector<char> bytes(data, data + size);
  const std::string_view body(bytes.data(), bytes.size());

  {
    std::string error;
    auto r = etcd::parse_range_response(body, &error);
    check_result(r, error);
  }
  {
    std::string error;
    auto m = etcd::parse_watch_message(body, &error);
    check_result(m, error);
  }
  {
    std::string error;
    check_result(etcd::parse_authenticate_response(body, &error), error);
    error.clear();
    auto id = etcd::parse_lease_grant_response(body, &error);
    check_result(id, error);
    if (id) FUZZ_CHECK(*id > 0);
    error.clear();
    auto ttl = etcd::parse_keepalive_response(body, &error);
    check_result(ttl, error);
    if (ttl) FUZZ_CHECK(*ttl >= 0);
    error.clear();
    check_result(etcd::parse_header_revision(body, &error), error);
  }
  if (auto e = etcd::parse_error(body)) (void)e->is_auth();

  // The watch stream: however the bytes are cut, the same messages (or the same failure).
  {
    std::vector<etcd::watch_message> whole, cut;
    const bool ok_whole = decode_stream(body, 0, 64u << 20, whole);
    std::uint32_t seed = static_cast<std::uint32_t>(size) * 2654435761u + 1;
    const bool ok_cut = decode_stream(body, seed, 64u << 20, cut);
    FUZZ_CHECK(ok_whole == ok_cut);
    if (ok_whole) FUZZ_CHECK(same_messages(whole, cut));
    std::vector<etcd::watch_message> small;
    (void)decode_stream(body, seed, 48, small);
  }

  // base64: what decodes re-encodes to something that decodes the same; anything encodes and
  // decodes back.
  if (auto d = etcd::base64_decode(body)) {
    FUZZ_CHECK(d->size() <= body.size() / 4 * 3);
    auto again = etcd::base64_decode(etcd::base64_encode(*d));
    FUZZ_CHECK(again && *again == *d);
  }
  {
    auto enc = etcd::base64_encode(body);
    FUZZ_CHECK(enc.size() % 4 == 0);
    auto back = etcd::base64_decode(enc);
    FUZZ_CHECK(back && *back == body);
  }

  // A prefix's range end sorts after every key with that prefix.
  {
    const std::string end = etcd::prefix_range_end(body);
    if (end != std::string(1, '\0')) FUZZ_CHECK(std::string_view(end) > body);
    // The request bodies carry any bytes as base64, and parse as JSON objects.
    FUZZ_CHECK(!etcd::parse_error(etcd::range_request(body)));
    FUZZ_CHECK(!etcd::parse_error(etcd::put_request(body, body, 7)));
  }

  // An endpoint value registered under a key.
  {
    std::string error;
    auto reg = sluice::discovery::parse_registration(body, &error);
    if (!reg) {
      FUZZ_CHECK(!error.empty());
    } else {
      FUZZ_CHECK(!reg->address.empty());
      FUZZ_CHECK(reg->weight >= 1 && reg->weight <= sluice::discovery::max_weight);
      // What `sluice register` writes reads back the same.
      std::string error2;
      auto again = sluice::discovery::parse_registration(
          sluice::discovery::format_registration(*reg), &error2);
      FUZZ_CHECK(again && again->address == reg->address && again->weight == reg->weight &&
                 again->protocol == reg->protocol);
    }
  }
  return 0;
}
