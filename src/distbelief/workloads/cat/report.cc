#include "distbelief/workloads/cat/report.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <sstream>
#include <cstdlib>

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

// The unit's mean response to the faces of `set`, each transformed by every value of one
// parameter of TransformFrame.
std::vector<double> ResponseCurve(CatNet* net, int stage, int64_t unit, const FaceSet& set,
                                  const std::vector<double>& values, int which) {
  const int64_t s = set.frames.dim(2);
  std::vector<int64_t> faces;
  for (size_t i = 0; i < set.labels.size(); ++i)
    if (set.labels[i]) faces.push_back(static_cast<int64_t>(i));
  const int64_t nf = static_cast<int64_t>(faces.size());
  std::vector<double> curve;
  Tensor batch({nf, 1, s, s});
  for (double v : values) {
    for (int64_t k = 0; k < nf; ++k)
      TransformFrame(set.frames.data() + faces[k] * s * s, s, which == 0 ? v : 1.0, which == 1 ? v : 0.0,
                     which == 2 ? v : 0.0, batch.data() + k * s * s);
    const Tensor f = net->Features(batch)[stage];  // a copy: the vector is a temporary
    const int64_t units = f.size() / nf;
    double sum = 0.0;
    for (int64_t k = 0; k < nf; ++k) sum += f[k * units + unit];
    curve.push_back(sum / nf);
  }
  return curve;
}

// invariance_{scale,rotation,shift}.png by gnuplot, with their data; "" or why not.
// `features`: the stage's pooled responses to `set` (N rows).
std::string WriteInvarianceCurves(CatNet* net, int stage, int64_t unit, const FaceSet& set, const Tensor& features,
                                  const std::string& dir) {
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) return "gnuplot is not installed";
  struct Curve {
    const char* name;
    const char* xlabel;
    std::vector<double> values;
  };
  std::vector<Curve> curves = {{"scale", "scale factor", {}}, {"rotation", "in-plane rotation (degrees)", {}},
                               {"shift", "horizontal shift (pixels)", {}}};
  for (int i = 0; i <= 12; ++i) curves[0].values.push_back(0.4 + 0.1 * i);
  for (int i = -9; i <= 9; ++i) curves[1].values.push_back(10.0 * i);
  const int64_t s = set.frames.dim(2);
  for (int i = -8; i <= 8; ++i) curves[2].values.push_back(double(i) * s / 32.0);
  // The non-faces' mean response, untransformed: the level a face detector should stay above.
  double nonface_mean = 0.0;
  const int64_t n = set.frames.dim(0), units = features.size() / n;
  for (int64_t i = 0; i < n; ++i)
    if (!set.labels[i]) nonface_mean += features[i * units + unit] / double(set.nonfaces);
  std::ostringstream gp;
  gp << "set terminal pngcairo size 480,360 font 'sans,10'\nset grid\nset key bottom right\n"
     << "set ylabel 'mean response to the test faces'\n";
  for (size_t c = 0; c < curves.size(); ++c) {
    const std::vector<double> r = ResponseCurve(net, stage, unit, set, curves[c].values, static_cast<int>(c));
    const std::string dat = dir + "/invariance_" + curves[c].name + ".dat";
    std::ofstream out(dat);
    for (size_t i = 0; i < r.size(); ++i) out << curves[c].values[i] << ' ' << r[i] << '\n';
    if (!out) return "cannot write " + dat;
    gp << "set output '" << dir << "/invariance_" << curves[c].name << ".png'\nset xlabel '" << curves[c].xlabel
       << "'\nset title 'stage " << stage + 1 << ", unit " << unit << "'\nplot '" << dat
       << "' using 1:2 with linespoints pt 7 title 'faces', " << nonface_mean
       << " with lines dt 2 title 'non-faces (untransformed)'\n";
  }
  const std::string script = dir + "/invariance.gp";
  {
    std::ofstream f(script);
    f << gp.str();
    if (!f) return "cannot write " + script;
  }
  if (std::system(("gnuplot '" + script + "' 2>/dev/null").c_str()) != 0) return "gnuplot failed on " + script;
  return "";
}

}  // namespace

void TransformFrame(const float* in, int64_t s, double scale, double degrees, double shift, float* out) {
  const double c = (s - 1) / 2.0, rad = degrees * M_PI / 180.0;
  const double cs = std::cos(rad) / scale, sn = std::sin(rad) / scale;
  for (int64_t y = 0; y < s; ++y) {
    for (int64_t x = 0; x < s; ++x) {
      // The source of output pixel (x, y): undo the shift, the rotation and the scale.
      const double dx = x - c - shift, dy = y - c;
      const double sx = c + cs * dx + sn * dy, sy = c - sn * dx + cs * dy;
      const int64_t x0 = static_cast<int64_t>(std::floor(sx)), y0 = static_cast<int64_t>(std::floor(sy));
      const double fx = sx - x0, fy = sy - y0;
      auto at = [&](int64_t xx, int64_t yy) { return xx < 0 || yy < 0 || xx >= s || yy >= s ? 0.0 : double(in[yy * s + xx]); };
      out[y * s + x] = static_cast<float>((1 - fy) * ((1 - fx) * at(x0, y0) + fx * at(x0 + 1, y0)) +
                                          fy * ((1 - fx) * at(x0, y0 + 1) + fx * at(x0 + 1, y0 + 1)));
    }
  }
  NormalizeContrast(out, s * s);
}

