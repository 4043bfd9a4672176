// Reading and vetting a downstream request head with Beast's parser: limits (414/431/413) and
// the hostile-input checks Beast's parser lets through. Internal header: includes Beast.
#pragma once

#include <cstddef>
#include <string_view>

#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/parser.hpp>

#include "field_allocator.hpp"
#include "sluice/config/config.hpp"
#include "sluice/http/forwarding.hpp"

namespace sluice::http {

namespace bhttp = boost::beast::http;

/// Header fields of the proxied messages: their blocks come from the per-thread field pool.
using fields = bhttp::basic_fields<field_allocator<char>>;
using request_parser = bhttp::request_parser<bhttp::buffer_body, field_allocator<char>>;
using response_parser = bhttp::response_parser<bhttp::buffer_body, field_allocator<char>>;
using request_header = bhttp::request_header<fields>;
using response_header = bhttp::response_header<fields>;

/// Sets header and body limits on a fresh parser from the listener's limits.
void prepare(request_parser& p, const config::listener_limits& limits);

/// What the caller should do after `feed_head`.
struct head_result {
  enum class state { need_more, done, reject } what = state::need_more;
  unsigned status = 0;        ///< reject: the status to answer (400, 413, 414, 431, 501, 505)
  std::size_t head_size = 0;  ///< done: bytes of the head, to consume from the buffer
  split_target target;        ///< done: the request target, classified
  const char* reason = "";    ///< reject: short reason for the error log / body
};

/// Feeds everything buffered so far (`buffered` starts at the first unconsumed byte and must
/// hold the same bytes, plus any new ones, on the next call) into a `prepare`d parser. On `done`
/// the head passed every check; body bytes (if any) follow at `buffered[head_size]`.
/// Leading empty lines (CRLF) before the request line are tolerated and counted in head_size.
head_result feed_head(request_parser& p, std::string_view buffered,
                      const config::listener_limits& limits);

/// Checks on a complete head (what Beast's parser accepts but we must not): called by
/// feed_head; `raw` is the head's bytes. Returns 0 when acceptable, else a status.
unsigned check_head(const request_header& req, std::string_view raw,
                    const config::listener_limits& limits, split_target& target,
                    const char*& reason);

/// How much of `buffered` (a message head so far, from its first byte) to hand Beast's parser.
/// On its first look at a head, Beast's parser consumes a complete start line (and complete
/// fields) even when the end of the head has not arrived, and expects those bytes to be dropped;
/// sluice re-feeds a head from its first byte (the checks need all of it). So until the end of
/// the head is in, the parser sees only the bytes before the first line break: it vets what it
/// can and then waits for the whole head. A bare LF is shown at once (the parser rejects it),
/// and so is everything once `buffered` is longer than `limit` (the parser's header limit).
std::size_t feedable_head(std::string_view buffered, std::size_t limit) noexcept;

/// Checks on a complete upstream response head: false means "malformed" (→ 502): a
/// Transfer-Encoding other than chunked, Content-Length with Transfer-Encoding, obs-fold.
bool check_response_head(const response_header& res, std::string_view raw) noexcept;

}  // namespace sluice::http
