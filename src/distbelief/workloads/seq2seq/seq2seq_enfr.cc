#include "distbelief/workloads/seq2seq/seq2seq_enfr.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <sstream>

#include "distbelief/base/logging.h"
#include "distbelief/base/shuffle.h"
#include "distbelief/io/checkpoint.h"
#include "distbelief/io/gnuplot.h"
#include "distbelief/text/bleu.h"
#include "distbelief/text/spm_client.h"
#include "distbelief/train/checkpointing.h"

namespace distbelief {
namespace fs = std::filesystem;

StatusOr<Seq2SeqEnFrOptions> ParseSeq2SeqEnFrOptions(ConfigFile* file) {
  Seq2SeqEnFrOptions o;
  Section& s = file->section("seq2seq");
  DB_RETURN_IF_ERROR(s.String("mo_dir", &o.data.mo_dir));
  DB_RETURN_IF_ERROR(s.StringList("dev_packages", &o.data.dev_packages));
  DB_RETURN_IF_ERROR(s.StringList("test_packages", &o.data.test_packages));
  DB_RETURN_IF_ERROR(s.Int("max_words", &o.data.max_words, 1, 1000));
  DB_RETURN_IF_ERROR(s.Int("vocab", &o.vocab, 100, 65000));
  DB_RETURN_IF_ERROR(s.Int("max_tokens", &o.max_tokens, 2, 1000));
  DB_RETURN_IF_ERROR(s.Bool("reverse_source", &o.reverse_source));
  DB_RETURN_IF_ERROR(s.Int("embedding", &o.net.embedding, 1, 1 << 14));
  DB_RETURN_IF_ERROR(s.Int("hidden", &o.net.hidden, 1, 1 << 14));
  DB_RETURN_IF_ERROR(s.Int("layers", &o.net.layers, 1, 16));
  DB_RETURN_IF_ERROR(s.Int("batch", &o.batch, 1, 1 << 16));
  DB_RETURN_IF_ERROR(s.Int("partitions", &o.partitions, 1, 16));
  if (o.partitions > o.net.layers)
    return s.Error("partitions", "= " + std::to_string(o.partitions) + " exceeds seq2seq.layers = " +
                                     std::to_string(o.net.layers) + "; the model is split by depth");
  DB_RETURN_IF_ERROR(s.Int("chunks", &o.chunks, 1, 1024));
  DB_RETURN_IF_ERROR(s.Int("steps", &o.steps, 1, int64_t{1} << 40));
  DB_RETURN_IF_ERROR(s.Int("eval_every", &o.eval_every, 1, int64_t{1} << 40));
  DB_RETURN_IF_ERROR(s.Int("dev_limit", &o.dev_limit, 1, int64_t{1} << 30));
  DB_RETURN_IF_ERROR(s.Int("test_limit", &o.test_limit, 0, int64_t{1} << 30));
  DB_RETURN_IF_ERROR(s.Int("beam", &o.decode.beam, 1, 64));
  DB_RETURN_IF_ERROR(s.Float("length_penalty", &o.decode.length_penalty, 0.0, 5.0));
  DB_RETURN_IF_ERROR(s.Int("max_decode_tokens", &o.decode.max_len, 1, 10000));
  DB_RETURN_IF_ERROR(s.String("cache_dir", &o.cache_dir));
  return o;
}

namespace {

uint64_t Fnv(uint64_t h, std::string_view s) {
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return (h ^ 0xff) * 1099511628211ull;
}

int64_t CountLines(const std::string& path) {
  std::ifstream in(path);
  int64_t n = 0;
  for (std::string line; std::getline(in, line);) ++n;
  return n;
}

}  // namespace

StatusOr<std::shared_ptr<const EnFrTokens>> LoadEnFrTokens(const Seq2SeqEnFrOptions& o, uint64_t seed) {
  auto t = std::make_shared<EnFrTokens>();
  DB_ASSIGN_OR_RETURN(t->corpus, BuildEnFrCorpus(o.data));
  const EnFrCorpus& c = t->corpus;
  // The vocabulary is trained once per corpus and size, and kept in cache_dir.
  uint64_t h = Fnv(14695981039346656037ull, std::to_string(o.vocab) + "/" + std::to_string(seed));
  for (const SentencePair& p : c.train) h = Fnv(Fnv(h, p.en), p.fr);
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(h));
  std::error_code ec;
  fs::create_directories(o.cache_dir, ec);
  const std::string prefix = o.cache_dir + "/enfr-spm-" + hex;
  t->spm_model = prefix + ".model";
  if (!fs::exists(t->spm_model)) {
    const std::string lines = prefix + ".txt";
    {
      std::ofstream out(lines);
      for (const SentencePair& p : c.train) out << p.en << '\n' << p.fr << '\n';
      if (!out) return absl::UnavailableError("cannot write " + lines);
    }
    LOG_INFO << "training a " << o.vocab << "-piece joint English-French vocabulary on " << c.train.size()
             << " training pairs";
    const Status st = TrainSentencePiece(lines, prefix, o.vocab, 2000000, seed);
    fs::remove(lines, ec);
    DB_RETURN_IF_ERROR(st);
  }
  t->vocab = CountLines(prefix + ".vocab");
  if (t->vocab <= 3) return absl::DataLossError("the vocabulary " + prefix + ".vocab is damaged (delete it to retrain)");
  auto encode = [&](const std::vector<SentencePair>& pairs, std::vector<EnFrTokens::Pair>* out) -> Status {
    std::vector<std::string> en, fr;
    for (const SentencePair& p : pairs) en.push_back(p.en), fr.push_back(p.fr);
    DB_ASSIGN_OR_RETURN(auto ie, EncodeLines(t->spm_model, en));
    DB_ASSIGN_OR_RETURN(auto iff, EncodeLines(t->spm_model, fr));
    out->resize(pairs.size());
    for (size_t i = 0; i < pairs.size(); ++i) (*out)[i] = {std::move(ie[i]), std::move(iff[i])};
    return absl::OkStatus();
  };
  std::vector<EnFrTokens::Pair> train;
  DB_RETURN_IF_ERROR(encode(c.train, &train));
  for (auto& p : train) {
    if (p.src.empty() || p.tgt.empty() || static_cast<int64_t>(p.src.size()) > o.max_tokens ||
        static_cast<int64_t>(p.tgt.size()) > o.max_tokens) {
      ++t->train_dropped_long;
      continue;
    }
    t->train.push_back(std::move(p));
  }
  DB_RETURN_IF_ERROR(encode(c.dev, &t->dev));
  DB_RETURN_IF_ERROR(encode(c.test, &t->test));
  for (auto* split : {&t->dev, &t->test})
    for (auto& p : *split)
      if (static_cast<int64_t>(p.tgt.size()) > o.max_tokens) p.tgt.resize(o.max_tokens);
  t->test_text = c.test;
  return std::shared_ptr<const EnFrTokens>(std::move(t));
}

