#include "distbelief/config/config.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string_view>

#include <toml.hpp>

namespace distbelief {
namespace {

const toml::value* AsValue(const void* p) { return static_cast<const toml::value*>(p); }

std::string Show(const toml::value& v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

// Applies "section.key=value" onto the parsed document.
// The offset of the first byte that is not well-formed UTF-8 (overlong forms, surrogates and code
// points past U+10FFFF included), or npos. TOML is UTF-8, and Debian's toml11 3.7.1 reads past
// its buffer on some invalid bytes inside a string (found by fuzz/config_fuzz), so text is
// checked before toml11 sees it.
size_t FirstInvalidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    int n = 0;
    uint32_t cp = 0;
    if (c < 0x80) { ++i; continue; }
    if (c >= 0xc2 && c <= 0xdf) { n = 1; cp = c & 0x1f; }
    else if (c >= 0xe0 && c <= 0xef) { n = 2; cp = c & 0x0f; }
    else if (c >= 0xf0 && c <= 0xf4) { n = 3; cp = c & 0x07; }
    else return i;
    for (int k = 1; k <= n; ++k) {
      if (i + k >= s.size()) return i;
      const auto d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xc0) != 0x80) return i;
      cp = cp << 6 | (d & 0x3f);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
      return i;
    i += n + 1;
  }
  return std::string_view::npos;
}

Status CheckUtf8(std::string_view text, const std::string& what) {
  const size_t bad = FirstInvalidUtf8(text);
  if (bad == std::string_view::npos) return absl::OkStatus();
  const int64_t line = 1 + std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(bad), '\n');
  return absl::InvalidArgumentError(what + " is not valid UTF-8 (line " + std::to_string(line) + ", byte " +
                                    std::to_string(bad) + ")");
}

Status ApplyOverride(toml::value* doc, const std::string& spec) {
  DB_RETURN_IF_ERROR(CheckUtf8(spec, "--set '" + spec + "'"));
  const auto eq = spec.find('=');
  const auto dot = spec.find('.');
  if (eq == std::string::npos || dot == std::string::npos || dot > eq)
    return absl::InvalidArgumentError("--set '" + spec + "': expected section.key=value");
  const std::string section = spec.substr(0, dot), key = spec.substr(dot + 1, eq - dot - 1);
  toml::value parsed;
  try {
    std::istringstream in("v = " + spec.substr(eq + 1));
    parsed = toml::parse(in, "--set");
  } catch (const std::exception&) {
    return absl::InvalidArgumentError("--set '" + spec + "': the value is not valid TOML (strings need quotes)");
  }
  auto& table = doc->as_table();
  if (!table.count(section)) table[section] = toml::table{};
  if (!table[section].is_table())
    return absl::InvalidArgumentError("--set '" + spec + "': " + section + " is not a section");
  table[section].as_table()[key] = parsed.as_table().at("v");
  return absl::OkStatus();
}

}  // namespace

struct ConfigFile::Impl {
  toml::value doc;
  std::string text, origin;
  std::map<std::string, std::unique_ptr<Section>, std::less<>> sections;
};

bool Section::Has(std::string_view key) const {
  if (!table_) return false;
  return AsValue(table_)->as_table().count(std::string(key)) > 0;
}

const void* Section::Find(std::string_view key) {
  if (std::find(read_.begin(), read_.end(), key) == read_.end()) read_.emplace_back(key);
  if (!table_) return nullptr;
  const auto& t = AsValue(table_)->as_table();
  auto it = t.find(std::string(key));
  return it == t.end() ? nullptr : &it->second;
}

Status Section::Error(std::string_view key, const std::string& message) const {
  return absl::InvalidArgumentError(name_ + "." + std::string(key) + " " + message);
}

Status Section::TypeError(std::string_view key, const std::string& want, const void* got) const {
  return Error(key, "must be " + want + ", got " + Show(*AsValue(got)));
}

