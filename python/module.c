/*
 * module.c -- the CPython extension `sfp._sfp`: the container codec of
 * libsfp for Python (encode, decode, inspect, quantize), sfp.Error, and the
 * types of comm.c (the DDP hook's collective, the daemon client).
 *
 * Arrays come in through the buffer protocol (C-contiguous float32, read in
 * place, never copied); results are numpy arrays that the library decodes
 * straight into. numpy is imported at run time (numpy.empty), so the
 * extension builds without numpy's headers. The python/sfp package wraps
 * these functions (torch tensors, docstrings); this file does no coding of
 * its own.
 */
#include <stdint.h>
#include <string.h>

#include "sfp_py.h"

PyObject *sfp_py_error;

PyObject *sfp_py_raise(int rc, const sfp_error *err)
{
	const char *msg = err && err->msg[0] ? err->msg : sfp_strerror(rc);
	if (rc == SFP_EINVAL) {
		PyErr_SetString(PyExc_ValueError, msg);
		return NULL;
	}
	if (rc == SFP_ENOMEM) {
		PyErr_SetString(PyExc_MemoryError, msg);
		return NULL;
	}
	PyObject *args = Py_BuildValue("(s)", msg);
	PyObject *exc = args ? PyObject_Call(sfp_py_error, args, NULL) : NULL;
	Py_XDECREF(args);
	if (!exc)
		return NULL;
	PyObject *code = PyLong_FromLong(rc), *reason = PyUnicode_FromString(sfp_strerror(rc));
	if (code && reason && PyObject_SetAttrString(exc, "code", code) == 0 &&
	    PyObject_SetAttrString(exc, "reason", reason) == 0)
		PyErr_SetObject(sfp_py_error, exc);
	Py_XDECREF(code);
	Py_XDECREF(reason);
	Py_DECREF(exc);
	return NULL;
}

/* ---- codec contexts ------------------------------------------------------- */
static sfp_codec *spare; /* taken and returned with atomic exchanges */

sfp_codec *sfp_py_codec_get(void)
{
	sfp_codec *c = __atomic_exchange_n(&spare, NULL, __ATOMIC_ACQ_REL);
	if (!c && !(c = sfp_codec_create()))
		PyErr_NoMemory();
	return c;
}

void sfp_py_codec_put(sfp_codec *c)
{
	sfp_codec *expected = NULL;
	if (c && !__atomic_compare_exchange_n(&spare, &expected, c, 0, __ATOMIC_ACQ_REL,
					      __ATOMIC_ACQUIRE))
		sfp_codec_free(c);
}

/* ---- arguments ------------------------------------------------------------ */
int sfp_py_params(sfp_params *p, int e, int m, int gecko, const char *rounding, PyObject *seed)
{
	if (e < 1 || e > 8) {
		PyErr_Format(PyExc_ValueError, "e must be 1..8, got %d", e);
		return -1;
	}
	if (m < 0 || m > 23) {
		PyErr_Format(PyExc_ValueError, "m must be 0..23, got %d", m);
		return -1;
	}
	sfp_params_init(p, (unsigned)e, (unsigned)m);
	p->gecko = gecko ? 1 : 0;
	if (!rounding || !strcmp(rounding, "nearest")) {
		p->rounding = SFP_ROUND_NEAREST;
	} else if (!strcmp(rounding, "stochastic")) {
		p->rounding = SFP_ROUND_STOCHASTIC;
	} else {
		PyErr_Format(PyExc_ValueError, "rounding must be 'nearest' or 'stochastic', got '%s'",
			     rounding);
		return -1;
	}
	if (seed && seed != Py_None) {
		if (!PyLong_Check(seed)) {
			PyErr_SetString(PyExc_ValueError, "seed must be an integer or None");
			return -1;
		}
		unsigned long long s = PyLong_AsUnsignedLongLong(seed);
		if ((s == (unsigned long long)-1 && PyErr_Occurred()) || s > UINT32_MAX) {
			PyErr_Clear();
			PyErr_SetString(PyExc_ValueError, "seed must be 0..4294967295");
			return -1;
		}
		p->seed = (uint32_t)s;
	}
	return 0;
}

