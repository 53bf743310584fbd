#include "distbelief/models/models.h"


namespace distbelief {

StatusOr<Sequential> BuildModel(const ModelOptions& o, uint64_t seed) {
  const Activation act = o.activation;
  if (o.hidden.empty()) return absl::InvalidArgumentError("model.hidden must not be empty");
  for (int64_t h : o.hidden)
    if (h < 1 || h > (1 << 20))
      return absl::InvalidArgumentError("model.hidden: width " + std::to_string(h) +
                                        " outside [1, 1048576]");
  if (o.dropout < 0.0f || o.dropout >= 1.0f)
    return absl::InvalidArgumentError("model.dropout must be in [0, 1)");
  Random rng(seed);
  Sequential m;
  int64_t width = o.inputs;
  for (size_t i = 0; i < o.hidden.size(); ++i) {
    m.Add(std::make_unique<Linear>("fc" + std::to_string(i + 1), width, o.hidden[i], &rng));
    m.Add(std::make_unique<ActivationLayer>(act));
    if (o.dropout > 0.0f) m.Add(std::make_unique<Dropout>(o.dropout, seed * 31 + i));
    width = o.hidden[i];
  }
  if (o.kind == ModelKind::kMlp) {
    m.Add(std::make_unique<Linear>("out", width, o.classes, &rng));
  } else {
    // Decoder back to the input, squashed to [0, 1] like the pixels.
    m.Add(std::make_unique<Linear>("decoder", width, o.inputs, &rng));
    m.Add(std::make_unique<ActivationLayer>(Activation::kSigmoid));
  }
  return m;
}

}  // namespace distbelief
