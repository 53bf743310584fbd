// The language-model corpus: whole documents held out, a tokenizer that round-trips, a cache that
// gives back the same streams, and clear errors for an empty or missing folder. On a synthetic
// corpus (testing/synthetic.h), so nothing here needs scripts/setup.sh's data. BLEU: 13a's
// tokenization rule by rule, scores worked out by hand, and agreement with NLTK's corpus_bleu
// (Debian python3-nltk) on the same tokens. Gettext catalogues: both byte orders, contexts,
// plurals, and every way a file can lie about its tables.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "distbelief/base/random.h"
#include "distbelief/text/bleu.h"
#include "distbelief/text/gettext.h"
#include "distbelief/text/spm_client.h"

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
  auto ids = EncodeLines(c->tokenizer_model, {sentence});
  ASSERT_TRUE(ids.ok());
  EXPECT_LT((*ids)[0].size(), sentence.size());  // subwords, not characters
  auto back = DecodeLines(c->tokenizer_model, *ids);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ((*back)[0], sentence);
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

TEST(Bleu, Tokenize13aFollowsMteval) {
  EXPECT_EQ(Tokenize13a("Hello, world."), "Hello , world .");
  EXPECT_EQ(Tokenize13a("It costs 1,000.50 dollars."), "It costs 1,000.50 dollars .");
  EXPECT_EQ(Tokenize13a("pages 5-7 and well-known"), "pages 5 - 7 and well-known");
  EXPECT_EQ(Tokenize13a("(a) [b] {c} \"d\" x/y a:b"), "( a ) [ b ] { c } \" d \" x / y a : b");
  EXPECT_EQ(Tokenize13a("&quot;Tom &amp; Jerry&quot; &lt;3"), "\" Tom & Jerry \" < 3");
  EXPECT_EQ(Tokenize13a("l'été dernier... Fini."), "l'été dernier . . . Fini .");
  // Matches do not overlap, as in re.sub (values from sacreBLEU's regular expressions).
  EXPECT_EQ(Tokenize13a("a.,b"), "a . , b");
  EXPECT_EQ(Tokenize13a("1.,2"), "1 . , 2");
  EXPECT_EQ(Tokenize13a("3.-4"), "3 . -4");
  EXPECT_EQ(Tokenize13a("a<skipped>b  \t c"), "ab c");
  EXPECT_EQ(Tokenize13a(""), "");
  // French non-breaking spaces (U+00A0, U+202F) separate tokens, as Python's str.split() does.
  EXPECT_EQ(Tokenize13a("Attention\u00a0: fichier\u202f!"), "Attention : fichier !");
  // Bytes that are not UTF-8 pass through, never an error.
  EXPECT_EQ(Tokenize13a("caf\xe9 ok."), "caf\xe9 ok .");
}

TEST(Bleu, ScoresWorkedOutByHand) {
  auto same = CorpusBleuOfLines({"the cat sat on the mat ."}, {"the cat sat on the mat ."});
  ASSERT_TRUE(same.ok());
  EXPECT_DOUBLE_EQ(same->bleu, 100.0);
  // 6 hypothesis tokens against 7 reference tokens: unigrams 6/6, bigrams 4/5, trigrams 2/4,
  // 4-grams 1/3 ("the cat sat on" matches; "cat sat the"... do not), BP = exp(1 - 7/6).
  auto h = CorpusBleuOfLines({"the cat sat on a mat"}, {"the cat sat on the mat today"}, false);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->matches[0], 5);  // "a" is not in the reference
  EXPECT_EQ(h->matches[1], 3);  // the cat, cat sat, sat on
  EXPECT_EQ(h->matches[2], 2);
  EXPECT_EQ(h->matches[3], 1);
  EXPECT_EQ(h->totals[0], 6);
  EXPECT_EQ(h->totals[3], 3);
  const double want = 100.0 * std::exp(1.0 - 7.0 / 6.0) * std::pow((5.0 / 6) * (3.0 / 5) * (2.0 / 4) * (1.0 / 3), 0.25);
  EXPECT_NEAR(h->bleu, want, 1e-9);
  // Clipping: "the the the" against "the cat" matches one "the".
  auto clip = CorpusBleuOfLines({"the the the"}, {"the cat"}, false);
  ASSERT_TRUE(clip.ok());
  EXPECT_EQ(clip->matches[0], 1);
  EXPECT_EQ(clip->bleu, 0.0);  // no bigram matches: no smoothing
  EXPECT_FALSE(CorpusBleuOfLines({"a"}, {"a", "b"}).ok());
  auto empty = CorpusBleuOfLines({""}, {"a b"});
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(empty->bleu, 0.0);
}

