// Reader of GNU gettext's compiled catalogues (.mo): the (msgid, msgstr) pairs of a translation.
// Format: a magic number (0x950412de, in either byte order), a revision, the count N, the offsets
// of two tables of N (length, offset) pairs, one for the originals and one for the translations.
// A message context precedes its msgid, separated by 0x04; plural forms are separated by NUL (we
// keep the singular); the entry with an empty msgid is the catalogue's header and is skipped.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "distbelief/base/status.h"

namespace distbelief {

struct GettextMessage {
  std::string context;  // msgctxt, "" when absent
  std::string id;       // the original (English, by gettext's convention), singular form
  std::string str;      // its translation, singular form ("" = untranslated)
};

// Parses the bytes of a .mo file. kDataLoss naming `name` for a bad magic number or a table or
// string that lies outside the file (every length and offset is checked before it is used).
StatusOr<std::vector<GettextMessage>> ParseMo(std::string_view bytes, const std::string& name);
// Reads and parses a file. kNotFound if it cannot be read.
StatusOr<std::vector<GettextMessage>> ReadMo(const std::string& path);

}  // namespace distbelief
