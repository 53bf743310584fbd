#include "distbelief/dashboard/dashboard.h"

#include <httplib.h>
#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#ifndef DISTBELIEF_WEB_DIR
#define DISTBELIEF_WEB_DIR "web"
#endif
#ifndef DISTBELIEF_UPLOT_DIR
#define DISTBELIEF_UPLOT_DIR "data/npm/uplot/package/dist"
#endif

namespace distbelief {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// With a charset, cpp-httplib does not compress JSON: it would brotli every answer at quality 11,
// which cost more CPU than everything else the server does (bench/dashboard_overhead.py).
constexpr const char* kJson = "application/json; charset=utf-8";

bool IsLoopback(const std::string& host) {
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

std::optional<std::string> ReadSmallFile(const fs::path& p, size_t cap) {
  std::error_code ec;
  if (!fs::is_regular_file(p, ec)) return std::nullopt;
  const auto size = fs::file_size(p, ec);
  if (ec || size > cap) return std::nullopt;
  std::ifstream in(p, std::ios::binary);
  if (!in) return std::nullopt;
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

// Complete lines of metrics.jsonl from byte `offset` on; the offset advances past them (a line
// still being written, without its newline, waits for the next call). Lines that are not JSON
// objects are skipped.
std::vector<json> ReadNewRecords(const fs::path& file, std::streamoff* offset) {
  std::vector<json> out;
  std::ifstream in(file, std::ios::binary);
  if (!in) return out;
  in.seekg(*offset);
  std::string line;
  while (std::getline(in, line)) {
    if (in.eof()) break;  // no newline yet
    *offset += static_cast<std::streamoff>(line.size()) + 1;
    json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_object()) out.push_back(std::move(j));
  }
  return out;
}

// The "config" string a checkpoint's safetensors header carries, read without its tensors.
std::string CheckpointConfig(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  unsigned char n8[8];
  if (!in.read(reinterpret_cast<char*>(n8), 8)) return "";
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t{n8[i]} << (8 * i);
  if (n > (uint64_t{16} << 20)) return "";
  std::string header(n, '\0');
  if (!in.read(header.data(), static_cast<std::streamsize>(n))) return "";
  const json j = json::parse(header, nullptr, false);
  if (!j.is_object() || !j.contains("__metadata__")) return "";
  const json& m = j["__metadata__"];
  return m.is_object() && m.contains("config") && m["config"].is_string() ? m["config"].get<std::string>() : "";
}

bool SafeRelativePath(const std::string& name) {
  if (name.empty() || name.size() > 512 || name[0] == '/' || name.find("..") != std::string::npos) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.' || c == '/';
  });
}

// `distbelief train` keeps its pid in run_dir/train.pid while it runs. With the file: running if
// that process is a live distbelief, else stopped (it died without removing it). Without it (a
// finished run, or one that launch's roles write): finished if it has a checkpoint, else running
// if its metrics changed in the last `live` seconds, else stopped.
std::string PidStatus(const fs::path& dir) {
  auto text = ReadSmallFile(dir / "train.pid", 64);
  if (!text) return "";
  long pid = 0;
  try {
    pid = std::stol(*text);
  } catch (...) {
    return "stopped";
  }
  auto cmdline = ReadSmallFile("/proc/" + std::to_string(pid) + "/cmdline", 1 << 16);
  return pid > 0 && cmdline && cmdline->find("distbelief") != std::string::npos ? "running" : "stopped";
}

bool IsPicture(const fs::path& p) { return p.extension() == ".png" || p.extension() == ".svg"; }

// The server's pool: cpp-httplib's task queue on threads named "dashboard", so their CPU time can
// be told apart from training's in /proc (bench/dashboard_overhead.py reads it).
class NamedPool : public httplib::TaskQueue {
 public:
  explicit NamedPool(int n) {
    for (int i = 0; i < n; ++i)
      threads_.emplace_back([this] {
        pthread_setname_np(pthread_self(), "dashboard");
        Loop();
      });
  }
  void enqueue(std::function<void()> fn) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      jobs_.push_back(std::move(fn));
    }
    cv_.notify_one();
  }
  void shutdown() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (std::thread& t : threads_) t.join();
  }

 private:
  void Loop() {
    for (;;) {
      std::function<void()> fn;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [this] { return stop_ || !jobs_.empty(); });
        if (stop_ && jobs_.empty()) return;
        fn = std::move(jobs_.front());
        jobs_.pop_front();
      }
      fn();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  std::vector<std::thread> threads_;
  bool stop_ = false;
};

