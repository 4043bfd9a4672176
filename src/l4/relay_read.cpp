// The speculative-read flag of Asio's epoll reactor, reached from outside the reactor.
#include "l4/relay_read.hpp"

namespace sluice::l4 {

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

void clear_read_flag(descriptor_state* state) noexcept {
  if (state) (state->*speculative_member())[boost::asio::detail::epoll_reactor::read_op] = false;
}

}  // namespace

void expect_nothing_to_read(boost::asio::ip::tcp::socket& socket) noexcept {
  clear_read_flag(
      (socket.*net::detail::socket_state_access::member()).get_implementation().reactor_data_);
}
#else
void expect_nothing_to_read(boost::asio::ip::tcp::socket&) noexcept {}
#endif

}  // namespace sluice::l4
