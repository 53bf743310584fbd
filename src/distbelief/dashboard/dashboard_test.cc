// The dashboard's server without a browser (tools/dashboard_test.py drives the page in Chromium):
// what it lists and serves, and every edge a request can hit. Runs under the sanitizers.
#include "distbelief/dashboard/dashboard.h"

#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace distbelief {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct Tree {
  std::string root, runs, web;
};

// A runs folder with one run (three records, a half-written fourth line, a picture) and the
// page's files (stand-ins: the server only serves them).
Tree MakeTree(const std::string& name) {
  Tree t;
  t.root = (fs::temp_directory_path() / ("distbelief_dashboard_test_" + name)).string();
  fs::remove_all(t.root);
  t.runs = t.root + "/runs";
  t.web = t.root + "/web";
  fs::create_directories(t.runs + "/a/plots");
  fs::create_directories(t.runs + "/empty");
  fs::create_directories(t.web);
  std::ofstream(t.runs + "/a/metrics.jsonl") << "{\"step\": 1, \"train_loss\": 2.5}\n"
                                             << "not json\n"
                                             << "{\"step\": 2, \"train_loss\": 1.5}\n"
                                             << "{\"step\": 3, \"train_loss\": 0.5, \"test_accuracy\": 0.9}\n"
                                             << "{\"step\": 4, \"train";
  std::ofstream(t.runs + "/a/plots/curve.png") << "\x89PNG fake";
  std::ofstream(t.runs + "/a/secret.txt") << "not served";
  for (const char* f : {"index.html", "app.js", "style.css", "uPlot.iife.min.js", "uPlot.min.css"})
    std::ofstream(t.web + "/" + f) << "// " << f;
  return t;
}

DashboardOptions Options(const Tree& t) {
  DashboardOptions o;
  o.runs_dir = t.runs;
  o.listen = "127.0.0.1:0";
  o.web_dir = t.web;
  o.uplot_dir = t.web;
  return o;
}

int Status(httplib::Client& c, const std::string& path) {
  auto r = c.Get(path.c_str());
  return r ? r->status : -1;
}

TEST(Dashboard, ListsRunsAndServesRecordsPicturesAndPage) {
  const Tree t = MakeTree("serve");
  auto d = Dashboard::Start(Options(t));
  ASSERT_TRUE(d.ok()) << d.status();
  httplib::Client c("127.0.0.1", (*d)->port());
  auto runs = c.Get("/api/runs");
  ASSERT_TRUE(runs && runs->status == 200);
  EXPECT_EQ(runs->get_header_value("Cache-Control"), "no-store");  // live data is never cached
  const json j = json::parse(runs->body);
  ASSERT_EQ(j["runs"].size(), 1u);  // "empty" holds no metrics, report or sweep
  EXPECT_EQ(j["runs"][0]["name"], "a");
  EXPECT_EQ(j["runs"][0]["records"], 3);  // the bad line and the half-written one are not records
  EXPECT_EQ(j["runs"][0]["last"]["train_loss"], 0.5);
  EXPECT_EQ(j["runs"][0]["pictures"], json::array({"plots/curve.png"}));
  auto from = c.Get("/api/metrics?run=a&from=1");
  ASSERT_TRUE(from && from->status == 200);
  EXPECT_EQ(json::parse(from->body).size(), 2u);
  auto pic = c.Get("/api/file?run=a&name=plots/curve.png");
  ASSERT_TRUE(pic && pic->status == 200);
  EXPECT_EQ(pic->get_header_value("Content-Type"), "image/png");
  auto page = c.Get("/");
  ASSERT_TRUE(page && page->status == 200);
  EXPECT_EQ(page->body, "// index.html");
  EXPECT_EQ(Status(c, "/static/uPlot.min.css"), 200);
}

