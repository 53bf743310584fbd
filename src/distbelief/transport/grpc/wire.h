// Floats <-> the bytes of the wire (little-endian fp32, as on every host we run), for the gRPC
// transport and its tensor socket only.
#pragma once

#include <bit>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "distbelief/base/status.h"

namespace distbelief::wire {

static_assert(std::endian::native == std::endian::little, "the wire format is little-endian fp32");

inline void AssignFloats(std::span<const float> v, std::string* bytes) {
  bytes->assign(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}

// A view of `bytes` as floats, without a copy when its storage is float-aligned (else a copy in
// *scratch). kInvalidArgument if it is not a whole number of floats, or, with expected >= 0, not
// exactly `expected` of them. Valid while `bytes` (and *scratch) live unchanged.
StatusOr<std::span<const float>> FloatsView(const std::string& bytes, int64_t expected, std::vector<float>* scratch);

// Copies `bytes` into consecutive pieces; kDataLoss unless it holds exactly their floats.
Status ScatterFloats(const std::string& bytes, std::span<const std::span<float>> pieces, const std::string& what);

}  // namespace distbelief::wire
