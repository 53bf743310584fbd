// Training speed of the cat network (configs/cat.toml's geometry, batch 32): one Adagrad step of
// each stage's objective (running the frozen stages below it forward), as images per second for
// one step of every stage, and as a fraction of the sgemm peak measured in the same run.
// Prints JSON lines; bench/compare_cat_pytorch.py sets it beside PyTorch.
// Usage: cat_bench THREADS [min seconds per stage]
#include <cstdio>
#include <cstdlib>

#include <nlohmann/json.hpp>

#include "bench/bench_util.h"
#include "distbelief/base/parallel.h"
#include "distbelief/models/cat_net.h"
#include "distbelief/optim/update_rules.h"

using namespace distbelief;

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 1;
  const double min_s = argc > 2 ? std::atof(argv[2]) : 1.0;
  SetNumThreads(threads);
  CatNetOptions o;
  o.frame = 64;
  o.stages = {CatStageOptions{8, 6, 2, 3, 5}, CatStageOptions{8, 6, 2, 3, 5}, CatStageOptions{8, 6, 2, 3, 5}};
  const int64_t batch = 32;
  auto net = CatNet::Create(o, 1);
  if (!net.ok()) return 1;
  Tensor x({batch, 1, o.frame, o.frame});
  Random rng(2);
  for (float& v : x.span()) v = static_cast<float>(rng.Normal());
  OptimizerOptions oo;
  oo.name = Optimizer::kAdagrad;
  oo.learning_rate = 0.05f;
  Adagrad rule(oo);
  double total_s = 0.0, flops = 0.0;
  int64_t in_c = 1, in_h = o.frame;
  std::vector<double> fwd_macs;  // encoder MACs per image, per stage
  for (int s = 0; s < (*net)->num_stages(); ++s) {
    const CatStageOptions& so = o.stages[s];
    const int64_t oh = (in_h - so.field) / so.stride + 1;
    const double macs = double(oh * oh) * so.maps * in_c * so.field * so.field;
    fwd_macs.push_back(macs);
    // Encoder and decoder forward, decoder backward (data and weights), encoder weight gradient,
    // plus the forward passes of the stages below: 2 FLOPs per MAC.
    double stage_flops = 2.0 * 5.0 * macs;
    for (int j = 0; j < s; ++j) stage_flops += 2.0 * fwd_macs[j];
    std::vector<Param*> params = (*net)->StageParams(s);
    std::vector<std::vector<float>> state;
    for (Param* p : params) state.emplace_back(p->value.size(), 0.0f);
    int64_t step = 0;
    const double t = bench::TimePerCall([&] {
      for (Param* p : params) p->grad.ZeroOnPool();
      const Tensor& in = (*net)->StageInput(s, x);
      (*net)->StageLossAndGradient(s, in);
      ++step;
      for (size_t i = 0; i < params.size(); ++i) rule.ApplyOnPool(params[i]->value.span(), params[i]->grad.span(), state[i], step);
      (*net)->ConstrainDecoder(s);
    }, min_s);
    total_s += t;
    flops += stage_flops * batch;
    in_c = so.maps;
    in_h = oh - so.pool + 1;
  }
  const double peak = bench::SgemmPeakGflops();
  std::printf("%s\n", nlohmann::json({{"threads", threads}, {"images_per_s", batch / total_s},
                                      {"gflops", flops / total_s / 1e9}, {"sgemm_peak_gflops", peak}}).dump().c_str());
  return 0;
}
