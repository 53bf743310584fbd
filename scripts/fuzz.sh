#!/usr/bin/env bash
# Fuzzes every parser of outside input with libFuzzer (Debian's clang 14), AddressSanitizer and
# UndefinedBehaviorSanitizer, in build-fuzz/: the checkpoint reader, images, the MNIST and token
# cache readers, the config edge, a shard's tensor socket, every gRPC handler, and the text parsers
# (gettext catalogues, BLEU's tokenizer, the EN-FR cleaning), and the reasoning lab's search lines
# and solution verifiers (fuzz/*.cc).
# Each harness starts from its seed corpus in fuzz/corpus/<name> (which also holds every input
# that once crashed it) plus what earlier runs here found (build-fuzz/corpus/<name>), runs for
# SECONDS (default 60), one harness per core at a time, and any crash, leak or timeout fails the run with the input saved in
# build-fuzz/artifacts/. Usage: scripts/fuzz.sh [SECONDS] [HARNESS...]
# For hours: scripts/fuzz.sh 14400 image   (or several harnesses at once in separate shells).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
harnesses=("$@")
[ ${#harnesses[@]} -gt 0 ] || harnesses=(checkpoint image readers config tensor_socket rpc text countdown)
dir=build-fuzz
if [ ! -f $dir/build.ninja ]; then
  cmake -S . -B $dir -G Ninja -DCMAKE_CXX_COMPILER=clang++-14 -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1" -DDISTBELIEF_FUZZ=ON >/dev/null
fi
cmake --build $dir -- -j"$(nproc)" "${harnesses[@]/%/_fuzz}"
mkdir -p $dir/artifacts
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export LSAN_OPTIONS=suppressions=$PWD/testing/lsan.supp
# One harness per core at a time: each still gets its SECONDS of fuzzing.
run_one() {
  local h=$1 log=$dir/artifacts/$1.log
  mkdir -p $dir/corpus/$h
  if "$dir/fuzz/${h}_fuzz" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=30 -print_final_stats=1 \
       -artifact_prefix="$dir/artifacts/$h-" "$dir/corpus/$h" "fuzz/corpus/$h" >"$log" 2>&1; then
    echo "fuzz: $h for $seconds s: $(grep -E "^#[0-9]+.*DONE" "$log" | tail -1)"
  else
    echo "fuzz: $h FAILED; the input is in $dir/artifacts/ ($h-*), the report in $log:"
    grep -E -A30 "ERROR|runtime error|SUMMARY" "$log" | head -60
    return 1
  fi
}
jobs=$(nproc)
status=0
pids=()
for h in "${harnesses[@]}"; do
  run_one "$h" &
  pids+=($!)
  if [ ${#pids[@]} -ge "$jobs" ]; then
    wait "${pids[0]}" || status=1
    pids=("${pids[@]:1}")
  fi
done
for p in "${pids[@]}"; do wait "$p" || status=1; done
exit $status
