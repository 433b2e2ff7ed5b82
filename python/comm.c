/*
 * comm.c -- two types of the extension `sfp._sfp` for the DDP hook
 * (python/sfp/torch.py):
 *
 *   Comm   libsfp's compressed all-reduce (sfp_allreduce: containers on the
 *          wire, error feedback at every rounding point, every rank ending
 *          with the same bits) over a transport whose send and receive are
 *          Python callables -- the hook passes ones that move the bytes over
 *          the torch.distributed process group. The collective runs with the
 *          GIL released; only the callables take it back.
 *   Coord  libsfp's daemon client (sfp_coord_*): register, report (and the
 *          widths sfpd answers), heartbeat, goodbye.
 *
 * A Python exception raised by a callable stops the collective (the library
 * sees SFP_EPEER) and is re-raised, unchanged, by the method that ran it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sfp/coord.h"
#include "sfp/transport.h"
#include "sfp_py.h"

/* ---- Comm: a transport over Python callables ---------------------------- */
typedef struct comm_obj {
	PyObject_HEAD
	sfp_transport *t;
	sfp_collective *coll;
	PyObject *send, *recv, *sendrecv; /* the callables */
	PyObject *exc[3];                 /* the first exception a callable raised: type, value, traceback */
	sfp_wire_stats stats;
	sfp_group group;
} comm_obj;

/* Keep the first exception of a collective; returns SFP_EPEER with its text. */
static int callable_failed(comm_obj *c, const char *what, int peer, sfp_error *err)
{
	PyObject *type, *value, *tb;
	PyErr_Fetch(&type, &value, &tb);
	PyErr_NormalizeException(&type, &value, &tb);
	char msg[200] = "";
	PyObject *s = value ? PyObject_Str(value) : NULL;
	const char *u = s ? PyUnicode_AsUTF8(s) : NULL;
	snprintf(msg, sizeof msg, "%s", u ? u : "?");
	Py_XDECREF(s);
	PyErr_Clear();
	if (!c->exc[0]) {
		c->exc[0] = type;
		c->exc[1] = value;
		c->exc[2] = tb;
	} else {
		Py_XDECREF(type);
		Py_XDECREF(value);
		Py_XDECREF(tb);
	}
	return sfp_error_set(err, SFP_EPEER, "%s with rank %d failed: %s", what, peer, msg);
}

/* Copy a callable's answer into buf[0..cap); ENOSPC when it does not fit. */
static int take_answer(comm_obj *c, PyObject *r, int peer, void *buf, size_t cap, size_t *len,
		       sfp_error *err)
{
	Py_buffer v;
	if (PyObject_GetBuffer(r, &v, PyBUF_C_CONTIGUOUS) < 0)
		return callable_failed(c, "receiving", peer, err);
	int rc = SFP_OK;
	if ((size_t)v.len > cap)
		rc = sfp_error_set(err, SFP_ENOSPC, "a message of %zd bytes from rank %d; at most %zu expected",
				   v.len, peer, cap);
	else
		memcpy(buf, v.buf, (size_t)v.len);
	*len = (size_t)v.len;
	PyBuffer_Release(&v);
	return rc;
}

static int op_send(void *impl, int peer, int tag, const void *buf, size_t len, sfp_error *err)
{
	comm_obj *c = impl;
	PyGILState_STATE g = PyGILState_Ensure();
	int rc = SFP_OK;
	PyObject *data = PyByteArray_FromStringAndSize(buf, (Py_ssize_t)len);
	PyObject *r = data ? PyObject_CallFunction(c->send, "iiO", peer, tag, data) : NULL;
	if (!r)
		rc = callable_failed(c, "sending", peer, err);
	Py_XDECREF(r);
	Py_XDECREF(data);
	PyGILState_Release(g);
	return rc;
}

static int op_recv(void *impl, int peer, int tag, void *buf, size_t cap, size_t *len,
		   double timeout_s, sfp_error *err)
{
	comm_obj *c = impl;
	PyGILState_STATE g = PyGILState_Ensure();
	int rc;
	PyObject *r = PyObject_CallFunction(c->recv, "ii", peer, tag);
	rc = r ? take_answer(c, r, peer, buf, cap, len, err)
	       : callable_failed(c, "receiving", peer, err);
	Py_XDECREF(r);
	PyGILState_Release(g);
	return rc;
}

