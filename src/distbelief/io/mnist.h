// Reader for the IDX files of MNIST (and Fashion-MNIST): images as floats in [0, 1], labels as
// class ids stored as floats.
#pragma once

#include <string>
#include <string_view>

#include "distbelief/base/status.h"
#include "distbelief/tensor/tensor.h"

namespace distbelief {

struct LabelledImages {
  Tensor images;  // (N, rows * cols), pixel / 255
  Tensor labels;  // (N) class ids
  int64_t rows = 0, cols = 0;
};

// Reads `<dir>/<prefix>-images-idx3-ubyte` and `<dir>/<prefix>-labels-idx1-ubyte`, with prefix
// "train" or "t10k". kNotFound for a missing file; kDataLoss for a bad magic number, a truncated
// file or mismatched counts.
StatusOr<LabelledImages> ReadMnist(const std::string& dir, const std::string& prefix);
// The same from the two files' bytes; the paths name them in errors. Sizes are checked against
// the bytes (without overflow) before anything is allocated.
StatusOr<LabelledImages> ParseMnist(std::string_view images, std::string_view labels, const std::string& images_path,
                                   const std::string& labels_path);

}  // namespace distbelief
