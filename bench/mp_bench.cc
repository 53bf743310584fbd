// Model parallelism, measured side by side in one run:
//   1. bytes crossing partitions per step against the minimum the plan implies (and against
//      sending every activation to every partition);
//   2. step time of a cat-like locally connected model with 1 and 2 partitions (in process and
//      over loopback gRPC), each partition on one core;
//   3. the cost model (mp/cost_model.h) fed with per-layer times and link figures measured here,
//      against the real 1- and 2-partition step times;
//   4. the cost model's speedup curves for models shaped like DistBelief's figure 3 (a 42M
//      parameter fully connected speech model, a ~1.7B parameter locally connected image model).
// Usage: mp_bench [batch]
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "bench/bench_util.h"
#include "distbelief/base/parallel.h"
#include "distbelief/base/random.h"
#include "distbelief/mp/cost_model.h"
#include "distbelief/mp/lstm_pipeline.h"
#include "distbelief/mp/replica.h"
#include "distbelief/mp/links.h"

using namespace distbelief;

namespace {

MpLayerSpec Lc(int64_t k, int64_t f, int64_t s) { return {MpLayerKind::kLocallyConnected, k, f, s}; }
MpLayerSpec Pool(int64_t w, int64_t s) { return {MpLayerKind::kL2Pool, 0, w, s}; }
MpLayerSpec Lcn(int64_t w) { return {MpLayerKind::kLcn, 0, w}; }
MpLayerSpec Fc(int64_t u) { return {MpLayerKind::kFullyConnected, 0, 0, 1, 0, u}; }

std::vector<Layer*> Raw(const std::vector<std::unique_ptr<Layer>>& v) {
  std::vector<Layer*> out;
  for (auto& l : v) out.push_back(l.get());
  return out;
}

// Seconds per Deliver of `floats` floats into a mailbox, through the transport.
double DeliverSeconds(bool grpc, int64_t floats) {
  auto t = grpc ? MakeGrpcTransport({}) : MakeInprocTransport({});
  auto links = PartitionLinks::Create(t.get(), 2);
  std::vector<float> v(floats, 1.0f);
  int64_t step = 0;
  return bench::TimePerCall([&] {
    ++step;
    (void)(*links)->Send(0, 1, step, 0, false, v);
    (void)(*links)->Receive(1, 0, step, 0, false, floats, Millis(10000));
  }, 0.3);
}

}  // namespace

