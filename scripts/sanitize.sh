#!/usr/bin/env bash
# The tests again under sanitizers, each in a build directory of its own:
#   AddressSanitizer + UndefinedBehaviorSanitizer: every test labelled "unit";
#   ThreadSanitizer: the tests of the concurrent parts (parameter server, transports,
#   Downpour/Sandblaster/launch, model parallelism), with one OpenMP thread per test (libgomp is
#   not instrumented, so its barriers would look like races) and the suppressions of
#   testing/tsan.supp (races inside uninstrumented gRPC and libgomp only).
# Any report fails the run. Usage: scripts/sanitize.sh [asan|tsan]... (default: both)
set -euo pipefail
cd "$(dirname "$0")/.."
which=("$@")
[ ${#which[@]} -gt 0 ] || which=(asan tsan)
jobs=$(nproc)
for s in "${which[@]}"; do
  case $s in
    asan)
      flags="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g1"
      unset GTEST_FILTER
      export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
      export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
      export LSAN_OPTIONS=suppressions=$PWD/testing/lsan.supp
      tests=(-L unit)
      only=""
      threads=2;;
    tsan)
      flags="-fsanitize=thread -g1"
      export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$PWD/testing/tsan.supp"
      tests=(-R "^(ps_test|transport_test|distributed_test|mp_test|dashboard_test)$")
      only="ps_test transport_test distributed_test mp_test dashboard_test"
      # Timing bounds (a straggler's cost) do not hold at TSan's 5-15x slowdown.
      export GTEST_FILTER="-Sandblaster.BackupTasksKeepAStragglerFromHoldingTheBatch"
      threads=1;;
    *) echo "sanitize.sh: unknown sanitizer '$s' (asan or tsan)" >&2; exit 2;;
  esac
  dir=build-$s
  if [ ! -f $dir/build.ninja ]; then
    cmake -S . -B $dir -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDISTBELIEF_TEST_THREADS=$threads \
      -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1" -DCMAKE_CXX_FLAGS="$flags" \
      -DCMAKE_EXE_LINKER_FLAGS="$flags" >/dev/null
  fi
  # Only what the tests need: no benchmarks (and under TSan only its five tests).
  targets=${only:-$(cd $dir && ninja -t targets all | grep -oE '^[a-z0-9_]+_test:' | tr -d ':' | sort -u)}
  cmake --build $dir -- -j"$jobs" $targets distbelief distbelief_spm csv_classifier
  (cd $dir && ctest --output-on-failure -j1 "${tests[@]}")
done
