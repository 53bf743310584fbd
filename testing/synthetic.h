// Synthetic data for tests that must not depend on what scripts/setup.sh unpacks: a small
// MNIST-shaped set of 10 classes (each a fixed random image of smooth blobs, examples being noisy
// copies of it), learnable to > 95% by a small MLP in a few hundred steps, deterministic by seed.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "distbelief/text/corpus.h"
#include "distbelief/workloads/mnist/mnist.h"

namespace distbelief::testing {

std::shared_ptr<const MnistData> SyntheticDigits(int64_t train, int64_t test, uint64_t seed = 7);

// A folder of `docs` plain-text documents (about `words` words each) in a made-up language: 150
// words built from syllables, sentences drawn from a first-order Markov chain in which each word
// has a few likely successors, so a language model has something to learn. Returns the folder
// (created under the system's temporary directory, replaced if present). Deterministic by seed.
std::string SyntheticCorpus(const std::string& name, int docs, int words, uint64_t seed = 11);

// The corpus above (20 documents of 2,000 words, every 5th held out) tokenized with a vocabulary
// of 300, cached under the temporary directory.
std::shared_ptr<const TokenCorpus> SyntheticTokens(const std::string& name);

// A sentence of the made-up language's words (for tokenizer round trips).
std::string SyntheticSentence(uint64_t seed = 3);

// The bytes of a gettext catalogue (.mo) holding `entries` (original, translation) in order, in
// little- or big-endian byte order (the header entry, if wanted, is an entry with an empty original).
std::string GettextCatalogue(const std::vector<std::pair<std::string, std::string>>& entries,
                             bool big_endian = false);

}  // namespace distbelief::testing
