#include "distbelief/text/gettext.h"

#include <cstdint>
#include <fstream>
#include <sstream>

namespace distbelief {
namespace {

uint32_t Read32(std::string_view b, size_t at, bool swap) {
  uint32_t v = static_cast<uint32_t>(static_cast<unsigned char>(b[at])) |
               static_cast<uint32_t>(static_cast<unsigned char>(b[at + 1])) << 8 |
               static_cast<uint32_t>(static_cast<unsigned char>(b[at + 2])) << 16 |
               static_cast<uint32_t>(static_cast<unsigned char>(b[at + 3])) << 24;
  if (swap) v = (v >> 24) | ((v >> 8) & 0xff00) | ((v << 8) & 0xff0000) | (v << 24);
  return v;
}

}  // namespace

StatusOr<std::vector<GettextMessage>> ParseMo(std::string_view b, const std::string& name) {
  auto bad = [&](const std::string& why) { return absl::DataLossError(name + ": not a gettext catalogue: " + why); };
  if (b.size() < 20) return bad("shorter than its 20-byte header");
  bool swap;
  if (Read32(b, 0, false) == 0x950412de) swap = false;
  else if (Read32(b, 0, true) == 0x950412de) swap = true;
  else return bad("bad magic number");
  const uint64_t n = Read32(b, 8, swap), originals = Read32(b, 12, swap), translations = Read32(b, 16, swap);
  if (originals + 8 * n > b.size() || translations + 8 * n > b.size())
    return bad("its tables of " + std::to_string(n) + " entries run past the end of the file");
  auto string_at = [&](uint64_t table, uint64_t i, std::string_view* out) {
    const uint64_t len = Read32(b, table + 8 * i, swap), off = Read32(b, table + 8 * i + 4, swap);
    if (off + len > b.size()) return false;
    *out = b.substr(off, len);
    return true;
  };
  std::vector<GettextMessage> out;
  out.reserve(n);
  for (uint64_t i = 0; i < n; ++i) {
    std::string_view k, v;
    if (!string_at(originals, i, &k) || !string_at(translations, i, &v))
      return bad("entry " + std::to_string(i) + " lies outside the file");
    if (k.empty()) continue;  // the header
    GettextMessage m;
    if (const size_t eot = k.find('\x04'); eot != std::string_view::npos) {
      m.context = std::string(k.substr(0, eot));
      k = k.substr(eot + 1);
    }
    m.id = std::string(k.substr(0, k.find('\0')));
    m.str = std::string(v.substr(0, v.find('\0')));
    out.push_back(std::move(m));
  }
  return out;
}

StatusOr<std::vector<GettextMessage>> ReadMo(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError("cannot read " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ParseMo(ss.str(), path);
}

}  // namespace distbelief
