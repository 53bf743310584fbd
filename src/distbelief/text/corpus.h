// An English corpus for language models: a folder of plain-text documents (one file each),
// whole documents held out for evaluation, a sentencepiece tokenizer trained once on the training
// documents and cached, and both token streams cached next to it.
//
// Documents are the folder's regular files, sorted by name (dotfiles skipped). Document i is held
// out when i % holdout_every == holdout_every - 1. Documents are joined with the end-of-sequence
// id. The cache key covers the documents' names and sizes, the vocabulary size and the split, so a
// changed corpus trains a new tokenizer instead of reusing a stale one.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "distbelief/base/status.h"

namespace distbelief {

struct CorpusOptions {
  std::string dir = "data/text";
  std::string cache_dir = "runs/cache";
  int64_t vocab = 1024;
  int64_t holdout_every = 10;
  int64_t tokenizer_sentences = 300000;  // lines sampled to train the tokenizer
  uint64_t seed = 1;
};

struct TokenCorpus {
  std::vector<uint16_t> train, heldout;  // token ids
  int64_t vocab = 0;                     // the tokenizer's real vocabulary size
  int64_t train_documents = 0, heldout_documents = 0;
  int64_t train_bytes = 0, heldout_bytes = 0;
  std::string tokenizer_model;           // path of the cached sentencepiece model
  bool from_cache = false;
};

// kNotFound for a missing folder; kInvalidArgument for a folder without text, too few documents to
// hold one out, a vocabulary above 65536 or paths with spaces (sentencepiece takes flags as text).
StatusOr<TokenCorpus> LoadTokenCorpus(const CorpusOptions& o);

// Parses the bytes of a token cache (magic, counts, the train and held-out ids, a checksum) into
// *c. False for anything damaged or inconsistent, which makes the caller rebuild the cache; the
// counts are checked against the bytes before anything is allocated.
bool ParseTokenCache(std::string_view bytes, TokenCorpus* c);

// The cached model encodes and decodes with EncodeLines / DecodeLines (text/spm_client.h).

}  // namespace distbelief
