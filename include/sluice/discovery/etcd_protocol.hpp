// The etcd v3 JSON gateway (/v3/...) as pure functions: request bodies, response decoding.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::discovery::etcd {

/// Standard base64 (with padding), as the gateway writes `bytes` fields.
std::string base64_encode(std::string_view in);
/// nullopt on a character outside the alphabet or a bad length/padding.
std::optional<std::string> base64_decode(std::string_view in);

/// The range_end that selects every key starting with `prefix`: the prefix with its last byte
/// incremented (trailing 0xff bytes dropped first). An empty prefix, or one made only of 0xff
/// bytes, gives "\0" (etcd's "every key from `key` on").
std::string prefix_range_end(std::string_view prefix);

/// One key as read by a range or carried by a watch event. `value` is decoded (raw bytes).
struct key_value {
  std::string key;
  std::string value;
  std::int64_t mod_revision = 0;
  std::int64_t lease = 0;
};

struct watch_event {
  enum class kind { put, del } type = kind::put;
  key_value kv;
};

/// A decoded `/v3/kv/range` answer.
struct range_result {
  std::int64_t revision = 0;  ///< header.revision: the store revision the read saw
  std::vector<key_value> kvs;
  bool more = false;          ///< the server truncated the answer (a limit was hit)
};

/// One message of a `/v3/watch` stream.
struct watch_message {
  std::int64_t revision = 0;          ///< header.revision
  bool created = false;
  bool canceled = false;
  std::int64_t compact_revision = 0;  ///< > 0: the requested revision was compacted away
  std::string cancel_reason;
  std::vector<watch_event> events;
  /// Non-empty when the stream carried an error instead of a result (e.g. an expired token).
  std::string error;
  int error_code = 0;                 ///< gRPC status code of `error` (16: unauthenticated)
};

/// Any gateway error body `{"error": "...", "code": N}` (or the streaming form
/// `{"error": {"grpc_code": N, "message": "..."}}`), as (code, message); nullopt if the body is
/// not an error.
struct gateway_error {
  int code = 0;
  std::string message;
  /// gRPC code 16, or an etcd auth failure reported with another code.
  bool is_auth() const noexcept;
};
std::optional<gateway_error> parse_error(std::string_view body);

// ---- request bodies -------------------------------------------------------------------------

std::string range_request(std::string_view prefix);
std::string watch_request(std::string_view prefix, std::int64_t start_revision);
std::string authenticate_request(std::string_view name, std::string_view password);
std::string lease_grant_request(std::int64_t ttl_seconds);
std::string lease_id_request(std::int64_t lease_id);  ///< keepalive and revoke
std::string put_request(std::string_view key, std::string_view value, std::int64_t lease_id);
std::string delete_request(std::string_view key);

// ---- response bodies (nullopt + *error on anything malformed) -------------------------------

std::optional<range_result> parse_range_response(std::string_view body, std::string* error);
std::optional<std::string> parse_authenticate_response(std::string_view body, std::string* error);
/// Lease grant: the lease ID (> 0).
std::optional<std::int64_t> parse_lease_grant_response(std::string_view body, std::string* error);
/// Keep-alive: the remaining TTL in seconds; 0 when the lease no longer exists.
std::optional<std::int64_t> parse_keepalive_response(std::string_view body, std::string* error);
/// The revision of a put/delete/revoke (checks the body is not an error).
std::optional<std::int64_t> parse_header_revision(std::string_view body, std::string* error);

/// Splits a watch stream (a sequence of JSON objects, however the bytes are chunked) into
/// messages. Not thread-safe; one per stream.
class watch_decoder {
 public:
  /// Refuses one message larger than `max_message` bytes.
  explicit watch_decoder(std::size_t max_message = 64u << 20);
  ~watch_decoder();
  watch_decoder(const watch_decoder&) = delete;
  watch_decoder& operator=(const watch_decoder&) = delete;

  /// Feeds bytes; appends every completed message to `out`. Returns false (and fills *error)
  /// when the stream is not valid JSON or a message is not a watch response; the decoder is
  /// then unusable.
  bool feed(std::string_view bytes, std::vector<watch_message>& out, std::string* error);

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

/// Decodes one complete watch stream message.
std::optional<watch_message> parse_watch_message(std::string_view body, std::string* error);

}  // namespace sluice::discovery::etcd