/* A float32 array argument: C-contiguous, format 'f' (native float). */
static int get_floats(PyObject *obj, Py_buffer *v, int writable, const char *what)
{
	int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
	if (PyObject_GetBuffer(obj, v, flags) < 0) {
		if (PyErr_ExceptionMatches(PyExc_BufferError) || PyErr_ExceptionMatches(PyExc_TypeError)) {
			PyErr_Clear();
			PyErr_Format(PyExc_ValueError,
				     "%s must be a C-contiguous%s float32 array (numpy array, torch CPU "
				     "tensor, or anything with the buffer protocol), got %s",
				     what, writable ? ", writable" : "", Py_TYPE(obj)->tp_name);
		}
		return -1;
	}
	const char *f = v->format ? v->format : "B";
	if (f[0] == '<' || f[0] == '=' || f[0] == '@')
		f++;
	if (strcmp(f, "f") != 0 || v->itemsize != 4) {
		PyErr_Format(PyExc_ValueError, "%s must be float32, got buffer format '%s'", what,
			     v->format ? v->format : "B");
		PyBuffer_Release(v);
		return -1;
	}
	if (v->ndim > SFP_MAX_DIMS) {
		PyErr_Format(PyExc_ValueError, "%s has %d dimensions; containers hold at most %d", what,
			     v->ndim, SFP_MAX_DIMS);
		PyBuffer_Release(v);
		return -1;
	}
	return 0;
}

/* The buffer's shape as a container's, and its element count. */
static uint64_t buffer_shape(const Py_buffer *v, uint64_t *shape)
{
	uint64_t n = 1;
	for (int i = 0; i < v->ndim; i++) {
		shape[i] = (uint64_t)v->shape[i];
		n *= shape[i];
	}
	return n;
}

/* numpy.empty(shape, dtype="float32") */
static PyObject *new_array(unsigned ndim, const uint64_t *shape)
{
	PyObject *np = PyImport_ImportModule("numpy");
	if (!np)
		return NULL;
	PyObject *tup = PyTuple_New(ndim), *out = NULL;
	for (unsigned i = 0; tup && i < ndim; i++) {
		PyObject *d = PyLong_FromUnsignedLongLong(shape[i]);
		if (!d) {
			Py_CLEAR(tup);
			break;
		}
		PyTuple_SET_ITEM(tup, i, d);
	}
	if (tup)
		out = PyObject_CallMethod(np, "empty", "(Os)", tup, "float32");
	Py_XDECREF(tup);
	Py_DECREF(np);
	return out;
}

/* ---- encode --------------------------------------------------------------- */
static PyObject *py_encode(PyObject *self, PyObject *args, PyObject *kw)
{
	static char *names[] = {"array", "e", "m", "gecko", "rounding", "seed", NULL};
	PyObject *arr, *seed = Py_None;
	int e = 8, m = 23, gecko = 1;
	const char *rounding = "nearest";
	if (!PyArg_ParseTupleAndKeywords(args, kw, "O|$iipsO:encode", names, &arr, &e, &m, &gecko,
					 &rounding, &seed))
		return NULL;
	sfp_params p;
	if (sfp_py_params(&p, e, m, gecko, rounding, seed) < 0)
		return NULL;
	Py_buffer v;
	if (get_floats(arr, &v, 0, "array") < 0)
		return NULL;
	uint64_t shape[SFP_MAX_DIMS];
	const uint64_t n = buffer_shape(&v, shape);
	PyObject *out = NULL;
	size_t bound = sfp_encode_bound_params(n, shape, (unsigned)v.ndim, &p), written = 0;
	sfp_codec *c = sfp_py_codec_get();
	if (c && (out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)bound))) {
		sfp_error err;
		int rc;
		char *dst = PyBytes_AS_STRING(out);
		Py_BEGIN_ALLOW_THREADS
		rc = sfp_encode(c, dst, bound, &written, v.buf, n, shape, (unsigned)v.ndim, &p, &err);
		Py_END_ALLOW_THREADS
		if (rc < 0) {
			Py_CLEAR(out);
			sfp_py_raise(rc, &err);
		} else if (_PyBytes_Resize(&out, (Py_ssize_t)written) < 0) {
			out = NULL;
		}
	}
	sfp_py_codec_put(c);
	PyBuffer_Release(&v);
	return out;
}

