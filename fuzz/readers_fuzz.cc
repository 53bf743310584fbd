// libFuzzer harness: the binary readers, the MNIST IDX pair (io/mnist.h), the language model's
// token cache (text/corpus.h) and TensorBoard event files (io/tfevents.h). The first byte picks
// the reader; for MNIST the second and third give the split between the image and the label file.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "distbelief/io/mnist.h"
#include "distbelief/io/tfevents.h"
#include "distbelief/text/corpus.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 3) return 0;
  const std::string_view all(reinterpret_cast<const char*>(data) + 3, size - 3);
  if (data[0] % 3 == 2) {
    auto r = distbelief::ParseScalarEvents(all, "fuzz");
    if (r.ok() && r->size() > all.size() / 7) std::abort();  // a scalar takes at least 7 bytes
    return 0;
  }
  if (data[0] % 3 == 1) {
    distbelief::TokenCorpus c;
    if (distbelief::ParseTokenCache(all, &c) && c.train.size() + c.heldout.size() > all.size() / 2) std::abort();
    return 0;
  }
  const size_t cut = std::min<size_t>(all.size(), size_t{data[1]} << 8 | data[2]);
  auto r = distbelief::ParseMnist(all.substr(0, cut), all.substr(cut), "images", "labels");
  if (r.ok() && r->images.size() > static_cast<int64_t>(cut)) std::abort();
  return 0;
}
