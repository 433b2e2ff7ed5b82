#!/usr/bin/env python3
"""torch_ddp.py -- the PyTorch peer for distributed training (design.md §6):
DistributedDataParallel over Gloo on CPU, with or without DDP's fp16
compression hook, on the model of one of our YAML configs, trained on
Fashion-MNIST from Debian's dataset-fashion-mnist, or, for a config with
token data (fortunes-gpt.yaml), the GPT of bench/torch_gpt.py on its token
files. Prints one JSON line:

  {"peer": "torch-ddp", "hook": "none|fp16", "ranks": N, "model": ...,
   "step_ms_median": ..., "wire_bytes_per_step": ..., "params": ..., "final_loss": ...}

  /usr/bin/python3 bench/torch_ddp.py --config deploy/examples/fmnist-cnn.yaml \
      --ranks 2 --steps 20 [--fp16-hook] [--threads 1] [--batch 64]

The model is built from the config's `model.layers` (same layer list, same
shapes as the sfp model; the weights are PyTorch's own initialisation).
With `data.dataset: tokens` the layer list must be a GPT as fortunes-gpt.yaml
writes one (embedding, position, pre-norm blocks of attention and a 4x MLP, a
final layer norm, a head tied to the embedding): it becomes torch_gpt.py's
GPT with the config's vocabulary, width, heads, block count and seq_len,
every step's global batch B is B windows drawn at random (seeded, the same
on every rank) from the training tokens, and the loss is the mean
cross-entropy over every position. The
optimizer and learning-rate schedule follow `train.optimizer` and
`train.schedule`, with the schedule's horizon set to --steps. The global batch
B (--batch, default `train.batch_size`) is split evenly across the N ranks: each
step rank r trains on samples [r*B/N, (r+1)*B/N) of the step's global batch,
so N ranks together see what one process with batch B would see.

Timing: each rank times every step (forward, backward with the overlapped
allreduce, optimizer); a step's time is the slowest rank's, and the median is
taken over the steps after 3 warm-up steps.

Wire bytes (what one rank sends per step):
  wire_bytes_per_step       measured: the growth of `wchar` in /proc/self/io
                            (bytes the process passed to write/writev, which
                            is how Gloo's TCP transport sends) over the timed
                            steps, divided by the step count, mean over ranks.
                            It includes Gloo's small per-message headers. It is
                            null where /proc/self/io is missing.
  wire_bytes_per_step_ring  computed from the algorithm, not measured: Gloo's
                            allreduce is a ring (reduce-scatter + allgather),
                            in which every rank sends 2*(N-1)/N * grad_bytes,
                            grad_bytes = 4*params (fp32) or 2*params (fp16 hook).
Buffers (batch-norm running statistics) are not broadcast every step
(broadcast_buffers=False): each replica keeps its own, so the only traffic is
the gradient allreduce.
"""
import argparse
import gzip
import json
import math
import os
import socket
import statistics
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
import torch.nn.functional as F
import yaml
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
from torch.nn.parallel import DistributedDataParallel as DDP

from torch_gpt import GPT  # bench/torch_gpt.py, beside this file

WARMUP = 3


