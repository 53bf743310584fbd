// The face-neuron test of Le et al. 2012 (their table 1), made honest. Picking the best of
// thousands of units (or pixels) and its threshold on the same few hundred images that score it
// flatters every row, so here each row chooses its unit and threshold on a *selection* half of
// the test images and is scored on the other, *report* half, which it never saw: accuracy at the
// chosen threshold and ROC AUC in the chosen direction. Every test image is contrast-normalized
// (zero mean, unit variance) so brightness alone separates nothing.
//
// Rows, all from one split: chance; the best single pixel; the best linear filter (L2-regularized
// logistic regression on the pixels, its strength chosen by 5-fold cross-validation on the
// selection half); the same architecture with random weights (its best neuron); the trained
// network's best neuron of every stage.
//
// Threads: none of its own (the networks' Features use the process's pool). Shapes: frames are
// (N, 1, S, S); feature matrices are N rows of `units` floats.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "distbelief/base/status.h"
#include "distbelief/models/cat_net.h"
#include "distbelief/tensor/tensor.h"

namespace distbelief {

// Test images with labels (1: face, 0: non-face), faces first.
struct FaceSet {
  Tensor frames;                    // (N, 1, S, S), each image zero mean and unit variance
  std::vector<int> labels;
  int64_t faces = 0, nonfaces = 0;
  std::vector<std::string> sources;  // "folder: count" per folder read, faces first
};

// Each image of every folder, whole (its central square), resized to S x S and normalized. A
// class needs at least `min_per_class` readable images in all (each half then holds half):
// kInvalidArgument naming the folders otherwise; a folder without a usable image is an error
// naming it (unreadable files are skipped and counted, as LoadImageFolder does).
StatusOr<FaceSet> LoadFaceSet(const std::vector<std::string>& face_dirs, const std::vector<std::string>& nonface_dirs,
                              int64_t frame, int64_t min_per_class = 10);

// A stratified split of the image indices: within each class, a seeded shuffle, the first half
// (rounded up) to selection.
struct FaceHalves {
  std::vector<int64_t> selection, report;
};
FaceHalves SplitFaceSet(const std::vector<int>& labels, uint64_t seed);

// A decision on one score: face if score > threshold (faces_above) or score < threshold.
struct ScoreCut {
  double threshold = 0.0;
  bool faces_above = true;
};
// The cut with the best accuracy on the images `idx` (midway between neighbouring scores; either
// direction); its accuracy in *accuracy.
ScoreCut BestCut(const float* scores, int64_t stride, const std::vector<int>& labels, const std::vector<int64_t>& idx,
                 double* accuracy);
double CutAccuracy(const float* scores, int64_t stride, const std::vector<int>& labels, const std::vector<int64_t>& idx,
                   const ScoreCut& cut);
// The probability that a face of `idx` scores above a non-face of `idx` (ties count half), in the
// cut's direction: below 0.5 when the direction chosen elsewhere is wrong here.
double RocAuc(const float* scores, int64_t stride, const std::vector<int>& labels, const std::vector<int64_t>& idx,
              bool faces_above);

struct FaceRow {
  std::string name;
  int stage = -1;      // of the network the unit belongs to; -1 for the baselines
  int64_t unit = -1;   // pixel or pooled unit; -1 for chance and the linear filter
  double selection_accuracy = 0.0;  // where it was chosen (optimistic)
  double accuracy = 0.0;            // held out: the report half
  double auc = 0.5;                 // held out
};

// Among the `units` columns of `features` (N rows), the one whose best cut is most accurate on
// the selection half; that cut's accuracy and AUC on the report half.
FaceRow BestUnitRow(const std::string& name, const float* features, int64_t units, const std::vector<int>& labels,
                    const FaceHalves& h);

// Logistic regression on the pixels (L-BFGS), trained on the selection half; scored on the report
// half at probability 0.5.
FaceRow LinearFilterRow(const FaceSet& set, const FaceHalves& h);

struct FaceTable {
  int64_t faces = 0, nonfaces = 0, selection = 0, report = 0;
  uint64_t seed = 0;          // of the split (SplitFaceSet)
  std::vector<FaceRow> rows;  // chance, pixel, linear filter, random network, stage 1 .. top
  FaceRow top;                // the trained network's top-stage row
  // Held-out points the top-stage neuron is ahead of the best of pixel, linear filter and random
  // network (negative: behind), in accuracy and in AUC.
  double top_margin_accuracy = 0.0, top_margin_auc = 0.0;
  std::string Markdown() const;  // the table, one row per line
};

// The whole table for a trained network and an untrained one of the same architecture; both
// networks' neurons are read as `readout` says (the pooled responses by default).
FaceTable FaceNeuronTable(CatNet* trained, CatNet* random_weights, const FaceSet& set, uint64_t seed,
                          CatNet::Readout readout = CatNet::Readout::kPooled);
// "code", "pooled" or "normalized"; kInvalidArgument naming the value otherwise.
StatusOr<CatNet::Readout> ParseReadout(const std::string& name);

}  // namespace distbelief
