#include "distbelief/scale/sweep.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "distbelief/base/logging.h"
#include "distbelief/base/parallel.h"
#include "distbelief/io/metrics.h"
#include "distbelief/scale/autoencoder_run.h"
#include "distbelief/scale/lm_run.h"
#include "distbelief/train/workload.h"
#include "distbelief/scale/plots.h"
#include "distbelief/text/corpus.h"

namespace distbelief {
namespace {

std::string RunKey(const LmRunSpec& s, const std::string& tokenizer) {
  char buf[512];
  std::snprintf(buf, sizeof(buf),
                "%s w%lld L%lld hs%lld T%lld B%lld D%lld lr%.6g wu%lld ev%lld seed%llu tok=%s", s.workload.c_str(),
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

StatusOr<SweepReport> RunSweep(const Config& config) {
  const ScaleOptions& o = config.scale;
  if (!o.enabled) return absl::InvalidArgumentError("the config has no [scale] section");
  if (o.threads > 0) SetNumThreads(static_cast<int>(o.threads));
  std::error_code ec;
  std::filesystem::create_directories(o.out_dir, ec);
  if (ec) return absl::UnavailableError("cannot create " + o.out_dir + ": " + ec.message());

  // The data: a tokenized corpus for language models, MNIST for the autoencoder.
  const bool images = o.workload == "autoencoder";
  TokenCorpus corpus;
  std::shared_ptr<const Dataset> mnist;
  if (images) {
    TrainOptions to;
    to.data_dir = o.corpus_dir;
    DB_ASSIGN_OR_RETURN(mnist, Dataset::Load(to));
    corpus.tokenizer_model = "mnist";
  } else {
    CorpusOptions co;
    co.dir = o.corpus_dir;
    co.cache_dir = o.cache_dir;
    co.vocab = o.vocab;
    co.holdout_every = o.holdout_every;
    co.seed = o.seed;
    DB_ASSIGN_OR_RETURN(corpus, LoadTokenCorpus(co));
    LOG_INFO << "corpus " << o.corpus_dir << ": " << corpus.train.size() << " training tokens from "
             << corpus.train_documents << " documents, " << corpus.heldout.size() << " held-out tokens from "
             << corpus.heldout_documents << " documents, vocabulary " << corpus.vocab
             << (corpus.from_cache ? " (cached)" : "");
  }

  // The grid, with the largest run (most parameters, then most tokens) last.
  std::vector<LmRunSpec> grid;
  for (size_t i = 0; i < o.widths.size(); ++i)
    for (int64_t d : o.tokens) {
      LmRunSpec s;
      s.workload = o.workload;
      s.width = o.widths[i];
      s.layers = o.layers[i];
      s.head_size = o.head_size;
      s.context = o.context;
      s.batch = o.batch;
      s.tokens = d;
      s.eval_tokens = o.eval_tokens;
      s.learning_rate = o.learning_rate;
      s.warmup_steps = o.warmup_steps;
      s.seed = o.seed;
      grid.push_back(s);
    }
  std::vector<int64_t> n_of(grid.size());
  for (size_t i = 0; i < grid.size(); ++i)
    n_of[i] = images ? CountAutoencoderParams(grid[i]) : CountParams(grid[i], corpus.vocab);
  size_t largest = 0;
  for (size_t i = 1; i < grid.size(); ++i)
    if (std::make_pair(n_of[i], grid[i].tokens) > std::make_pair(n_of[largest], grid[largest].tokens)) largest = i;
  std::rotate(grid.begin() + largest, grid.begin() + largest + 1, grid.end());
  std::rotate(n_of.begin() + largest, n_of.begin() + largest + 1, n_of.end());
  const std::string largest_key = RunKey(grid.back(), corpus.tokenizer_model);

  DB_ASSIGN_OR_RETURN(auto db, RunDatabase::Open(o.out_dir + "/scale.db"));
  SweepReport report;
  // Work still to do, in FLOPs, for the progress line's ETA.
  double todo = 0.0;
  std::vector<bool> cached(grid.size());
  for (size_t i = 0; i < grid.size(); ++i) {
    DB_ASSIGN_OR_RETURN(auto row, db->Find(RunKey(grid[i], corpus.tokenizer_model)));
    cached[i] = row.has_value();
    if (!cached[i]) todo += 6.0 * n_of[i] * grid[i].tokens + 1.0;
  }
  Progress progress(static_cast<int64_t>(todo / 1e6) + 1, "MFLOP(6ND)");
  double done_flops = 0.0;

  for (size_t i = 0; i < grid.size(); ++i) {
    const LmRunSpec& s = grid[i];
    const std::string key = RunKey(s, corpus.tokenizer_model);
    const bool is_largest = (i + 1 == grid.size());
    if (is_largest && o.check_prediction) {
      DB_ASSIGN_OR_RETURN(auto earlier, db->Prediction(key));
      if (earlier) {
        report.predicted = *earlier;
      } else {
        DB_ASSIGN_OR_RETURN(auto rows, db->All());
        std::vector<ScalePoint> pts = Points(rows, key);
        auto fit = FitJointLaw(pts, FitOptions{});
        if (!fit.ok())
          return absl::InvalidArgumentError("cannot predict the largest run: " + std::string(fit.status().message()) +
                                            "; add sizes or token amounts to [scale]");
        const int64_t unit = images ? s.batch : s.batch * s.context;  // D is trained in whole batches
        report.predicted = fit->law.Predict(static_cast<double>(n_of[i]),
                                            static_cast<double>(std::max<int64_t>(1, s.tokens / unit) * unit));
        DB_RETURN_IF_ERROR(db->SetPrediction(key, *report.predicted, static_cast<int64_t>(pts.size())));
        LOG_INFO << "prediction for the largest run (N=" << n_of[i] << ", D=" << s.tokens << ") from "
                 << pts.size() << " runs: loss " << *report.predicted;
      }
    }
    DB_ASSIGN_OR_RETURN(auto row, db->Find(key));
    if (!row) {
      const double run_flops = 6.0 * n_of[i] * s.tokens;
      auto report_progress = [&](int64_t step, int64_t steps, double loss) {
        char buf[160];
        std::snprintf(buf, sizeof(buf), "run %zu/%zu %s w%lld L%lld D=%lld loss %.3f", i + 1, grid.size(),
                      s.workload.c_str(), (long long)s.width, (long long)s.layers, (long long)s.tokens, loss);
        progress.Update(static_cast<int64_t>((done_flops + run_flops * step / steps) / 1e6), buf);
      };
      auto result = images ? RunAutoencoder(s, mnist->train, mnist->test, report_progress)
                           : RunLanguageModel(s, corpus, report_progress);
      if (!result.ok()) return result.status();
      done_flops += run_flops;
      RunRow r;
      r.key = key;
      r.workload = s.workload;
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
      DB_RETURN_IF_ERROR(db->Insert(r));
      ++report.runs_executed;
      if (result->diverged) LOG_WARN << "run diverged (NaN loss), recorded and left out of the fits: " << key;
      row = r;
    }
    report.runs.push_back(*row);
  }
  progress.Finish();
  if (report.predicted && report.runs.back().status == "done") report.measured = report.runs.back().loss;

  // Fits over this sweep's finished runs.
  std::vector<ScalePoint> pts = Points(report.runs);
  FitOptions fo;
  fo.bootstrap = o.bootstrap;
  fo.seed = o.seed;
  auto joint = FitJointLaw(pts, fo);
  if (!joint.ok())
    return absl::InvalidArgumentError("the sweep cannot be fitted: " + std::string(joint.status().message()) +
                                      " (diverged runs are not counted); add sizes or token amounts to [scale]");
  report.joint = *joint;
  const int64_t max_d = report.runs.back().tokens, max_n = report.runs.back().params;
  std::vector<double> xn, ln, xd, ld;
  for (const auto& p : pts) {
    if (p.d == max_d) xn.push_back(p.n), ln.push_back(p.loss);
    if (p.n == max_n) xd.push_back(p.d), ld.push_back(p.loss);
  }
  if (auto f = FitPowerLaw(xn, ln, fo); f.ok()) report.by_n = *f;
  else LOG_WARN << "L(N) at D=" << max_d << " not fitted: " << f.status().message();
  if (auto f = FitPowerLaw(xd, ld, fo); f.ok()) report.by_d = *f;
  else LOG_WARN << "L(D) at N=" << max_n << " not fitted: " << f.status().message();

  // Files.
  const std::string json_path = o.out_dir + "/fit.json", csv_path = o.out_dir + "/fit.csv",
                    runs_path = o.out_dir + "/runs.csv";
  {
    std::ofstream out(json_path);
    out << FitJson(report) << "\n";
  }
  {
    std::ofstream out(csv_path);
    out << "law,parameter,value,ci95_lo,ci95_hi\n";
    auto rows = [&](const char* law, const std::vector<std::string>& names, const std::vector<double>& v,
                    const std::vector<Interval>& iv) {
      for (size_t i = 0; i < names.size(); ++i)
        out << law << ',' << names[i] << ',' << v[i] << ',' << (i < iv.size() ? std::to_string(iv[i].lo) : "") << ','
            << (i < iv.size() ? std::to_string(iv[i].hi) : "") << '\n';
    };
    const JointLaw& l = report.joint.law;
    rows("L(N,D)", {"E", "A", "alpha", "B", "beta"}, {l.e, l.a, l.alpha, l.b, l.beta}, report.joint.intervals);
    if (report.by_n) rows("L(N)", {"E", "A", "alpha"}, {report.by_n->law.e, report.by_n->law.a, report.by_n->law.alpha}, report.by_n->intervals);
    if (report.by_d) rows("L(D)", {"E", "B", "beta"}, {report.by_d->law.e, report.by_d->law.a, report.by_d->law.alpha}, report.by_d->intervals);
  }
  {
    std::ofstream out(runs_path);
    out << "workload,width,layers,params,tokens,flops_6nd,flops_counted,seconds,loss,status\n";
    for (const auto& r : report.runs)
      out << r.workload << ',' << r.width << ',' << r.layers << ',' << r.params << ',' << r.tokens << ','
          << r.flops_6nd << ',' << r.flops_counted << ',' << r.seconds << ',' << r.loss << ',' << r.status << '\n';
  }
  report.files = {o.out_dir + "/scale.db", json_path, csv_path, runs_path};
  DB_ASSIGN_OR_RETURN(auto plots, WriteScalePlots(pts, report.joint.law, o.out_dir));
  for (auto& p : plots) report.files.push_back(p);
  return report;
}

}  // namespace distbelief
