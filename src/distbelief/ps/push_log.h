// PushLog: a shard's write-ahead log of applied pushes, so a shard process killed between two
// checkpoints loses nothing it acknowledged. The shard appends each push (its id, the version it
// makes, the gradient) before applying and acknowledging it, rewinds the log after each
// checkpoint, and on restart applies the records the checkpoint does not hold, in order.
//
// File: records of an 88-byte header [u32 magic "DBW4"][u32 flags][u64 XXH3][u64 boot]
// [u64 floats][u64 client][u64 sequence][u64 based_on][u64 version][i64 replica clock]
// [i32 replica][u32 0][u64 lineage] and the floats (fp32, little-endian), the magic written
// last. The lineage is a random id the shard's checkpoints carry: records of another lineage
// (a log left by another run at the same path) are not this checkpoint's continuation. Versions
// rise by one from record to record; a rewind writes the next run over the old one from the start
// (pages the kernel holds are overwritten in place, no new blocks), so reading stops where
// versions stop rising or at a record that is not whole.
//
// Durability. Unsynced (the default; the shard keeps it in tmpfs, /dev/shm, and writes it through
// a mapping, its magic stored last): a record lives in memory that survives a kill -9 of the
// process but not a crash of the machine; records carry the
// boot they were written in, and one from another boot is not trusted (the clients' kept copies
// cover that case). Synced (`hashed`; the shard keeps it beside its checkpoint): records also
// carry an XXH3 of header and floats, checked when read, and Sync() (fdatasync) makes everything
// appended before it survive the machine.
// Not thread-safe except Sync, which may run beside Append and Rewind (the shard calls those
// under its lock).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>

#include "distbelief/base/status.h"
#include "distbelief/ps/shard_api.h"

namespace distbelief {

class PushLog {
 public:
  struct Record {
    PushMeta meta;            // incarnation not kept (0)
    uint64_t version = 0;     // the shard's version after applying it
    std::span<const float> gradient;
  };
  // Opens `path` (creating it) and calls `each` for every record of the current run of `lineage`
  // whose version is above `held` (what the checkpoint holds), in order; an error from `each` stops and is
  // returned. Appends go on after the run; an unsynced log is given room for `expect_records`
  // more at once (growing it later holds up the push that needs it). kUnavailable if the file
  // cannot be opened or grown; kDataLoss if a record holds a gradient of other than `floats` floats.
  static StatusOr<std::unique_ptr<PushLog>> Open(const std::string& path, int64_t floats, bool hashed,
                                                 uint64_t lineage, uint64_t held, int64_t expect_records,
                                                 const std::function<Status(const Record&)>& each);
  ~PushLog();

  // Appends one record (a gradient of `floats` floats, the version after the last one's).
  // kUnavailable if it cannot be written (a full disk): it does not count.
  Status Append(const PushMeta& meta, uint64_t version, std::span<const float> gradient);
  // Starts the next run at the beginning of the file (after a checkpoint holds everything in it).
  void Rewind() { offset_ = 0; }
  // fdatasync: every record appended before the call survives a machine crash.
  Status Sync();
  int64_t run_bytes() const { return offset_; }  // bytes of the current run

 private:
  PushLog(std::string path, int fd, int64_t floats, bool hashed, uint64_t lineage)
      : path_(std::move(path)), fd_(fd), floats_(floats), hashed_(hashed), lineage_(lineage) {}
  std::string path_;
  int fd_;
  int64_t floats_;
  bool hashed_;
  uint64_t lineage_;
  // Unsynced: the file is mapped (in tmpfs, stores beat write(2) 3x) and grown with fallocate.
  Status Reserve(int64_t bytes);
  unsigned char* map_ = nullptr;
  int64_t capacity_ = 0;
  int64_t offset_ = 0;    // where the next record goes
};

}  // namespace distbelief
