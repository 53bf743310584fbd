// The cat network of Le et al. 2012 ("Building high-level features using large scale
// unsupervised learning"): a stack of stages, each
//     local filtering (untied receptive fields)  ->  L2 pooling (fixed, overlapping)  ->  LCN
// trained greedily, stage by stage, with the reconstruction-TICA objective of the paper's eq. 1:
//     (1/B) sum_b ||W2 W1 x_b - x_b||^2  +  lambda (1/B) sum_b sum_j sqrt(eps + H_j(W1 x_b)^2)
// W1 is the encoder (LocallyConnected2d), W2 the decoder (its transpose with its own weights),
// H the L2 pooling. Legend: B = batch, C/K = maps in/out, S = frame size.
#pragma once

#include <memory>
#include <vector>

#include "distbelief/base/status.h"
#include "distbelief/nn/loss.h"
#include "distbelief/nn/spatial.h"
#include "distbelief/optim/projection.h"

namespace distbelief {

struct CatStageOptions {
  int64_t maps = 8;         // K, feature maps of the stage
  int64_t field = 8;        // F, receptive field side
  int64_t stride = 2;       // between receptive fields
  int64_t pool = 3;         // L2 pooling window (overlapping, stride 1)
  int64_t lcn_window = 5;   // local contrast normalization window
};

struct CatNetOptions {
  int64_t frame = 32;                       // input frames are frame x frame, grey
  std::vector<CatStageOptions> stages = {{}, {}, {}};
  float lambda = 0.1f;                      // sparsity weight, as in the paper
  float eps = 1e-2f;
  // Encoder weights start at this fraction of the usual uniform(+-1/sqrt(fan in)). Untied filters
  // each see only their own location, so a full-size random start stays visible in them as noise;
  // a small start lets what they learn dominate (0.05: edges and blobs where 1.0 leaves noise).
  float init_scale = 1.0f;
  // > 0: the frames pass through an LCN of this window before stage 1 (a local whitening: each
  // pixel minus its neighbourhood's mean, over its neighbourhood's spread), in training and in
  // every test alike. 0: stage 1 sees the frames as they are.
  int64_t input_lcn = 0;
};

// Eq. 1 of one stage after its forward pass (enc: in -> h, dec: h -> rec, pool: h -> pooled; each
// layer still holds its input): reconstruction |rec - in|^2 summed over pixels and averaged over
// the batch, plus lambda sum_j sqrt(eps + pooled_j^2). Backpropagates both terms into enc's and
// dec's parameter gradients and returns {reconstruction, sparsity}. `rec` may be a sum of
// partial reconstructions (model partitions); dec then receives the gradient of the whole.
// `ws` holds the backward pass's batch-sized tensors from step to step (owned by the caller, one
// per stage and thread): allocating them every step let the allocator return them to the
// system and page-fault them back in, a third of the step's time at these sizes.
struct StageWorkspace {
  Tensor drec, dh, dp, dh_pool;
};
std::pair<double, double> StageObjectiveBackward(float lambda, float eps, const Tensor& in, const Tensor& rec,
                                                 const Tensor& pooled, LocallyConnected2d* enc,
                                                 LocallyConnectedTranspose2d* dec, L2Pool* pool,
                                                 StageWorkspace* ws);

class CatNet {
 public:
  // kInvalidArgument if a stage's geometry does not fit its input.
  static StatusOr<std::unique_ptr<CatNet>> Create(const CatNetOptions& o, uint64_t seed);

  int num_stages() const { return static_cast<int>(stages_.size()); }
  // Input of stage s for frames x (B, 1, S, S): x itself (or its input LCN) for s = 0, else the
  // LCN output of stage s - 1. Runs the lower stages' encoders only.
  const Tensor& StageInput(int s, const Tensor& x);
  // Eq. 1 for stage s on its input (from StageInput); adds the gradients of W1, W2 of stage s.
  // Returns {reconstruction, sparsity} terms.
  std::pair<double, double> StageLossAndGradient(int s, const Tensor& in);
  // Which of a stage's outputs count as its neurons: the code (filtering units, before pooling:
  // (B, K, OH, OW)), the pooled responses (B, K, PH, PW; the face test's default), or those after
  // the stage's LCN (the input of the next stage; the same shape).
  enum class Readout { kCode, kPooled, kNormalized };
  // Responses of every stage for frames x: features[s], as `r` says.
  std::vector<Tensor> Features(const Tensor& x, Readout r = Readout::kPooled);
  // d (pooled unit `unit` of stage `s`) / d x for one frame x (1, 1, S, S): backward through the
  // stage's pooling and encoder and every stage below it. Used to find a unit's optimal stimulus.
  Tensor InputGradient(int s, int64_t unit, const Tensor& x);
  // Rescales each decoding basis of stage s (the C F F weights one code unit writes back) to norm
  // at most 1. Without it the objective has a degenerate descent direction: shrink W1, grow W2,
  // and the sparsity term vanishes while the reconstruction stays the same (the usual
  // dictionary-norm constraint of sparse coding). Call after every update, from the thread that
  // owns the pool (it runs on it).
  void ConstrainDecoder(int s);
  // Every parameter of every stage, in order (names are unique: stageN.enc.w, stageN.dec.w, ...).
  std::vector<Param*> AllParams();
  // Parameters of stage s (encoder and decoder weights and biases).
  std::vector<Param*> StageParams(int s);
  // Where the decoding bases of stage s lie in the flat vector of StageParams(s), one block per
  // basis (what ConstrainDecoder bounds; parameter-server shards apply the same bound).
  KeyBlocks DecoderBlocks(int s);
  LocallyConnected2d& encoder(int s) { return *stages_[s].enc; }

 private:
  struct Stage {
    std::unique_ptr<LocallyConnected2d> enc;
    std::unique_ptr<LocallyConnectedTranspose2d> dec;
    std::unique_ptr<L2Pool> pool;
    std::unique_ptr<LocalContrastNorm> lcn;
    Tensor h, p, n, rec;  // code, pooled, normalized, reconstruction
    StageWorkspace ws;
  };
  // x, or its LCN (into xn_) when o_.input_lcn > 0.
  const Tensor& Input(const Tensor& x);
  CatNetOptions o_;
  std::unique_ptr<LocalContrastNorm> input_lcn_;
  Tensor xn_;
  std::vector<Stage> stages_;
};

}  // namespace distbelief
