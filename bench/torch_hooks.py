#!/usr/bin/env python3
"""torch_hooks.py -- DDP communication hooks side by side on Fashion-MNIST:
PyTorch's default all-reduce, its fp16 compression hook, PowerSGD (rank 2)
and sfp.torch's hook (containers at e, m with Gecko and error feedback),
each a whole training run of one config's model over Gloo on this machine.
Prints one JSON line per run:

  {"hook": "none|fp16|powersgd|sfp", "ranks": N, "epochs": E, "steps": S,
   "wire_bytes_per_step": ..., "step_ms_median": ..., "test_acc": ...,
   "final_loss": ..., "sfp_wire_bytes_per_step": ...}

  PYTHONPATH=build/python /usr/bin/python3 bench/torch_hooks.py \
      --config deploy/examples/fmnist-cnn.yaml --ranks 2 --epochs 2 --hook sfp

The model, data, optimizer and schedule are bench/torch_ddp.py's (the
config's layers, Debian's dataset-fashion-mnist, the config's optimizer with
its schedule over the run's steps, global batch split over the ranks; the
same seed, so every hook starts from the same weights and sees the same
batches). Buffers are not broadcast (the CNN has none).

Measured, as in torch_ddp.py:
  wire_bytes_per_step   what one rank passed to write/writev (wchar of
                        /proc/self/io: Gloo's TCP sends, their headers and
                        sfp's length words included) per step after the 3
                        warm-up steps, mean over ranks
  step_ms_median        median over the steps after warm-up of the slowest
                        rank's step (forward, backward with the hook,
                        optimizer)
  test_acc              rank 0's model on the 10,000 test images at the end
  sfp_wire_bytes_per_step  (sfp only) the container bytes the hook counted
"""
import argparse
import gzip
import json
import os
import statistics
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import yaml
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks, powerSGD_hook
from torch.nn.parallel import DistributedDataParallel as DDP

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_ddp  # noqa: E402  (Net, load_fmnist, make_optimizer, wchar, free_port)

WARMUP = torch_ddp.WARMUP


def load_test(path, normalize):
    """The 10,000 test images, normalized with the training set's mean and
    std (as lib/data/dataset.c does)."""
    def idx(name):
        with gzip.open(os.path.join(path, name), "rb") as f:
            b = f.read()
        nd = b[3]
        dims = [int.from_bytes(b[4 + 4 * i:8 + 4 * i], "big") for i in range(nd)]
        return np.frombuffer(b, dtype=np.uint8, offset=4 + 4 * nd).reshape(dims)

    tr = idx("train-images-idx3-ubyte.gz").astype(np.float32) / 255.0
    x = idx("t10k-images-idx3-ubyte.gz").astype(np.float32) / 255.0
    y = idx("t10k-labels-idx1-ubyte.gz").astype(np.int64)
    if normalize:
        x = (x - tr.mean(dtype=np.float64)) / tr.std(dtype=np.float64)
    return torch.from_numpy(x.astype(np.float32)).unsqueeze(1), torch.from_numpy(y)


