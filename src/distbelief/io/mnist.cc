#include "distbelief/io/mnist.h"

#include <fstream>
#include <iterator>
#include <vector>

namespace distbelief {
namespace {

StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError("cannot open " + path + " (run scripts/setup.sh)");
  return std::string(std::istreambuf_iterator<char>(in), {});
}

uint32_t BigEndian32(const unsigned char* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | p[3];
}

}  // namespace

StatusOr<LabelledImages> ParseMnist(std::string_view img_bytes, std::string_view lab_bytes, const std::string& ipath,
                                   const std::string& lpath) {
  const auto* img = reinterpret_cast<const unsigned char*>(img_bytes.data());
  const auto* lab = reinterpret_cast<const unsigned char*>(lab_bytes.data());
  if (img_bytes.size() < 16 || BigEndian32(img) != 0x803)
    return absl::DataLossError(ipath + ": not an IDX image file (bad magic number)");
  if (lab_bytes.size() < 8 || BigEndian32(lab) != 0x801)
    return absl::DataLossError(lpath + ": not an IDX label file (bad magic number)");
  const uint64_t n = BigEndian32(img + 4), rows = BigEndian32(img + 8), cols = BigEndian32(img + 12);
  // Each factor is below 2^32, so each product is checked against the file before the next.
  const uint64_t pixels = img_bytes.size() - 16;
  const bool fits = rows * cols <= pixels && (rows * cols == 0 ? n * 0 == pixels : n <= pixels / (rows * cols));
  if (!fits || n * rows * cols != pixels)
    return absl::DataLossError(ipath + ": truncated or oversized (header says " + std::to_string(n) + " images of " +
                               std::to_string(rows) + "x" + std::to_string(cols) + ", file holds " +
                               std::to_string(pixels) + " pixel bytes)");
  if (BigEndian32(lab + 4) != n || lab_bytes.size() - 8 != n)
    return absl::DataLossError(lpath + ": label count does not match the images");
  const int64_t count = static_cast<int64_t>(n), width = static_cast<int64_t>(rows * cols);
  LabelledImages out;
  out.rows = static_cast<int64_t>(rows);
  out.cols = static_cast<int64_t>(cols);
  out.images = Tensor({count, width});
  out.labels = Tensor({count});
  for (int64_t i = 0; i < count * width; ++i) out.images[i] = img[16 + i] / 255.0f;
  for (int64_t i = 0; i < count; ++i) {
    if (lab[8 + i] > 9) return absl::DataLossError(lpath + ": label outside 0..9");
    out.labels[i] = lab[8 + i];
  }
  return out;
}

StatusOr<LabelledImages> ReadMnist(const std::string& dir, const std::string& prefix) {
  const std::string ipath = dir + "/" + prefix + "-images-idx3-ubyte";
  const std::string lpath = dir + "/" + prefix + "-labels-idx1-ubyte";
  DB_ASSIGN_OR_RETURN(const std::string img, ReadFile(ipath));
  DB_ASSIGN_OR_RETURN(const std::string lab, ReadFile(lpath));
  return ParseMnist(img, lab, ipath, lpath);
}

}  // namespace distbelief
