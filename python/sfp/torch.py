"""sfp.torch -- a DDP communication hook that moves gradients in sfp containers.

    import sfp.torch
    state = sfp.torch.State(e=4, m=2, gecko=True)            # or daemon="tcp://HOST:9465"
    model = torch.nn.parallel.DistributedDataParallel(net)
    model.register_comm_hook(state, sfp.torch.hook)
    ...
    loss.backward()              # each gradient bucket: averaged over the ranks in containers
    state.observe(loss, len(x))  # optional: the loss and samples sfpd shows (with a daemon)
    ...
    state.close()                # with a daemon: the last report and the goodbye

Each bucket is divided by the world size and summed over the process group by
libsfp's all-reduce (sfp_allreduce, lib/transport/collective.c; the C
extension sfp._sfp runs it): a ring of reduce-scatter and all-gather whose
messages are containers of the bucket's chunks at (e, m), Gecko-coded, with
error feedback at every rounding point (what a rounding dropped is added to
the same chunk at the next step; one residual per bucket and rank). Every
rank ends with the same bits. The bytes travel over the process group
(torch.distributed send/recv; Gloo on CPU, NCCL untested): a 64-bit length,
then the container. e=8, m=23 is lossless, and then the result is what DDP's
default all-reduce gives (bit for bit at 2 ranks; at more ranks the sums may
be added in another order).

With daemon="tcp://HOST:PORT" every rank registers with sfpd as a worker of
job `job` (one tensor, layer "ddp_gradients": the protocol's tensor kinds are
sfp-worker's, so it is filed under "weights"), reports every `report_every`
steps the loss given to observe() (averaged over the ranks), the widths and
the bytes on the wire, and so shows on sfpd's page and /metrics. With
policy="bitwave", sfpd runs BitWave on the job's loss and the widths it
answers (rank 0's answer, shared with every rank) are used from the next
step. A daemon that is not there costs at most timeout_s per attempt (then
attempts back off); training never waits for it.
"""
import os
import socket
import sys

import torch
import torch.distributed as dist

from . import _sfp

__all__ = ["State", "hook"]

# BitWave constants sent at registration: (ema, threshold, period in steps,
# m_min, m_max, e_min, e_max, backoff), sfp-worker's defaults (docs/config.md);
# by default m_max and e_max are the State's m and e, where sfpd's BitWave starts.
BITWAVE_DEFAULTS = (0.9, 0.02, 100, 1, 23, 3, 8, 2)


class _GroupLink:
    """The byte messages of libsfp's collective over a torch.distributed
    process group: each message is an int64 length then the bytes, sent on
    tags 2t and 2t+1 for the collective's tag t. Sends are asynchronous;
    flush() waits for them (after each all-reduce)."""

    def __init__(self, group):
        self.group = group
        self.pending = []
        world = dist.group.WORLD
        self.ranks = [r if group is None or group is world else
                      dist.distributed_c10d._get_global_rank(group, r)
                      for r in range(dist.get_world_size(group))]

    def _isend(self, peer, tag, data):
        body = torch.frombuffer(data, dtype=torch.uint8)
        size = torch.tensor([body.numel()], dtype=torch.int64)
        dst = self.ranks[peer]
        return [(dist.isend(size, dst, group=self.group, tag=2 * tag), size),
                (dist.isend(body, dst, group=self.group, tag=2 * tag + 1), body)]

    def send(self, peer, tag, data):
        self.pending.extend(self._isend(peer, tag, data))

    def recv(self, peer, tag):
        src = self.ranks[peer]
        size = torch.empty(1, dtype=torch.int64)
        dist.recv(size, src, group=self.group, tag=2 * tag)
        body = torch.empty(int(size[0]), dtype=torch.uint8)
        dist.recv(body, src, group=self.group, tag=2 * tag + 1)
        return body.numpy()

    def sendrecv(self, to, data, frm, tag):
        works = self._isend(to, tag, data)
        body = self.recv(frm, tag)
        for w, _ in works:
            w.wait()
        return body

    def flush(self):
        for w, _ in self.pending:
            w.wait()
        self.pending.clear()


