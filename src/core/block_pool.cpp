#include "sluice/core/block_pool.hpp"

#include <new>

namespace sluice::core::block_pool {

namespace {

constexpr std::size_t classes = 7;  // 64 << c bytes: 64 B .. 4 KiB
// Blocks kept per class and thread: max_cached up to 1 KiB (header fields, coroutine frames),
// fewer of the larger ones (sessions, one per busy connection).
constexpr std::size_t keep(int c) noexcept { return c <= 4 ? max_cached : max_cached / 4; }
struct free_block {
  free_block* next;
};

struct lists {
  free_block* head[classes] = {};
  std::size_t count[classes] = {};
  ~lists() {
    for (auto*& h : head) {
      while (h) {
        auto* next = h->next;
        ::operator delete(h);
        h = next;
      }
    }
  }
};

thread_local lists pool;

int class_of(std::size_t bytes) noexcept {
  if (bytes <= 64) return 0;
  if (bytes <= 128) return 1;
  if (bytes <= 256) return 2;
  if (bytes <= 512) return 3;
  if (bytes <= 1024) return 4;
  if (bytes <= 2048) return 5;
  if (bytes <= 4096) return 6;
  return -1;
}

}  // namespace

void* allocate(std::size_t bytes) {
  int c = class_of(bytes);
  if (c < 0) return ::operator new(bytes);
  auto& l = pool;
  if (auto* b = l.head[c]) {
    l.head[c] = b->next;
    --l.count[c];
    return b;
  }
  return ::operator new(std::size_t{64} << c);
}

void deallocate(void* p, std::size_t bytes) noexcept {
  if (!p) return;
  int c = class_of(bytes);
  auto& l = pool;
  if (c < 0 || l.count[c] >= keep(c)) {
    ::operator delete(p);
    return;
  }
  auto* b = static_cast<free_block*>(p);
  b->next = l.head[c];
  l.head[c] = b;
  ++l.count[c];
}

std::size_t cached() noexcept {
  std::size_t n = 0;
  for (auto c : pool.count) n += c;
  return n;
}

}  // namespace sluice::core::block_pool