static int op_sendrecv(void *impl, int to, const void *sbuf, size_t slen, int from, void *rbuf,
		       size_t cap, size_t *rlen, int tag, double timeout_s, sfp_error *err)
{
	comm_obj *c = impl;
	PyGILState_STATE g = PyGILState_Ensure();
	int rc;
	PyObject *data = PyByteArray_FromStringAndSize(sbuf, (Py_ssize_t)slen);
	PyObject *r = data ? PyObject_CallFunction(c->sendrecv, "iOii", to, data, from, tag) : NULL;
	rc = r ? take_answer(c, r, from, rbuf, cap, rlen, err)
	       : callable_failed(c, "exchanging", from, err);
	Py_XDECREF(r);
	Py_XDECREF(data);
	PyGILState_Release(g);
	return rc;
}

static const sfp_transport_ops py_ops = {
	.name = "python", .send = op_send, .recv = op_recv, .sendrecv = op_sendrecv};

static int comm_init(PyObject *self, PyObject *args, PyObject *kw)
{
	static char *names[] = {"rank", "size", "send", "recv", "sendrecv", NULL};
	comm_obj *c = (comm_obj *)self;
	int rank, size;
	PyObject *send, *recv, *sendrecv;
	if (!PyArg_ParseTupleAndKeywords(args, kw, "iiOOO:Comm", names, &rank, &size, &send, &recv,
					 &sendrecv))
		return -1;
	if (!PyCallable_Check(send) || !PyCallable_Check(recv) || !PyCallable_Check(sendrecv)) {
		PyErr_SetString(PyExc_ValueError, "send, recv and sendrecv must be callable");
		return -1;
	}
	if (c->t) {
		PyErr_SetString(PyExc_ValueError, "Comm is already initialised");
		return -1;
	}
	sfp_error err;
	int rc = sfp_transport_wrap(&c->t, &py_ops, c, rank, size, &err);
	if (rc == SFP_OK && (rc = sfp_collective_create(&c->coll, c->t, &err)) < 0) {
		sfp_transport_close(c->t);
		c->t = NULL;
	}
	if (rc < 0) {
		sfp_py_raise(rc, &err);
		return -1;
	}
	sfp_transport_set_timeout(c->t, 0);
	c->group.n = size;
	c->group.me = rank;
	for (int i = 0; i < size; i++)
		c->group.ranks[i] = i;
	c->send = Py_NewRef(send);
	c->recv = Py_NewRef(recv);
	c->sendrecv = Py_NewRef(sendrecv);
	return 0;
}

static void comm_dealloc(PyObject *self)
{
	comm_obj *c = (comm_obj *)self;
	sfp_collective_free(c->coll);
	sfp_transport_close(c->t);
	Py_XDECREF(c->send);
	Py_XDECREF(c->recv);
	Py_XDECREF(c->sendrecv);
	for (int i = 0; i < 3; i++)
		Py_XDECREF(c->exc[i]);
	Py_TYPE(self)->tp_free(self);
}

