// The language-model corpus: whole documents held out, a tokenizer that round-trips, a cache that
// gives back the same streams, and clear errors for an empty or missing folder. On a synthetic
// corpus (testing/synthetic.h), so nothing here needs scripts/setup.sh's data.
#include <gtest/gtest.h>

#include <filesystem>

#include "distbelief/text/corpus.h"
#include "testing/synthetic.h"

namespace distbelief {
namespace {

namespace fs = std::filesystem;

std::string TempDir(const std::string& name) {
  const fs::path p = fs::temp_directory_path() / ("distbelief_text_test_" + name);
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}

TEST(Corpus, HoldsOutWholeDocumentsAndRoundTrips) {
  CorpusOptions o;
  o.dir = testing::SyntheticCorpus("text_test", 20, 2000);
  o.cache_dir = TempDir("cache");
  o.vocab = 300;
  o.holdout_every = 5;
  auto c = LoadTokenCorpus(o);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->train_documents, 16);
  EXPECT_EQ(c->heldout_documents, 4);
  EXPECT_GT(c->train.size(), 20000u);
  EXPECT_GT(c->heldout.size(), 4000u);
  EXPECT_LE(c->vocab, 300);
  EXPECT_FALSE(c->from_cache);
  for (uint16_t t : c->train) ASSERT_LT(t, c->vocab);
  const std::string sentence = testing::SyntheticSentence();
  auto ids = EncodeText(c->tokenizer_model, sentence);
  ASSERT_TRUE(ids.ok());
  EXPECT_LT(ids->size(), sentence.size());  // subwords, not characters
  auto back = DecodeIds(c->tokenizer_model, *ids);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, sentence);
  // The second load comes from the cache, identical.
  auto again = LoadTokenCorpus(o);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->from_cache);
  EXPECT_EQ(again->train, c->train);
  EXPECT_EQ(again->heldout, c->heldout);
}

TEST(Corpus, EmptyOrMissingFolderIsAClearError) {
  CorpusOptions o;
  o.dir = TempDir("empty");
  o.cache_dir = TempDir("cache_empty");
  auto c = LoadTokenCorpus(o);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(c.status().message()).find("no non-empty documents"), std::string::npos) << c.status();
  o.dir = "/nonexistent/text";
  EXPECT_EQ(LoadTokenCorpus(o).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace distbelief