StatusOr<std::unique_ptr<Seq2SeqReplica>> Seq2SeqReplica::Create(const Seq2SeqEnFrOptions& o,
                                                                  std::shared_ptr<const EnFrTokens> data, uint64_t seed,
                                                                  int replica, int replicas,
                                                                  const TransportOptions& transport) {
  std::unique_ptr<Seq2SeqReplica> m(new Seq2SeqReplica());
  m->o_ = o;
  m->seed_ = seed;
  m->replica_ = replica;
  Seq2SeqOptions net = o.net;
  net.src_vocab = data->vocab + 1;  // + the padding id
  net.tgt_vocab = data->vocab;
  m->model_ = std::make_unique<Seq2Seq>(net, seed);
  if (o.partitions > 1) {
    m->transport_ = MakeTransport(transport);
    DB_ASSIGN_OR_RETURN(m->parts_, Seq2SeqPartitions::Create(m->model_.get(), o.partitions, o.chunks, m->transport_.get()));
  }
  // Batches of one source length (no padding in the encoder): the pairs in a seeded order,
  // grouped by source length, each group cut into batches of at most o.batch sorted by target
  // length; the batches in a seeded order, batch j to replica j mod R.
  const auto& train = data->train;
  std::map<size_t, std::vector<int64_t>> by_len;
  for (int64_t i : ShuffledRange(static_cast<int64_t>(train.size()), seed * 977 + 3)) by_len[train[i].src.size()].push_back(i);
  std::vector<std::vector<int64_t>> batches;
  for (auto& [len, idx] : by_len) {
    std::stable_sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) { return train[a].tgt.size() < train[b].tgt.size(); });
    for (size_t at = 0; at < idx.size(); at += static_cast<size_t>(o.batch))
      batches.emplace_back(idx.begin() + at, idx.begin() + std::min(idx.size(), at + static_cast<size_t>(o.batch)));
  }
  const std::vector<int64_t> order = ShuffledRange(static_cast<int64_t>(batches.size()), seed * 131 + 7);
  for (size_t j = 0; j < order.size(); ++j)
    if (static_cast<int>(j % replicas) == replica) m->share_.push_back(std::move(batches[order[j]]));
  if (m->share_.empty())
    return absl::InvalidArgumentError("replica " + std::to_string(replica) + " of " + std::to_string(replicas) +
                                      " gets no batch of " + std::to_string(o.batch) + " from " +
                                      std::to_string(train.size()) + " training pairs");
  m->data_ = std::move(data);
  return m;
}