static PyObject *comm_allreduce(PyObject *self, PyObject *args, PyObject *kw)
{
	static char *names[] = {"x", "residual", "e", "m", "gecko", "rounding", "seed", "algo",
				NULL};
	comm_obj *c = (comm_obj *)self;
	PyObject *xo, *ro = Py_None, *seed = Py_None;
	int e = 8, m = 23, gecko = 1;
	const char *rounding = "nearest", *algo = "ring";
	if (!PyArg_ParseTupleAndKeywords(args, kw, "O|O$iipsOs:allreduce", names, &xo, &ro, &e, &m,
					 &gecko, &rounding, &seed, &algo))
		return NULL;
	if (!c->coll) {
		PyErr_SetString(PyExc_ValueError, "Comm is not initialised");
		return NULL;
	}
	sfp_wire_cfg w = {.error_feedback = ro != Py_None};
	if (sfp_py_params(&w.params, e, m, gecko, rounding, seed) < 0)
		return NULL;
	if (!strcmp(algo, "ring")) {
		w.algo = SFP_ALLREDUCE_RING;
	} else if (!strcmp(algo, "allgather")) {
		w.algo = SFP_ALLREDUCE_ALLGATHER;
	} else {
		PyErr_Format(PyExc_ValueError, "algo must be 'ring' or 'allgather', got '%s'", algo);
		return NULL;
	}
	Py_buffer x, r = {0};
	if (PyObject_GetBuffer(xo, &x, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE | PyBUF_FORMAT) < 0)
		return NULL;
	int ok = x.itemsize == 4 && x.format && strchr(x.format, 'f');
	if (ok && ro != Py_None) {
		if (PyObject_GetBuffer(ro, &r, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE | PyBUF_FORMAT) < 0) {
			PyBuffer_Release(&x);
			return NULL;
		}
		ok = r.itemsize == 4 && r.format && strchr(r.format, 'f') && r.len == x.len;
	}
	if (!ok) {
		PyErr_SetString(PyExc_ValueError,
				"x (and residual) must be writable C-contiguous float32 arrays of one size");
		goto out;
	}
	sfp_error err;
	int rc;
	Py_BEGIN_ALLOW_THREADS
	rc = sfp_allreduce(c->coll, &c->group, x.buf, (size_t)x.len / 4, &w, r.buf, &c->stats, &err);
	Py_END_ALLOW_THREADS
	if (c->exc[0]) {
		PyErr_Restore(c->exc[0], c->exc[1], c->exc[2]);
		c->exc[0] = c->exc[1] = c->exc[2] = NULL;
	} else if (rc < 0) {
		sfp_py_raise(rc, &err);
	}
out:
	PyBuffer_Release(&x);
	if (r.obj)
		PyBuffer_Release(&r);
	if (PyErr_Occurred())
		return NULL;
	Py_RETURN_NONE;
}

static PyObject *comm_stats(PyObject *self, PyObject *unused)
{
	const sfp_wire_stats *s = &((comm_obj *)self)->stats;
	return Py_BuildValue("{s:K,s:K,s:K,s:K,s:K,s:K}", "raw_bytes",
			     (unsigned long long)s->raw_bytes, "wire_bytes",
			     (unsigned long long)s->wire_bytes, "messages",
			     (unsigned long long)s->messages, "encode_ns",
			     (unsigned long long)s->encode_ns, "decode_ns",
			     (unsigned long long)s->decode_ns, "comm_ns", (unsigned long long)s->comm_ns);
}

static PyMethodDef comm_methods[] = {
	{"allreduce", (PyCFunction)(void (*)(void))comm_allreduce, METH_VARARGS | METH_KEYWORDS,
	 "allreduce(x, residual=None, *, e=8, m=23, gecko=True, rounding='nearest', seed=None, "
	 "algo='ring'): sum x over the ranks in place, in containers; residual (same size, zeros "
	 "at first) turns error feedback on"},
	{"stats", comm_stats, METH_NOARGS, "bytes and times of every allreduce so far"},
	{NULL, NULL, 0, NULL}};

PyTypeObject sfp_py_comm_type = {
	PyVarObject_HEAD_INIT(NULL, 0).tp_name = "sfp._sfp.Comm",
	.tp_basicsize = sizeof(comm_obj),
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_doc = "Comm(rank, size, send, recv, sendrecv): libsfp's compressed all-reduce over "
		  "Python callables send(peer, tag, data), recv(peer, tag) -> bytes-like, "
		  "sendrecv(to, data, frm, tag) -> bytes-like",
	.tp_new = PyType_GenericNew,
	.tp_init = comm_init,
	.tp_dealloc = comm_dealloc,
	.tp_methods = comm_methods};

/* ---- Coord: the daemon client -------------------------------------------- */
typedef struct coord_obj {
	PyObject_HEAD
	sfp_coord *c;
} coord_obj;