class Net(nn.Module):
    """The layer list of a config's `model` section, in order; `add` layers
    add the output of a named earlier layer (residual connections)."""

    def __init__(self, model_cfg):
        super().__init__()
        shape = list(model_cfg["input"])
        self.mods = nn.ModuleList()
        self.plan = []  # (index of module, name, index of the `from` layer or -1)
        names = {}
        for i, l in enumerate(model_cfg["layers"]):
            t = l["type"]
            name = l.get("name", "%s%d" % (t, i))
            m, shape = self.layer(t, l, shape, name)
            src = -1
            if t == "add":
                if l["from"] not in names:
                    raise SystemExit("layer '%s': 'from' names no earlier layer" % name)
                src = names[l["from"]]
            names[name] = i
            self.mods.append(m)
            self.plan.append(src)
        if len(shape) != 1:
            raise SystemExit("the last layer's output %s is not flat" % (shape,))

    @staticmethod
    def layer(t, l, shape, name):
        if t == "linear":
            if len(shape) != 1:
                raise SystemExit("layer '%s': input %s is not flat" % (name, shape))
            return nn.Linear(shape[0], l["out_features"], bias=l.get("bias", True)), \
                [l["out_features"]]
        if t == "conv2d":
            k, s, p = l["kernel"], l.get("stride", 1), l.get("padding", 0)
            c, h, w = shape
            out = [l["out_channels"], (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1]
            return nn.Conv2d(c, l["out_channels"], k, stride=s, padding=p,
                             bias=l.get("bias", True)), out
        if t in ("maxpool", "avgpool"):
            k = l.get("kernel", 2)
            s, p = l.get("stride", k), l.get("padding", 0)
            c, h, w = shape
            out = [c, (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1]
            if t == "maxpool":
                return nn.MaxPool2d(k, s, p), out
            # sfp does not count padding cells in the average
            return nn.AvgPool2d(k, s, p, count_include_pad=False), out
        if t == "relu":
            return nn.ReLU(), shape
        if t == "gelu":
            return nn.GELU(approximate="tanh"), shape
        if t == "tanh":
            return nn.Tanh(), shape
        if t == "flatten":
            return nn.Flatten(), [math.prod(shape)]
        if t == "dropout":
            return nn.Dropout(l.get("p", 0.5)), shape
        if t == "batchnorm":
            bn = nn.BatchNorm2d if len(shape) == 3 else nn.BatchNorm1d
            return bn(shape[0], eps=l.get("eps", 1e-5), momentum=l.get("momentum", 0.1)), shape
        if t == "add":
            return nn.Identity(), shape
        raise SystemExit("layer '%s': type '%s' has no PyTorch counterpart here" % (name, t))

    def forward(self, x):
        outs = []
        for m, src in zip(self.mods, self.plan):
            x = m(x)
            if src >= 0:
                x = x + outs[src]
            outs.append(x)
        return x


def gpt_of(model_cfg, seq_len):
    """torch_gpt.py's GPT for a config's GPT layer list: its vocabulary,
    width, heads and block count; anything that is not that shape stops."""
    ls = model_cfg["layers"]
    types = [l["type"] for l in ls]
    blocks = types.count("attention")
    want = ["embedding", "position"] + ["layernorm", "attention", "add", "layernorm", "linear",
                                        "gelu", "linear", "add"] * blocks + ["layernorm", "linear"]
    emb = ls[0]
    d = emb.get("dim", 0)
    ok = (types == want and blocks > 0 and ls[-1].get("tie") == emb.get("name")
          and all(l.get("out_features") == 4 * d for l in ls[6:-2:8])
          and all(l.get("out_features") == d for l in ls[8:-2:8])
          and len({l.get("heads") for l in ls if l["type"] == "attention"}) == 1)
    if not ok:
        raise SystemExit("torch_ddp: the token model is not a GPT as fortunes-gpt.yaml builds one")
    if list(model_cfg["input"]) != [seq_len]:
        raise SystemExit("torch_ddp: model.input is not [data.seq_len]")
    return GPT(emb["vocab"], d, seq_len, ls[3]["heads"], blocks)


def load_fmnist(path, normalize):
    """Training images as float32 (n, 1, 28, 28) and labels as int64, read
    from the IDX files of Debian's dataset-fashion-mnist."""
    def idx(name):
        with gzip.open(os.path.join(path, name), "rb") as f:
            b = f.read()
        nd = b[3]
        dims = [int.from_bytes(b[4 + 4 * i:8 + 4 * i], "big") for i in range(nd)]
        return np.frombuffer(b, dtype=np.uint8, offset=4 + 4 * nd).reshape(dims)

    x = idx("train-images-idx3-ubyte.gz").astype(np.float32) / 255.0
    y = idx("train-labels-idx1-ubyte.gz").astype(np.int64)
    if normalize:  # as lib/data/dataset.c: the training set's mean and std
        x = (x - x.mean(dtype=np.float64)) / x.std(dtype=np.float64)
    return torch.from_numpy(x.astype(np.float32)).unsqueeze(1), torch.from_numpy(y)


def make_optimizer(params, tcfg, steps):
    o = dict(tcfg.get("optimizer", {}))
    typ, lr = o.get("type", "sgd"), o.get("lr", 0.01)
    if typ == "sgd":
        opt = torch.optim.SGD(params, lr=lr, momentum=o.get("momentum", 0.9),
                              nesterov=o.get("nesterov", False),
                              weight_decay=o.get("weight_decay", 0.0))
    elif typ == "adamw":
        opt = torch.optim.AdamW(params, lr=lr, betas=(o.get("beta1", 0.9), o.get("beta2", 0.999)),
                                eps=o.get("eps", 1e-8), weight_decay=o.get("weight_decay", 0.0))
    else:
        raise SystemExit("train.optimizer.type: unknown '%s'" % typ)
    s = dict(tcfg.get("schedule", {}))
    styp, warm = s.get("type", "constant"), s.get("warmup_steps", 0)
    # With a few benchmark steps the config's warm-up (meant for epochs)
    # would keep the rate near 0 throughout; it is capped at a tenth of the run.
    warm = min(warm, steps // 10)
    min_lr = s.get("min_lr", 0.0)

    def factor(i):
        if warm and i < warm:
            return (i + 1) / warm
        if styp == "cosine":
            t = (i - warm) / max(1, steps - warm)
            return (min_lr + (lr - min_lr) * 0.5 * (1 + math.cos(math.pi * t))) / lr
        if styp == "step":
            return s.get("gamma", 0.1) ** (i // s["step_every"])
        return 1.0

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def wchar():
    try:
        with open("/proc/self/io") as f:
            for line in f:
                if line.startswith("wchar:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def worker(rank, a, cfg, x, y, port, out):
    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    dist.init_process_group("gloo", init_method="tcp://127.0.0.1:%d" % port,
                            rank=rank, world_size=a.ranks)
    tcfg = cfg.get("train", {})
    seed = tcfg.get("seed", 1)
    torch.manual_seed(seed)
    tokens = cfg.get("data", {}).get("dataset") == "tokens"
    if tokens:
        T = a.seq_len
        net = gpt_of(cfg["model"], T)
        offs = torch.arange(T + 1)
    else:
        net = Net(cfg["model"])
    params = sum(p.numel() for p in net.parameters())
    # the GPT's causal masks are bool buffers, which Gloo cannot broadcast;
    # they are constants, equal on every rank
    DDP._set_params_and_buffers_to_ignore_for_model(
        net, [n for n, b in net.named_buffers() if b.dtype == torch.bool])
    model = DDP(net, broadcast_buffers=False)
    if a.fp16_hook:
        model.register_comm_hook(None, default_hooks.fp16_compress_hook)
    opt, sched = make_optimizer(model.parameters(), tcfg, a.steps)
    lossf = nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(seed)
    per = a.batch // a.ranks
    if not tokens:
        order = torch.randperm(x.shape[0], generator=g)
    model.train()

    times, w0, loss = [], None, torch.zeros(())
    for i in range(a.steps):
        if i == WARMUP:
            w0 = wchar()
        if tokens:  # the step's B windows, this rank's share of them
            starts = torch.randint(0, x.shape[0] - T, (a.batch,), generator=g)
            w = x[starts[rank * per:(rank + 1) * per, None] + offs]
            xb, yb = w[:, :T], w[:, 1:]
        else:
            lo = (i * a.batch) % (x.shape[0] - a.batch + 1) + rank * per
            idx = order[lo:lo + per]
            xb, yb = x[idx], y[idx]
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=False)
        out_ = model(xb)
        loss = lossf(out_.reshape(-1, out_.shape[-1]), yb.reshape(-1))
        loss.backward()
        opt.step()
        sched.step()
        times.append(time.perf_counter() - t0)
    w1 = wchar()

    # After timing: per-step time is the slowest rank's; loss averaged.
    t = torch.tensor(times, dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    timed = a.steps - WARMUP
    wb = float((w1 - w0) / timed) if w0 is not None and w1 is not None else -1.0
    s = torch.tensor([loss.item(), wb], dtype=torch.float64)
    dist.all_reduce(s)
    if rank == 0:
        grad_bytes = (2 if a.fp16_hook else 4) * params
        ring = 2 * (a.ranks - 1) * grad_bytes // a.ranks
        out.put({"peer": "torch-ddp", "hook": "fp16" if a.fp16_hook else "none",
                 "ranks": a.ranks, "model": a.name, "threads": a.threads,
                 "batch": a.batch, "steps": a.steps,
                 "step_ms_median": round(1e3 * statistics.median(t[WARMUP:].tolist()), 3),
                 "wire_bytes_per_step": None if wb < 0 else round(s[1].item() / a.ranks),
                 "wire_bytes_per_step_ring": ring,
                 "params": params,
                 "final_loss": round(s[0].item() / a.ranks, 5),
                 "torch": torch.__version__})
    dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--ranks", type=int, required=True)
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--fp16-hook", action="store_true")
    ap.add_argument("--threads", type=int, default=1, help="threads per rank")
    ap.add_argument("--batch", type=int, default=0, help="global batch (default: train.batch_size)")
    a = ap.parse_args()
    with open(a.config) as f:
        cfg = yaml.safe_load(f)
    a.name = os.path.splitext(os.path.basename(a.config))[0]
    a.batch = a.batch or cfg.get("train", {}).get("batch_size", 64)
    if a.ranks < 1 or a.threads < 1:
        sys.exit("torch_ddp: --ranks and --threads must be at least 1")
    if a.steps <= WARMUP:
        sys.exit("torch_ddp: --steps must be more than the %d warm-up steps" % WARMUP)
    if a.batch % a.ranks:
        sys.exit("torch_ddp: global batch %d does not split evenly over %d ranks"
                 % (a.batch, a.ranks))
    d = cfg.get("data", {})
    a.seq_len = d.get("seq_len", 256)
    if d.get("dataset", "fashion-mnist") == "tokens":
        # as lib/data/tokens.c: little-endian ids of token_bytes each, paths
        # relative to the folder this runs in (the repository's)
        dt = "<u2" if d.get("token_bytes", 2) == 2 else "u1"
        x = torch.from_numpy(np.fromfile(d["train"]["x"], dtype=dt).astype(np.int64))
        y = torch.zeros(1)
        if x.shape[0] <= a.seq_len + 1:
            sys.exit("torch_ddp: %d tokens are fewer than a window" % x.shape[0])
    elif d.get("dataset", "fashion-mnist") == "fashion-mnist":
        x, y = load_fmnist(d.get("path", "/usr/share/datasets/fashion-mnist"),
                           d.get("normalize", True))
        limit = d.get("train_limit", 0)
        if limit:
            x, y = x[:limit], y[:limit]
        if x.shape[0] < a.batch:
            sys.exit("torch_ddp: %d samples are fewer than one batch of %d"
                     % (x.shape[0], a.batch))
    else:
        sys.exit("torch_ddp: data.dataset '%s' is not supported" % d["dataset"])
    x.share_memory_()
    y.share_memory_()
    ctx = mp.get_context("spawn")
    out = ctx.SimpleQueue()
    mp.spawn(worker, args=(a, cfg, x, y, free_port(), out), nprocs=a.ranks, join=True)
    print(json.dumps(out.get()), flush=True)


if __name__ == "__main__":
    main()
