#include "distbelief/data/images.h"

#include <stb_image.h>
#include <stb_image_resize.h>
#include <stb_image_write.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "distbelief/base/logging.h"
#include "distbelief/base/parallel.h"

namespace distbelief {
namespace fs = std::filesystem;

namespace {

// The width, height and maximum value of a binary PNM (P5/P6) header, or -1s if the header does
// not parse. Debian's stb_image (2022-09) converts 16-bit P6 pixels to grey as if they were 8-bit
// and reads past its buffer, and its header integers overflow on long digit runs (both found by
// fuzz/image_fuzz), so such PNMs are refused before stb sees them.
struct PnmFields {
  int64_t w = -1, h = -1, maxval = -1;
};
PnmFields ParsePnmHeader(std::string_view b) {
  size_t at = 2;
  int64_t fields[3] = {0, 0, 0};
  for (int64_t& f : fields) {
    for (;;) {  // whitespace and # comments, as stb skips them
      while (at < b.size() && std::isspace(static_cast<unsigned char>(b[at]))) ++at;
      if (at < b.size() && b[at] == '#') {
        while (at < b.size() && b[at] != '\n' && b[at] != '\r') ++at;
        continue;
      }
      break;
    }
    if (at >= b.size() || !std::isdigit(static_cast<unsigned char>(b[at]))) return {};
    // Every digit is consumed (saturating), so the fields stay in step with stb's reading of them.
    while (at < b.size() && std::isdigit(static_cast<unsigned char>(b[at]))) {
      f = std::min<int64_t>(f * 10 + (b[at++] - '0'), int64_t{1} << 40);
    }
  }
  return {fields[0], fields[1], fields[2]};
}

}  // namespace

StatusOr<GreyImage> DecodeGreyFromMemory(std::string_view bytes, const std::string& origin, int64_t max_pixels) {
  if (bytes.size() >= 2 && bytes[0] == 'P' && (bytes[1] == '5' || bytes[1] == '6')) {
    const PnmFields pnm = ParsePnmHeader(bytes);
    if (pnm.maxval < 1 || pnm.maxval > 255)
      return absl::DataLossError("image " + origin + ": only 8-bit binary PNM is read (header maxval " +
                                 std::to_string(pnm.maxval) + ")");
    if (pnm.w > (int64_t{1} << 24) || pnm.h > (int64_t{1} << 24))
      return absl::DataLossError("image " + origin + ": PNM header claims " + std::to_string(pnm.w) + "x" +
                                 std::to_string(pnm.h) + " pixels");
  }
  const auto* p = reinterpret_cast<const stbi_uc*>(bytes.data());
  if (bytes.size() > size_t{1} << 30) return absl::DataLossError("image " + origin + " is larger than 1 GiB");
  const int n = static_cast<int>(bytes.size());
  int w = 0, h = 0, channels = 0;
  // The header is read first, so a file that claims a huge image is refused before any allocation.
  if (!stbi_info_from_memory(p, n, &w, &h, &channels))
    return absl::DataLossError("cannot decode " + origin + ": " + stbi_failure_reason());
  if (int64_t{w} * h > max_pixels)
    return absl::DataLossError("image " + origin + " is " + std::to_string(w) + "x" + std::to_string(h) +
                               " (more than " + std::to_string(max_pixels) + " pixels)");
  unsigned char* data = stbi_load_from_memory(p, n, &w, &h, &channels, 1);
  if (!data) return absl::DataLossError("cannot decode " + origin + ": " + stbi_failure_reason());
  if (w < 1 || h < 1) {  // stb decodes a PNM header of zero rows
    stbi_image_free(data);
    return absl::DataLossError("image " + origin + " has no pixels (" + std::to_string(w) + "x" + std::to_string(h) + ")");
  }
  GreyImage img;
  img.w = w;
  img.h = h;
  img.path = origin;
  img.pixels.resize(static_cast<size_t>(w) * h);
  for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = data[i] / 255.0f;
  stbi_image_free(data);
  return img;
}

StatusOr<GreyImage> DecodeGrey(const std::string& path) {
  std::error_code ec;
  const auto st = fs::status(path, ec);
  if (!fs::exists(st)) return absl::NotFoundError("image " + path + " not found");
  if (!fs::is_regular_file(st)) return absl::DataLossError("image " + path + " is not a regular file");
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::DataLossError("cannot open image " + path);
  const std::string bytes((std::istreambuf_iterator<char>(in)), {});
  if (in.bad()) return absl::DataLossError("cannot read image " + path);
  return DecodeGreyFromMemory(bytes, path);
}

GreyImage Resize(const GreyImage& src, int64_t w, int64_t h) {
  GreyImage out;
  out.w = w;
  out.h = h;
  out.path = src.path;
  out.pixels.resize(w * h);
  stbir_resize_float(src.pixels.data(), static_cast<int>(src.w), static_cast<int>(src.h), 0, out.pixels.data(),
                     static_cast<int>(w), static_cast<int>(h), 0, 1);
  return out;
}

StatusOr<ImageFolder> LoadImageFolder(const std::string& dir, const ImageFolderOptions& o) {
  if (!fs::is_directory(dir)) return absl::NotFoundError("image folder " + dir + " not found");
  std::vector<std::string> paths;
  ImageFolder folder;
  // Entries that cannot be examined (a symlink loop, a folder without permission) are skipped and
  // counted as unreadable; the iterator never throws.
  std::error_code ec;
  fs::recursive_directory_iterator it(dir, fs::directory_options::skip_permission_denied, ec), end;
  if (ec) return absl::InvalidArgumentError("cannot list image folder " + dir + ": " + ec.message());
  for (; it != end; it.increment(ec)) {
    if (ec) {
      LOG_WARN << "skipping an entry of " << dir << ": " << ec.message();
      ++folder.unreadable;
      ec.clear();
      continue;
    }
    std::error_code type_ec;
    const bool regular = it->is_regular_file(type_ec);
    if (type_ec) {  // a symlink loop, a dangling link, an entry we may not examine
      LOG_WARN << "skipping " << it->path().string() << ": " << type_ec.message();
      ++folder.unreadable;
      continue;
    }
    std::string ext = it->path().extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), ::tolower);
    if (ext != ".jpg" && ext != ".jpeg" && ext != ".png" && ext != ".pgm" && ext != ".ppm" && ext != ".bmp") continue;
    if (regular) paths.push_back(it->path().string());
  }
  std::sort(paths.begin(), paths.end());
  // Decoded on the process's pool (in order: slot i is path i); counted and warned about after.
  std::vector<StatusOr<GreyImage>> decoded(paths.size(), absl::UnknownError("not decoded"));
  ParallelFor(static_cast<int64_t>(paths.size()), 8, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      StatusOr<GreyImage> img = DecodeGrey(paths[i]);
      if (img.ok() && o.max_side > 0 && std::min(img->w, img->h) > o.max_side) {
        const double s = double(o.max_side) / std::min(img->w, img->h);
        *img = Resize(*img, std::max<int64_t>(1, std::lround(img->w * s)), std::max<int64_t>(1, std::lround(img->h * s)));
      }
      decoded[i] = std::move(img);
    }
  });
  for (size_t i = 0; i < paths.size(); ++i) {
    StatusOr<GreyImage>& img = decoded[i];
    if (!img.ok()) {
      LOG_WARN << "skipping " << img.status().message();
      ++folder.unreadable;
      continue;
    }
    if (std::min(img->w, img->h) < o.min_side) {
      ++folder.too_small;
      continue;
    }
    // The first folder below `dir` the image is in ("" for one directly in `dir`).
    const fs::path rel = fs::path(paths[i]).lexically_relative(dir);
    const std::string source = std::distance(rel.begin(), rel.end()) > 1 ? rel.begin()->string() : "";
    if (folder.per_source.empty() || folder.per_source.back().first != source) folder.per_source.push_back({source, 0});
    folder.per_source.back().second++;
    folder.images.push_back(std::move(*img));
  }
  if (folder.images.empty())
    return absl::InvalidArgumentError("image folder " + dir + " holds no usable image (" +
                                      std::to_string(folder.unreadable) + " unreadable, " +
                                      std::to_string(folder.too_small) + " too small)");
  return folder;
}

