#!/usr/bin/python3
"""Side by side in one run: distbelief's model_bench and the same six models in PyTorch, at the
same thread count, with PyTorch at its best setting. Prints a table of throughputs, the ratio
ours / PyTorch, and each side's fraction of the sgemm peak measured in the same run.

Usage: bench/compare_pytorch.py [--threads N] [--min-seconds S]
PyTorch settings tried (the best per model is kept):
  1 thread:  torch 1 thread, OpenBLAS 1 thread.
  2 threads: torch 1 thread with OpenBLAS's 2 threads and OMP_WAIT_POLICY=PASSIVE (its best on a
             2-core machine), and torch 2 threads.
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def run_json(cmd, env):
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--min-seconds", type=float, default=1.0)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    a = ap.parse_args()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "OPENBLAS_NUM", "TORCH_"))}

    ours_env = dict(base, OMP_NUM_THREADS=str(a.threads))
    ours = run_json([os.path.join(a.build, "bench", "model_bench"), str(a.threads), str(a.min_seconds)], ours_env)
    peak = ours[0]["sgemm_peak_gflops"]
    ours = {r["model"]: r for r in ours[1:]}

    settings = [dict(TORCH_THREADS="1", OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")]
    if a.threads > 1:
        settings = [
            dict(TORCH_THREADS="1", OPENBLAS_NUM_THREADS=str(a.threads), OMP_WAIT_POLICY="PASSIVE"),
            dict(TORCH_THREADS=str(a.threads)),
        ]
    torch_best = {}
    for s in settings:
        for r in run_json([sys.executable, os.path.join(HERE, "torch_models.py"), str(a.min_seconds)], dict(base, **s)):
            if r["rate"] > torch_best.get(r["model"], {"rate": 0})["rate"]:
                torch_best[r["model"]] = r

    print(f"threads: {a.threads}   sgemm peak measured in this run: {peak:.1f} GFLOP/s")
    print(f"{'model':<84} {'distbelief':>12} {'PyTorch':>10} {'ratio':>7} {'ours MFU':>9} {'torch MFU':>9}")
    for m in sorted(ours):
        o, t = ours[m], torch_best[m]
        mfu_o = o["rate"] * o["mflop_per_unit"] / 1e3 / peak
        mfu_t = t["rate"] * o["mflop_per_unit"] / 1e3 / peak
        label = f"{m}. {o['name']} ({o['unit']}/s)"
        print(f"{label:<84} {o['rate']:>12.1f} {t['rate']:>10.1f} {o['rate'] / t['rate']:>6.2f}x {100 * mfu_o:>8.0f}% {100 * mfu_t:>8.0f}%")


if __name__ == "__main__":
    main()
