// Wrapping a fresh non-blocking fd in an Asio TCP socket without Asio's extra syscalls.
// Internal header: includes Asio.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <boost/system/error_code.hpp>

namespace sluice::net {

namespace detail {
// A socket's io_object (service + implementation: fd, state, reactor registration) is a
// protected member; a pointer to it, taken through a derived class, may be applied to any
// socket of that type.
template <class Socket>
struct io_object_access : Socket {
  static auto member() { return &io_object_access::impl_; }
};

// Asio keeps in a socket's private state whether the fd is non-blocking (for its reactor, and
// as the user's choice for synchronous operations) and issues ioctl(FIONBIO) before the first
// asynchronous operation, and on every non_blocking(true), when it does not know. A socket from
// accept4(SOCK_NONBLOCK) or socket(SOCK_NONBLOCK) already is, so the state is set directly.
using socket_state_access = io_object_access<boost::asio::ip::tcp::socket>;
}  // namespace detail

/// Wraps `fd`, just made by accept4(SOCK_NONBLOCK | SOCK_CLOEXEC) or socket(SOCK_NONBLOCK |
/// SOCK_CLOEXEC), in `socket` with no syscall besides the reactor registration.
inline void adopt_nonblocking(boost::asio::ip::tcp::socket& socket,
                              const boost::asio::ip::tcp& protocol, int fd,
                              boost::system::error_code& ec) {
  socket.assign(protocol, fd, ec);
  if (ec) return;
#if !defined(BOOST_ASIO_HAS_IO_URING_AS_DEFAULT) && !defined(BOOST_ASIO_WINDOWS)
  namespace ops = boost::asio::detail::socket_ops;
  auto& state = (socket.*detail::socket_state_access::member()).get_implementation().state_;
  // Non-blocking for Asio's reactor and for synchronous operations alike (non_blocking() is
  // true): the fd is O_NONBLOCK already.
  state |= ops::internal_non_blocking | ops::user_set_non_blocking;
  // assign() assumes the fd might be a dup() and then deregisters it from epoll explicitly on
  // close; a fresh fd is not, so closing it removes it from epoll by itself.
  state &= static_cast<ops::state_type>(~ops::possible_dup);
#else
  socket.non_blocking(true, ec);
#endif
}

}  // namespace sluice::net