static int coord_init(PyObject *self, PyObject *args, PyObject *kw)
{
	static char *names[] = {"address", "token", "timeout_s", NULL};
	coord_obj *o = (coord_obj *)self;
	const char *address, *token = "";
	double timeout_s = 1.0;
	if (!PyArg_ParseTupleAndKeywords(args, kw, "s|zd:Coord", names, &address, &token,
					 &timeout_s))
		return -1;
	if (o->c) {
		PyErr_SetString(PyExc_ValueError, "Coord is already connected");
		return -1;
	}
	sfp_error err;
	int rc = sfp_coord_connect(&o->c, address, token ? token : "", timeout_s, &err);
	if (rc < 0) {
		sfp_py_raise(rc, &err);
		return -1;
	}
	return 0;
}

static void coord_dealloc(PyObject *self)
{
	coord_obj *o = (coord_obj *)self;
	sfp_coord *c = o->c;
	o->c = NULL;
	Py_BEGIN_ALLOW_THREADS
	sfp_coord_close(c);
	Py_END_ALLOW_THREADS
	Py_TYPE(self)->tp_free(self);
}

static int coord_ready(coord_obj *o)
{
	if (!o->c)
		PyErr_SetString(PyExc_ValueError, "Coord is closed");
	return o->c != NULL;
}

static int copy_str(char *dst, size_t cap, const char *s, const char *what)
{
	if (!s || strlen(s) >= cap) {
		PyErr_Format(PyExc_ValueError, "%s longer than %zu bytes", what, cap - 1);
		return -1;
	}
	snprintf(dst, cap, "%s", s);
	return 0;
}

static PyObject *coord_register(PyObject *self, PyObject *args, PyObject *kw)
{
	static char *names[] = {"job", "rank", "world", "policy", "tensors", "report_every",
				"host", "pid", "bitwave", NULL};
	coord_obj *o = (coord_obj *)self;
	const char *job, *policy, *host = "";
	int rank, world, report_every = 10, pid = 0;
	PyObject *tensors, *bw = Py_None;
	if (!PyArg_ParseTupleAndKeywords(args, kw, "siisO|$isiO:register", names, &job, &rank,
					 &world, &policy, &tensors, &report_every, &host, &pid, &bw))
		return NULL;
	if (!coord_ready(o))
		return NULL;
	sfp_coord_hello h = {.rank = rank, .world = world, .replica = rank, .stage = 0,
			     .pid = pid, .report_every = report_every};
	if (copy_str(h.job, sizeof h.job, job, "job") < 0 ||
	    copy_str(h.policy, sizeof h.policy, policy, "policy") < 0 ||
	    copy_str(h.host, sizeof h.host, host, "host") < 0)
		return NULL;
	if (bw != Py_None &&
	    !PyArg_ParseTuple(bw, "ffiIIIIi;bitwave must be (ema, threshold, period, m_min, m_max, "
				  "e_min, e_max, backoff)",
			      &h.bitwave.ema, &h.bitwave.threshold, &h.bitwave.period,
			      &h.bitwave.m_min, &h.bitwave.m_max, &h.bitwave.e_min, &h.bitwave.e_max,
			      &h.bitwave.backoff))
		return NULL;
	PyObject *seq = PySequence_Fast(tensors, "tensors must be a sequence of (layer, kind, count)");
	if (!seq)
		return NULL;
	Py_ssize_t nt = PySequence_Fast_GET_SIZE(seq);
	if (nt > SFP_COORD_MAX_TENSORS) {
		Py_DECREF(seq);
		PyErr_Format(PyExc_ValueError, "%zd tensors; at most %d", nt, SFP_COORD_MAX_TENSORS);
		return NULL;
	}
	sfp_coord_tensor *ts = calloc((size_t)nt + 1, sizeof *ts);
	if (!ts) {
		Py_DECREF(seq);
		return PyErr_NoMemory();
	}
	for (Py_ssize_t i = 0; i < nt; i++) {
		const char *layer, *kind;
		unsigned long long count;
		if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i),
				      "ssK;each tensor is (layer, kind, count)", &layer, &kind, &count) ||
		    copy_str(ts[i].layer, sizeof ts[i].layer, layer, "layer") < 0 ||
		    copy_str(ts[i].kind, sizeof ts[i].kind, kind, "kind") < 0) {
			free(ts);
			Py_DECREF(seq);
			return NULL;
		}
		ts[i].count = count;
	}
	Py_DECREF(seq);
	h.n_tensors = (int)nt;
	h.tensors = ts;
	sfp_error err;
	int rc;
	Py_BEGIN_ALLOW_THREADS
	rc = sfp_coord_register(o->c, &h, &err);
	Py_END_ALLOW_THREADS
	free(ts);
	if (rc < 0)
		return sfp_py_raise(rc == SFP_EINVAL ? SFP_EPEER : rc, &err);
	Py_RETURN_NONE;
}

