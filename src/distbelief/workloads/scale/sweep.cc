#include "distbelief/workloads/scale/sweep.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>

#include <nlohmann/json.hpp>

#include "distbelief/base/logging.h"
#include "distbelief/base/parallel.h"
#include "distbelief/io/metrics.h"
#include "distbelief/text/corpus.h"
#include "distbelief/workloads/lm/lm.h"
#include "distbelief/workloads/scale/autoencoder_run.h"
#include "distbelief/workloads/scale/plots.h"

namespace distbelief {
namespace {

const char* Name(ScaleWorkload w) {
  switch (w) {
    case ScaleWorkload::kGpt: return "gpt";
    case ScaleWorkload::kLstm: return "lstm";
    case ScaleWorkload::kAutoencoder: return "autoencoder";
  }
  return "?";
}

std::string RunKey(ScaleWorkload w, const LmRunSpec& s, const std::string& tokenizer) {
  char buf[512];
  std::snprintf(buf, sizeof(buf),
                "%s w%lld L%lld hs%lld T%lld B%lld D%lld lr%.6g wu%lld ev%lld seed%llu tok=%s", Name(w),
                (long long)s.width, (long long)s.layers, (long long)s.head_size, (long long)s.context,
                (long long)s.batch, (long long)s.tokens, s.learning_rate, (long long)s.warmup_steps,
                (long long)s.eval_tokens, (unsigned long long)s.seed,
                std::filesystem::path(tokenizer).filename().string().c_str());
  return buf;
}

std::vector<ScalePoint> Points(const std::vector<RunRow>& rows, const std::string& skip_key = "") {
  std::vector<ScalePoint> pts;
  for (const auto& r : rows)
    if (r.status == "done" && r.key != skip_key) pts.push_back({double(r.params), double(r.tokens), r.loss});
  return pts;
}

nlohmann::json LawJson(const std::vector<std::string>& names, const std::vector<double>& values,
                       const std::vector<Interval>& iv) {
  nlohmann::json j;
  for (size_t i = 0; i < names.size(); ++i) {
    j[names[i]] = values[i];
    if (i < iv.size()) j[names[i] + "_ci95"] = {iv[i].lo, iv[i].hi};
  }
  return j;
}

}  // namespace

std::string FitJson(const SweepReport& r) {
  nlohmann::json j;
  const JointLaw& l = r.joint.law;
  j["joint"] = LawJson({"E", "A", "alpha", "B", "beta"}, {l.e, l.a, l.alpha, l.b, l.beta}, r.joint.intervals);
  j["joint"]["points"] = l.points;
  j["joint"]["huber_objective"] = l.objective;
  if (r.by_n) j["by_n"] = LawJson({"E", "A", "alpha"}, {r.by_n->law.e, r.by_n->law.a, r.by_n->law.alpha}, r.by_n->intervals);
  if (r.by_d) j["by_d"] = LawJson({"E", "B", "beta"}, {r.by_d->law.e, r.by_d->law.a, r.by_d->law.alpha}, r.by_d->intervals);
  nlohmann::json frontier = nlohmann::json::array();
  for (double c = 1e12; c <= 1e22; c *= 10)
    frontier.push_back({{"flops", c}, {"n_opt", l.OptimalN(c)}, {"d_opt", l.OptimalD(c)},
                        {"loss", l.Predict(l.OptimalN(c), l.OptimalD(c))}});
  j["frontier"] = frontier;
  j["frontier_exponent_n"] = l.beta / (l.alpha + l.beta);
  j["frontier_exponent_d"] = l.alpha / (l.alpha + l.beta);
  if (r.predicted && r.measured) {
    j["prediction"] = {{"predicted", *r.predicted}, {"measured", *r.measured},
                       {"relative_error", std::abs(*r.predicted - *r.measured) / *r.measured}};
  }
  return j.dump(2);
}

namespace {

// One sweep: its data, its grid (largest run last), the database, and what it reports.
class Sweep {
 public:
  explicit Sweep(const ScaleOptions& o) : o_(o), corpus_(std::make_shared<TokenCorpus>()) {}
  Status LoadData();
  void MakeGrid();
  Status Run();
  Status Fit();
  Status WriteFiles();
  SweepReport& report() { return report_; }

 private:
  bool images() const { return o_.workload == ScaleWorkload::kAutoencoder; }
  std::string Key(size_t i) const { return RunKey(o_.workload, grid_[i], corpus_->tokenizer_model); }
  Status Predict(size_t i);
  StatusOr<RunRow> Train(size_t i, const std::function<void(int64_t, int64_t, double)>& progress);