StatusOr<double> Seq2SeqReplica::LossOf(const std::vector<const EnFrTokens::Pair*>& batch, bool backward) {
  const int pad = static_cast<int>(data_->vocab);
  std::vector<const std::vector<int>*> src;
  int64_t t = 1;
  for (const auto* p : batch) {
    src.push_back(&p->src);
    t = std::max<int64_t>(t, static_cast<int64_t>(p->tgt.size()) + 1);
  }
  src_ = SourceBatch(src, o_.reverse_source, pad, o_.max_tokens);
  const int64_t b = static_cast<int64_t>(batch.size());
  tgt_in_.Resize({b, t});
  tgt_out_.Resize({b, t});
  tgt_in_.Fill(2.0f);    // </s> after the sentence (its outputs are ignored)
  tgt_out_.Fill(-1.0f);  // ignored by the loss
  for (int64_t r = 0; r < b; ++r) {
    const std::vector<int>& y = batch[r]->tgt;
    tgt_in_[r * t] = 1.0f;  // <s>
    for (size_t i = 0; i < y.size(); ++i) {
      tgt_in_[r * t + i + 1] = static_cast<float>(y[i]);
      tgt_out_[r * t + i] = static_cast<float>(y[i]);
    }
    tgt_out_[r * t + y.size()] = 2.0f;
  }
  if (backward && parts_) return parts_->LossAndGradient(src_, tgt_in_, tgt_out_);
  if (backward) model_->ZeroGrad();
  const double loss = model_->Forward(src_, tgt_in_, tgt_out_);
  if (backward) model_->Backward();
  return loss;
}

Seq2SeqReplica::~Seq2SeqReplica() = default;

int Seq2SeqReplica::num_groups() const { return parts_ ? parts_->partitions() : 1; }

std::vector<Param*> Seq2SeqReplica::params(int group) { return parts_ ? parts_->params(group) : model_->params(); }

Seq2Seq& Seq2SeqReplica::model() {
  if (parts_) parts_->CopyTo(model_.get());
  return *model_;
}

StatusOr<StepLoss> Seq2SeqReplica::ComputeGradient(int64_t step) {
  const int64_t n = static_cast<int64_t>(share_.size());
  const int64_t epoch = step / n;
  if (epoch != epoch_) {
    order_ = ShuffledRange(n, seed_ * 7919 + static_cast<uint64_t>(epoch) * 104729 + static_cast<uint64_t>(replica_));
    epoch_ = epoch;
  }
  std::vector<const EnFrTokens::Pair*> batch;
  for (int64_t i : share_[order_[step % n]]) batch.push_back(&data_->train[i]);
  StepLoss l;
  DB_ASSIGN_OR_RETURN(l.total, LossOf(batch, true));
  return l;
}

