/*
 * coord.c -- the worker <-> daemon protocol (include/sfp/coord.h): packing
 * the C structs into proto/sfp.proto messages, the worker's REQ client, and
 * the daemon's request handling and aggregation.
 *
 * Everything that arrives is untrusted: sizes are checked before unpacking,
 * every string is bounded and every count checked against what the worker
 * registered. A refused request gets an Error reply and is counted; the
 * server's state changes only for requests that passed every check.
 */
#include <math.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/sfp.pb-c.h"
#include "sfp/coord.h"

static const char *const drop_names[SFP_DROP_REASONS] = {"oversize", "malformed", "unregistered",
							 "bad_token", "version"};

const char *sfp_coord_drop_name(int reason)
{
	return reason >= 0 && reason < SFP_DROP_REASONS ? drop_names[reason] : "unknown";
}

/* copy a bounded string; 0 when it does not fit or is empty and must not be */
static int copy_name(char *dst, size_t cap, const char *src, int may_be_empty)
{
	size_t n = src ? strlen(src) : 0;
	if (n >= cap || (!n && !may_be_empty))
		return 0;
	memcpy(dst, src ? src : "", n + 1);
	return 1;
}

/* ---- C structs <-> protobuf -------------------------------------------- */
static void width_to_pb(const sfp_coord_width *w, Sfp__Width *p)
{
	sfp__width__init(p);
	p->n_e = w->n_e;
	p->n_m = w->n_m;
	p->e = w->e;
	p->m = w->m;
	p->g_e = w->g_e;
	p->g_m = w->g_m;
}

static void width_from_pb(const Sfp__Width *p, sfp_coord_width *w)
{
	w->n_e = p->n_e;
	w->n_m = p->n_m;
	w->e = p->e;
	w->m = p->m;
	w->g_e = p->g_e;
	w->g_m = p->g_m;
}

static int width_ok(const sfp_coord_width *w)
{
	return isfinite(w->n_e) && isfinite(w->n_m) && w->n_e >= 0.0f && w->n_e <= 8.0f &&
	       w->n_m >= 0.0f && w->n_m <= 23.0f && w->e >= 1 && w->e <= 8 && w->m <= 23;
}

/* ---- worker side -------------------------------------------------------- */
struct sfp_coord {
	nng_socket sock;
	double timeout_s;
	char token[128];
	char address[256];
	uint8_t *reg; /* the packed Register request, for re-registering */
	size_t reg_len;
};