void Error(httplib::Response& res, int code, const std::string& what) {
  res.status = code;
  res.set_content(json{{"error", what}}.dump(), kJson);
}

}  // namespace

class Dashboard::Impl {
 public:
  explicit Impl(DashboardOptions o) : o_(std::move(o)) {}
  ~Impl() {
    stopping_ = true;
    server_.stop();
    if (thread_.joinable()) thread_.join();
  }

  Status Start() {
    const size_t colon = o_.listen.rfind(':');
    if (colon == std::string::npos || colon == 0)
      return absl::InvalidArgumentError("--listen " + o_.listen + ": expected HOST:PORT");
    host_ = o_.listen.substr(0, colon);
    int port = -1;
    try {
      port = std::stoi(o_.listen.substr(colon + 1));
    } catch (...) {
    }
    if (port < 0 || port > 65535) return absl::InvalidArgumentError("--listen " + o_.listen + ": bad port");
    if (!IsLoopback(host_) && o_.token.empty())
      return absl::InvalidArgumentError("the dashboard serves " + host_ +
                                        ", which is not loopback: give it a token (--token or DISTBELIEF_DASHBOARD_TOKEN)");
    if (o_.web_dir.empty()) o_.web_dir = DISTBELIEF_WEB_DIR;
    if (o_.uplot_dir.empty()) o_.uplot_dir = DISTBELIEF_UPLOT_DIR;
    statics_ = {{"app.js", {o_.web_dir + "/app.js", "text/javascript"}},
                {"style.css", {o_.web_dir + "/style.css", "text/css"}},
                {"uPlot.iife.min.js", {o_.uplot_dir + "/uPlot.iife.min.js", "text/javascript"}},
                {"uPlot.min.css", {o_.uplot_dir + "/uPlot.min.css", "text/css"}}};
    for (const auto& [name, file] : statics_)
      if (!fs::is_regular_file(file.first))
        return absl::NotFoundError("dashboard file " + file.first + " is missing (web/ of the source tree; uPlot is unpacked by scripts/setup.sh)");
    if (!fs::is_regular_file(o_.web_dir + "/index.html"))
      return absl::NotFoundError("dashboard file " + o_.web_dir + "/index.html is missing");
    Routes();
    if (port == 0) {
      port_ = server_.bind_to_any_port(host_);
      if (port_ < 0) return absl::UnavailableError("cannot bind " + host_);
    } else {
      if (!server_.bind_to_port(host_, port)) return absl::UnavailableError("cannot bind " + o_.listen);
      port_ = port;
    }
    thread_ = std::thread([this] {
      pthread_setname_np(pthread_self(), "dashboard");
      server_.listen_after_bind();
    });
    return absl::OkStatus();
  }

  int port() const { return port_; }
  std::string url() const {
    const std::string host = host_.find(':') != std::string::npos ? "[" + host_ + "]" : host_;
    return "http://" + host + ":" + std::to_string(port_) + "/" + (o_.token.empty() ? "" : "?token=" + o_.token);
  }

 private:
  struct Run {
    std::string name;
    fs::path dir;
  };

  // A run folder holds metrics.jsonl (a training run), report.md (a lab's report) or scale.db
  // (a scaling sweep).
  static bool IsRunDir(const fs::path& d) {
    std::error_code ec;
    for (const char* f : {"metrics.jsonl", "report.md", "scale.db"})
      if (fs::is_regular_file(d / f, ec)) return true;
    return false;
  }

  // Every run folder under runs_dir, 4 levels deep at most.
  std::vector<Run> FindRuns() const {
    std::vector<Run> runs;
    const fs::path root(o_.runs_dir);
    std::error_code ec;
    if (IsRunDir(root)) runs.push_back({".", root});
    fs::recursive_directory_iterator it(root, fs::directory_options::skip_permission_denied, ec), end;
    for (; !ec && it != end; it.increment(ec)) {
      if (it.depth() >= 4) it.disable_recursion_pending();
      std::error_code e2;
      if (!it->is_directory(e2) || it->is_symlink(e2)) continue;
      if (IsRunDir(it->path()))
        runs.push_back({fs::relative(it->path(), root, e2).generic_string(), it->path()});
    }
    std::sort(runs.begin(), runs.end(), [](const Run& a, const Run& b) { return a.name < b.name; });
    return runs;
  }