static PyObject *coord_report(PyObject *self, PyObject *args, PyObject *kw)
{
	static char *names[] = {"job", "rank", "step", "loss", "samples", "widths",
				"footprint_bits", "traffic", NULL};
	coord_obj *o = (coord_obj *)self;
	const char *job;
	int rank;
	long long step;
	double loss, footprint = 32.0;
	unsigned long long samples;
	PyObject *widths, *traffic = Py_None;
	if (!PyArg_ParseTupleAndKeywords(args, kw, "siLdKO|$dO:report", names, &job, &rank, &step,
					 &loss, &samples, &widths, &footprint, &traffic))
		return NULL;
	if (!coord_ready(o))
		return NULL;
	sfp_coord_report r = {.rank = rank, .step = step, .loss = loss, .samples = samples,
			      .footprint_bits = footprint};
	if (copy_str(r.job, sizeof r.job, job, "job") < 0)
		return NULL;
	PyObject *ws = PySequence_Fast(widths, "widths must be a sequence of (n_e, n_m, e, m)");
	PyObject *tr = traffic == Py_None ? PyTuple_New(0)
					  : PySequence_Fast(traffic, "traffic must be a sequence");
	sfp_coord_width *w = NULL, *uw = NULL;
	sfp_coord_traffic *t = NULL;
	PyObject *out = NULL;
	if (!ws || !tr)
		goto done;
	Py_ssize_t nw = PySequence_Fast_GET_SIZE(ws), ntr = PySequence_Fast_GET_SIZE(tr);
	if (nw > SFP_COORD_MAX_TENSORS || ntr > 8) {
		PyErr_SetString(PyExc_ValueError, "too many widths or traffic records");
		goto done;
	}
	w = calloc((size_t)nw + 1, sizeof *w);
	uw = calloc((size_t)nw + 1, sizeof *uw);
	t = calloc((size_t)ntr + 1, sizeof *t);
	if (!w || !uw || !t) {
		PyErr_NoMemory();
		goto done;
	}
	for (Py_ssize_t i = 0; i < nw; i++)
		if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(ws, i),
				      "ffII;each width is (n_e, n_m, e, m)", &w[i].n_e, &w[i].n_m,
				      &w[i].e, &w[i].m))
			goto done;
	for (Py_ssize_t i = 0; i < ntr; i++) {
		unsigned long long a[5] = {0};
		if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(tr, i),
				      "sKK|KKK;traffic is (kind, raw_bytes, wire_bytes[, encode_ns, "
				      "decode_ns, comm_ns])",
				      &t[i].kind, &a[0], &a[1], &a[2], &a[3], &a[4]))
			goto done;
		t[i].raw_bytes = a[0];
		t[i].wire_bytes = a[1];
		t[i].encode_ns = a[2];
		t[i].decode_ns = a[3];
		t[i].comm_ns = a[4];
	}
	r.n_widths = (int)nw;
	r.widths = w;
	r.n_traffic = (int)ntr;
	r.traffic = t;
	sfp_coord_update u = {.widths = uw, .cap = (int)nw};
	sfp_error err;
	int rc;
	Py_BEGIN_ALLOW_THREADS
	rc = sfp_coord_send_report(o->c, &r, &u, &err);
	Py_END_ALLOW_THREADS
	if (rc < 0) {
		sfp_py_raise(rc == SFP_EINVAL ? SFP_EPEER : rc, &err);
		goto done;
	}
	if (!u.valid) {
		out = Py_NewRef(Py_None);
		goto done;
	}
	PyObject *lw = PyList_New(0);
	for (int i = 0; lw && i < u.n_widths && i < u.cap; i++) {
		PyObject *it = Py_BuildValue("(ffII)", uw[i].n_e, uw[i].n_m, uw[i].e, uw[i].m);
		if (!it || PyList_Append(lw, it) < 0)
			Py_CLEAR(lw);
		Py_XDECREF(it);
	}
	if (lw)
		out = Py_BuildValue("{s:L,s:O,s:I,s:I,s:N}", "step", (long long)u.step, "set_all",
				    u.set_all ? Py_True : Py_False, "e", u.e, "m", u.m, "widths", lw);
