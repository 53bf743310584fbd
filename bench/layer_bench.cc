// Per-layer speed against this machine's sgemm peak, measured in the same run.
// Usage: layer_bench [threads] [only: rows whose name contains this]. Prints, for each layer at a realistic shape, the time of one
// forward + backward (including the input gradient), the GFLOP/s that implies and the fraction of
// the sgemm peak. FLOPs are counted from the shapes: a product of (M x K)(K x N) is 2MNK, and a
// backward pass costs twice its forward. Pooling and normalization are memory-bound: their rows
// also print the bandwidth they reach, counting only the bytes they must move (forward: read x,
// write y; backward: read dy, x and y where needed, write dx), against a STREAM triad
// (a = b + s c, 12 bytes an element) over arrays as large as the layer's input, run on the same
// threads in the same run.
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "distbelief/base/parallel.h"
#include "distbelief/nn/dense.h"
#include "distbelief/nn/sequence.h"
#include "distbelief/nn/spatial.h"

using namespace distbelief;

namespace {

Tensor Random01(const Shape& s, uint64_t seed) {
  Random rng(seed);
  Tensor t(s);
  for (float& v : t.span()) v = rng.Uniform(-1.0f, 1.0f);
  return t;
}

struct Row {
  std::string name;
  double flops;  // forward + backward
  std::function<void()> run;
  double bytes = 0;  // the least memory traffic of forward + backward, for memory-bound layers
};

// GB/s of a[i] = b[i] + s c[i] over n floats, on the thread pool.
double TriadGbps(int64_t n) {
  std::vector<float> a(n), b(n, 1.0f), c(n, 2.0f);
  const double t = bench::TimePerCall([&] {
    ParallelFor(n, 4096, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) a[i] = b[i] + 0.5f * c[i];
    });
  }, 0.2);
  return 12.0 * n / t / 1e9;
}

}  // namespace

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 1;
  SetNumThreads(threads);
  Random rng(1);
  std::vector<Row> rows;
  std::vector<std::unique_ptr<Layer>> keep;
  std::vector<std::unique_ptr<Tensor>> tensors;
  auto add = [&](std::string name, std::unique_ptr<Layer> layer, Shape in_shape, double fwd_flops,
                 bool needs_dx = true, bool ids = false, int64_t vocab = 0) {
    Layer* l = layer.get();
    keep.push_back(std::move(layer));
    auto x = std::make_unique<Tensor>(Random01(in_shape, 2));
    if (ids)
      for (float& v : x->span()) v = static_cast<float>(rng.UniformInt(vocab));
    auto y = std::make_unique<Tensor>(), dx = std::make_unique<Tensor>();
    l->Forward(*x, y.get());
    auto dy = std::make_unique<Tensor>(Random01(y->shape(), 3));
    Tensor *xp = x.get(), *yp = y.get(), *dyp = dy.get(), *dxp = dx.get();
    rows.push_back({name, 3.0 * fwd_flops, [=] {
                      l->Forward(*xp, yp);
                      l->Backward(*dyp, needs_dx ? dxp : nullptr);
                    }});
    for (auto* t : {&x, &y, &dx, &dy}) tensors.push_back(std::move(*t));
  };

  add("linear 128x784->1024", std::make_unique<Linear>("a", 784, 1024, &rng), {128, 784},
      2.0 * 128 * 784 * 1024);
  add("linear 64x4096->4096", std::make_unique<Linear>("b", 4096, 4096, &rng), {64, 4096},
      2.0 * 64 * 4096 * 4096);
  add("linear (LM head) 2048x256->8000", std::make_unique<Linear>("c", 256, 8000, &rng),
      {2048, 256}, 2.0 * 2048 * 256 * 8000);
  {
    // 1x64x64, 8 maps, 16x16 fields, stride 4: 13x13 locations, CFF 256, batch 32.
    auto lc = std::make_unique<LocallyConnected2d>("lc", SpatialShape{1, 64, 64}, 8, 16, 4, &rng);
    add("locally connected 32x1x64x64 k8 f16 s4", std::move(lc), {32, 1, 64, 64},
        2.0 * 32 * 169 * 8 * 256);
  }
  {
    // A cat-network stage: 3 maps of 32x32 in, 16 maps, 8x8 fields, stride 2: 13x13 locations.
    auto lc = std::make_unique<LocallyConnected2d>("lc2", SpatialShape{3, 32, 32}, 16, 8, 2, &rng);
    add("locally connected 32x3x32x32 k16 f8 s2", std::move(lc), {32, 3, 32, 32},
        2.0 * 32 * 169 * 16 * 192);
  }
  add("conv2d 32x16x32x32 k32 f5 pad2", std::make_unique<Conv2d>("cv", SpatialShape{16, 32, 32}, 32, 5, 1, 2, &rng),
      {32, 16, 32, 32}, 2.0 * 32 * 1024 * 32 * 400);
  add("lstm B64 T20 256->256", std::make_unique<Lstm>("lstm", 256, 256, &rng), {64, 20, 256},
      2.0 * 64 * 20 * 1024 * 512);
  add("attention B16 T128 C256 H4", std::make_unique<CausalSelfAttention>("att", 256, 4, &rng),
      {16, 128, 256}, 2.0 * 16 * 128 * 256 * 1024 + 2.0 * 2 * 16 * 128 * 128 * 256);
  add("layer norm 2048x256", std::make_unique<LayerNorm>("ln", 256), {2048, 256}, 8.0 * 2048 * 256);
  // The cat network's first stage: 16 maps of 30x30 pooled 3x3 to 28x28, then normalized.
  const int64_t pool_in = 32 * 16 * 30 * 30, pool_out = 32 * 16 * 28 * 28;
  add("l2 pool 32x16x30x30 w3 s1", std::make_unique<L2Pool>(3, 1), {32, 16, 30, 30},
      2.0 * pool_out * 9);
  rows.back().bytes = 4.0 * (3 * pool_in + 3 * pool_out);  // x, y; dy, y, x, dx
  add("lcn 32x16x28x28 w5", std::make_unique<LocalContrastNorm>(5, 1.0f), {32, 16, 28, 28},
      6.0 * pool_out + 2.0 * 32 * 28 * 28 * 20);  // per value a few elementwise passes, per pixel two
                                                    // smoothings of 5 + 5 taps
  rows.back().bytes = 4.0 * 5 * pool_out;  // x, y; dy, x, dx
  add("embedding 16x128 vocab 8000 d256", std::make_unique<Embedding>("e", 8000, 256, 128, &rng),
      {16, 128}, 2.0 * 16 * 128 * 256, /*needs_dx=*/false, /*ids=*/true, 8000);

  const double peak = bench::SgemmPeakGflops();
  const double triad = TriadGbps(pool_in);
  std::printf("threads: %d   sgemm peak (oneDNN, 1536^3): %.1f GFLOP/s   triad (3 x %.1f MB): %.1f GB/s\n",
              threads, peak, pool_in * 4 / 1e6, triad);
  std::printf("%-42s %10s %10s %9s %8s %9s\n", "layer (forward + backward)", "ms", "GFLOP/s", "of peak", "GB/s",
              "of triad");
  const std::string only = argc > 2 ? argv[2] : "";
  for (const Row& r : rows) {
    if (r.name.find(only) == std::string::npos) continue;
    const double t = bench::TimePerCall(r.run, 0.2);
    const double gf = r.flops / t / 1e9;
    std::printf("%-42s %10.3f %10.1f %8.0f%%", r.name.c_str(), t * 1e3, gf, 100.0 * gf / peak);
    if (r.bytes > 0) std::printf(" %8.1f %8.0f%%", r.bytes / t / 1e9, 100.0 * r.bytes / t / 1e9 / triad);
    std::printf("\n");
  }
  return 0;
}
