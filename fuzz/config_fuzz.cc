// libFuzzer harness: the config edge. Arbitrary text through the TOML reader (config/), the
// engine's typed options and the workload registry, as `distbelief train --config` reads it:
// every outcome must be a Status, never a crash or an exception.
#include <cstdint>
#include <string>

#include "distbelief/base/logging.h"
#include "distbelief/config/config.h"
#include "distbelief/train/options.h"
#include "distbelief/workloads/registry.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace distbelief;
  auto file = ConfigFile::Parse(std::string(reinterpret_cast<const char*>(data), size), "fuzz.toml");
  if (!file.ok()) return 0;
  auto engine = ParseEngineOptions(&*file);
  if (!engine.ok()) return 0;
  std::string name;
  auto workload = SelectWorkload(&*file, &name);
  if (!workload.ok()) return 0;
  (void)file->CheckAllRead();
  return 0;
}
