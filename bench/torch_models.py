#!/usr/bin/python3
"""The six reference models of bench/model_bench.cc, written the usual way in PyTorch (CPU,
fp32, plain SGD, synthetic data), timed the same way: one warm-up step, then the best of three
rounds of steps lasting at least MIN_S seconds. Prints one JSON object per model.
Usage: torch_models.py MIN_S  (threads are set by the caller through the environment)."""
import json
import math
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

MIN_S = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
torch.set_num_threads(int(os.environ.get("TORCH_THREADS", "1")))
torch.manual_seed(0)


def time_per_step(step):
    step()
    best = float("inf")
    for _ in range(3):
        calls, t0 = 0, time.perf_counter()
        while True:
            step()
            calls += 1
            el = time.perf_counter() - t0
            if el >= MIN_S:
                break
        best = min(best, el / calls)
    return best


def report(model_id, seconds, units):
    print(json.dumps({"model": model_id, "rate": units / seconds}), flush=True)


def sgd_step(params, loss, lr=0.01):
    for p in params:
        p.grad = None
    loss.backward()
    with torch.no_grad():
        for p in params:
            p.add_(p.grad, alpha=-lr)


# a. sparse autoencoder 784-1024(sigmoid)-784, MSE + 1e-4 L1 activity, batch 128
enc, dec = nn.Linear(784, 1024), nn.Linear(1024, 784)
x = torch.rand(128, 784)
params = list(enc.parameters()) + list(dec.parameters())


def step_a():
    h = torch.sigmoid(enc(x))
    loss = F.mse_loss(dec(h), x) + 1e-4 * h.abs().sum() / 128
    sgd_step(params, loss)


report("a", time_per_step(step_a), 128)

# b. locally connected 1x64x64, 8 maps, 16x16 fields, stride 4 (13x13 locations), L2 pool 3x3,
#    mirrored decoder with its own untied weights, batch 32: unfold + einsum.
L, K, C = 169, 8, 256
w1 = (torch.rand(L, K, C) * 2 - 1).div_(16).requires_grad_()
b1 = torch.zeros(K, L, requires_grad=True)
w2 = (torch.rand(L, K, C) * 2 - 1).div_(16 * math.sqrt(8)).requires_grad_()
b2 = torch.zeros(1, 64, 64, requires_grad=True)
xb = torch.rand(32, 1, 64, 64) * 2 - 1


def step_b():
    patches = F.unfold(xb, 16, stride=4)  # (B, 256, 169)
    h = torch.einsum("bcl,lkc->bkl", patches, w1) + b1  # (B, 8, 169)
    hm = h.reshape(32, K, 13, 13)
    pooled = torch.sqrt(F.avg_pool2d(hm * hm, 3, stride=1) * 9 + 1e-4)
    sparsity = 0.1 * torch.sqrt(1e-2 + pooled * pooled).sum() / 32
    rec = F.fold(torch.einsum("bkl,lkc->bcl", h, w2), (64, 64), 16, stride=4) + b2
    loss = F.mse_loss(rec, xb) + sparsity
    sgd_step([w1, b1, w2, b2], loss)


report("b", time_per_step(step_b), 32)

# c. seq2seq 2+2 LSTM, hidden 256, embedding 256, vocab 8000 both sides, length 20, batch 64
src_emb, tgt_emb = nn.Embedding(8000, 256), nn.Embedding(8000, 256)
encoder = nn.LSTM(256, 256, 2, batch_first=True)
decoder = nn.LSTM(256, 256, 2, batch_first=True)
proj = nn.Linear(256, 8000)
src = torch.randint(0, 8000, (64, 20))
tin = torch.randint(0, 8000, (64, 20))
tout = torch.randint(0, 8000, (64, 20))
params = [p for m in (src_emb, tgt_emb, encoder, decoder, proj) for p in m.parameters()]


def step_c():
    _, state = encoder(src_emb(src))
    out, _ = decoder(tgt_emb(tin), state)
    loss = F.cross_entropy(proj(out).reshape(-1, 8000), tout.reshape(-1))
    sgd_step(params, loss)


report("c", time_per_step(step_c), 64 * 20)

# d. MLP GAN: G 100-256-512-784 (ReLU, tanh out), D 784-512-256-1 (ReLU), batch 64, SGD
G = nn.Sequential(nn.Linear(100, 256), nn.ReLU(), nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 784), nn.Tanh())
D = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 1))
real = torch.rand(64, 784) * 2 - 1
ones, zeros = torch.ones(64, 1), torch.zeros(64, 1)
gp, dp = list(G.parameters()), list(D.parameters())


def step_d():
    # Both players' gradients on the same fakes, then one update each (distbelief's Gan::Step).
    z = torch.randn(64, 100)
    fake = G(z)
    g_loss = F.binary_cross_entropy_with_logits(D(fake), ones)
    g_grads = torch.autograd.grad(g_loss, gp)
    d_loss = F.binary_cross_entropy_with_logits(D(real), ones) + F.binary_cross_entropy_with_logits(D(fake.detach()), zeros)
    d_grads = torch.autograd.grad(d_loss, dp)
    with torch.no_grad():
        for p, g in zip(gp + dp, g_grads + d_grads):
            p.add_(g, alpha=-0.01)


report("d", time_per_step(step_d), 1)


# e. GPT-style, 4 pre-norm layers, width 256, 4 heads, context 128, vocab 8000, batch 16
class Block(nn.Module):
    def __init__(self, c, nh):
        super().__init__()
        self.nh = nh
        self.ln1, self.ln2 = nn.LayerNorm(c), nn.LayerNorm(c)
        self.qkv, self.out = nn.Linear(c, 3 * c), nn.Linear(c, c)
        self.fc1, self.fc2 = nn.Linear(c, 4 * c), nn.Linear(4 * c, c)

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(c, dim=2)
        q, k, v = (z.view(b, t, self.nh, c // self.nh).transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(c // self.nh)
        mask = torch.ones(t, t, dtype=torch.bool).tril()
        att = att.masked_fill(~mask, float("-inf")).softmax(-1)
        x = x + self.out((att @ v).transpose(1, 2).reshape(b, t, c))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x)), approximate="tanh"))


def gpt_step(vocab, context, width, layers, heads, batch):
    """One training step (forward, backward, SGD) of a GPT of this shape on random tokens."""
    wte, wpe = nn.Embedding(vocab, width), nn.Embedding(context, width)
    blocks = nn.ModuleList(Block(width, heads) for _ in range(layers))
    ln_f, head = nn.LayerNorm(width), nn.Linear(width, vocab, bias=False)
    tokens = torch.randint(0, vocab, (batch, context))
    targets = torch.randint(0, vocab, (batch, context))
    pos = torch.arange(context)
    params = [p for m in (wte, wpe, blocks, ln_f, head) for p in m.parameters()]

    def step():
        x = wte(tokens) + wpe(pos)
        for blk in blocks:
            x = blk(x)
        loss = F.cross_entropy(head(ln_f(x)).reshape(-1, vocab), targets.reshape(-1))
        sgd_step(params, loss)

    return step


report("e", time_per_step(gpt_step(8000, 128, 256, 4, 4, 16)), 16 * 128)

# f. the reasoning lab's stream policy: 3 layers, width 96, 3 heads, context 832, vocab 27, batch 8
report("f", time_per_step(gpt_step(27, 832, 96, 3, 3, 8)), 8 * 832)