class State:
    """What the hook keeps between calls: the widths, the error-feedback
    residuals (one per bucket), libsfp's collective over the process group,
    the byte counters, and the daemon link.

    e, m        container widths for the gradients (1..8, 0..23; 8, 23 lossless)
    gecko       Gecko-code the exponents (True) or pack them raw
    daemon      sfpd's worker address, tcp://HOST:PORT (None: no daemon)
    process_group   the group to average over (None: the default group)
    error_feedback  carry each rounding's error into the next step (lossy widths)
    rounding    "nearest" or "stochastic"
    algo        "ring" (reduce-scatter + all-gather: each rank sends 2(N-1)/N of
                a bucket) or "allgather" (every rank's bucket encoded once and
                sent round the ring: (N-1) buckets)
    job, token, policy, report_every, timeout_s, bitwave: the daemon's job name,
                job token ($SFP_TOKEN when None), "fixed" or "bitwave",
                steps between reports, seconds per attempt, BitWave constants
                (BITWAVE_DEFAULTS up to e, m when None)
    """

    def __init__(self, e=4, m=2, gecko=True, daemon=None, *, process_group=None,
                 error_feedback=True, rounding="nearest", algo="ring", job="torch",
                 token=None, policy="fixed", report_every=10, timeout_s=1.0, bitwave=None):
        if not (isinstance(e, int) and 1 <= e <= 8):
            raise ValueError("e must be an integer 1..8, got %r" % (e,))
        if not (isinstance(m, int) and 0 <= m <= 23):
            raise ValueError("m must be an integer 0..23, got %r" % (m,))
        if rounding not in ("nearest", "stochastic"):
            raise ValueError("rounding must be 'nearest' or 'stochastic', got %r" % (rounding,))
        if algo not in ("ring", "allgather"):
            raise ValueError("algo must be 'ring' or 'allgather', got %r" % (algo,))
        if policy not in ("fixed", "bitwave"):
            raise ValueError("policy must be 'fixed' or 'bitwave', got %r" % (policy,))
        if not (isinstance(report_every, int) and report_every >= 1):
            raise ValueError("report_every must be a positive integer")
        if daemon is not None and not isinstance(daemon, str):
            raise ValueError("daemon must be an address such as 'tcp://HOST:PORT' or None")
        self.e, self.m, self.gecko = e, m, bool(gecko)
        self.process_group = process_group
        self.error_feedback = bool(error_feedback)
        self.rounding, self.algo = rounding, algo
        self.daemon, self.job, self.policy = daemon, job, policy
        self.token = token if token is not None else os.environ.get("SFP_TOKEN", "")
        self.report_every, self.timeout_s = report_every, timeout_s
        # BitWave starts at the widest widths it may use: this state's
        self.bitwave = tuple(bitwave) if bitwave is not None else \
            BITWAVE_DEFAULTS[:3] + (min(1, m), m, min(3, e), e) + BITWAVE_DEFAULTS[7:]
        self.step = 0              # steps (last buckets) seen
        self.values = 0            # gradient values per step (known after the first)
        self._count = 0
        self._residuals = {}
        self._comm = None
        self._link = None
        self._loss, self._samples = None, 0
        self._coord = None
        self._registered = False
        self._failures = self._skip = 0
        self._answered = 0
        # the tensors of the daemon steps' collectives: kept for the whole run, so
        # that Gloo's worker thread never frees one that Python still owned (in
        # torch 1.13 that needs the GIL, and a process group destroyed while one
        # is pending deadlocks)
        self._lossbuf = torch.zeros(1, dtype=torch.float64)
        self._bwbuf = torch.zeros(3, dtype=torch.int64)

    # ---- the exchange ------------------------------------------------------
    def _open(self):
        group = self.process_group
        self.rank = dist.get_rank(group)
        self.world = dist.get_world_size(group)
        self._link = _GroupLink(group)
        self._comm = _sfp.Comm(self.rank, self.world, self._link.send, self._link.recv,
                               self._link.sendrecv)
        if self.daemon:
            self._coord = _sfp.Coord(self.daemon, self.token, self.timeout_s)

    def _residual(self, index, n):
        r = self._residuals.get(index)
        if r is None or r.size != n:  # DDP rebuilds its buckets after the first step
            r = self._residuals[index] = torch.zeros(n, dtype=torch.float32).numpy()
        return r

    def allreduce_(self, tensor, index=0):
        """Average a flat float32 CPU tensor over the group in place, as the
        hook does for bucket `index` (its own error-feedback residual)."""
        if self._comm is None:
            self._open()
        if tensor.dtype != torch.float32 or tensor.device.type != "cpu" or \
                not tensor.is_contiguous():
            raise ValueError("sfp.torch: buckets must be contiguous float32 CPU tensors, got "
                             "%s on %s" % (tensor.dtype, tensor.device))
        tensor.div_(self.world)
        x = tensor.detach().view(-1).numpy()
        lossless = self.e == 8 and self.m == 23
        r = self._residual(index, x.size) if self.error_feedback and not lossless else None
        try:
            self._comm.allreduce(x, r, e=self.e, m=self.m, gecko=self.gecko,
                                 rounding=self.rounding, algo=self.algo)
        finally:
            self._link.flush()
        self._count += x.size
        return tensor

    def stats(self):
        """Bytes and times of this rank's exchanges so far: raw_bytes (as
        float32), wire_bytes (the containers sent), messages, encode_ns,
        decode_ns, comm_ns."""
        return self._comm.stats() if self._comm is not None else \
            {"raw_bytes": 0, "wire_bytes": 0, "messages": 0, "encode_ns": 0, "decode_ns": 0,
             "comm_ns": 0}

    # ---- the daemon ---------------------------------------------------------
    def observe(self, loss, samples=0):
        """This step's training loss (a number or a 0-d tensor) and the samples
        this rank trained on: what the reports to sfpd carry."""
        self._loss = loss
        self._samples += int(samples)

    def _failed(self, exc):
        if not self._failures:
            print("sfp.torch: %s; training on with the current widths" % exc, file=sys.stderr,
                  flush=True)
        self._failures += 1
        self._skip = min(self._failures, 64)

    def _register(self):
        self._coord.register(self.job, self.rank, self.world, self.policy,
                             [("ddp_gradients", "weights", self.values)],
                             report_every=self.report_every, host=socket.gethostname()[:63],
                             pid=os.getpid(),
                             bitwave=self.bitwave if self.policy == "bitwave" else None)
        self._registered = True

    def _exchange(self, loss):
        """Report; the daemon's answer (a dict) or None."""
        if self._skip > 0:
            self._skip -= 1
            return None
        try:
            if not self._registered:
                self._register()
            s = self._comm.stats()
            upd = self._coord.report(
                self.job, self.rank, self.step, loss, self._samples,
                [(float(self.e), float(self.m), self.e, self.m)], footprint_bits=32.0,
                traffic=[("gradients", s["raw_bytes"], s["wire_bytes"], s["encode_ns"],
                          s["decode_ns"], s["comm_ns"])])
        except _sfp.Error as exc:
            self._failed(exc)
            return None
        if self._failures:
            print("sfp.torch: daemon: reachable again at %s" % self.daemon, file=sys.stderr,
                  flush=True)
        self._failures = self._skip = 0
        self._answered = self.step
        return upd

    def _job_loss(self):
        loss = self._loss
        loss = float(loss.detach()) if isinstance(loss, torch.Tensor) else \
            float(loss) if loss is not None else 0.0
        v = self._lossbuf
        v[0] = loss
        dist.all_reduce(v, group=self.process_group)
        return float(v[0]) / self.world

    def _step_end(self):
        self.step += 1
        if self.step == 1:
            self.values = self._count
        self._count = 0
        if self._coord is None or self.step % self.report_every:
            return
        upd = self._exchange(self._job_loss())
        if self.policy == "bitwave":
            v = self._bwbuf
            v.zero_()
            if self.rank == 0 and upd is not None and upd["set_all"]:
                v[0], v[1], v[2] = 1, upd["e"], upd["m"]
            dist.broadcast(v, self._link.ranks[0], group=self.process_group)
            if v[0]:
                self.e, self.m = int(v[1]), int(v[2])

    def close(self, ok=True):
        """With a daemon: report the newest step if it was never answered,
        then say goodbye. Call it once training is over (every rank)."""
        if self._coord is None:
            return
        if self._registered and self.step > self._answered:
            self._skip = 0
            loss = self._loss
            loss = float(loss.detach()) if isinstance(loss, torch.Tensor) else \
                float(loss) if loss is not None else 0.0
            self._exchange(loss)
        if self._registered and not self._failures:
            try:
                self._coord.goodbye(self.job, self.rank, self.step, ok)
            except _sfp.Error:
                pass
        self._coord.close()
        self._coord = None


def hook(state, bucket):
    """DDP communication hook: average the bucket's gradients over the
    process group in sfp containers (see State). Register with
    model.register_comm_hook(state, sfp.torch.hook)."""
    buf = bucket.buffer()
    state.allreduce_(buf, bucket.index())
    if bucket.is_last():
        state._step_end()
    fut = torch.futures.Future()
    fut.set_result(buf)
    return fut
