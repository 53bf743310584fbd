#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "distbelief/io/checkpoint.h"
#include "distbelief/io/metrics.h"
#include "distbelief/io/mnist.h"
#include "distbelief/io/tfevents.h"

namespace distbelief {
namespace {

namespace fs = std::filesystem;

std::string TempDir(const std::string& name) {
  const fs::path p = fs::temp_directory_path() / ("distbelief_io_test_" + name);
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteAll(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

Checkpoint Sample() {
  Checkpoint c;
  Tensor a({2, 3}), b({5});
  for (int i = 0; i < 6; ++i) a[i] = 0.5f * i;
  for (int i = 0; i < 5; ++i) b[i] = -1.0f - i;
  c.tensors.emplace("layer.w", a);
  c.tensors.emplace("layer.b", b);
  c.metadata["step"] = "42";
  return c;
}

TEST(Checkpoint, RoundTrips) {
  const std::string path = TempDir("rt") + "/c.safetensors";
  ASSERT_TRUE(WriteCheckpoint(path, Sample()).ok());
  auto c = ReadCheckpoint(path);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->metadata.at("step"), "42");
  EXPECT_EQ(c->tensors.at("layer.w").shape(), (Shape{2, 3}));
  EXPECT_EQ(c->tensors.at("layer.w")[5], 2.5f);
  EXPECT_EQ(c->tensors.at("layer.b")[4], -5.0f);
  for (const auto& e : fs::directory_iterator(fs::path(path).parent_path()))
    EXPECT_EQ(e.path().filename(), "c.safetensors") << "temporary file left behind";
}

TEST(Checkpoint, NumpyReadsItAsStandardSafetensors) {
  const std::string path = TempDir("np") + "/c.safetensors";
  ASSERT_TRUE(WriteCheckpoint(path, Sample()).ok());
  const std::string out = TempDir("np_out") + "/out.txt";
  const std::string cmd = "/usr/bin/python3 testing/read_safetensors.py " + path + " > " + out;
  ASSERT_EQ(std::system(cmd.c_str()), 0) << "the numpy reader rejected the file";
  EXPECT_EQ(ReadAll(out),
            "layer.b [5] -15.000000\nlayer.w [2, 3] 7.500000\nmetadata distbelief.crc32 step\n");
}

TEST(Checkpoint, TruncatedOrCorruptFilesAreDataLossAndNeverLoaded) {
  const std::string dir = TempDir("bad");
  const std::string good = dir + "/good.safetensors";
  ASSERT_TRUE(WriteCheckpoint(good, Sample()).ok());
  const std::string bytes = ReadAll(good);
  struct Case {
    std::string name, bytes, expect;
  };
  std::string flipped = bytes;
  flipped[flipped.size() - 3] ^= 0x40;  // one bit of tensor data
  std::string bad_json = bytes;
  bad_json[9] = '#';
  const std::vector<Case> cases = {
      {"empty", "", "truncated"},
      {"short", bytes.substr(0, 5), "truncated"},
      {"cut header", bytes.substr(0, 40), "truncated"},
      {"cut data", bytes.substr(0, bytes.size() - 4), "outside the file"},
      {"flipped bit", flipped, "checksum mismatch"},
      {"bad json", bad_json, "not a JSON object"},
  };
  for (const Case& c : cases) {
    const std::string p = dir + "/case.safetensors";
    WriteAll(p, c.bytes);
    auto r = ReadCheckpoint(p);
    ASSERT_FALSE(r.ok()) << c.name;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss) << c.name;
    EXPECT_NE(r.status().message().find(c.expect), std::string::npos) << c.name << ": " << r.status();
  }
  EXPECT_EQ(ReadCheckpoint(dir + "/missing").status().code(), absl::StatusCode::kNotFound);
}

// The bytes of a checkpoint with one edit to its JSON header (the length prefix rewritten).
std::string EditHeader(const std::string& bytes, const std::string& from, const std::string& to) {
  uint64_t hlen = 0;
  for (int i = 0; i < 8; ++i) hlen |= uint64_t{static_cast<unsigned char>(bytes[i])} << (8 * i);
  std::string header = bytes.substr(8, hlen);
  const size_t at = header.find(from);
  EXPECT_NE(at, std::string::npos) << from << " not in " << header;
  if (at == std::string::npos) return bytes;
  header.replace(at, from.size(), to);
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(header.size() >> (8 * i));
  return out + header + bytes.substr(8 + hlen);
}

// Each of these was accepted before (a deleted checksum turned the check off; overlapping
// offsets loaded garbage; NaN weights loaded) or could exhaust memory (a shape larger than the
// file was allocated before its size was checked).
TEST(Checkpoint, HeadersThatLieAreRefused) {
  const std::string dir = TempDir("lies");
  ASSERT_TRUE(WriteCheckpoint(dir + "/good.safetensors", Sample()).ok());
  const std::string bytes = ReadAll(dir + "/good.safetensors");
  Checkpoint nan = Sample();
  nan.tensors.at("layer.w")[3] = std::nanf("");
  ASSERT_TRUE(WriteCheckpoint(dir + "/nan.safetensors", nan).ok());
  Checkpoint inf = Sample();
  inf.tensors.at("layer.b")[0] = -INFINITY;
  ASSERT_TRUE(WriteCheckpoint(dir + "/inf.safetensors", inf).ok());
  struct Case {
    std::string name, bytes, expect;
  };
  // Sample's data: layer.b (20 bytes) at [0,20], then layer.w (24 bytes) at [20,44].
  const std::vector<Case> cases = {
      {"no checksum", EditHeader(bytes, "\"distbelief.crc32\"", "\"distbelief.note\""), "no distbelief.crc32"},
      {"overlap", EditHeader(bytes, "[20,44]", "[16,40]"), "overlaps"},
      {"offsets past the data", EditHeader(bytes, "[20,44]", "[24,48]"), "outside the file"},
      {"huge shape", EditHeader(bytes, "[2,3]", "[4611686018427387904,4]"), "larger than the file"},
      {"overflowing shape", EditHeader(bytes, "[2,3]", "[4294967296,4294967296]"), "larger than the file"},
      {"shape and bytes disagree", EditHeader(bytes, "[2,3]", "[3,3]"), "does not match"},
      {"nan", ReadAll(dir + "/nan.safetensors"), "NaN or Inf"},
      {"inf", ReadAll(dir + "/inf.safetensors"), "NaN or Inf"},
  };
  for (const Case& c : cases) {
    auto r = ParseCheckpoint(c.bytes, c.name);
    ASSERT_FALSE(r.ok()) << c.name;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss) << c.name;
    EXPECT_NE(r.status().message().find(c.expect), std::string::npos) << c.name << ": " << r.status();
  }
  // Tensors that leave bytes between them: layer.b shrunk to [0,16] leaves 16..20 unindexed.
  Checkpoint gap = Sample();
  ASSERT_TRUE(WriteCheckpoint(dir + "/gap.safetensors", gap).ok());
  auto r = ParseCheckpoint(EditHeader(EditHeader(ReadAll(dir + "/gap.safetensors"), "[0,20]", "[0,16]"), "[5]", "[4]"),
                           "gap");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("belong to no tensor"), std::string::npos) << r.status();
  // A folder is not a checkpoint.
  EXPECT_EQ(ReadCheckpoint(dir).status().code(), absl::StatusCode::kInvalidArgument);
  // The unedited file still loads, so the cases above fail for their edit alone.
  EXPECT_TRUE(ParseCheckpoint(bytes, "good").ok());
}

