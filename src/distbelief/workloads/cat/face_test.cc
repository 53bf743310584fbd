#include "distbelief/workloads/cat/face_test.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>

#include "distbelief/base/shuffle.h"
#include "distbelief/base/sum.h"
#include "distbelief/optim/lbfgs.h"
#include "distbelief/workloads/cat/cat.h"

namespace distbelief {

StatusOr<FaceSet> LoadFaceSet(const std::vector<std::string>& face_dirs, const std::vector<std::string>& nonface_dirs,
                              int64_t frame, int64_t min_per_class) {
  FaceSet set;
  std::vector<Tensor> parts;
  for (int label : {1, 0}) {
    const std::vector<std::string>& dirs = label ? face_dirs : nonface_dirs;
    if (dirs.empty()) return absl::InvalidArgumentError(std::string("no folder of ") + (label ? "faces" : "non-faces"));
    int64_t total = 0;
    std::string names;
    for (const std::string& dir : dirs) {
      int64_t n = 0;
      StatusOr<Tensor> frames = FramesFromFolder(dir, frame, &n);
      if (!frames.ok()) return absl::InvalidArgumentError(std::string(label ? "faces" : "non-faces") + " folder " +
                                                          dir + ": " + std::string(frames.status().message()));
      parts.push_back(std::move(*frames));
      set.labels.insert(set.labels.end(), static_cast<size_t>(n), label);
      set.sources.push_back(dir + ": " + std::to_string(n));
      total += n;
      names += (names.empty() ? "" : ", ") + dir;
    }
    if (total < min_per_class)
      return absl::InvalidArgumentError(std::string("the ") + (label ? "faces" : "non-faces") + " of " + names +
                                        " are " + std::to_string(total) + " usable images; the test needs at least " +
                                        std::to_string(min_per_class) + " of each class");
    (label ? set.faces : set.nonfaces) = total;
  }
  const int64_t n = set.faces + set.nonfaces;
  set.frames = Tensor({n, 1, frame, frame});
  int64_t at = 0;
  for (const Tensor& t : parts) {
    std::copy(t.data(), t.data() + t.size(), set.frames.data() + at);
    at += t.size();
  }
  return set;
}

FaceHalves SplitFaceSet(const std::vector<int>& labels, uint64_t seed) {
  FaceHalves h;
  for (int label : {1, 0}) {
    std::vector<int64_t> idx;
    for (size_t i = 0; i < labels.size(); ++i)
      if (labels[i] == label) idx.push_back(static_cast<int64_t>(i));
    const std::vector<int64_t> order = ShuffledRange(static_cast<int64_t>(idx.size()), seed * 2 + label);
    const size_t half = (idx.size() + 1) / 2;
    for (size_t k = 0; k < idx.size(); ++k) (k < half ? h.selection : h.report).push_back(idx[order[k]]);
  }
  std::sort(h.selection.begin(), h.selection.end());
  std::sort(h.report.begin(), h.report.end());
  return h;
}

ScoreCut BestCut(const float* scores, int64_t stride, const std::vector<int>& labels, const std::vector<int64_t>& idx,
                 double* accuracy) {
  const size_t n = idx.size();
  std::vector<std::pair<float, int>> v(n);
  int64_t faces = 0;
  for (size_t k = 0; k < n; ++k) {
    v[k] = {scores[idx[k] * stride], labels[idx[k]]};
    faces += v[k].second;
  }
  std::sort(v.begin(), v.end());
  // A cut after position k calls v[0, k) one class and v[k, n) the other; only cuts between
  // distinct scores are thresholds.
  int64_t faces_above = faces, nonfaces_below = 0;
  double best = -1.0;
  ScoreCut cut;
  for (size_t k = 0; k <= n; ++k) {
    if (k == 0 || k == n || v[k - 1].first < v[k].first) {
      const double correct = double(faces_above + nonfaces_below);
      const double t = k == 0 ? double(v[0].first) - 1.0
                              : (k == n ? double(v[n - 1].first) + 1.0 : 0.5 * (double(v[k - 1].first) + v[k].first));
      if (correct / n > best) best = correct / n, cut = {t, true};
      if ((n - correct) / n > best) best = (n - correct) / n, cut = {t, false};
    }
    if (k < n) {
      if (v[k].second == 1) --faces_above;
      else ++nonfaces_below;
    }
  }
  *accuracy = n ? best : 0.0;
  return cut;
}

double CutAccuracy(const float* scores, int64_t stride, const std::vector<int>& labels, const std::vector<int64_t>& idx,
                   const ScoreCut& cut) {
  int64_t correct = 0;
  for (int64_t i : idx) {
    const bool above = scores[i * stride] > cut.threshold;
    correct += (above == cut.faces_above) == (labels[i] == 1);
  }
  return idx.empty() ? 0.0 : double(correct) / idx.size();
}

double RocAuc(const float* scores, int64_t stride, const std::vector<int>& labels, const std::vector<int64_t>& idx,
              bool faces_above) {
  // Mann-Whitney: ranks with ties averaged.
  std::vector<std::pair<float, int>> v;
  for (int64_t i : idx) v.push_back({scores[i * stride], labels[i]});
  std::sort(v.begin(), v.end());
  double rank_sum = 0.0;
  int64_t faces = 0;
  for (size_t k = 0; k < v.size();) {
    size_t e = k;
    while (e < v.size() && v[e].first == v[k].first) ++e;
    const double rank = 0.5 * double(k + 1 + e);  // mean of ranks k+1 .. e
    for (size_t j = k; j < e; ++j)
      if (v[j].second == 1) rank_sum += rank, ++faces;
    k = e;
  }
  const int64_t nonfaces = static_cast<int64_t>(v.size()) - faces;
  if (faces == 0 || nonfaces == 0) return 0.5;
  const double auc = (rank_sum - double(faces) * (faces + 1) / 2.0) / (double(faces) * nonfaces);
  return faces_above ? auc : 1.0 - auc;
}

FaceRow BestUnitRow(const std::string& name, const float* features, int64_t units, const std::vector<int>& labels,
                    const FaceHalves& h) {
  FaceRow row;
  row.name = name;
  ScoreCut best_cut;
  for (int64_t u = 0; u < units; ++u) {
    double a = 0.0;
    const ScoreCut cut = BestCut(features + u, units, labels, h.selection, &a);
    if (a > row.selection_accuracy) row.selection_accuracy = a, row.unit = u, best_cut = cut;
  }
  if (row.unit < 0) return row;
  row.accuracy = CutAccuracy(features + row.unit, units, labels, h.report, best_cut);
  row.auc = RocAuc(features + row.unit, units, labels, h.report, best_cut.faces_above);
  return row;
}

namespace {

// w . x over d values, vectorized (the fits below take thousands of these per image).
double Dot(const double* w, const float* x, int64_t d) {
  return PartialSum8(0, d, [&](int64_t j) { return w[j] * x[j]; });
}

// Mean logistic loss of weights w (d pixels, then a bias) on rows `idx`, plus l2/2 |w|^2
// (not the bias); its gradient into *grad.
double LogisticLoss(const FaceSet& set, const std::vector<int64_t>& idx, double l2, const std::vector<double>& w,
                    std::vector<double>* grad) {
  const int64_t d = static_cast<int64_t>(w.size()) - 1;
  grad->assign(w.size(), 0.0);
  double loss = 0.0;
  for (int64_t i : idx) {
    const float* x = set.frames.data() + i * d;
    const double z = w[d] + Dot(w.data(), x, d);
    const double y = set.labels[i];
    // log(1 + e^z) - y z, stably; its derivative sigmoid(z) - y.
    loss += (z > 0 ? z + std::log1p(std::exp(-z)) : std::log1p(std::exp(z))) - y * z;
    const double g = 1.0 / (1.0 + std::exp(-z)) - y;
    for (int64_t j = 0; j < d; ++j) (*grad)[j] += g * x[j];
    (*grad)[d] += g;
  }
  const double inv = 1.0 / std::max<size_t>(idx.size(), 1);
  loss *= inv;
  for (int64_t j = 0; j <= d; ++j) (*grad)[j] *= inv;
  for (int64_t j = 0; j < d; ++j) loss += 0.5 * l2 * w[j] * w[j], (*grad)[j] += l2 * w[j];
  return loss;
}

std::vector<double> FitLogistic(const FaceSet& set, const std::vector<int64_t>& idx, double l2) {
  const int64_t d = set.frames.size() / std::max<int64_t>(set.frames.dim(0), 1);
  InMemoryLbfgsSpace space(std::vector<double>(static_cast<size_t>(d + 1), 0.0),
                           [&](const std::vector<double>& w, std::vector<double>* g) { return LogisticLoss(set, idx, l2, w, g); });
  LbfgsOptions o;
  o.max_iterations = 150;
  o.gradient_tolerance = 1e-6;
  (void)LbfgsMinimize(&space, o);  // an in-memory space does not fail
  return space.vec(LbfgsSpace::kX);
}

// Logits of rows `idx`, in a column of N (rows not in idx are left 0).
std::vector<float> Logits(const FaceSet& set, const std::vector<double>& w, const std::vector<int64_t>& idx) {
  const int64_t d = static_cast<int64_t>(w.size()) - 1;
  std::vector<float> z(set.labels.size(), 0.0f);
  for (int64_t i : idx) {
    const float* x = set.frames.data() + i * d;
    z[i] = static_cast<float>(w[d] + Dot(w.data(), x, d));
  }
  return z;
}

}  // namespace

FaceRow LinearFilterRow(const FaceSet& set, const FaceHalves& h) {
  // The regularization chosen by 5-fold cross-validation within the selection half.
  const std::vector<double> strengths = {1e-4, 1e-3, 1e-2, 1e-1, 1.0};
  const int folds = 5;
  double best_l2 = strengths[0], best_acc = -1.0;
  for (double l2 : strengths) {
    int64_t correct = 0;
    for (int f = 0; f < folds; ++f) {
      std::vector<int64_t> fit, held;
      for (size_t k = 0; k < h.selection.size(); ++k) (int(k % folds) == f ? held : fit).push_back(h.selection[k]);
      const std::vector<float> z = Logits(set, FitLogistic(set, fit, l2), held);
      for (int64_t i : held) correct += (z[i] > 0) == (set.labels[i] == 1);
    }
    const double acc = double(correct) / std::max<size_t>(h.selection.size(), 1);
    if (acc > best_acc) best_acc = acc, best_l2 = l2;
  }
  const std::vector<double> w = FitLogistic(set, h.selection, best_l2);
  std::vector<int64_t> all = h.selection;
  all.insert(all.end(), h.report.begin(), h.report.end());
  const std::vector<float> z = Logits(set, w, all);
  FaceRow row;
  char name[96];
  std::snprintf(name, sizeof(name), "best linear filter (logistic regression on pixels, L2 %g)", best_l2);
  row.name = name;
  row.selection_accuracy = best_acc;  // cross-validated, so not optimistic
  row.accuracy = CutAccuracy(z.data(), 1, set.labels, h.report, {0.0, true});
  row.auc = RocAuc(z.data(), 1, set.labels, h.report, true);
  return row;
}

StatusOr<CatNet::Readout> ParseReadout(const std::string& name) {
  if (name == "code") return CatNet::Readout::kCode;
  if (name == "pooled") return CatNet::Readout::kPooled;
  if (name == "normalized") return CatNet::Readout::kNormalized;
  return absl::InvalidArgumentError("readout \"" + name + "\": expected code, pooled or normalized");
}

FaceTable FaceNeuronTable(CatNet* trained, CatNet* random_weights, const FaceSet& set, uint64_t seed,
                          CatNet::Readout readout) {
  FaceTable t;
  t.faces = set.faces;
  t.nonfaces = set.nonfaces;
  const FaceHalves h = SplitFaceSet(set.labels, seed);
  t.seed = seed;
  t.selection = static_cast<int64_t>(h.selection.size());
  t.report = static_cast<int64_t>(h.report.size());
  const int64_t n = set.frames.dim(0);

  FaceRow chance;
  chance.name = "chance (always the larger class)";
  int64_t faces_report = 0;
  for (int64_t i : h.report) faces_report += set.labels[i];
  chance.accuracy = double(std::max(faces_report, t.report - faces_report)) / std::max<int64_t>(t.report, 1);
  chance.selection_accuracy = double(std::max(set.faces, set.nonfaces)) / std::max<int64_t>(n, 1);
  t.rows.push_back(chance);

  t.rows.push_back(BestUnitRow("best single pixel", set.frames.data(), set.frames.size() / n, set.labels, h));
  t.rows.push_back(LinearFilterRow(set, h));

  const std::vector<Tensor> random_features = random_weights->Features(set.frames, readout);
  FaceRow random;
  for (size_t s = 0; s < random_features.size(); ++s) {
    FaceRow r = BestUnitRow("", random_features[s].data(), random_features[s].size() / n, set.labels, h);
    r.stage = static_cast<int>(s);
    if (r.selection_accuracy > random.selection_accuracy) random = r;
  }
  random.name = "same network, random weights (best neuron, any stage)";
  t.rows.push_back(random);

  const std::vector<Tensor> features = trained->Features(set.frames, readout);
  const int top = static_cast<int>(features.size()) - 1;
  for (int s = 0; s <= top; ++s) {
    char name[64];
    std::snprintf(name, sizeof(name), "best stage-%d neuron%s", s + 1,
                  s == top ? " (top stage)" : (s == 0 ? " (first stage)" : ""));
    FaceRow r = BestUnitRow(name, features[s].data(), features[s].size() / n, set.labels, h);
    r.stage = s;
    t.rows.push_back(r);
    if (s == top) t.top = r;
  }
  double acc = 0.0, auc = 0.0;
  for (size_t k = 1; k <= 3; ++k) acc = std::max(acc, t.rows[k].accuracy), auc = std::max(auc, t.rows[k].auc);
  t.top_margin_accuracy = t.top.accuracy - acc;
  t.top_margin_auc = t.top.auc - auc;
  return t;
}

std::string FaceTable::Markdown() const {
  std::string out;
  char line[256];
  std::snprintf(line, sizeof(line),
                "%ld faces and %ld non-faces, each contrast-normalized; every row chooses its unit and threshold on "
                "a selection half (%ld images) and is scored on the other half (%ld images), which it never saw.\n\n",
                long(faces), long(nonfaces), long(selection), long(report));
  out += line;
  out += "| | unit | selection accuracy | held-out accuracy | held-out ROC AUC |\n|---|---|---|---|---|\n";
  for (const FaceRow& r : rows) {
    char unit[48] = "";
    if (r.unit >= 0 && r.stage >= 0) std::snprintf(unit, sizeof(unit), "stage %d, %ld", r.stage + 1, long(r.unit));
    else if (r.unit >= 0) std::snprintf(unit, sizeof(unit), "%ld", long(r.unit));
    std::snprintf(line, sizeof(line), "| %s | %s | %.1f%% | %.1f%% | %.3f |\n", r.name.c_str(), unit,
                  100 * r.selection_accuracy, 100 * r.accuracy, r.auc);
    out += line;
  }
  return out;
}

}  // namespace distbelief
