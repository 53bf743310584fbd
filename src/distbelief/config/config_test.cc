// The config reader: typed keys with ranges, enums by name, overrides, and every unknown section
// or key named; the engine's sections parse into typed options with their cross-field checks.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "distbelief/config/config.h"

namespace distbelief {
namespace {

enum class Color { kRed, kBlue };

struct Options {
  int64_t epochs = 10;
  float rate = 0.1f;
  Color color = Color::kRed;
  std::vector<int64_t> widths = {1};
  std::string dir = "d";
};

Status Read(ConfigFile* f, Options* o) {
  Section& s = f->section("train");
  DB_RETURN_IF_ERROR(s.Int("epochs", &o->epochs, 1, 1000));
  DB_RETURN_IF_ERROR(s.Float("rate", &o->rate, 0.0, 1.0));
  DB_RETURN_IF_ERROR(s.Enum("color", &o->color, {{"red", Color::kRed}, {"blue", Color::kBlue}}));
  DB_RETURN_IF_ERROR(s.IntList("widths", &o->widths, 1, 100));
  DB_RETURN_IF_ERROR(s.String("dir", &o->dir));
  return f->CheckAllRead();
}

StatusOr<Options> ParseOptions(const std::string& text, const std::vector<std::string>& overrides = {}) {
  DB_ASSIGN_OR_RETURN(ConfigFile f, ConfigFile::Parse(text, "t.toml", overrides));
  Options o;
  DB_RETURN_IF_ERROR(Read(&f, &o));
  return o;
}

TEST(Config, ReadsTypedKeysAndOverrides) {
  auto o = ParseOptions("[train]\nepochs = 3\ncolor = \"blue\"\n", {"train.rate=0.5", "train.dir=\"/x\""});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->epochs, 3);
  EXPECT_FLOAT_EQ(o->rate, 0.5f);
  EXPECT_EQ(o->color, Color::kBlue);
  EXPECT_EQ(o->widths, (std::vector<int64_t>{1}));  // absent: the default stays
  EXPECT_EQ(o->dir, "/x");
}

TEST(Config, RejectsBadInputNamingTheKey) {
  struct Case {
    std::string text, expect;
  };
  const std::vector<Case> cases = {
      {"[train]\nepohcs = 3\n", "unknown key 'train.epohcs'"},
      {"[trian]\nx = 1\n", "unknown section [trian]"},
      {"[train]\nepochs = \"three\"\n", "train.epochs must be an integer"},
      {"[train]\nepochs = 0\n", "train.epochs = 0 is outside"},
      {"[train]\ncolor = \"green\"\n", "train.color = \"green\" is not one of: red, blue"},
      {"[train]\nrate = -1.0\n", "train.rate"},
      {"[train]\nwidths = [10, \"x\"]\n", "train.widths must be an array of integers"},
      {"[train\n", "not valid TOML"},
      {"", "is empty"},
      {"# only a comment\n", "is empty"},
      {"x = 1\n", "must be a [section]"},
  };
  for (const Case& c : cases) {
    auto r = ParseOptions(c.text);
    ASSERT_FALSE(r.ok()) << c.text;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
    EXPECT_NE(r.status().message().find(c.expect), std::string::npos) << r.status();
  }
  EXPECT_FALSE(ParseOptions("[train]\nepochs = 3\n", {"nodot=1"}).ok());
  EXPECT_FALSE(ParseOptions("[train]\nepochs = 3\n", {"train.dir=unquoted"}).ok());
}

TEST(Config, MissingFilesAndFoldersAreClearErrors) {
  EXPECT_EQ(ConfigFile::Load("/nonexistent.toml").status().code(), absl::StatusCode::kNotFound);
  const auto dir = std::filesystem::temp_directory_path() / "distbelief_config_test_dir";
  std::filesystem::create_directories(dir);
  const auto folder = ConfigFile::Load(dir.string());
  EXPECT_EQ(folder.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(folder.status().message().find("is a folder"), std::string::npos);
  EXPECT_EQ(ConfigFile::Load("/dev/null").status().code(), absl::StatusCode::kInvalidArgument);
}

// TOML is UTF-8. Found by fuzz/config_fuzz: Debian's toml11 reads past its buffer on invalid
// bytes inside a literal string, so such text is refused, naming the line, before it parses.
TEST(Config, TextThatIsNotUtf8IsRefusedBeforeParsing) {
  std::string crash = "'2" + std::string(16, '\xff') + "'2" + std::string(30, '\xff');
  for (const std::string& bad : {crash, std::string("[train]\nepochs = 3\ndir = \"\xc3\x28\"\n"),
                                 std::string("[train]\ndir = \"\xed\xa0\x80\"\n"),  // a surrogate
                                 std::string("[train]\ndir = \"\xc0\xaf\"\n"),      // overlong '/'
                                 std::string("[train]\ndir = \"\xf4\x90\x80\x80\"\n"),  // past U+10FFFF
                                 std::string("[train]\ndir = \"\xe2\x82\"\n")}) {  // cut short
    auto r = ParseOptions(bad);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("not valid UTF-8"), std::string::npos) << r.status();
  }
  auto line = ParseOptions("[train]\nepochs = 3\ndir = \"\xff\"\n");
  EXPECT_NE(line.status().message().find("line 3"), std::string::npos) << line.status();
  auto set = ParseOptions("[train]\nepochs = 3\n", {"train.dir=\"\xff\""});
  EXPECT_NE(set.status().message().find("not valid UTF-8"), std::string::npos) << set.status();
  auto ok = ParseOptions("[train]\ndir = \"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"\n");  // 2, 3, 4 bytes
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->dir, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
}

}  // namespace
}  // namespace distbelief
