// Seq2Seq (models/seq2seq.h) split across model partitions by depth, as Sutskever et al. (2014)
// put each LSTM layer on its own GPU, and pipelined over time: partition p holds encoder and
// decoder layers [L p / P, L (p + 1) / P) (so a decoder layer starts from the final state of the
// encoder layer on its own partition: no state crosses), partition 0 also the two embeddings,
// the last partition also the softmax. Source and target are cut into `chunks` time chunks
// (fewer when a sequence is shorter); partition p runs chunk k of its layers as soon as p - 1 has
// sent it, so partitions work on different chunks at once. The last partition computes each
// target chunk's loss and gradient as soon as the chunk arrives, and backward runs the chunks in
// reverse, passing d(input) down. Only the layer outputs at partition boundaries cross, once
// each way, through PartitionLinks on a transport (in process or gRPC), one thread per partition.
//
// The loss and every gradient equal the whole model's (mp_test checks this to 1e-5).
#pragma once

#include <memory>
#include <vector>

#include "distbelief/models/seq2seq.h"
#include "distbelief/mp/links.h"
#include "distbelief/mp/lstm_pipeline.h"
#include "distbelief/mp/partition.h"

namespace distbelief {

class Seq2SeqPartitions {
 public:
  // Cuts `reference` into `partitions` (1 .. layers) with `chunks` (>= 1) time chunks; its
  // weights are copied, the reference is not kept. kInvalidArgument for an impossible split.
  static StatusOr<std::unique_ptr<Seq2SeqPartitions>> Create(Seq2Seq* reference, int partitions, int chunks,
                                                             Transport* transport);
  ~Seq2SeqPartitions();
  // Seq2Seq::Forward then Backward on one batch (src (B, S), tgt_in and tgt_out (B, T); target
  // ids < 0 are ignored): returns the mean cross entropy and sets (overwrites) every partition's
  // gradients. A partition error (a dead peer times out) ends the step with that error.
  StatusOr<double> LossAndGradient(const Tensor& src, const Tensor& tgt_in, const Tensor& tgt_out);
  int partitions() const { return static_cast<int>(parts_.size()); }
  // Partition p's parameters, named as the whole model's (so a checkpoint of all partitions
  // loads into a whole Seq2Seq): embeddings (p = 0), encoder layers, decoder layers, softmax
  // (last p). The tensors stay in place for the object's lifetime.
  std::vector<Param*> params(int p);
  // Writes every partition's weights into a whole model of the same options (for decoding).
  void CopyTo(Seq2Seq* net);
  // Simulates the death of partition p (its peers' waits then fail).
  void KillPartition(int p) { links_->Kill(p); }
  void SetTimeout(Millis t) { timeout_ = t; }
  MpStats TotalStats() const;

 private:
  struct Part;
  Seq2SeqPartitions() = default;
  Status RunPart(int p, int64_t step, const Tensor& src, const Tensor& tgt_in, const Tensor& tgt_out, int64_t counted);
  Seq2SeqOptions o_;
  int chunks_ = 1;
  std::unique_ptr<PartitionLinks> links_;
  std::vector<std::unique_ptr<Part>> parts_;
  int64_t step_ = 0;
  Millis timeout_{10000};
};

}  // namespace distbelief