TEST(Bleu, FilesOfDifferentLengthsAreAnErrorNamingBoth) {
  const std::string dir = TempDir("bleu_files");
  std::ofstream(dir + "/h.txt") << "a b c\r\nd e f\n";
  std::ofstream(dir + "/r.txt") << "a b c\n";
  auto s = CorpusBleuOfFiles(dir + "/h.txt", dir + "/r.txt");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("h.txt"), std::string::npos);
  EXPECT_NE(s.status().message().find("r.txt"), std::string::npos);
  EXPECT_EQ(CorpusBleuOfFiles(dir + "/missing.txt", dir + "/r.txt").status().code(), absl::StatusCode::kNotFound);
}

// 400 French-like sentences and noisy "translations" of them (words dropped, swapped, replaced,
// added): our corpus BLEU on 13a tokens against NLTK's corpus_bleu on the same tokens.
TEST(Bleu, AgreesWithNltkCorpusBleu) {
  const std::vector<std::string> words = {"le", "la", "les", "fichier", "dossier", "été", "ouvrir", "fermer", "impossible",
                                          "de", "du", "« nom »", "l'image", "n'a", "pas", "pu", "être", "3,5", "10.2",
                                          "(copie)", "erreur", ":", "!", "?", "«", "»", "Élément", "ça", "-", "5-6"};
  Random rng(42);
  auto pick = [&](size_t n) { return static_cast<size_t>(rng.Uniform() * n); };
  std::vector<std::string> refs, hyps;
  for (int i = 0; i < 400; ++i) {
    std::vector<std::string> r;
    const size_t len = 3 + pick(15);
    for (size_t k = 0; k < len; ++k) r.push_back(words[pick(words.size())]);
    std::vector<std::string> h = r;
    for (size_t k = 0; k < h.size(); ++k) {
      const double u = rng.Uniform();
      if (u < 0.08) h[k] = words[pick(words.size())];
      else if (u < 0.12 && k + 1 < h.size()) std::swap(h[k], h[k + 1]);
      else if (u < 0.16) h.erase(h.begin() + k);
      else if (u < 0.19) h.insert(h.begin() + k, words[pick(words.size())]);
    }
    // NLTK counts a hypothesis shorter than n as one n-gram that does not match (its denominator
    // is max(1, count)); mteval and sacreBLEU count none. Every hypothesis here has 4 tokens or
    // more, where the two definitions agree.
    while (h.size() < 4) h.push_back(words[pick(words.size())]);
    auto join = [](const std::vector<std::string>& v) {
      std::string s;
      for (const auto& w : v) s += (s.empty() ? "" : " ") + w;
      return s + ".";
    };
    refs.push_back(join(r));
    hyps.push_back(join(h));
  }
  auto ours = CorpusBleuOfLines(hyps, refs);
  ASSERT_TRUE(ours.ok());
  EXPECT_GT(ours->bleu, 20.0);
  EXPECT_LT(ours->bleu, 90.0);
  const std::string dir = TempDir("bleu_nltk");
  {
    std::ofstream h(dir + "/hyp.tok"), r(dir + "/ref.tok");
    for (size_t i = 0; i < refs.size(); ++i) h << Tokenize13a(hyps[i]) << "\n", r << Tokenize13a(refs[i]) << "\n";
  }
  const std::string cmd =
      "/usr/bin/python3 -c \"import sys\nfrom nltk.translate.bleu_score import corpus_bleu\n"
      "h=[l.split() for l in open(sys.argv[1], encoding='utf-8').read().split('\\n')[:-1]]\n"
      "r=[[l.split()] for l in open(sys.argv[2], encoding='utf-8').read().split('\\n')[:-1]]\n"
      "print('%.6f' % (100*corpus_bleu(r, h)))\" " + dir + "/hyp.tok " + dir + "/ref.tok 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  char buf[4096] = {0};
  const size_t n = std::fread(buf, 1, sizeof(buf) - 1, p);
  const int rc = ::pclose(p);
  const std::string out(buf, n);
  ASSERT_EQ(rc, 0) << "NLTK failed (Debian python3-nltk; scripts/setup.sh installs it): " << out;
  const double nltk = std::stod(out);
  EXPECT_NEAR(ours->bleu, nltk, 0.01) << ours->ToString() << " matches " << ours->matches[0] << " " << ours->matches[1] << " " << ours->matches[2] << " " << ours->matches[3] << " totals " << ours->totals[0] << " " << ours->totals[1] << " " << ours->totals[2] << " " << ours->totals[3];
}

