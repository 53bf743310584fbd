#include "distbelief/train/cat_trainer.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "distbelief/base/logging.h"
#include "distbelief/io/checkpoint.h"
#include "distbelief/io/metrics.h"
#include "distbelief/optim/update_rules.h"

namespace distbelief {

double BestThresholdAccuracy(const std::vector<float>& scores, const std::vector<int>& labels) {
  const size_t n = scores.size();
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return scores[a] < scores[b]; });
  // Cut k calls order[0, k) negative and order[k, n) positive; only cuts between distinct scores
  // are thresholds. Either direction counts (a unit may fire less for faces).
  int64_t pos_above = std::count(labels.begin(), labels.end(), 1), neg_below = 0;
  double best = 0.0;
  for (size_t k = 0; k <= n; ++k) {
    if (k == 0 || k == n || scores[order[k - 1]] < scores[order[k]]) {
      const double correct = double(pos_above + neg_below);
      best = std::max({best, correct / n, (n - correct) / n});
    }
    if (k < n) {
      if (labels[order[k]] == 1) --pos_above; else ++neg_below;
    }
  }
  return best;
}

StatusOr<Tensor> FramesFromFolder(const std::string& dir, int64_t frame, int64_t* count) {
  DB_ASSIGN_OR_RETURN(ImageFolder folder, LoadImageFolder(dir));
  const int64_t n = static_cast<int64_t>(folder.images.size());
  Tensor frames({n, 1, frame, frame});
  CropOptions o;
  o.size = frame;
  o.min_scale = 1.0;  // the whole image's central square
  for (int64_t i = 0; i < n; ++i) {
    Random rng(i);  // min_scale 1 leaves only the position of the square to draw
    CropStream::Crop(folder.images[i], o, &rng, frames.data() + i * frame * frame);
  }
  *count = n;
  return frames;
}

StatusOr<FaceNeuronReport> EvaluateFaceNeurons(CatNet* net, const CatTrainOptions& o,
                                               std::vector<std::vector<double>>* per_unit) {
  FaceNeuronReport r;
  const int64_t s = o.net.frame;
  DB_ASSIGN_OR_RETURN(Tensor faces, FramesFromFolder(o.faces_dir, s, &r.faces));
  DB_ASSIGN_OR_RETURN(Tensor nonfaces, FramesFromFolder(o.nonfaces_dir, s, &r.nonfaces));
  const int64_t n = r.faces + r.nonfaces;
  Tensor all({n, 1, s, s});
  std::copy(faces.data(), faces.data() + faces.size(), all.data());
  std::copy(nonfaces.data(), nonfaces.data() + nonfaces.size(), all.data() + faces.size());
  std::vector<int> labels(n, 0);
  std::fill(labels.begin(), labels.begin() + r.faces, 1);
  r.chance = double(std::max(r.faces, r.nonfaces)) / n;
  std::vector<float> scores(n);
  for (int64_t p = 0; p < s * s; ++p) {
    for (int64_t i = 0; i < n; ++i) scores[i] = all[i * s * s + p];
    const double a = BestThresholdAccuracy(scores, labels);
    if (a > r.best_pixel.accuracy) r.best_pixel = {-1, p, a};
  }
  const std::vector<Tensor> features = net->Features(all);
  for (size_t st = 0; st < features.size(); ++st) {
    const Tensor& f = features[st];
    const int64_t units = f.size() / n;
    NeuronScore best{static_cast<int>(st), -1, 0.0};
    if (per_unit) per_unit->emplace_back();
    for (int64_t u = 0; u < units; ++u) {
      for (int64_t i = 0; i < n; ++i) scores[i] = f[i * units + u];
      const double a = BestThresholdAccuracy(scores, labels);
      if (per_unit) per_unit->back().push_back(a);
      if (a > best.accuracy) best = {static_cast<int>(st), u, a};
    }
    r.best_per_stage.push_back(best);
    if (best.accuracy > r.best.accuracy) r.best = best;
  }
  return r;
}