TEST(Checkpoint, FailedWriteLeavesTheOldFileAlone) {
  const std::string dir = TempDir("atomic");
  const std::string path = dir + "/c.safetensors";
  ASSERT_TRUE(WriteCheckpoint(path, Sample()).ok());
  const std::string before = ReadAll(path);
  // A directory where the temporary file should go makes the write fail.
  fs::create_directories(path + ".tmp." + std::to_string(::getpid()));
  Checkpoint other = Sample();
  other.metadata["step"] = "43";
  EXPECT_FALSE(WriteCheckpoint(path, other).ok());
  EXPECT_EQ(ReadAll(path), before);
}

TEST(Mnist, ReadsTheRealFilesAndRejectsBrokenOnes) {
  auto test = ReadMnist("data/mnist", "t10k");
  ASSERT_TRUE(test.ok()) << test.status() << " (run scripts/setup.sh)";
  EXPECT_EQ(test->images.shape(), (Shape{10000, 784}));
  int counts[10] = {};
  for (int64_t i = 0; i < 10000; ++i) counts[static_cast<int>(test->labels[i])]++;
  EXPECT_EQ(counts[0], 980);  // MNIST's published test-label counts
  EXPECT_EQ(counts[9], 1009);

  const std::string dir = TempDir("mnist");
  WriteAll(dir + "/t10k-images-idx3-ubyte", ReadAll("data/mnist/t10k-images-idx3-ubyte").substr(0, 5000));
  WriteAll(dir + "/t10k-labels-idx1-ubyte", ReadAll("data/mnist/t10k-labels-idx1-ubyte"));
  auto bad = ReadMnist(dir, "t10k");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(bad.status().message().find("truncated"), std::string::npos);
  EXPECT_EQ(ReadMnist(dir, "train").status().code(), absl::StatusCode::kNotFound);
}

