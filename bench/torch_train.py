#!/usr/bin/env python3
"""torch_train.py -- the PyTorch side of `make bench` training speed: the same
models as deploy/examples/fmnist-{mlp,cnn}.yaml, same batch, same threads,
plain SGD with momentum, on random Fashion-MNIST-shaped batches (speed does
not depend on the values). Prints one JSON line per measurement:
  {"peer": "pytorch", "model": ..., "threads": ..., "samples_per_s": [...],
   "peak_rss_kb": ...}
"""
import argparse
import json
import resource
import time

import torch
import torch.nn as nn


def make(model):
    if model == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(),
                             nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))
    if model == "cnn":
        return nn.Sequential(nn.Conv2d(1, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(16, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Flatten(), nn.Linear(32 * 7 * 7, 128), nn.ReLU(),
                             nn.Linear(128, 10))
    raise SystemExit("unknown model " + model)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--tag", default="")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    net = make(a.model)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    lossf = nn.CrossEntropyLoss()
    nb = 16
    xs = torch.randn(nb, a.batch, 1, 28, 28)
    ys = torch.randint(0, 10, (nb, a.batch))

    def step(i):
        opt.zero_grad(set_to_none=False)
        loss = lossf(net(xs[i % nb]), ys[i % nb])
        loss.backward()
        opt.step()

    for i in range(20):  # warm-up
        step(i)
    rates = []
    for _ in range(a.repeats):
        n, t0 = 0, time.perf_counter()
        while True:
            step(n)
            n += 1
            dt = time.perf_counter() - t0
            if dt >= a.seconds:
                break
        rates.append(n * a.batch / dt)
    peer = ("pytorch-skx " if a.tag else "pytorch ") + torch.__version__
    print(json.dumps({"peer": peer, "tag": a.tag, "model": a.model,
                      "threads": a.threads, "batch": a.batch, "samples_per_s": rates,
                      "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))


if __name__ == "__main__":
    main()
