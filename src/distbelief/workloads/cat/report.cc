#include "distbelief/workloads/cat/report.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <numeric>

namespace distbelief {
namespace {

// Bars of the two histograms over shared bins: faces dark, drawn up from the middle line;
// non-faces light, drawn down from it.
GreyImage Histogram(const std::vector<float>& faces, const std::vector<float>& nonfaces) {
  const int bins = 40, bar = 6, half = 80;
  float lo = faces[0], hi = faces[0];
  for (const auto* v : {&faces, &nonfaces})
    for (float x : *v) lo = std::min(lo, x), hi = std::max(hi, x);
  std::vector<int> hf(bins, 0), hn(bins, 0);
  auto bin = [&](float x) { return std::min(bins - 1, static_cast<int>((x - lo) / (hi - lo + 1e-12f) * bins)); };
  for (float x : faces) hf[bin(x)]++;
  for (float x : nonfaces) hn[bin(x)]++;
  const int top = std::max(*std::max_element(hf.begin(), hf.end()), *std::max_element(hn.begin(), hn.end()));
  GreyImage g;
  g.w = bins * bar;
  g.h = 2 * half + 1;
  g.pixels.assign(g.w * g.h, 1.0f);
  for (int b = 0; b < bins; ++b) {
    const int uf = hf[b] * half / std::max(top, 1), un = hn[b] * half / std::max(top, 1);
    for (int x = b * bar; x < b * bar + bar - 1; ++x) {
      for (int y = 0; y < uf; ++y) g.pixels[(half - 1 - y) * g.w + x] = 0.0f;
      for (int y = 0; y < un; ++y) g.pixels[(half + 1 + y) * g.w + x] = 0.6f;
    }
  }
  for (int x = 0; x < g.w; ++x) g.pixels[half * g.w + x] = 0.3f;
  return g;
}

// Tiles frames (N, 1, S, S) listed by index into one picture, `per_row` across.
GreyImage Tiles(const Tensor& frames, const std::vector<int64_t>& which, int per_row) {
  const int64_t s = frames.dim(2);
  const int64_t rows = (static_cast<int64_t>(which.size()) + per_row - 1) / per_row;
  GreyImage g;
  g.w = per_row * (s + 2);
  g.h = rows * (s + 2);
  g.pixels.assign(g.w * g.h, 1.0f);
  for (size_t t = 0; t < which.size(); ++t) {
    const float* p = frames.data() + which[t] * s * s;
    float lo = p[0], hi = p[0];
    for (int64_t i = 0; i < s * s; ++i) lo = std::min(lo, p[i]), hi = std::max(hi, p[i]);
    const int64_t r = t / per_row, c = t % per_row;
    for (int64_t i = 0; i < s * s; ++i)
      g.pixels[(r * (s + 2) + 1 + i / s) * g.w + c * (s + 2) + 1 + i % s] = (p[i] - lo) / (hi - lo + 1e-12f);
  }
  return g;
}

}  // namespace

GreyImage OptimalStimulus(CatNet* net, int s, int64_t unit, int64_t frame, int steps) {
  Tensor x({1, 1, frame, frame});
  Random rng(17);
  for (float& v : x.span()) v = static_cast<float>(rng.Normal());
  const double norm = std::sqrt(double(frame * frame));
  auto project = [&] {
    double sq = 0.0;
    for (float v : x.span()) sq += double(v) * v;
    const float k = static_cast<float>(norm / std::sqrt(sq + 1e-20));
    for (float& v : x.span()) v *= k;
  };
  project();
  for (int i = 0; i < steps; ++i) {
    const Tensor g = net->InputGradient(s, unit, x);
    double gn = 0.0;
    for (float v : g.span()) gn += double(v) * v;
    const float step = static_cast<float>(0.1 * norm / std::sqrt(gn + 1e-20));
    for (int64_t j = 0; j < x.size(); ++j) x[j] += step * g[j];
    project();
  }
  GreyImage out;
  out.w = out.h = frame;
  out.pixels.assign(x.data(), x.data() + x.size());
  float lo = *std::min_element(out.pixels.begin(), out.pixels.end());
  float hi = *std::max_element(out.pixels.begin(), out.pixels.end());
  for (float& v : out.pixels) v = (v - lo) / (hi - lo + 1e-12f);
  return out;
}

StatusOr<std::string> WriteCatReport(CatNet* net, const CatOptions& o, const CatTrainResult& r,
                                     const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  // The top-stage neuron the face test chose on its selection half; its activations on all test images.
  const FaceRow& best = r.table.top;
  const int best_stage = best.stage;
  const Tensor& all = r.test.frames;
  const int64_t n = all.dim(0);
  const std::vector<Tensor> feats = net->Features(all);
  const Tensor& fb = feats[best_stage];
  const int64_t units = fb.size() / n;
  std::vector<float> act_faces, act_nonfaces;
  std::vector<int64_t> order(n);
  for (int64_t i = 0; i < n; ++i) (r.test.labels[i] ? act_faces : act_nonfaces).push_back(fb[i * units + best.unit]);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return fb[a * units + best.unit] > fb[b * units + best.unit]; });
  order.resize(std::min<int64_t>(16, n));
  int64_t faces_in_top = 0;
  for (int64_t i : order) faces_in_top += r.test.labels[i];

  DB_RETURN_IF_ERROR(WritePng(dir + "/filters.png", FilterGrid(net, 3, 3)));
  DB_RETURN_IF_ERROR(WritePng(dir + "/histogram.png", Histogram(act_faces, act_nonfaces)));
  DB_RETURN_IF_ERROR(WritePng(dir + "/optimal_stimulus.png", Resize(OptimalStimulus(net, best_stage, best.unit, o.net.frame), 4 * o.net.frame, 4 * o.net.frame)));
  DB_RETURN_IF_ERROR(WritePng(dir + "/top_images.png", Tiles(all, order, 8)));

  const std::string path = dir + "/report.md";
  std::ofstream md(path);
  if (!md) return absl::UnavailableError("cannot write " + path);
  char line[256];
  md << "# The cat network: a face neuron learned without labels\n\n";
  md << "Le et al. 2012 trained on 10 million 200x200 video frames and tested on 13,026 faces and 23,974 "
        "non-faces. This run is far smaller, and says so: random " << o.net.frame << "x" << o.net.frame
     << " grey crops of " << r.training_images << " photos and video frames from Debian and npm packages ("
     << o.steps_per_stage * o.batch << " crops per stage, " << net->num_stages()
     << " stages).\n\n## The face test\n\n";
  md << r.table.Markdown() << "\nSources:";
  for (size_t i = 0; i < r.test.sources.size(); ++i) md << (i ? ", " : " ") << r.test.sources[i];
  std::snprintf(line, sizeof(line),
                ".\n\nThe top-stage neuron (unit %ld of stage %d) is %+.1f points in held-out accuracy and %+.3f in AUC "
                "from the best of the single pixel, the linear filter and the random network: %s.\n\n",
                long(best.unit), best_stage + 1, 100 * r.table.top_margin_accuracy, r.table.top_margin_auc,
                r.table.top_margin_accuracy > 0 && r.table.top_margin_auc > 0 ? "it beats them"
                                                                             : "it does **not** beat them");
  md << line;
  md << "## First-stage filters\n\nEvery third location, row by row; the maps of one location side by side; each filter "
        "scaled to black-white.\n\n"
        "![filters](filters.png)\n\n";
  md << "## The top-stage neuron\n\nActivations on faces (dark, upward) and non-faces (light, downward):\n\n"
        "![histogram](histogram.png)\n\n";
  md << "Its optimal stimulus (gradient ascent on an input of fixed norm):\n\n![stimulus](optimal_stimulus.png)\n\n";
  md << "The 16 test images that excite it most (" << faces_in_top << " of them faces):\n\n![top](top_images.png)\n\n";
  md << "## Training\n\n| stage | reconstruction first -> last | sparsity first -> last |\n|---|---|---|\n";
  for (size_t s = 0; s < r.first_loss.size(); ++s) {
    std::snprintf(line, sizeof(line), "| %zu | %.1f -> %.1f | %.1f -> %.1f |\n", s + 1, r.first_loss[s].first,
                  r.last_loss[s].first, r.first_loss[s].second, r.last_loss[s].second);
    md << line;
  }
  return path;
}

}  // namespace distbelief
