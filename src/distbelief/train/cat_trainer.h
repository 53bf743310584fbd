// Training and evaluating the cat network (Le et al. 2012) in one process: stage by stage on
// random crops of the training photos, each stage's encoder and decoder updated with Adagrad;
// then the face-neuron test: for every pooled unit of every stage, the best single-threshold
// accuracy at telling a folder of faces from a folder of non-faces (the paper's table 1).
#pragma once

#include <string>
#include <vector>

#include "distbelief/base/status.h"
#include "distbelief/data/images.h"
#include "distbelief/models/cat_net.h"

namespace distbelief {

struct CatTrainOptions {
  CatNetOptions net;
  std::string train_dir = "data/cat/train";
  std::string faces_dir = "data/cat/faces";
  std::string nonfaces_dir = "data/cat/nonfaces";
  int64_t steps_per_stage = 300;
  int64_t batch = 32;
  float learning_rate = 0.05f;  // Adagrad
  int64_t max_side = 256;       // photos are scaled down to this short side when loaded
  int64_t partitions = 1;       // model partitions per replica (split by maps; Downpour only)
  uint64_t seed = 1;
};

struct NeuronScore {
  int stage = -1;          // -1: a baseline
  int64_t unit = -1;       // index within the stage's pooled output
  double accuracy = 0.0;   // best single-threshold accuracy
};

struct FaceNeuronReport {
  int64_t faces = 0, nonfaces = 0;
  double chance = 0.0;                 // accuracy of always answering the larger class
  NeuronScore best_pixel;              // best single pixel of the normalized input
  std::vector<NeuronScore> best_per_stage;
  NeuronScore best;                    // over every stage
};

struct CatTrainResult {
  std::vector<std::pair<double, double>> first_loss, last_loss;  // per stage: {reconstruction, sparsity}
  FaceNeuronReport report;
  int64_t training_images = 0, unreadable = 0;
};

// Best accuracy of a single threshold on `scores` separating positives (label 1) from negatives,
// either direction.
double BestThresholdAccuracy(const std::vector<float>& scores, const std::vector<int>& labels);

// Frames (N, 1, S, S) from every image of a folder: resized whole, normalized like the crops.
StatusOr<Tensor> FramesFromFolder(const std::string& dir, int64_t frame, int64_t* count);

// Scores every pooled unit of `net` on the faces and non-faces folders. With `per_unit`, also
// fills every unit's accuracy, per stage.
StatusOr<FaceNeuronReport> EvaluateFaceNeurons(CatNet* net, const CatTrainOptions& o,
                                               std::vector<std::vector<double>>* per_unit = nullptr);

// Saves every stage's parameters as a safetensors checkpoint, with the config text.
Status SaveCatNet(CatNet* net, const std::string& path, const std::string& config_text);
// Loads them back. kInvalidArgument naming the tensor if the checkpoint does not fit the network
// (nothing is changed then); kDataLoss for a corrupt file.
Status LoadCatNet(CatNet* net, const std::string& path);

StatusOr<CatTrainResult> TrainCatNet(CatNet* net, const CatTrainOptions& o);

// The first stage's encoding filters as one picture: every `location_step`-th location along each
// axis, all maps (a location's K maps side by side), in a near-square grid; each filter scaled to
// [0, 1], one pixel of gap between tiles, every pixel drawn `zoom` x `zoom`.
GreyImage FilterGrid(CatNet* net, int64_t location_step, int64_t zoom = 1);

}  // namespace distbelief
