// The language model on the one engine: locally (the scaling lab's runs) and with Downpour, both
// learn the synthetic corpus's word chain, and under Downpour no window is seen twice.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "distbelief/text/corpus.h"
#include "distbelief/train/downpour.h"
#include "distbelief/workloads/lm/lm.h"
#include "testing/synthetic.h"

namespace distbelief {
namespace {

std::shared_ptr<const TokenCorpus> Corpus() { return testing::SyntheticTokens("lm_test"); }

LmRunSpec Small() {
  LmRunSpec s;
  s.width = 32;
  s.layers = 1;
  s.head_size = 16;
  s.context = 32;
  s.batch = 8;
  s.tokens = 32768;
  s.eval_tokens = 4096;
  return s;
}

TEST(LanguageModel, GptLearnsLocally) {
  auto corpus = Corpus();
  auto r = RunLanguageModel(Small(), corpus);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->diverged);
  EXPECT_LT(r->loss, std::log(static_cast<double>(corpus->vocab)) - 1.0);  // well below a uniform guess
  EXPECT_EQ(r->tokens, 32768);
}

TEST(LanguageModel, GptLearnsWithDownpour) {
  auto corpus = Corpus();
  auto job = LmJob(Small(), corpus, 2);
  ASSERT_TRUE(job.ok()) << job.status();
  EngineOptions e;
  e.train.run_dir = (std::filesystem::temp_directory_path() / "distbelief_lm_test_run").string();
  e.train.schedule = {Schedule::kCosine, 6, 0.1f};
  e.optimizer.name = Optimizer::kAdam;
  e.optimizer.learning_rate = 3e-3f;
  e.optimizer.beta2 = 0.95f;
  e.optimizer.clip_norm = 1.0f;
  e.distributed.mode = Mode::kDownpour;
  e.distributed.downpour.replicas = 2;
  e.distributed.cluster.shards = 2;
  auto r = RunDownpour(e, *job);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->replicas_failed, 0);
  EXPECT_EQ(r->steps, job->steps);
  EXPECT_LT(r->last_loss.total, r->first_loss.total - 1.0);
  EXPECT_LT(HeldOutLoss(r->model.get()), std::log(static_cast<double>(corpus->vocab)) - 1.0);
}

}  // namespace
}  // namespace distbelief
