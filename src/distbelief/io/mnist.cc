#include "distbelief/io/mnist.h"

#include <fstream>
#include <iterator>
#include <vector>

namespace distbelief {
namespace {

StatusOr<std::vector<unsigned char>> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError("cannot open " + path + " (run scripts/setup.sh)");
  return std::vector<unsigned char>(std::istreambuf_iterator<char>(in), {});
}

uint32_t BigEndian32(const unsigned char* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | p[3];
}

}  // namespace

StatusOr<LabelledImages> ReadMnist(const std::string& dir, const std::string& prefix) {
  const std::string ipath = dir + "/" + prefix + "-images-idx3-ubyte";
  const std::string lpath = dir + "/" + prefix + "-labels-idx1-ubyte";
  DB_ASSIGN_OR_RETURN(auto img, ReadFile(ipath));
  DB_ASSIGN_OR_RETURN(auto lab, ReadFile(lpath));
  if (img.size() < 16 || BigEndian32(img.data()) != 0x803)
    return absl::DataLossError(ipath + ": not an IDX image file (bad magic number)");
  if (lab.size() < 8 || BigEndian32(lab.data()) != 0x801)
    return absl::DataLossError(lpath + ": not an IDX label file (bad magic number)");
  const int64_t n = BigEndian32(img.data() + 4), rows = BigEndian32(img.data() + 8),
                cols = BigEndian32(img.data() + 12);
  if (static_cast<int64_t>(img.size()) != 16 + n * rows * cols)
    return absl::DataLossError(ipath + ": truncated or oversized (header says " +
                               std::to_string(n) + " images of " + std::to_string(rows) + "x" +
                               std::to_string(cols) + ")");
  if (BigEndian32(lab.data() + 4) != n || static_cast<int64_t>(lab.size()) != 8 + n)
    return absl::DataLossError(lpath + ": label count does not match the images");
  LabelledImages out;
  out.rows = rows;
  out.cols = cols;
  out.images = Tensor({n, rows * cols});
  out.labels = Tensor({n});
  for (int64_t i = 0; i < n * rows * cols; ++i) out.images[i] = img[16 + i] / 255.0f;
  for (int64_t i = 0; i < n; ++i) {
    if (lab[8 + i] > 9) return absl::DataLossError(lpath + ": label outside 0..9");
    out.labels[i] = lab[8 + i];
  }
  return out;
}

}  // namespace distbelief
