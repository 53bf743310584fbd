// libFuzzer harness: every gRPC handler's request bytes. One gRPC server of a 64-float shard and
// one of a worker run for the whole session on loopback; each input is one unary call. Its first
// byte picks the method (and, with bit 7, whether the call carries the right secret); the rest
// is sent as the serialized request, whatever it holds. Every call must end with a status.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <future>
#include <memory>
#include <vector>

#include "distbelief/ps/parameter_shard.h"
#include "distbelief/transport/transport.h"

namespace {

using namespace distbelief;

constexpr char kSecret[] = "fuzz-secret";

// A worker that checks what the transport hands it, as a real one would rely on.
class CheckingWorker : public WorkerService {
 public:
  Status RunPortion(const PortionRequest& req, PortionReply* reply) override {
    reply->examples = req.end - req.begin;
    return absl::OkStatus();
  }
  Status Deliver(ActivationMessage msg) override {
    if (msg.end < msg.begin && !msg.values.empty()) return absl::InvalidArgumentError("bad slice");
    return absl::OkStatus();
  }
};

struct Served {
  std::unique_ptr<ParameterShard> shard;
  CheckingWorker worker;
  std::unique_ptr<Transport> transport;
  std::unique_ptr<Transport::Server> shard_server, worker_server;
  std::unique_ptr<grpc::GenericStub> shard_stub, worker_stub;
};

Served& Server() {
  static Served* s = [] {
    auto* out = new Served;
    std::vector<float> initial(64, 0.5f);
    out->shard = std::move(ParameterShard::Create(ShardOptions{}, initial).value());
    TransportOptions t;
    t.kind = TransportKind::kGrpc;
    t.secret = kSecret;
    t.max_message_bytes = 1 << 20;
    out->transport = MakeGrpcTransport(t);
    out->shard_server = std::move(out->transport->ServeShard("127.0.0.1:0", out->shard.get()).value());
    out->worker_server = std::move(out->transport->ServeWorker("127.0.0.1:0", &out->worker).value());
    out->shard_stub = std::make_unique<grpc::GenericStub>(
        grpc::CreateChannel(out->shard_server->address(), grpc::InsecureChannelCredentials()));
    out->worker_stub = std::make_unique<grpc::GenericStub>(
        grpc::CreateChannel(out->worker_server->address(), grpc::InsecureChannelCredentials()));
    return out;
  }();
  return *s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  static const char* kMethods[] = {
      "/distbelief.rpc.ParameterShard/Pull",     "/distbelief.rpc.ParameterShard/Push",
      "/distbelief.rpc.ParameterShard/Accumulate", "/distbelief.rpc.ParameterShard/VectorOp",
      "/distbelief.rpc.ParameterShard/Info",     "/distbelief.rpc.Worker/RunPortion",
      "/distbelief.rpc.Worker/Deliver"};
  const int m = (data[0] & 0x7f) % 7;
  Served& s = Server();
  grpc::GenericStub* stub = m < 5 ? s.shard_stub.get() : s.worker_stub.get();
  grpc::ClientContext ctx;
  if (!(data[0] & 0x80)) ctx.AddMetadata("x-distbelief-secret", kSecret);
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  grpc::Slice slice(data + 1, size - 1);
  grpc::ByteBuffer req(&slice, 1), resp;
  std::promise<grpc::Status> done;
  stub->UnaryCall(&ctx, kMethods[m], grpc::StubOptions(), &req, &resp, [&](grpc::Status st) { done.set_value(st); });
  const grpc::Status st = done.get_future().get();
  if (st.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) std::abort();  // a handler hung
  if ((data[0] & 0x80) && st.ok()) std::abort();                             // no secret, yet served
  return 0;
}