double Correlation(const float* a, const float* b, int64_t n) {
  double ma = 0.0, mb = 0.0;
  for (int64_t i = 0; i < n; ++i) ma += a[i], mb += b[i];
  ma /= double(n);
  mb /= double(n);
  double ab = 0.0, aa = 0.0, bb = 0.0;
  for (int64_t i = 0; i < n; ++i) ab += (a[i] - ma) * (b[i] - mb), aa += (a[i] - ma) * (a[i] - ma), bb += (b[i] - mb) * (b[i] - mb);
  return aa > 0 && bb > 0 ? ab / std::sqrt(aa * bb) : 0.0;
}

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
  const int top_stage = net->num_stages() - 1;
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

  // Does what excites it look like a face? The mean test face against the mean of its 16
  // strongest test images and against its optimal stimulus.
  const int64_t s = o.net.frame;
  std::vector<float> mean_face(s * s, 0.0f), mean_top(s * s, 0.0f);
  for (int64_t i = 0; i < n; ++i)
    if (r.test.labels[i])
      for (int64_t p = 0; p < s * s; ++p) mean_face[p] += all[i * s * s + p] / float(r.test.faces);
  for (int64_t i : order)
    for (int64_t p = 0; p < s * s; ++p) mean_top[p] += all[i * s * s + p] / float(order.size());
  const GreyImage stimulus = OptimalStimulus(net, best_stage, best.unit, s);
  const double corr_top = Correlation(mean_top.data(), mean_face.data(), s * s);
  const double corr_stimulus = Correlation(stimulus.pixels.data(), mean_face.data(), s * s);
  GreyImage mean_face_img{s, s, mean_face, ""}, mean_top_img{s, s, mean_top, ""};
  for (GreyImage* g : {&mean_face_img, &mean_top_img}) {
    const auto [lo, hi] = std::minmax_element(g->pixels.begin(), g->pixels.end());
    const float l = *lo, h = *hi;
    for (float& v : g->pixels) v = (v - l) / (h - l + 1e-12f);
    DB_RETURN_IF_ERROR(WritePng(dir + (g == &mean_face_img ? "/mean_test_face.png" : "/mean_top_images.png"),
                                Resize(*g, 4 * s, 4 * s)));
  }
  // The optimal stimuli of the top stage's 16 units most accurate on the selection half.
  const FaceHalves halves = SplitFaceSet(r.test.labels, r.table.seed);
  const Tensor& ft = feats[top_stage];
  const int64_t top_units = ft.size() / n;
  std::vector<std::pair<double, int64_t>> ranked;
  for (int64_t u = 0; u < top_units; ++u) {
    double a = 0.0;
    BestCut(ft.data() + u, top_units, r.test.labels, halves.selection, &a);
    ranked.push_back({-a, u});
  }
  std::sort(ranked.begin(), ranked.end());
  ranked.resize(std::min<size_t>(16, ranked.size()));
  Tensor stimuli({static_cast<int64_t>(ranked.size()), 1, s, s});
  std::vector<int64_t> every(ranked.size());
  for (size_t k = 0; k < ranked.size(); ++k) {
    const GreyImage g = OptimalStimulus(net, top_stage, ranked[k].second, s);
    std::copy(g.pixels.begin(), g.pixels.end(), stimuli.data() + k * s * s);
    every[k] = static_cast<int64_t>(k);
  }
  DB_RETURN_IF_ERROR(WritePng(dir + "/top_stage_stimuli.png", Resize(Tiles(stimuli, every, 8), 2 * 8 * (s + 2),
                                                                     2 * ((every.size() + 7) / 8) * (s + 2))));
  const std::string invariance = WriteInvarianceCurves(net, best_stage, best.unit, r.test, fb, dir);

  DB_RETURN_IF_ERROR(WritePng(dir + "/filters.png", FilterGrid(net, 3, 3)));
  DB_RETURN_IF_ERROR(WritePng(dir + "/histogram.png", Histogram(act_faces, act_nonfaces)));
  DB_RETURN_IF_ERROR(WritePng(dir + "/optimal_stimulus.png", Resize(stimulus, 4 * s, 4 * s)));
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
  std::snprintf(line, sizeof(line),
                "Do they look like a face? Correlation with the mean test face: the mean of those 16 images %.2f, the "
                "optimal stimulus %.2f (the target is above 0.5).\n\n",
                corr_top, corr_stimulus);
  md << line;
  md << "| mean test face | mean of its 16 strongest test images |\n|---|---|\n"
        "| ![mean face](mean_test_face.png) | ![mean top](mean_top_images.png) |\n\n";
  md << "Invariance (as the paper's fig. 4): its mean response to the test faces scaled, rotated in the plane "
        "and shifted; the dashed line is its mean response to the non-faces.\n\n";
  if (invariance.empty())
    md << "![scale](invariance_scale.png) ![rotation](invariance_rotation.png) ![shift](invariance_shift.png)\n\n";
  else
    md << "(not drawn: " << invariance << ")\n\n";
  md << "## The top stage\n\nThe optimal stimuli of the " << ranked.size()
     << " top-stage units most accurate on the selection half, best first (the top stage's filters act on the "
        "maps below it, so this is how they are seen as pictures):\n\n![top-stage stimuli](top_stage_stimuli.png)\n\n";
  md << "## Training\n\n| stage | reconstruction first -> last | sparsity first -> last |\n|---|---|---|\n";
  for (size_t s = 0; s < r.first_loss.size(); ++s) {
    std::snprintf(line, sizeof(line), "| %zu | %.1f -> %.1f | %.1f -> %.1f |\n", s + 1, r.first_loss[s].first,
                  r.last_loss[s].first, r.first_loss[s].second, r.last_loss[s].second);
    md << line;
  }
  return path;
}

}  // namespace distbelief
