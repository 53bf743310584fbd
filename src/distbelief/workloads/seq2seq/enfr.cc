#include "distbelief/workloads/seq2seq/enfr.h"

#include <algorithm>
#include <filesystem>
#include <set>
#include <unordered_set>

#include "distbelief/base/logging.h"
#include "distbelief/text/gettext.h"

namespace distbelief {
namespace fs = std::filesystem;
namespace {

bool IsAsciiLetter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }
// A letter, or the lead byte of a multi-byte UTF-8 character (accented letters).
bool StartsLetter(std::string_view s, size_t i) {
  return i < s.size() && (IsAsciiLetter(s[i]) || static_cast<unsigned char>(s[i]) >= 0xC3);
}

constexpr std::string_view kEntities[][2] = {{"&amp;", "&"},  {"&lt;", "<"},   {"&gt;", ">"},
                                             {"&quot;", "\""}, {"&apos;", "'"}, {"&nbsp;", " "}};

bool EntityAt(std::string_view s, size_t i) {
  for (const auto& e : kEntities)
    if (s.substr(i, e[0].size()) == e[0]) return true;
  return false;
}

// Decodes one UTF-8 code point at s[i]; returns its length (0 if malformed).
size_t DecodeUtf8(std::string_view s, size_t i, uint32_t* cp) {
  const unsigned char c = static_cast<unsigned char>(s[i]);
  size_t n;
  if (c < 0x80) return *cp = c, 1;
  if (c >= 0xC2 && c <= 0xDF) n = 2, *cp = c & 0x1F;
  else if (c >= 0xE0 && c <= 0xEF) n = 3, *cp = c & 0x0F;
  else if (c >= 0xF0 && c <= 0xF4) n = 4, *cp = c & 0x07;
  else return 0;
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    const unsigned char d = static_cast<unsigned char>(s[i + k]);
    if ((d & 0xC0) != 0x80) return 0;
    *cp = (*cp << 6) | (d & 0x3F);
  }
  if ((n == 3 && *cp < 0x800) || (n == 4 && (*cp < 0x10000 || *cp > 0x10FFFF)) || (*cp >= 0xD800 && *cp <= 0xDFFF))
    return 0;
  return n;
}

// Valid UTF-8 in Latin script: no Greek, Cyrillic, ..., CJK (punctuation, symbols and arrows pass).
bool LatinScript(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    uint32_t cp;
    const size_t n = DecodeUtf8(s, i, &cp);
    if (n == 0) return false;
    if ((cp >= 0x370 && cp < 0x1E00) || (cp >= 0x1F00 && cp < 0x2000) || (cp >= 0x2E80 && cp != 0xFFFD && cp < 0x1F000))
      return false;
    i += n;
  }
  return true;
}

std::vector<std::string> Words(std::string_view s) {
  std::vector<std::string> w;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && s[i] == ' ') ++i;
    const size_t b = i;
    while (i < s.size() && s[i] != ' ') ++i;
    if (i > b) w.emplace_back(s.substr(b, i - b));
  }
  return w;
}

// Lower-cased ASCII letters of a word, apostrophe-split French elisions (l', d', qu') taken apart.
std::string Fold(std::string w) {
  for (char& c : w) c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
  while (!w.empty() && !IsAsciiLetter(w.back()) && static_cast<unsigned char>(w.back()) < 0x80) w.pop_back();
  return w;
}

const std::set<std::string>& FrenchWords() {
  static const std::set<std::string> s = {"le", "la", "les", "de", "des", "du", "un", "une", "et", "est", "pour",
                                          "dans", "que", "qui", "pas", "sur", "au", "aux", "ce", "cette", "vous",
                                          "en", "il", "ne", "se", "avec", "par", "sont", "votre", "ou", "nous",
                                          "mais", "plus", "peut", "être", "sera", "ces", "leur", "elle", "je"};
  return s;
}
const std::set<std::string>& EnglishWords() {
  static const std::set<std::string> s = {"the", "of", "and", "to", "is", "for", "in", "that", "this", "you",
                                          "with", "are", "not", "be", "on", "it", "as", "by", "from", "or",
                                          "your", "an", "can", "will", "has", "have", "was", "which", "we", "they"};
  return s;
}