StatusOr<CatTrainResult> TrainCatNet(CatNet* net, const CatTrainOptions& o) {
  ImageFolderOptions fo;
  fo.min_side = o.net.frame;
  fo.max_side = o.max_side;
  DB_ASSIGN_OR_RETURN(ImageFolder photos, LoadImageFolder(o.train_dir, fo));
  CatTrainResult result;
  result.training_images = static_cast<int64_t>(photos.images.size());
  result.unreadable = photos.unreadable;
  CropOptions co;
  co.size = o.net.frame;
  co.batch = o.batch;
  co.seed = o.seed;
  CropStream stream(&photos, co);
  OptimizerOptions oo;
  oo.name = "adagrad";
  oo.learning_rate = o.learning_rate;
  Adagrad rule(oo);
  for (int s = 0; s < net->num_stages(); ++s) {
    std::vector<Param*> params = net->StageParams(s);
    std::vector<std::vector<float>> state;
    for (Param* p : params) state.emplace_back(p->value.size(), 0.0f);
    Progress progress(o.steps_per_stage, "steps");
    std::pair<double, double> window{0, 0};
    for (int64_t step = 0; step < o.steps_per_stage; ++step) {
      const Tensor x = stream.Next();
      for (Param* p : params) p->grad.Zero();
      const Tensor& in = net->StageInput(s, x);
      const auto loss = net->StageLossAndGradient(s, in);
      if (!std::isfinite(loss.first + loss.second))
        return absl::InternalError("cat stage " + std::to_string(s + 1) + " diverged at step " + std::to_string(step));
      for (size_t i = 0; i < params.size(); ++i) rule.Apply(params[i]->value.span(), params[i]->grad.span(), state[i], step + 1);
      net->ConstrainDecoder(s);
      window.first += loss.first;
      window.second += loss.second;
      const int64_t every = std::max<int64_t>(1, o.steps_per_stage / 10);
      if ((step + 1) % every == 0) {
        const std::pair<double, double> mean{window.first / every, window.second / every};
        if (step + 1 == every) result.first_loss.push_back(mean);
        if (step + 1 + every > o.steps_per_stage) result.last_loss.push_back(mean);
        window = {0, 0};
      }
      char status[96];
      std::snprintf(status, sizeof(status), "stage %d reconstruction %.2f sparsity %.2f", s + 1, loss.first, loss.second);
      progress.Update(step + 1, status);
    }
    progress.Finish();
  }
  DB_ASSIGN_OR_RETURN(result.report, EvaluateFaceNeurons(net, o));
  return result;
}

}  // namespace distbelief

namespace distbelief {

GreyImage FilterGrid(CatNet* net, int64_t location_step, int64_t zoom) {
  const Tensor& w = net->encoder(0).weight().value;  // (OH, OW, K, C, F, F), C = 1
  const int64_t oh = w.dim(0), ow = w.dim(1), k = w.dim(2), f = w.dim(4);
  // Tiles in reading order: location by location (row-major), the K maps of a location side by
  // side, wrapped into a near-square grid.
  std::vector<const float*> tiles;
  for (int64_t y = 0; y < oh; y += location_step)
    for (int64_t x = 0; x < ow; x += location_step)
      for (int64_t m = 0; m < k; ++m) tiles.push_back(w.data() + ((y * ow + x) * k + m) * f * f);
  const int64_t n = static_cast<int64_t>(tiles.size());
  int64_t cols = k;
  while (cols * cols < n) cols += k;  // whole locations per row
  const int64_t rows = (n + cols - 1) / cols, cell = f + 1;
  GreyImage g;
  g.w = (cols * cell + 1) * zoom;
  g.h = (rows * cell + 1) * zoom;
  g.pixels.assign(g.w * g.h, 0.5f);
  for (int64_t t = 0; t < n; ++t) {
    const float* p = tiles[t];
    float lo = p[0], hi = p[0];
    for (int64_t i = 0; i < f * f; ++i) lo = std::min(lo, p[i]), hi = std::max(hi, p[i]);
    const int64_t top = (t / cols) * cell + 1, left = (t % cols) * cell + 1;
    for (int64_t i = 0; i < f * f; ++i) {
      const float v = (p[i] - lo) / (hi - lo + 1e-12f);
      for (int64_t dy = 0; dy < zoom; ++dy)
        for (int64_t dx = 0; dx < zoom; ++dx)
          g.pixels[((top + i / f) * zoom + dy) * g.w + (left + i % f) * zoom + dx] = v;
    }
  }
  return g;
}

}  // namespace distbelief

namespace distbelief {

Status SaveCatNet(CatNet* net, const std::string& path, const std::string& config_text) {
  Checkpoint c;
  for (Param* p : net->AllParams()) c.tensors.emplace(p->name, p->value);
  c.metadata["config"] = config_text;
  c.metadata["format"] = "distbelief-cat-1";
  return WriteCheckpoint(path, c);
}

Status LoadCatNet(CatNet* net, const std::string& path) {
  DB_ASSIGN_OR_RETURN(Checkpoint c, ReadCheckpoint(path));
  const std::vector<Param*> params = net->AllParams();
  for (Param* p : params) {
    auto it = c.tensors.find(p->name);
    if (it == c.tensors.end()) return absl::InvalidArgumentError(path + ": no tensor " + p->name);
    if (it->second.shape() != p->value.shape())
      return absl::InvalidArgumentError(path + ": " + p->name + " has shape " + it->second.ShapeString() +
                                        ", the network wants " + p->value.ShapeString());
  }
  for (Param* p : params) p->value = c.tensors.at(p->name);
  return absl::OkStatus();
}

}  // namespace distbelief
