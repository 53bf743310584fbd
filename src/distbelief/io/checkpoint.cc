#include "distbelief/io/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
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

uint32_t Crc32(const std::string& bytes) {
  uLong crc = crc32(0L, Z_NULL, 0);
  size_t done = 0;
  while (done < bytes.size()) {  // zlib takes uInt lengths
    const size_t chunk = std::min<size_t>(bytes.size() - done, 1u << 30);
    crc = crc32(crc, reinterpret_cast<const Bytef*>(bytes.data() + done), static_cast<uInt>(chunk));
    done += chunk;
  }
  return static_cast<uint32_t>(crc);
}

}  // namespace

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

StatusOr<Checkpoint> ReadCheckpoint(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError("checkpoint " + path + " not found");
  const std::string bytes((std::istreambuf_iterator<char>(in)), {});
  auto bad = [&](const std::string& why) { return absl::DataLossError("checkpoint " + path + ": " + why); };
  if (bytes.size() < 8) return bad("truncated (shorter than its 8-byte header length)");
  uint64_t hlen = 0;
  for (int i = 0; i < 8; ++i) hlen |= uint64_t{static_cast<unsigned char>(bytes[i])} << (8 * i);
  if (hlen > bytes.size() - 8) return bad("truncated (header length " + std::to_string(hlen) + " past the end)");
  const nlohmann::json header = nlohmann::json::parse(bytes.begin() + 8, bytes.begin() + 8 + hlen,
                                                      nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded() || !header.is_object()) return bad("header is not a JSON object");
  const std::string data = bytes.substr(8 + hlen);
  Checkpoint out;
  std::string crc;
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
    const uint64_t begin = off[0], end = off[1];
    if (begin > end || end > data.size()) return bad("tensor '" + name + "' lies outside the file (truncated?)");
    Shape shape;
    if (!entry["shape"].is_array()) return bad("tensor '" + name + "' has malformed shape");
    for (const auto& d : entry["shape"]) {
      if (!d.is_number_unsigned()) return bad("tensor '" + name + "' has malformed shape");
      shape.push_back(d.get<int64_t>());
    }
    Tensor t(shape);
    if (static_cast<uint64_t>(t.size()) * sizeof(float) != end - begin)
      return bad("tensor '" + name + "' size does not match its shape");
    std::memcpy(t.data(), data.data() + begin, end - begin);
    out.tensors.emplace(name, std::move(t));
  }
  auto it = out.metadata.find("distbelief.crc32");
  if (it != out.metadata.end() && it->second != std::to_string(Crc32(data)))
    return bad("checksum mismatch (the file is corrupt)");
  return out;
}

}  // namespace distbelief
