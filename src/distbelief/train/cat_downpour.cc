#include "distbelief/train/cat_downpour.h"

#include <atomic>
#include <chrono>
#include <cmath>
#include <mutex>
#include <thread>

#include "distbelief/base/logging.h"
#include "distbelief/base/parallel.h"
#include "distbelief/io/metrics.h"
#include "distbelief/ps/parameter_client.h"
#include "distbelief/train/cat_mp.h"
#include "distbelief/train/cluster.h"

namespace distbelief {
namespace {

using Millis = std::chrono::milliseconds;

void GetFlat(const std::vector<Param*>& ps, std::vector<float>* flat) {
  flat->clear();
  for (Param* p : ps) flat->insert(flat->end(), p->value.data(), p->value.data() + p->value.size());
}
void SetFlat(const std::vector<Param*>& ps, std::span<const float> flat) {
  size_t at = 0;
  for (Param* p : ps) {
    std::copy(flat.begin() + at, flat.begin() + at + p->value.size(), p->value.data());
    at += p->value.size();
  }
}
void AddGradFlat(const std::vector<Param*>& ps, std::vector<float>* acc) {
  size_t at = 0;
  for (Param* p : ps) {
    const float* g = p->grad.data();
    for (int64_t i = 0; i < p->grad.size(); ++i) (*acc)[at + i] += g[i];
    at += p->grad.size();
  }
}

// What the replica threads of one stage share.
struct StageShared {
  std::atomic<int64_t> steps{0};          // done by all replicas
  std::atomic<int64_t> replica0_steps{0};
  std::atomic<int> failed{0};
  std::mutex mu;
  std::vector<std::pair<double, double>> losses;  // per step, in completion order
  double staleness_sum = 0.0;
  int64_t staleness_count = 0;
};

}  // namespace

StatusOr<CatTrainResult> TrainCatNetDownpour(CatNet* net, const CatTrainOptions& o, const Config& config,
                                             CatDownpourStats* stats) {
  const DistributedOptions& d = config.distributed;
  const int replicas = static_cast<int>(d.replicas);
  ImageFolderOptions fo;
  fo.min_side = o.net.frame;
  fo.max_side = o.max_side;
  DB_ASSIGN_OR_RETURN(ImageFolder photos, LoadImageFolder(o.train_dir, fo));
  CatTrainResult result;
  result.training_images = static_cast<int64_t>(photos.images.size());
  result.unreadable = photos.unreadable;

  // Every replica has its own network (activations are per replica) and its own crops; with
  // model partitions, its network is split by maps into `parts` partitions.
  const int parts = static_cast<int>(o.partitions);
  std::vector<std::unique_ptr<CatNet>> nets;
  std::vector<std::unique_ptr<Transport>> mp_transports;
  std::vector<std::unique_ptr<CatModelParallel>> mps;
  DB_ASSIGN_OR_RETURN(TransportOptions to, MakeTransportOptions(config));
  const bool grpc = d.transport == "grpc";
  for (int r = 0; r < replicas; ++r) {
    DB_ASSIGN_OR_RETURN(auto n, CatNet::Create(o.net, o.seed));
    if (parts > 1) {
      mp_transports.push_back(grpc ? MakeGrpcTransport(to) : MakeInprocTransport(to));
      DB_ASSIGN_OR_RETURN(auto mp, CatModelParallel::Create(net, o.net, parts, mp_transports.back().get(), grpc));
      mps.push_back(std::move(mp));
    }
    nets.push_back(std::move(n));
  }
  const int all_threads = NumThreads();
  const int threads_each = std::max(1, all_threads / (replicas * parts));
  const int64_t steps_each = (o.steps_per_stage + replicas - 1) / replicas;
  CatDownpourStats local_stats;
  const auto start = std::chrono::steady_clock::now();
  // One progress line over every stage, so its ETA is the whole run's.
  Progress progress(steps_each * replicas * net->num_stages(), "steps");

  for (int s = 0; s < net->num_stages(); ++s) {
    // Lower stages are final: every replica computes this stage's input with them.
    for (int r = 0; r < replicas; ++r)
      for (int lower = 0; lower < s; ++lower) {
        std::vector<float> flat;
        GetFlat(net->StageParams(lower), &flat);
        SetFlat(nets[r]->StageParams(lower), flat);
        if (parts > 1) mps[r]->CopyFrom(net, lower);
      }
    // The stage's parameters in `parts` units (the whole stage, or one per model partition), each
    // unit on its own shards: partition p of every replica talks only to unit p's shards.
    std::vector<std::vector<float>> initial(parts);
    std::vector<KeyBlocks> dec(parts);
    std::vector<ShardMap> maps;
    std::vector<std::unique_ptr<Cluster>> clusters;
    for (int u = 0; u < parts; ++u) {
      GetFlat(parts > 1 ? mps[0]->StageParams(u, s) : net->StageParams(s), &initial[u]);
      dec[u] = parts > 1 ? mps[0]->DecoderBlocks(u, s) : net->DecoderBlocks(s);
      maps.push_back(ShardMap::Aligned(static_cast<int64_t>(initial[u].size()), static_cast<int>(d.shards), {dec[u]}));
    }
    for (int u = 0; u < parts; ++u) {
      const ShardMap& map = maps[u];
      auto customize = [&](int shard, ShardOptions* so) {
        so->shard = u * static_cast<int>(d.shards) + shard;
        so->optimizer.name = "adagrad";
        so->optimizer.learning_rate = o.learning_rate;
        so->checkpoint_path.clear();  // a stage's shards live only as long as the stage
        // This shard's part of the decoder blocks, relative to its start.
        const int64_t lo = std::max(map.begin(shard), dec[u].offset);
        const int64_t hi = std::min(map.end(shard), dec[u].offset + dec[u].block * dec[u].count);
        if (hi > lo) so->norm_blocks = {{lo - map.begin(shard), dec[u].block, (hi - lo) / dec[u].block}};
        so->max_block_norm = 1.0f;
      };
      DB_ASSIGN_OR_RETURN(auto cluster, StartCluster(config, initial[u], &map, customize));
      clusters.push_back(std::move(cluster));
    }
    StageShared shared;
    const int64_t before = steps_each * replicas * s;

    auto replica = [&](int r) -> Status {
      SetNumThreads(threads_each);
      CatNet* rn = nets[r].get();
      std::vector<std::unique_ptr<ParameterClient>> clients(parts);
      for (int u = 0; u < parts; ++u) {
        ClientOptions co;
        co.replica = r;
        DB_ASSIGN_OR_RETURN(clients[u], ParameterClient::Connect(clusters[u]->transport.get(), clusters[u]->addresses,
                                                                 maps[u], co));
      }
      if (r > 0 && d.warmstart_steps > 0)
        while (shared.replica0_steps.load() < std::min(d.warmstart_steps, steps_each) && shared.failed.load() == 0)
          std::this_thread::sleep_for(Millis(2));
      CropOptions cro;
      cro.size = o.net.frame;
      cro.batch = o.batch;
      cro.seed = o.seed * 1000003 + r * 7919 + s;
      CropStream stream(&photos, cro);
      struct Unit {
        std::vector<Param*> params;
        std::vector<float> flat, acc, sending;
        std::vector<uint64_t> based_on, staleness;
        std::optional<PendingOp> pending;
      };
      std::vector<Unit> units(parts);
      for (int u = 0; u < parts; ++u) {
        units[u].params = parts > 1 ? mps[r]->StageParams(u, s) : rn->StageParams(s);
        units[u].flat.assign(initial[u].size(), 0.0f);
        units[u].acc.assign(initial[u].size(), 0.0f);
        units[u].sending.assign(initial[u].size(), 0.0f);
      }
      auto finish_push = [&](Unit& un) -> Status {
        if (!un.pending) return absl::OkStatus();
        Status st = un.pending->Wait(Millis(120000));
        un.pending.reset();
        if (st.ok() && !un.staleness.empty()) {
          std::lock_guard<std::mutex> lock(shared.mu);
          for (uint64_t x : un.staleness) shared.staleness_sum += x, ++shared.staleness_count;
        }
        return st;
      };
      auto finish_all = [&]() -> Status {
        Status first;
        for (Unit& un : units)
          if (Status st = finish_push(un); !st.ok() && first.ok()) first = st;
        return first;
      };
      for (int64_t step = 0; step < steps_each; ++step) {
        if (step % d.n_fetch == 0)
          for (int u = 0; u < parts; ++u) {
            PullResult pr;
            if (Status st = clients[u]->Pull(units[u].flat, &pr); !st.ok()) {
              (void)finish_all();
              return st;
            }
            SetFlat(units[u].params, units[u].flat);
            units[u].based_on = pr.versions;
          }
        const Tensor x = stream.Next();
        std::pair<double, double> loss;
        if (parts > 1) {
          auto l = mps[r]->StageLossAndGradient(s, x);
          if (!l.ok()) {
            (void)finish_all();
            return l.status();
          }
          loss = *l;
        } else {
          for (Param* p : units[0].params) p->grad.Zero();
          const Tensor& in = rn->StageInput(s, x);
          loss = rn->StageLossAndGradient(s, in);
        }
        if (!std::isfinite(loss.first + loss.second)) {
          (void)finish_all();
          return absl::InternalError("cat stage " + std::to_string(s + 1) + " diverged in replica " + std::to_string(r));
        }
        for (int u = 0; u < parts; ++u) AddGradFlat(units[u].params, &units[u].acc);
        if ((step + 1) % d.n_push == 0 || step + 1 == steps_each)
          for (int u = 0; u < parts; ++u) {
            Unit& un = units[u];
            DB_RETURN_IF_ERROR(finish_push(un));
            un.sending.swap(un.acc);
            std::fill(un.acc.begin(), un.acc.end(), 0.0f);
            un.pending = clients[u]->PushAsync(un.sending, un.based_on, step + 1, &un.staleness);
          }
        {
          std::lock_guard<std::mutex> lock(shared.mu);
          shared.losses.push_back(loss);
        }
        const int64_t done = shared.steps.fetch_add(1) + 1;
        if (r == 0) {
          shared.replica0_steps.store(step + 1);
          char status[128];
          std::snprintf(status, sizeof(status), "stage %d/%d, %d replicas%s: reconstruction %.2f sparsity %.2f", s + 1,
                        net->num_stages(), replicas, parts > 1 ? (" x " + std::to_string(parts) + " partitions").c_str() : "",
                        loss.first, loss.second);
          progress.Update(before + done, status);
        }
      }
      return finish_all();
    };
    std::vector<std::thread> threads;
    std::vector<Status> statuses(replicas);
    for (int r = 0; r < replicas; ++r)
      threads.emplace_back([&, r] {
        statuses[r] = replica(r);
        if (!statuses[r].ok()) {
          shared.failed.fetch_add(1);
          LOG_WARN << "cat replica " << r << " dropped in stage " << s + 1 << ": " << statuses[r].message();
        }
      });
    for (auto& t : threads) t.join();
    if (shared.failed.load() == replicas) return statuses[0];
    local_stats.replicas_failed += shared.failed.load();

    // The stage's final parameters, from the shards.
    for (int u = 0; u < parts; ++u) {
      DB_ASSIGN_OR_RETURN(auto client, ParameterClient::Connect(clusters[u]->transport.get(), clusters[u]->addresses,
                                                                maps[u], ClientOptions{}));
      PullResult pr;
      std::vector<float> final_params(initial[u].size());
      DB_RETURN_IF_ERROR(client->Pull(final_params, &pr));
      SetFlat(parts > 1 ? mps[0]->StageParams(u, s) : net->StageParams(s), final_params);
    }
    if (parts > 1) mps[0]->CopyTo(net, s);

    const int64_t every = std::max<int64_t>(1, static_cast<int64_t>(shared.losses.size()) / 10);
    std::pair<double, double> first{0, 0}, last{0, 0};
    for (int64_t i = 0; i < every; ++i) {
      first.first += shared.losses[i].first / every, first.second += shared.losses[i].second / every;
      const auto& l = shared.losses[shared.losses.size() - 1 - i];
      last.first += l.first / every, last.second += l.second / every;
    }
    result.first_loss.push_back(first);
    result.last_loss.push_back(last);
    if (shared.staleness_count > 0) local_stats.mean_staleness = shared.staleness_sum / shared.staleness_count;
  }
  progress.Finish();
  SetNumThreads(all_threads);
  local_stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (stats) *stats = local_stats;
  DB_ASSIGN_OR_RETURN(result.report, EvaluateFaceNeurons(net, o));
  return result;
}

}  // namespace distbelief
