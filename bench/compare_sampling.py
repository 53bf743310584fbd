#!/usr/bin/python3
"""Side by side in one run: generated tokens/s of greedy decoding with a key/value cache, the
reasoning lab's policy shape (vocabulary 27, context 256, width 96, 3 layers, 3 heads; random
weights), a 12-token prompt then 200 tokens, for 1 and 16 sequences at once: distbelief's
bench/sample_bench against the same model in PyTorch (torch.no_grad, its own per-layer cache,
the usual incremental decoding), at the same thread count.

Usage: bench/compare_sampling.py [--threads N] [--min-seconds S]
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def torch_rates(threads, min_s):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    V, T, C, L, NH = 27, 256, 96, 3, 3
    HS = C // NH

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(C), nn.LayerNorm(C)
            self.qkv, self.out = nn.Linear(C, 3 * C), nn.Linear(C, C)
            self.fc1, self.fc2 = nn.Linear(C, 4 * C), nn.Linear(4 * C, C)

        def step(self, x, pos, kc, vc):  # x (B, C); kc, vc (B, NH, T, HS)
            b = x.shape[0]
            q, k, v = self.qkv(self.ln1(x)).split(C, dim=1)
            q, k, v = (z.view(b, NH, HS) for z in (q, k, v))
            kc[:, :, pos] = k
            vc[:, :, pos] = v
            att = torch.einsum("bhd,bhtd->bht", q, kc[:, :, : pos + 1]) / math.sqrt(HS)
            o = torch.einsum("bht,bhtd->bhd", att.softmax(-1), vc[:, :, : pos + 1]).reshape(b, C)
            x = x + self.out(o)
            return x + self.fc2(F.gelu(self.fc1(self.ln2(x)), approximate="tanh"))

    wte, wpe = nn.Embedding(V, C), nn.Embedding(T, C)
    blocks = [Block() for _ in range(L)]
    ln_f, head = nn.LayerNorm(C), nn.Linear(C, V, bias=False)

    def decode(batch):
        with torch.no_grad():
            kcs = [torch.zeros(batch, NH, T, HS) for _ in range(L)]
            vcs = [torch.zeros(batch, NH, T, HS) for _ in range(L)]
            tok = torch.ones(batch, dtype=torch.long)
            for pos in range(212):
                x = wte(tok) + wpe.weight[pos]
                for blk, kc, vc in zip(blocks, kcs, vcs):
                    x = blk.step(x, pos, kc, vc)
                logits = head(ln_f(x))
                tok = torch.full((batch,), 1 + pos % 10) if pos < 11 else logits[:, 1:].argmax(-1) + 1

    rates = {}
    for batch in (1, 16):
        decode(batch)
        best = float("inf")
        for _ in range(3):
            calls, t0 = 0, time.perf_counter()
            while True:
                decode(batch)
                calls += 1
                el = time.perf_counter() - t0
                if el >= min_s:
                    break
            best = min(best, el / calls)
        rates[batch] = batch * 200 / best
    return rates


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--min-seconds", type=float, default=1.0)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    a = ap.parse_args()
    out = subprocess.run([os.path.join(a.build, "bench", "sample_bench"), str(a.threads), str(a.min_seconds)],
                         check=True, capture_output=True, text=True).stdout
    ours = {r["batch"]: r["tokens_per_s"] for r in (json.loads(l) for l in out.splitlines() if l.startswith("{"))}
    theirs = torch_rates(a.threads, a.min_seconds)
    print(f"threads: {a.threads}   greedy decoding with a key/value cache, GPT 3 x 96, 200 tokens after a 12-token prompt")
    print(f"{'sequences at once':<20} {'distbelief tok/s':>17} {'PyTorch tok/s':>14} {'ratio':>7}")
    for b in sorted(ours):
        print(f"{b:<20} {ours[b]:>17.0f} {theirs[b]:>14.0f} {ours[b] / theirs[b]:>6.2f}x")


if __name__ == "__main__":
    main()
