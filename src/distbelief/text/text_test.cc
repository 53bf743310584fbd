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

// A damaged token cache is rebuilt, never trusted: counts larger than the file (which the
// reader used to allocate, up to 32 GiB, before reading) or a wrong checksum are refused.
TEST(Corpus, ADamagedTokenCacheIsRefused) {
  auto cache = [](int64_t train, int64_t heldout, const std::vector<uint16_t>& ids, uint64_t sum) {
    std::string b = "DBTOKEN1";
    const int64_t head[7] = {100, train, heldout, 1, 1, 10, 10};
    b.append(reinterpret_cast<const char*>(head), sizeof(head));
    b.append(reinterpret_cast<const char*>(ids.data()), ids.size() * 2);
    b.append(reinterpret_cast<const char*>(&sum), 8);
    return b;
  };
  const uint64_t sum = ((0 * 31 + 5) * 31 + 6) * 31 + 7;
  TokenCorpus c;
  ASSERT_TRUE(ParseTokenCache(cache(2, 1, {5, 6, 7}, sum), &c));
  EXPECT_EQ(c.train, (std::vector<uint16_t>{5, 6}));
  EXPECT_EQ(c.heldout, (std::vector<uint16_t>{7}));
  EXPECT_FALSE(ParseTokenCache(cache(int64_t{1} << 34, 1, {5, 6, 7}, sum), &c));
  EXPECT_FALSE(ParseTokenCache(cache(2, int64_t{1} << 40, {5, 6, 7}, sum), &c));
  EXPECT_FALSE(ParseTokenCache(cache(-1, 4, {5, 6, 7}, sum), &c));
  EXPECT_FALSE(ParseTokenCache(cache(2, 1, {5, 6, 7}, sum + 1), &c));
  EXPECT_FALSE(ParseTokenCache(cache(2, 1, {5, 6, 7}, sum).substr(0, 40), &c));
  // Found by fuzz/readers_fuzz: a cache of no tokens copied from a null pointer (undefined).
  ASSERT_TRUE(ParseTokenCache(cache(0, 0, {}, 0), &c));
  EXPECT_TRUE(c.train.empty() && c.heldout.empty());
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
