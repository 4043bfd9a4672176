#pragma once
// Per-thread recycling of small blocks: header fields, HTTP sessions, coroutine frames.

#include <cstddef>

/// Per-thread free lists of blocks of 64 B to 4 KiB (powers of two); larger requests go to
/// `operator new`.
/// - Beast's `basic_fields` makes one allocation per header field (name and value together)
///   plus one for the request target or reason phrase, so a proxied request costs a dozen.
/// - Every coroutine a request goes through allocates its frame (`coroutine_frames.hpp`):
///   about eight per proxied HTTP/1.1 request, 200 B to 1 KiB each.
/// - The HTTP/1.1 session objects (one per busy connection, made again each time a parked
///   connection wakes up): reusing the same blocks keeps them from fragmenting the heap between
///   the small, long-lived records of parked connections.
///
/// Recycled here, each is a pointer pop instead of a trip through malloc, whose per-thread cache
/// holds only seven blocks of a size (Asio's own frame cache holds two).
/// Thread-safety: each thread has its own lists; a block freed on another thread than the one
/// that allocated it simply joins that thread's lists. At most `max_cached` blocks of each size
/// up to 1 KiB, and a quarter of that of the larger ones, are kept per thread (bounded
/// memory); the rest are released.
namespace sluice::core::block_pool {
inline constexpr std::size_t max_cached = 256;
void* allocate(std::size_t bytes);
void deallocate(void* p, std::size_t bytes) noexcept;
/// Blocks kept on this thread's lists (all sizes); for tests.
std::size_t cached() noexcept;
}  // namespace sluice::core::block_pool