std::pair<int, int> CountFunctionWords(const std::vector<std::string>& words) {
  int fr = 0, en = 0;
  for (const std::string& raw : words) {
    std::string w = Fold(raw);
    if (const size_t apo = w.find('\''); apo != std::string::npos && apo + 1 < w.size()) {
      ++fr;  // l'image, d'un, qu'il: an elision is French
      continue;
    }
    fr += FrenchWords().count(w);
    en += EnglishWords().count(w);
  }
  return {fr, en};
}

}  // namespace

std::string CleanMessage(std::string_view in) {
  std::string s;
  s.reserve(in.size());
  // Tags: '<' then a letter, '/' or '!', closed by '>' within 80 bytes with no '<' between.
  for (size_t i = 0; i < in.size(); ++i) {
    const char c = in[i];
    if (c == '<' && i + 1 < in.size() && (IsAsciiLetter(in[i + 1]) || in[i + 1] == '/' || in[i + 1] == '!')) {
      const size_t close = in.find('>', i + 1);
      if (close != std::string_view::npos && close - i <= 80 && in.substr(i + 1, close - i - 1).find('<') == std::string_view::npos) {
        s += ' ';
        i = close;
        continue;
      }
    }
    s += (c == '\n' || c == '\r' || c == '\t') ? ' ' : c;
  }
  // One accelerator marker per kind, if it is the only one before a letter.
  for (char marker : {'_', '&', '~'}) {
    std::vector<size_t> at;
    for (size_t i = 0; i < s.size(); ++i)
      if (s[i] == marker && StartsLetter(s, i + 1) && !(marker == '&' && EntityAt(s, i))) at.push_back(i);
    if (at.size() == 1) s.erase(at[0], 1);
  }
  for (const auto& e : kEntities) {
    size_t pos = 0;
    while ((pos = s.find(e[0], pos)) != std::string::npos) {
      s.replace(pos, e[0].size(), e[1]);
      pos += e[1].size();
    }
  }
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    if (c == ' ' && (out.empty() || out.back() == ' ')) continue;
    out += c;
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

bool HasPlaceholder(std::string_view s) {
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '%' && i + 1 < s.size()) {
      if (s[i + 1] == '%') {
        ++i;
        continue;
      }
      if (s[i + 1] == '(' || IsDigit(s[i + 1])) return true;
      size_t j = i + 1;
      while (j < s.size() && std::string_view("-+#0.*123456789").find(s[j]) != std::string_view::npos) ++j;
      while (j < s.size() && std::string_view("hlLzjtq").find(s[j]) != std::string_view::npos) ++j;
      if (j < s.size() && std::string_view("diouxXeEfFgGaAcspn").find(s[j]) != std::string_view::npos &&
          (j + 1 >= s.size() || !IsAsciiLetter(s[j + 1]) || j > i + 1))
        return true;
    } else if (c == '{') {
      size_t j = i + 1;
      while (j < s.size() && (IsAsciiLetter(s[j]) || IsDigit(s[j]) || s[j] == '_' || s[j] == '.')) ++j;
      if (j < s.size() && s[j] == '}') return true;
    } else if (c == '$' && i + 1 < s.size() && (s[i + 1] == '{' || s[i + 1] == '(' || IsAsciiLetter(s[i + 1]))) {
      return true;
    }
  }
  return false;
}

bool LooksLikeEnFr(const std::string& en, const std::string& fr) {
  if (!LatinScript(en) || !LatinScript(fr)) return false;
  const std::vector<std::string> we = Words(en), wf = Words(fr);
  if (we.size() < 5) return true;
  const auto [en_fr, en_en] = CountFunctionWords(we);
  const auto [fr_fr, fr_en] = CountFunctionWords(wf);
  return en_en > en_fr && fr_fr > fr_en;
}