int main(int argc, char** argv) {
  const int64_t batch = argc > 1 ? std::atoll(argv[1]) : 32;
  MpModelSpec cat;
  cat.channels = 1;
  cat.height = cat.width = 64;
  cat.layers = {Lc(8, 8, 2), Pool(3, 1), Lcn(5), Lc(8, 6, 1), Pool(3, 1), Lcn(5), Fc(64)};
  std::printf("model: %s, batch %ld\n", cat.Describe().c_str(), long(batch));

  // 1. Bytes.
  std::printf("\n1. floats crossing partitions per step (forward + backward)\n");
  std::printf("%-11s %14s %14s %16s\n", "partitions", "plan minimum", "measured", "send-everything");
  Tensor x({batch, 1, 64, 64});
  Random rng(1);
  for (float& v : x.span()) v = rng.Uniform(-1, 1);
  auto ref = BuildMpReference(cat, 1);
  auto plan1 = MakePartitionPlan(cat, 1);
  const MpLayerPlan& last = plan1->layers.back();
  Tensor dy({batch, last.out.c});
  dy.Fill(0.01f);
  for (int P : {1, 2, 3, 4}) {
    auto t = MakeInprocTransport({});
    auto rep = MpReplica::Create(cat, P, Raw(ref), t.get());
    Tensor y, dx;
    if (!rep.ok() || !(*rep)->Step(x, dy, &y, &dx).ok()) return 1;
    const int64_t minimum = 2 * batch * (*rep)->plan().CrossingFloatsPerExample();
    int64_t naive = 0;
    for (size_t l = 1; l < plan1->layers.size(); ++l) naive += 2 * batch * (P - 1) * plan1->layers[l].in.size();
    std::printf("%-11d %14ld %14ld %16ld\n", P, long(minimum), long((*rep)->TotalStats().floats_sent), long(naive));
  }

  // 2 and 3. Step times, and the cost model fed with what this machine measures.
  // Per-layer compute measured inside a real 1-partition run on one core (the cost model's input).
  SetNumThreads(1);
  std::vector<double> layer_s;
  {
    auto t = MakeInprocTransport({});
    auto rep = MpReplica::Create(cat, 1, Raw(ref), t.get());
    Tensor y, dx;
    (void)(*rep)->Step(x, dy, &y, nullptr);
    (*rep)->partition(0).ResetStats();
    const int steps = 10;
    for (int i = 0; i < steps; ++i) (void)(*rep)->Step(x, dy, &y, nullptr);
    for (double s : (*rep)->partition(0).stats().layer_seconds) layer_s.push_back(s / steps);
  }
  const int64_t probe = 64 * 1024;
  LinkModel inproc, grpc;
  for (auto [link, is_grpc] : {std::pair<LinkModel*, bool>{&inproc, false}, {&grpc, true}}) {
    const double small = DeliverSeconds(is_grpc, 16), large = DeliverSeconds(is_grpc, probe);
    link->latency_seconds = small;
    link->bytes_per_second = 4.0 * probe / std::max(1e-9, large - small);
  }
  SetNumThreads(2);
  std::printf("\n2-3. step time (forward + backward), each partition on one core; cost model from per-layer\n"
              "     times and links measured here (in process: %.1f us + %.2f GB/s; gRPC: %.0f us + %.2f GB/s)\n",
              inproc.latency_seconds * 1e6, inproc.bytes_per_second / 1e9, grpc.latency_seconds * 1e6,
              grpc.bytes_per_second / 1e9);
  std::printf("%-26s %10s %10s %9s %9s\n", "run", "measured", "predicted", "error", "speedup");
  double t1 = 0;
  for (auto [P, is_grpc] : {std::pair<int, bool>{1, false}, {2, false}, {2, true}}) {
    auto t = is_grpc ? MakeGrpcTransport({}) : MakeInprocTransport({});
    auto rep = MpReplica::Create(cat, P, Raw(ref), t.get());
    if (!rep.ok()) return 1;
    SetNumThreads(P);  // one core per partition
    Tensor y, dx;
    const double measured = bench::TimePerCall([&] { (void)(*rep)->Step(x, dy, &y, nullptr); }, 1.0);
    SetNumThreads(2);
    auto pred = PredictStep(cat, P, layer_s, batch, is_grpc ? grpc : inproc);
    if (P == 1) t1 = measured;
    char name[64];
    std::snprintf(name, sizeof(name), "%d partition%s%s", P, P > 1 ? "s" : "", is_grpc ? ", gRPC" : ", in process");
    std::printf("%-26s %8.1fms %8.1fms %8.1f%% %8.2fx\n", name, measured * 1e3, pred->seconds * 1e3,
                100.0 * (pred->seconds - measured) / measured, t1 / measured);
  }
  std::printf("(1 partition on 2 threads: %.1f ms; the two cores share memory bandwidth, unlike two machines)\n", [&] {
    auto t = MakeInprocTransport({});
    auto rep = MpReplica::Create(cat, 1, Raw(ref), t.get());
    Tensor y;
    return 1e3 * bench::TimePerCall([&] { (void)(*rep)->Step(x, dy, &y, nullptr); }, 1.0);
  }());

  // LSTM stack, one or two layers per partition, with and without pipelining over time chunks.
  {
    LstmStackSpec ls;
    ls.input = 256;
    ls.hidden = 256;
    ls.layers = 4;
    auto stack = BuildLstmStack(ls, 1);
    std::vector<Lstm*> raw;
    for (auto& l : stack) raw.push_back(l.get());
    Tensor xs({32, 32, 256}), dys({32, 32, 256}), ys, dxs;
    for (float& v : xs.span()) v = rng.Uniform(-1, 1);
    dys.Fill(0.01f);
    std::printf("\nLSTM stack 4 x 256, batch 32, 32 steps, one core per partition:\n");
    double base = 0;
    for (auto [P, chunks] : {std::pair<int, int>{1, 1}, {2, 1}, {2, 4}, {2, 8}}) {
      auto t = MakeInprocTransport({});
      auto pl = LstmPipeline::Create(ls, P, chunks, raw, t.get());
      SetNumThreads(P);
      const double s = bench::TimePerCall([&] { (void)(*pl)->Step(xs, dys, &ys, &dxs); }, 1.0);
      SetNumThreads(2);
      if (P == 1) base = s;
      std::printf("  %d partition%s, %d time chunk%s: %7.1f ms  (%.2fx)\n", P, P > 1 ? "s" : " ", chunks,
                  chunks > 1 ? "s" : " ", s * 1e3, base / s);
    }
  }

  // 4. Figure 3's shape. Compute from FLOPs at rates measured here on one core; 1 Gbit/s links.
  SetNumThreads(1);
  const double gemm_rate = bench::SgemmPeakGflops() * 1e9 * 0.9;
  const std::vector<double> cat_flops = LayerFlopsPerExample(cat);
  const double lc_rate = cat_flops[0] * batch / layer_s[0];
  LinkModel ethernet;  // 1 Gbit/s, 0.5 ms per message
  MpModelSpec speech;
  speech.channels = 440;
  speech.height = speech.width = 1;
  speech.layers = {Fc(2560), Fc(2560), Fc(2560), Fc(2560), Fc(8192)};
  MpModelSpec image;
  image.channels = 3;
  image.height = image.width = 200;
  image.layers = {Lc(16, 18, 1), Pool(5, 1), Lcn(5), Lc(16, 9, 1), Pool(3, 1), Lcn(5), Lc(16, 9, 1), Pool(3, 1), Lcn(5)};
  auto params = [](const MpModelSpec& m) {
    auto p = MakePartitionPlan(m, 1);
    double n = 0;
    for (size_t l = 0; l < m.layers.size(); ++l) {
      const auto& lp = p->layers[l];
      if (m.layers[l].kind == MpLayerKind::kLocallyConnected)
        n += double(lp.out.size()) * lp.in.c * m.layers[l].field * m.layers[l].field;
      if (m.layers[l].kind == MpLayerKind::kFullyConnected) n += double(lp.in.size()) * lp.out.c;
    }
    return n;
  };
  std::printf("\n4. predicted speedup over 1 machine (compute at %.1f GFLOP/s GEMM, %.1f GFLOP/s locally connected;\n"
              "   1 Gbit/s links, 0.5 ms per message)\n", gemm_rate / 1e9, lc_rate / 1e9);
  std::printf("%-9s %22s %26s\n", "machines", "speech FC, batch 128", "image LC, batch 32");
  std::printf("%-9s %22s %26s\n", "", (std::to_string(int(params(speech) / 1e6)) + "M params").c_str(),
              (std::to_string(params(image) / 1e9).substr(0, 4) + "B params").c_str());
  auto seconds = [&](const MpModelSpec& m, double rate_fc, double rate_lc, int64_t b) {
    std::vector<double> s;
    const auto f = LayerFlopsPerExample(m);
    for (size_t l = 0; l < f.size(); ++l)
      s.push_back(f[l] * b / (m.layers[l].kind == MpLayerKind::kFullyConnected ? rate_fc : rate_lc));
    return s;
  };
  const auto speech_s = seconds(speech, gemm_rate, lc_rate, 128), image_s = seconds(image, gemm_rate, lc_rate, 32);
  const double speech1 = PredictStep(speech, 1, speech_s, 128, ethernet)->seconds;
  const double image1 = PredictStep(image, 1, image_s, 32, ethernet)->seconds;
  for (int m : {1, 2, 4, 8, 16, 32, 64, 81, 128}) {
    auto a = PredictStep(speech, m, speech_s, 128, ethernet);
    auto b = PredictStep(image, m, image_s, 32, ethernet);
    std::printf("%-9d %21.2fx %25.2fx\n", m, a.ok() ? speech1 / a->seconds : 0.0, b.ok() ? image1 / b->seconds : 0.0);
  }
  return 0;
}