done:
	Py_XDECREF(ws);
	Py_XDECREF(tr);
	free(w);
	free(uw);
	free(t);
	return out;
}

static PyObject *coord_heartbeat(PyObject *self, PyObject *args)
{
	coord_obj *o = (coord_obj *)self;
	const char *job;
	int rank;
	long long step;
	if (!PyArg_ParseTuple(args, "siL:heartbeat", &job, &rank, &step) || !coord_ready(o))
		return NULL;
	sfp_error err;
	int rc;
	Py_BEGIN_ALLOW_THREADS
	rc = sfp_coord_heartbeat(o->c, job, rank, step, &err);
	Py_END_ALLOW_THREADS
	if (rc < 0)
		return sfp_py_raise(rc == SFP_EINVAL ? SFP_EPEER : rc, &err);
	Py_RETURN_NONE;
}

static PyObject *coord_goodbye(PyObject *self, PyObject *args)
{
	coord_obj *o = (coord_obj *)self;
	const char *job;
	int rank, ok = 1;
	long long step;
	if (!PyArg_ParseTuple(args, "siL|p:goodbye", &job, &rank, &step, &ok) || !coord_ready(o))
		return NULL;
	sfp_error err;
	int rc;
	Py_BEGIN_ALLOW_THREADS
	rc = sfp_coord_goodbye(o->c, job, rank, step, ok, &err);
	Py_END_ALLOW_THREADS
	if (rc < 0)
		return sfp_py_raise(rc == SFP_EINVAL ? SFP_EPEER : rc, &err);
	Py_RETURN_NONE;
}

static PyObject *coord_close(PyObject *self, PyObject *unused)
{
	coord_obj *o = (coord_obj *)self;
	sfp_coord *c = o->c;
	o->c = NULL;
	Py_BEGIN_ALLOW_THREADS
	sfp_coord_close(c);
	Py_END_ALLOW_THREADS
	Py_RETURN_NONE;
}

static PyMethodDef coord_methods[] = {
	{"register", (PyCFunction)(void (*)(void))coord_register, METH_VARARGS | METH_KEYWORDS,
	 "register(job, rank, world, policy, tensors, *, report_every=10, host='', pid=0, "
	 "bitwave=None)"},
	{"report", (PyCFunction)(void (*)(void))coord_report, METH_VARARGS | METH_KEYWORDS,
	 "report(job, rank, step, loss, samples, widths, *, footprint_bits=32.0, traffic=None) -> "
	 "the daemon's update (dict) or None"},
	{"heartbeat", coord_heartbeat, METH_VARARGS, "heartbeat(job, rank, step)"},
	{"goodbye", coord_goodbye, METH_VARARGS, "goodbye(job, rank, step, ok=True)"},
	{"close", coord_close, METH_NOARGS, "close the connection (also when collected)"},
	{NULL, NULL, 0, NULL}};

PyTypeObject sfp_py_coord_type = {
	PyVarObject_HEAD_INIT(NULL, 0).tp_name = "sfp._sfp.Coord",
	.tp_basicsize = sizeof(coord_obj),
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_doc = "Coord(address, token=None, timeout_s=1.0): libsfp's client of sfpd "
		  "(docs/protocol.md); dials in the background",
	.tp_new = PyType_GenericNew,
	.tp_init = coord_init,
	.tp_dealloc = coord_dealloc,
	.tp_methods = coord_methods};