  const ScaleOptions& o_;
  std::shared_ptr<TokenCorpus> corpus_;
  std::shared_ptr<const MnistData> mnist_;
  std::vector<LmRunSpec> grid_;
  std::vector<int64_t> n_of_;  // N of each grid point
  std::unique_ptr<RunDatabase> db_;
  std::vector<ScalePoint> pts_;
  SweepReport report_;
};

// The data: a tokenized corpus for language models, MNIST for the autoencoder.
Status Sweep::LoadData() {
  if (images()) {
    DB_ASSIGN_OR_RETURN(mnist_, MnistData::Load(o_.corpus_dir, 0));
    corpus_->tokenizer_model = "mnist";
    return absl::OkStatus();
  }
  CorpusOptions co;
  co.dir = o_.corpus_dir;
  co.cache_dir = o_.cache_dir;
  co.vocab = o_.vocab;
  co.holdout_every = o_.holdout_every;
  co.seed = o_.seed;
  DB_ASSIGN_OR_RETURN(*corpus_, LoadTokenCorpus(co));
  LOG_INFO << "corpus " << o_.corpus_dir << ": " << corpus_->train.size() << " training tokens from "
           << corpus_->train_documents << " documents, " << corpus_->heldout.size() << " held-out tokens from "
           << corpus_->heldout_documents << " documents, vocabulary " << corpus_->vocab
           << (corpus_->from_cache ? " (cached)" : "");
  return absl::OkStatus();
}

// The grid, with the largest run (most parameters, then most tokens) last.
void Sweep::MakeGrid() {
  for (size_t i = 0; i < o_.widths.size(); ++i)
    for (int64_t d : o_.tokens) {
      LmRunSpec s;
      s.workload = o_.workload == ScaleWorkload::kLstm ? LmKind::kLstm : LmKind::kGpt;
      s.width = o_.widths[i];
      s.layers = o_.layers[i];
      s.head_size = o_.head_size;
      s.context = o_.context;
      s.batch = o_.batch;
      s.tokens = d;
      s.eval_tokens = o_.eval_tokens;
      s.learning_rate = o_.learning_rate;
      s.warmup_steps = o_.warmup_steps;
      s.seed = o_.seed;
      grid_.push_back(s);
      n_of_.push_back(images() ? CountAutoencoderParams(s) : CountParams(s, corpus_->vocab));
    }
  size_t largest = 0;
  for (size_t i = 1; i < grid_.size(); ++i)
    if (std::make_pair(n_of_[i], grid_[i].tokens) > std::make_pair(n_of_[largest], grid_[largest].tokens)) largest = i;
  std::rotate(grid_.begin() + largest, grid_.begin() + largest + 1, grid_.end());
  std::rotate(n_of_.begin() + largest, n_of_.begin() + largest + 1, n_of_.end());
}

// Before the largest run: fit the others and record what they predict for it.
Status Sweep::Predict(size_t i) {
  const std::string key = Key(i);
  DB_ASSIGN_OR_RETURN(auto earlier, db_->Prediction(key));
  if (earlier) {
    report_.predicted = *earlier;
    return absl::OkStatus();
  }
  DB_ASSIGN_OR_RETURN(auto rows, db_->All());
  const std::vector<ScalePoint> pts = Points(rows, key);
  auto fit = FitJointLaw(pts, FitOptions{});
  if (!fit.ok())
    return absl::InvalidArgumentError("cannot predict the largest run: " + std::string(fit.status().message()) +
                                      "; add sizes or token amounts to [scale]");
  const LmRunSpec& s = grid_[i];
  const int64_t unit = images() ? s.batch : s.batch * s.context;  // D is trained in whole batches
  report_.predicted = fit->law.Predict(static_cast<double>(n_of_[i]),
                                       static_cast<double>(std::max<int64_t>(1, s.tokens / unit) * unit));
  DB_RETURN_IF_ERROR(db_->SetPrediction(key, *report_.predicted, static_cast<int64_t>(pts.size())));
  LOG_INFO << "prediction for the largest run (N=" << n_of_[i] << ", D=" << s.tokens << ") from " << pts.size()
           << " runs: loss " << *report_.predicted;
  return absl::OkStatus();
}

// Trains grid point i once and records it.
StatusOr<RunRow> Sweep::Train(size_t i, const std::function<void(int64_t, int64_t, double)>& progress) {
  const LmRunSpec& s = grid_[i];
  auto result = images() ? RunAutoencoder(s, mnist_, progress) : RunLanguageModel(s, corpus_, progress);
  if (!result.ok()) return result.status();
  RunRow r;
  r.key = Key(i);
  r.workload = Name(o_.workload);
  r.width = s.width;
  r.layers = s.layers;
  r.params = result->params;
  r.total_params = result->total_params;
  r.tokens = result->tokens;
  r.flops_6nd = result->flops_6nd;
  r.flops_counted = result->flops_counted;
  r.seconds = result->seconds;
  r.loss = result->loss;
  r.train_loss = result->final_train_loss;
  r.status = result->diverged ? "diverged" : "done";
  DB_RETURN_IF_ERROR(db_->Insert(r));
  ++report_.runs_executed;
  if (result->diverged) LOG_WARN << "run diverged (NaN loss), recorded and left out of the fits: " << r.key;
  return r;
}

// Every grid point not yet in the database, the largest last (after its prediction).
Status Sweep::Run() {
  DB_ASSIGN_OR_RETURN(db_, RunDatabase::Open(o_.out_dir + "/scale.db"));
  double todo = 0.0;  // work still to do, in FLOPs, for the progress line's ETA
  for (size_t i = 0; i < grid_.size(); ++i) {
    DB_ASSIGN_OR_RETURN(auto row, db_->Find(Key(i)));
    if (!row) todo += 6.0 * n_of_[i] * grid_[i].tokens + 1.0;
  }
  Progress progress(static_cast<int64_t>(todo / 1e6) + 1, "MFLOP(6ND)");
  double done_flops = 0.0;
  for (size_t i = 0; i < grid_.size(); ++i) {
    if (i + 1 == grid_.size() && o_.check_prediction) DB_RETURN_IF_ERROR(Predict(i));
    DB_ASSIGN_OR_RETURN(auto row, db_->Find(Key(i)));
    if (!row) {
      const LmRunSpec& s = grid_[i];
      const double run_flops = 6.0 * n_of_[i] * s.tokens;
      DB_ASSIGN_OR_RETURN(row, Train(i, [&](int64_t step, int64_t steps, double loss) {
        char buf[160];
        std::snprintf(buf, sizeof(buf), "run %zu/%zu %s w%lld L%lld D=%lld loss %.3f", i + 1, grid_.size(),
                      Name(o_.workload), (long long)s.width, (long long)s.layers, (long long)s.tokens, loss);
        progress.Update(static_cast<int64_t>((done_flops + run_flops * step / steps) / 1e6), buf);
      }));
      done_flops += run_flops;
    }
    report_.runs.push_back(*row);
  }
  progress.Finish();
  if (report_.predicted && report_.runs.back().status == "done") report_.measured = report_.runs.back().loss;
  return absl::OkStatus();
}

// Fits over this sweep's finished runs: L(N, D), and L(N), L(D) at the largest D and N.
Status Sweep::Fit() {
  pts_ = Points(report_.runs);
  FitOptions fo;
  fo.bootstrap = o_.bootstrap;
  fo.seed = o_.seed;
  auto joint = FitJointLaw(pts_, fo);
  if (!joint.ok())
    return absl::InvalidArgumentError("the sweep cannot be fitted: " + std::string(joint.status().message()) +
                                      " (diverged runs are not counted); add sizes or token amounts to [scale]");
  report_.joint = *joint;
  const int64_t max_d = report_.runs.back().tokens, max_n = report_.runs.back().params;
  std::vector<double> xn, ln, xd, ld;
  for (const auto& p : pts_) {
    if (p.d == max_d) xn.push_back(p.n), ln.push_back(p.loss);
    if (p.n == max_n) xd.push_back(p.d), ld.push_back(p.loss);
  }
  if (auto f = FitPowerLaw(xn, ln, fo); f.ok()) report_.by_n = *f;
  else LOG_WARN << "L(N) at D=" << max_d << " not fitted: " << f.status().message();
  if (auto f = FitPowerLaw(xd, ld, fo); f.ok()) report_.by_d = *f;
  else LOG_WARN << "L(D) at N=" << max_n << " not fitted: " << f.status().message();
  return absl::OkStatus();
}

Status Sweep::WriteFiles() {
  const std::string json_path = o_.out_dir + "/fit.json", csv_path = o_.out_dir + "/fit.csv",
                    runs_path = o_.out_dir + "/runs.csv";
  std::ofstream(json_path) << FitJson(report_) << "\n";
  {
    std::ofstream out(csv_path);
    out << "law,parameter,value,ci95_lo,ci95_hi\n";
    auto rows = [&](const char* law, const std::vector<std::string>& names, const std::vector<double>& v,
                    const std::vector<Interval>& iv) {
      for (size_t i = 0; i < names.size(); ++i)
        out << law << ',' << names[i] << ',' << v[i] << ',' << (i < iv.size() ? std::to_string(iv[i].lo) : "") << ','
            << (i < iv.size() ? std::to_string(iv[i].hi) : "") << '\n';
    };
    const JointLaw& l = report_.joint.law;
    rows("L(N,D)", {"E", "A", "alpha", "B", "beta"}, {l.e, l.a, l.alpha, l.b, l.beta}, report_.joint.intervals);
    if (const auto& f = report_.by_n) rows("L(N)", {"E", "A", "alpha"}, {f->law.e, f->law.a, f->law.alpha}, f->intervals);
    if (const auto& f = report_.by_d) rows("L(D)", {"E", "B", "beta"}, {f->law.e, f->law.a, f->law.alpha}, f->intervals);
  }
  {
    std::ofstream out(runs_path);
    out << "workload,width,layers,params,tokens,flops_6nd,flops_counted,seconds,loss,status\n";
    for (const auto& r : report_.runs)
      out << r.workload << ',' << r.width << ',' << r.layers << ',' << r.params << ',' << r.tokens << ','
          << r.flops_6nd << ',' << r.flops_counted << ',' << r.seconds << ',' << r.loss << ',' << r.status << '\n';
  }
  report_.files = {o_.out_dir + "/scale.db", json_path, csv_path, runs_path};
  DB_ASSIGN_OR_RETURN(auto plots, WriteScalePlots(pts_, report_.joint.law, o_.out_dir));
  for (auto& p : plots) report_.files.push_back(p);
  return absl::OkStatus();
}

}  // namespace

StatusOr<SweepReport> RunSweep(const ScaleOptions& o) {
  if (o.threads > 0) SetNumThreads(static_cast<int>(o.threads));
  std::error_code ec;
  std::filesystem::create_directories(o.out_dir, ec);
  if (ec) return absl::UnavailableError("cannot create " + o.out_dir + ": " + ec.message());
  Sweep sweep(o);
  DB_RETURN_IF_ERROR(sweep.LoadData());
  sweep.MakeGrid();
  DB_RETURN_IF_ERROR(sweep.Run());
  DB_RETURN_IF_ERROR(sweep.Fit());
  DB_RETURN_IF_ERROR(sweep.WriteFiles());
  return std::move(sweep.report());
}

}  // namespace distbelief