double Seq2SeqReplica::MeanLoss(const std::vector<EnFrTokens::Pair>& pairs, int64_t limit) {
  const int64_t n = std::min<int64_t>(limit, static_cast<int64_t>(pairs.size()));
  model();  // the partitions' weights into the whole model
  // Batches of one (cut) source length, as in training.
  std::map<int64_t, std::vector<const EnFrTokens::Pair*>> by_len;
  for (int64_t i = 0; i < n; ++i)
    if (!pairs[i].src.empty() && !pairs[i].tgt.empty())
      by_len[std::min<int64_t>(o_.max_tokens, static_cast<int64_t>(pairs[i].src.size()))].push_back(&pairs[i]);
  double sum = 0.0;
  int64_t tokens = 0;
  for (const auto& [len, group] : by_len)
    for (size_t at = 0; at < group.size(); at += 64) {
      const std::vector<const EnFrTokens::Pair*> batch(group.begin() + at, group.begin() + std::min(group.size(), at + 64));
      int64_t count = 0;
      for (const auto* p : batch) count += static_cast<int64_t>(p->tgt.size()) + 1;
      sum += *LossOf(batch, false) * count;  // without backward: the whole model, no error
      tokens += count;
    }
  return tokens ? sum / tokens : 0.0;
}

StatusOr<Job> Seq2SeqJob(const Seq2SeqEnFrOptions& o, std::shared_ptr<const EnFrTokens> data, const EngineOptions& e) {
  if (e.distributed.mode == Mode::kSandblaster)
    return absl::InvalidArgumentError("Seq2Seq trains locally or with Downpour (Sandblaster needs a fixed example set)");
  const int replicas = e.distributed.mode == Mode::kDownpour ? e.distributed.downpour.replicas : 1;
  const uint64_t seed = e.train.seed;
  const TransportOptions transport = e.distributed.cluster.transport;
  DB_RETURN_IF_ERROR(Seq2SeqReplica::Create(o, data, seed, 0, replicas, transport).status());
  Job job;
  job.name = "seq2seq";
  job.steps = o.steps;
  job.steps_per_epoch = o.eval_every;
  job.examples_per_step = o.batch;
  job.make_replica = [o, data, seed, transport](int r, int replicas) -> StatusOr<std::unique_ptr<ReplicaModel>> {
    DB_ASSIGN_OR_RETURN(auto m, Seq2SeqReplica::Create(o, data, seed, r, replicas, transport));
    return std::unique_ptr<ReplicaModel>(std::move(m));
  };
  const int64_t dev_limit = o.dev_limit;
  job.evaluate = [data, dev_limit](ReplicaModel* model) -> StatusOr<Metrics> {
    const double loss = static_cast<Seq2SeqReplica*>(model)->MeanLoss(data->dev, dev_limit);
    return Metrics{{"dev_loss", loss}, {"dev_perplexity", std::exp(loss)}};
  };
  return job;
}

namespace {

// Bad bytes replaced by U+FFFD (EF BF BD); returns whether any were.
bool RepairUtf8(std::string* s) {
  std::string out;
  bool bad = false;
  const std::string& in = *s;
  for (size_t i = 0; i < in.size();) {
    const unsigned char c = static_cast<unsigned char>(in[i]);
    size_t n = c < 0x80 ? 1 : (c >= 0xC2 && c <= 0xDF) ? 2 : (c >= 0xE0 && c <= 0xEF) ? 3 : (c >= 0xF0 && c <= 0xF4) ? 4 : 0;
    bool ok = n > 0 && i + n <= in.size();
    for (size_t k = 1; ok && k < n; ++k) ok = (static_cast<unsigned char>(in[i + k]) & 0xC0) == 0x80;
    if (ok && n == 3) {
      const unsigned char d = static_cast<unsigned char>(in[i + 1]);
      ok = !(c == 0xE0 && d < 0xA0) && !(c == 0xED && d >= 0xA0);
    }
    if (ok && n == 4) {
      const unsigned char d = static_cast<unsigned char>(in[i + 1]);
      ok = !(c == 0xF0 && d < 0x90) && !(c == 0xF4 && d >= 0x90);
    }
    if (ok) {
      out.append(in, i, n);
      i += n;
    } else {
      out += "\xEF\xBF\xBD";
      bad = true;
      ++i;
    }
  }
  if (bad) *s = std::move(out);
  return bad;
}

}  // namespace

