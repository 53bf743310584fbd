#include "distbelief/train/replica_model.h"

#include <algorithm>
#include <cstring>

namespace distbelief {

StepLoss LossLog::Mean(double fraction, bool first) const {
  StepLoss mean;
  if (losses_.empty()) return mean;
  const size_t n = losses_.size();
  const size_t k = std::clamp<size_t>(static_cast<size_t>(fraction * static_cast<double>(n)), 1, n);
  mean.terms.assign(losses_[first ? 0 : n - 1].terms.size(), 0.0);
  for (size_t i = 0; i < k; ++i) {
    const StepLoss& l = losses_[first ? i : n - 1 - i];
    mean.total += l.total / static_cast<double>(k);
    for (size_t t = 0; t < mean.terms.size() && t < l.terms.size(); ++t) mean.terms[t] += l.terms[t] / static_cast<double>(k);
  }
  return mean;
}

void CopyParamsToFlat(const std::vector<Param*>& params, std::span<float> flat) {
  size_t at = 0;
  for (Param* p : params) {
    std::memcpy(flat.data() + at, p->value.data(), p->value.size() * sizeof(float));
    at += p->value.size();
  }
}

void CopyFlatToParams(std::span<const float> flat, const std::vector<Param*>& params) {
  size_t at = 0;
  for (Param* p : params) {
    std::memcpy(p->value.data(), flat.data() + at, p->value.size() * sizeof(float));
    at += p->value.size();
  }
}

int64_t CountParams(const std::vector<Param*>& params) {
  int64_t n = 0;
  for (Param* p : params) n += p->value.size();
  return n;
}

std::vector<std::span<float>> ValuePieces(const std::vector<Param*>& params) {
  std::vector<std::span<float>> pieces;
  for (Param* p : params) pieces.push_back(p->value.span());
  return pieces;
}

std::vector<std::span<const float>> GradPieces(const std::vector<Param*>& params) {
  std::vector<std::span<const float>> pieces;
  for (Param* p : params) pieces.push_back(std::as_const(p->grad).span());
  return pieces;
}

}  // namespace distbelief
