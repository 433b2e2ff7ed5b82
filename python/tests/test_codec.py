"""The sfp module's codec: bit-exact round trips at e8 m23 on every float32
pattern, error bounds at lower widths, the same bytes and values as the sfp
tool, and exceptions (never a crash) on bad arguments and bad containers."""
import os
import subprocess
import threading

import numpy as np
import pytest

import sfp

SFP_BIN = os.environ.get("SFP_BIN", os.path.join(os.environ.get("BUILD", "build"), "bin", "sfp"))


def bits(a):
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)


def patterns():
    """Every class of float32 bit pattern: normals of every exponent, the
    subnormals, +-0, +-inf, quiet and signalling NaNs with payloads, both
    signs, plus random bit patterns."""
    u = []
    for s in (0, 1 << 31):
        u += [s, s | 0x7F800000]                                  # +-0, +-inf
        u += [s | (E << 23) | mnt for E in range(1, 255) for mnt in (0, 1, 0x400000, 0x7FFFFF)]
        u += [s | mnt for mnt in (1, 2, 3, 0x1234, 0x400000, 0x7FFFFF)]  # subnormals
        u += [s | 0x7F800000 | mnt for mnt in (1, 0x3FFFFF, 0x400000, 0x400001, 0x7FFFFF)]  # NaNs
    rng = np.random.default_rng(1)
    u = np.array(u, dtype=np.uint32)
    return np.concatenate([u, rng.integers(0, 1 << 32, 5000, dtype=np.uint32)]).view(np.float32)


@pytest.mark.parametrize("gecko", [True, False])
@pytest.mark.parametrize("shape", [(-1,), (2, -1), (4, 1, -1)])
def test_lossless_every_pattern(gecko, shape):
    x = patterns()
    n = x.size - x.size % 4
    x = x[:n].reshape(shape)
    buf = sfp.encode(x, e=8, m=23, gecko=gecko)
    y = sfp.decode(buf)
    assert y.dtype == np.float32 and y.shape == x.shape
    assert np.array_equal(bits(y), bits(x))
    info = sfp.inspect(buf)
    assert info["count"] == n and info["shape"] == x.shape and info["total_bytes"] == len(buf)
    assert (info["e"], info["m"]) == (8, 23)


def test_scalar_and_single():
    for x in (np.array(3.5, dtype=np.float32), np.array([-0.0], dtype=np.float32)):
        y = sfp.decode(sfp.encode(x))
        assert y.shape == x.shape and np.array_equal(bits(y), bits(x))


@pytest.mark.parametrize("e,m", [(3, 0), (4, 2), (5, 3), (6, 7), (8, 10), (8, 22)])
def test_error_bound_nearest(e, m):
    """Values whose exponents fit the window round to nearest: relative
    error at most 2^-(m+1); quantize gives exactly what decode(encode) gives."""
    rng = np.random.default_rng(e * 100 + m)
    span = min(2 ** e - 3, 12)  # exponents the values cover: inside the window
    mag = np.exp2(rng.uniform(-span, 0, 20000)).astype(np.float32)
    x = (mag * rng.choice([-1, 1], mag.size)).astype(np.float32)
    for gecko in (True, False):
        y = sfp.decode(sfp.encode(x, e=e, m=m, gecko=gecko))
        rel = np.abs(y.astype(np.float64) - x) / np.abs(x.astype(np.float64))
        assert rel.max() <= 2.0 ** -(m + 1), "maxdiff %g" % rel.max()
        assert np.array_equal(bits(sfp.quantize(x, e, m)), bits(y))


def test_stochastic_is_seeded_and_unbiased():
    x = np.full(100000, 1.0 + 2 ** -10, dtype=np.float32)
    a = sfp.decode(sfp.encode(x, e=4, m=2, rounding="stochastic", seed=5))
    b = sfp.decode(sfp.encode(x, e=4, m=2, rounding="stochastic", seed=5))
    c = sfp.decode(sfp.encode(x, e=4, m=2, rounding="stochastic", seed=6))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert abs(float(a.mean(dtype=np.float64)) - float(x[0])) < 1e-4
    q = sfp.quantize(x, 4, 2, rounding="stochastic", seed=5)
    assert np.array_equal(q, a)


def test_underflow_flushes_to_zero():
    x = np.array([1.0, 2.0 ** -20, -(2.0 ** -20)], dtype=np.float32)
    y = sfp.decode(sfp.encode(x, e=3, m=4))
    assert y[0] == 1.0 and y[1] == 0.0 and y[2] == 0.0


