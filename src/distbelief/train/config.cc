#include "distbelief/train/config.h"

#include <fstream>
#include <set>
#include <sstream>

#include <toml.hpp>

namespace distbelief {
namespace {

using Table = toml::value;

// Reads typed fields out of one TOML table and remembers which keys were read, so that any
// other key can be reported as unknown.
class Section {
 public:
  Section(const toml::value* table, std::string name) : table_(table), name_(std::move(name)) {}

  Status Int(const std::string& key, int64_t* out, int64_t lo, int64_t hi) {
    const toml::value* v = Find(key);
    if (!v) return absl::OkStatus();
    if (!v->is_integer()) return TypeError(key, "an integer", *v);
    const int64_t x = v->as_integer();
    if (x < lo || x > hi)
      return absl::InvalidArgumentError(Where(key) + " = " + std::to_string(x) + " is outside [" +
                                        std::to_string(lo) + ", " + std::to_string(hi) + "]");
    *out = x;
    return absl::OkStatus();
  }
  Status Float(const std::string& key, float* out, double lo, double hi) {
    const toml::value* v = Find(key);
    if (!v) return absl::OkStatus();
    double x;
    if (v->is_floating()) x = v->as_floating();
    else if (v->is_integer()) x = static_cast<double>(v->as_integer());
    else return TypeError(key, "a number", *v);
    if (!(x >= lo && x <= hi))
      return absl::InvalidArgumentError(Where(key) + " = " + std::to_string(x) + " is outside [" +
                                        std::to_string(lo) + ", " + std::to_string(hi) + "]");
    *out = static_cast<float>(x);
    return absl::OkStatus();
  }
  Status Bool(const std::string& key, bool* out) {
    const toml::value* v = Find(key);
    if (!v) return absl::OkStatus();
    if (!v->is_boolean()) return TypeError(key, "true or false", *v);
    *out = v->as_boolean();
    return absl::OkStatus();
  }
  Status String(const std::string& key, std::string* out, std::set<std::string> allowed = {}) {
    const toml::value* v = Find(key);
    if (!v) return absl::OkStatus();
    if (!v->is_string()) return TypeError(key, "a string", *v);
    const std::string s = v->as_string();
    if (!allowed.empty() && !allowed.count(s)) {
      std::string list;
      for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
      return absl::InvalidArgumentError(Where(key) + " = \"" + s + "\" is not one of: " + list);
    }
    *out = s;
    return absl::OkStatus();
  }
  Status StringList(const std::string& key, std::vector<std::string>* out) {
    const toml::value* v = Find(key);
    if (!v) return absl::OkStatus();
    if (!v->is_array()) return TypeError(key, "an array of strings", *v);
    std::vector<std::string> xs;
    for (const auto& e : v->as_array()) {
      if (!e.is_string()) return TypeError(key, "an array of strings", *v);
      xs.push_back(e.as_string());
    }
    *out = xs;
    return absl::OkStatus();
  }
  Status IntList(const std::string& key, std::vector<int64_t>* out, int64_t lo, int64_t hi) {
    const toml::value* v = Find(key);
    if (!v) return absl::OkStatus();
    if (!v->is_array()) return TypeError(key, "an array of integers", *v);
    std::vector<int64_t> xs;
    for (const auto& e : v->as_array()) {
      if (!e.is_integer()) return TypeError(key, "an array of integers", *v);
      if (e.as_integer() < lo || e.as_integer() > hi)
        return absl::InvalidArgumentError(Where(key) + " holds " + std::to_string(e.as_integer()) +
                                          ", outside [" + std::to_string(lo) + ", " +
                                          std::to_string(hi) + "]");
      xs.push_back(e.as_integer());
    }
    *out = xs;
    return absl::OkStatus();
  }
  // kInvalidArgument naming the first key that no reader asked for.
  Status CheckNoUnknownKeys() const {
    if (!table_) return absl::OkStatus();
    for (const auto& [k, v] : table_->as_table())
      if (!read_.count(k))
        return absl::InvalidArgumentError("unknown key '" + name_ + "." + k + "'");
    return absl::OkStatus();
  }

