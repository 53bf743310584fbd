#!/usr/bin/env bash
# The example workload end to end on a CSV it writes itself (three classes as Gaussian clusters in
# five dimensions): it learns alone and with Downpour, and bad input is a clear error (status 2)
# naming the line. Usage: csv_classifier_test.sh PATH/TO/csv_classifier (from the repository root)
set -u
bin=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
python3 - "$tmp/blobs.csv" <<'PY'
import random, sys
random.seed(5)
centers = [[random.uniform(-3, 3) for _ in range(5)] for _ in range(3)]
with open(sys.argv[1], "w") as f:
    for i in range(600):
        c = i % 3
        f.write(",".join("%.4f" % (x + random.gauss(0, 1)) for x in centers[c]) + ",%d\n" % c)
PY
printf '[csv]\nfile = "%s"\nhidden = 16\nbatch = 16\nepochs = 10\n[optimizer]\nname = "adagrad"\nlearning_rate = 0.05\n[train]\nrun_dir = "%s/run"\n' \
  "$tmp/blobs.csv" "$tmp" >"$tmp/local.toml"
cp "$tmp/local.toml" "$tmp/downpour.toml"
printf '[distributed]\nreplicas = 2\nshards = 2\n' >>"$tmp/downpour.toml"
for cfg in local downpour; do
  out=$("$bin" "$tmp/$cfg.toml" 2>&1)
  acc=$(grep -o 'test accuracy: [0-9.]*' <<<"$out" | grep -o '[0-9.]*$')
  if [ -n "$acc" ] && awk "BEGIN { exit !($acc > 90) }"; then echo "ok: $cfg: $acc%"; else echo "FAIL: $cfg"; echo "$out" | tail -5; fail=1; fi
done
sed -i '7s/.*/1.0,2.0,oops,4.0,5.0,1/' "$tmp/blobs.csv"
out=$("$bin" "$tmp/local.toml" 2>&1); status=$?
if [ $status = 2 ] && grep -q "blobs.csv:7: 'oops' is not a number" <<<"$out"; then echo "ok: a bad line is named"; else echo "FAIL: bad line ($status): $out"; fail=1; fi
out=$("$bin" "$tmp/local.toml" csv.hidnen=3 2>&1); status=$?
if [ $status = 2 ] && grep -q "unknown key 'csv.hidnen'" <<<"$out"; then echo "ok: an unknown key is named"; else echo "FAIL: unknown key ($status): $out"; fail=1; fi
exit $fail
