#!/usr/bin/env python3
"""The cat network over several seeds, one table (docs/cat.md's E15 and later).

Runs `distbelief train --config CONFIG --set train.seed=N [--set ...]` for each seed (one after
the other, each in its own run folder), reads the face test table each run printed and its
report.md, and prints one row per seed and the mean: the top stage's held-out accuracy / AUC, the
best pixel's, the random-weights network's, the differences, and how face-like the top neuron's 16
strongest test images are (correlation of their mean with the mean test face).

  scripts/cat_seeds.py --seeds 1-5 --set cat.min_scale=0.5 --out runs/cat_seeds_minscale
"""
import argparse
import os
import re
import subprocess
import sys


def row(text, name):
    """(held-out accuracy %, AUC) of the face table row whose first cell starts with `name`."""
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 5 and cells[0].startswith(name):
            return float(cells[-2].rstrip("%")), float(cells[-1])
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="build/tools/distbelief")
    ap.add_argument("--config", default="configs/cat.toml")
    ap.add_argument("--seeds", default="1-5", help="FIRST-LAST")
    ap.add_argument("--set", action="append", default=[], help="passed on to train (repeatable)")
    ap.add_argument("--out", required=True, help="one run folder per seed goes under it")
    args = ap.parse_args()
    first, last = (int(x) for x in args.seeds.split("-"))
    rows = []
    for seed in range(first, last + 1):
        run_dir = os.path.join(args.out, f"seed{seed}")
        cmd = [args.bin, "train", "--config", args.config, "--overwrite", "--set", f"train.seed={seed}",
               "--set", f'train.run_dir="{run_dir}"']
        for s in args.set:
            cmd += ["--set", s]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            sys.exit(f"seed {seed}: train failed ({p.returncode}):\n{p.stderr[-2000:]}")
        top = row("\n".join(l for l in p.stdout.splitlines() if "(top stage)" in l), "best stage-")
        pixel = row(p.stdout, "best single pixel")
        rand = row(p.stdout, "same network, random weights")
        if not (top and pixel and rand):
            sys.exit(f"seed {seed}: no face table in the output:\n{p.stdout[-2000:]}")
        corr = float("nan")
        report = os.path.join(run_dir, "report.md")
        if os.path.exists(report):
            m = re.search(r"the mean of those 16 images (-?[0-9.]+)", open(report).read())
            if m:
                corr = float(m.group(1))
        rows.append((seed, top, pixel, rand, corr))
        print(f"seed {seed} done", file=sys.stderr, flush=True)

    print(f"{args.config} {' '.join('--set ' + s for s in args.set)}, seeds {args.seeds}\n")
    print("| seed | top stage (acc / AUC) | best pixel | random net | top - pixel | top - random | 16 strongest vs mean face |")
    print("|---|---|---|---|---|---|---|")
    cell = lambda r: f"{r[0]:.1f}% / {r[1]:.3f}"
    diff = lambda a, b: f"{a[0] - b[0]:+.1f} / {a[1] - b[1]:+.3f}"
    for seed, top, pixel, rand, corr in rows:
        print(f"| {seed} | {cell(top)} | {cell(pixel)} | {cell(rand)} | {diff(top, pixel)} | {diff(top, rand)} | {corr:.2f} |")
    n = len(rows)
    mean = lambda i: (sum(r[i][0] for r in rows) / n, sum(r[i][1] for r in rows) / n)
    corrs = [r[4] for r in rows if r[4] == r[4]]
    mc = sum(corrs) / len(corrs) if corrs else float("nan")
    print(f"| mean | {cell(mean(1))} | {cell(mean(2))} | {cell(mean(3))} | {diff(mean(1), mean(2))} | "
          f"{diff(mean(1), mean(3))} | {mc:.2f} |")


if __name__ == "__main__":
    main()
