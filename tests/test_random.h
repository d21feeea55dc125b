// Replayable random draws for tests: a base seed (LOWBIT_TEST_SEED replays a
// run) and uniform / Gaussian draws from mt19937_64, whose output sequence is
// fixed by the standard (the std distributions are not).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>

namespace lowbit::testing {

inline uint64_t BaseSeed() {
  if (const char* env = std::getenv("LOWBIT_TEST_SEED")) return std::strtoull(env, nullptr, 10);
  return 20261124;
}

// A random seed per test binary, printed so that LOWBIT_SEED replays a run
// (for tests that sweep fresh random cases on every run).
inline uint64_t ReplayableSeed(const char* test_name) {
  static const uint64_t seed = [test_name] {
    const char* env = std::getenv("LOWBIT_SEED");
    const uint64_t s = env ? std::strtoull(env, nullptr, 10) : std::random_device{}();
    std::printf("%s seed: %llu (LOWBIT_SEED=%llu replays)\n", test_name, (unsigned long long)s, (unsigned long long)s);
    return s;
  }();
  return seed;
}

// Uniform [0, 1).
inline double Uniform(std::mt19937_64& rng) { return double(rng() >> 11) * 0x1p-53; }

// Standard normal (Box-Muller).
inline double Gaussian(std::mt19937_64& rng) {
  const double u = 1.0 - Uniform(rng), v = Uniform(rng);
  return std::sqrt(-2.0 * std::log(u)) * std::cos(6.283185307179586 * v);
}

}  // namespace lowbit::testing