namespace distbelief {

StatusOr<ScaleOptions> ParseScaleOptions(ConfigFile* file) {
  ScaleOptions k;
  Section& s = file->section("scale");
  DB_RETURN_IF_ERROR(s.Enum("workload", &k.workload,
                            {{"gpt", ScaleWorkload::kGpt}, {"lstm", ScaleWorkload::kLstm},
                             {"autoencoder", ScaleWorkload::kAutoencoder}}));
  DB_RETURN_IF_ERROR(s.String("corpus_dir", &k.corpus_dir));
  DB_RETURN_IF_ERROR(s.String("cache_dir", &k.cache_dir));
  DB_RETURN_IF_ERROR(s.String("out_dir", &k.out_dir));
  DB_RETURN_IF_ERROR(s.Int("vocab", &k.vocab, 16, 65536));
  DB_RETURN_IF_ERROR(s.Int("context", &k.context, 2, 4096));
  DB_RETURN_IF_ERROR(s.Int("head_size", &k.head_size, 1, 4096));
  DB_RETURN_IF_ERROR(s.Int("batch", &k.batch, 1, 1 << 16));
  DB_RETURN_IF_ERROR(s.Int("holdout_every", &k.holdout_every, 2, 1 << 20));
  DB_RETURN_IF_ERROR(s.IntList("widths", &k.widths, 1, 1 << 16));
  DB_RETURN_IF_ERROR(s.IntList("layers", &k.layers, 1, 1024));
  DB_RETURN_IF_ERROR(s.IntList("tokens", &k.tokens, 1, int64_t{1} << 40));
  DB_RETURN_IF_ERROR(s.Float("learning_rate", &k.learning_rate, 1e-9, 10.0));
  DB_RETURN_IF_ERROR(s.Int("warmup_steps", &k.warmup_steps, 0, int64_t{1} << 40));
  DB_RETURN_IF_ERROR(s.Int("eval_tokens", &k.eval_tokens, 1, int64_t{1} << 40));
  DB_RETURN_IF_ERROR(s.Int("bootstrap", &k.bootstrap, 0, 100000));
  DB_RETURN_IF_ERROR(s.Bool("check_prediction", &k.check_prediction));
  DB_RETURN_IF_ERROR(s.Int("threads", &k.threads, 0, 4096));
  DB_RETURN_IF_ERROR(s.Uint("seed", &k.seed));
  if (k.widths.empty() || k.tokens.empty()) return s.Error("widths", "and scale.tokens must not be empty");
  if (k.layers.size() != k.widths.size())
    return s.Error("layers", "has " + std::to_string(k.layers.size()) + " entries but scale.widths has " +
                                 std::to_string(k.widths.size()) + "; give one depth per width");
  for (int64_t w : k.widths)
    if (k.workload == ScaleWorkload::kGpt && w % k.head_size != 0)
      return s.Error("widths", "holds " + std::to_string(w) + ", not a multiple of scale.head_size = " +
                                   std::to_string(k.head_size));
  return k;
}

namespace {

class ScaleWorkloadImpl : public Workload {
 public:
  explicit ScaleWorkloadImpl(ScaleOptions o) : o_(std::move(o)) {}
  StatusOr<Job> MakeJob(const EngineOptions&) override {
    return absl::UnimplementedError("a scaling sweep is many runs, not one job; run it with `distbelief scale`");
  }
  Status Report(const EngineOptions&, RunResult*) override { return absl::OkStatus(); }
  Status Train(const EngineOptions& e) override;

