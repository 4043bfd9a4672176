// The speculative-read flag of Asio's epoll reactor, reached from outside the reactor.
#include "net/relay_read.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

namespace sluice::net {

#if defined(BOOST_ASIO_HAS_EPOLL) && !defined(BOOST_ASIO_HAS_IO_URING_AS_DEFAULT)
namespace {

// The flag is a private member of the reactor's per-socket state. An explicit instantiation
// may name private members; this one hands the member's address to a friend function.
using descriptor_state = boost::asio::detail::epoll_reactor::descriptor_state;
using speculative_flags = bool (descriptor_state::*)[boost::asio::detail::epoll_reactor::max_ops];

speculative_flags speculative_member();

template <speculative_flags Member>
struct speculative_access {
  friend speculative_flags speculative_member() { return Member; }
};
template struct speculative_access<&descriptor_state::try_speculative_>;

using reactor_pointer = boost::asio::detail::epoll_reactor* descriptor_state::*;

reactor_pointer reactor_member();

template <reactor_pointer Member>
struct reactor_access {
  friend reactor_pointer reactor_member() { return Member; }
};
template struct reactor_access<&descriptor_state::reactor_>;

void clear_read_flag(descriptor_state* state) noexcept {
  if (state) (state->*speculative_member())[boost::asio::detail::epoll_reactor::read_op] = false;
}

bool read_flag_clear(const descriptor_state* state) noexcept {
  return state && !(state->*speculative_member())[boost::asio::detail::epoll_reactor::read_op];
}

}  // namespace

#ifdef SLUICE_RELAY_READ
relay_reactor& detail::reactor_of_state(relay_reactor::per_descriptor_data state) noexcept {
  return *(state->*reactor_member());
}
#endif

void expect_nothing_to_read(boost::asio::ip::tcp::socket& socket) noexcept {
  clear_read_flag(
      (socket.*detail::socket_state_access::member()).get_implementation().reactor_data_);
}

bool expects_nothing_to_read(boost::asio::ip::tcp::socket& socket) noexcept {
  return read_flag_clear(
      (socket.*detail::socket_state_access::member()).get_implementation().reactor_data_);
}
#else
void expect_nothing_to_read(boost::asio::ip::tcp::socket&) noexcept {}
bool expects_nothing_to_read(boost::asio::ip::tcp::socket&) noexcept { return false; }
#endif

void enable_inq(boost::asio::ip::tcp::socket& socket) noexcept {
#ifdef TCP_INQ
  int one = 1;
  ::setsockopt(socket.native_handle(), IPPROTO_TCP, TCP_INQ, &one, sizeof one);
#else
  (void)socket;
#endif
}

}  // namespace sluice::net
