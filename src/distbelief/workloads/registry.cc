#include "distbelief/workloads/registry.h"

#include "distbelief/workloads/cat/cat.h"
#include "distbelief/workloads/gan/gan_mnist.h"
#include "distbelief/workloads/lm/lm.h"
#include "distbelief/workloads/mnist/mnist.h"
#include "distbelief/workloads/reasoning/countdown_lab.h"
#include "distbelief/workloads/reasoning/multiply_lab.h"
#include "distbelief/workloads/reasoning/star_lab.h"
#include "distbelief/workloads/reasoning/verifier_lab.h"
#include "distbelief/workloads/scale/sweep.h"
#include "distbelief/workloads/seq2seq/seq2seq_enfr.h"

namespace distbelief {

const std::vector<WorkloadEntry>& Workloads() {
  static const std::vector<WorkloadEntry> all = {
      {"mnist", "model", "the MNIST classifier or autoencoder (the default)", MakeMnistWorkload},
      {"cat", "cat", "the cat network of Le et al. 2012, trained stage by stage, and its face neurons", MakeCatWorkload},
      {"lm", "lm", "a GPT or LSTM language model on a token corpus", MakeLmWorkload},
      {"gan", "gan", "the GAN of Goodfellow et al. 2014 on MNIST, scored by a Parzen-window log-likelihood",
       MakeGanMnistWorkload},
      {"seq2seq", "seq2seq", "Seq2Seq English->French (Sutskever et al. 2014) on Debian's catalogues, scored by BLEU",
       MakeSeq2SeqEnFrWorkload},
      {"countdown", "countdown", "a Countdown policy (GPT on solver traces) for the reasoning lab, scored by the exact verifier",
       MakeCountdownWorkload},
      {"verifier", "verifier", "an outcome reward model for a Countdown policy, and search at test time against tokens",
       MakeVerifierWorkload},
      {"star", "star", "self-improvement of a Countdown policy on its own verified solutions (STaR), in rounds",
       MakeStarWorkload},
      {"multiply", "multiply", "the reasoning lab's second task: long multiplication as steps, scored by the step verifier",
       MakeMultiplyWorkload},
      {"scale", "scale", "a scaling-law sweep of language models or autoencoders", MakeScaleWorkload},
  };
  return all;
}

StatusOr<std::unique_ptr<Workload>> SelectWorkload(ConfigFile* file, std::string* name) {
  const WorkloadEntry* chosen = nullptr;
  for (const WorkloadEntry& w : Workloads()) {
    if (!file->Has(w.section) || std::string(w.section) == "model") continue;
    if (chosen)
      return absl::InvalidArgumentError("config " + file->origin() + " has both [" + chosen->section + "] and [" +
                                        w.section + "]: one workload per config");
    chosen = &w;
  }
  if (!chosen) chosen = &Workloads().front();  // [model] or nothing: MNIST
  if (name) *name = chosen->name;
  return chosen->make(file);
}

}  // namespace distbelief
