// The one translation unit that sees sentencepiece's headers: no abseil or gRPC header here.
#include "distbelief/text/sentencepiece_wrapper.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

namespace distbelief::spm {

std::string NormalizeWhitespace(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  bool space = false, newline = false;
  for (char ch : s) {
    if (ch == '\r') continue;
    if (ch == '\n') { newline = true; continue; }
    if (ch == ' ' || ch == '\t') { space = true; continue; }
    if (!out.empty()) {
      if (newline) out += '\n';
      else if (space) out += ' ';
    }
    space = newline = false;
    out += ch;
  }
  return out;
}

std::string Train(const std::string& input_file, const std::string& model_prefix, int vocab_size,
                  int64_t max_sentences, uint64_t seed) {
  // The header-only API takes flags as text (TrainerSpec's protobuf header is not installed).
  sentencepiece::SetRandomGeneratorSeed(static_cast<unsigned int>(seed));
  const std::string args = "--input=" + input_file + " --model_prefix=" + model_prefix +
                           " --vocab_size=" + std::to_string(vocab_size) +
                           " --model_type=unigram --input_sentence_size=" + std::to_string(max_sentences) +
                           " --shuffle_input_sentence=true --character_coverage=0.9995"
                           " --num_threads=2 --minloglevel=2 --hard_vocab_limit=false";
  const auto status = sentencepiece::SentencePieceTrainer::Train(args);
  return status.ok() ? "" : status.ToString();
}

struct Processor::Impl {
  sentencepiece::SentencePieceProcessor sp;
};

Processor::Processor() : impl_(std::make_unique<Impl>()) {}
Processor::~Processor() = default;

std::string Processor::Load(const std::string& model_file) {
  const auto status = impl_->sp.Load(model_file);
  return status.ok() ? "" : status.ToString();
}

std::string Processor::Encode(const std::string& text, std::vector<int>* ids) const {
  const auto status = impl_->sp.Encode(text, ids);
  return status.ok() ? "" : status.ToString();
}

std::string Processor::Decode(const std::vector<int>& ids, std::string* text) const {
  const auto status = impl_->sp.Decode(ids, text);
  return status.ok() ? "" : status.ToString();
}

int Processor::vocab_size() const { return impl_->sp.GetPieceSize(); }

}  // namespace distbelief::spm
