// What a user sees of a run: metrics appended as JSON lines, and a progress line with rate and
// ETA (redrawn in place on a terminal, plain log lines at most every few seconds otherwise).
#pragma once

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "distbelief/base/status.h"
#include "distbelief/io/tfevents.h"

namespace distbelief {

// Named numbers: a metrics record, an evaluation's results.
using Metrics = std::vector<std::pair<std::string, double>>;

// Appends one JSON object per line to a file and, if asked, the same numbers as TensorBoard
// scalars (tfevents.h) in an event file beside it, at the record's "step". Not thread-safe.
class MetricsWriter {
 public:
  MetricsWriter() = default;
  ~MetricsWriter();
  MetricsWriter(const MetricsWriter&) = delete;
  MetricsWriter& operator=(const MetricsWriter&) = delete;
  // Opens `path` for appending (creating folders). An empty path writes nothing. With
  // `tensorboard`, also a new event file in path's folder.
  Status Open(const std::string& path, bool tensorboard = false);
  void Write(const nlohmann::json& record);
  void Write(const Metrics& record);

 private:
  std::FILE* f_ = nullptr;
  std::unique_ptr<EventWriter> events_;
  int64_t records_ = 0;
};

class Progress {
 public:
  // `total` units of work, named `unit` ("examples").
  Progress(int64_t total, std::string unit);
  // Reports that `done` units are finished, with a short status such as "loss 0.123".
  void Update(int64_t done, const std::string& status);
  // Ends the line on a terminal.
  void Finish();
  // Formats seconds as "1h02m", "3m05s" or "12s".
  static std::string FormatDuration(double seconds);

 private:
  int64_t total_;
  std::string unit_;
  bool tty_;
  std::chrono::steady_clock::time_point start_, last_;
};

}  // namespace distbelief
