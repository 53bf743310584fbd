#include "distbelief/workloads/scale/run_db.h"

#include <cmath>
#include <filesystem>

#include <sqlite3.h>

namespace distbelief {
namespace {

// Finalizes a prepared statement on every way out.
struct Stmt {
  sqlite3_stmt* s = nullptr;
  ~Stmt() { sqlite3_finalize(s); }
};

Status Error(sqlite3* db, const std::string& what) {
  return absl::DataLossError("run database: " + what + ": " + sqlite3_errmsg(db));
}

RunRow ReadRow(sqlite3_stmt* s) {
  RunRow r;
  auto text = [&](int i) { const unsigned char* t = sqlite3_column_text(s, i); return t ? std::string(reinterpret_cast<const char*>(t)) : std::string(); };
  r.key = text(0);
  r.workload = text(1);
  r.width = sqlite3_column_int64(s, 2);
  r.layers = sqlite3_column_int64(s, 3);
  r.params = sqlite3_column_int64(s, 4);
  r.total_params = sqlite3_column_int64(s, 5);
  r.tokens = sqlite3_column_int64(s, 6);
  r.flops_6nd = sqlite3_column_double(s, 7);
  r.flops_counted = sqlite3_column_double(s, 8);
  r.seconds = sqlite3_column_double(s, 9);
  r.loss = sqlite3_column_type(s, 10) == SQLITE_NULL ? std::nan("") : sqlite3_column_double(s, 10);
  r.train_loss = sqlite3_column_type(s, 11) == SQLITE_NULL ? std::nan("") : sqlite3_column_double(s, 11);
  r.status = text(12);
  return r;
}

constexpr char kColumns[] =
    "key, workload, width, layers, params, total_params, tokens, flops_6nd, flops_counted, seconds, loss, "
    "train_loss, status";

}  // namespace

StatusOr<std::unique_ptr<RunDatabase>> RunDatabase::Open(const std::string& path) {
  std::error_code ec;
  const auto dir = std::filesystem::path(path).parent_path();
  if (!dir.empty()) std::filesystem::create_directories(dir, ec);
  sqlite3* db = nullptr;
  if (sqlite3_open(path.c_str(), &db) != SQLITE_OK) {
    const std::string msg = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    return absl::UnavailableError("cannot open run database " + path + ": " + msg);
  }
  std::unique_ptr<RunDatabase> out(new RunDatabase(db));
  out->path_ = path;
  sqlite3_busy_timeout(db, 5000);
  DB_RETURN_IF_ERROR(out->Exec(
      "CREATE TABLE IF NOT EXISTS runs(key TEXT PRIMARY KEY, workload TEXT, width INTEGER, layers INTEGER,"
      " params INTEGER, total_params INTEGER, tokens INTEGER, flops_6nd REAL, flops_counted REAL,"
      " seconds REAL, loss REAL, train_loss REAL, status TEXT, finished_at TEXT DEFAULT CURRENT_TIMESTAMP);"
      "CREATE TABLE IF NOT EXISTS predictions(key TEXT PRIMARY KEY, predicted REAL, fit_points INTEGER,"
      " made_at TEXT DEFAULT CURRENT_TIMESTAMP);"));
  return out;
}

RunDatabase::~RunDatabase() { sqlite3_close(db_); }

Status RunDatabase::Exec(const std::string& sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    const std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    return absl::DataLossError("run database " + path_ + ": " + msg);
  }
  return absl::OkStatus();
}

Status RunDatabase::Insert(const RunRow& r) {
  Stmt st;
  const std::string sql = std::string("INSERT OR REPLACE INTO runs(") + kColumns +
                          ") VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?)";
  if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &st.s, nullptr) != SQLITE_OK) return Error(db_, "insert");
  sqlite3_bind_text(st.s, 1, r.key.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st.s, 2, r.workload.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64(st.s, 3, r.width);
  sqlite3_bind_int64(st.s, 4, r.layers);
  sqlite3_bind_int64(st.s, 5, r.params);
  sqlite3_bind_int64(st.s, 6, r.total_params);
  sqlite3_bind_int64(st.s, 7, r.tokens);
  sqlite3_bind_double(st.s, 8, r.flops_6nd);
  sqlite3_bind_double(st.s, 9, r.flops_counted);
  sqlite3_bind_double(st.s, 10, r.seconds);
  if (std::isfinite(r.loss)) sqlite3_bind_double(st.s, 11, r.loss); else sqlite3_bind_null(st.s, 11);
  if (std::isfinite(r.train_loss)) sqlite3_bind_double(st.s, 12, r.train_loss); else sqlite3_bind_null(st.s, 12);
  sqlite3_bind_text(st.s, 13, r.status.c_str(), -1, SQLITE_TRANSIENT);
  if (sqlite3_step(st.s) != SQLITE_DONE) return Error(db_, "insert");
  return absl::OkStatus();
}

StatusOr<std::optional<RunRow>> RunDatabase::Find(const std::string& key) {
  Stmt st;
  const std::string sql = std::string("SELECT ") + kColumns + " FROM runs WHERE key = ?";
  if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &st.s, nullptr) != SQLITE_OK) return Error(db_, "select");
  sqlite3_bind_text(st.s, 1, key.c_str(), -1, SQLITE_TRANSIENT);
  const int rc = sqlite3_step(st.s);
  if (rc == SQLITE_ROW) return std::optional<RunRow>(ReadRow(st.s));
  if (rc != SQLITE_DONE) return Error(db_, "select");
  return std::optional<RunRow>();
}

StatusOr<std::vector<RunRow>> RunDatabase::All() {
  Stmt st;
  const std::string sql = std::string("SELECT ") + kColumns + " FROM runs ORDER BY params, tokens";
  if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &st.s, nullptr) != SQLITE_OK) return Error(db_, "select");
  std::vector<RunRow> rows;
  int rc;
  while ((rc = sqlite3_step(st.s)) == SQLITE_ROW) rows.push_back(ReadRow(st.s));
  if (rc != SQLITE_DONE) return Error(db_, "select");
  return rows;
}

Status RunDatabase::SetPrediction(const std::string& key, double predicted, int64_t fit_points) {
  Stmt st;
  if (sqlite3_prepare_v2(db_, "INSERT OR REPLACE INTO predictions(key, predicted, fit_points) VALUES(?,?,?)", -1,
                         &st.s, nullptr) != SQLITE_OK)
    return Error(db_, "insert prediction");
  sqlite3_bind_text(st.s, 1, key.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_double(st.s, 2, predicted);
  sqlite3_bind_int64(st.s, 3, fit_points);
  if (sqlite3_step(st.s) != SQLITE_DONE) return Error(db_, "insert prediction");
  return absl::OkStatus();
}

StatusOr<std::optional<double>> RunDatabase::Prediction(const std::string& key) {
  Stmt st;
  if (sqlite3_prepare_v2(db_, "SELECT predicted FROM predictions WHERE key = ?", -1, &st.s, nullptr) != SQLITE_OK)
    return Error(db_, "select prediction");
  sqlite3_bind_text(st.s, 1, key.c_str(), -1, SQLITE_TRANSIENT);
  const int rc = sqlite3_step(st.s);
  if (rc == SQLITE_ROW) return std::optional<double>(sqlite3_column_double(st.s, 0));
  if (rc != SQLITE_DONE) return Error(db_, "select prediction");
  return std::optional<double>();
}

}  // namespace distbelief
