#include "distbelief/io/tfevents.h"

#include <isa-l/crc.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "distbelief/tfevents.pb.h"

namespace distbelief {

uint32_t Crc32c(const void* data, size_t n) {
  // ISA-L's iSCSI CRC is CRC32C without the final inversion.
  uint32_t crc = 0xffffffffu;
  const auto* p = static_cast<const unsigned char*>(data);
  while (n > 0) {  // its length is an int
    const int chunk = static_cast<int>(std::min<size_t>(n, size_t{1} << 30));
    crc = crc32_iscsi(const_cast<unsigned char*>(p), chunk, crc);
    p += chunk;
    n -= static_cast<size_t>(chunk);
  }
  return ~crc;
}

uint32_t MaskedCrc32c(const void* data, size_t n) {
  const uint32_t crc = Crc32c(data, n);
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

namespace {
void PutLe(std::string* out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint64_t GetLe(const char* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= uint64_t{static_cast<unsigned char>(p[i])} << (8 * i);
  return v;
}
}  // namespace

EventWriter::~EventWriter() {
  if (f_) std::fclose(f_);
}

Status EventWriter::Open(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  char host[256] = "localhost";
  ::gethostname(host, sizeof host - 1);
  const auto now = std::chrono::system_clock::now();
  const double seconds = std::chrono::duration<double>(now.time_since_epoch()).count();
  path_ = dir + "/events.out.tfevents." + std::to_string(static_cast<int64_t>(seconds)) + "." + host;
  // A second writer in the same second (a restart) gets its own file rather than appending.
  for (int i = 1; std::filesystem::exists(path_, ec); ++i)
    path_ = dir + "/events.out.tfevents." + std::to_string(static_cast<int64_t>(seconds)) + "." + host + "." + std::to_string(i);
  f_ = std::fopen(path_.c_str(), "wb");
  if (!f_) return absl::UnavailableError("cannot create event file " + path_ + ": " + std::strerror(errno));
  tfevents::Event e;
  e.set_wall_time(seconds);
  e.set_file_version("brain.Event:2");
  return WriteRecord(e.SerializeAsString());
}

Status EventWriter::WriteScalars(int64_t step, double wall_time, const std::vector<std::pair<std::string, double>>& values) {
  if (!f_) return absl::FailedPreconditionError("event file not open");
  tfevents::Event e;
  e.set_wall_time(wall_time);
  e.set_step(step);
  for (const auto& [tag, v] : values) {
    tfevents::SummaryValue* s = e.mutable_summary()->add_value();
    s->set_tag(tag);
    s->set_simple_value(static_cast<float>(v));
  }
  return WriteRecord(e.SerializeAsString());
}

Status EventWriter::WriteRecord(const std::string& data) {
  std::string rec;
  PutLe(&rec, data.size(), 8);
  PutLe(&rec, MaskedCrc32c(rec.data(), 8), 4);
  rec += data;
  PutLe(&rec, MaskedCrc32c(data.data(), data.size()), 4);
  if (std::fwrite(rec.data(), 1, rec.size(), f_) != rec.size() || std::fflush(f_) != 0)
    return absl::UnavailableError("cannot write event file " + path_ + ": " + std::strerror(errno));
  return absl::OkStatus();
}

StatusOr<std::vector<ScalarEvent>> ReadScalarEvents(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError("event file " + path + " not found");
  const std::string b((std::istreambuf_iterator<char>(in)), {});
  return ParseScalarEvents(b, path);
}

StatusOr<std::vector<ScalarEvent>> ParseScalarEvents(std::string_view b, const std::string& path) {
  std::vector<ScalarEvent> out;
  size_t at = 0;
  while (at < b.size()) {
    const std::string where = path + " at byte " + std::to_string(at);
    if (b.size() - at < 12) return absl::DataLossError("event file " + where + ": truncated record header");
    const uint64_t len = GetLe(b.data() + at, 8);
    if (static_cast<uint32_t>(GetLe(b.data() + at + 8, 4)) != MaskedCrc32c(b.data() + at, 8))
      return absl::DataLossError("event file " + where + ": length CRC mismatch");
    if (len > b.size() - at - 12 || b.size() - at - 12 - len < 4)
      return absl::DataLossError("event file " + where + ": truncated record of " + std::to_string(len) + " bytes");
    const char* data = b.data() + at + 12;
    if (static_cast<uint32_t>(GetLe(data + len, 4)) != MaskedCrc32c(data, len))
      return absl::DataLossError("event file " + where + ": data CRC mismatch");
    tfevents::Event e;
    if (!e.ParseFromArray(data, static_cast<int>(len)))
      return absl::DataLossError("event file " + where + ": not an Event protobuf");
    if (e.has_summary()) {
      for (const tfevents::SummaryValue& v : e.summary().value()) {
        if (!v.has_simple_value()) continue;
        out.push_back({e.step(), e.wall_time(), v.tag(), v.simple_value()});
      }
    }
    at += 12 + len + 4;
  }
  return out;
}

}  // namespace distbelief
