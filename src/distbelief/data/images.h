// Images for the unsupervised workloads: decoding (JPEG by libjpeg-turbo, PNG by libpng, binary
// PGM/PPM by our own reader), folders of
// images that skip what they cannot read, and a stream of random square grey crops prefetched in
// the background (Le et al. 2012 trained on 200x200 frames; we crop photos at several scales).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <utility>
#include <string_view>
#include <thread>
#include <vector>

#include "distbelief/base/random.h"
#include "distbelief/base/status.h"
#include "distbelief/tensor/tensor.h"

namespace distbelief {

// A grey image, pixels in [0, 1], row-major (h, w).
struct GreyImage {
  int64_t w = 0, h = 0;
  std::vector<float> pixels;
  std::string path;
};

// Decodes one file to grey (colour to BT.601 luma, alpha ignored, 16-bit samples scaled to [0, 1]).
// kNotFound if missing; kDataLoss naming the file and the decoder's reason if it cannot be decoded
// (truncated, corrupt, not a JPEG / PNG / P5 / P6 file, more than 500 progressive JPEG scans).
StatusOr<GreyImage> DecodeGrey(const std::string& path);

// Decodes the bytes of an image file; `origin` names it in errors and becomes its path. kDataLoss
// for bytes that do not decode, that decode to no pixels, or that claim more than max_pixels
// (checked from the header, before decoding).
inline constexpr int64_t kMaxImagePixels = int64_t{1} << 26;  // 8192 x 8192
StatusOr<GreyImage> DecodeGreyFromMemory(std::string_view bytes, const std::string& origin,
                                         int64_t max_pixels = kMaxImagePixels);

// Resizes src to (h, w) by area-weighted filtering (stb_image_resize).
GreyImage Resize(const GreyImage& src, int64_t w, int64_t h);

struct ImageFolderOptions {
  int64_t min_side = 0;     // images whose short side is smaller are skipped (not counted as bad)
  int64_t max_side = 0;     // larger images are scaled down so the short side is this; 0 = keep
};

struct ImageFolder {
  std::vector<GreyImage> images;  // sorted by path
  int64_t unreadable = 0;         // files that looked like images but did not decode
  int64_t too_small = 0;
  // Usable images per first-level subfolder (its name; "" for files directly in the folder), in
  // path order: the sources of a training stream kept one per folder.
  std::vector<std::pair<std::string, int64_t>> per_source;
};

// Reads every .jpg .jpeg .png .pgm .ppm file under `dir` (recursively), decoding on the
// process's thread pool. Unreadable files and
// entries that cannot be examined (symlink loops, dangling links, folders without permission) are
// skipped with a warning and counted as unreadable. kNotFound if `dir` does not exist; kInvalidArgument if it
// holds no usable image.
StatusOr<ImageFolder> LoadImageFolder(const std::string& dir, const ImageFolderOptions& o = {});

// x (n floats) to zero mean and unit variance in place (a small epsilon keeps a flat one finite):
// how every crop and every test frame is normalized.
void NormalizeContrast(float* x, int64_t n);

// A square of an image: top-left corner (x, y) and side, in pixels; side 0 is no region.
struct Region {
  int64_t x = 0, y = 0, side = 0;
};

// Where a video moves, with no labels: for each image whose neighbour in path order (the next,
// else the previous) lies in the same folder and has the same size, the square around the blocks
// of 4 x 4 pixels whose mean absolute difference between the two frames exceeds `min_change`
// (pixels in [0, 1]): centred on their median, its side 1.3 times the larger of their 10-90th
// percentile spreads, at least `min_side`, at most the short side. No region (side 0) for photos,
// and where fewer than 4 blocks changed. One entry per image of f, in its order.
std::vector<Region> MotionRegions(const ImageFolder& f, int64_t min_side, double min_change = 0.04);

struct CropOptions {
  int64_t size = 32;          // output crops are size x size
  int64_t batch = 16;
  double min_scale = 0.25;    // crop side drawn from [max(size, min_scale * short side), short side]
  int prefetch = 4;           // batches prepared ahead by the background thread
  uint64_t seed = 1;
  // The share of crops taken about an image's region (CropStream's `regions`) where it has one:
  // the region's square scaled by [0.8, 1.25] and shifted by up to a tenth of its side.
  double region_share = 0.0;
};

// Endless random crops of random images from a folder, as batches (B, 1, size, size), each crop
// normalized to zero mean and unit variance. A background thread keeps `prefetch` batches ready.
// Next() is not thread-safe; destroying the stream stops the thread.
class CropStream {
 public:
  // folder is not owned and must outlive the stream; regions is empty or one per image of folder.
  CropStream(const ImageFolder* folder, const CropOptions& o, std::vector<Region> regions = {});
  ~CropStream();
  CropStream(const CropStream&) = delete;
  CropStream& operator=(const CropStream&) = delete;
  // Blocks until a batch is ready.
  Tensor Next();
  // One crop into out (size * size floats), drawn with rng. Deterministic for a given rng state.
  static void Crop(const GreyImage& img, const CropOptions& o, Random* rng, float* out);
  // One crop about region r of img (r.side > 0), as o.region_share describes.
  static void CropAbout(const GreyImage& img, const Region& r, const CropOptions& o, Random* rng, float* out);

 private:
  void Fill();
  const ImageFolder* folder_;
  CropOptions o_;
  std::vector<Region> regions_;
  Random rng_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Tensor> ready_;
  bool stop_ = false;
  std::thread worker_;
};

// Writes a grey image (pixels in [0, 1], clamped) as PNG. kUnavailable if it cannot be written.
Status WritePng(const std::string& path, const GreyImage& img);

}  // namespace distbelief