TEST(Dashboard, EveryBadRequestGetsA4xxAndTheServerGoesOn) {
  const Tree t = MakeTree("edges");
  auto d = Dashboard::Start(Options(t));
  ASSERT_TRUE(d.ok()) << d.status();
  httplib::Client c("127.0.0.1", (*d)->port());
  EXPECT_EQ(Status(c, "/api/metrics?run=../a"), 404);
  EXPECT_EQ(Status(c, "/api/metrics"), 404);
  EXPECT_EQ(Status(c, "/api/metrics?run=a&from=-1"), 400);
  EXPECT_EQ(Status(c, "/api/metrics?run=a&from=99999999999999999999"), 400);
  EXPECT_EQ(Status(c, "/api/file?run=a&name=../../etc/passwd.png"), 400);
  EXPECT_EQ(Status(c, "/api/file?run=a&name=/etc/x.png"), 400);
  EXPECT_EQ(Status(c, "/api/file?run=a&name=secret.txt"), 400);
  EXPECT_EQ(Status(c, "/api/file?run=a&name=missing.png"), 404);
  EXPECT_EQ(Status(c, "/api/cluster?run=zzz"), 404);
  EXPECT_EQ(Status(c, "/static/..%2F..%2Fetc%2Fpasswd"), 404);
  EXPECT_EQ(Status(c, "/nothing"), 404);
  auto post = c.Post("/api/runs", "x", "text/plain");
  ASSERT_TRUE(post);
  EXPECT_EQ(post->status, 405);
  // A request line that is not HTTP, straight on the socket.
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>((*d)->port()));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  const std::string garbage = "\x01\x02GARBAGE \xff\r\n\r\n";
  ASSERT_EQ(::write(fd, garbage.data(), garbage.size()), static_cast<ssize_t>(garbage.size()));
  char reply[64] = {};
  ASSERT_GT(::read(fd, reply, sizeof reply - 1), 0);
  ::close(fd);
  EXPECT_NE(std::string(reply).find(" 400 "), std::string::npos) << reply;
  EXPECT_EQ(Status(c, "/api/runs"), 200);
}

TEST(Dashboard, StreamsEveryRecordThenNewOnes) {
  const Tree t = MakeTree("stream");
  auto d = Dashboard::Start(Options(t));
  ASSERT_TRUE(d.ok()) << d.status();
  httplib::Client c("127.0.0.1", (*d)->port());
  std::string got;
  bool appended = false;
  auto r = c.Get("/api/stream?run=a", [&](const char* data, size_t n) {
    got.append(data, n);
    if (!appended && got.find("\"step\":3") != std::string::npos) {
      // The half-written line is finished and a new one appended, as the engine would.
      std::ofstream(t.runs + "/a/metrics.jsonl", std::ios::app) << "_loss\": 0.25}\n{\"step\": 5, \"train_loss\": 0.125}\n";
      appended = true;
    }
    return got.find("\"step\":5") == std::string::npos;  // stop once the new record came
  });
  EXPECT_NE(got.find("data: {\"step\":1,\"train_loss\":2.5}"), std::string::npos) << got;
  EXPECT_NE(got.find("\"step\":4"), std::string::npos) << got;
  EXPECT_NE(got.find("\"step\":5"), std::string::npos) << got;
  EXPECT_EQ(got.find("not json"), std::string::npos);
}

TEST(Dashboard, OtherAddressesNeedATokenAndEveryRequestCarriesIt) {
  const Tree t = MakeTree("token");
  DashboardOptions o = Options(t);
  o.listen = "0.0.0.0:0";
  auto refused = Dashboard::Start(o);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("token"), std::string::npos) << refused.status();
  o.token = "s3cret";
  auto d = Dashboard::Start(o);
  ASSERT_TRUE(d.ok()) << d.status();
  httplib::Client c("127.0.0.1", (*d)->port());
  EXPECT_EQ(Status(c, "/api/runs"), 401);
  EXPECT_EQ(Status(c, "/api/runs?token=wrong"), 401);
  EXPECT_EQ(Status(c, "/?token=s3cret"), 200);
  httplib::Headers bearer = {{"Authorization", "Bearer s3cret"}};
  auto r = c.Get("/api/runs", bearer);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

TEST(Dashboard, BadOptionsAreClearErrors) {
  const Tree t = MakeTree("options");
  DashboardOptions o = Options(t);
  o.listen = "nonsense";
  EXPECT_EQ(Dashboard::Start(o).status().code(), absl::StatusCode::kInvalidArgument);
  o.listen = "127.0.0.1:70000";
  EXPECT_EQ(Dashboard::Start(o).status().code(), absl::StatusCode::kInvalidArgument);
  o = Options(t);
  o.web_dir = t.root + "/nowhere";
  auto missing = Dashboard::Start(o);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("nowhere"), std::string::npos);
}

}  // namespace
}  // namespace distbelief