 private:
  const toml::value* Find(const std::string& key) {
    read_.insert(key);
    if (!table_) return nullptr;
    const auto& t = table_->as_table();
    auto it = t.find(key);
    return it == t.end() ? nullptr : &it->second;
  }
  std::string Where(const std::string& key) const { return name_ + "." + key; }
  Status TypeError(const std::string& key, const std::string& want, const toml::value& got) const {
    std::ostringstream s;
    s << got;
    return absl::InvalidArgumentError(Where(key) + " must be " + want + ", got " + s.str());
  }
  const toml::value* table_;
  std::string name_;
  std::set<std::string> read_;
};

// Applies "section.key=value" onto the parsed document.
Status ApplyOverride(toml::value* doc, const std::string& spec) {
  const auto eq = spec.find('=');
  const auto dot = spec.find('.');
  if (eq == std::string::npos || dot == std::string::npos || dot > eq)
    return absl::InvalidArgumentError("--set '" + spec + "': expected section.key=value");
  const std::string section = spec.substr(0, dot), key = spec.substr(dot + 1, eq - dot - 1);
  toml::value parsed;
  try {
    std::istringstream in("v = " + spec.substr(eq + 1));
    parsed = toml::parse(in, "--set");
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError("--set '" + spec + "': the value is not valid TOML (strings need quotes)");
  }
  auto& table = doc->as_table();
  if (!table.count(section)) table[section] = toml::table{};
  if (!table[section].is_table())
    return absl::InvalidArgumentError("--set '" + spec + "': " + section + " is not a section");
  table[section].as_table()[key] = parsed.as_table().at("v");
  return absl::OkStatus();
}

}  // namespace

StatusOr<Config> ParseConfig(const std::string& text, const std::string& origin,
                             const std::vector<std::string>& overrides) {
  toml::value doc;
  try {
    std::istringstream in(text);
    doc = toml::parse(in, origin);
  } catch (const std::exception& e) {
    // toml11 reports syntax errors by exception; turn them into a Status at this boundary.
    return absl::InvalidArgumentError(std::string("config ") + origin + " is not valid TOML: " + e.what());
  }
  for (const auto& o : overrides) DB_RETURN_IF_ERROR(ApplyOverride(&doc, o));
  const std::set<std::string> sections = {"model", "optimizer", "train", "distributed", "cat", "scale"};
  for (const auto& [k, v] : doc.as_table()) {
    if (!sections.count(k)) return absl::InvalidArgumentError("unknown section or key '" + k + "' in " + origin);
    if (!v.is_table()) return absl::InvalidArgumentError("'" + k + "' must be a [section]");
  }
  auto table = [&](const char* name) -> const toml::value* {
    const auto& t = doc.as_table();
    auto it = t.find(name);
    return it == t.end() ? nullptr : &it->second;
  };
  Config c;
  Section m(table("model"), "model");
  DB_RETURN_IF_ERROR(m.String("kind", &c.model.kind, {"mlp", "autoencoder"}));
  DB_RETURN_IF_ERROR(m.IntList("hidden", &c.model.hidden, 1, 1 << 20));
  DB_RETURN_IF_ERROR(m.String("activation", &c.model.activation, {"relu", "sigmoid", "tanh"}));
  DB_RETURN_IF_ERROR(m.Float("dropout", &c.model.dropout, 0.0, 0.95));
  DB_RETURN_IF_ERROR(m.CheckNoUnknownKeys());

  Section o(table("optimizer"), "optimizer");
  DB_RETURN_IF_ERROR(o.String("name", &c.optimizer.name, {"sgd", "adagrad", "adam"}));
  DB_RETURN_IF_ERROR(o.Float("learning_rate", &c.optimizer.learning_rate, 1e-9, 100.0));
  DB_RETURN_IF_ERROR(o.Float("momentum", &c.optimizer.momentum, 0.0, 0.9999));
  DB_RETURN_IF_ERROR(o.Float("weight_decay", &c.optimizer.weight_decay, 0.0, 1.0));
  DB_RETURN_IF_ERROR(o.Float("beta1", &c.optimizer.beta1, 0.0, 0.9999));
  DB_RETURN_IF_ERROR(o.Float("beta2", &c.optimizer.beta2, 0.0, 0.999999));
  DB_RETURN_IF_ERROR(o.Float("epsilon", &c.optimizer.epsilon, 0.0, 1.0));
  DB_RETURN_IF_ERROR(o.Float("clip_norm", &c.optimizer.clip_norm, 0.0, 1e9));
  DB_RETURN_IF_ERROR(o.CheckNoUnknownKeys());

  Section t(table("train"), "train");
  TrainOptions& tr = c.train;
  DB_RETURN_IF_ERROR(t.String("data_dir", &tr.data_dir));
  DB_RETURN_IF_ERROR(t.Int("epochs", &tr.epochs, 1, 100000));
  DB_RETURN_IF_ERROR(t.Int("batch_size", &tr.batch_size, 1, 1 << 20));
  DB_RETURN_IF_ERROR(t.Int("max_steps", &tr.max_steps, 0, int64_t{1} << 40));
  DB_RETURN_IF_ERROR(t.Int("train_limit", &tr.train_limit, 0, int64_t{1} << 40));
  int64_t seed = static_cast<int64_t>(tr.seed);
  DB_RETURN_IF_ERROR(t.Int("seed", &seed, 0, int64_t{1} << 62));
  tr.seed = static_cast<uint64_t>(seed);
  DB_RETURN_IF_ERROR(t.Int("threads", &tr.threads, 0, 1024));
  DB_RETURN_IF_ERROR(t.Bool("deterministic", &tr.deterministic));
  DB_RETURN_IF_ERROR(t.String("lr_schedule", &tr.lr_schedule, {"constant", "cosine"}));
  DB_RETURN_IF_ERROR(t.String("run_dir", &tr.run_dir));
  DB_RETURN_IF_ERROR(t.Int("checkpoint_every", &tr.checkpoint_every, 0, int64_t{1} << 40));
  DB_RETURN_IF_ERROR(t.Int("log_every", &tr.log_every, 1, int64_t{1} << 40));
  DB_RETURN_IF_ERROR(t.CheckNoUnknownKeys());

  if (const toml::value* ct = table("cat")) {
    CatOptions& k = c.cat;
    k.enabled = true;
    Section cs(ct, "cat");
    DB_RETURN_IF_ERROR(cs.Int("frame", &k.frame, 8, 1024));
    DB_RETURN_IF_ERROR(cs.Int("stages", &k.stages, 1, 9));
    DB_RETURN_IF_ERROR(cs.Int("maps", &k.maps, 1, 1024));
    DB_RETURN_IF_ERROR(cs.Int("field", &k.field, 1, 512));
    DB_RETURN_IF_ERROR(cs.Int("stride", &k.stride, 1, 512));
    DB_RETURN_IF_ERROR(cs.Int("pool", &k.pool, 1, 64));
    DB_RETURN_IF_ERROR(cs.Int("lcn_window", &k.lcn_window, 1, 63));
    DB_RETURN_IF_ERROR(cs.Float("lambda", &k.lambda, 0.0, 100.0));
    DB_RETURN_IF_ERROR(cs.Float("init_scale", &k.init_scale, 1e-6, 10.0));
    DB_RETURN_IF_ERROR(cs.Int("steps_per_stage", &k.steps_per_stage, 1, int64_t{1} << 40));
    DB_RETURN_IF_ERROR(cs.Int("batch", &k.batch, 1, 1 << 16));
    DB_RETURN_IF_ERROR(cs.Int("max_side", &k.max_side, 0, 1 << 16));
    DB_RETURN_IF_ERROR(cs.Int("partitions", &k.partitions, 1, 1024));
    if (k.partitions > k.maps)
      return absl::InvalidArgumentError("cat.partitions = " + std::to_string(k.partitions) + " exceeds cat.maps = " +
                                        std::to_string(k.maps) + "; the network is split by maps");
    DB_RETURN_IF_ERROR(cs.Float("learning_rate", &k.learning_rate, 1e-9, 100.0));
    DB_RETURN_IF_ERROR(cs.String("train_dir", &k.train_dir));
    DB_RETURN_IF_ERROR(cs.String("faces_dir", &k.faces_dir));
    DB_RETURN_IF_ERROR(cs.String("nonfaces_dir", &k.nonfaces_dir));
    DB_RETURN_IF_ERROR(cs.CheckNoUnknownKeys());
  }

  if (const toml::value* st = table("scale")) {
    ScaleOptions& k = c.scale;
    k.enabled = true;
    Section ss(st, "scale");
    DB_RETURN_IF_ERROR(ss.String("workload", &k.workload, {"gpt", "lstm", "autoencoder"}));
    DB_RETURN_IF_ERROR(ss.String("corpus_dir", &k.corpus_dir));
    DB_RETURN_IF_ERROR(ss.String("cache_dir", &k.cache_dir));
    DB_RETURN_IF_ERROR(ss.String("out_dir", &k.out_dir));
    DB_RETURN_IF_ERROR(ss.Int("vocab", &k.vocab, 16, 65536));
    DB_RETURN_IF_ERROR(ss.Int("context", &k.context, 2, 4096));
    DB_RETURN_IF_ERROR(ss.Int("head_size", &k.head_size, 1, 4096));
    DB_RETURN_IF_ERROR(ss.Int("batch", &k.batch, 1, 1 << 16));
    DB_RETURN_IF_ERROR(ss.Int("holdout_every", &k.holdout_every, 2, 1 << 20));
    DB_RETURN_IF_ERROR(ss.IntList("widths", &k.widths, 1, 1 << 16));
    DB_RETURN_IF_ERROR(ss.IntList("layers", &k.layers, 1, 1024));
    DB_RETURN_IF_ERROR(ss.IntList("tokens", &k.tokens, 1, int64_t{1} << 40));
    DB_RETURN_IF_ERROR(ss.Float("learning_rate", &k.learning_rate, 1e-9, 10.0));
    DB_RETURN_IF_ERROR(ss.Int("warmup_steps", &k.warmup_steps, 0, int64_t{1} << 40));
    DB_RETURN_IF_ERROR(ss.Int("eval_tokens", &k.eval_tokens, 1, int64_t{1} << 40));
    DB_RETURN_IF_ERROR(ss.Int("bootstrap", &k.bootstrap, 0, 100000));
    DB_RETURN_IF_ERROR(ss.Bool("check_prediction", &k.check_prediction));
    DB_RETURN_IF_ERROR(ss.Int("threads", &k.threads, 0, 4096));
    int64_t seed = static_cast<int64_t>(k.seed);
    DB_RETURN_IF_ERROR(ss.Int("seed", &seed, 0, int64_t{1} << 62));
    k.seed = static_cast<uint64_t>(seed);
    DB_RETURN_IF_ERROR(ss.CheckNoUnknownKeys());
    if (k.widths.empty() || k.tokens.empty())
      return absl::InvalidArgumentError("scale.widths and scale.tokens must not be empty");
    if (k.layers.size() != k.widths.size())
      return absl::InvalidArgumentError("scale.layers has " + std::to_string(k.layers.size()) +
                                        " entries but scale.widths has " + std::to_string(k.widths.size()) +
                                        "; give one depth per width");
    for (int64_t w : k.widths)
      if (k.workload == "gpt" && w % k.head_size != 0)
        return absl::InvalidArgumentError("scale.widths holds " + std::to_string(w) +
                                          ", not a multiple of scale.head_size = " + std::to_string(k.head_size));
  }

  if (const toml::value* dt = table("distributed")) {
    DistributedOptions& d = c.distributed;
    d.enabled = true;
    Section ds(dt, "distributed");
    DB_RETURN_IF_ERROR(ds.String("mode", &d.mode, {"downpour", "sandblaster"}));
    DB_RETURN_IF_ERROR(ds.Int("replicas", &d.replicas, 1, 4096));
    DB_RETURN_IF_ERROR(ds.Int("shards", &d.shards, 1, 4096));
    DB_RETURN_IF_ERROR(ds.Int("n_fetch", &d.n_fetch, 1, 1 << 20));
    DB_RETURN_IF_ERROR(ds.Int("n_push", &d.n_push, 1, 1 << 20));
    DB_RETURN_IF_ERROR(ds.Int("warmstart_steps", &d.warmstart_steps, 0, int64_t{1} << 40));
    DB_RETURN_IF_ERROR(ds.Int("staleness_bound", &d.staleness_bound, 0, int64_t{1} << 40));
    DB_RETURN_IF_ERROR(ds.Bool("synchronous", &d.synchronous));
    DB_RETURN_IF_ERROR(ds.Bool("fetch_in_background", &d.fetch_in_background));
    DB_RETURN_IF_ERROR(ds.Bool("fetch_after_push", &d.fetch_after_push));
    DB_RETURN_IF_ERROR(ds.String("data_plane", &d.data_plane, {"socket", "grpc"}));
    DB_RETURN_IF_ERROR(ds.String("transport", &d.transport, {"inproc", "grpc"}));
    DB_RETURN_IF_ERROR(ds.StringList("shard_addresses", &d.shard_addresses));
    DB_RETURN_IF_ERROR(ds.StringList("worker_addresses", &d.worker_addresses));
    DB_RETURN_IF_ERROR(ds.String("secret_file", &d.secret_file));
    DB_RETURN_IF_ERROR(ds.String("tls_cert_file", &d.tls_cert_file));
    DB_RETURN_IF_ERROR(ds.String("tls_key_file", &d.tls_key_file));
    DB_RETURN_IF_ERROR(ds.String("tls_root_file", &d.tls_root_file));
    DB_RETURN_IF_ERROR(ds.String("tls_target_name", &d.tls_target_name));
    if (d.tls_cert_file.empty() != d.tls_key_file.empty())
      return absl::InvalidArgumentError("distributed.tls_cert_file and distributed.tls_key_file go together");
    DB_RETURN_IF_ERROR(ds.String("shard_checkpoint_dir", &d.shard_checkpoint_dir));
    DB_RETURN_IF_ERROR(ds.Int("shard_checkpoint_every", &d.shard_checkpoint_every, 0, int64_t{1} << 40));
    DB_RETURN_IF_ERROR(ds.Int("portions_per_replica", &d.portions_per_replica, 1, 1 << 20));
    DB_RETURN_IF_ERROR(ds.Int("lbfgs_iterations", &d.lbfgs_iterations, 1, 1 << 20));
    DB_RETURN_IF_ERROR(ds.Int("lbfgs_history", &d.lbfgs_history, 1, 100));
    DB_RETURN_IF_ERROR(ds.CheckNoUnknownKeys());
    if (d.fetch_in_background && (d.synchronous || d.staleness_bound > 0))
      return absl::InvalidArgumentError("distributed.fetch_in_background cannot be used with distributed.synchronous "
                                        "or distributed.staleness_bound (both need the parameters of this very step)");
    if (d.synchronous && d.warmstart_steps > 0)
      return absl::InvalidArgumentError("distributed.warmstart_steps cannot be used with distributed.synchronous = true "
                                        "(the other replicas would wait for a replica that waits for them)");
    if (!d.shard_addresses.empty()) {
      if (d.transport != "grpc")
        return absl::InvalidArgumentError("distributed.shard_addresses needs distributed.transport = \"grpc\"");
      d.shards = static_cast<int64_t>(d.shard_addresses.size());
    }
    if (!d.worker_addresses.empty()) {
      if (d.transport != "grpc" || d.mode != "sandblaster")
        return absl::InvalidArgumentError("distributed.worker_addresses needs mode = \"sandblaster\" and transport = \"grpc\"");
      d.replicas = static_cast<int64_t>(d.worker_addresses.size());
    }
  }

  std::ostringstream text_out;
  text_out << doc;
  c.text = text_out.str();
  return c;
}

StatusOr<Config> LoadConfig(const std::string& path, const std::vector<std::string>& overrides) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError("config file " + path + " not found");
  std::stringstream ss;
  ss << in.rdbuf();
  return ParseConfig(ss.str(), path, overrides);
}

}  // namespace distbelief