int sfp_coord_connect(sfp_coord **out, const char *address, const char *token, double timeout_s,
		      sfp_error *err)
{
	*out = NULL;
	sfp_coord *c = calloc(1, sizeof *c);
	if (!c)
		return sfp_error_set(err, SFP_ENOMEM, "out of memory");
	if (!copy_name(c->token, sizeof c->token, token, 1) ||
	    !copy_name(c->address, sizeof c->address, address, 0)) {
		free(c);
		return sfp_error_set(err, SFP_EINVAL, "daemon: address or token too long or empty");
	}
	c->timeout_s = timeout_s;
	int rv = nng_req0_open(&c->sock);
	if (rv) {
		free(c);
		return sfp_error_set(err, SFP_EIO, "daemon: cannot open a socket: %s", nng_strerror(rv));
	}
	nng_duration ms = timeout_s > 0 ? (nng_duration)(timeout_s * 1000.0) : NNG_DURATION_INFINITE;
	nng_socket_set_ms(c->sock, NNG_OPT_SENDTIMEO, ms);
	nng_socket_set_ms(c->sock, NNG_OPT_RECVTIMEO, ms);
	nng_socket_set_ms(c->sock, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
	nng_socket_set_size(c->sock, NNG_OPT_RECVMAXSZ, SFP_COORD_MAX_MSG);
	nng_socket_set_ms(c->sock, NNG_OPT_RECONNMINT, 100);
	nng_socket_set_ms(c->sock, NNG_OPT_RECONNMAXT, 2000);
	if ((rv = nng_dial(c->sock, address, NULL, NNG_FLAG_NONBLOCK)) != 0) {
		nng_close(c->sock);
		free(c);
		return sfp_error_set(err, rv == NNG_EADDRINVAL || rv == NNG_ENOTSUP ? SFP_EINVAL : SFP_EIO,
				     "daemon: cannot dial '%s': %s", address, nng_strerror(rv));
	}
	*out = c;
	return SFP_OK;
}

void sfp_coord_close(sfp_coord *c)
{
	if (!c)
		return;
	nng_close(c->sock);
	free(c->reg);
	free(c);
}

/* Send one packed request, receive and unpack the reply. */
static int exchange(sfp_coord *c, const uint8_t *req, size_t len, Sfp__Reply **reply,
		    sfp_error *err)
{
	*reply = NULL;
	int rv = nng_send(c->sock, (void *)req, len, 0);
	void *buf = NULL;
	size_t n = 0;
	if (!rv)
		rv = nng_recv(c->sock, &buf, &n, NNG_FLAG_ALLOC);
	if (rv == NNG_ETIMEDOUT)
		return sfp_error_set(err, SFP_ETIMEDOUT, "daemon at %s: no answer within %.1f s",
				     c->address, c->timeout_s);
	if (rv)
		return sfp_error_set(err, SFP_EPEER, "daemon at %s: %s", c->address, nng_strerror(rv));
	*reply = sfp__reply__unpack(NULL, n, buf);
	nng_free(buf, n);
	if (!*reply)
		return sfp_error_set(err, SFP_ECORRUPT, "daemon at %s: a reply that does not parse",
				     c->address);
	if ((*reply)->version != SFP_COORD_VERSION) {
		unsigned v = (*reply)->version;
		sfp__reply__free_unpacked(*reply, NULL);
		*reply = NULL;
		return sfp_error_set(err, SFP_EVERSION,
				     "daemon at %s speaks protocol version %u; this worker speaks %u",
				     c->address, v, SFP_COORD_VERSION);
	}
	return SFP_OK;
}

/* An Error reply as an sfp error; SFP_OK for anything else. */
static int reply_error(const sfp_coord *c, const Sfp__Reply *r, sfp_error *err)
{
	if (r->body_case != SFP__REPLY__BODY_ERROR)
		return SFP_OK;
	const Sfp__Error *e = r->error;
	int code = e->code == SFP__ERROR__CODE__VERSION ? SFP_EVERSION
		   : e->code == SFP__ERROR__CODE__TOKEN ? SFP_EINVAL
		   : e->code == SFP__ERROR__CODE__UNREGISTERED ? SFP_ENOENT
							       : SFP_ECORRUPT;
	return sfp_error_set(err, code, "daemon at %s refused the request: %s", c->address,
			     e->message ? e->message : "");
}

/* Pack a Request around `fill`'s body, send it, check the reply. An
 * UNREGISTERED answer (the daemon restarted) re-sends the Register first. */
static int call(sfp_coord *c, Sfp__Request *req, Sfp__Reply **reply, sfp_error *err)
{
	req->version = SFP_COORD_VERSION;
	req->token = c->token;
	size_t len = sfp__request__get_packed_size(req);
	uint8_t *buf = malloc(len ? len : 1);
	if (!buf)
		return sfp_error_set(err, SFP_ENOMEM, "out of memory");
	sfp__request__pack(req, buf);
	int rc = exchange(c, buf, len, reply, err);
	for (int tries = 0; rc == SFP_OK && tries < 1 && c->reg &&
			    (*reply)->body_case == SFP__REPLY__BODY_ERROR &&
			    (*reply)->error->code == SFP__ERROR__CODE__UNREGISTERED;
	     tries++) {
		sfp__reply__free_unpacked(*reply, NULL);
		Sfp__Reply *r2 = NULL;
		rc = exchange(c, c->reg, c->reg_len, &r2, err);
		if (rc == SFP_OK && (rc = reply_error(c, r2, err)) == SFP_OK)
			rc = exchange(c, buf, len, reply, err);
		if (r2)
			sfp__reply__free_unpacked(r2, NULL);
	}
	free(buf);
	if (rc == SFP_OK && (rc = reply_error(c, *reply, err)) < 0) {
		sfp__reply__free_unpacked(*reply, NULL);
		*reply = NULL;
	}
	return rc;
}

int sfp_coord_register(sfp_coord *c, const sfp_coord_hello *h, sfp_error *err)
{
	if (h->n_tensors < 0 || h->n_tensors > SFP_COORD_MAX_TENSORS)
		return sfp_error_set(err, SFP_EINVAL, "daemon: %d tensors", h->n_tensors);
	Sfp__Register reg;
	Sfp__BitWave bw;
	sfp__register__init(&reg);
	sfp__bit_wave__init(&bw);
	Sfp__Tensor *ts = calloc((size_t)h->n_tensors + 1, sizeof *ts);
	Sfp__Tensor **tp = calloc((size_t)h->n_tensors + 1, sizeof *tp);
	if (!ts || !tp) {
		free(ts);
		free(tp);
		return sfp_error_set(err, SFP_ENOMEM, "out of memory");
	}
	for (int i = 0; i < h->n_tensors; i++) {
		sfp__tensor__init(&ts[i]);
		ts[i].layer = (char *)h->tensors[i].layer;
		ts[i].kind = (char *)h->tensors[i].kind;
		ts[i].count = h->tensors[i].count;
		tp[i] = &ts[i];
	}
	reg.job = (char *)h->job;
	reg.rank = (uint32_t)h->rank;
	reg.world = (uint32_t)h->world;
	reg.replica = (uint32_t)h->replica;
	reg.stage = (uint32_t)h->stage;
	reg.policy = (char *)h->policy;
	reg.n_tensors = (size_t)h->n_tensors;
	reg.tensors = tp;
	reg.host = (char *)h->host;
	reg.pid = (uint32_t)h->pid;
	bw.ema = h->bitwave.ema;
	bw.threshold = h->bitwave.threshold;
	bw.period = (uint32_t)h->bitwave.period;
	bw.m_min = h->bitwave.m_min;
	bw.m_max = h->bitwave.m_max;
	bw.e_min = h->bitwave.e_min;
	bw.e_max = h->bitwave.e_max;
	bw.backoff = (uint32_t)h->bitwave.backoff;
	reg.bitwave = &bw;
	reg.report_every = (uint32_t)h->report_every;
	Sfp__Request req;
	sfp__request__init(&req);
	req.version = SFP_COORD_VERSION;
	req.token = c->token;
	req.body_case = SFP__REQUEST__BODY_REGISTER;
	req.register_ = &reg;
	size_t len = sfp__request__get_packed_size(&req);
	uint8_t *buf = malloc(len ? len : 1);
	int rc = SFP_OK;
	if (!buf)
		rc = sfp_error_set(err, SFP_ENOMEM, "out of memory");
	else
		sfp__request__pack(&req, buf);
	free(ts);
	free(tp);
	if (rc < 0)
		return rc;
	free(c->reg);
	c->reg = buf;
	c->reg_len = len;
	Sfp__Reply *reply = NULL;
	rc = exchange(c, buf, len, &reply, err);
	if (rc == SFP_OK)
		rc = reply_error(c, reply, err);
	if (reply)
		sfp__reply__free_unpacked(reply, NULL);
	return rc;
}

int sfp_coord_send_report(sfp_coord *c, const sfp_coord_report *r, sfp_coord_update *u,
		     sfp_error *err)
{
	if (u)
		u->valid = 0;
	if (r->n_widths < 0 || r->n_widths > SFP_COORD_MAX_TENSORS || r->n_traffic < 0 ||
	    r->n_traffic > 16)
		return sfp_error_set(err, SFP_EINVAL, "daemon: report of %d widths", r->n_widths);
	Sfp__Report rep;
	sfp__report__init(&rep);
	Sfp__Width *ws = calloc((size_t)r->n_widths + 1, sizeof *ws);
	Sfp__Width **wp = calloc((size_t)r->n_widths + 1, sizeof *wp);
	Sfp__Traffic tr[16], *trp[16];
	if (!ws || !wp) {
		free(ws);
		free(wp);
		return sfp_error_set(err, SFP_ENOMEM, "out of memory");
	}
	for (int i = 0; i < r->n_widths; i++) {
		width_to_pb(&r->widths[i], &ws[i]);
		wp[i] = &ws[i];
	}
	for (int i = 0; i < r->n_traffic; i++) {
		const sfp_coord_traffic *t = &r->traffic[i];
		sfp__traffic__init(&tr[i]);
		tr[i].kind = (char *)t->kind;
		tr[i].raw_bytes = t->raw_bytes;
		tr[i].wire_bytes = t->wire_bytes;
		tr[i].encode_ns = t->encode_ns;
		tr[i].decode_ns = t->decode_ns;
		tr[i].comm_ns = t->comm_ns;
		trp[i] = &tr[i];
	}
	rep.job = (char *)r->job;
	rep.rank = (uint32_t)r->rank;
	rep.step = r->step;
	rep.loss = r->loss;
	rep.samples = r->samples;
	rep.n_widths = (size_t)r->n_widths;
	rep.widths = wp;
	rep.footprint_bits = r->footprint_bits;
	rep.n_traffic = (size_t)r->n_traffic;
	rep.traffic = trp;
	Sfp__Request req;
	sfp__request__init(&req);
	req.body_case = SFP__REQUEST__BODY_REPORT;
	req.report = &rep;
	Sfp__Reply *reply = NULL;
	int rc = call(c, &req, &reply, err);
	free(ws);
	free(wp);
	if (rc < 0)
		return rc;
	if (u && reply->body_case == SFP__REPLY__BODY_UPDATE) {
		const Sfp__Update *up = reply->update;
		u->valid = 1;
		u->step = up->step;
		u->set_all = up->set_all;
		u->e = up->e;
		u->m = up->m;
		u->n_widths = 0;
		for (size_t i = 0; i < up->n_widths && (int)i < u->cap; i++)
			width_from_pb(up->widths[i], &u->widths[u->n_widths++]);
	}
	sfp__reply__free_unpacked(reply, NULL);
	return SFP_OK;
}

/* A request whose reply carries nothing but success. */
static int call_ack(sfp_coord *c, Sfp__Request *req, sfp_error *err)
{
	Sfp__Reply *reply = NULL;
	int rc = call(c, req, &reply, err);
	if (reply)
		sfp__reply__free_unpacked(reply, NULL);
	return rc;
}

int sfp_coord_heartbeat(sfp_coord *c, const char *job, int rank, int64_t step, sfp_error *err)
{
	Sfp__Heartbeat hb;
	sfp__heartbeat__init(&hb);
	hb.job = (char *)job;
	hb.rank = (uint32_t)rank;
	hb.step = step;
	Sfp__Request req;
	sfp__request__init(&req);
	req.body_case = SFP__REQUEST__BODY_HEARTBEAT;
	req.heartbeat = &hb;
	return call_ack(c, &req, err);
}

int sfp_coord_goodbye(sfp_coord *c, const char *job, int rank, int64_t step, int ok,
		      sfp_error *err)
{
	Sfp__Goodbye gb;
	sfp__goodbye__init(&gb);
	gb.job = (char *)job;
	gb.rank = (uint32_t)rank;
	gb.step = step;
	gb.ok = ok;
	Sfp__Request req;
	sfp__request__init(&req);
	req.body_case = SFP__REQUEST__BODY_GOODBYE;
	req.goodbye = &gb;
	return call_ack(c, &req, err);
}

/* ---- daemon side -------------------------------------------------------- */
typedef struct worker {
	sfp_coord_hello h;    /* h.tensors points at tensors */
	sfp_coord_tensor *tensors;
	sfp_coord_width *widths; /* latest report */
	uint64_t samples;
	int64_t step;
	int reported, gone;
} worker;

typedef struct job {
	char name[SFP_COORD_NAME];
	sfp_bitwave bw;
	int bw_on;
	int64_t bw_step; /* last report step BitWave observed */
} job;

struct sfp_coord_server {
	char token[128];
	sfp_coord_hooks hooks;
	worker *w;
	int nw, wcap;
	job *jobs;
	int njobs, jcap;
	uint8_t *out;
	size_t out_cap;
	sfp_coord_width *tmp; /* update widths */
};

int sfp_coord_server_create(sfp_coord_server **out, const char *token,
			    const sfp_coord_hooks *hooks, sfp_error *err)
{
	*out = NULL;
	sfp_coord_server *s = calloc(1, sizeof *s);
	if (!s)
		return sfp_error_set(err, SFP_ENOMEM, "out of memory");
	if (!copy_name(s->token, sizeof s->token, token, 1)) {
		free(s);
		return sfp_error_set(err, SFP_EINVAL, "the job token is too long (at most 127 bytes)");
	}
	if (hooks)
		s->hooks = *hooks;
	if (!(s->tmp = malloc(SFP_COORD_MAX_TENSORS * sizeof *s->tmp))) {
		free(s);
		return sfp_error_set(err, SFP_ENOMEM, "out of memory");
	}
	*out = s;
	return SFP_OK;
}

static void worker_release(worker *w)
{
	free(w->tensors);
	free(w->widths);
	memset(w, 0, sizeof *w);
}

void sfp_coord_server_free(sfp_coord_server *s)
{
	if (!s)
		return;
	for (int i = 0; i < s->nw; i++)
		worker_release(&s->w[i]);
	free(s->w);
	free(s->jobs);
	free(s->out);
	free(s->tmp);
	free(s);
}

static worker *find_worker(sfp_coord_server *s, const char *jobname, int rank)
{
	for (int i = 0; i < s->nw; i++)
		if (s->w[i].h.rank == rank && !strcmp(s->w[i].h.job, jobname))
			return &s->w[i];
	return NULL;
}

static job *find_job(sfp_coord_server *s, const char *name, int create)
{
	for (int i = 0; i < s->njobs; i++)
		if (!strcmp(s->jobs[i].name, name))
			return &s->jobs[i];
	if (!create)
		return NULL;
	if (s->njobs == s->jcap) {
		int cap = s->jcap ? 2 * s->jcap : 4;
		job *j = realloc(s->jobs, (size_t)cap * sizeof *j);
		if (!j)
			return NULL;
		s->jobs = j;
		s->jcap = cap;
	}
	job *j = &s->jobs[s->njobs++];
	memset(j, 0, sizeof *j);
	snprintf(j->name, sizeof j->name, "%s", name);
	j->bw_step = -1;
	return j;
}

/* Pack the reply into the server's buffer. */
static void emit(sfp_coord_server *s, Sfp__Reply *r, const void **reply, size_t *len)
{
	r->version = SFP_COORD_VERSION;
	size_t n = sfp__reply__get_packed_size(r);
	if (n > s->out_cap) {
		uint8_t *o = realloc(s->out, n);
		if (!o) { /* cannot answer at all: an empty reply, which does not parse */
			*reply = s->out;
			*len = 0;
			return;
		}
		s->out = o;
		s->out_cap = n;
	}
	sfp__reply__pack(r, s->out);
	*reply = s->out;
	*len = n;
}

static void refuse(sfp_coord_server *s, int drop, Sfp__Error__Code code, const char *msg,
		   const void **reply, size_t *len)
{
	if (drop >= 0 && s->hooks.on_drop)
		s->hooks.on_drop(s->hooks.user, drop);
	Sfp__Error e;
	sfp__error__init(&e);
	e.code = code;
	e.message = (char *)msg;
	e.version = SFP_COORD_VERSION;
	Sfp__Reply r;
	sfp__reply__init(&r);
	r.body_case = SFP__REPLY__BODY_ERROR;
	r.error = &e;
	emit(s, &r, reply, len);
}

static void ack(sfp_coord_server *s, const void **reply, size_t *len)
{
	Sfp__Ack a;
	sfp__ack__init(&a);
	Sfp__Reply r;
	sfp__reply__init(&r);
	r.body_case = SFP__REPLY__BODY_ACK;
	r.ack = &a;
	emit(s, &r, reply, len);
}

static const char *check_register(const Sfp__Register *g)
{
	if (!g->job || !*g->job || strlen(g->job) >= SFP_COORD_NAME)
		return "job name empty or longer than 63 bytes";
	if (g->world < 1 || g->world > 1024 || g->rank >= g->world || g->replica >= g->world ||
	    g->stage >= g->world)
		return "rank, replica or stage outside the world";
	if (!g->policy || (strcmp(g->policy, "fixed") && strcmp(g->policy, "quantum") &&
			   strcmp(g->policy, "bitwave") && strcmp(g->policy, "off")))
		return "unknown policy";
	if (g->n_tensors > SFP_COORD_MAX_TENSORS)
		return "too many tensors";
	for (size_t i = 0; i < g->n_tensors; i++) {
		const Sfp__Tensor *t = g->tensors[i];
		if (!t->layer || !*t->layer || strlen(t->layer) >= SFP_COORD_NAME || !t->kind ||
		    (strcmp(t->kind, "weights") && strcmp(t->kind, "activations")))
			return "a tensor without a valid layer name or kind";
	}
	if (g->host && strlen(g->host) >= SFP_COORD_NAME)
		return "host name too long";
	if (!strcmp(g->policy, "bitwave") &&
	    (!g->bitwave || !(g->bitwave->ema > 0.0f && g->bitwave->ema < 1.0f) ||
	     !(g->bitwave->threshold >= 0.0f) || g->bitwave->period < 1 || g->bitwave->m_max > 23 ||
	     g->bitwave->m_min > g->bitwave->m_max || g->bitwave->e_max > 8 ||
	     g->bitwave->e_min < 1 || g->bitwave->e_min > g->bitwave->e_max))
		return "bitwave constants out of range";
	return NULL;
}

static void handle_register(sfp_coord_server *s, const Sfp__Register *g, uint64_t now,
			    const void **reply, size_t *len)
{
	const char *why = check_register(g);
	if (why) {
		refuse(s, SFP_DROP_MALFORMED, SFP__ERROR__CODE__MALFORMED, why, reply, len);
		return;
	}
	worker *w = find_worker(s, g->job, (int)g->rank);
	if (!w) {
		if (s->nw == s->wcap) {
			int cap = s->wcap ? 2 * s->wcap : 16;
			worker *nwk = realloc(s->w, (size_t)cap * sizeof *nwk);
			if (!nwk) {
				refuse(s, -1, SFP__ERROR__CODE__UNKNOWN, "daemon out of memory", reply, len);
				return;
			}
			s->w = nwk;
			s->wcap = cap;
		}
		w = &s->w[s->nw++];
		memset(w, 0, sizeof *w);
	} else {
		worker_release(w);
	}
	const size_t nt = g->n_tensors;
	w->tensors = calloc(nt + 1, sizeof *w->tensors);
	w->widths = calloc(nt + 1, sizeof *w->widths);
	job *j = find_job(s, g->job, 1);
	if (!w->tensors || !w->widths || !j) {
		worker_release(w);
		refuse(s, -1, SFP__ERROR__CODE__UNKNOWN, "daemon out of memory", reply, len);
		return;
	}
	sfp_coord_hello *h = &w->h;
	snprintf(h->job, sizeof h->job, "%s", g->job);
	h->rank = (int)g->rank;
	h->world = (int)g->world;
	h->replica = (int)g->replica;
	h->stage = (int)g->stage;
	snprintf(h->policy, sizeof h->policy, "%s", g->policy);
	snprintf(h->host, sizeof h->host, "%s", g->host ? g->host : "");
	h->pid = (int)g->pid;
	h->report_every = g->report_every ? (int)g->report_every : 1;
	for (size_t i = 0; i < nt; i++) {
		snprintf(w->tensors[i].layer, sizeof w->tensors[i].layer, "%s", g->tensors[i]->layer);
		snprintf(w->tensors[i].kind, sizeof w->tensors[i].kind, "%s", g->tensors[i]->kind);
		w->tensors[i].count = g->tensors[i]->count;
	}
	h->n_tensors = (int)nt;
	h->tensors = w->tensors;
	if (!strcmp(g->policy, "bitwave")) {
		const Sfp__BitWave *b = g->bitwave;
		/* the daemon sees one loss per report: its period counts reports */
		int period = (int)b->period / h->report_every;
		h->bitwave = (sfp_bitwave_cfg){b->ema, b->threshold, period < 1 ? 1 : period,
					       b->m_min, b->m_max, b->e_min, b->e_max,
					       (int)(b->backoff > 1024 ? 1024 : b->backoff)};
		if (!j->bw_on && sfp_bitwave_init(&j->bw, &h->bitwave, b->e_max, b->m_max, NULL) == SFP_OK)
			j->bw_on = 1;
	}
	if (s->hooks.on_register)
		s->hooks.on_register(s->hooks.user, h, now);
	ack(s, reply, len);
}

/* The sample-weighted mean of the latest widths of every replica of w's
 * stage, into s->tmp. */
static int stage_mean(sfp_coord_server *s, const worker *w)
{
	const int nt = w->h.n_tensors;
	double *acc = calloc((size_t)nt * 2 + 1, sizeof *acc), total = 0.0;
	if (!acc)
		return 0;
	for (int i = 0; i < s->nw; i++) {
		const worker *o = &s->w[i];
		if (!o->reported || o->gone || o->h.stage != w->h.stage || o->h.n_tensors != nt ||
		    strcmp(o->h.job, w->h.job))
			continue;
		double wt = o->samples ? (double)o->samples : 1.0;
		for (int k = 0; k < nt; k++) {
			acc[2 * k] += wt * o->widths[k].n_e;
			acc[2 * k + 1] += wt * o->widths[k].n_m;
		}
		total += wt;
	}
	for (int k = 0; k < nt && total > 0; k++) {
		s->tmp[k] = w->widths[k];
		s->tmp[k].n_e = (float)(acc[2 * k] / total);
		s->tmp[k].n_m = (float)(acc[2 * k + 1] / total);
		s->tmp[k].e = (unsigned)ceilf(s->tmp[k].n_e);
		s->tmp[k].m = (unsigned)ceilf(s->tmp[k].n_m);
	}
	free(acc);
	return total > 0;
}

static void handle_report(sfp_coord_server *s, const Sfp__Report *p, uint64_t now,
			  const void **reply, size_t *len)
{
	worker *w = p->job ? find_worker(s, p->job, (int)p->rank) : NULL;
	if (!w || w->gone) {
		refuse(s, SFP_DROP_UNREGISTERED, SFP__ERROR__CODE__UNREGISTERED,
		       "report from a worker that has not registered", reply, len);
		return;
	}
	if (p->n_widths != (size_t)w->h.n_tensors || !isfinite(p->loss) || p->n_traffic > 16) {
		refuse(s, SFP_DROP_MALFORMED, SFP__ERROR__CODE__MALFORMED,
		       "report does not match the registered tensors", reply, len);
		return;
	}
	for (size_t i = 0; i < p->n_widths; i++) {
		sfp_coord_width x;
		width_from_pb(p->widths[i], &x);
		if (!width_ok(&x)) {
			refuse(s, SFP_DROP_MALFORMED, SFP__ERROR__CODE__MALFORMED,
			       "a width outside e 1..8, m 0..23", reply, len);
			return;
		}
	}
	for (size_t i = 0; i < p->n_traffic; i++)
		if (!p->traffic[i]->kind || strlen(p->traffic[i]->kind) >= 32) {
			refuse(s, SFP_DROP_MALFORMED, SFP__ERROR__CODE__MALFORMED,
			       "traffic without a valid kind", reply, len);
			return;
		}
	for (size_t i = 0; i < p->n_widths; i++)
		width_from_pb(p->widths[i], &w->widths[i]);
	w->samples = p->samples;
	w->step = p->step;
	w->reported = 1;
	if (s->hooks.on_report) {
		sfp_coord_traffic tr[16];
		for (size_t i = 0; i < p->n_traffic; i++)
			tr[i] = (sfp_coord_traffic){p->traffic[i]->kind, p->traffic[i]->raw_bytes,
						    p->traffic[i]->wire_bytes, p->traffic[i]->encode_ns,
						    p->traffic[i]->decode_ns, p->traffic[i]->comm_ns};
		sfp_coord_report r = {.rank = w->h.rank,
				      .step = p->step,
				      .loss = p->loss,
				      .samples = p->samples,
				      .n_widths = w->h.n_tensors,
				      .widths = w->widths,
				      .footprint_bits = p->footprint_bits,
				      .n_traffic = (int)p->n_traffic,
				      .traffic = tr};
		snprintf(r.job, sizeof r.job, "%s", w->h.job);
		s->hooks.on_report(s->hooks.user, &r, &w->h, now);
	}
	Sfp__Update up;
	sfp__update__init(&up);
	up.step = p->step;
	up.policy = w->h.policy;
	Sfp__Width *ws = NULL, **wp = NULL;
	job *j = find_job(s, w->h.job, 0);
	if (!strcmp(w->h.policy, "bitwave") && j && j->bw_on) {
		/* the loss in a report is the job's (summed over the ranks), so
		 * one observation per step, from whichever rank reports first */
		if (p->step > j->bw_step) {
			sfp_bitwave_observe(&j->bw, p->loss);
			j->bw_step = p->step;
		}
		up.set_all = 1;
		up.e = j->bw.e;
		up.m = j->bw.m;
	} else if (!strcmp(w->h.policy, "quantum") && stage_mean(s, w)) {
		const int nt = w->h.n_tensors;
		ws = calloc((size_t)nt + 1, sizeof *ws);
		wp = calloc((size_t)nt + 1, sizeof *wp);
		if (ws && wp) {
			for (int k = 0; k < nt; k++) {
				width_to_pb(&s->tmp[k], &ws[k]);
				wp[k] = &ws[k];
			}
			up.n_widths = (size_t)nt;
			up.widths = wp;
		}
	} else {
		ack(s, reply, len);
		return;
	}
	Sfp__Reply r;
	sfp__reply__init(&r);
	r.body_case = SFP__REPLY__BODY_UPDATE;
	r.update = &up;
	emit(s, &r, reply, len);
	free(ws);
	free(wp);
}

void sfp_coord_server_handle(sfp_coord_server *s, const void *req, size_t len,
			     const void **reply, size_t *reply_len, uint64_t now_ns)
{
	if (len > SFP_COORD_MAX_MSG) {
		refuse(s, SFP_DROP_OVERSIZE, SFP__ERROR__CODE__TOO_LARGE, "request over 1 MiB", reply,
		       reply_len);
		return;
	}
	Sfp__Request *q = sfp__request__unpack(NULL, len, req);
	if (!q) {
		refuse(s, SFP_DROP_MALFORMED, SFP__ERROR__CODE__MALFORMED, "request does not parse",
		       reply, reply_len);
		return;
	}
	char msg[128];
	if (q->version != SFP_COORD_VERSION) {
		snprintf(msg, sizeof msg, "protocol version %u is not spoken here (this daemon: %u)",
			 q->version, SFP_COORD_VERSION);
		refuse(s, SFP_DROP_VERSION, SFP__ERROR__CODE__VERSION, msg, reply, reply_len);
	} else if (strcmp(q->token ? q->token : "", s->token)) {
		refuse(s, SFP_DROP_BAD_TOKEN, SFP__ERROR__CODE__TOKEN, "missing or wrong job token",
		       reply, reply_len);
	} else if (q->body_case == SFP__REQUEST__BODY_REGISTER) {
		handle_register(s, q->register_, now_ns, reply, reply_len);
	} else if (q->body_case == SFP__REQUEST__BODY_REPORT) {
		handle_report(s, q->report, now_ns, reply, reply_len);
	} else if (q->body_case == SFP__REQUEST__BODY_HEARTBEAT ||
		   q->body_case == SFP__REQUEST__BODY_GOODBYE) {
		const int hb = q->body_case == SFP__REQUEST__BODY_HEARTBEAT;
		const char *jn = hb ? q->heartbeat->job : q->goodbye->job;
		int rank = (int)(hb ? q->heartbeat->rank : q->goodbye->rank);
		worker *w = jn ? find_worker(s, jn, rank) : NULL;
		if (!w) {
			refuse(s, SFP_DROP_UNREGISTERED, SFP__ERROR__CODE__UNREGISTERED,
			       "message from a worker that has not registered", reply, reply_len);
		} else {
			if (hb && s->hooks.on_heartbeat)
				s->hooks.on_heartbeat(s->hooks.user, w->h.job, rank, q->heartbeat->step,
						      now_ns);
			if (!hb) {
				w->gone = 1;
				if (s->hooks.on_goodbye)
					s->hooks.on_goodbye(s->hooks.user, w->h.job, rank, q->goodbye->ok,
							    now_ns);
			}
			ack(s, reply, reply_len);
		}
	} else {
		refuse(s, SFP_DROP_MALFORMED, SFP__ERROR__CODE__MALFORMED, "request without a body",
		       reply, reply_len);
	}
	sfp__request__free_unpacked(q, NULL);
}
