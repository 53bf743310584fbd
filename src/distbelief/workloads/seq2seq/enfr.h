// English -> French sentence pairs from the French gettext catalogues of Debian packages
// (scripts/setup.sh unpacks them to data/enfr/mo/<package>/*.mo; ../shared/DATA.md, D1).
//
// Each message is cleaned (markup tags and entities, keyboard accelerators, line breaks), and a
// pair is kept only if both sides are non-empty, differ, hold no placeholder (printf's %s, Qt's
// %1, {0}, ${x}: format strings are not sentences), have at most max_words words, lengths within
// a factor of 3 (+3 words) of each other, a French side in Latin script, and, from 5 words on, more
// English than French function words on the English side and the reverse on the French side.
// Pairs are split by package (no package in two splits), deduplicated, and a dev or test pair
// whose English side occurs in training (in any package) is dropped, so that the held-out sets
// hold only sentences the model never saw.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "distbelief/base/status.h"

namespace distbelief {

struct EnFrOptions {
  std::string mo_dir = "data/enfr/mo";
  std::vector<std::string> dev_packages = {"audacity-data", "wesnoth-1.16-sotbe"};
  std::vector<std::string> test_packages = {"gnucash-common", "wesnoth-1.16-httt"};
  int64_t max_words = 40;
};

struct SentencePair {
  std::string en, fr;
};

struct EnFrCorpus {
  std::vector<SentencePair> train, dev, test;
  std::vector<std::pair<std::string, int64_t>> per_package;  // pairs kept per package, before the cross-split check
  // Messages dropped, by reason.
  int64_t untranslated = 0, placeholder = 0, too_long = 0, length_ratio = 0, language = 0, duplicate = 0,
          seen_in_train = 0;
  int64_t unreadable_files = 0;
};

// The message cleaned: tags (<b>, </a>, <br/>) removed, &amp; &lt; &gt; &quot; &apos; &nbsp;
// unescaped, one accelerator marker (_ & ~ before a letter, when it is the only one) dropped,
// white space collapsed and trimmed.
std::string CleanMessage(std::string_view s);
// True if s holds a placeholder: %s %d %1$s %.2f %(name)s %1, {0} {name}, ${name} $(name).
bool HasPlaceholder(std::string_view s);
// True for a pair that passes the language check above (both sides already cleaned).
bool LooksLikeEnFr(const std::string& en, const std::string& fr);

// Reads every package folder under o.mo_dir. kNotFound if the folder is missing; kInvalidArgument
// naming the package if a dev or test package has no folder, or if a split ends up empty.
// Unreadable or corrupt catalogues are skipped with a warning and counted.
StatusOr<EnFrCorpus> BuildEnFrCorpus(const EnFrOptions& o);

}  // namespace distbelief
