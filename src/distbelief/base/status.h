// Status and StatusOr: how failures from outside the program (files, configs, checkpoints, peers)
// come back to the caller. distbelief uses abseil's types and canonical codes:
//   kInvalidArgument  bad config, keys or shapes from a caller
//   kNotFound         a missing file
//   kDataLoss         a corrupt or truncated checkpoint or data file
//   kUnavailable      retry this call;  kDeadlineExceeded  the call timed out
// Bugs (violated REQUIRES, shape mismatches inside kernels) use CHECK from logging.h instead.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace distbelief {

using Status = absl::Status;
template <typename T>
using StatusOr = absl::StatusOr<T>;

// Returns from the enclosing function if `expr` (a Status) is not OK.
#define DB_RETURN_IF_ERROR(expr)                  \
  do {                                            \
    ::distbelief::Status _db_status = (expr);     \
    if (!_db_status.ok()) return _db_status;      \
  } while (0)

#define DB_CONCAT_INNER(a, b) a##b
#define DB_CONCAT(a, b) DB_CONCAT_INNER(a, b)
// `DB_ASSIGN_OR_RETURN(auto x, F())`: assigns the value of a StatusOr or returns its error.
#define DB_ASSIGN_OR_RETURN(lhs, expr) \
  DB_ASSIGN_OR_RETURN_IMPL(DB_CONCAT(_db_statusor_, __LINE__), lhs, expr)
#define DB_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                             \
  if (!tmp.ok()) return tmp.status();            \
  lhs = std::move(tmp).value()

}  // namespace distbelief
