#include "distbelief/ps/push_log.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#define XXH_STATIC_LINKING_ONLY  // XXH3_state_t on the stack
#include <xxhash.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "distbelief/base/logging.h"

namespace distbelief {
namespace {

constexpr uint32_t kMagic = 0x34574244;  // "DBW4" little-endian
constexpr uint32_t kHashed = 1;
constexpr int64_t kHeader = 88;

struct Header {
  uint32_t flags;
  uint64_t hash, boot, floats, client, sequence, based_on, version;
  int64_t clock;
  int32_t replica;
  uint64_t lineage;
};

void EncodeBody(const Header& h, unsigned char* out) {  // everything but the magic
  std::memcpy(out + 4, &h.flags, 4);
  std::memcpy(out + 8, &h.hash, 8);
  std::memcpy(out + 16, &h.boot, 8);
  std::memcpy(out + 24, &h.floats, 8);
  std::memcpy(out + 32, &h.client, 8);
  std::memcpy(out + 40, &h.sequence, 8);
  std::memcpy(out + 48, &h.based_on, 8);
  std::memcpy(out + 56, &h.version, 8);
  std::memcpy(out + 64, &h.clock, 8);
  std::memcpy(out + 72, &h.replica, 4);
  std::memset(out + 76, 0, 4);
  std::memcpy(out + 80, &h.lineage, 8);
}

Header Decode(const unsigned char* in) {
  Header h;
  std::memcpy(&h.flags, in + 4, 4);
  std::memcpy(&h.hash, in + 8, 8);
  std::memcpy(&h.boot, in + 16, 8);
  std::memcpy(&h.floats, in + 24, 8);
  std::memcpy(&h.client, in + 32, 8);
  std::memcpy(&h.sequence, in + 40, 8);
  std::memcpy(&h.based_on, in + 48, 8);
  std::memcpy(&h.version, in + 56, 8);
  std::memcpy(&h.clock, in + 64, 8);
  std::memcpy(&h.replica, in + 72, 4);
  std::memcpy(&h.lineage, in + 80, 8);
  return h;
}

// The hash of a record: its header after the hash field, then the floats.
uint64_t RecordHash(const unsigned char* header, const void* floats, size_t bytes) {
  XXH3_state_t state;
  XXH3_64bits_reset(&state);
  XXH3_64bits_update(&state, header + 16, kHeader - 16);
  XXH3_64bits_update(&state, floats, bytes);
  return XXH3_64bits_digest(&state);
}

// This boot of the machine (the kernel's random boot id, hashed); 0 if unknown.
uint64_t BootTag() {
  static const uint64_t tag = [] {
    std::ifstream in("/proc/sys/kernel/random/boot_id");
    std::string id;
    return (in >> id) ? XXH3_64bits(id.data(), id.size()) | 1 : uint64_t{0};
  }();
  return tag;
}

}  // namespace

// Reads exactly n bytes at `at`; false at end of file or on error.
static bool ReadFull(int fd, void* data, size_t n, int64_t at) {
  char* p = static_cast<char*>(data);
  while (n > 0) {
    const ssize_t r = ::pread(fd, p, n, at);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
    at += r;
  }
  return true;
}

// Writes exactly n bytes at `at`, or says why not.
static Status WriteFull(int fd, const void* data, size_t n, int64_t at, const std::string& path) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::pwrite(fd, p, n, at);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return absl::UnavailableError("push log " + path + ": " + (w < 0 ? std::strerror(errno) : "no progress"));
    p += w;
    n -= static_cast<size_t>(w);
    at += w;
  }
  return absl::OkStatus();
}

StatusOr<std::unique_ptr<PushLog>> PushLog::Open(const std::string& path, int64_t floats, bool hashed,
                                                 uint64_t lineage, uint64_t held, int64_t expect_records,
                                                 const std::function<Status(const Record&)>& each) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return absl::UnavailableError("push log " + path + ": " + std::strerror(errno));
  std::unique_ptr<PushLog> log(new PushLog(path, fd, floats, hashed, lineage));
  const size_t bytes = static_cast<size_t>(floats) * sizeof(float);
  const int64_t record = kHeader + static_cast<int64_t>(bytes);
  unsigned char header[kHeader];
  std::vector<float> g;
  uint64_t last = 0;
  while (ReadFull(fd, header, kHeader, log->offset_)) {
    uint32_t magic = 0;
    std::memcpy(&magic, header, 4);
    const Header h = Decode(header);
    if (magic != kMagic || (last > 0 && h.version != last + 1)) break;  // the end of the run
    if (h.lineage != lineage) {
      LOG_WARN << "push log " << path << " was written after another checkpoint than this one (another run?); "
               << "it is written afresh";
      break;
    }
    if (h.floats != static_cast<uint64_t>(floats))
      return absl::DataLossError(absl::StrCat("push log ", path, " holds a gradient of ", h.floats,
                                              " floats; the shard holds ", floats, " (another model's log?)"));
    if (h.version > held) {  // needed: it must be whole
      g.resize(static_cast<size_t>(floats));
      const bool read = ReadFull(fd, g.data(), bytes, log->offset_ + kHeader);
      if (!read || ((h.flags & kHashed) ? RecordHash(header, g.data(), bytes) != h.hash : h.boot != BootTag())) {
        LOG_WARN << "push log " << path << ": the record of update " << h.version
                 << (!read ? " is cut short"
                     : (h.flags & kHashed) ? " fails its hash (cut off by a crash)"
                                           : " was written before the machine restarted and never synced")
                 << "; the log ends before it";
        break;
      }
      Record r;
      r.meta.client = h.client;
      r.meta.sequence = h.sequence;
      r.meta.based_on_version = h.based_on;
      r.meta.replica = h.replica;
      r.meta.replica_clock = h.clock;
      r.version = h.version;
      r.gradient = g;
      DB_RETURN_IF_ERROR(each(r));
    }
    last = h.version;
    log->offset_ += record;
  }
  if (!hashed) {
    struct stat st {};
    if (::fstat(fd, &st) != 0) return absl::UnavailableError("push log " + path + ": " + std::strerror(errno));
    DB_RETURN_IF_ERROR(log->Reserve(std::max<int64_t>(st.st_size, log->offset_ + std::max<int64_t>(expect_records, 16) * record)));
  }
  return log;
}