 private:
  ScaleOptions o_;
};

std::string Interval95(const std::vector<Interval>& iv, size_t i) {
  if (i >= iv.size()) return "";
  char buf[64];
  std::snprintf(buf, sizeof(buf), " [%.4g, %.4g]", iv[i].lo, iv[i].hi);
  return buf;
}

Status ScaleWorkloadImpl::Train(const EngineOptions& e) {
  if (e.distributed.mode != Mode::kLocal)
    return absl::InvalidArgumentError("a scaling sweep trains every run in this process; remove [distributed]");
  DB_ASSIGN_OR_RETURN(const SweepReport r, RunSweep(o_));
  std::printf("%-11s %6s %6s %10s %10s %9s %8s  %s\n", "model", "width", "layers", "N", "D", "loss", "seconds", "status");
  for (const auto& run : r.runs)
    std::printf("%-11s %6ld %6ld %10ld %10ld %9.4f %8.1f  %s\n", run.workload.c_str(), long(run.width), long(run.layers),
                long(run.params), long(run.tokens), run.loss, run.seconds, run.status.c_str());
  std::printf("%ld runs trained now, %ld from %s/scale.db\n", long(r.runs_executed),
              long(r.runs.size() - r.runs_executed), o_.out_dir.c_str());
  const JointLaw& l = r.joint.law;
  const auto& iv = r.joint.intervals;
  std::printf("L(N, D) = E + A/N^alpha + B/D^beta over %ld runs (95%% bootstrap intervals):\n", long(l.points));
  std::printf("  E = %.4g%s\n  A = %.4g%s\n  alpha = %.4g%s\n  B = %.4g%s\n  beta = %.4g%s\n", l.e,
              Interval95(iv, 0).c_str(), l.a, Interval95(iv, 1).c_str(), l.alpha, Interval95(iv, 2).c_str(), l.b,
              Interval95(iv, 3).c_str(), l.beta, Interval95(iv, 4).c_str());
  if (r.by_n)
    std::printf("L(N) at the largest D: E = %.4g, alpha_N = %.4g%s\n", r.by_n->law.e, r.by_n->law.alpha,
                Interval95(r.by_n->intervals, 2).c_str());
  if (r.by_d)
    std::printf("L(D) at the largest N: E = %.4g, beta_D = %.4g%s\n", r.by_d->law.e, r.by_d->law.alpha,
                Interval95(r.by_d->intervals, 2).c_str());
  std::printf("compute-optimal frontier: N_opt ~ C^%.3f, D_opt ~ C^%.3f\n", l.beta / (l.alpha + l.beta),
              l.alpha / (l.alpha + l.beta));
  if (r.predicted && r.measured)
    std::printf("prediction check: largest run predicted %.4f, measured %.4f, error %.2f%%\n", *r.predicted,
                *r.measured, 100.0 * std::abs(*r.predicted - *r.measured) / *r.measured);
  for (const auto& f : r.files) std::printf("wrote %s\n", f.c_str());
  return absl::OkStatus();
}

}  // namespace

StatusOr<std::unique_ptr<Workload>> MakeScaleWorkload(ConfigFile* file) {
  DB_ASSIGN_OR_RETURN(ScaleOptions o, ParseScaleOptions(file));
  return std::unique_ptr<Workload>(new ScaleWorkloadImpl(std::move(o)));
}

}  // namespace distbelief
