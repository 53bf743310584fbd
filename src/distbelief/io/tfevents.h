// TensorBoard event files, so a run's curves open in TensorBoard where it is installed.
//
// A file is a sequence of records: uint64 length (little-endian), uint32 masked CRC32C of those
// 8 bytes, `length` bytes of a serialized Event protobuf (proto/tfevents.proto, TensorBoard's field
// numbers), uint32 masked CRC32C of the data. The first event holds file_version "brain.Event:2";
// each later one a step, a wall time and scalar summaries (tag, simple_value).
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "distbelief/base/status.h"

namespace distbelief {

// CRC32C (Castagnoli) of n bytes, and TensorFlow's mask of it: ((crc >> 15) | (crc << 17)) +
// 0xa282ead8, so a CRC of data that holds CRCs is not trivially related to them.
uint32_t Crc32c(const void* data, size_t n);
uint32_t MaskedCrc32c(const void* data, size_t n);

struct ScalarEvent {
  int64_t step = 0;
  double wall_time = 0;  // seconds since the epoch
  std::string tag;
  float value = 0;
};

// Appends events to one new file, `dir`/events.out.tfevents.<seconds>.<host>. Not thread-safe.
class EventWriter {
 public:
  EventWriter() = default;
  ~EventWriter();
  EventWriter(const EventWriter&) = delete;
  EventWriter& operator=(const EventWriter&) = delete;
  // Creates `dir` if needed and the file, and writes the file_version event. kUnavailable if it
  // cannot be created.
  Status Open(const std::string& dir);
  // One event at `step` holding every (tag, value) pair as a scalar summary; flushed.
  Status WriteScalars(int64_t step, double wall_time, const std::vector<std::pair<std::string, double>>& values);
  const std::string& path() const { return path_; }

 private:
  Status WriteRecord(const std::string& data);
  std::FILE* f_ = nullptr;
  std::string path_;
};

// Reads every scalar of an event file, checking each record's two CRCs. kDataLoss naming the
// file and the byte offset for a truncated record, a CRC mismatch or data that does not parse;
// kNotFound if the file is missing. Events without scalars (file_version) are skipped.
StatusOr<std::vector<ScalarEvent>> ReadScalarEvents(const std::string& path);
// The same on the bytes of a file; `path` names it in errors.
StatusOr<std::vector<ScalarEvent>> ParseScalarEvents(std::string_view bytes, const std::string& path);

}  // namespace distbelief
