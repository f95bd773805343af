// splitmix64 random numbers: identical streams on every compiler and library, for
// synthetic weights, demo checkpoints and test data (not for anything secret).
#pragma once

#include <cmath>
#include <cstdint>

namespace ffnjit {

struct SplitMix64 {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  double uniform() { return (double(next() >> 11) + 0.5) * 0x1.0p-53; }  // (0, 1)
  // Zero mean, unit variance, uniform on [-sqrt(3), sqrt(3)]: cheap test activations.
  float unit() { return float(uniform() * 2.0 - 1.0) * 1.7320508f; }
  // Standard normal (Box-Muller, one spare kept).
  double normal() {
    if (have_spare) {
      have_spare = false;
      return spare;
    }
    const double u = uniform(), v = uniform(), r = std::sqrt(-2.0 * std::log(u));
    spare = r * std::sin(2 * M_PI * v);
    have_spare = true;
    return r * std::cos(2 * M_PI * v);
  }
  double spare = 0;
  bool have_spare = false;
};

}  // namespace ffnjit