StatusOr<EnFrCorpus> BuildEnFrCorpus(const EnFrOptions& o) {
  std::error_code ec;
  if (!fs::is_directory(o.mo_dir, ec))
    return absl::NotFoundError(o.mo_dir + " is not a folder of catalogues (run scripts/setup.sh)");
  std::vector<std::string> packages;
  for (const auto& e : fs::directory_iterator(o.mo_dir, ec))
    if (e.is_directory(ec)) packages.push_back(e.path().filename().string());
  std::sort(packages.begin(), packages.end());
  for (const auto* list : {&o.dev_packages, &o.test_packages})
    for (const std::string& p : *list)
      if (!std::binary_search(packages.begin(), packages.end(), p))
        return absl::InvalidArgumentError("held-out package " + p + " has no folder in " + o.mo_dir);
  auto in = [](const std::vector<std::string>& v, const std::string& p) { return std::find(v.begin(), v.end(), p) != v.end(); };
  for (const std::string& p : o.dev_packages)
    if (in(o.test_packages, p)) return absl::InvalidArgumentError("package " + p + " is in both dev and test");

  EnFrCorpus c;
  std::set<std::pair<std::string, std::string>> seen[3];
  for (const std::string& p : packages) {
    const int split = in(o.test_packages, p) ? 2 : in(o.dev_packages, p) ? 1 : 0;
    std::vector<SentencePair>& out = split == 0 ? c.train : split == 1 ? c.dev : c.test;
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(fs::path(o.mo_dir) / p, ec))
      if (e.path().extension() == ".mo") files.push_back(e.path());
    std::sort(files.begin(), files.end());
    int64_t kept = 0;
    for (const fs::path& f : files) {
      StatusOr<std::vector<GettextMessage>> msgs = ReadMo(f.string());
      if (!msgs.ok()) {
        LOG_WARN << "skipping " << msgs.status().message();
        ++c.unreadable_files;
        continue;
      }
      for (const GettextMessage& m : *msgs) {
        if (m.str.empty()) {
          ++c.untranslated;
          continue;
        }
        if (HasPlaceholder(m.id) || HasPlaceholder(m.str)) {
          ++c.placeholder;
          continue;
        }
        std::string en = CleanMessage(m.id), fr = CleanMessage(m.str);
        if (en.empty() || fr.empty() || en == fr) {
          ++c.untranslated;
          continue;
        }
        const int64_t ne = static_cast<int64_t>(Words(en).size()), nf = static_cast<int64_t>(Words(fr).size());
        if (ne > o.max_words || nf > o.max_words) {
          ++c.too_long;
          continue;
        }
        if (nf > 3 * ne + 3 || ne > 3 * nf + 3) {
          ++c.length_ratio;
          continue;
        }
        if (!LooksLikeEnFr(en, fr)) {
          ++c.language;
          continue;
        }
        if (!seen[split].insert({en, fr}).second) {
          ++c.duplicate;
          continue;
        }
        out.push_back({std::move(en), std::move(fr)});
        ++kept;
      }
    }
    c.per_package.push_back({p, kept});
  }
  // Held-out sentences are new: drop a dev or test pair whose English the model trains on (and a
  // test pair whose English is in dev).
  std::unordered_set<std::string> train_en, dev_en;
  for (const SentencePair& s : c.train) train_en.insert(s.en);
  auto drop = [&](std::vector<SentencePair>* v, const std::unordered_set<std::string>& a,
                  const std::unordered_set<std::string>* b) {
    const size_t before = v->size();
    std::erase_if(*v, [&](const SentencePair& s) { return a.count(s.en) || (b && b->count(s.en)); });
    c.seen_in_train += static_cast<int64_t>(before - v->size());
  };
  drop(&c.dev, train_en, nullptr);
  for (const SentencePair& s : c.dev) dev_en.insert(s.en);
  drop(&c.test, train_en, &dev_en);
  if (c.train.empty() || c.dev.empty() || c.test.empty())
    return absl::InvalidArgumentError("the catalogues in " + o.mo_dir + " give " + std::to_string(c.train.size()) +
                                      " training, " + std::to_string(c.dev.size()) + " dev and " +
                                      std::to_string(c.test.size()) + " test pairs: a split is empty");
  return c;
}

}  // namespace distbelief
