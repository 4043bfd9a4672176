// Moving an open Asio TCP socket to another executor type of the same io_context, with no
// syscall. Internal header: includes Asio.
#pragma once

#include <type_traits>

#include <boost/asio/basic_stream_socket.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "net/socket_adopt.hpp"  // detail::io_object_access

namespace sluice::net {

/// Returns a socket of type `To` (on executor `ex`, which must belong to the io_context `from`
/// is registered with) that owns what `from` owned: the fd, its reactor registration and its
/// state. `from` is left closed. Both socket types use the same reactive socket service of the
/// same io_context, so this only moves the implementation's fields: no epoll_ctl, no dup.
/// (Asio's converting move constructor does the same, but only towards a type whose executor
/// converts from the source's: io_context::executor_type -> any_io_executor, not back.)
template <class To, class From>
To rebind_socket(From&& from, const typename To::executor_type& ex) {
  To to(ex);
  auto& t = to.*detail::io_object_access<To>::member();
  auto& f = from.*detail::io_object_access<std::remove_cvref_t<From>>::member();
  t.get_service().move_assign(t.get_implementation(), f.get_service(), f.get_implementation());
  return to;
}

}  // namespace sluice::net
