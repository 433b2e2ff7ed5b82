"""Fuzzing the module's decode and inspect entries with mutated containers:
each one decodes or raises sfp.Error, never crashes. Half of the mutants get
their CRC32Cs recomputed (the checksums would stop most of them at the
header), so the mutations reach the payload decoders: the exponent streams
(raw and every Gecko variant), signs, mantissas, exceptions, refinement side
bytes. SFP_FUZZ_CASES (default 20000) sets the number of mutants."""
import os

import numpy as np

import sfp


def _crc_table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ (0x82F63B78 if c & 1 else 0)
        t.append(c)
    return t


TABLE = _crc_table()


def crc32c(data):
    """CRC32C (Castagnoli), the checksum of docs/format.md -- only to forge
    test containers."""
    c = 0xFFFFFFFF
    for b in data:
        c = TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def reseal(buf):
    """Recompute the payload and header CRCs of a (mutated) container whose
    ndim byte and sizes still allow it (docs/format.md, Header)."""
    if len(buf) < 64:
        return buf
    ndim = buf[11]
    hb = 64 + 8 * min(ndim, 8)
    if len(buf) < hb:
        return buf
    b = bytearray(buf)
    b[56:60] = crc32c(bytes(b[hb:])).to_bytes(4, "little")
    b[60:64] = crc32c(bytes(b[:60]) + bytes(b[64:hb])).to_bytes(4, "little")
    return bytes(b)


def seeds():
    rng = np.random.default_rng(11)
    relu = np.maximum(rng.standard_normal(3000), 0).astype(np.float32)
    grad = (rng.standard_normal(2000) * 1e-3).astype(np.float32)
    odd = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, 3.0, -2.5] * 8, np.float32)
    out = []
    for x in (relu, grad, odd, relu.reshape(30, 100)):
        for e, m, gecko in ((8, 23, True), (8, 23, False), (4, 2, True), (3, 1, False),
                            (5, 7, True), (2, 0, True)):
            try:
                out.append(sfp.encode(x, e=e, m=m, gecko=gecko))
            except sfp.Error:
                pass  # NaN/Inf in a lossy container: refused, not a seed
    return out


def mutate(rng, buf):
    b = bytearray(buf)
    kind = rng.integers(0, 6)
    if kind == 0:      # flip bits
        for _ in range(rng.integers(1, 4)):
            i = rng.integers(0, len(b))
            b[i] ^= 1 << int(rng.integers(0, 8))
    elif kind == 1:    # overwrite a run of payload bytes
        if len(b) > 80:
            i = rng.integers(64, len(b))
            for j in range(i, min(len(b), i + int(rng.integers(1, 16)))):
                b[j] = int(rng.integers(0, 256))
    elif kind == 2:    # truncate
        del b[int(rng.integers(0, len(b))):]
    elif kind == 3:    # append
        b += bytes(rng.integers(0, 256, int(rng.integers(1, 9)), dtype=np.uint8))
    elif kind == 4:    # a header field (not count or shape: those only ask for memory)
        i = int(rng.choice([4, 5, 6, 7, 8, 9, 10, 24, 32, 40, 48]))
        b[i] = int(rng.integers(0, 256))
    else:              # splice: the tail of one container after the head of itself, shifted
        cut = int(rng.integers(64, max(65, len(b))))
        b = b[:cut] + b[cut + int(rng.integers(1, 8)):]
    return bytes(b)


def test_mutated_containers_raise_or_decode():
    cases = int(os.environ.get("SFP_FUZZ_CASES", "20000"))
    rng = np.random.default_rng(2026)
    base = seeds()
    assert len(base) >= 12
    decoded = raised = 0
    for i in range(cases):
        buf = mutate(rng, base[i % len(base)])
        if i % 2:
            buf = reseal(buf)
        try:
            info = sfp.inspect(buf)
            y = sfp.decode(buf)
            assert y.size == info["count"] and y.dtype == np.float32
            decoded += 1
        except sfp.Error as exc:
            assert exc.code < 0 and str(exc)
            raised += 1
    print("fuzz: %d mutants, %d decoded, %d raised sfp.Error" % (cases, decoded, raised))
    assert raised > cases // 4