TEST(Gettext, ParsesBothByteOrdersContextsAndPlurals) {
  const std::vector<std::pair<std::string, std::string>> e = {
      {"", "Content-Type: text/plain; charset=UTF-8\n"},
      {"Open", "Ouvrir"},
      {std::string("menu\x04") + "File", "Fichier"},
      {std::string("%d file") + '\0' + "%d files", std::string("%d fichier") + '\0' + "%d fichiers"},
      {"Untranslated", ""}};
  for (bool big : {false, true}) {
    auto m = ParseMo(testing::GettextCatalogue(e, big), "test.mo");
    ASSERT_TRUE(m.ok()) << m.status();
    ASSERT_EQ(m->size(), 4u);  // the header is skipped
    EXPECT_EQ((*m)[0].id, "Open");
    EXPECT_EQ((*m)[0].str, "Ouvrir");
    EXPECT_EQ((*m)[1].context, "menu");
    EXPECT_EQ((*m)[1].id, "File");
    EXPECT_EQ((*m)[2].id, "%d file");
    EXPECT_EQ((*m)[2].str, "%d fichier");
    EXPECT_EQ((*m)[3].str, "");
  }
}

TEST(Gettext, DamagedFilesAreErrorsNamingThem) {
  const std::string good = testing::GettextCatalogue({{"a", "b"}, {"c", "d"}}, false);
  EXPECT_EQ(ParseMo("", "x.mo").status().code(), absl::StatusCode::kDataLoss);
  std::string magic = good;
  magic[0] = 'X';
  auto m = ParseMo(magic, "x.mo");
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("x.mo"), std::string::npos);
  EXPECT_NE(m.status().message().find("magic"), std::string::npos);
  // Every truncation fails cleanly (the strings are the last bytes).
  for (size_t n = 0; n + 1 < good.size(); ++n) EXPECT_FALSE(ParseMo(good.substr(0, n), "x.mo").ok()) << n;
  // A count far beyond the file.
  std::string count = good;
  count[8] = '\xff', count[9] = '\xff', count[10] = '\xff', count[11] = '\x7f';
  EXPECT_FALSE(ParseMo(count, "x.mo").ok());
  // A string offset past the end.
  std::string off = good;
  off[28 + 4] = '\xf0';
  EXPECT_FALSE(ParseMo(off, "x.mo").ok());
  EXPECT_EQ(ReadMo("/nonexistent.mo").status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace distbelief
