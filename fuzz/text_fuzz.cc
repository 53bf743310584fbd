// libFuzzer harness: the text parsers of outside input. The first byte picks one: a gettext
// catalogue (text/gettext.h), a line for BLEU's 13a tokenizer (text/bleu.h), a catalogue message
// through the EN-FR cleaning and filters (workloads/seq2seq/enfr.h), or a pair of lines through
// corpus BLEU.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "distbelief/text/bleu.h"
#include "distbelief/text/gettext.h"
#include "distbelief/workloads/seq2seq/enfr.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 4) {
    case 0: {
      auto m = distbelief::ParseMo(in, "fuzz.mo");
      if (m.ok())
        for (const auto& e : *m)
          if (e.id.size() + e.str.size() + e.context.size() > in.size()) std::abort();
      break;
    }
    case 1: {
      const std::string t = distbelief::Tokenize13a(in);
      // Tokenizing only adds spaces around what it splits: no token is longer than the input.
      for (const std::string& tok : distbelief::SplitTokens(t))
        if (tok.empty() || tok.size() > in.size()) std::abort();
      break;
    }
    case 2: {
      const std::string c = distbelief::CleanMessage(in);
      if (c.size() > in.size() + 8) std::abort();
      (void)distbelief::HasPlaceholder(in);
      (void)distbelief::LooksLikeEnFr(c, std::string(in));
      break;
    }
    default: {
      const size_t cut = in.find('\n');
      const std::string hyp(in.substr(0, cut)), ref(cut == std::string_view::npos ? "" : in.substr(cut + 1));
      auto b = distbelief::CorpusBleuOfLines({hyp}, {ref});
      if (!b.ok() || b->bleu < 0.0 || b->bleu > 100.0 + 1e-9) std::abort();
    }
  }
  return 0;
}
