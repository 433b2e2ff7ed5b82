"""sfp -- learned-width floating-point containers, from Python.

A container keeps each float32 as a sign, `e` exponent bits (1..8) and `m`
mantissa bits (0..23), bit-packed, with Gecko lossless coding of the
exponents; e=8, m=23 is bit-exact for every float32 (docs/format.md).

    import numpy as np, sfp
    buf = sfp.encode(x, e=4, m=3)          # bytes: one .sfpt container
    y = sfp.decode(buf)                    # numpy float32, x's shape
    sfp.inspect(buf)["bits_per_value"]     # the header, as a dict
    q = sfp.quantize(x, 4, 3)              # what decode(encode(x, ...)) gives

Arrays are float32 numpy arrays or torch CPU tensors (anything with the
buffer protocol); C-contiguous ones are read in place, without a copy, and
the GIL is released while coding. The coding is libsfp's own (the extension
sfp._sfp, written in C); nothing here re-implements it.

Errors: sfp.Error (with libsfp's message; .code, .reason) for containers that
are corrupt, truncated or fail their checksums and for values a container
cannot hold; ValueError for bad arguments. sfp.torch has the DDP
communication hook.
"""
from . import _sfp
from ._sfp import Error, FORMAT_VERSION, MAX_DIMS, inspect

__all__ = ["encode", "decode", "inspect", "quantize", "Error", "FORMAT_VERSION", "MAX_DIMS"]
__version__ = _sfp.version


def _floats(array):
    """A float32 buffer of `array` without copying it when it already is one:
    a torch CPU tensor becomes the numpy view of its storage; a
    non-contiguous tensor or array is copied once, C-ordered."""
    mod = type(array).__module__
    if mod.startswith("torch"):
        if array.device.type != "cpu":
            raise ValueError("sfp: the tensor is on %s; containers are coded on the CPU "
                             "(move it with .cpu())" % array.device)
        if array.requires_grad:
            array = array.detach()
        if not array.is_contiguous():
            array = array.contiguous()
        return array.numpy()
    if mod == "numpy" and not array.flags.c_contiguous:
        import numpy
        return numpy.ascontiguousarray(array)
    return array


def encode(array, e=8, m=23, gecko=True, rounding="nearest", seed=None):
    """Encode a float32 array into a container (bytes) with `e` exponent and
    `m` mantissa bits, Gecko-coded exponents unless gecko=False, rounding
    "nearest" (ties to even) or "stochastic" (seeded: seed, default 0). The
    shape is kept in the container. The exponent window's top is the
    array's largest exponent; values below it flush to zero."""
    return _sfp.encode(_floats(array), e=e, m=m, gecko=gecko, rounding=rounding, seed=seed)


def decode(buf):
    """Decode a container (bytes-like) into a new float32 numpy array of the
    container's shape. Raises sfp.Error for anything that is not one whole,
    valid container."""
    return _sfp.decode(buf)


def quantize(array, e, m, rounding="nearest", seed=None, out=None):
    """The values decode(encode(array, e, m)) gives, without the bytes: a new
    float32 numpy array (or `out`, a writable float32 array of the same size;
    it may be `array` itself)."""
    return _sfp.quantize(_floats(array), e, m, rounding=rounding, seed=seed,
                         out=None if out is None else _floats(out))