StatusOr<std::vector<std::string>> TranslateLines(Seq2Seq* model, const std::string& spm_model,
                                                  const std::vector<std::string>& lines, const Seq2SeqEnFrOptions& o,
                                                  const DecodeOptions& d, TranslateStats* stats, int64_t first_line,
                                                  FILE* warnings) {
  std::vector<std::string> clean = lines;
  std::vector<int64_t> todo;  // lines with text
  for (size_t i = 0; i < clean.size(); ++i) {
    ++stats->lines;
    for (char& ch : clean[i])
      if (ch == '\r' || ch == '\t' || ch == '\0') ch = ' ';
    if (RepairUtf8(&clean[i])) {
      ++stats->not_utf8;
      if (warnings) std::fprintf(warnings, "line %ld: not UTF-8; bad bytes read as U+FFFD\n", long(first_line + i));
    }
    if (clean[i].find_first_not_of(' ') == std::string::npos) {
      ++stats->empty;
      continue;
    }
    todo.push_back(static_cast<int64_t>(i));
  }
  std::vector<std::string> out(lines.size());
  if (todo.empty()) return out;
  std::vector<std::string> text;
  for (int64_t i : todo) text.push_back(clean[i]);
  DB_ASSIGN_OR_RETURN(auto ids, EncodeLines(spm_model, text));
  for (size_t k = 0; k < ids.size(); ++k)
    if (static_cast<int64_t>(ids[k].size()) > o.max_tokens) {
      ++stats->cut;
      if (warnings)
        std::fprintf(warnings, "line %ld: %zu tokens; translated the first %ld\n", long(first_line + todo[k]),
                     ids[k].size(), long(o.max_tokens));
    }
  const SourceLayout layout{o.reverse_source, static_cast<int>(model->options().src_vocab - 1), o.max_tokens};
  const std::vector<std::vector<int>> hyp = DecodeAll(model, ids, layout, d);
  DB_ASSIGN_OR_RETURN(auto fr, DecodeLines(spm_model, hyp));
  for (size_t k = 0; k < todo.size(); ++k) out[todo[k]] = fr[k];
  return out;
}

namespace {

struct BleuRow {
  std::string system;
  BleuScore score;
};

class Seq2SeqWorkload : public Workload {
 public:
  explicit Seq2SeqWorkload(Seq2SeqEnFrOptions o) : o_(std::move(o)) {}

  StatusOr<Job> MakeJob(const EngineOptions& e) override {
    DB_RETURN_IF_ERROR(LoadData(e));
    return Seq2SeqJob(o_, data_, e);
  }