def test_torch_tensors_and_views():
    torch = pytest.importorskip("torch")
    t = torch.randn(6, 5)
    assert np.array_equal(sfp.decode(sfp.encode(t)), t.numpy())
    tt = t.t()  # not contiguous: coded as its C-ordered copy
    assert np.array_equal(sfp.decode(sfp.encode(tt)), tt.contiguous().numpy())
    w = torch.randn(4, 4, requires_grad=True)
    assert sfp.decode(sfp.encode(w, e=5, m=3)).shape == (4, 4)
    q = sfp.quantize(t, 4, 2)
    assert np.array_equal(q, sfp.decode(sfp.encode(t, e=4, m=2)))
    out = torch.empty(6, 5)
    sfp.quantize(t, 4, 2, out=out)  # into a tensor, in place
    assert np.array_equal(out.numpy(), q)
    a = np.arange(40, dtype=np.float32).reshape(8, 5)[::2]  # numpy view, strided
    assert np.array_equal(sfp.decode(sfp.encode(a)), a)


def test_same_as_the_sfp_tool(tmp_path):
    if not os.access(SFP_BIN, os.X_OK):
        pytest.skip("no %s (build it with make)" % SFP_BIN)
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((16, 33)) * rng.exponential(1.0, (16, 33))).astype(np.float32)
    x[0, :5] = [0.0, -0.0, np.inf, np.nan, 1e-40]
    np.save(tmp_path / "x.npy", x)
    for e, m, gecko in ((8, 23, True), (4, 2, True), (5, 7, False)):
        buf = sfp.encode(x, e=e, m=m, gecko=gecko)
        args = [SFP_BIN, "encode", "-e", str(e), "-m", str(m)] + (["--gecko"] if gecko else [])
        subprocess.run(args + [str(tmp_path / "x.npy"), str(tmp_path / "t.sfpt")], check=True)
        assert (tmp_path / "t.sfpt").read_bytes() == buf, "encode differs from sfp encode"
        (tmp_path / "m.sfpt").write_bytes(buf)
        subprocess.run([SFP_BIN, "decode", str(tmp_path / "m.sfpt"), str(tmp_path / "y.npy")],
                       check=True)
        ref = np.load(tmp_path / "y.npy")
        got = sfp.decode(buf)
        assert ref.shape == got.shape and np.array_equal(bits(ref), bits(got))


@pytest.mark.parametrize("call,exc", [
    (lambda: sfp.encode(np.zeros(4, np.float64)), ValueError),
    (lambda: sfp.encode(np.zeros(4, np.int32)), ValueError),
    (lambda: sfp.encode([1.0, 2.0]), ValueError),
    (lambda: sfp.encode(np.zeros(4, np.float32), e=0), ValueError),
    (lambda: sfp.encode(np.zeros(4, np.float32), e=9), ValueError),
    (lambda: sfp.encode(np.zeros(4, np.float32), m=24), ValueError),
    (lambda: sfp.encode(np.zeros(4, np.float32), rounding="up"), ValueError),
    (lambda: sfp.encode(np.zeros(4, np.float32), seed=-1), ValueError),
    (lambda: sfp.encode(np.zeros(4, np.float32), seed=1 << 32), ValueError),
    (lambda: sfp.encode(np.zeros([1] * 9, np.float32)), ValueError),
    (lambda: sfp.quantize(np.zeros(4, np.float32), 4, 30), ValueError),
    (lambda: sfp.quantize(np.zeros(4, np.float32), 4, 2, out=np.zeros(3, np.float32)), ValueError),
    (lambda: sfp.decode(12), ValueError),
    (lambda: sfp.decode("SFPT"), ValueError),
    (lambda: sfp.decode(b""), sfp.Error),
    (lambda: sfp.decode(b"SFPT" + bytes(100)), sfp.Error),
    (lambda: sfp.inspect(b"not a container at all, no"), sfp.Error),
])
def test_bad_arguments_and_input(call, exc):
    with pytest.raises(exc):
        call()


def test_errors_carry_the_library_message():
    buf = sfp.encode(np.linspace(-1, 1, 1000, dtype=np.float32), e=4, m=3)
    with pytest.raises(sfp.Error) as ei:
        sfp.decode(buf[:-1])
    assert ei.value.code < 0 and ei.value.reason and "present" in str(ei.value)
    bad = bytearray(buf)
    bad[-1] ^= 0x10
    with pytest.raises(sfp.Error) as ei:
        sfp.decode(bytes(bad))
    assert ei.value.reason == "checksum mismatch"
    with pytest.raises(sfp.Error):
        sfp.decode(buf + b"\0")  # a container is its exact bytes


def test_overflow_when_rounding_is_an_error():
    x = np.array([np.finfo(np.float32).max], dtype=np.float32)
    with pytest.raises(sfp.Error) as ei:
        sfp.encode(x, e=8, m=2)
    assert ei.value.reason == "value out of range"


def test_threads_share_nothing():
    """The GIL is released while coding: concurrent calls give the results
    of the same calls made one after the other."""
    rng = np.random.default_rng(9)
    xs = [rng.standard_normal(200000).astype(np.float32) for _ in range(4)]
    want = [sfp.encode(x, e=5, m=3) for x in xs]
    got = [None] * 4

    def work(i):
        for _ in range(5):
            got[i] = sfp.encode(xs[i], e=5, m=3)
            assert np.array_equal(sfp.decode(got[i]), sfp.quantize(xs[i], 5, 3))

    ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert got == want