  std::optional<Run> FindRun(const std::string& name) const {
    if (name.empty() || name.size() > 512) return std::nullopt;
    for (Run& r : FindRuns())
      if (r.name == name) return r;
    return std::nullopt;
  }

  std::string RunStatus(const fs::path& dir, double age, bool has_checkpoint) const {
    if (std::string s = PidStatus(dir); !s.empty()) return s;
    if (has_checkpoint) return "finished";
    return age < o_.live_seconds ? "running" : "stopped";
  }

  json Describe(const Run& r) const {
    const fs::path m = r.dir / "metrics.jsonl";
    std::streamoff off = 0;
    std::vector<json> records = ReadNewRecords(m, &off);
    std::error_code ec;
    const auto mtime = fs::last_write_time(m, ec);
    const double age = ec ? 1e9 : std::chrono::duration<double>(fs::file_time_type::clock::now() - mtime).count();
    const bool has_checkpoint = fs::is_regular_file(r.dir / "checkpoint.safetensors", ec);
    json pictures = json::array();
    fs::recursive_directory_iterator it(r.dir, fs::directory_options::skip_permission_denied, ec), end;
    for (; !ec && it != end && pictures.size() < 200; it.increment(ec)) {
      if (it.depth() >= 2) it.disable_recursion_pending();
      std::error_code e2;
      if (it->is_regular_file(e2) && IsPicture(it->path()))
        pictures.push_back(fs::relative(it->path(), r.dir, e2).generic_string());
    }
    std::sort(pictures.begin(), pictures.end());
    // The latest value of every key (records differ: loss records, evaluation records).
    json latest = json::object();
    for (const json& rec : records)
      for (const auto& [k, v] : rec.items()) latest[k] = v;
    return json{{"name", r.name},
                {"status", RunStatus(r.dir, age, has_checkpoint)},
                {"seconds_since_update", age},
                {"records", records.size()},
                {"last", latest},
                {"config", has_checkpoint ? CheckpointConfig(r.dir / "checkpoint.safetensors") : ""},
                {"report", ReadSmallFile(r.dir / "report.md", 256 << 10).value_or("")},
                {"pictures", pictures}};
  }

