// A downstream connection's byte stream: a TCP socket, or a TLS stream over one whose handshake
// is done. Lets one non-template connection class serve both (the HTTP/2 server).
// Internal header: includes Asio's SSL support.
#pragma once

#include <boost/asio/async_result.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/write.hpp>
#include <cstddef>
#include <type_traits>
#include <utility>
#include <variant>

#include "net/io_batch.hpp"
#include "net/relay_read.hpp"

namespace sluice::net {

class downstream_stream {
 public:
  using tcp = boost::asio::ip::tcp;
  using tls_stream = boost::asio::ssl::stream<tcp::socket>;
  using executor_type = tcp::socket::executor_type;
  using lowest_layer_type = tcp::socket::lowest_layer_type;

  explicit downstream_stream(tcp::socket s) : s_(std::in_place_type<tcp::socket>, std::move(s)) {}
  explicit downstream_stream(tls_stream s) : s_(std::in_place_type<tls_stream>, std::move(s)) {}

  bool is_tls() const noexcept { return std::holds_alternative<tls_stream>(s_); }
  /// The TLS stream, or null for cleartext.
  tls_stream* tls() noexcept { return std::get_if<tls_stream>(&s_); }

  executor_type get_executor() noexcept {
    return std::visit([](auto& s) { return s.get_executor(); }, s_);
  }
  /// The TCP socket (cancel, shutdown, close, endpoints).
  lowest_layer_type& lowest_layer() noexcept {
    return std::visit([](auto& s) -> lowest_layer_type& { return s.lowest_layer(); }, s_);
  }

  template <class MutableBuffers, class Token>
  auto async_read_some(const MutableBuffers& buffers, Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
        [this](auto handler, const MutableBuffers& b) {
          if (auto* t = std::get_if<tls_stream>(&s_))
            t->async_read_some(b, std::move(handler));
          else if constexpr (std::is_convertible_v<MutableBuffers, boost::asio::mutable_buffer>)
            async_read_batched(std::get<tcp::socket>(s_), b, std::move(handler));
          else
            std::get<tcp::socket>(s_).async_read_some(b, std::move(handler));
        },
        token, buffers);
  }

  /// Writes all of `buffers` (asio::async_write); cleartext writes are batched with the loop
  /// turn's other I/O (net/io_batch.hpp).
  template <class ConstBuffers, class Token>
  auto async_write_all(const ConstBuffers& buffers, Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
        [this](auto handler, const ConstBuffers& b) {
          if (auto* t = std::get_if<tls_stream>(&s_))
            boost::asio::async_write(*t, b, std::move(handler));
          else
            async_write_batched(std::get<tcp::socket>(s_), b, std::move(handler));
        },
        token, buffers);
  }

  template <class ConstBuffers, class Token>
  auto async_write_some(const ConstBuffers& buffers, Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
        [this](auto handler, const ConstBuffers& b) {
          if (auto* t = std::get_if<tls_stream>(&s_))
            t->async_write_some(b, std::move(handler));
          else
            std::get<tcp::socket>(s_).async_write_some(b, std::move(handler));
        },
        token, buffers);
  }

 private:
  std::variant<tcp::socket, tls_stream> s_;
};

}  // namespace sluice::net
