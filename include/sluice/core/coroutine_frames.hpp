#pragma once
// Coroutine frames of boost::asio::awaitable<T> from the per-thread block pool.
//
// Included first in every C++ translation unit of the project (CMakeLists.txt, `-include`): an
// explicit specialization must be seen before any use, in every translation unit alike.
//
// Why: Asio allocates each frame from a per-thread cache of two blocks and, when it misses, frees
// a cached block and calls `aligned_alloc`, which has no per-thread fast path in glibc. A proxied
// HTTP/1.1 request goes through about eight coroutines, most of them nested, so nearly every
// frame missed: frame allocation and release were about 13 % of the user-space instructions of
// a request. (A larger Asio cache is slower still: it is searched linearly, first fit.)
// Asio's frame `operator new` and `operator delete` call thread_info_base::allocate and
// deallocate with the awaitable_frame_tag; the specializations below send that purpose, and
// only that one, to core::block_pool. Every other Asio allocation keeps Asio's cache.

#include <cstddef>

#include <boost/asio/detail/thread_info_base.hpp>

#include "block_pool.hpp"  // same folder: found without the include path

namespace boost::asio::detail {

template <>
inline void* thread_info_base::allocate<thread_info_base::awaitable_frame_tag>(
    thread_info_base::awaitable_frame_tag, thread_info_base*, std::size_t size,
    std::size_t /*align*/) {
  // Frames are always asked for with the default alignment (awaitable_frame_base's operator
  // new takes no alignment), which every block of the pool has.
  return sluice::core::block_pool::allocate(size);
}

template <>
inline void thread_info_base::deallocate<thread_info_base::awaitable_frame_tag>(
    thread_info_base::awaitable_frame_tag, thread_info_base*, void* pointer,
    std::size_t size) {
  sluice::core::block_pool::deallocate(pointer, size);
}

}  // namespace boost::asio::detail
