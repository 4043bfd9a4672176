// Beast's parsers where sluice still uses them: decoding response bodies (chunked responses;
// chunked, sized and close-delimited ones on the HTTP/2 bridge). Heads are parsed by
// message_head; a decoder is handed a head that passed those checks, then the body. Chunked
// request bodies have their own decoder (chunked_decoder.hpp).
// Internal header: includes Beast.
#pragma once

#include <cstddef>
#include <string_view>

#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/parser.hpp>

#include "field_allocator.hpp"
#include "sluice/http/message_head.hpp"  // response_header_limit

namespace sluice::http {

namespace bhttp = boost::beast::http;

/// Header fields of the decoded messages: their blocks come from the per-thread field pool.
using fields = bhttp::basic_fields<field_allocator<char>>;
using response_parser = bhttp::response_parser<bhttp::buffer_body, field_allocator<char>>;

/// A fresh response decoder; `head_request`: the response to a HEAD request (no body).
void prepare(response_parser& p, bool head_request);

/// Hands a complete head (its bytes, as vetted by parse_request_head / parse_response_head) to
/// a prepared decoder, which then takes the body that follows. False when the decoder refuses
/// the head.
bool start_body(response_parser& p, std::string_view head);

}  // namespace sluice::http
