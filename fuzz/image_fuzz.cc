// libFuzzer harness: image decoding (data/images.h, stb_image) on arbitrary bytes. Images are
// capped at 2^16 pixels here (the real cap is 2^26) so that each run stays fast.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "distbelief/data/images.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  constexpr int64_t kCap = 1 << 16;
  auto img = distbelief::DecodeGreyFromMemory(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz", kCap);
  if (!img.ok()) return 0;
  if (img->w < 1 || img->h < 1 || img->w * img->h > kCap ||
      img->pixels.size() != static_cast<size_t>(img->w * img->h))
    std::abort();
  return 0;
}
