#include "distbelief/transport/grpc/wire.h"

#include <cstring>

namespace distbelief::wire {

StatusOr<std::span<const float>> FloatsView(const std::string& bytes, int64_t expected, std::vector<float>* scratch) {
  if (bytes.size() % sizeof(float) != 0)
    return absl::InvalidArgumentError("float payload of " + std::to_string(bytes.size()) +
                                      " bytes is not a whole number of floats");
  const int64_t n = static_cast<int64_t>(bytes.size() / sizeof(float));
  if (expected >= 0 && n != expected)
    return absl::InvalidArgumentError("payload holds " + std::to_string(n) + " floats, expected " + std::to_string(expected));
  if (reinterpret_cast<uintptr_t>(bytes.data()) % alignof(float) != 0) {
    scratch->resize(n);
    std::memcpy(scratch->data(), bytes.data(), bytes.size());
    return std::span<const float>(*scratch);
  }
  // The bytes were written by a copy (protobuf's parse), which creates the floats.
  return std::span<const float>(reinterpret_cast<const float*>(bytes.data()), n);
}

Status ScatterFloats(const std::string& bytes, std::span<const std::span<float>> pieces, const std::string& what) {
  size_t want = 0;
  for (const auto& p : pieces) want += p.size() * sizeof(float);
  if (bytes.size() != want)
    return absl::DataLossError(what + " sent " + std::to_string(bytes.size() / sizeof(float)) + " floats, expected " +
                               std::to_string(want / sizeof(float)));
  const char* src = bytes.data();
  for (const auto& p : pieces) {
    std::memcpy(p.data(), src, p.size() * sizeof(float));
    src += p.size() * sizeof(float);
  }
  return absl::OkStatus();
}

}  // namespace distbelief::wire