  Status Report(const EngineOptions& e, RunResult* r) override {
    if (r->diverged) return absl::InternalError("training diverged: the loss stopped being finite (lower optimizer.learning_rate)");
    auto* m = static_cast<Seq2SeqReplica*>(r->model.get());
    std::printf("steps: %ld in %.1f s (%.0f target tokens/s)\n", long(r->steps), r->seconds, TokensPerSecond(*r));
    std::printf("train loss: first %.3f, last %.3f\n", r->first_loss.total, r->last_loss.total);
    if (e.distributed.mode == Mode::kDownpour)
      std::printf("downpour: %d replicas, staleness mean %.2f, max %lu\n", e.distributed.downpour.replicas,
                  r->mean_staleness, (unsigned long)r->max_staleness);
    const double dev = m->MeanLoss(data_->dev, o_.dev_limit);
    std::printf("dev perplexity: %.2f (%ld pairs)\n", std::exp(dev), long(std::min<int64_t>(o_.dev_limit, data_->dev.size())));
    std::error_code ec;
    fs::copy_file(data_->spm_model, e.train.run_dir + "/spm.model", fs::copy_options::overwrite_existing, ec);
    if (ec) return absl::UnavailableError("cannot copy the vocabulary to " + e.train.run_dir + ": " + ec.message());
    DB_ASSIGN_OR_RETURN(std::vector<BleuRow> rows, TestBleu(&m->model(), e.train.run_dir));
    const std::string table = BleuTable(rows);
    std::printf("%s", table.c_str());
    Status plot = PlotPerplexity(e.train.run_dir);
    if (!plot.ok()) LOG_WARN << "no perplexity plot: " << plot.message();
    std::ofstream md(e.train.run_dir + "/report.md");
    md << "# Seq2Seq English -> French\n\n" << DataLine() << "\n\n" << table
       << "\n![perplexity](perplexity.png)\n";
    std::printf("report: %s/report.md\ncheckpoint: %s\n", e.train.run_dir.c_str(), RunCheckpointPath(e.train.run_dir).c_str());
    return absl::OkStatus();
  }

  Status Evaluate(const EngineOptions& e, const EvalRequest& request) override {
    if (!request.flags.empty()) return absl::InvalidArgumentError("eval of Seq2Seq takes no flag --" + request.flags.begin()->first);
    DB_RETURN_IF_ERROR(LoadData(e));
    Seq2SeqEnFrOptions whole = o_;
    whole.partitions = 1;  // a checkpoint of partitions holds the whole model's tensors
    DB_ASSIGN_OR_RETURN(auto m, Seq2SeqReplica::Create(whole, data_, e.train.seed, 0, 1));
    DB_RETURN_IF_ERROR(LoadModelCheckpoint(request.checkpoint, m->params(0)).status());
    std::printf("dev perplexity: %.2f (%ld pairs)\n", std::exp(m->MeanLoss(data_->dev, o_.dev_limit)),
                long(std::min<int64_t>(o_.dev_limit, data_->dev.size())));
    const std::string dir = fs::path(request.checkpoint).parent_path().string();
    DB_ASSIGN_OR_RETURN(std::vector<BleuRow> rows, TestBleu(&m->model(), dir.empty() ? "." : dir));
    std::printf("%s", BleuTable(rows).c_str());
    return absl::OkStatus();
  }

 private:
  Status LoadData(const EngineOptions& e) {
    if (data_) return absl::OkStatus();
    DB_ASSIGN_OR_RETURN(data_, LoadEnFrTokens(o_, e.train.seed));
    std::printf("%s\n", DataLine().c_str());
    return absl::OkStatus();
  }

  std::string DataLine() const {
    const EnFrCorpus& c = data_->corpus;
    std::ostringstream s;
    s << "English-French pairs: " << data_->train.size() << " train (" << data_->train_dropped_long
      << " longer than " << o_.max_tokens << " tokens dropped), " << data_->dev.size() << " dev, " << data_->test.size()
      << " test; vocabulary " << data_->vocab << " joint pieces. Per package:";
    for (const auto& [p, n] : c.per_package) s << " " << p << " " << n;
    s << ". Dropped: " << c.untranslated << " untranslated, " << c.placeholder << " with placeholders, " << c.too_long
      << " too long, " << c.length_ratio << " lengths far apart, " << c.language << " not English/French, "
      << c.duplicate << " duplicates, " << c.seen_in_train << " held-out pairs whose English is in training.";
    return s.str();
  }

  double TokensPerSecond(const RunResult& r) const {
    double tokens = 0;
    for (const auto& p : data_->train) tokens += static_cast<double>(p.tgt.size()) + 1;
    const double per_example = data_->train.empty() ? 0 : tokens / data_->train.size();
    return r.seconds > 0 ? r.examples * per_example / r.seconds : 0.0;
  }

