#!/usr/bin/env bash
# Integration tests with real processes over gRPC: a replica killed with -9 mid-run, a shard
# killed with -9 mid-run (restarted from its checkpoint), a replica on its own host (network
# namespace + veth pair) cut off from the shards for 10 seconds, the launcher killed with SIGTERM
# and with -9 (no child may outlive it), and Sandblaster with worker processes. Every scenario is
# bounded in time and cleans up after itself. Usage: cluster_test.sh PATH/TO/distbelief (from the repo root).
set -u
bin=$(readlink -f "$1")
tmp=$(mktemp -d)
pass=0
fail=0
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
  pkill -9 -f "$tmp" 2>/dev/null
  ip link del db-veth-h 2>/dev/null
  ip netns del db-replica 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
ok() { pass=$((pass + 1)); echo "ok: $1"; }
bad() { fail=$((fail + 1)); echo "FAIL: $1"; [ -n "${2:-}" ] && tail -20 "$2"; }
wait_for() {  # wait_for FILE PATTERN SECONDS: until PATTERN appears in FILE
  local i
  for ((i = 0; i < $3 * 10; i++)); do grep -q -- "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  return 1
}
common=(--set 'model.hidden=[256]' --set train.train_limit=24000 --set train.epochs=3
        --set train.batch_size=64 --set distributed.warmstart_steps=0 --set distributed.replicas=3)

# 1. kill -9 of a replica: the others go on and the run completes.
log=$tmp/replica.log
timeout 300 "$bin" launch --config configs/mnist_downpour.toml "${common[@]}" --set train.epochs=8 \
  --set "train.run_dir=\"$tmp/run1\"" >"$log" 2>&1 &  # long enough to be killed in the middle
launcher=$!
pids+=($launcher)
if wait_for "$log" "started replica 2 pid" 60; then
  sleep 1.5
  victim=$(grep -o "started replica 1 pid [0-9]*" "$log" | awk '{print $5}')
  kill -9 "$victim"
fi
wait $launcher
status=$?
if [ $status = 0 ] && grep -q "replica 1 died (killed by signal 9)" "$log" && grep -q "test accuracy" "$log" &&
   grep -q "1 replicas died" "$log"; then
  ok "a replica killed with -9: the run completes ($(grep 'test accuracy' "$log"))"
else
  bad "replica kill (launcher status $status)" "$log"
fi

# 1b. The launcher's cluster.jsonl (what the dashboard shows) saw it: replica 1 failed, the others done.
states=$(tail -1 "$tmp/run1/cluster.jsonl" 2>/dev/null |
         python3 -c 'import json, sys; print(" ".join(r["state"] for r in json.load(sys.stdin)["replicas"]))' 2>/dev/null)
if [ "$states" = "done failed done" ]; then
  ok "cluster.jsonl ends with the replicas $states"
else
  bad "cluster.jsonl's last replica states are '$states', not 'done failed done'" "$tmp/run1/cluster.jsonl"
fi

# 2. kill -9 of a shard: restarted from its last checkpoint, the run completes.
log=$tmp/shard.log
timeout 300 "$bin" launch --config configs/mnist_downpour.toml "${common[@]}" \
  --set distributed.shard_checkpoint_every=20 --set "train.run_dir=\"$tmp/run2\"" >"$log" 2>&1 &
launcher=$!
pids+=($launcher)
# Killed once its checkpoint holds some updates (a fixed delay raced the replicas' start-up).
ckpt=$tmp/run2/shards/mnist.shard-1.safetensors
if wait_for "$log" "started replica 2 pid" 60; then
  for ((i = 0; i < 600; i++)); do
    v=$(head -c 4096 "$ckpt" 2>/dev/null | grep -ao '"version":"[0-9]*"' | grep -o '[0-9]*')
    [ -n "$v" ] && [ "$v" -ge 100 ] && break
    sleep 0.05
  done
  victim=$(grep -o "started shard 1 pid [0-9]*" "$log" | head -1 | awk '{print $5}')
  kill -9 "$victim"
fi
wait $launcher
status=$?
restored=$(grep -o "shard 1 of 2 ([0-9]* parameters, version [0-9]*)" "$log" | tail -1 | grep -o "version [0-9]*")
if [ $status = 0 ] && grep -q "shard 1 died (killed by signal 9); restarting" "$log" && grep -q "test accuracy" "$log" &&
   [ -n "$restored" ] && [ "$restored" != "version 0" ]; then
  replayed=$(grep -o "pushing [0-9]* kept update" "$log" | awk '{s += $2} END {print s + 0}')
  ok "a shard killed with -9: restarted at $restored from its checkpoint, replicas pushed $replayed kept updates again, the run completes"
else
  bad "shard kill (launcher status $status, restored '$restored')" "$log"
fi