PushLog::~PushLog() {
  if (map_) ::munmap(map_, static_cast<size_t>(capacity_));
  ::close(fd_);
}

Status PushLog::Reserve(int64_t bytes) {
  if (bytes <= capacity_) return absl::OkStatus();
  const int64_t want = std::max(bytes, 2 * capacity_);
  // Memory first (tmpfs): a mapped page past what the file system can give would be a SIGBUS;
  // here it is an error.
  if (int e = ::posix_fallocate(fd_, 0, want); e != 0)
    return absl::UnavailableError("push log " + path_ + ": cannot grow to " + std::to_string(want) +
                                  " bytes: " + std::strerror(e));
  // Mapped whole and populated at once: page by page on first touch costs pushes 10x more.
  if (map_) ::munmap(map_, static_cast<size_t>(capacity_));
  map_ = nullptr;
  capacity_ = 0;
  void* m = ::mmap(nullptr, static_cast<size_t>(want), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd_, 0);
  if (m == MAP_FAILED) return absl::UnavailableError("push log " + path_ + ": cannot map: " + std::strerror(errno));
  map_ = static_cast<unsigned char*>(m);
  capacity_ = want;
  return absl::OkStatus();
}

Status PushLog::Append(const PushMeta& meta, uint64_t version, std::span<const float> gradient) {
  if (static_cast<int64_t>(gradient.size()) != floats_)
    return absl::InvalidArgumentError(absl::StrCat("push log: a gradient of ", gradient.size(), " floats, not ", floats_));
  const size_t bytes = gradient.size() * sizeof(float);
  // In this order, each write complete before the next starts: the old magic off (a stale record
  // here no longer reads as one), the floats, the header, the magic. A process killed anywhere in
  // between (a write may stop early on SIGKILL) leaves no record that reads as whole.
  static constexpr uint32_t kNone = 0;
  if (!hashed_) {  // mapped: the same order, by stores (a kill stops between two of them)
    DB_RETURN_IF_ERROR(Reserve(offset_ + kHeader + static_cast<int64_t>(bytes)));
    unsigned char* p = map_ + offset_;
    std::memcpy(p, &kNone, 4);
    std::atomic_signal_fence(std::memory_order_seq_cst);
    std::memcpy(p + kHeader, gradient.data(), bytes);
    Header h{0, 0, BootTag(), gradient.size(), meta.client, meta.sequence, meta.based_on_version,
             version, meta.replica_clock, meta.replica, lineage_};
    EncodeBody(h, p);
    std::atomic_signal_fence(std::memory_order_seq_cst);
    std::memcpy(p, &kMagic, 4);
    offset_ += kHeader + static_cast<int64_t>(bytes);
    return absl::OkStatus();
  }
  DB_RETURN_IF_ERROR(WriteFull(fd_, &kNone, 4, offset_, path_));
  DB_RETURN_IF_ERROR(WriteFull(fd_, gradient.data(), bytes, offset_ + kHeader, path_));
  unsigned char header[kHeader];
  Header h{hashed_ ? kHashed : 0, 0, BootTag(), gradient.size(), meta.client, meta.sequence, meta.based_on_version,
           version, meta.replica_clock, meta.replica, lineage_};
  EncodeBody(h, header);
  if (hashed_) {
    h.hash = RecordHash(header, gradient.data(), bytes);
    std::memcpy(header + 8, &h.hash, 8);
  }
  DB_RETURN_IF_ERROR(WriteFull(fd_, header + 4, kHeader - 4, offset_ + 4, path_));
  DB_RETURN_IF_ERROR(WriteFull(fd_, &kMagic, 4, offset_, path_));
  offset_ += kHeader + static_cast<int64_t>(bytes);
  return absl::OkStatus();
}

Status PushLog::Sync() {
  if (::fdatasync(fd_) != 0) return absl::UnavailableError("push log " + path_ + ": fdatasync: " + std::strerror(errno));
  return absl::OkStatus();
}

}  // namespace distbelief
