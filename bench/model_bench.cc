// The six reference models of the PyTorch comparison, trained step by step with plain SGD on
// synthetic data. Usage: model_bench THREADS. Prints one JSON object per model:
//   {"model": "a", "name": ..., "rate": units per second, "unit": ..., "mflop_per_unit": ...}
// and one with the sgemm peak measured in the same run. bench/compare_pytorch.py runs the same
// models in PyTorch and prints the ratio table.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "bench/bench_util.h"
#include "distbelief/base/parallel.h"
#include "distbelief/models/gan.h"
#include "distbelief/models/gpt.h"
#include "distbelief/models/seq2seq.h"
#include "distbelief/models/sequential.h"
#include "distbelief/nn/dense.h"
#include "distbelief/nn/loss.h"
#include "distbelief/nn/spatial.h"
#include "distbelief/optim/update_rules.h"

using namespace distbelief;

namespace {

Tensor Uniform(const Shape& s, float lo, float hi, uint64_t seed) {
  Random rng(seed);
  Tensor t(s);
  for (float& v : t.span()) v = rng.Uniform(lo, hi);
  return t;
}

Tensor Ids(const Shape& s, int64_t vocab, uint64_t seed) {
  Random rng(seed);
  Tensor t(s);
  for (float& v : t.span()) v = static_cast<float>(rng.UniformInt(vocab));
  return t;
}

void SgdUpdate(const std::vector<Param*>& params, const Sgd& rule) {
  for (Param* p : params) rule.Apply(p->value.span(), p->grad.span(), {}, 1);
}

void Report(const char* id, const char* name, double seconds_per_step, double units_per_step,
            const char* unit, double mflop_per_unit) {
  nlohmann::json j = {{"model", id}, {"name", name}, {"rate", units_per_step / seconds_per_step},
                      {"unit", unit}, {"mflop_per_unit", mflop_per_unit}};
  std::printf("%s\n", j.dump().c_str());
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 1;
  const double min_s = argc > 2 ? std::atof(argv[2]) : 1.0;
  SetNumThreads(threads);
  OptimizerOptions oo;
  oo.learning_rate = 0.01f;
  const Sgd sgd(oo);
  std::printf("%s\n", nlohmann::json({{"sgemm_peak_gflops", bench::SgemmPeakGflops()}, {"threads", threads}}).dump().c_str());

  {  // a. sparse autoencoder 784-1024(sigmoid)-784, MSE + 1e-4 L1 activity, batch 128
    Random rng(1);
    Linear enc("enc", 784, 1024, &rng), dec("dec", 1024, 784, &rng);
    ActivationLayer sig(Activation::kSigmoid);
    const Tensor x = Uniform({128, 784}, 0.0f, 1.0f, 2);
    Tensor h0, h, y, dy, dh, dh0;
    MeanSquaredError mse;
    const std::vector<Param*> params = {enc.params()[0], enc.params()[1], dec.params()[0], dec.params()[1]};
    const double t = bench::TimePerCall([&] {
      for (Param* p : params) p->grad.Zero();
      enc.Forward(x, &h0);
      sig.Forward(h0, &h);
      dec.Forward(h, &y);
      mse.Forward(y, x);
      mse.Backward(&dy);
      dec.Backward(dy, &dh);
      for (int64_t i = 0; i < dh.size(); ++i) dh[i] += 1e-4f / 128 * (h[i] > 0 ? 1.0f : -1.0f);
      sig.Backward(dh, &dh0);
      enc.Backward(dh0, nullptr);
      SgdUpdate(params, sgd);
    }, min_s);
    Report("a", "sparse autoencoder 784-1024-784, batch 128", t, 128, "examples", 6.0 * 2 * 784 * 1024 / 1e6);
  }
  {  // b. locally connected 1x64x64, 8 maps, 16x16 fields, stride 4, L2 pool 3x3, mirrored decoder
    Random rng(3);
    LocallyConnected2d enc("enc", {1, 64, 64}, 8, 16, 4, &rng);
    LocallyConnectedTranspose2d dec("dec", {1, 64, 64}, 8, 16, 4, &rng);
    L2Pool pool(3, 1);
    IcaSparsity ica(0.1f, 1e-2f);
    MeanSquaredError mse;
    const Tensor x = Uniform({32, 1, 64, 64}, -1.0f, 1.0f, 4);
    Tensor h, p, y, dy, dh, dhp, dp;
    std::vector<Param*> params = enc.params();
    for (Param* q : dec.params()) params.push_back(q);
    const double t = bench::TimePerCall([&] {
      for (Param* q : params) q->grad.Zero();
      enc.Forward(x, &h);
      pool.Forward(h, &p);
      dec.Forward(h, &y);
      mse.Forward(y, x);
      ica.Forward(p);
      mse.Backward(&dy);
      dec.Backward(dy, &dh);
      ica.Backward(&dp);
      pool.Backward(dp, &dhp);
      for (int64_t i = 0; i < dh.size(); ++i) dh[i] += dhp[i];
      enc.Backward(dh, nullptr);
      SgdUpdate(params, sgd);
    }, min_s);
    Report("b", "locally connected 64x64 k8 f16 s4 + L2 pool + decoder, batch 32", t, 32, "images",
           3.0 * 2 * 2 * 169 * 8 * 256 / 1e6);
  }
  {  // c. seq2seq 2+2 LSTM, hidden 256, embedding 256, vocab 8000, length 20, batch 64
    Seq2SeqOptions so;
    Seq2Seq model(so, 5);
    const Tensor src = Ids({64, 20}, 8000, 6), tin = Ids({64, 20}, 8000, 7), tout = Ids({64, 20}, 8000, 8);
    const std::vector<Param*> params = model.params();
    const double t = bench::TimePerCall([&] {
      model.ZeroGrad();
      model.Forward(src, tin, tout);
      model.Backward();
      SgdUpdate(params, sgd);
    }, min_s);
    const double fwd = 4 * 2.0 * 1024 * 512 + 2.0 * 256 * 8000;  // 4 LSTM layer-steps + softmax
    Report("c", "seq2seq 2+2 LSTM 256, vocab 8000, length 20, batch 64", t, 64 * 20,
           "target tokens", 3.0 * fwd / 1e6);
  }
  {  // d. MLP GAN on 28x28: G 100-256-512-784, D 784-512-256-1, batch 64
    Gan gan(GanOptions{}, 9);
    const Tensor real = Uniform({64, 784}, -1.0f, 1.0f, 10);
    const double t = bench::TimePerCall([&] { gan.Step(real, sgd, sgd); }, min_s);
    // Multiply-adds per example: G (558k) forward and backward (3x); D (532k) forward on the
    // fakes and dx back for G (2x), then forward and backward on real and fake (2 x 3x).
    const double macs = 3.0 * 557.6e3 + 8.0 * 532.0e3;
    Report("d", "MLP GAN 28x28, batch 64", t, 1, "G+D steps", 2.0 * macs * 64 / 1e6);
  }
  // One GPT training step (forward, backward, SGD) on random tokens: seconds per step.
  auto time_gpt = [&](const GptOptions& o, int64_t batch, uint64_t seed) {
    Gpt gpt(o, seed);
    const Tensor tokens = Ids({batch, o.context}, o.vocab, seed + 1);
    const Tensor targets = Ids({batch, o.context}, o.vocab, seed + 2);
    const std::vector<Param*> params = gpt.params();
    return bench::TimePerCall([&] {
      gpt.ZeroGrad();
      gpt.Forward(tokens, targets);
      gpt.Backward();
      SgdUpdate(params, sgd);
    }, min_s);
  };
  {  // e. GPT-style, 4 layers, width 256, 4 heads, context 128, vocab 8000, batch 16
    const double n = 4 * 12.0 * 256 * 256 + 256.0 * 8000;  // non-embedding + head parameters
    Report("e", "GPT 4 layers d256 4 heads, context 128, vocab 8000, batch 16", time_gpt(GptOptions{}, 16, 11),
           16 * 128, "tokens", 6.0 * n / 1e6);
  }
  {  // f. the reasoning lab's stream policy: GPT, 3 layers, width 96, 3 heads, context 832, vocab 27,
     // batch 8 (configs/countdown.toml at the 4-number stream settings): attention dominates
    GptOptions o;
    o.vocab = 27, o.context = 832, o.width = 96, o.layers = 3, o.heads = 3;
    const double n = 3 * 12.0 * 96 * 96 + 96.0 * 27;
    // 6 flops per parameter and token, and causal attention's 6 L T C (q k^T and p v over T / 2
    // positions on average, forward and backward)
    Report("f", "GPT 3 layers d96 3 heads, context 832, vocab 27, batch 8", time_gpt(o, 8, 14), 8 * 832,
           "tokens", (6.0 * n + 6.0 * 3 * 832 * 96) / 1e6);
  }
  return 0;
}
