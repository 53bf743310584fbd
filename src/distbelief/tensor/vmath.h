// Vectorizable elementwise math: loops written so that g++ turns them into AVX-512 code.
// FastExp is Cephes' single-precision exp (rel. error ~2e-7 on [-87, 88]) in plain arithmetic.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace distbelief {

inline float FastExp(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  const float n = std::nearbyint(x * 1.44269504088896341f);  // round(x / ln 2)
  // r = x - n ln 2, with ln 2 split in two so the subtraction stays exact.
  const float r = (x - n * 0.693359375f) - n * (-2.12194440e-4f);
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float er = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;  // 2^n
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return er * scale;
}

inline float FastSigmoid(float x) { return 1.0f / (1.0f + FastExp(-x)); }
inline float FastTanh(float x) { return 2.0f / (1.0f + FastExp(-2.0f * x)) - 1.0f; }

}  // namespace distbelief
