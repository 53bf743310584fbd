// Corpus BLEU (Papineni et al. 2002) as machine translation reports it: the hypotheses and their
// one reference each tokenized with mteval-v13a's tokenizer (sacreBLEU's default "13a"), n-gram
// precisions for n = 1..4 clipped per sentence and summed over the corpus, their geometric mean,
// and the brevity penalty exp(1 - r / c) when the c hypothesis tokens are fewer than the r
// reference tokens. No smoothing: a corpus without a single matching 4-gram scores 0 (as NLTK's
// corpus_bleu and mteval do; sacreBLEU's default "exp" smoothing differs only there).
//
// Text is bytes: UTF-8 passes through untouched (13a's rules only split ASCII punctuation), and
// bytes that are not UTF-8 are kept as they are, never an error. Tokens split at ASCII and
// Unicode white space, as Python's str.split() does.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "distbelief/base/status.h"

namespace distbelief {

// mteval-v13a's tokenization of one line: "<skipped>" dropped, "-\n" joined, &quot; &amp; &lt;
// &gt; unescaped, ASCII punctuation split off (periods and commas only when not beside a digit,
// dashes only after one), white space collapsed.
std::string Tokenize13a(std::string_view line);
// The tokens of an already tokenized line, split at white space.
std::vector<std::string> SplitTokens(std::string_view line);

struct BleuScore {
  double bleu = 0.0;                          // 0..100
  std::array<double, 4> precision{};          // n-gram precisions, 0..100
  std::array<int64_t, 4> matches{}, totals{};
  double brevity_penalty = 0.0;
  int64_t hyp_len = 0, ref_len = 0;
  int64_t sentences = 0;
  // "BLEU = 32.41 63.2/38.1/25.0/17.1 (BP = 0.982 ratio = 0.982 hyp_len = 1234 ref_len = 1256)"
  std::string ToString() const;
};

// BLEU of token lists, one reference per hypothesis. kInvalidArgument if the counts differ.
StatusOr<BleuScore> CorpusBleu(const std::vector<std::vector<std::string>>& hyps,
                               const std::vector<std::vector<std::string>>& refs);
// BLEU of raw lines, each tokenized with Tokenize13a (or only split at white space if !tokenize).
StatusOr<BleuScore> CorpusBleuOfLines(const std::vector<std::string>& hyps, const std::vector<std::string>& refs,
                                      bool tokenize = true);
// The lines of two files (one sentence a line, "\n" or "\r\n"). kNotFound naming a file that
// cannot be read; kInvalidArgument naming both when their line counts differ.
StatusOr<BleuScore> CorpusBleuOfFiles(const std::string& hyp_path, const std::string& ref_path, bool tokenize = true);

}  // namespace distbelief