  // The test set translated greedily and with the beam, against copying the English source.
  StatusOr<std::vector<BleuRow>> TestBleu(Seq2Seq* model, const std::string& dir) {
    // test_limit pairs spread evenly over the test set (so every test package is in them).
    const int64_t all = static_cast<int64_t>(data_->test_text.size());
    const int64_t n = o_.test_limit > 0 ? std::min<int64_t>(o_.test_limit, all) : all;
    std::vector<std::string> en, ref;
    for (int64_t k = 0; k < n; ++k) {
      const SentencePair& p = data_->test_text[k * all / n];
      en.push_back(p.en);
      ref.push_back(p.fr);
    }
    std::vector<BleuRow> rows;
    DB_ASSIGN_OR_RETURN(BleuScore copy, CorpusBleuOfLines(en, ref));
    rows.push_back({"copy the English source", copy});
    std::vector<DecodeOptions> decoders = {o_.decode};
    decoders[0].beam = 1;
    if (o_.decode.beam > 1) decoders.push_back(o_.decode);
    for (const DecodeOptions& d : decoders) {
      TranslateStats st;
      DB_ASSIGN_OR_RETURN(auto hyp, TranslateLines(model, data_->spm_model, en, o_, d, &st, 1, nullptr));
      DB_ASSIGN_OR_RETURN(BleuScore b, CorpusBleuOfLines(hyp, ref));
      char name[96];
      std::snprintf(name, sizeof(name), d.beam == 1 ? "greedy" : "beam %d, length penalty %.1f", d.beam, d.length_penalty);
      rows.push_back({name, b});
      std::ofstream f(dir + "/test." + (d.beam == 1 ? "greedy" : "beam") + ".fr");
      for (const auto& l : hyp) f << l << '\n';
    }
    std::ofstream fe(dir + "/test.en"), fr(dir + "/test.ref.fr");
    for (int64_t i = 0; i < n; ++i) fe << en[i] << '\n', fr << ref[i] << '\n';
    return rows;
  }

  std::string BleuTable(const std::vector<BleuRow>& rows) const {
    std::ostringstream s;
    const int64_t n = rows.empty() ? 0 : rows[0].score.sentences;
    s << "Test BLEU (13a tokens, " << n << " of the " << data_->test_text.size() << " sentences of "
      << o_.data.test_packages.size() << " held-out packages, evenly spaced), source "
      << (o_.reverse_source ? "reversed" : "in order") << ":\n\n"
      << "| system | BLEU | 1/2/3/4-gram precision | brevity penalty |\n|---|---|---|---|\n";
    for (const BleuRow& r : rows) {
      char buf[256];
      std::snprintf(buf, sizeof(buf), "| %s | %.2f | %.1f/%.1f/%.1f/%.1f | %.3f |\n", r.system.c_str(), r.score.bleu,
                    r.score.precision[0], r.score.precision[1], r.score.precision[2], r.score.precision[3],
                    r.score.brevity_penalty);
      s << buf;
    }
    return s.str();
  }

  // Train loss and dev perplexity against steps, from metrics.jsonl.
  Status PlotPerplexity(const std::string& dir) {
    std::ifstream in(dir + "/metrics.jsonl");
    if (!in) return absl::NotFoundError("no " + dir + "/metrics.jsonl");
    std::ofstream train(dir + "/perplexity_train.dat"), dev(dir + "/perplexity_dev.dat");
    auto number = [](const std::string& line, const std::string& key, double* v) {
      const size_t at = line.find("\"" + key + "\":");
      if (at == std::string::npos) return false;
      *v = std::strtod(line.c_str() + at + key.size() + 3, nullptr);
      return true;
    };
    int64_t dev_points = 0;
    for (std::string line; std::getline(in, line);) {
      double step, v;
      // Downpour's records count examples of all replicas, not steps.
      if (!number(line, "step", &step)) {
        if (!number(line, "examples", &step)) continue;
        step /= static_cast<double>(o_.batch);
      }
      if (number(line, "dev_perplexity", &v)) dev << step << ' ' << v << '\n', ++dev_points;
      else if (number(line, "train_loss", &v)) train << step << ' ' << std::exp(v) << '\n';
    }
    train.close();
    dev.close();
    const std::string script =
        "set terminal pngcairo size 800,500\nset output '" + dir + "/perplexity.png'\n"
        "set logscale y\nset xlabel 'step'\nset ylabel 'perplexity (per target token)'\nset grid\n"
        "set title 'Seq2Seq EN->FR: training and dev perplexity'\n"
        "plot '" + dir + "/perplexity_train.dat' with lines title 'train (batch mean)'" +
        (dev_points > 0 ? ", '" + dir + "/perplexity_dev.dat' with linespoints title 'dev'" : std::string()) + "\n";
    return RunGnuplot(script, dir + "/perplexity.gp");
  }