def worker(rank, a, cfg, x, y, xt, yt, port, out):
    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    dist.init_process_group("gloo", init_method="tcp://127.0.0.1:%d" % port,
                            rank=rank, world_size=a.ranks)
    tcfg = cfg.get("train", {})
    seed = tcfg.get("seed", 1)
    torch.manual_seed(seed)
    net = torch_ddp.Net(cfg["model"])
    model = DDP(net, broadcast_buffers=False)
    state = None
    if a.hook == "fp16":
        model.register_comm_hook(None, default_hooks.fp16_compress_hook)
    elif a.hook == "powersgd":
        state = powerSGD_hook.PowerSGDState(process_group=None, matrix_approximation_rank=2,
                                            start_powerSGD_iter=2, random_seed=seed)
        model.register_comm_hook(state, powerSGD_hook.powerSGD_hook)
    elif a.hook == "sfp":
        import sfp.torch
        state = sfp.torch.State(e=a.e, m=a.m, gecko=True)
        model.register_comm_hook(state, sfp.torch.hook)
    opt, sched = torch_ddp.make_optimizer(model.parameters(), tcfg, a.steps)
    lossf = torch.nn.CrossEntropyLoss()
    per = a.batch // a.ranks
    n = x.shape[0]
    per_epoch = n // a.batch
    model.train()
    times, w0, s0, loss = [], None, 0, torch.zeros(())
    for i in range(a.steps):
        if i % per_epoch == 0:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + i // per_epoch))
        if i == WARMUP:
            w0 = torch_ddp.wchar()
            s0 = state.stats()["wire_bytes"] if a.hook == "sfp" else 0
        lo = (i % per_epoch) * a.batch + rank * per
        idx = order[lo:lo + per]
        xb, yb = x[idx], y[idx]
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=False)
        loss = lossf(model(xb), yb)
        loss.backward()
        opt.step()
        sched.step()
        times.append(time.perf_counter() - t0)
    w1 = torch_ddp.wchar()
    s1 = state.stats()["wire_bytes"] if a.hook == "sfp" else 0

    t = torch.tensor(times, dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    timed = a.steps - WARMUP
    wb = float((w1 - w0) / timed) if w0 is not None and w1 is not None else -1.0
    s = torch.tensor([loss.item(), wb, (s1 - s0) / timed], dtype=torch.float64)
    dist.all_reduce(s)
    if rank == 0:
        model.eval()
        correct = 0
        with torch.no_grad():
            for j in range(0, xt.shape[0], 1000):
                correct += int((model.module(xt[j:j + 1000]).argmax(1) == yt[j:j + 1000]).sum())
        r = {"peer": "torch-ddp", "hook": a.hook, "ranks": a.ranks, "model": a.name,
             "threads": a.threads, "batch": a.batch, "epochs": a.epochs, "steps": a.steps,
             "step_ms_median": round(1e3 * statistics.median(t[WARMUP:].tolist()), 3),
             "wire_bytes_per_step": None if wb < 0 else round(s[1].item() / a.ranks),
             "test_acc": round(100.0 * correct / xt.shape[0], 2),
             "final_loss": round(s[0].item() / a.ranks, 5),
             "params": sum(p.numel() for p in net.parameters()),
             "torch": torch.__version__}
        if a.hook == "sfp":
            r.update({"e": a.e, "m": a.m, "sfp_wire_bytes_per_step": round(s[2].item() / a.ranks)})
        out.put(r)
    dist.destroy_process_group()
    # torch 1.13: let Gloo's threads free the last collectives' tensors before
    # the process group's destructor (which holds the GIL) joins them
    time.sleep(0.2)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--ranks", type=int, required=True)
    ap.add_argument("--hook", choices=["none", "fp16", "powersgd", "sfp"], required=True)
    ap.add_argument("--epochs", type=float, default=2.0)
    ap.add_argument("--steps", type=int, default=0, help="steps (default: from --epochs)")
    ap.add_argument("--e", type=int, default=4)
    ap.add_argument("--m", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="threads per rank")
    ap.add_argument("--batch", type=int, default=0, help="global batch (default: train.batch_size)")
    a = ap.parse_args()
    with open(a.config) as f:
        cfg = yaml.safe_load(f)
    a.name = os.path.splitext(os.path.basename(a.config))[0]
    a.batch = a.batch or cfg.get("train", {}).get("batch_size", 64)
    if a.batch % a.ranks:
        sys.exit("torch_hooks: global batch %d does not split evenly over %d ranks"
                 % (a.batch, a.ranks))
    d = cfg.get("data", {})
    path = d.get("path", "/usr/share/datasets/fashion-mnist")
    x, y = torch_ddp.load_fmnist(path, d.get("normalize", True))
    xt, yt = load_test(path, d.get("normalize", True))
    a.steps = a.steps or int(a.epochs * (x.shape[0] // a.batch))
    a.epochs = round(a.steps / (x.shape[0] // a.batch), 3)
    if a.steps <= WARMUP:
        sys.exit("torch_hooks: more than %d steps needed" % WARMUP)
    for tensor in (x, y, xt, yt):
        tensor.share_memory_()
    ctx = mp.get_context("spawn")
    out = ctx.SimpleQueue()
    mp.spawn(worker, args=(a, cfg, x, y, xt, yt, torch_ddp.free_port(), out), nprocs=a.ranks,
             join=True)
    print(json.dumps(out.get()), flush=True)


if __name__ == "__main__":
    main()
