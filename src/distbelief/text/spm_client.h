// sentencepiece from the main program: every call runs the helper tools/spm_tool.cc in its own
// process (it explains why), found at $DISTBELIEF_SPM, else next to this program, else where the
// build put it. Errors carry the helper's stderr. Thread-compatible (no shared state).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "distbelief/base/status.h"

namespace distbelief {

// Runs the helper with `args`; its stdout goes to `out_file` ("" = discarded).
// kFailedPrecondition if the helper is not built; kInternal with its message if it fails.
Status RunSentencePieceHelper(const std::vector<std::string>& args, const std::string& out_file = "");

// Trains a unigram model on the lines of `input_file` (at most `max_sentences`, sampled with
// `seed`); writes prefix.model and prefix.vocab.
Status TrainSentencePiece(const std::string& input_file, const std::string& prefix, int64_t vocab,
                          int64_t max_sentences, uint64_t seed);

// Each line to its ids (sentencepiece's default ids: 0 <unk>, 1 <s>, 2 </s>; a line's own
// newlines are not allowed: the caller passes single lines).
StatusOr<std::vector<std::vector<int>>> EncodeLines(const std::string& model, const std::vector<std::string>& lines);
// Each id list back to text.
StatusOr<std::vector<std::string>> DecodeLines(const std::string& model, const std::vector<std::vector<int>>& ids);

}  // namespace distbelief
