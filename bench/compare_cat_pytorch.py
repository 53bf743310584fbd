#!/usr/bin/python3
"""The cat network's training speed in distbelief and in PyTorch, side by side in one run, at the
same thread count (PyTorch at its best setting, as in compare_pytorch.py).
Usage: bench/compare_cat_pytorch.py [--threads N] [--min-seconds S]"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def run_json(cmd, env):
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return [json.loads(l) for l in out.splitlines() if l.startswith("{")][-1]


ap = argparse.ArgumentParser()
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--min-seconds", type=float, default=1.0)
ap.add_argument("--build", default=os.path.join(os.path.dirname(HERE), "build"))
a = ap.parse_args()
base = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "OPENBLAS_NUM", "TORCH_"))}
ours = run_json([os.path.join(a.build, "bench", "cat_bench"), str(a.threads), str(a.min_seconds)],
                dict(base, OMP_NUM_THREADS=str(a.threads)))
settings = [dict(TORCH_THREADS="1", OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")]
if a.threads > 1:
    settings = [dict(TORCH_THREADS="1", OPENBLAS_NUM_THREADS=str(a.threads), OMP_WAIT_POLICY="PASSIVE"),
                dict(TORCH_THREADS=str(a.threads))]
torch_best = max(run_json([sys.executable, os.path.join(HERE, "torch_cat.py"), str(a.min_seconds)], dict(base, **s))["images_per_s"]
                 for s in settings)
flops_per_image = ours["gflops"] * 1e9 / ours["images_per_s"]
print(f"cat network, 64x64 frames, 3 stages, batch 32, {a.threads} thread(s); sgemm peak {ours['sgemm_peak_gflops']:.1f} GFLOP/s")
print(f"{'':12} {'images/s':>10} {'of peak':>8}")
print(f"{'distbelief':12} {ours['images_per_s']:>10.1f} {100 * ours['gflops'] / ours['sgemm_peak_gflops']:>7.0f}%")
print(f"{'PyTorch':12} {torch_best:>10.1f} {100 * torch_best * flops_per_image / 1e9 / ours['sgemm_peak_gflops']:>7.0f}%")
print(f"ratio: {ours['images_per_s'] / torch_best:.2f}x")
