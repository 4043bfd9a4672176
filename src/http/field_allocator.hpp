// Allocator for Beast's header field containers and the HTTP sessions: recycles their blocks
// per thread.
#pragma once

#include <cstddef>
#include <type_traits>

namespace sluice::http {

/// Per-thread free lists of blocks of 64 B to 4 KiB (powers of two); larger requests go to
/// `operator new`. Beast's `basic_fields` makes one allocation per header field (name and value
/// together) plus one for the request target or reason phrase, so a proxied request costs a
/// dozen of them; recycled here, each is a pointer pop instead of a trip through malloc. The
/// HTTP/1.1 session objects (one per busy connection, made again each time a parked connection
/// wakes up) come from here too: reusing the same blocks keeps them from fragmenting the heap
/// between the small, long-lived records of parked connections.
/// Thread-safety: each thread has its own lists; a block freed on another thread than the one
/// that allocated it simply joins that thread's lists. At most `max_cached` blocks of each size
/// up to 512 B, and a quarter of that of the larger ones, are kept per thread (bounded
/// memory); the rest are released.
namespace field_pool {
inline constexpr std::size_t max_cached = 256;
void* allocate(std::size_t bytes);
void deallocate(void* p, std::size_t bytes) noexcept;
/// Blocks kept on this thread's lists (all sizes); for tests.
std::size_t cached() noexcept;
}  // namespace field_pool

/// Stateless standard allocator over `field_pool`, for `boost::beast::http::basic_fields`.
template <class T>
class field_allocator {
 public:
  using value_type = T;
  using is_always_equal = std::true_type;

  field_allocator() noexcept = default;
  template <class U>
  field_allocator(const field_allocator<U>&) noexcept {}

  T* allocate(std::size_t n) { return static_cast<T*>(field_pool::allocate(n * sizeof(T))); }
  void deallocate(T* p, std::size_t n) noexcept { field_pool::deallocate(p, n * sizeof(T)); }

  template <class U>
  bool operator==(const field_allocator<U>&) const noexcept { return true; }
  template <class U>
  bool operator!=(const field_allocator<U>&) const noexcept { return false; }
};

}  // namespace sluice::http
