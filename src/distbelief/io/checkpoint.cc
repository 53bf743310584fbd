#include "distbelief/io/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include <nlohmann/json.hpp>

namespace distbelief {
namespace {

Status WriteAll(int fd, const void* data, size_t n, const std::string& path) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return absl::UnavailableError("writing " + path + ": " + std::strerror(errno));
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return absl::OkStatus();
}

}  // namespace

uint32_t Crc32(std::string_view bytes, uint32_t crc) {
  size_t done = 0;
  while (done < bytes.size()) {  // zlib takes uInt lengths
    const size_t chunk = std::min<size_t>(bytes.size() - done, 1u << 30);
    crc = crc32(crc, reinterpret_cast<const Bytef*>(bytes.data() + done), static_cast<uInt>(chunk));
    done += chunk;
  }
  return static_cast<uint32_t>(crc);
}

Status WriteCheckpoint(const std::string& path, const Checkpoint& ckpt) {
  std::string data;
  nlohmann::json header = nlohmann::json::object();
  for (const auto& [name, t] : ckpt.tensors) {
    const size_t begin = data.size();
    data.append(reinterpret_cast<const char*>(t.data()), t.size() * sizeof(float));
    header[name] = {{"dtype", "F32"}, {"shape", t.shape()}, {"data_offsets", {begin, data.size()}}};
  }
  nlohmann::json meta = nlohmann::json::object();
  for (const auto& [k, v] : ckpt.metadata) meta[k] = v;
  meta["distbelief.crc32"] = std::to_string(Crc32(data));
  header["__metadata__"] = meta;
  std::string h = header.dump();
  h.append((8 - h.size() % 8) % 8, ' ');  // keep the data 8-byte aligned, as the format suggests
  uint64_t hlen = h.size();
  unsigned char len_bytes[8];
  for (int i = 0; i < 8; ++i) len_bytes[i] = static_cast<unsigned char>(hlen >> (8 * i));

  const std::filesystem::path target(path);
  const std::filesystem::path dir = target.has_parent_path() ? target.parent_path() : ".";
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return absl::UnavailableError("cannot create " + tmp + ": " + std::strerror(errno));
  Status s = WriteAll(fd, len_bytes, 8, tmp);
  if (s.ok()) s = WriteAll(fd, h.data(), h.size(), tmp);
  if (s.ok()) s = WriteAll(fd, data.data(), data.size(), tmp);
  if (s.ok() && ::fsync(fd) != 0) s = absl::UnavailableError("fsync " + tmp + " failed");
  ::close(fd);
  if (s.ok() && std::rename(tmp.c_str(), path.c_str()) != 0)
    s = absl::UnavailableError("rename to " + path + ": " + std::strerror(errno));
  if (!s.ok()) {
    ::unlink(tmp.c_str());
    return s;
  }
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) {
    // Ignore a failed directory fsync: the rename is done and some filesystems refuse it.
    (void)::fsync(dfd);
    ::close(dfd);
  }
  return absl::OkStatus();
}

namespace {

// One tensor's entry in the header, checked but not yet copied.
struct Entry {
  std::string name;
  Shape shape;
  uint64_t begin = 0, end = 0;
};

constexpr uint64_t kMaxHeaderBytes = 100u << 20;  // as the safetensors reference reader

}  // namespace