/* ---- inspect / decode ----------------------------------------------------- */
static PyObject *info_dict(const sfp_info *in)
{
	static const char *const coders[] = {"raw", "gecko", "stored"};
	static const char *const variants[] = {"auto", "delta", "ans0", "ans1"};
	PyObject *shape = PyTuple_New(in->ndim);
	for (unsigned i = 0; shape && i < in->ndim; i++) {
		PyObject *d = PyLong_FromUnsignedLongLong(in->shape[i]);
		if (!d) {
			Py_CLEAR(shape);
			break;
		}
		PyTuple_SET_ITEM(shape, i, d);
	}
	if (!shape)
		return NULL;
	const char *coder = in->exp_coder < 3 ? coders[in->exp_coder] : "unknown";
	PyObject *variant = in->exp_coder == SFP_EXP_GECKO && in->gecko_variant < 4
				    ? PyUnicode_FromString(variants[in->gecko_variant])
				    : Py_NewRef(Py_None);
	PyObject *d = Py_BuildValue(
		"{s:I,s:I,s:I,s:I,s:I,s:I,s:s,s:N,s:N,s:K,s:K,s:K,s:n,s:n,s:n,s:n,s:n,s:n,s:n,"
		"s:n,s:I,s:K,s:d}",
		"version", in->version, "e", in->e, "m", in->m, "exp_lo", in->exp_lo, "exp_hi",
		in->exp_hi, "flags", in->flags, "exp_coder", coder, "gecko_variant", variant, "shape",
		shape, "count", (unsigned long long)in->count, "nnz", (unsigned long long)in->nnz,
		"n_exceptions", (unsigned long long)in->n_exceptions, "header_bytes",
		(Py_ssize_t)in->header_bytes, "payload_bytes", (Py_ssize_t)in->payload_bytes,
		"total_bytes", (Py_ssize_t)in->total_bytes, "sign_bytes", (Py_ssize_t)in->sign_bytes,
		"mant_bytes", (Py_ssize_t)in->mant_bytes, "exc_bytes", (Py_ssize_t)in->exc_bytes,
		"exp_bytes", (Py_ssize_t)in->exp_bytes, "side_bytes", (Py_ssize_t)in->side_bytes, "rho",
		in->rho, "bias_groups", (unsigned long long)in->bias_groups, "bits_per_value",
		in->count ? 8.0 * (double)in->total_bytes / (double)in->count : 0.0);
	return d;
}

static int get_bytes(PyObject *obj, Py_buffer *v)
{
	if (PyObject_GetBuffer(obj, v, PyBUF_C_CONTIGUOUS) < 0) {
		if (PyErr_ExceptionMatches(PyExc_TypeError) || PyErr_ExceptionMatches(PyExc_BufferError)) {
			PyErr_Clear();
			PyErr_Format(PyExc_ValueError,
				     "expected a bytes-like container (bytes, bytearray, memoryview, "
				     "contiguous array), got %s",
				     Py_TYPE(obj)->tp_name);
		}
		return -1;
	}
	return 0;
}

static PyObject *py_inspect(PyObject *self, PyObject *arg)
{
	Py_buffer v;
	if (get_bytes(arg, &v) < 0)
		return NULL;
	sfp_info info;
	sfp_error err;
	int rc = sfp_inspect(v.buf, (size_t)v.len, &info, &err);
	PyBuffer_Release(&v);
	if (rc < 0)
		return sfp_py_raise(rc == SFP_EINVAL ? SFP_ECORRUPT : rc, &err);
	return info_dict(&info);
}

static PyObject *py_decode(PyObject *self, PyObject *arg)
{
	Py_buffer v;
	if (get_bytes(arg, &v) < 0)
		return NULL;
	sfp_info info;
	sfp_error err;
	PyObject *out = NULL;
	int rc = sfp_inspect(v.buf, (size_t)v.len, &info, &err);
	if (rc < 0) {
		sfp_py_raise(rc == SFP_EINVAL ? SFP_ECORRUPT : rc, &err);
		goto out;
	}
	if (!(out = new_array(info.ndim, info.shape)))
		goto out;
	Py_buffer o;
	if (PyObject_GetBuffer(out, &o, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE) < 0) {
		Py_CLEAR(out);
		goto out;
	}
	sfp_codec *c = sfp_py_codec_get();
	if (!c) {
		PyBuffer_Release(&o);
		Py_CLEAR(out);
		goto out;
	}
	Py_BEGIN_ALLOW_THREADS
	rc = sfp_decode(c, o.buf, info.count, v.buf, (size_t)v.len, NULL, &err);
	Py_END_ALLOW_THREADS
	sfp_py_codec_put(c);
	PyBuffer_Release(&o);
	if (rc < 0) {
		Py_CLEAR(out);
		sfp_py_raise(rc == SFP_EINVAL ? SFP_ECORRUPT : rc, &err);
	}
out:
	PyBuffer_Release(&v);
	return out;
}

