// The cat network split across model partitions (Dean et al. 2012, section 3) by feature maps:
// partition p holds maps [K p / P, K (p + 1) / P) of every stage, i.e. its slice of each encoder
// and decoder (untied weights, so nothing is shared). Within a stage step:
//   h_p = W1_p x;  r_p = W2_p h_p  (+ the decoder bias, held by partition 0);  p_p = H(h_p)
// the partial reconstructions are summed across partitions (each partition sends its r_p to every
// other, once: the only crossing), and each partition backpropagates the common reconstruction
// error and its own sparsity term into its own weights. Pooling is within a map, so it stays
// local; LCN mixes maps, so the input of a higher stage is gathered (each partition sends its
// pooled maps of a lower stage to the others once) and normalized on every partition.
// Partitions exchange through PartitionLinks on a transport (in process or gRPC), one thread each.
#pragma once

#include <memory>
#include <vector>

#include "distbelief/models/cat_net.h"
#include "distbelief/mp/links.h"
#include "distbelief/mp/partition.h"

namespace distbelief {

class CatPartitions {
 public:
  // Cuts `reference` (built from `o`) into `partitions` by maps; kInvalidArgument if a stage has
  // fewer maps than partitions.
  static StatusOr<std::unique_ptr<CatPartitions>> Create(CatNet* reference, const CatNetOptions& o, int partitions,
                                                         Transport* transport);
  ~CatPartitions();
  // Eq. 1 for stage s on frames x (B, 1, S, S), through the lower stages' encoders: sets every
  // partition's stage-s gradients (zeroed first) and returns {reconstruction, sparsity}.
  StatusOr<std::pair<double, double>> StageLossAndGradient(int s, const Tensor& x);
  int partitions() const { return static_cast<int>(parts_.size()); }
  // The trained parameters of partition p at stage s: encoder weight, decoder weight, and (p = 0)
  // the decoder bias.
  std::vector<Param*> StageParams(int p, int s);
  // Where partition p's decoding bases lie in the flat vector of StageParams(p, s).
  KeyBlocks DecoderBlocks(int p, int s);
  // Simulates the death of partition p (its peers' waits then fail).
  void KillPartition(int p) { links_->Kill(p); }
  // Writes the partitions' stage-s weights into a whole network of the same shape, or reads them.
  void CopyTo(CatNet* net, int s);
  void CopyFrom(CatNet* net, int s);
  // Writes the partitions' stage-s gradients into a whole network's gradients (for checking).
  void CopyGradsTo(CatNet* net, int s);
  MpStats TotalStats() const;
  void SetTimeout(Millis t);

 private:
  struct Part;
  Status RunPart(int p, int s, int64_t step, const Tensor& x, std::pair<double, double>* loss);
  void CopyOut(CatNet* net, int s, bool grads);
  CatNetOptions o_;
  std::unique_ptr<PartitionLinks> links_;
  std::vector<std::unique_ptr<Part>> parts_;
  int64_t step_ = 0;
  Millis timeout_{10000};
};

}  // namespace distbelief