# 2b. cluster.jsonl saw shard 1 down and back with a new incarnation.
seen=$(python3 - "$tmp/run2/cluster.jsonl" <<'PY' 2>/dev/null
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
s1 = [r["shards"][1] for r in recs]
incarnations = {s["incarnation"] for s in s1 if s["up"]}
print("%d %d" % (len(incarnations), sum(1 for s in s1 if not s["up"])))
PY
)
if [ "${seen%% *}" = 2 ]; then
  ok "cluster.jsonl saw shard 1 restart (2 incarnations, down in ${seen##* } records)"
else
  bad "cluster.jsonl did not see shard 1 restart ('$seen': incarnations, records down)" "$tmp/run2/cluster.jsonl"
fi

# 3. A replica on its own host, cut off from the shards for 10 s, reconnects with backoff.
if ip netns add db-replica 2>/dev/null; then
  ip link add db-veth-h type veth peer name db-veth-r &&
    ip link set db-veth-r netns db-replica &&
    ip addr add 10.213.7.1/24 dev db-veth-h && ip link set db-veth-h up &&
    ip netns exec db-replica ip addr add 10.213.7.2/24 dev db-veth-r &&
    ip netns exec db-replica ip link set db-veth-r up && ip netns exec db-replica ip link set lo up
  export DISTBELIEF_SECRET=netns-test-secret
  cfg=(--config configs/mnist_downpour.toml "${common[@]}" --set distributed.replicas=1 --set train.epochs=1
       --set train.train_limit=12000 --set distributed.shards=2 --set "train.run_dir=\"$tmp/run3\"")
  addrs=()
  for s in 0 1; do
    "$bin" shard "${cfg[@]}" --index $s --listen 10.213.7.1:0 >"$tmp/shard$s.out" 2>"$tmp/shard$s.log" &
    pids+=($!)
    disown $!  # killed at cleanup; no job-control noise
    wait_for "$tmp/shard$s.out" "listening on" 30
    addrs+=("$(awk '{print $5}' "$tmp/shard$s.out")")
  done
  # Eighty epochs keep the replica busy well past the cut (about 25 s on a Zen 4 core without one),
  # which comes once it is training.
  timeout 240 ip netns exec db-replica "$bin" replica "${cfg[@]}" --set train.epochs=80 --index 0 \
    --shards "${addrs[0]},${addrs[1]}" >"$tmp/netns.log" 2>&1 &
  replica=$!
  pids+=($replica)
  wait_for "$tmp/netns.log" "examples/s" 60
  sleep 0.5
  ip link set db-veth-h down
  cut_at=$(date +%s)
  sleep 10
  alive_through_cut=no
  kill -0 $replica 2>/dev/null && alive_through_cut=yes  # still waiting on the shards, not finished
  ip link set db-veth-h up
  wait $replica
  status=$?
  took=$(($(date +%s) - cut_at))
  if [ $status = 0 ] && [ $alive_through_cut = yes ]; then
    ok "a replica cut off for 10 s reconnects and finishes ($took s after the cut)"
  else
    bad "network cut (replica status $status, alive through the cut: $alive_through_cut)" "$tmp/netns.log"
  fi
else
  bad "network namespaces unavailable (needs root and iproute2)"
fi
# 4. The launcher leaves no child behind: killed with SIGTERM it stops them; killed with -9 they
#    die with it (PR_SET_PDEATHSIG).
for sig in TERM KILL; do
  log=$tmp/launch_$sig.log
  "$bin" launch --config configs/mnist_downpour.toml "${common[@]}" --set train.epochs=50 \
    --set "train.run_dir=\"$tmp/run_$sig\"" >"$log" 2>&1 &
  launcher=$!
  pids+=($launcher)
  if wait_for "$log" "started replica 2 pid" 60; then
    children=$(pgrep -f -- "run_$sig" | grep -v "^$launcher\$" | wc -l)
    kill -$sig $launcher
    wait $launcher 2>/dev/null
    left=-1
    for ((i = 0; i < 50; i++)); do
      left=$(pgrep -f -- "run_$sig" | wc -l)
      [ "$left" = 0 ] && break
      sleep 0.1
    done
    if [ "$children" -ge 5 ] && [ "$left" = 0 ]; then
      ok "launch killed with SIG$sig: its $children children are gone"
    else
      bad "launch killed with SIG$sig: $left of $children children left" "$log"
    fi
  else
    bad "launch for SIG$sig did not start its replicas" "$log"
  fi
done

# 5. Sandblaster across processes: shards and worker processes, this launcher as coordinator.
log=$tmp/sandblaster.log
if timeout 300 "$bin" launch --config configs/mnist_sandblaster.toml --set distributed.lbfgs_iterations=8 \
     --set distributed.replicas=2 --set "train.run_dir=\"$tmp/sb\"" >"$log" 2>&1 &&
   grep -q "started worker 1" "$log" && grep -q "test reconstruction MSE" "$log"; then
  ok "sandblaster with 2 worker processes and 2 shard processes ($(grep -o 'MSE: [0-9.]*' "$log"))"
else
  bad "sandblaster launch" "$log"
fi
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
