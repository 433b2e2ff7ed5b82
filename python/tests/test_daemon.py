"""A PyTorch DDP job with sfp.torch's hook on sfpd's page: a real sfpd
(build/bin/sfpd on free loopback ports), 2 Gloo ranks that register, report
loss, widths and wire bytes, take the widths sfpd's BitWave publishes, and
say goodbye; the job's workers, layer widths and byte counters read back
from /api/v1 and /metrics."""
import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.request

import pytest

torch = pytest.importorskip("torch")
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402
from torch.nn.parallel import DistributedDataParallel as DDP  # noqa: E402

import sfp.torch  # noqa: E402

SFPD = os.environ.get("SFPD_BIN", os.path.join(os.environ.get("BUILD", "build"), "bin", "sfpd"))
STEPS = 40
JOB = "torch-test"


@pytest.fixture
def sfpd(tmp_path):
    if not os.access(SFPD, os.X_OK):
        pytest.skip("no %s (build it with make)" % SFPD)
    log = tmp_path / "sfpd.log"
    p = subprocess.Popen([SFPD, "--http", "127.0.0.1:0", "--listen", "tcp://127.0.0.1:0"],
                         stderr=open(log, "w"))
    http = listen = None
    for _ in range(200):
        text = log.read_text()
        h = re.search(r"http on (http://127\.0\.0\.1:\d+)/", text)
        w = re.search(r"workers: listening on (tcp://127\.0\.0\.1:\d+)", text)
        if h and w:
            http, listen = h.group(1), w.group(1)
            break
        if p.poll() is not None:
            break
        time.sleep(0.05)
    if not http:
        p.kill()
        pytest.fail("sfpd did not start: " + log.read_text())
    yield http, listen
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()


def get(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def quiesce():
    """Let Gloo's worker threads drop the tensors of the last collectives
    before the model (and with it the process group) goes: in torch 1.13 a
    thread that frees a tensor Python created waits for the GIL, which the
    process group's destructor holds while it joins that thread."""
    time.sleep(0.2)


def run(rank, world, port, daemon, out):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method="tcp://127.0.0.1:%d" % port, rank=rank,
                            world_size=world)
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Linear(20, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4))
    model = DDP(net)
    # BitWave decides every 2 reports, with no threshold: the widths move
    state = sfp.torch.State(e=5, m=7, daemon=daemon, job=JOB, policy="bitwave", report_every=4,
                            bitwave=(0.5, 0.0, 8, 1, 7, 3, 5, 0))
    model.register_comm_hook(state, sfp.torch.hook)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(rank)
    widths = []
    for i in range(STEPS):
        x = torch.randn(16, 20, generator=g)
        y = (x[:, :4].argmax(1))
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        state.observe(loss, len(x))
        opt.step()
        widths.append((state.e, state.m))
    state.close()
    allw = [None] * world
    dist.all_gather_object(allw, widths)
    if rank == 0:
        out.put({"widths": allw, "stats": state.stats()})
    dist.destroy_process_group()
    quiesce()


def test_job_on_sfpd(sfpd):
    http, listen = sfpd
    ctx = mp.get_context("spawn")
    out = ctx.SimpleQueue()
    mp.spawn(run, args=(2, free_port(), listen, out), nprocs=2, join=True)
    res = out.get()
    assert res["widths"][0] == res["widths"][1], "ranks used different widths"
    assert len(set(res["widths"][0])) > 1, "sfpd's BitWave never changed the widths"
    assert all(e <= 5 and m <= 7 for e, m in res["widths"][0])
    workers = json.loads(get(http + "/api/v1/workers?job=" + JOB))
    ws = workers["workers"] if isinstance(workers, dict) else workers
    assert len(ws) == 2
    assert all(w["state"] == "left" for w in ws), ws
    job = json.loads(get(http + "/api/v1/job?job=" + JOB))
    assert STEPS in job["series"]["step"]
    bl = json.loads(get(http + "/api/v1/bitlengths?job=%s&layer=ddp_gradients" % JOB))
    assert "ddp_gradients" in json.dumps(bl)
    metrics = get(http + "/metrics")
    wire = re.search(r'sfp_wire_bytes_total\{job="%s"\} (\S+)' % JOB, metrics)
    raw = re.search(r'sfp_raw_bytes_total\{job="%s"\} (\S+)' % JOB, metrics)
    assert wire and raw and 0 < float(wire.group(1)) < float(raw.group(1)), metrics[:2000]
    assert re.search(r'sfp_layer_mantissa_width\{job="%s",layer="ddp_gradients"' % JOB, metrics)
