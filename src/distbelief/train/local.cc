#include "distbelief/train/local.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>

#include "distbelief/base/logging.h"
#include "distbelief/base/parallel.h"
#include "distbelief/io/metrics.h"
#include "distbelief/train/checkpointing.h"

namespace distbelief {
namespace {

using Clock = std::chrono::steady_clock;

double CpuSeconds() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

// Everything one local run keeps: the model, its parameters flat across groups, the rule and its
// state per parameter.
struct LocalRun {
  std::unique_ptr<ReplicaModel> model;
  std::vector<Param*> params;  // every group's, in order
  std::vector<std::pair<Param*, NormBound>> bounds;  // the tensor each group's bound lies in
  std::unique_ptr<UpdateRule> rule;
  std::vector<Tensor> state;
  int64_t step = 0;
};

// Finds the one parameter tensor that holds all of `bound` (offsets within the group's flat
// vector) and rebases the bound onto it.
Status LocateBound(const std::vector<Param*>& group, NormBound bound, LocalRun* run) {
  if (bound.blocks.count == 0) return absl::OkStatus();
  int64_t at = 0;
  const int64_t end = bound.blocks.offset + bound.blocks.block * bound.blocks.count;
  for (Param* p : group) {
    const int64_t n = p->value.size();
    if (bound.blocks.offset >= at && end <= at + n) {
      bound.blocks.offset -= at;
      run->bounds.push_back({p, bound});
      return absl::OkStatus();
    }
    at += n;
  }
  return absl::InvalidArgumentError("a norm bound crosses parameter tensors; the local driver needs it inside one");
}

StatusOr<LocalRun> StartRun(const TrainOptions& t, const OptimizerOptions& optimizer, const Job& job) {
  LocalRun run;
  DB_ASSIGN_OR_RETURN(run.model, job.make_replica(0, 1));
  for (int g = 0; g < run.model->num_groups(); ++g) {
    const std::vector<Param*> group = run.model->params(g);
    run.params.insert(run.params.end(), group.begin(), group.end());
    DB_RETURN_IF_ERROR(LocateBound(group, run.model->norm_bound(g), &run));
  }
  DB_ASSIGN_OR_RETURN(run.rule, MakeUpdateRule(optimizer));
  for (Param* p : run.params) run.state.emplace_back(Shape{p->value.size() * run.rule->StatePerParam()});
  if (!t.resume.empty()) {
    DB_ASSIGN_OR_RETURN(ModelCheckpointInfo info, LoadModelCheckpoint(t.resume, run.params, &run.state));
    run.step = info.step;
  }
  return run;
}

Status SaveCheckpoint(const TrainOptions& t, const LocalRun& run) {
  return SaveModelCheckpoint(RunCheckpointPath(t.run_dir), run.params, &run.state,
                             {run.step, t.config_text, run.rule->Name()});
}

// One update: clip, schedule, apply, project.
void Update(const TrainOptions& t, const OptimizerOptions& o, int64_t total, LocalRun* run) {
  if (o.clip_norm > 0.0f) {
    std::vector<std::span<float>> grads;
    for (Param* p : run->params) grads.push_back(p->grad.span());
    ClipByGlobalNorm(grads, o.clip_norm);
  }
  run->rule->SetLearningRate(ScheduledRate(t.schedule, o.learning_rate, run->step, total));
  ++run->step;
  for (size_t i = 0; i < run->params.size(); ++i)
    run->rule->ApplyOnPool(run->params[i]->value.span(), run->params[i]->grad.span(), run->state[i].span(), run->step);
  for (auto& [p, bound] : run->bounds) ProjectBlockNormsOnPool(p->value.span(), bound);
}

Metrics LossRecord(const Job& job, int64_t step, const StepLoss& mean, float lr) {
  Metrics m = {{"step", double(step)}, {"train_loss", mean.total}, {"lr", lr}};
  for (size_t i = 0; i < mean.terms.size() && i < job.loss_terms.size(); ++i) m.push_back({job.loss_terms[i], mean.terms[i]});
  return m;
}

}  // namespace

StatusOr<RunResult> TrainLocal(const TrainOptions& t, const OptimizerOptions& o, const Job& job,
                               TrainObserver* observer, int64_t stop_at) {
  if (t.threads > 0 || t.deterministic) SetNumThreads(t.threads > 0 ? static_cast<int>(t.threads) : 1);
  DB_ASSIGN_OR_RETURN(LocalRun run, StartRun(t, o, job));
  const int64_t total = t.max_steps > 0 ? std::min(job.steps, t.max_steps) : job.steps;
  const int64_t end = stop_at > 0 ? std::min(stop_at, total) : total;
  MetricsWriter metrics;
  if (job.write_checkpoint) DB_RETURN_IF_ERROR(metrics.Open(t.run_dir + "/metrics.jsonl", t.tensorboard));
  if (job.show_progress)
    LOG_INFO << "training " << job.name << " (" << CountParams(run.params) << " parameters), " << total
             << " steps, " << NumThreads() << " thread(s)";
  RunResult r;
  LossLog log, window;
  Progress progress(total * job.examples_per_step, "examples");
  const auto start = Clock::now();
  const double cpu_start = CpuSeconds();
  const int64_t first_step = run.step;
  while (run.step < end) {
    const int64_t step = run.step;
    DB_ASSIGN_OR_RETURN(const StepLoss loss, run.model->ComputeGradient(step));
    if (!std::isfinite(loss.total)) {
      r.diverged = true;
      LOG_WARN << job.name << ": the loss is " << loss.total << " at step " << step << "; the run stops";
      break;
    }
    Update(t, o, total, &run);
    log.Add(loss);
    window.Add(loss);
    if (observer) observer->OnStep(run.step, loss);
    if (job.show_progress) {
      char status[64];
      std::snprintf(status, sizeof(status), "loss %.4f", loss.total);
      progress.Update(run.step * job.examples_per_step, status);
    }
    if (run.step % t.log_every == 0 || run.step == total) {
      metrics.Write(LossRecord(job, run.step, window.LastMean(1.0), ScheduledRate(t.schedule, o.learning_rate, step, total)));
      window = LossLog();
    }
    const bool epoch_end = job.steps_per_epoch > 0 && run.step % job.steps_per_epoch == 0;
    if ((epoch_end || run.step == total) && job.evaluate) {
      DB_ASSIGN_OR_RETURN(Metrics m, job.evaluate(run.model.get()));
      m.insert(m.begin(), {"step", double(run.step)});
      metrics.Write(m);
    }
    const bool due = t.checkpoint_every > 0 ? run.step % t.checkpoint_every == 0 : (epoch_end || run.step == total);
    if (job.write_checkpoint && due) DB_RETURN_IF_ERROR(SaveCheckpoint(t, run));
  }
  if (job.show_progress) progress.Finish();
  r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  r.cpu_seconds = CpuSeconds() - cpu_start;
  r.steps = run.step;
  r.examples = (run.step - first_step) * job.examples_per_step;
  r.first_loss = log.FirstMean();
  r.last_loss = log.LastMean();
  r.model = std::move(run.model);
  return r;
}

}  // namespace distbelief
