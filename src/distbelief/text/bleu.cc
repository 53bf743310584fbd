#include "distbelief/text/bleu.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>

namespace distbelief {
namespace {

void ReplaceAll(std::string* s, std::string_view from, std::string_view to) {
  size_t pos = 0;
  while ((pos = s->find(from, pos)) != std::string::npos) {
    s->replace(pos, from.size(), to);
    pos += to.size();
  }
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// 13a's first rule: { | } ~  [ \ ] ^ _ `  space ! " # $ % &  ( ) * +  : ; < = > ? @  /
bool IsSplitPunct(char c) {
  const unsigned char u = static_cast<unsigned char>(c);
  return (u >= '{' && u <= '~') || (u >= '[' && u <= '`') || (u >= ' ' && u <= '&') || (u >= '(' && u <= '+') ||
         (u >= ':' && u <= '@') || u == '/';
}

// Length of the white-space character at s[i] (0 if none): ASCII white space and separators
// \x1c-\x1f, and the UTF-8 encodings of U+0085, U+00A0, U+1680, U+2000-U+200A, U+2028, U+2029,
// U+202F, U+205F, U+3000 (what Python's str.isspace() accepts).
size_t SpaceAt(std::string_view s, size_t i) {
  const unsigned char c = static_cast<unsigned char>(s[i]);
  if (c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f)) return 1;
  auto at = [&](size_t k) { return i + k < s.size() ? static_cast<unsigned char>(s[i + k]) : 0; };
  if (c == 0xC2 && (at(1) == 0x85 || at(1) == 0xA0)) return 2;
  if (c == 0xE1 && at(1) == 0x9A && at(2) == 0x80) return 3;
  if (c == 0xE2 && at(1) == 0x80 && ((at(2) >= 0x80 && at(2) <= 0x8A) || at(2) == 0xA8 || at(2) == 0xA9 || at(2) == 0xAF))
    return 3;
  if (c == 0xE2 && at(1) == 0x81 && at(2) == 0x9F) return 3;
  if (c == 0xE3 && at(1) == 0x80 && at(2) == 0x80) return 3;
  return 0;
}

// One left-to-right pass of a two-character rule, matches not overlapping (as re.sub scans).
template <typename Match, typename Emit>
std::string Pass(const std::string& s, Match match, Emit emit) {
  std::string out;
  out.reserve(s.size() + s.size() / 4);
  for (size_t i = 0; i < s.size();) {
    if (i + 1 < s.size() && match(s[i], s[i + 1])) {
      emit(&out, s[i], s[i + 1]);
      i += 2;
    } else {
      out += s[i++];
    }
  }
  return out;
}

}  // namespace

std::vector<std::string> SplitTokens(std::string_view line) {
  std::vector<std::string> out;
  size_t i = 0, start = std::string_view::npos;
  while (i < line.size()) {
    const size_t w = SpaceAt(line, i);
    if (w > 0) {
      if (start != std::string_view::npos) out.emplace_back(line.substr(start, i - start));
      start = std::string_view::npos;
      i += w;
    } else {
      if (start == std::string_view::npos) start = i;
      ++i;
    }
  }
  if (start != std::string_view::npos) out.emplace_back(line.substr(start));
  return out;
}

std::string Tokenize13a(std::string_view line) {
  std::string s(line);
  ReplaceAll(&s, "<skipped>", "");
  ReplaceAll(&s, "-\n", "");
  ReplaceAll(&s, "\n", " ");
  if (s.find('&') != std::string::npos) {
    ReplaceAll(&s, "&quot;", "\"");
    ReplaceAll(&s, "&amp;", "&");
    ReplaceAll(&s, "&lt;", "<");
    ReplaceAll(&s, "&gt;", ">");
  }
  std::string t = " ";
  for (char c : s) {
    if (IsSplitPunct(c)) {
      t += ' ';
      t += c;
      t += ' ';
    } else {
      t += c;
    }
  }
  t += ' ';
  auto period = [](char c) { return c == '.' || c == ','; };
  t = Pass(t, [&](char a, char b) { return !IsDigit(a) && period(b); },
           [](std::string* o, char a, char b) { *o += a, *o += ' ', *o += b, *o += ' '; });
  t = Pass(t, [&](char a, char b) { return period(a) && !IsDigit(b); },
           [](std::string* o, char a, char b) { *o += ' ', *o += a, *o += ' ', *o += b; });
  t = Pass(t, [](char a, char b) { return IsDigit(a) && b == '-'; },
           [](std::string* o, char a, char b) { *o += a, *o += ' ', *o += b, *o += ' '; });
  std::string out;
  for (const std::string& tok : SplitTokens(t)) {
    if (!out.empty()) out += ' ';
    out += tok;
  }
  return out;
}

std::string BleuScore::ToString() const {
  char buf[256];
  const double ratio = ref_len > 0 ? static_cast<double>(hyp_len) / ref_len : 0.0;
  std::snprintf(buf, sizeof(buf), "BLEU = %.2f %.1f/%.1f/%.1f/%.1f (BP = %.3f ratio = %.3f hyp_len = %ld ref_len = %ld)",
                bleu, precision[0], precision[1], precision[2], precision[3], brevity_penalty, ratio, long(hyp_len),
                long(ref_len));
  return buf;
}

StatusOr<BleuScore> CorpusBleu(const std::vector<std::vector<std::string>>& hyps,
                               const std::vector<std::vector<std::string>>& refs) {
  if (hyps.size() != refs.size())
    return absl::InvalidArgumentError("BLEU: " + std::to_string(hyps.size()) + " hypotheses but " +
                                      std::to_string(refs.size()) + " references");
  BleuScore s;
  s.sentences = static_cast<int64_t>(hyps.size());
  for (size_t k = 0; k < hyps.size(); ++k) {
    const auto& h = hyps[k];
    const auto& r = refs[k];
    s.hyp_len += static_cast<int64_t>(h.size());
    s.ref_len += static_cast<int64_t>(r.size());
    for (size_t n = 1; n <= 4; ++n) {
      std::map<std::vector<std::string_view>, int64_t> ref_counts, hyp_counts;
      for (size_t i = 0; i + n <= r.size(); ++i) ++ref_counts[std::vector<std::string_view>(r.begin() + i, r.begin() + i + n)];
      for (size_t i = 0; i + n <= h.size(); ++i) ++hyp_counts[std::vector<std::string_view>(h.begin() + i, h.begin() + i + n)];
      for (const auto& [gram, count] : hyp_counts) {
        const auto it = ref_counts.find(gram);
        if (it != ref_counts.end()) s.matches[n - 1] += std::min(count, it->second);
      }
      s.totals[n - 1] += h.size() >= n ? static_cast<int64_t>(h.size() - n + 1) : 0;
    }
  }
  double log_sum = 0.0;
  bool zero = s.hyp_len == 0;
  for (int n = 0; n < 4; ++n) {
    s.precision[n] = s.totals[n] > 0 ? 100.0 * s.matches[n] / s.totals[n] : 0.0;
    if (s.matches[n] == 0) zero = true;
    else log_sum += std::log(static_cast<double>(s.matches[n]) / s.totals[n]);
  }
  s.brevity_penalty = s.hyp_len == 0 ? 0.0
                      : s.hyp_len < s.ref_len ? std::exp(1.0 - static_cast<double>(s.ref_len) / s.hyp_len)
                                              : 1.0;
  s.bleu = zero ? 0.0 : 100.0 * s.brevity_penalty * std::exp(log_sum / 4.0);
  return s;
}

StatusOr<BleuScore> CorpusBleuOfLines(const std::vector<std::string>& hyps, const std::vector<std::string>& refs,
                                      bool tokenize) {
  std::vector<std::vector<std::string>> h, r;
  h.reserve(hyps.size());
  r.reserve(refs.size());
  for (const std::string& l : hyps) h.push_back(SplitTokens(tokenize ? Tokenize13a(l) : l));
  for (const std::string& l : refs) r.push_back(SplitTokens(tokenize ? Tokenize13a(l) : l));
  return CorpusBleu(h, r);
}

namespace {

StatusOr<std::vector<std::string>> ReadLines(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError("cannot read " + path);
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(std::move(line));
  }
  if (in.bad()) return absl::DataLossError("error reading " + path);
  return lines;
}

}  // namespace

StatusOr<BleuScore> CorpusBleuOfFiles(const std::string& hyp_path, const std::string& ref_path, bool tokenize) {
  DB_ASSIGN_OR_RETURN(std::vector<std::string> h, ReadLines(hyp_path));
  DB_ASSIGN_OR_RETURN(std::vector<std::string> r, ReadLines(ref_path));
  if (h.size() != r.size())
    return absl::InvalidArgumentError(hyp_path + " has " + std::to_string(h.size()) + " lines but " + ref_path + " has " +
                                      std::to_string(r.size()) + ": one hypothesis per reference line");
  return CorpusBleuOfLines(h, r, tokenize);
}

}  // namespace distbelief