StatusOr<Checkpoint> ParseCheckpoint(std::string_view bytes, const std::string& origin) {
  auto bad = [&](const std::string& why) { return absl::DataLossError("checkpoint " + origin + ": " + why); };
  if (bytes.size() < 8) return bad("truncated (shorter than its 8-byte header length)");
  uint64_t hlen = 0;
  for (int i = 0; i < 8; ++i) hlen |= uint64_t{static_cast<unsigned char>(bytes[i])} << (8 * i);
  if (hlen > bytes.size() - 8) return bad("truncated (header length " + std::to_string(hlen) + " past the end)");
  if (hlen > kMaxHeaderBytes) return bad("header of " + std::to_string(hlen) + " bytes (at most 100 MiB)");
  const nlohmann::json header = nlohmann::json::parse(bytes.begin() + 8, bytes.begin() + 8 + hlen,
                                                      nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded() || !header.is_object()) return bad("header is not a JSON object");
  const std::string_view data = bytes.substr(8 + hlen);
  Checkpoint out;
  std::vector<Entry> entries;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) return bad("__metadata__ is not an object");
      for (const auto& [k, v] : entry.items()) {
        if (!v.is_string()) return bad("metadata '" + k + "' is not a string");
        out.metadata[k] = v.get<std::string>();
      }
      continue;
    }
    if (!entry.is_object() || !entry.contains("dtype") || !entry.contains("shape") ||
        !entry.contains("data_offsets"))
      return bad("tensor '" + name + "' lacks dtype, shape or data_offsets");
    if (entry["dtype"] != "F32") return bad("tensor '" + name + "' has unsupported dtype " + entry["dtype"].dump());
    const auto& off = entry["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      return bad("tensor '" + name + "' has malformed data_offsets");
    Entry e{name, {}, off[0].get<uint64_t>(), off[1].get<uint64_t>()};
    if (e.begin > e.end || e.end > data.size()) return bad("tensor '" + name + "' lies outside the file (truncated?)");
    if (!entry["shape"].is_array()) return bad("tensor '" + name + "' has malformed shape");
    uint64_t count = 1;
    for (const auto& d : entry["shape"]) {
      if (!d.is_number_unsigned()) return bad("tensor '" + name + "' has malformed shape");
      const uint64_t n = d.get<uint64_t>();
      // The product is checked against the bytes it claims before anything is allocated.
      if (n > data.size() || (n > 0 && count > data.size() / n))
        return bad("tensor '" + name + "' has a shape larger than the file");
      count *= n;
      e.shape.push_back(static_cast<int64_t>(n));
    }
    if (count * sizeof(float) != e.end - e.begin) return bad("tensor '" + name + "' size does not match its shape");
    entries.push_back(std::move(e));
  }
  // The format's rule: the tensors index the whole data buffer, without holes or overlaps.
  std::vector<const Entry*> order;
  for (const Entry& e : entries) order.push_back(&e);
  std::sort(order.begin(), order.end(), [](const Entry* a, const Entry* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  uint64_t covered = 0;
  for (const Entry* e : order) {
    if (e->begin < covered) return bad("tensor '" + e->name + "' overlaps another tensor's bytes");
    if (e->begin > covered) return bad("bytes " + std::to_string(covered) + ".." + std::to_string(e->begin) +
                                       " belong to no tensor");
    covered = e->end;
  }
  if (covered != data.size()) return bad(std::to_string(data.size() - covered) + " bytes after the last tensor");
  auto crc = out.metadata.find("distbelief.crc32");
  if (crc == out.metadata.end())
    return bad("no distbelief.crc32 checksum in its metadata (not written by distbelief, or edited)");
  if (crc->second != std::to_string(Crc32(data))) return bad("checksum mismatch (the file is corrupt)");
  for (const Entry& e : entries) {
    Tensor t(e.shape);
    if (e.end > e.begin) std::memcpy(t.data(), data.data() + e.begin, e.end - e.begin);
    for (int64_t i = 0; i < t.size(); ++i)
      if (!std::isfinite(t[i])) return bad("tensor '" + e.name + "' holds NaN or Inf");
    out.tensors.emplace(e.name, std::move(t));
  }
  return out;
}

StatusOr<Checkpoint> ReadCheckpoint(const std::string& path) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (!std::filesystem::exists(status)) return absl::NotFoundError("checkpoint " + path + " not found");
  if (!std::filesystem::is_regular_file(status))
    return absl::InvalidArgumentError("checkpoint " + path + " is not a regular file");
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::PermissionDeniedError("checkpoint " + path + " cannot be opened");
  const std::string bytes((std::istreambuf_iterator<char>(in)), {});
  if (in.bad()) return absl::DataLossError("checkpoint " + path + ": read error");
  return ParseCheckpoint(bytes, path);
}

}  // namespace distbelief
