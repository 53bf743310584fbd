#include "testing/synthetic.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "distbelief/base/random.h"

namespace distbelief::testing {
namespace {

void Fill(const std::vector<std::vector<float>>& prototypes, int64_t n, Random* rng, LabelledImages* out) {
  out->rows = out->cols = 28;
  out->images = Tensor({n, 784});
  out->labels = Tensor({n});
  for (int64_t i = 0; i < n; ++i) {
    const int c = static_cast<int>(rng->UniformInt(10));
    out->labels[i] = static_cast<float>(c);
    for (int64_t p = 0; p < 784; ++p)
      out->images[i * 784 + p] = std::clamp(prototypes[c][p] + 0.25f * static_cast<float>(rng->Normal()), 0.0f, 1.0f);
  }
}

}  // namespace

std::shared_ptr<const MnistData> SyntheticDigits(int64_t train, int64_t test, uint64_t seed) {
  Random rng(seed);
  // Each class: three Gaussian blobs at random places of a 28 x 28 image.
  std::vector<std::vector<float>> prototypes(10, std::vector<float>(784, 0.0f));
  for (auto& proto : prototypes)
    for (int b = 0; b < 3; ++b) {
      const double cy = 4 + rng.Uniform() * 20, cx = 4 + rng.Uniform() * 20, r = 2.5 + rng.Uniform() * 2.5;
      for (int y = 0; y < 28; ++y)
        for (int x = 0; x < 28; ++x) {
          const double d2 = (y - cy) * (y - cy) + (x - cx) * (x - cx);
          proto[y * 28 + x] = std::min(1.0f, proto[y * 28 + x] + static_cast<float>(std::exp(-d2 / (2 * r * r))));
        }
    }
  auto d = std::make_shared<MnistData>();
  Fill(prototypes, train, &rng, &d->train);
  Fill(prototypes, test, &rng, &d->test);
  return d;
}

namespace {

std::vector<std::string> Words() {
  static const char* syllables[] = {"ka", "lo", "mi", "ren", "tu", "sa", "ve", "do", "ni", "por", "ea", "lum", "ti", "ba", "gor"};
  Random rng(99);
  std::vector<std::string> words;
  while (words.size() < 150) {
    std::string w;
    const int n = 1 + static_cast<int>(rng.UniformInt(3));
    for (int i = 0; i < n; ++i) w += syllables[rng.UniformInt(15)];
    if (std::find(words.begin(), words.end(), w) == words.end()) words.push_back(w);
  }
  return words;
}

}  // namespace

std::string SyntheticSentence(uint64_t seed) {
  const std::vector<std::string> words = Words();
  Random rng(seed);
  std::string s;
  for (int i = 0; i < 8; ++i) s += (i ? " " : "") + words[rng.UniformInt(words.size())];
  return s + ".";
}

std::string SyntheticCorpus(const std::string& name, int docs, int words_per_doc, uint64_t seed) {
  const std::vector<std::string> words = Words();
  Random rng(seed);
  // Each word's four likely successors.
  std::vector<std::array<int, 4>> next(words.size());
  for (auto& n : next)
    for (int& k : n) k = static_cast<int>(rng.UniformInt(words.size()));
  const std::filesystem::path dir = std::filesystem::temp_directory_path() / ("distbelief_corpus_" + name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  for (int d = 0; d < docs; ++d) {
    std::ofstream out(dir / ("doc" + std::to_string(100 + d) + ".txt"));
    int w = static_cast<int>(rng.UniformInt(words.size())), in_sentence = 0;
    for (int i = 0; i < words_per_doc; ++i) {
      std::string word = words[w];
      if (in_sentence == 0) word[0] = static_cast<char>(std::toupper(word[0]));
      out << word;
      if (++in_sentence >= 6 + static_cast<int>(rng.UniformInt(8))) {
        out << (i % 5 == 0 ? ".\n" : ". ");
        in_sentence = 0;
      } else {
        out << ' ';
      }
      // Mostly one of the likely successors, sometimes any word.
      w = rng.UniformInt(10) < 8 ? next[w][rng.UniformInt(4)] : static_cast<int>(rng.UniformInt(words.size()));
    }
  }
  return dir.string();
}

std::shared_ptr<const TokenCorpus> SyntheticTokens(const std::string& name) {
  CorpusOptions o;
  o.dir = SyntheticCorpus(name, 20, 2000);
  o.cache_dir = (std::filesystem::temp_directory_path() / ("distbelief_tokens_" + name)).string();
  o.vocab = 300;
  o.holdout_every = 5;
  auto c = LoadTokenCorpus(o);
  if (!c.ok()) {
    std::fprintf(stderr, "synthetic corpus: %s\n", std::string(c.status().message()).c_str());
    std::abort();
  }
  return std::make_shared<const TokenCorpus>(std::move(*c));
}

std::string GettextCatalogue(const std::vector<std::pair<std::string, std::string>>& entries, bool big_endian) {
  auto u32 = [&](uint32_t v) {
    std::string b(4, '\0');
    for (int i = 0; i < 4; ++i) b[big_endian ? 3 - i : i] = static_cast<char>((v >> (8 * i)) & 0xff);
    return b;
  };
  // Header: magic, revision, count, offsets of the two tables, hash table size and offset.
  const uint32_t n = static_cast<uint32_t>(entries.size()), originals = 28, translations = originals + 8 * n;
  const uint32_t strings_at = translations + 8 * n;
  std::string ot, tt, strings;
  for (const auto& e : entries) ot += u32(e.first.size()) + u32(strings_at + strings.size()), strings += e.first + '\0';
  for (const auto& e : entries) tt += u32(e.second.size()) + u32(strings_at + strings.size()), strings += e.second + '\0';
  return u32(0x950412de) + u32(0) + u32(n) + u32(originals) + u32(translations) + u32(0) + u32(0) + ot + tt + strings;
}

}  // namespace distbelief::testing
