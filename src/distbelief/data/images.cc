#include "distbelief/data/images.h"

#include <stb_image_resize.h>
#include <stb_image_write.h>

#include <cstdio>  // before jpeglib.h, which uses FILE

#include <jpeglib.h>
#include <png.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <csetjmp>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "distbelief/base/logging.h"
#include "distbelief/base/parallel.h"

namespace distbelief {
namespace fs = std::filesystem;

namespace {

// Untrusted bytes go only to decoders that are fuzzed upstream (libjpeg-turbo, libpng) or to the
// PNM reader below; Debian's stb_image (2022-09) is used only to resize and to write PNGs. Its
// decoders read out of bounds on inputs fuzz/image_fuzz found (a 16-bit P6, overflowing PNM header
// integers, a corrupt JPEG Huffman table: fuzz/corpus/image/regression-*).

// Grey from gamma-encoded R, G, B: the luma of ITU-R BT.601, which is what libjpeg's grey output
// (the Y of YCbCr) holds, so every format gives the same grey for the same picture.
inline float Luma(float r, float g, float b) { return 0.299f * r + 0.587f * g + 0.114f * b; }

Status TooLarge(const std::string& origin, int64_t w, int64_t h, int64_t max_pixels) {
  return absl::DataLossError("image " + origin + " is " + std::to_string(w) + "x" + std::to_string(h) +
                             " (more than " + std::to_string(max_pixels) + " pixels)");
}

// ---- binary PNM (P5 grey, P6 colour; 8 or 16 bits) ----

struct PnmHeader {
  int64_t w = -1, h = -1, maxval = -1;
  size_t body = 0;  // offset of the first pixel byte
};

// Header integers saturate at 2^40 so a long digit run cannot overflow; false if the header does
// not parse (a missing field, no whitespace after maxval).
bool ParsePnmHeader(std::string_view b, PnmHeader* out) {
  size_t at = 2;
  int64_t fields[3] = {0, 0, 0};
  for (int64_t& f : fields) {
    for (;;) {  // whitespace and # comments
      while (at < b.size() && std::isspace(static_cast<unsigned char>(b[at]))) ++at;
      if (at < b.size() && b[at] == '#') {
        while (at < b.size() && b[at] != '\n' && b[at] != '\r') ++at;
        continue;
      }
      break;
    }
    if (at >= b.size() || !std::isdigit(static_cast<unsigned char>(b[at]))) return false;
    while (at < b.size() && std::isdigit(static_cast<unsigned char>(b[at]))) {
      f = std::min<int64_t>(f * 10 + (b[at++] - '0'), int64_t{1} << 40);
    }
  }
  // Exactly one whitespace byte separates maxval from the pixels.
  if (at >= b.size() || !std::isspace(static_cast<unsigned char>(b[at]))) return false;
  *out = {fields[0], fields[1], fields[2], at + 1};
  return true;
}

StatusOr<GreyImage> DecodePnm(std::string_view b, const std::string& origin, int64_t max_pixels) {
  PnmHeader hd;
  if (!ParsePnmHeader(b, &hd)) return absl::DataLossError("cannot decode " + origin + ": bad PNM header");
  if (hd.maxval < 1 || hd.maxval > 65535)
    return absl::DataLossError("image " + origin + ": PNM maxval " + std::to_string(hd.maxval) +
                               " is outside 1..65535");
  if (hd.w < 1 || hd.h < 1)
    return absl::DataLossError("image " + origin + " has no pixels (" + std::to_string(hd.w) + "x" +
                               std::to_string(hd.h) + ")");
  if (hd.w > (int64_t{1} << 24) || hd.h > (int64_t{1} << 24))
    return absl::DataLossError("image " + origin + ": PNM header claims " + std::to_string(hd.w) + "x" +
                               std::to_string(hd.h) + " pixels");
  if (hd.w * hd.h > max_pixels) return TooLarge(origin, hd.w, hd.h, max_pixels);
  const int channels = b[1] == '6' ? 3 : 1;
  const int bytes_per_sample = hd.maxval > 255 ? 2 : 1;
  const int64_t n = hd.w * hd.h;
  const size_t need = static_cast<size_t>(n) * channels * bytes_per_sample;
  if (b.size() - hd.body < need)
    return absl::DataLossError("image " + origin + " is truncated (" + std::to_string(b.size() - hd.body) +
                               " of " + std::to_string(need) + " pixel bytes)");
  const auto* px = reinterpret_cast<const unsigned char*>(b.data() + hd.body);
  auto sample = [&](int64_t i) -> float {
    const unsigned v = bytes_per_sample == 1 ? px[i] : (unsigned{px[2 * i]} << 8) | px[2 * i + 1];
    return std::min(static_cast<float>(v), static_cast<float>(hd.maxval));
  };
  GreyImage img;
  img.w = hd.w;
  img.h = hd.h;
  img.path = origin;
  img.pixels.resize(n);
  const float scale = 1.0f / static_cast<float>(hd.maxval);
  for (int64_t i = 0; i < n; ++i) {
    img.pixels[i] = channels == 1 ? sample(i) * scale
                                  : Luma(sample(3 * i), sample(3 * i + 1), sample(3 * i + 2)) * scale;
  }
  return img;
}

// ---- JPEG (libjpeg-turbo) ----

// libjpeg reports errors through a callback that must not return; it jumps back to DecodeJpeg.
// Warnings (corrupt data libjpeg can step over) are errors too: a training image with a grey band
// where its data was lost is worse than a skipped one.
struct JpegErrors {
  jpeg_error_mgr mgr;
  jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

[[noreturn]] void JpegFail(j_common_ptr c) {
  auto* e = reinterpret_cast<JpegErrors*>(c->err);
  (*c->err->format_message)(c, e->message);
  std::longjmp(e->jump, 1);
}
void JpegMessage(j_common_ptr c, int level) {
  if (level < 0) JpegFail(c);  // a warning; trace messages (level >= 0) are ignored
}
// A progressive JPEG can hold thousands of tiny scans, each a pass over the whole image (the
// libjpeg-turbo fuzzers cap them likewise): more than 500 is refused.
constexpr int kMaxJpegScans = 500;
void JpegProgress(j_common_ptr c) {
  auto* d = reinterpret_cast<j_decompress_ptr>(c);
  if (d->input_scan_number > kMaxJpegScans) {
    auto* e = reinterpret_cast<JpegErrors*>(c->err);
    std::snprintf(e->message, sizeof e->message, "more than %d progressive scans", kMaxJpegScans);
    std::longjmp(e->jump, 1);
  }
}

// Decodes into `img` (already named). Only plain data lives in this frame across setjmp.
Status DecodeJpeg(std::string_view b, int64_t max_pixels, GreyImage* img) {
  jpeg_decompress_struct cinfo;
  JpegErrors err;
  jpeg_progress_mgr progress;
  cinfo.err = jpeg_std_error(&err.mgr);
  err.mgr.error_exit = JpegFail;
  err.mgr.emit_message = JpegMessage;
  err.message[0] = '\0';
  if (setjmp(err.jump)) {
    jpeg_destroy_decompress(&cinfo);
    return absl::DataLossError("cannot decode " + img->path + ": " + err.message);
  }
  jpeg_create_decompress(&cinfo);
  progress.progress_monitor = JpegProgress;
  cinfo.progress = &progress;
  jpeg_mem_src(&cinfo, reinterpret_cast<const unsigned char*>(b.data()), static_cast<unsigned long>(b.size()));
  jpeg_read_header(&cinfo, TRUE);
  if (int64_t{cinfo.image_width} * cinfo.image_height > max_pixels) {
    const Status s = TooLarge(img->path, cinfo.image_width, cinfo.image_height, max_pixels);
    jpeg_destroy_decompress(&cinfo);
    return s;
  }
  cinfo.out_color_space = JCS_GRAYSCALE;  // libjpeg converts YCbCr, RGB and CMYK-free files
  jpeg_start_decompress(&cinfo);
  img->w = cinfo.output_width;
  img->h = cinfo.output_height;
  img->pixels.assign(static_cast<size_t>(img->w) * img->h, 0.0f);
  // One row of bytes: the image's row buffer, allocated by libjpeg so it is freed with cinfo.
  JSAMPARRAY row = (*cinfo.mem->alloc_sarray)(reinterpret_cast<j_common_ptr>(&cinfo), JPOOL_IMAGE,
                                               cinfo.output_width * cinfo.output_components, 1);
  while (cinfo.output_scanline < cinfo.output_height) {
    const int64_t y = cinfo.output_scanline;
    jpeg_read_scanlines(&cinfo, row, 1);
    float* dst = img->pixels.data() + y * img->w;
    for (int64_t x = 0; x < img->w; ++x) dst[x] = row[0][x] / 255.0f;
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return absl::OkStatus();
}

// ---- PNG (libpng's simplified API) ----

StatusOr<GreyImage> DecodePng(std::string_view b, const std::string& origin, int64_t max_pixels) {
  png_image png;
  std::memset(&png, 0, sizeof png);
  png.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_memory(&png, b.data(), b.size()))
    return absl::DataLossError("cannot decode " + origin + ": " + png.message);
  if (int64_t{png.width} * png.height > max_pixels) {
    png_image_free(&png);
    return TooLarge(origin, png.width, png.height, max_pixels);
  }
  // 8-bit gamma-encoded RGBA, alpha ignored (as in a JPEG export of the picture).
  png.format = PNG_FORMAT_RGBA;
  std::vector<unsigned char> rgba(PNG_IMAGE_SIZE(png));
  if (!png_image_finish_read(&png, nullptr, rgba.data(), 0, nullptr))
    return absl::DataLossError("cannot decode " + origin + ": " + png.message);
  GreyImage img;
  img.w = png.width;
  img.h = png.height;
  img.path = origin;
  img.pixels.resize(static_cast<size_t>(img.w) * img.h);
  for (size_t i = 0; i < img.pixels.size(); ++i)
    img.pixels[i] = Luma(rgba[4 * i], rgba[4 * i + 1], rgba[4 * i + 2]) / 255.0f;
  return img;
}

}  // namespace

StatusOr<GreyImage> DecodeGreyFromMemory(std::string_view bytes, const std::string& origin, int64_t max_pixels) {
  if (bytes.size() > size_t{1} << 30) return absl::DataLossError("image " + origin + " is larger than 1 GiB");
  auto starts = [&](std::string_view magic) { return bytes.substr(0, magic.size()) == magic; };
  StatusOr<GreyImage> img = absl::DataLossError("");
  if (starts("\xff\xd8\xff")) {
    GreyImage g;
    g.path = origin;
    if (Status s = DecodeJpeg(bytes, max_pixels, &g); !s.ok()) return s;
    img = std::move(g);
  } else if (starts("\x89PNG\r\n\x1a\n")) {
    img = DecodePng(bytes, origin, max_pixels);
  } else if (starts("P5") || starts("P6")) {
    img = DecodePnm(bytes, origin, max_pixels);
  } else {
    return absl::DataLossError("cannot decode " + origin + ": not a JPEG, PNG or binary PNM (P5/P6) file");
  }
  if (img.ok() && (img->w < 1 || img->h < 1))
    return absl::DataLossError("image " + origin + " has no pixels (" + std::to_string(img->w) + "x" +
                               std::to_string(img->h) + ")");
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
    if (ext != ".jpg" && ext != ".jpeg" && ext != ".png" && ext != ".pgm" && ext != ".ppm") continue;
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

namespace {

// The square (x0, y0, side) of img resized to o.size x o.size into out, then normalized.
void CutSquare(const GreyImage& img, int64_t x0, int64_t y0, int64_t side, const CropOptions& o, float* out) {
  stbir_resize_float(img.pixels.data() + y0 * img.w + x0, static_cast<int>(side), static_cast<int>(side),
                     static_cast<int>(img.w * sizeof(float)), out, static_cast<int>(o.size),
                     static_cast<int>(o.size), 0, 1);
  // Zero mean, unit variance per crop (the contrast is learned from, not the brightness).
  NormalizeContrast(out, o.size * o.size);
}

// The value at fraction q of v (sorted in place).
int64_t Quantile(std::vector<int64_t>* v, double q) {
  std::sort(v->begin(), v->end());
  return (*v)[std::min(v->size() - 1, static_cast<size_t>(q * static_cast<double>(v->size())))];
}

std::string FolderOf(const std::string& path) { return path.substr(0, path.find_last_of('/') + 1); }

}  // namespace

std::vector<Region> MotionRegions(const ImageFolder& f, int64_t min_side, double min_change) {
  std::vector<Region> out(f.images.size());
  constexpr int64_t kBlock = 4;
  for (size_t i = 0; i < f.images.size(); ++i) {
    const GreyImage& a = f.images[i];
    const GreyImage* b = nullptr;
    for (size_t j : {i + 1, i - 1}) {  // i - 1 wraps past the end for i = 0: skipped by the bound
      if (j >= f.images.size()) continue;
      const GreyImage& c = f.images[j];
      if (c.w == a.w && c.h == a.h && FolderOf(c.path) == FolderOf(a.path)) {
        b = &c;
        break;
      }
    }
    const int64_t short_side = std::min(a.w, a.h);
    if (!b || short_side < min_side) continue;
    std::vector<int64_t> xs, ys;
    for (int64_t by = 0; by + kBlock <= a.h; by += kBlock)
      for (int64_t bx = 0; bx + kBlock <= a.w; bx += kBlock) {
        double d = 0.0;
        for (int64_t y = by; y < by + kBlock; ++y)
          for (int64_t x = bx; x < bx + kBlock; ++x) d += std::fabs(a.pixels[y * a.w + x] - b->pixels[y * a.w + x]);
        if (d / (kBlock * kBlock) > min_change) {
          xs.push_back(bx + kBlock / 2);
          ys.push_back(by + kBlock / 2);
        }
      }
    if (xs.size() < 4) continue;
    const int64_t cx = Quantile(&xs, 0.5), cy = Quantile(&ys, 0.5);
    const int64_t spread = std::max(Quantile(&xs, 0.9) - Quantile(&xs, 0.1), Quantile(&ys, 0.9) - Quantile(&ys, 0.1));
    const int64_t side = std::clamp<int64_t>(std::lround(1.3 * static_cast<double>(spread)), min_side, short_side);
    out[i] = {std::clamp<int64_t>(cx - side / 2, 0, a.w - side), std::clamp<int64_t>(cy - side / 2, 0, a.h - side), side};
  }
  return out;
}

void CropStream::Crop(const GreyImage& img, const CropOptions& o, Random* rng, float* out) {
  const int64_t short_side = std::min(img.w, img.h);
  const int64_t lo = std::min(short_side, std::max<int64_t>(o.size, std::lround(o.min_scale * short_side)));
  const int64_t side = lo + static_cast<int64_t>(rng->UniformInt(short_side - lo + 1));
  const int64_t x0 = static_cast<int64_t>(rng->UniformInt(img.w - side + 1));
  const int64_t y0 = static_cast<int64_t>(rng->UniformInt(img.h - side + 1));
  CutSquare(img, x0, y0, side, o, out);
}

void CropStream::CropAbout(const GreyImage& img, const Region& r, const CropOptions& o, Random* rng, float* out) {
  const int64_t short_side = std::min(img.w, img.h);
  const double scale = std::exp(rng->Uniform(std::log(0.8f), std::log(1.25f)));
  const int64_t side = std::clamp<int64_t>(std::lround(scale * static_cast<double>(r.side)), std::min(o.size, short_side), short_side);
  const double cx = static_cast<double>(r.x) + r.side / 2.0 + rng->Uniform(-0.1f, 0.1f) * static_cast<double>(r.side);
  const double cy = static_cast<double>(r.y) + r.side / 2.0 + rng->Uniform(-0.1f, 0.1f) * static_cast<double>(r.side);
  const int64_t x0 = std::clamp<int64_t>(std::lround(cx - side / 2.0), 0, img.w - side);
  const int64_t y0 = std::clamp<int64_t>(std::lround(cy - side / 2.0), 0, img.h - side);
  CutSquare(img, x0, y0, side, o, out);
}

CropStream::CropStream(const ImageFolder* folder, const CropOptions& o, std::vector<Region> regions)
    : folder_(folder), o_(o), regions_(std::move(regions)), rng_(o.seed), worker_([this] { Fill(); }) {}

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
      const size_t i = rng_.UniformInt(folder_->images.size());
      const GreyImage& img = folder_->images[i];
      float* out = batch.data() + b * o_.size * o_.size;
      if (o_.region_share > 0.0 && i < regions_.size() && regions_[i].side > 0 && rng_.Uniform() < o_.region_share)
        CropAbout(img, regions_[i], o_, &rng_, out);
      else
        Crop(img, o_, &rng_, out);
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
