// libFuzzer harness: the safetensors checkpoint reader (io/checkpoint.h) on arbitrary bytes. A
// parse either fails with kDataLoss or returns tensors whose every value is finite.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "distbelief/io/checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto c = distbelief::ParseCheckpoint(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz");
  if (!c.ok()) {
    if (c.status().code() != absl::StatusCode::kDataLoss) std::abort();
    return 0;
  }
  for (const auto& [name, t] : c->tensors)
    for (int64_t i = 0; i < t.size(); ++i)
      if (!std::isfinite(t[i])) std::abort();
  return 0;
}
