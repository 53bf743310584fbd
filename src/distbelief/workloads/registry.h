// The workloads the command line knows, in one list. A config selects one by its section
// ([cat], [lm], [scale]; [model] or none of them: MNIST). Adding a workload is one entry here;
// no registration macros, no static initializers.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "distbelief/config/config.h"
#include "distbelief/train/engine.h"

namespace distbelief {

struct WorkloadEntry {
  const char* name;     // "mnist"
  const char* section;  // the config section that selects it
  const char* summary;  // one line for --help
  StatusOr<std::unique_ptr<Workload>> (*make)(ConfigFile* file);  // parses its sections
};

const std::vector<WorkloadEntry>& Workloads();

// The workload the config selects, with its options parsed; kInvalidArgument if the config has
// the sections of two.
StatusOr<std::unique_ptr<Workload>> SelectWorkload(ConfigFile* file, std::string* name = nullptr);

}  // namespace distbelief
