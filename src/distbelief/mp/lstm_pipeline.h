// Model parallelism for a stack of LSTM layers (Sutskever et al. 2014 put one layer per GPU):
// partition p owns a contiguous group of layers and the sequence is cut into time chunks.
// Partition p runs chunk k of its layers as soon as partition p - 1 has sent chunk k's output,
// then sends its own chunk-k output on, so different partitions work on different chunks at
// once (a pipeline); backward runs the chunks in reverse and passes d(input) of each chunk down as
// soon as it is computed. Only layer outputs at the partition boundary cross (once each way).
// x (B, T, D) -> y (B, T, H).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "distbelief/mp/partition.h"
#include "distbelief/nn/sequence.h"

namespace distbelief {

// Time steps [t0, t0 + n) of src (B, T, F) into *dst (B, n, F); PutTime writes a chunk back
// into dst (B, T, F) at t0.
void SliceTime(const Tensor& src, int64_t t0, int64_t n, Tensor* dst);
void PutTime(const Tensor& chunk, int64_t t0, Tensor* dst);

// One LSTM layer run over a sequence cut into time chunks, the building block of the pipelines
// (LstmPipeline here, Seq2SeqPartitions): an Lstm instance per chunk with the same weights and its
// own activations. Chunk k starts from the final state of chunk k - 1 (chunk 0 from a given state
// or zeros); backward of chunk k takes the state gradient chunk k + 1 left, so the chunks together
// compute exactly what one Lstm computes over the whole sequence. Chunks may differ in length.
// Not thread-safe: one partition's thread drives it.
class ChunkedLstm {
 public:
  // `chunks` instances, named `name` (so its parameters carry the whole model's names).
  ChunkedLstm(const std::string& name, int64_t in, int64_t hidden, int chunks);
  // The weights (instance 0's Params): what a driver pulls into and reads gradients from.
  std::vector<Param*> params() { return insts_[0]->params(); }
  int chunks() const { return static_cast<int>(insts_.size()); }
  // Before a step: copies params() to every instance and zeroes every gradient.
  void BeginStep();
  // Forward of chunk k, x (B, n, in) kept by reference until Backward(k). Chunk 0 starts from
  // (h0, c0) when given, else from zeros.
  void Forward(int k, const Tensor& x, const Tensor* h0 = nullptr, const Tensor* c0 = nullptr);
  const Tensor& out(int k) const { return outs_[k]; }  // (B, n, H)
  Tensor FinalH(int k) const;                          // (B, H): chunk k's last output
  const Tensor& FinalC(int k) const { return insts_[k]->final_cell(); }
  // Backward of chunk k, last = the number of chunks this step used. dy (B, n, H) is consumed.
  // The last chunk adds (dh_last, dc_last) to its final state's gradient when given (a decoder
  // that started from it); earlier chunks take chunk k + 1's. Chunks run from last - 1 down to 0.
  void Backward(int k, int last, Tensor dy, Tensor* dx, const Tensor* dh_last = nullptr,
                const Tensor* dc_last = nullptr);
  // d loss / d (h0, c0) of chunk 0 after its Backward (zero without an initial state).
  const Tensor& dh0() const { return insts_[0]->dh0(); }
  const Tensor& dc0() const { return insts_[0]->dc0(); }
  // After a step: adds every instance's gradient into params()' grads.
  void EndStep();

 private:
  std::vector<std::unique_ptr<Lstm>> insts_;
  std::vector<Tensor> outs_;
};

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
