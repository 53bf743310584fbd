// Random: a seeded generator (PCG-style 64-bit LCG with xorshift output) whose stream depends only
// on the seed, on every platform, so runs in deterministic mode repeat bit for bit.
// Not thread-safe: give each thread its own Random (Fork()).
#pragma once

#include <cmath>
#include <cstdint>
#include <random>

namespace distbelief {

class Random {
 public:
  explicit Random(uint64_t seed) : state_(seed * 6364136223846793005ULL + 1442695040888963407ULL) {
    Next();
  }
  // Uniform 32 random bits.
  uint32_t Next() {
    const uint64_t old = state_;
    state_ = old * 6364136223846793005ULL + 1442695040888963407ULL;
    const uint32_t xorshifted = static_cast<uint32_t>(((old >> 18u) ^ old) >> 27u);
    const uint32_t rot = static_cast<uint32_t>(old >> 59u);
    return (xorshifted >> rot) | (xorshifted << ((-rot) & 31));
  }
  // Uniform in [0, 1).
  double Uniform() { return (Next() >> 8) * (1.0 / 16777216.0); }
  float Uniform(float lo, float hi) { return lo + (hi - lo) * static_cast<float>(Uniform()); }
  // Uniform integer in [0, n).
  uint64_t UniformInt(uint64_t n) { return ((uint64_t{Next()} << 32 | Next()) % n); }
  // Standard normal (Box-Muller).
  double Normal() {
    double u1 = Uniform();
    while (u1 <= 1e-300) u1 = Uniform();
    const double u2 = Uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }
  // An independent generator derived from this one's stream.
  Random Fork() { return Random((uint64_t{Next()} << 32) | Next()); }

 private:
  uint64_t state_;
};

// A fresh 64-bit id from the OS's random source, never 0 (0 means "none" where ids are used:
// a parameter client's push id, a shard process's incarnation).
inline uint64_t RandomNonZeroId() {
  std::random_device rd;
  uint64_t id = 0;
  while (id == 0) id = uint64_t{rd()} << 32 | rd();
  return id;
}

}  // namespace distbelief