Status Section::Int(std::string_view key, int64_t* out, int64_t lo, int64_t hi) {
  const void* p = Find(key);
  if (!p) return absl::OkStatus();
  const toml::value& v = *AsValue(p);
  if (!v.is_integer()) return TypeError(key, "an integer", p);
  const int64_t x = v.as_integer();
  if (x < lo || x > hi)
    return Error(key, "= " + std::to_string(x) + " is outside [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  *out = x;
  return absl::OkStatus();
}

Status Section::Int(std::string_view key, int* out, int lo, int hi) {
  int64_t x = *out;
  DB_RETURN_IF_ERROR(Int(key, &x, lo, hi));
  *out = static_cast<int>(x);
  return absl::OkStatus();
}

Status Section::Uint(std::string_view key, uint64_t* out) {
  int64_t x = static_cast<int64_t>(*out);
  DB_RETURN_IF_ERROR(Int(key, &x, 0, int64_t{1} << 62));
  *out = static_cast<uint64_t>(x);
  return absl::OkStatus();
}

Status Section::Float(std::string_view key, float* out, double lo, double hi) {
  const void* p = Find(key);
  if (!p) return absl::OkStatus();
  const toml::value& v = *AsValue(p);
  double x;
  if (v.is_floating()) x = v.as_floating();
  else if (v.is_integer()) x = static_cast<double>(v.as_integer());
  else return TypeError(key, "a number", p);
  if (!(x >= lo && x <= hi))
    return Error(key, "= " + std::to_string(x) + " is outside [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  *out = static_cast<float>(x);
  return absl::OkStatus();
}

Status Section::Bool(std::string_view key, bool* out) {
  const void* p = Find(key);
  if (!p) return absl::OkStatus();
  if (!AsValue(p)->is_boolean()) return TypeError(key, "true or false", p);
  *out = AsValue(p)->as_boolean();
  return absl::OkStatus();
}

Status Section::String(std::string_view key, std::string* out) {
  const void* p = Find(key);
  if (!p) return absl::OkStatus();
  if (!AsValue(p)->is_string()) return TypeError(key, "a string", p);
  *out = AsValue(p)->as_string();
  return absl::OkStatus();
}

Status Section::StringList(std::string_view key, std::vector<std::string>* out) {
  const void* p = Find(key);
  if (!p) return absl::OkStatus();
  if (!AsValue(p)->is_array()) return TypeError(key, "an array of strings", p);
  std::vector<std::string> xs;
  for (const auto& e : AsValue(p)->as_array()) {
    if (!e.is_string()) return TypeError(key, "an array of strings", p);
    xs.push_back(e.as_string());
  }
  *out = std::move(xs);
  return absl::OkStatus();
}

Status Section::IntList(std::string_view key, std::vector<int64_t>* out, int64_t lo, int64_t hi) {
  const void* p = Find(key);
  if (!p) return absl::OkStatus();
  if (!AsValue(p)->is_array()) return TypeError(key, "an array of integers", p);
  std::vector<int64_t> xs;
  for (const auto& e : AsValue(p)->as_array()) {
    if (!e.is_integer()) return TypeError(key, "an array of integers", p);
    if (e.as_integer() < lo || e.as_integer() > hi)
      return Error(key, "holds " + std::to_string(e.as_integer()) + ", outside [" + std::to_string(lo) + ", " +
                            std::to_string(hi) + "]");
    xs.push_back(e.as_integer());
  }
  *out = std::move(xs);
  return absl::OkStatus();
}

StatusOr<ConfigFile> ConfigFile::Parse(const std::string& text, const std::string& origin,
                                       const std::vector<std::string>& overrides) {
  auto impl = std::make_shared<Impl>();
  DB_RETURN_IF_ERROR(CheckUtf8(text, "config " + origin));
  try {
    std::istringstream in(text);
    impl->doc = toml::parse(in, origin);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError("config " + origin + " is not valid TOML: " + e.what());
  }
  if (!impl->doc.is_table() || impl->doc.as_table().empty())
    return absl::InvalidArgumentError("config " + origin + " is empty: it must at least say what to train");
  for (const auto& o : overrides) DB_RETURN_IF_ERROR(ApplyOverride(&impl->doc, o));
  for (const auto& [k, v] : impl->doc.as_table())
    if (!v.is_table()) return absl::InvalidArgumentError("'" + k + "' in " + origin + " must be a [section]");
  std::ostringstream out;
  out << impl->doc;
  impl->text = out.str();
  impl->origin = origin;
  return ConfigFile(std::move(impl));
}

StatusOr<ConfigFile> ConfigFile::Load(const std::string& path, const std::vector<std::string>& overrides) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    return absl::InvalidArgumentError("config " + path + " is a folder, not a file");
  std::ifstream in(path);
  if (!in) return absl::NotFoundError("config file " + path + " not found");
  std::stringstream ss;
  ss << in.rdbuf();
  return Parse(ss.str(), path, overrides);
}

bool ConfigFile::Has(std::string_view section) const { return impl_->doc.as_table().count(std::string(section)) > 0; }

Section& ConfigFile::section(const std::string& name) {
  auto it = impl_->sections.find(name);
  if (it != impl_->sections.end()) return *it->second;
  const auto& t = impl_->doc.as_table();
  auto found = t.find(name);
  auto* s = new Section(found == t.end() ? nullptr : &found->second, name);
  impl_->sections.emplace(name, std::unique_ptr<Section>(s));
  return *s;
}

Status ConfigFile::CheckAllRead() const {
  for (const auto& [k, v] : impl_->doc.as_table()) {
    auto it = impl_->sections.find(k);
    if (it == impl_->sections.end())
      return absl::InvalidArgumentError("unknown section [" + k + "] in " + impl_->origin);
    const std::vector<std::string>& read = it->second->read_;
    for (const auto& [key, value] : v.as_table())
      if (std::find(read.begin(), read.end(), key) == read.end())
        return absl::InvalidArgumentError("unknown key '" + k + "." + key + "'");
  }
  return absl::OkStatus();
}

const std::string& ConfigFile::text() const { return impl_->text; }
const std::string& ConfigFile::origin() const { return impl_->origin; }

}  // namespace distbelief
