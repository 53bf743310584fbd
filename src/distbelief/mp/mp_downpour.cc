#include "distbelief/mp/mp_downpour.h"

#include <atomic>
#include <cstring>
#include <mutex>
#include <thread>

#include "distbelief/base/logging.h"
#include "distbelief/base/random.h"
#include "distbelief/ps/parameter_client.h"
#include "distbelief/ps/parameter_shard.h"

namespace distbelief {
namespace {

std::vector<Layer*> Raw(const std::vector<std::unique_ptr<Layer>>& v) {
  std::vector<Layer*> out;
  for (auto& l : v) out.push_back(l.get());
  return out;
}

void GetFlat(Partition& p, std::vector<float>* flat) {
  flat->clear();
  for (Param* q : p.params()) flat->insert(flat->end(), q->value.data(), q->value.data() + q->value.size());
}
void SetFlat(Partition& p, const std::vector<float>& flat) {
  size_t at = 0;
  for (Param* q : p.params()) {
    std::memcpy(q->value.data(), flat.data() + at, q->value.size() * sizeof(float));
    at += q->value.size();
  }
}
void GradFlat(Partition& p, std::vector<float>* flat) {
  flat->clear();
  for (Param* q : p.params()) {
    flat->insert(flat->end(), q->grad.data(), q->grad.data() + q->grad.size());
    q->grad.Fill(0.0f);
  }
}

// The parameter server of one partition: its shards, served on the transport.
struct PartitionServer {
  std::unique_ptr<ShardMap> map;
  std::vector<std::unique_ptr<ParameterShard>> shards;
  std::vector<std::unique_ptr<Transport::Server>> servers;
  std::vector<std::string> addresses;
};

}  // namespace

StatusOr<MpDownpourResult> RunModelParallelDownpour(const MpModelSpec& spec, const MpDownpourOptions& o) {
  for (const auto& l : spec.layers)
    if (l.kind == MpLayerKind::kConv)
      return absl::InvalidArgumentError(
          "model-parallel Downpour needs untied weights: a convolution kernel would be held by every partition; "
          "use locally connected layers (as DistBelief's image models did)");
  auto transport = o.grpc ? MakeGrpcTransport({}) : MakeInprocTransport({});
  const auto student = BuildMpReference(spec, o.seed);
  DB_ASSIGN_OR_RETURN(PartitionPlan plan, MakePartitionPlan(spec, o.partitions));

  // One parameter server per partition, holding that partition's initial student parameters.
  std::vector<PartitionServer> servers(o.partitions);
  {
    DB_ASSIGN_OR_RETURN(auto first, MpReplica::Create(spec, o.partitions, Raw(student), transport.get(), o.grpc));
    for (int p = 0; p < o.partitions; ++p) {
      std::vector<float> init;
      GetFlat(first->partition(p), &init);
      PartitionServer& ps = servers[p];
      ps.map = std::make_unique<ShardMap>(static_cast<int64_t>(init.size()), o.shards_per_partition);
      for (int s = 0; s < o.shards_per_partition; ++s) {
        ShardOptions so;
        so.shard = p * o.shards_per_partition + s;
        so.optimizer.name = "adagrad";
        so.optimizer.learning_rate = o.learning_rate;
        DB_ASSIGN_OR_RETURN(auto shard, ParameterShard::Create(so, std::span<const float>(init).subspan(
                                                                       ps.map->begin(s), ps.map->size(s))));
        DB_ASSIGN_OR_RETURN(auto server, transport->ServeShard(o.grpc ? "127.0.0.1:0" : "", shard.get()));
        ps.addresses.push_back(server->address());
        ps.shards.push_back(std::move(shard));
        ps.servers.push_back(std::move(server));
      }
    }
  }

  std::mutex mu;
  std::vector<double> losses;
  MpDownpourResult result;
  std::atomic<int64_t> failures{0}, restarts{0};
  auto replica = [&](int r) -> Status {
    std::unique_ptr<MpReplica> rep;
    std::vector<std::unique_ptr<ParameterClient>> clients(o.partitions);
    auto build = [&]() -> Status {
      rep.reset();
      DB_ASSIGN_OR_RETURN(rep, MpReplica::Create(spec, o.partitions, Raw(student), transport.get(), o.grpc, r));
      rep->SetTimeout(o.partition_timeout);
      for (int p = 0; p < o.partitions; ++p) {
        ClientOptions co;
        co.replica = r;
        // Partition p reaches only the shards of its own parameters.
        DB_ASSIGN_OR_RETURN(clients[p], ParameterClient::Connect(transport.get(), servers[p].addresses,
                                                                 *servers[p].map, co));
      }
      return absl::OkStatus();
    };
    DB_RETURN_IF_ERROR(build());
    // This replica's copy of the teacher (layers keep their activations, so no sharing).
    const auto teacher = BuildMpReference(spec, o.seed + 1000);
    Random rng(o.seed * 7919 + r);
    std::vector<float> flat;
    for (int64_t step = 0; step < o.steps; ++step) {
      if (o.before_step) o.before_step(r, step, rep.get());
      // Fetch each partition's parameters from its own shards.
      for (int p = 0; p < o.partitions; ++p) {
        flat.assign(servers[p].map->total(), 0.0f);
        PullResult pr;
        DB_RETURN_IF_ERROR(clients[p]->Pull(flat, &pr));
        SetFlat(rep->partition(p), flat);
      }
      Tensor x({o.batch, spec.channels, spec.height, spec.width});
      for (float& v : x.span()) v = rng.Uniform(-1.0f, 1.0f);
      // The target: the teacher's output.
      Tensor a = x, b;
      for (size_t l = 0; l < teacher.size(); ++l) {
        if (spec.layers[l].kind == MpLayerKind::kFullyConnected && a.ndim() == 4) a.Reshape({o.batch, a.size() / o.batch});
        teacher[l]->Forward(a, &b);
        a = b;
      }
      // Forward through the partitions, the loss's gradient here, then backward through them.
      Tensor y;
      Status st = rep->Forward(x, &y);
      Tensor dy(y.shape());
      double loss = 0.0;
      if (st.ok()) {
        for (int64_t i = 0; i < y.size(); ++i) {
          const double d = y[i] - a[i];
          loss += d * d;
          dy[i] = static_cast<float>(2.0 * d / y.size());
        }
        loss /= y.size();
        st = rep->Backward(dy, nullptr);
      }
      if (!st.ok()) {
        failures.fetch_add(1);
        LOG_WARN << "model-parallel replica " << r << " failed at step " << step << ": " << st.message();
        if (!o.restart_failed_replicas) return st;
        restarts.fetch_add(1);
        DB_RETURN_IF_ERROR(build());
        continue;
      }
      for (int p = 0; p < o.partitions; ++p) {
        GradFlat(rep->partition(p), &flat);
        PendingOp op = clients[p]->PushAsync(flat, std::vector<uint64_t>(o.shards_per_partition, 0), step + 1);
        DB_RETURN_IF_ERROR(op.Wait(Millis(30000)));
      }
      std::lock_guard<std::mutex> lock(mu);
      losses.push_back(loss);
    }
    return absl::OkStatus();
  };
  std::vector<std::thread> threads;
  std::vector<Status> status(o.replicas);
  for (int r = 0; r < o.replicas; ++r) threads.emplace_back([&, r] { status[r] = replica(r); });
  for (auto& t : threads) t.join();
  for (const Status& s : status)
    if (!s.ok()) return s;
  if (losses.empty()) return absl::InternalError("no step finished");
  const size_t k = std::max<size_t>(1, losses.size() / 10);
  for (size_t i = 0; i < k; ++i) result.first_loss += losses[i] / k, result.last_loss += losses[losses.size() - 1 - i] / k;
  result.replica_failures = failures.load();
  result.replica_restarts = restarts.load();
  for (auto& ps : servers) {
    result.shard_versions.emplace_back();
    for (auto& s : ps.shards) result.shard_versions.back().push_back(s->version());
  }
  return result;
}

}  // namespace distbelief
