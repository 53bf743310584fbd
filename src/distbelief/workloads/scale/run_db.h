// The sweep's record: an SQLite database of finished runs and of predictions made before a run.
// A run is written once, when it ends (done or diverged), under a key naming everything that
// determines its result, so an interrupted sweep resumes where it stopped and a finished run is
// never repeated. A run killed mid-way leaves no row and is run again.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "distbelief/base/status.h"

struct sqlite3;

namespace distbelief {

struct RunRow {
  std::string key, workload;
  int64_t width = 0, layers = 0, params = 0, total_params = 0, tokens = 0;
  double flops_6nd = 0, flops_counted = 0, seconds = 0;
  double loss = 0;  // NaN (NULL in the database) for a diverged run
  double train_loss = 0;
  std::string status;  // done | diverged
};

class RunDatabase {
 public:
  // Opens or creates the database (and its folder). kDataLoss if the file is not a database.
  static StatusOr<std::unique_ptr<RunDatabase>> Open(const std::string& path);
  ~RunDatabase();
  Status Insert(const RunRow& row);
  StatusOr<std::optional<RunRow>> Find(const std::string& key);
  StatusOr<std::vector<RunRow>> All();
  Status SetPrediction(const std::string& key, double predicted, int64_t fit_points);
  StatusOr<std::optional<double>> Prediction(const std::string& key);

 private:
  explicit RunDatabase(sqlite3* db) : db_(db) {}
  Status Exec(const std::string& sql);
  sqlite3* db_;
  std::string path_;
};

}  // namespace distbelief
