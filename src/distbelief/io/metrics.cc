#include "distbelief/io/metrics.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

namespace distbelief {

MetricsWriter::~MetricsWriter() {
  if (f_) std::fclose(f_);
}

Status MetricsWriter::Open(const std::string& path, bool tensorboard) {
  if (path.empty()) return absl::OkStatus();
  std::error_code ec;
  const std::filesystem::path p(path);
  if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path(), ec);
  f_ = std::fopen(path.c_str(), "a");
  if (!f_) return absl::UnavailableError("cannot open metrics file " + path + ": " + std::strerror(errno));
  if (tensorboard) {
    events_ = std::make_unique<EventWriter>();
    return events_->Open(p.has_parent_path() ? p.parent_path().string() : ".");
  }
  return absl::OkStatus();
}

void MetricsWriter::Write(const nlohmann::json& record) {
  if (!f_) return;
  const std::string line = record.dump() + "\n";
  std::fwrite(line.data(), 1, line.size(), f_);
  std::fflush(f_);
  ++records_;
  if (!events_ || !record.is_object()) return;
  // Every number but the step becomes a scalar; records without a step count from 1.
  int64_t step = records_;
  std::vector<std::pair<std::string, double>> scalars;
  for (const auto& [k, v] : record.items()) {
    if (!v.is_number()) continue;
    if (k == "step") {
      step = static_cast<int64_t>(v.get<double>());
    } else {
      scalars.emplace_back(k, v.get<double>());
    }
  }
  if (scalars.empty()) return;
  const double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  if (Status s = events_->WriteScalars(step, now, scalars); !s.ok()) {
    std::fprintf(stderr, "warning: %s; TensorBoard events stop here\n", std::string(s.message()).c_str());
    events_.reset();
  }
}

void MetricsWriter::Write(const Metrics& record) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [k, v] : record) j[k] = v;
  Write(j);
}

Progress::Progress(int64_t total, std::string unit)
    : total_(total), unit_(std::move(unit)), tty_(::isatty(STDERR_FILENO)) {
  start_ = last_ = std::chrono::steady_clock::now();
}

std::string Progress::FormatDuration(double s) {
  char buf[32];
  const int64_t t = static_cast<int64_t>(s + 0.5);
  if (t >= 3600)
    std::snprintf(buf, sizeof(buf), "%ldh%02ldm", long(t / 3600), long(t % 3600 / 60));
  else if (t >= 60)
    std::snprintf(buf, sizeof(buf), "%ldm%02lds", long(t / 60), long(t % 60));
  else
    std::snprintf(buf, sizeof(buf), "%lds", long(t));
  return buf;
}

void Progress::Update(int64_t done, const std::string& status) {
  const auto now = std::chrono::steady_clock::now();
  const double since_last = std::chrono::duration<double>(now - last_).count();
  if (since_last < (tty_ ? 0.2 : 5.0) && done < total_) return;
  last_ = now;
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  const double rate = elapsed > 0 ? done / elapsed : 0.0;
  const double eta = rate > 0 ? (total_ - done) / rate : 0.0;
  char buf[256];
  std::snprintf(buf, sizeof(buf), "%5.1f%% %ld/%ld %s | %.0f %s/s | elapsed %s | ETA %s | %s",
                total_ ? 100.0 * done / total_ : 100.0, long(done), long(total_), unit_.c_str(),
                rate, unit_.c_str(), FormatDuration(elapsed).c_str(), FormatDuration(eta).c_str(),
                status.c_str());
  if (tty_)
    std::fprintf(stderr, "\r\033[K%s", buf);
  else
    std::fprintf(stderr, "%s\n", buf);
  std::fflush(stderr);
}

void Progress::Finish() {
  if (tty_) std::fprintf(stderr, "\n");
}

}  // namespace distbelief