void NormalizeContrast(float* x, int64_t n) {
  double mean = 0.0, var = 0.0;
  for (int64_t i = 0; i < n; ++i) mean += x[i];
  mean /= double(n);
  for (int64_t i = 0; i < n; ++i) var += (x[i] - mean) * (x[i] - mean);
  const double inv = 1.0 / std::sqrt(var / double(n) + 1e-4);
  for (int64_t i = 0; i < n; ++i) x[i] = static_cast<float>((x[i] - mean) * inv);
}

void CropStream::Crop(const GreyImage& img, const CropOptions& o, Random* rng, float* out) {
  const int64_t short_side = std::min(img.w, img.h);
  const int64_t lo = std::min(short_side, std::max<int64_t>(o.size, std::lround(o.min_scale * short_side)));
  const int64_t side = lo + static_cast<int64_t>(rng->UniformInt(short_side - lo + 1));
  const int64_t x0 = static_cast<int64_t>(rng->UniformInt(img.w - side + 1));
  const int64_t y0 = static_cast<int64_t>(rng->UniformInt(img.h - side + 1));
  stbir_resize_float(img.pixels.data() + y0 * img.w + x0, static_cast<int>(side), static_cast<int>(side),
                     static_cast<int>(img.w * sizeof(float)), out, static_cast<int>(o.size),
                     static_cast<int>(o.size), 0, 1);
  // Zero mean, unit variance per crop (the contrast is learned from, not the brightness).
  NormalizeContrast(out, o.size * o.size);
}

CropStream::CropStream(const ImageFolder* folder, const CropOptions& o)
    : folder_(folder), o_(o), rng_(o.seed), worker_([this] { Fill(); }) {}

CropStream::~CropStream() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  worker_.join();
}

void CropStream::Fill() {
  while (true) {
    Tensor batch({o_.batch, 1, o_.size, o_.size});
    for (int64_t b = 0; b < o_.batch; ++b) {
      const GreyImage& img = folder_->images[rng_.UniformInt(folder_->images.size())];
      Crop(img, o_, &rng_, batch.data() + b * o_.size * o_.size);
    }
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return stop_ || static_cast<int>(ready_.size()) < o_.prefetch; });
    if (stop_) return;
    ready_.push_back(std::move(batch));
    cv_.notify_all();
  }
}

Tensor CropStream::Next() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return !ready_.empty(); });
  Tensor t = std::move(ready_.front());
  ready_.pop_front();
  cv_.notify_all();
  return t;
}

Status WritePng(const std::string& path, const GreyImage& img) {
  std::vector<unsigned char> bytes(img.pixels.size());
  for (size_t i = 0; i < bytes.size(); ++i)
    bytes[i] = static_cast<unsigned char>(std::lround(std::clamp(img.pixels[i], 0.0f, 1.0f) * 255.0f));
  if (!stbi_write_png(path.c_str(), static_cast<int>(img.w), static_cast<int>(img.h), 1, bytes.data(),
                      static_cast<int>(img.w)))
    return absl::UnavailableError("cannot write " + path);
  return absl::OkStatus();
}

}  // namespace distbelief
