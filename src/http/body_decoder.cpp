#include "body_decoder.hpp"

#include <string>

#include <boost/asio/buffer.hpp>

namespace sluice::http {

namespace {

template <class Parser>
bool feed(Parser& p, std::string_view head) {
  boost::system::error_code ec;
  auto n = p.put(boost::asio::const_buffer(head.data(), head.size()), ec);
  return !ec && n == head.size() && p.is_header_done();
}

}  // namespace

void prepare(response_parser& p, bool head_request) {
  p.header_limit(response_header_limit);
  p.body_limit(boost::none);
  p.eager(false);
  if (head_request) p.skip(true);
}

bool start_body(response_parser& p, std::string_view head) {
  // Beast's parser wants the SP before an empty reason phrase, which some servers leave out
  // ("HTTP/1.1 200\r\n"); parse_response_head accepts that, as nginx does. Give it the SP.
  if (head.size() >= 14 && head[12] == '\r') {
    std::string fixed;
    fixed.reserve(head.size() + 1);
    fixed.append(head.substr(0, 12));
    fixed += ' ';
    fixed.append(head.substr(12));
    return feed(p, fixed);
  }
  return feed(p, head);
}

}  // namespace sluice::http
