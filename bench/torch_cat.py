#!/usr/bin/python3
"""The cat network of bench/cat_bench.cc in PyTorch (unfold + einsum for the untied locally
connected layers, avg_pool of squares for L2 pooling, a Gaussian conv2d for LCN), timed the same
way: one step of each stage's reconstruction-TICA objective with the lower stages frozen.
Prints {"images_per_s": ...}. Usage: torch_cat.py MIN_S (threads from the environment)."""
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

MIN_S = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
torch.set_num_threads(int(os.environ.get("TORCH_THREADS", "1")))
torch.manual_seed(0)
B, FRAME, K, FIELD, STRIDE, POOL, LCN, LAMBDA, EPS = 32, 64, 8, 6, 2, 3, 5, 0.1, 1e-2


def gaussian(c):
    r = LCN // 2
    g = torch.tensor([[math.exp(-((a - r) ** 2 + (b - r) ** 2) / (2 * (LCN / 3) ** 2)) for b in range(LCN)] for a in range(LCN)])
    g = g / g.sum() / c
    return g.expand(1, c, LCN, LCN).contiguous()


class Stage:
    def __init__(self, c, size):
        self.c, self.size = c, size
        self.out = (size - FIELD) // STRIDE + 1
        L, cff = self.out * self.out, c * FIELD * FIELD
        self.w1 = ((torch.rand(L, K, cff) * 2 - 1) / math.sqrt(cff)).requires_grad_()
        self.w2 = ((torch.rand(L, K, cff) * 2 - 1) / math.sqrt(K) / FIELD).requires_grad_()
        self.b2 = torch.zeros(c, size, size, requires_grad=True)
        self.g = gaussian(K)
        self.state = [torch.zeros_like(p) for p in (self.w1, self.w2, self.b2)]

    def encode(self, x):
        return torch.einsum("bcl,lkc->bkl", F.unfold(x, FIELD, stride=STRIDE), self.w1)

    def pool(self, h):
        hm = h.reshape(h.shape[0], K, self.out, self.out)
        return torch.sqrt(F.avg_pool2d(hm * hm, POOL, stride=1) * POOL * POOL + EPS)

    def lcn(self, p):
        m = F.conv2d(p, self.g, padding=LCN // 2)
        v = p - m
        d = torch.sqrt(1e-2 + F.conv2d(v * v, self.g, padding=LCN // 2))
        return v / d

    def step(self, x):
        h = self.encode(x)
        rec = F.fold(torch.einsum("bkl,lkc->bcl", h, self.w2), (self.size, self.size), FIELD, stride=STRIDE) + self.b2
        p = self.pool(h)
        loss = ((rec - x) ** 2).sum() / B + LAMBDA * torch.sqrt(EPS + p * p).sum() / B
        for q in (self.w1, self.w2, self.b2):
            q.grad = None
        loss.backward()
        with torch.no_grad():
            for q, s in zip((self.w1, self.w2, self.b2), self.state):
                s.add_(q.grad * q.grad)
                q.sub_(0.05 * q.grad / torch.sqrt(s + 1e-8))


stages, c, size = [], 1, FRAME
for _ in range(3):
    st = Stage(c, size)
    stages.append(st)
    c, size = K, st.out - POOL + 1
x = torch.randn(B, 1, FRAME, FRAME)


def time_stage(s):
    def run():
        inp = x
        with torch.no_grad():
            for j in range(s):
                inp = stages[j].lcn(stages[j].pool(stages[j].encode(inp)))
        stages[s].step(inp)

    run()
    best = float("inf")
    for _ in range(3):
        n, t0 = 0, time.perf_counter()
        while True:
            run()
            n += 1
            el = time.perf_counter() - t0
            if el >= MIN_S:
                break
        best = min(best, el / n)
    return best


total = sum(time_stage(s) for s in range(3))
print(json.dumps({"images_per_s": B / total}))
