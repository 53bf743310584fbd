// A TOML config file, read once at the edge of the program (the command line, an example's
// main). Each module reads its own [section] into its own typed options struct through a
// Section: typed keys with ranges, enums by name, every default kept when a key is absent.
// When every module has read its part, CheckAllRead names the first section or key that nobody
// asked for, so a typo is an error rather than a silently ignored setting.
//
// Errors are kInvalidArgument naming "section.key" and what was wrong (or kNotFound for a
// missing file). toml11 throws; its exceptions are caught here and never leave this module.
// Not thread-safe; a ConfigFile is read on one thread and then discarded.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "distbelief/base/status.h"

namespace distbelief {

class Section {
 public:
  const std::string& name() const { return name_; }
  // True if the file has this [section] (an absent section reads as empty: all defaults).
  bool present() const { return table_ != nullptr; }
  // True if the key is in the file (does not count as reading it).
  bool Has(std::string_view key) const;

  // Each reader leaves *out alone when the key is absent, and checks type and range otherwise.
  Status Int(std::string_view key, int64_t* out, int64_t lo, int64_t hi);
  Status Int(std::string_view key, int* out, int lo, int hi);
  Status Uint(std::string_view key, uint64_t* out);  // a seed: 0 .. 2^62
  Status Float(std::string_view key, float* out, double lo, double hi);
  Status Bool(std::string_view key, bool* out);
  Status String(std::string_view key, std::string* out);
  Status StringList(std::string_view key, std::vector<std::string>* out);
  Status IntList(std::string_view key, std::vector<int64_t>* out, int64_t lo, int64_t hi);
  // A string naming one of `names`: *out becomes its value; any other string is an error
  // listing the allowed names.
  template <typename E>
  Status Enum(std::string_view key, E* out, std::initializer_list<std::pair<std::string_view, E>> names) {
    std::string s;
    for (const auto& [n, v] : names)
      if (*out == v) s = std::string(n);
    DB_RETURN_IF_ERROR(String(key, &s));
    for (const auto& [n, v] : names)
      if (s == n) {
        *out = v;
        return absl::OkStatus();
      }
    std::string list;
    for (const auto& [n, v] : names) list += (list.empty() ? "" : ", ") + std::string(n);
    return Error(key, "= \"" + s + "\" is not one of: " + list);
  }
  // kInvalidArgument "section.key <message>", for checks a module makes on what it read.
  Status Error(std::string_view key, const std::string& message) const;

 private:
  friend class ConfigFile;
  Section(const void* table, std::string name) : table_(table), name_(std::move(name)) {}
  const void* Find(std::string_view key);  // marks the key read
  Status TypeError(std::string_view key, const std::string& want, const void* got) const;
  const void* table_;  // a toml::value table inside the file, or nullptr
  std::string name_;
  std::vector<std::string> read_;
};

class ConfigFile {
 public:
  // Parses TOML text. `overrides` are "section.key=value" strings (value in TOML syntax) applied
  // on top, as from the command line's --set. An empty document is an error (a config that says
  // nothing would run every default and overwrite the default run's results).
  static StatusOr<ConfigFile> Parse(const std::string& text, const std::string& origin,
                                    const std::vector<std::string>& overrides = {});
  // Reads and parses a file; kNotFound if it is missing, kInvalidArgument if it is a folder.
  static StatusOr<ConfigFile> Load(const std::string& path, const std::vector<std::string>& overrides = {});

  bool Has(std::string_view section) const;
  // The reader of [name]; the same object on every call. An absent section reads as empty.
  Section& section(const std::string& name);
  // kInvalidArgument naming the first section or key in the file that no reader asked for.
  Status CheckAllRead() const;
  // The TOML as given, overrides applied: what checkpoints store and child processes read.
  const std::string& text() const;
  const std::string& origin() const;

 private:
  struct Impl;
  explicit ConfigFile(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<Impl> impl_;
};

}  // namespace distbelief