  Seq2SeqEnFrOptions o_;
  std::shared_ptr<const EnFrTokens> data_;
};

}  // namespace

Status RunTranslate(const std::string& checkpoint, const std::string& config_path, int beam, float length_penalty,
                    int64_t batch, FILE* in, FILE* out) {
  DB_ASSIGN_OR_RETURN(Checkpoint ckpt, ReadCheckpoint(checkpoint));
  StatusOr<ConfigFile> file = config_path.empty() ? ConfigFile::Parse(ckpt.metadata["config"], checkpoint + " (its config)")
                                                  : ConfigFile::Load(config_path);
  if (!file.ok()) return file.status();
  if (!file->Has("seq2seq")) return absl::InvalidArgumentError(checkpoint + " is not a Seq2Seq checkpoint (its config has no [seq2seq])");
  DB_ASSIGN_OR_RETURN(Seq2SeqEnFrOptions o, ParseSeq2SeqEnFrOptions(&*file));
  const std::string spm = (fs::path(checkpoint).parent_path() / "spm.model").string();
  if (!fs::exists(spm)) return absl::NotFoundError("no vocabulary " + spm + " beside the checkpoint");
  // The vocabulary size is the target embedding's rows.
  auto it = ckpt.tensors.find("tgt_emb.tokens");
  if (it == ckpt.tensors.end() || it->second.ndim() != 2)
    return absl::InvalidArgumentError(checkpoint + " holds no tgt_emb.tokens matrix: not a Seq2Seq checkpoint");
  Seq2SeqOptions net = o.net;
  net.tgt_vocab = it->second.dim(0);
  net.src_vocab = net.tgt_vocab + 1;
  Seq2Seq model(net, 1);
  DB_RETURN_IF_ERROR(LoadModelCheckpoint(checkpoint, model.params()).status());
  DecodeOptions d = o.decode;
  d.beam = beam > 0 ? beam : d.beam;
  if (length_penalty >= 0) d.length_penalty = length_penalty;
  TranslateStats stats;
  std::vector<std::string> lines;
  int64_t first = 1;
  char* buf = nullptr;
  size_t cap = 0;
  auto flush = [&]() -> Status {
    DB_ASSIGN_OR_RETURN(auto fr, TranslateLines(&model, spm, lines, o, d, &stats, first, stderr));
    for (const std::string& l : fr) std::fprintf(out, "%s\n", l.c_str());
    std::fflush(out);
    first += static_cast<int64_t>(lines.size());
    lines.clear();
    return absl::OkStatus();
  };
  for (ssize_t n; (n = ::getline(&buf, &cap, in)) >= 0;) {
    std::string line(buf, static_cast<size_t>(n));
    if (!line.empty() && line.back() == '\n') line.pop_back();
    lines.push_back(std::move(line));
    if (static_cast<int64_t>(lines.size()) >= batch) {
      Status s = flush();
      if (!s.ok()) {
        std::free(buf);
        return s;
      }
    }
  }
  std::free(buf);
  if (!lines.empty()) DB_RETURN_IF_ERROR(flush());
  return absl::OkStatus();
}

StatusOr<std::unique_ptr<Workload>> MakeSeq2SeqEnFrWorkload(ConfigFile* file) {
  DB_ASSIGN_OR_RETURN(Seq2SeqEnFrOptions o, ParseSeq2SeqEnFrOptions(file));
  return std::unique_ptr<Workload>(new Seq2SeqWorkload(std::move(o)));
}

}  // namespace distbelief
