// Invariant checks of the fuzz targets: a violated one prints where and why, then aborts, which
// libFuzzer reports as a crash (with the input) and the replay test as a failure.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#define FUZZ_CHECK(cond)                                                                  \
  do {                                                                                    \
    if (!(cond)) {                                                                        \
      std::fprintf(stderr, "%s:%d: invariant violated: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                       \
    }                                                                                     \
  } while (0)

// Where a head parser is fed a prefix of the input, as a session feeds the bytes received so
// far: every length for short inputs, else 32 pseudo-random ones (from `seed`) plus the lengths
// right at the end of the head (`head_size`, 0 when the whole input is not a complete head).
inline std::vector<std::size_t> prefix_cuts(std::size_t size, std::uint32_t seed,
                                            std::size_t head_size) {
  std::vector<std::size_t> cuts;
  if (size <= 200) {
    for (std::size_t k = 0; k < size; ++k) cuts.push_back(k);
    return cuts;
  }
  std::uint32_t x = seed * 2654435761u + static_cast<std::uint32_t>(size);
  for (int i = 0; i < 32; ++i) {
    x = x * 1103515245u + 12345u;
    cuts.push_back((x >> 8) % size);
  }
  if (head_size > 0) {
    cuts.push_back(head_size - 1);
    cuts.push_back(head_size);
  }
  return cuts;
}