  void Routes() {
    server_.new_task_queue = [] { return new NamedPool(4); };
    server_.set_payload_max_length(1 << 16);
    server_.set_read_timeout(5, 0);
    server_.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      // Live data is never to be cached (a browser's disk cache costs it CPU beside training).
      if (req.path.rfind("/api/", 0) == 0) res.set_header("Cache-Control", "no-store");
      if (req.method != "GET" && req.method != "HEAD") {
        Error(res, 405, "the dashboard is read-only");
        return httplib::Server::HandlerResponse::Handled;
      }
      if (!o_.token.empty()) {
        const std::string bearer = "Bearer " + o_.token;
        const bool ok = (req.has_param("token") && req.get_param_value("token") == o_.token) ||
                        req.get_header_value("Authorization") == bearer;
        if (!ok) {
          Error(res, 401, "a token is required");
          return httplib::Server::HandlerResponse::Handled;
        }
      }
      return httplib::Server::HandlerResponse::Unhandled;
    });
    server_.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
      Error(res, 500, "internal error");
    });
    server_.Get("/", [this](const httplib::Request&, httplib::Response& res) {
      auto page = ReadSmallFile(o_.web_dir + "/index.html", 1 << 20);
      if (!page) return Error(res, 404, "no page");
      res.set_content(*page, "text/html; charset=utf-8");
    });
    server_.Get(R"(/static/([A-Za-z.]+))", [this](const httplib::Request& req, httplib::Response& res) {
      auto it = statics_.find(req.matches[1]);
      if (it == statics_.end()) return Error(res, 404, "no such file");
      auto body = ReadSmallFile(it->second.first, 4 << 20);
      if (!body) return Error(res, 404, "no such file");
      res.set_content(*body, it->second.second.c_str());
    });
    server_.Get("/api/runs", [this](const httplib::Request&, httplib::Response& res) {
      json runs = json::array();
      for (const Run& r : FindRuns()) runs.push_back(Describe(r));
      res.set_content(json{{"runs_dir", o_.runs_dir}, {"runs", runs}}.dump(), kJson);
    });
    server_.Get("/api/metrics", [this](const httplib::Request& req, httplib::Response& res) {
      auto run = FindRun(req.get_param_value("run"));
      if (!run) return Error(res, 404, "no such run");
      int64_t from = 0;
      if (req.has_param("from")) {
        const std::string f = req.get_param_value("from");
        if (f.empty() || f.size() > 12 || !std::all_of(f.begin(), f.end(), ::isdigit))
          return Error(res, 400, "from must be a record number");
        from = std::stoll(f);
      }
      std::streamoff off = 0;
      std::vector<json> records = ReadNewRecords(run->dir / "metrics.jsonl", &off);
      json out = json::array();
      for (size_t i = static_cast<size_t>(std::min<int64_t>(from, records.size())); i < records.size(); ++i)
        out.push_back(std::move(records[i]));
      res.set_content(out.dump(), kJson);
    });
    server_.Get("/api/cluster", [this](const httplib::Request& req, httplib::Response& res) {
      auto run = FindRun(req.get_param_value("run"));
      if (!run) return Error(res, 404, "no such run");
      std::streamoff off = 0;
      std::vector<json> records = ReadNewRecords(run->dir / "cluster.jsonl", &off);
      constexpr size_t kKeep = 300;  // five minutes at one record a second
      json out = json::array();
      for (size_t i = records.size() > kKeep ? records.size() - kKeep : 0; i < records.size(); ++i)
        out.push_back(std::move(records[i]));
      res.set_content(out.dump(), kJson);
    });
    server_.Get("/api/file", [this](const httplib::Request& req, httplib::Response& res) {
      auto run = FindRun(req.get_param_value("run"));
      if (!run) return Error(res, 404, "no such run");
      const std::string name = req.get_param_value("name");
      if (!SafeRelativePath(name) || !IsPicture(name)) return Error(res, 400, "not a picture path of the run");
      auto body = ReadSmallFile(run->dir / name, 32 << 20);
      if (!body) return Error(res, 404, "no such picture");
      res.set_content(*body, fs::path(name).extension() == ".png" ? "image/png" : "image/svg+xml");
    });
    server_.Get("/api/stream", [this](const httplib::Request& req, httplib::Response& res) {
      auto run = FindRun(req.get_param_value("run"));
      if (!run) return Error(res, 404, "no such run");
      auto offset = std::make_shared<std::streamoff>(0);
      const fs::path file = run->dir / "metrics.jsonl";
      res.set_chunked_content_provider("text/event-stream", [this, offset, file](size_t, httplib::DataSink& sink) {
        // Every record so far at once, then new ones as they are written (polled every 250 ms);
        // a comment line every 10 s keeps proxies from closing an idle stream.
        for (int idle = 0; !stopping_; ++idle) {
          std::string chunk;
          for (const json& r : ReadNewRecords(file, offset.get())) chunk += "data: " + r.dump() + "\n\n";
          if (chunk.empty() && idle % 40 == 39) chunk = ": alive\n\n";
          if (!chunk.empty()) return sink.write(chunk.data(), chunk.size());
          std::this_thread::sleep_for(std::chrono::milliseconds(250));
        }
        sink.done();
        return true;
      });
    });
  }

  DashboardOptions o_;
  std::string host_;
  int port_ = -1;
  std::map<std::string, std::pair<std::string, std::string>> statics_;  // name -> (file, type)
  httplib::Server server_;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
};

StatusOr<std::unique_ptr<Dashboard>> Dashboard::Start(const DashboardOptions& o) {
  auto impl = std::make_unique<Impl>(o);
  DB_RETURN_IF_ERROR(impl->Start());
  return std::unique_ptr<Dashboard>(new Dashboard(std::move(impl)));
}

Dashboard::Dashboard(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Dashboard::~Dashboard() = default;
int Dashboard::port() const { return impl_->port(); }
std::string Dashboard::url() const { return impl_->url(); }

}  // namespace distbelief
