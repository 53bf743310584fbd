// Model parallelism for a stack of LSTM layers (Sutskever et al. 2014 put one layer per GPU):
// partition p owns a contiguous group of layers and the sequence is cut into time chunks.
// Partition p runs chunk k of its layers as soon as partition p - 1 has sent chunk k's output,
// then sends its own chunk-k output on, so different partitions work on different chunks at
// once (a pipeline); backward runs the chunks in reverse and passes d(input) of each chunk down as
// soon as it is computed. Only layer outputs at the partition boundary cross (once each way).
// x (B, T, D) -> y (B, T, H).
#pragma once

#include <memory>
#include <vector>

#include "distbelief/mp/partition.h"
#include "distbelief/nn/sequence.h"

namespace distbelief {

struct LstmStackSpec {
  int64_t input = 16, hidden = 16, layers = 4;
};

// The unpartitioned stack (layer i: Lstm "lstm<i>"), seeded.
std::vector<std::unique_ptr<Lstm>> BuildLstmStack(const LstmStackSpec& spec, uint64_t seed);

class LstmPipeline {
 public:
  // `chunks` time chunks per sequence (1 = no pipelining); weights copied from `reference`.
  static StatusOr<std::unique_ptr<LstmPipeline>> Create(const LstmStackSpec& spec, int partitions, int chunks,
                                                        const std::vector<Lstm*>& reference, Transport* transport);
  ~LstmPipeline();
  // Forward and backward of one batch; parameter gradients are accumulated per layer (LayerGrads).
  // T must be divisible by `chunks`.
  Status Step(const Tensor& x, const Tensor& dy, Tensor* y, Tensor* dx);
  // Gradients of layer i's parameters (Wx, Wh, b) from the last Step, summed over its chunks.
  std::vector<Tensor> LayerGrads(int64_t layer);
  MpStats TotalStats() const;

 private:
  struct Part;
  Status RunPart(int p, int64_t step, const Tensor& x, const Tensor& dy, Tensor* y, Tensor* dx);
  LstmStackSpec spec_;
  int partitions_ = 1, chunks_ = 1;
  std::unique_ptr<PartitionLinks> links_;
  std::vector<std::unique_ptr<Part>> parts_;
  int64_t step_ = 0;
};

}  // namespace distbelief
