#!/usr/bin/env python3
"""torch_gpt.py -- the PyTorch side of the byte-level GPT comparison: the
model of deploy/examples/fortunes-gpt.yaml (pre-norm blocks as GPT-2 and
llm.c: x += proj(attn(ln1(x))); x += fc2(gelu(fc1(ln2(x)))); a final layer
norm; the head tied to the embedding, no bias), the same data files
(tools/fortunes.sh), batch, optimizer (AdamW), schedule (linear warm-up, then
cosine to 0, as sfp_lr_at), context and steps, and the same initialisation
as sfp's engine (docs/transformer.md): embedding and position tables uniform
with standard deviation 0.02, every weight matrix He uniform over its fan-in,
biases 0, layer-norm gain 1.

Training windows are drawn at random (seeded) as sfp draws them, from a
different generator; the held-out loss walks every non-overlapping window of
val.bin in order, exactly as sfp's evaluation. Prints one JSON line:
  {"peer": "pytorch", "torch": ..., "threads": ..., "seed": ..., "steps": ...,
   "val_loss": ..., "tokens_per_s": ..., "train_s": ...}
tokens_per_s counts the training steps alone (no evaluation), after 10
warm-up steps.
"""
import argparse
import json
import math
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def he_uniform_(w):
    bound = math.sqrt(6.0 / w.shape[1])
    with torch.no_grad():
        w.uniform_(-bound, bound)


def table_uniform_(w):
    a = 0.02 * math.sqrt(3.0)  # standard deviation 0.02
    with torch.no_grad():
        w.uniform_(-a, a)


class Block(nn.Module):
    def __init__(self, d, heads, t):
        super().__init__()
        self.heads = heads
        self.register_buffer("mask", torch.ones(t, t, dtype=torch.bool).triu(1))
        self.ln1 = nn.LayerNorm(d, eps=1e-5)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d, eps=1e-5)
        self.fc1 = nn.Linear(d, 4 * d)
        self.fc2 = nn.Linear(4 * d, d)
        for lin in (self.qkv, self.proj, self.fc1, self.fc2):
            he_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        h = self.heads
        q = q.view(b, t, h, d // h).transpose(1, 2)
        k = k.view(b, t, h, d // h).transpose(1, 2)
        v = v.view(b, t, h, d // h).transpose(1, 2)
        # Debian's torch 1.13 has no fused attention: the masked softmax by hand
        s = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(d // h))
        s = s.masked_fill(self.mask[:t, :t], float("-inf"))
        a = torch.softmax(s, dim=-1) @ v
        x = x + self.proj(a.transpose(1, 2).reshape(b, t, d))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, vocab, d, t, heads, blocks):
        super().__init__()
        self.wte = nn.Parameter(torch.empty(vocab, d))
        self.wpe = nn.Parameter(torch.empty(t, d))
        table_uniform_(self.wte)
        table_uniform_(self.wpe)
        self.blocks = nn.ModuleList(Block(d, heads, t) for _ in range(blocks))
        self.lnf = nn.LayerNorm(d, eps=1e-5)

    def forward(self, idx):
        x = self.wte[idx] + self.wpe[: idx.shape[1]]
        for blk in self.blocks:
            x = blk(x)
        return self.lnf(x) @ self.wte.t()


def lr_at(step, base, warmup, total):
    if warmup > 0 and step < warmup:
        return base * (step + 1) / warmup
    f = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * base * (1.0 + math.cos(math.pi * f))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", default="build/fortunes/train.bin")
    ap.add_argument("--val", default="build/fortunes/val.bin")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--blocks", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--tag", default="")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    train = torch.from_numpy(np.fromfile(a.train, dtype="<u2").astype(np.int64))
    val = torch.from_numpy(np.fromfile(a.val, dtype="<u2").astype(np.int64))
    net = GPT(256, a.dim, a.seq, a.heads, a.blocks)
    opt = torch.optim.AdamW(net.parameters(), lr=a.lr, betas=(0.9, 0.999), eps=1e-8,
                            weight_decay=0.0)
    T, B = a.seq, a.batch
    offs = torch.arange(T + 1)

    def step(s):
        starts = torch.from_numpy(rng.integers(0, len(train) - T, size=B))
        w = train[starts[:, None] + offs]
        for g in opt.param_groups:
            g["lr"] = lr_at(s, a.lr, a.warmup, a.steps)
        logits = net(w[:, :T])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), w[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=False)
        loss.backward()
        opt.step()

    t0 = None
    for s in range(a.steps):
        if s == 10:
            t0 = time.perf_counter()
        step(s)
    train_s = time.perf_counter() - t0 if t0 else float("nan")
    net.eval()
    nw = (len(val) - 1) // T
    tot = 0.0
    with torch.no_grad():
        for first in range(0, nw, B):
            k = torch.arange(first, min(nw, first + B))
            w = val[k[:, None] * T + offs]
            logits = net(w[:, :T])
            tot += F.cross_entropy(logits.reshape(-1, 256), w[:, 1:].reshape(-1),
                                   reduction="sum").item()
    print(json.dumps({"peer": "pytorch", "torch": torch.__version__, "tag": a.tag,
                      "threads": a.threads, "seed": a.seed, "steps": a.steps,
                      "val_loss": tot / (nw * T),
                      "tokens_per_s": (a.steps - 10) * B * T / train_s,
                      "train_s": train_s}))


if __name__ == "__main__":
    main()