// Headers whose counts multiply past 64 bits (signed overflow before) or past the file are
// refused without allocating; a tiny consistent pair parses.
TEST(Mnist, HeadersAreCheckedAgainstTheBytesWithoutOverflow) {
  auto header = [](uint32_t magic, std::vector<uint32_t> dims) {
    std::string h;
    dims.insert(dims.begin(), magic);
    for (uint32_t v : dims)
      for (int b = 3; b >= 0; --b) h.push_back(static_cast<char>(v >> (8 * b)));
    return h;
  };
  const std::string labels = header(0x801, {2}) + std::string("\x03\x07", 2);
  for (const auto& dims : std::vector<std::vector<uint32_t>>{
           {0x80000000u, 0x80000000u, 2}, {0xffffffffu, 0xffffffffu, 0xffffffffu}, {2, 1u << 31, 1u << 31}, {2, 0, 5}}) {
    auto r = ParseMnist(header(0x803, dims) + std::string(4, '\x10'), labels, "img", "lab");
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss);
    EXPECT_NE(r.status().message().find("truncated or oversized"), std::string::npos) << r.status();
  }
  auto good = ParseMnist(header(0x803, {2, 1, 2}) + std::string("\x00\xff\x10\x20", 4), labels, "img", "lab");
  ASSERT_TRUE(good.ok()) << good.status();
  EXPECT_EQ(good->images.shape(), (Shape{2, 2}));
  EXPECT_FLOAT_EQ(good->images[1], 1.0f);
  EXPECT_EQ(good->labels[1], 7.0f);
}

TEST(Progress, FormatsDurations) {
  EXPECT_EQ(Progress::FormatDuration(12.2), "12s");
  EXPECT_EQ(Progress::FormatDuration(185), "3m05s");
  EXPECT_EQ(Progress::FormatDuration(3720), "1h02m");
}

// CRC32C against a bitwise reference (the Castagnoli polynomial, reflected) and its check value.
uint32_t BitwiseCrc32c(const std::string& s) {
  uint32_t crc = 0xffffffffu;
  for (unsigned char c : s) {
    crc ^= c;
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0x82f63b78u & (0u - (crc & 1u)));
  }
  return ~crc;
}

TEST(TensorBoard, Crc32cMatchesTheReference) {
  EXPECT_EQ(Crc32c("123456789", 9), 0xe3069283u);  // the standard check value
  std::string s;
  for (int i = 0; i < 1000; ++i) {
    s.push_back(static_cast<char>(i * 37 + 11));
    if (i % 97 == 0) {
      EXPECT_EQ(Crc32c(s.data(), s.size()), BitwiseCrc32c(s)) << i;
    }
  }
  const uint32_t c = BitwiseCrc32c(s);
  EXPECT_EQ(MaskedCrc32c(s.data(), s.size()), ((c >> 15) | (c << 17)) + 0xa282ead8u);
}

// The metrics writer's TensorBoard twin: every number but the step, at its step, zeros included;
// the reader checks both CRCs of each record.
TEST(TensorBoard, MetricsBecomeScalarsThatReadBackAndCorruptionIsCaught) {
  const std::string dir = TempDir("tb");
  {
    MetricsWriter w;
    ASSERT_TRUE(w.Open(dir + "/metrics.jsonl", /*tensorboard=*/true).ok());
    w.Write(Metrics{{"step", 100}, {"train_loss", 2.5}, {"lr", 0.0}});
    w.Write(nlohmann::json{{"step", 200}, {"train_loss", 1.25}, {"note", "text is skipped"}});
  }
  std::string events;
  for (const auto& f : fs::directory_iterator(dir))
    if (f.path().filename().string().rfind("events.out.tfevents.", 0) == 0) events = f.path().string();
  ASSERT_FALSE(events.empty());
  auto r = ReadScalarEvents(events);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->size(), 3u);
  std::map<std::pair<int64_t, std::string>, float> got;
  for (const ScalarEvent& e : *r) {
    got[{e.step, e.tag}] = e.value;
    EXPECT_GT(e.wall_time, 1.6e9);
  }
  EXPECT_FLOAT_EQ((got[{100, "train_loss"}]), 2.5f);
  EXPECT_EQ(got.count({100, "lr"}), 1u);
  EXPECT_FLOAT_EQ((got[{200, "train_loss"}]), 1.25f);

  std::string bytes = ReadAll(events);
  std::string flipped = bytes;
  flipped[flipped.size() - 6] ^= 0x20;  // inside the last record's data
  auto bad = ParseScalarEvents(flipped, "flipped");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("data CRC mismatch"), std::string::npos) << bad.status();
  auto cut = ParseScalarEvents(bytes.substr(0, bytes.size() - 3), "cut");
  ASSERT_FALSE(cut.ok());
  EXPECT_NE(cut.status().message().find("truncated"), std::string::npos) << cut.status();
  std::string len = bytes;
  len[0] ^= 1;
  EXPECT_NE(ParseScalarEvents(len, "len").status().message().find("length CRC"), std::string::npos);
  EXPECT_EQ(ReadScalarEvents(dir + "/missing").status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace distbelief