/* ---- quantize ------------------------------------------------------------- */
static PyObject *py_quantize(PyObject *self, PyObject *args, PyObject *kw)
{
	static char *names[] = {"array", "e", "m", "rounding", "seed", "out", NULL};
	PyObject *arr, *seed = Py_None, *outarg = Py_None;
	int e, m;
	const char *rounding = "nearest";
	if (!PyArg_ParseTupleAndKeywords(args, kw, "Oii|$sOO:quantize", names, &arr, &e, &m,
					 &rounding, &seed, &outarg))
		return NULL;
	sfp_params p;
	if (sfp_py_params(&p, e, m, 0, rounding, seed) < 0)
		return NULL;
	Py_buffer v, o;
	if (get_floats(arr, &v, 0, "array") < 0)
		return NULL;
	uint64_t shape[SFP_MAX_DIMS];
	const uint64_t n = buffer_shape(&v, shape);
	PyObject *out = NULL;
	if (outarg == Py_None) {
		out = new_array((unsigned)v.ndim, shape);
	} else {
		out = Py_NewRef(outarg);
	}
	if (!out)
		goto fail;
	if (get_floats(out, &o, 1, "out") < 0)
		goto fail;
	if ((uint64_t)o.len != n * 4u) {
		PyErr_Format(PyExc_ValueError, "out holds %zd values, array %llu", o.len / 4,
			     (unsigned long long)n);
		PyBuffer_Release(&o);
		goto fail;
	}
	sfp_codec *c = sfp_py_codec_get();
	if (!c) {
		PyBuffer_Release(&o);
		goto fail;
	}
	sfp_error err;
	int rc;
	Py_BEGIN_ALLOW_THREADS
	rc = sfp_quantize(c, o.buf, v.buf, n, &p, &err);
	Py_END_ALLOW_THREADS
	sfp_py_codec_put(c);
	PyBuffer_Release(&o);
	if (rc < 0) {
		sfp_py_raise(rc, &err);
		goto fail;
	}
	PyBuffer_Release(&v);
	return out;
fail:
	Py_XDECREF(out);
	PyBuffer_Release(&v);
	return NULL;
}

static PyObject *py_bound(PyObject *self, PyObject *args)
{
	unsigned long long n;
	unsigned ndim = 1;
	if (!PyArg_ParseTuple(args, "K|I:encode_bound", &n, &ndim))
		return NULL;
	if (ndim > SFP_MAX_DIMS || n > SFP_MAX_COUNT) {
		PyErr_SetString(PyExc_ValueError, "count or ndim out of range");
		return NULL;
	}
	return PyLong_FromSize_t(sfp_encode_bound(n, ndim));
}

static PyMethodDef methods[] = {
	{"encode", (PyCFunction)(void (*)(void))py_encode, METH_VARARGS | METH_KEYWORDS,
	 "encode(array, *, e=8, m=23, gecko=True, rounding='nearest', seed=None) -> bytes"},
	{"decode", py_decode, METH_O, "decode(buf) -> numpy.ndarray (float32, the container's shape)"},
	{"inspect", py_inspect, METH_O, "inspect(buf) -> dict of the container's header"},
	{"quantize", (PyCFunction)(void (*)(void))py_quantize, METH_VARARGS | METH_KEYWORDS,
	 "quantize(array, e, m, *, rounding='nearest', seed=None, out=None) -> numpy.ndarray"},
	{"encode_bound", py_bound, METH_VARARGS, "encode_bound(n, ndim=1) -> bytes that always suffice"},
	{NULL, NULL, 0, NULL}};

static struct PyModuleDef moddef = {PyModuleDef_HEAD_INIT, "_sfp",
				    "libsfp's container codec, collective and daemon client", -1,
				    methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__sfp(void);
PyMODINIT_FUNC PyInit__sfp(void)
{
	PyObject *mod = PyModule_Create(&moddef);
	if (!mod)
		return NULL;
	if (!sfp_py_error) {
		sfp_py_error = PyErr_NewExceptionWithDoc(
			"sfp.Error",
			"An error from libsfp (corrupt or truncated container, checksum mismatch, a peer "
			"or daemon that failed); .code is the library's sfp_err, .reason its name.",
			NULL, NULL);
		if (!sfp_py_error)
			goto fail;
	}
	if (PyModule_AddObjectRef(mod, "Error", sfp_py_error) < 0 ||
	    PyType_Ready(&sfp_py_comm_type) < 0 || PyType_Ready(&sfp_py_coord_type) < 0 ||
	    PyModule_AddObjectRef(mod, "Comm", (PyObject *)&sfp_py_comm_type) < 0 ||
	    PyModule_AddObjectRef(mod, "Coord", (PyObject *)&sfp_py_coord_type) < 0 ||
	    PyModule_AddStringConstant(mod, "version", SFP_VERSION) < 0 ||
	    PyModule_AddIntConstant(mod, "FORMAT_VERSION", SFP_FORMAT_VERSION) < 0 ||
	    PyModule_AddIntConstant(mod, "MAX_DIMS", SFP_MAX_DIMS) < 0)
		goto fail;
	return mod;
fail:
	Py_DECREF(mod);
	return NULL;
}
