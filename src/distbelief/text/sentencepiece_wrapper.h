// A thin wrapper around Debian's sentencepiece 0.1.97, linked only into tools/spm_tool.cc (see
// there why sentencepiece runs in its own process). Its header declares
// `namespace absl { using std::string_view; }`, which collides with the real abseil, so only
// sentencepiece_wrapper.cc includes it, and this header names neither library: errors come back
// as a message string ("" = success).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace distbelief::spm {

// Collapses runs of spaces and tabs to one space and runs of line breaks to one newline; trims.
std::string NormalizeWhitespace(const std::string& s);

// Trains a unigram model on the lines of `input_file`; writes model_prefix.model and .vocab.
std::string Train(const std::string& input_file, const std::string& model_prefix, int vocab_size,
                  int64_t max_sentences, uint64_t seed);

class Processor {
 public:
  Processor();
  ~Processor();
  std::string Load(const std::string& model_file);
  std::string Encode(const std::string& text, std::vector<int>* ids) const;
  std::string Decode(const std::vector<int>& ids, std::string* text) const;
  int vocab_size() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace distbelief::spm
