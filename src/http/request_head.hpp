// Beast's parsers where sluice still uses them: chunked request and response bodies, and the
// HTTP/2 bridge's response heads. Internal header: includes Beast.
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

/// Hands a parsed request head (`head`: its bytes, as vetted by parse_request_head) to a
/// `prepare`d parser, which then decodes the chunked body that follows. False when the parser
/// refuses the head or finds no chunked body.
bool start_chunked_body(request_parser& p, std::string_view head);

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
