// Allocator for Beast's header field containers and the HTTP sessions: recycles their blocks
// per thread.
#pragma once

#include <cstddef>
#include <type_traits>

#include "sluice/core/block_pool.hpp"

namespace sluice::http {

/// Stateless standard allocator over the per-thread `core::block_pool`, for
/// `boost::beast::http::basic_fields`.
template <class T>
class field_allocator {
 public:
  using value_type = T;
  using is_always_equal = std::true_type;

  field_allocator() noexcept = default;
  template <class U>
  field_allocator(const field_allocator<U>&) noexcept {}

  T* allocate(std::size_t n) { return static_cast<T*>(core::block_pool::allocate(n * sizeof(T))); }
  void deallocate(T* p, std::size_t n) noexcept { core::block_pool::deallocate(p, n * sizeof(T)); }

  template <class U>
  bool operator==(const field_allocator<U>&) const noexcept { return true; }
  template <class U>
  bool operator!=(const field_allocator<U>&) const noexcept { return false; }
};

}  // namespace sluice::http
