// Decoding a Seq2Seq model: greedy (beam 1) and beam search (Sutskever et al. 2014, section 3.1),
// batched: B sentences x `beam` hypotheses advance together, one decoder step for all of them.
// A hypothesis ends when it emits `eos` or reaches max_len tokens; a sentence is done when it
// holds `beam` ended hypotheses, or all of its live ones score below the best ended one (scores
// only fall). Hypotheses are ranked by log p(y | x) / lp(|y|), with GNMT's length penalty lp(n) =
// ((5 + n) / 6)^alpha (Wu et al. 2016; alpha 0: plain log-probability, which favours short output).
#pragma once

#include <cstdint>
#include <vector>

#include "distbelief/models/seq2seq.h"

namespace distbelief {

struct DecodeOptions {
  int beam = 1;               // 1 = greedy
  float length_penalty = 0.6f;  // alpha
  int64_t max_len = 100;      // target tokens, eos excluded
  int bos = 1, eos = 2;       // sentencepiece's default ids
};

// src (B, S) ids (the model's input layout: left-padded, reversed if the model was trained so) ->
// B token lists, without bos and eos. REQUIRES: beam >= 1.
std::vector<std::vector<int>> Decode(Seq2Seq* model, const Tensor& src, const DecodeOptions& o);

// How token lists become the encoder's input.
struct SourceLayout {
  bool reverse = true;      // the paper's trick: the source read backwards
  int pad = 0;              // the padding id (the encoder's extra row)
  int64_t max_tokens = 50;  // longer sources are cut to their first max_tokens tokens
};

// The encoder's input for sentences `src`: (B, S) left-padded with l.pad, each cut to
// l.max_tokens and reversed if l.reverse. The encoder has no mask, so padding changes its final
// state: training and decoding batch only sources of one length, where there is none.
Tensor SourceBatch(const std::vector<const std::vector<int>*>& src, bool reverse, int pad, int64_t max_tokens);

// Decodes every sentence of `src`, in batches of at most `batch` sentences of one (cut) length,
// so that no source is padded; the results in input order. An empty source gives an empty output.
std::vector<std::vector<int>> DecodeAll(Seq2Seq* model, const std::vector<std::vector<int>>& src, const SourceLayout& l,
                                        const DecodeOptions& o, int64_t batch = 64);

}  // namespace distbelief
