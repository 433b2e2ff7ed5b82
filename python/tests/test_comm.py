"""sfp._sfp.Comm without torch: libsfp's all-reduce between threads of this
process, the messages carried by queues (each thread one rank). Lossless
sums are exact, every rank ends with the same bits, error feedback carries
what a rounding dropped, and an exception raised by a callable comes back
out of allreduce unchanged."""
import queue
import threading

import numpy as np
import pytest

import sfp
from sfp import _sfp


def ranks(world):
    """World `world` of (send, recv, sendrecv) triples over queues."""
    boxes = {(a, b): queue.Queue() for a in range(world) for b in range(world)}

    def make(me):
        def send(peer, tag, data):
            boxes[(me, peer)].put((tag, bytes(data)))

        def recv(peer, tag):
            t, data = boxes[(peer, me)].get(timeout=30)
            assert t == tag
            return data

        def sendrecv(to, data, frm, tag):
            send(to, tag, data)
            return recv(frm, tag)
        return send, recv, sendrecv
    return [make(r) for r in range(world)]


def allreduce(xs, residuals=None, **kw):
    world = len(xs)
    comms = [_sfp.Comm(r, world, *fns) for r, fns in enumerate(ranks(world))]
    errors = []

    def run(r):
        try:
            comms[r].allreduce(xs[r], None if residuals is None else residuals[r], **kw)
        except Exception as exc:  # noqa: BLE001 -- reported below
            errors.append(exc)

    ts = [threading.Thread(target=run, args=(r,)) for r in range(world)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise errors[0]
    return comms


@pytest.mark.parametrize("world", [2, 3, 4])
@pytest.mark.parametrize("algo", ["ring", "allgather"])
def test_lossless_sum(world, algo):
    rng = np.random.default_rng(world)
    xs = [rng.standard_normal(1001).astype(np.float32) for _ in range(world)]
    want = xs[0].astype(np.float64)
    for x in xs[1:]:
        want = want + x
    allreduce(xs, e=8, m=23, algo=algo)
    for x in xs[1:]:
        assert np.array_equal(x.view(np.uint32), xs[0].view(np.uint32))
    assert np.abs(xs[0] - want).max() <= 1e-5 * np.abs(want).max()


def test_lossy_with_error_feedback():
    rng = np.random.default_rng(5)
    g = [rng.standard_normal(4096).astype(np.float32) for _ in range(2)]
    res = [np.zeros(4096, np.float32) for _ in range(2)]
    total = np.zeros(4096)
    got = np.zeros(4096)
    for step in range(20):  # the same gradients each step: feedback makes the mean exact
        xs = [x.copy() for x in g]
        comms = allreduce(xs, res, e=4, m=2)
        assert np.array_equal(xs[0], xs[1])
        got += xs[0]
        total += g[0].astype(np.float64) + g[1]
    assert np.abs(got - total).max() / np.abs(total).max() < 0.01
    s = comms[0].stats()
    assert 0 < s["wire_bytes"] < s["raw_bytes"] / 4


def test_callable_exception_comes_back():
    def boom(*args):
        raise RuntimeError("peer went away")
    c = _sfp.Comm(0, 2, boom, boom, boom)
    with pytest.raises(RuntimeError, match="peer went away"):
        c.allreduce(np.ones(100, np.float32), e=4, m=2)


def test_bad_arguments():
    fns = ranks(2)[0]
    with pytest.raises(ValueError):
        _sfp.Comm(2, 2, *fns)
    with pytest.raises(ValueError):
        _sfp.Comm(0, 2, 1, 2, 3)
    c = _sfp.Comm(0, 2, *fns)
    with pytest.raises(ValueError):
        c.allreduce(np.ones(4, np.float64))
    with pytest.raises(ValueError):
        c.allreduce(np.ones(4, np.float32), np.zeros(3, np.float32))
    with pytest.raises(ValueError):
        c.allreduce(np.ones(4, np.float32), algo="tree")


def test_garbage_from_a_peer_is_an_error():
    def bad_sendrecv(to, data, frm, tag):
        return b"SFPT" + bytes(80)
    c = _sfp.Comm(0, 2, lambda *a: None, lambda *a: b"", bad_sendrecv)
    with pytest.raises(sfp.Error, match="rank 1"):
        c.allreduce(np.ones(100, np.float32), e=4, m=2)
