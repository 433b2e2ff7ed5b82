/*
 * history.c -- the append-only history file: its records, the writer and
 * the replay that rebuilds a store after a restart.
 *
 * Layout (all integers little-endian; docs/sfpd.md has the field lists):
 *
 *   header  "SFPHIST\n" | u32 version (1) | u32 flags (0)          16 bytes
 *   record  u32 magic "SFPR" | u32 len | u32 crc | body[len]
 *
 * crc is CRC32C over the four bytes of len, then the body, so a damaged
 * length is caught as surely as a damaged body. A record is written with one
 * write() on an O_APPEND descriptor; a crash can only leave the last record
 * short. The replay walks the records; at a record that does not check out
 * it looks for the next one that does (the magic marks where to try): if
 * there is one, the stretch in between is a corrupt record, skipped and
 * counted; if there is none, the rest is a torn tail and the file is cut
 * back to the last good record, so later appends follow good data.
 *
 * The file is synced (fdatasync) by sfp_stats_tick, not after every
 * record: a killed daemon loses nothing (the page cache has it), a power
 * cut loses at most the last tick's worth.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/stats/stats_internal.h"

/* ---- encoding ------------------------------------------------------------- */
typedef struct wbuf {
	unsigned char *p;
	size_t len, cap;
	int err;
} wbuf;

static void put(wbuf *w, const void *d, size_t n)
{
	if (w->err || n > w->cap - w->len) {
		w->err = 1;
		return;
	}
	memcpy(w->p + w->len, d, n);
	w->len += n;
}

static void put_u8(wbuf *w, unsigned v)
{
	unsigned char b = (unsigned char)v;
	put(w, &b, 1);
}

static void put_u32(wbuf *w, uint32_t v)
{
	unsigned char b[4];
	sfp_store_le32(b, v);
	put(w, b, 4);
}

static void put_u64(wbuf *w, uint64_t v)
{
	put_u32(w, (uint32_t)v);
	put_u32(w, (uint32_t)(v >> 32));
}

static void put_f64(wbuf *w, double v)
{
	uint64_t u;
	memcpy(&u, &v, 8);
	put_u64(w, u);
}

static void put_f32(wbuf *w, float v)
{
	uint32_t u;
	memcpy(&u, &v, 4);
	put_u32(w, u);
}

/* Names were validated (1..SFP_STATS_NAME_MAX bytes) before they get here. */
static void put_str(wbuf *w, const char *s)
{
	size_t n = strlen(s);
	put_u8(w, (unsigned)n);
	put(w, s, n);
}

typedef struct rbuf {
	const unsigned char *p;
	size_t len, off;
	int err;
} rbuf;

static const unsigned char *take(rbuf *r, size_t n)
{
	if (r->err || n > r->len - r->off) {
		r->err = 1;
		return NULL;
	}
	const unsigned char *p = r->p + r->off;
	r->off += n;
	return p;
}

static unsigned get_u8(rbuf *r)
{
	const unsigned char *p = take(r, 1);
	return p ? p[0] : 0;
}

static uint32_t get_u32(rbuf *r)
{
	const unsigned char *p = take(r, 4);
	return p ? sfp_load_le32(p) : 0;
}

static uint64_t get_u64(rbuf *r)
{
	uint64_t lo = get_u32(r);
	return lo | (uint64_t)get_u32(r) << 32;
}

static double get_f64(rbuf *r)
{
	uint64_t u = get_u64(r);
	double v;
	memcpy(&v, &u, 8);
	return v;
}

static float get_f32(rbuf *r)
{
	uint32_t u = get_u32(r);
	float v;
	memcpy(&v, &u, 4);
	return v;
}

/* A name into dst[SFP_STATS_NAME_MAX + 1]; its validity is the applier's
 * business, only its length is checked here. */
static void get_str(rbuf *r, char *dst)
{
	unsigned n = get_u8(r);
	const unsigned char *p = n <= SFP_STATS_NAME_MAX ? take(r, n) : NULL;
	if (!p) {
		r->err = 1;
		dst[0] = '\0';
		return;
	}
	memcpy(dst, p, n);
	dst[n] = '\0';
}

/* ---- writing ---------------------------------------------------------------- */
static int begin(sfp_stats *s, wbuf *w, unsigned type, size_t need)
{
	need += HIST_REC_HEADER + 1;
	if (need > HIST_REC_HEADER + (size_t)HIST_REC_MAX)
		return SFP_ERANGE;
	if (s->rbuf_cap < need) {
		unsigned char *p = realloc(s->rbuf, need);
		if (!p)
			return SFP_ENOMEM;
		s->bytes += need - s->rbuf_cap;
		s->rbuf = p;
		s->rbuf_cap = need;
	}
	w->p = s->rbuf;
	w->cap = need;
	w->len = HIST_REC_HEADER;
	w->err = 0;
	put_u8(w, type);
	return SFP_OK;
}

/* Frame and write the record in s->rbuf; a short write is undone so the
 * file never keeps half a record in the middle. */
static int finish(sfp_stats *s, wbuf *w)
{
	if (w->err)
		return SFP_ERANGE;
	uint32_t len = (uint32_t)(w->len - HIST_REC_HEADER);
	unsigned char lb[4];
	wbuf h = {s->rbuf, 0, HIST_REC_HEADER, 0};
	put_u32(&h, HIST_REC_MAGIC);
	put_u32(&h, len);
	memcpy(lb, s->rbuf + 4, 4);
	put_u32(&h, sfp_crc32c(sfp_crc32c(0, lb, 4), s->rbuf + HIST_REC_HEADER, len));
	size_t done = 0;
	while (done < w->len) {
		ssize_t n = write(s->fd, s->rbuf + done, w->len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int e = errno;
			if (done && ftruncate(s->fd, (off_t)s->file_bytes) < 0)
				e = errno;
			return e == ENOSPC ? SFP_ENOSPC : SFP_EIO;
		}
		done += (size_t)n;
	}
	s->file_bytes += w->len;
	s->dirty = 1;
	return SFP_OK;
}

/* A failed append costs the history, not the message: it is logged,
 * counted, and the store goes on. */
static int appended(sfp_stats *s, int rc)
{
	if (rc < 0) {
		if (!s->write_errors++)
			sfp_logf(s->o.log, SFP_LOG_ERROR, "cannot append to history '%s': %s",
			         s->path, sfp_strerror(rc));
	}
	return rc;
}

int history_append_register(sfp_stats *s, const char *job, uint32_t rank, uint32_t replica,
                            uint32_t stage, uint32_t n_layers, const char *const *names)
{
	wbuf w;
	if (s->fd < 0)
		return SFP_OK;
	int rc = begin(s, &w, REC_REGISTER, 80 + (size_t)n_layers * (SFP_STATS_NAME_MAX + 1));
	if (rc == SFP_OK) {
		put_str(&w, job);
		put_u32(&w, rank);
		put_u32(&w, replica);
		put_u32(&w, stage);
		put_u32(&w, n_layers);
		for (uint32_t i = 0; i < n_layers; i++)
			put_str(&w, names[i]);
		rc = finish(s, &w);
	}
	return appended(s, rc);
}

#define WIDTH_RECORD_BYTES (1 + SFP_STATS_NAME_MAX + 3 + 4 + 4 + 8)

int history_append_report(sfp_stats *s, const sfp_worker_report *r)
{
	wbuf w;
	if (s->fd < 0)
		return SFP_OK;
	int rc = begin(s, &w, REC_REPORT, 160 + (size_t)r->n_widths * WIDTH_RECORD_BYTES);
	if (rc == SFP_OK) {
		put_str(&w, r->job);
		put_u32(&w, r->rank);
		put_u64(&w, (uint64_t)r->step);
		put_f64(&w, r->loss);
		put_f64(&w, r->footprint_bits_per_value);
		put_u64(&w, r->samples);
		put_u64(&w, r->raw_bytes);
		put_u64(&w, r->wire_bytes);
		put_u64(&w, r->encode_ns);
		put_u64(&w, r->decode_ns);
		put_u64(&w, r->comm_ns);
		put_u32(&w, r->n_widths);
		for (uint32_t i = 0; i < r->n_widths; i++) {
			const sfp_stats_width *x = &r->widths[i];
			put_str(&w, x->layer);
			put_u8(&w, (unsigned)x->kind);
			put_u8(&w, x->e);
			put_u8(&w, x->m);
			put_f32(&w, x->n_e);
			put_f32(&w, x->n_m);
			put_u64(&w, x->count);
		}
		rc = finish(s, &w);
	}
	return appended(s, rc);
}

int history_append_goodbye(sfp_stats *s, const char *job, uint32_t rank)
{
	wbuf w;
	if (s->fd < 0)
		return SFP_OK;
	int rc = begin(s, &w, REC_GOODBYE, 80);
	if (rc == SFP_OK) {
		put_str(&w, job);
		put_u32(&w, rank);
		rc = finish(s, &w);
	}
	return appended(s, rc);
}

void history_sync(sfp_stats *s)
{
	if (s->fd >= 0 && s->dirty) {
		(void)fdatasync(s->fd);
		s->dirty = 0;
	}
}

/* ---- reading ----------------------------------------------------------- */
/* Apply one record body; SFP_ECORRUPT when it does not decode. */
static int apply_register(sfp_stats *s, rbuf *r)
{
	char job[SFP_STATS_NAME_MAX + 1];
	get_str(r, job);
	uint32_t rank = get_u32(r), replica = get_u32(r), stage = get_u32(r), n = get_u32(r);
	if (r->err || n > 2 * s->o.max_layers || n > (r->len - r->off) / 2)
		return SFP_ECORRUPT;
	char *names = malloc((size_t)(n ? n : 1) * (SFP_STATS_NAME_MAX + 1));
	const char **ptrs = malloc((size_t)(n ? n : 1) * sizeof *ptrs);
	int rc = SFP_ENOMEM;
	if (names && ptrs) {
		for (uint32_t i = 0; i < n; i++) {
			ptrs[i] = names + (size_t)i * (SFP_STATS_NAME_MAX + 1);
			get_str(r, names + (size_t)i * (SFP_STATS_NAME_MAX + 1));
		}
		rc = r->err || r->off != r->len
		         ? SFP_ECORRUPT
		         : stats_apply_register(s, job, rank, replica, stage, n, ptrs, 0, NULL);
	}
	free(ptrs);
	free(names);
	return rc;
}

static int apply_report(sfp_stats *s, rbuf *r)
{
	char job[SFP_STATS_NAME_MAX + 1];
	sfp_worker_report rep = {.job = job};
	get_str(r, job);
	rep.rank = get_u32(r);
	rep.step = (int64_t)get_u64(r);
	rep.loss = get_f64(r);
	rep.footprint_bits_per_value = get_f64(r);
	rep.samples = get_u64(r);
	rep.raw_bytes = get_u64(r);
	rep.wire_bytes = get_u64(r);
	rep.encode_ns = get_u64(r);
	rep.decode_ns = get_u64(r);
	rep.comm_ns = get_u64(r);
	rep.n_widths = get_u32(r);
	/* a width takes at least 20 bytes: no allocation beyond what is there */
	if (r->err || rep.n_widths > 2 * s->o.max_layers || rep.n_widths > (r->len - r->off) / 20)
		return SFP_ECORRUPT;
	uint32_t n = rep.n_widths ? rep.n_widths : 1;
	char *names = malloc((size_t)n * (SFP_STATS_NAME_MAX + 1));
	sfp_stats_width *w = calloc(n, sizeof *w);
	int rc = SFP_ENOMEM;
	if (names && w) {
		for (uint32_t i = 0; i < rep.n_widths; i++) {
			char *nm = names + (size_t)i * (SFP_STATS_NAME_MAX + 1);
			get_str(r, nm);
			w[i].layer = nm;
			w[i].kind = (sfp_stats_kind)get_u8(r);
			w[i].e = get_u8(r);
			w[i].m = get_u8(r);
			w[i].n_e = get_f32(r);
			w[i].n_m = get_f32(r);
			w[i].count = get_u64(r);
		}
		rep.widths = w;
		rc = r->err || r->off != r->len ? SFP_ECORRUPT
		                                : stats_apply_report(s, &rep, 0, NULL);
	}
	free(w);
	free(names);
	return rc;
}

static int apply_goodbye(sfp_stats *s, rbuf *r)
{
	char job[SFP_STATS_NAME_MAX + 1];
	get_str(r, job);
	uint32_t rank = get_u32(r);
	if (r->err || r->off != r->len)
		return SFP_ECORRUPT;
	return stats_apply_goodbye(s, job, rank, 0);
}

static int apply_body(sfp_stats *s, const unsigned char *body, size_t len)
{
	rbuf r = {body, len, 0, 0};
	switch (get_u8(&r)) {
	case REC_REGISTER: return apply_register(s, &r);
	case REC_REPORT: return apply_report(s, &r);
	case REC_GOODBYE: return apply_goodbye(s, &r);
	default: return SFP_EUNSUPPORTED;
	}
}

/* Length of the intact record at b[0..n), or 0 when there is none there. */
static size_t record_at(const unsigned char *b, size_t n)
{
	if (n < HIST_REC_HEADER || sfp_load_le32(b) != HIST_REC_MAGIC)
		return 0;
	uint32_t len = sfp_load_le32(b + 4);
	if (len == 0 || len > HIST_REC_MAX || len > n - HIST_REC_HEADER)
		return 0;
	if (sfp_crc32c(sfp_crc32c(0, b + 4, 4), b + HIST_REC_HEADER, len) != sfp_load_le32(b + 8))
		return 0;
	return HIST_REC_HEADER + (size_t)len;
}

/* The next offset after `from` where an intact record starts, or n. */
static size_t resync(const unsigned char *b, size_t n, size_t from)
{
	for (size_t o = from + 1; o + HIST_REC_HEADER <= n; o++)
		if (b[o] == 'S' && record_at(b + o, n - o))
			return o;
	return n;
}

static int header_ok(const unsigned char *b, size_t n, sfp_error *err)
{
	static const unsigned char want[HIST_HEADER_BYTES] = {
	    'S', 'F', 'P', 'H', 'I', 'S', 'T', '\n', 1, 0, 0, 0, 0, 0, 0, 0};
	if (n < HIST_HEADER_BYTES)
		return memcmp(b, want, n)
		           ? sfp_error_set(err, SFP_ECORRUPT, "not an sfpd history file (no magic)")
		           : SFP_ETRUNC;
	if (memcmp(b, HIST_MAGIC, 8))
		return sfp_error_set(err, SFP_ECORRUPT, "not an sfpd history file (no magic)");
	uint32_t v = sfp_load_le32(b + 8);
	if (v != HIST_VERSION)
		return sfp_error_set(err, SFP_EVERSION,
		                     "history version %u, this sfpd reads version %u", v,
		                     HIST_VERSION);
	if (sfp_load_le32(b + 12))
		return sfp_error_set(err, SFP_EVERSION, "history flags %#x not understood",
		                     sfp_load_le32(b + 12));
	return SFP_OK;
}

int sfp_stats_replay(sfp_stats *s, const void *buf, size_t len, size_t *valid,
                     sfp_stats_recovery *rec, sfp_error *err)
{
	const unsigned char *b = buf;
	uint64_t drops[SFP_STATS_DROPS];
	memset(rec, 0, sizeof *rec);
	*valid = 0;
	if (len == 0)
		return SFP_OK;
	int rc = header_ok(b, len, err);
	if (rc == SFP_ETRUNC) { /* a crash while the file was being created */
		rec->truncated_bytes = len;
		return SFP_OK;
	}
	SFP_TRY(rc);
	/* the replay's refusals are not dropped messages */
	memcpy(drops, s->drops, sizeof drops);
	s->replaying = 1;
	size_t off = HIST_HEADER_BYTES;
	while (off < len) {
		size_t n = record_at(b + off, len - off);
		if (!n) {
			size_t next = resync(b, len, off);
			if (next == len) {
				rec->truncated_bytes = len - off;
				break;
			}
			rec->corrupt_records++;
			rec->skipped_bytes += next - off;
			off = next;
			continue;
		}
		rc = apply_body(s, b + off + HIST_REC_HEADER, n - HIST_REC_HEADER);
		if (rc == SFP_ENOMEM) {
			s->replaying = 0;
			return sfp_error_set(err, rc, "out of memory replaying the history");
		}
		if (rc < 0)
			rec->rejected_records++;
		else
			rec->records++;
		off += n;
	}
	s->replaying = 0;
	memcpy(s->drops, drops, sizeof drops);
	*valid = len - rec->truncated_bytes;
	/* nobody has been heard from since the file was written */
	for (uint32_t i = 0; i < s->n_jobs; i++)
		for (uint32_t r = 0; r < s->jobs[i].n_workers; r++) {
			stats_worker *w = s->jobs[i].workers[r];
			if (w->state != SFP_WORKER_LEFT)
				w->state = SFP_WORKER_STALE;
		}
	return SFP_OK;
}

/* ---- open and close ------------------------------------------------------ */
static int write_header(sfp_stats *s, sfp_error *err)
{
	unsigned char h[HIST_HEADER_BYTES];
	wbuf w = {h, 0, sizeof h, 0};
	put(&w, HIST_MAGIC, 8);
	put_u32(&w, HIST_VERSION);
	put_u32(&w, 0);
	if (write(s->fd, h, sizeof h) != (ssize_t)sizeof h)
		return sfp_error_set(err, SFP_EIO, "cannot write history '%s': %s", s->path,
		                     strerror(errno));
	s->file_bytes = sizeof h;
	s->dirty = 1;
	return SFP_OK;
}

static int replay_file(sfp_stats *s, size_t size, sfp_error *err)
{
	size_t valid = 0;
	void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, s->fd, 0);
	if (map == MAP_FAILED)
		return sfp_error_set(err, SFP_EIO, "cannot read history '%s': %s", s->path,
		                     strerror(errno));
	int rc = sfp_stats_replay(s, map, size, &valid, &s->rec, err);
	munmap(map, size);
	if (rc < 0) {
		char msg[sizeof err->msg];
		snprintf(msg, sizeof msg, "%s", err ? err->msg : "");
		return sfp_error_set(err, rc, "history '%s': %s", s->path, msg);
	}
	if (valid < size && ftruncate(s->fd, (off_t)valid) < 0)
		return sfp_error_set(err, SFP_EIO, "cannot truncate history '%s': %s", s->path,
		                     strerror(errno));
	s->file_bytes = valid;
	if (s->rec.truncated_bytes)
		sfp_logf(s->o.log, SFP_LOG_WARN,
		         "history '%s': cut %llu bytes of torn or damaged tail", s->path,
		         (unsigned long long)s->rec.truncated_bytes);
	if (s->rec.corrupt_records)
		sfp_logf(s->o.log, SFP_LOG_WARN,
		         "history '%s': skipped %llu corrupt records (%llu bytes)", s->path,
		         (unsigned long long)s->rec.corrupt_records,
		         (unsigned long long)s->rec.skipped_bytes);
	return valid ? SFP_OK : write_header(s, err);
}

int history_open(sfp_stats *s, const char *path, sfp_error *err)
{
	struct stat st;
	if (!(s->path = strdup(path)))
		return sfp_error_set(err, SFP_ENOMEM, "out of memory");
	s->fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (s->fd < 0)
		return sfp_error_set(err, errno == ENOENT ? SFP_ENOENT : SFP_EIO,
		                     "cannot open history '%s': %s", path, strerror(errno));
	/* two daemons appending to one file would interleave their records */
	if (flock(s->fd, LOCK_EX | LOCK_NB) < 0)
		return sfp_error_set(err, SFP_EIO, "history '%s' is in use by another sfpd (%s)",
		                     path, strerror(errno));
	if (fstat(s->fd, &st) < 0 || !S_ISREG(st.st_mode))
		return sfp_error_set(err, SFP_EIO, "history '%s' is not a regular file", path);
	if (st.st_size == 0)
		SFP_TRY(write_header(s, err));
	else
		SFP_TRY(replay_file(s, (size_t)st.st_size, err));
	s->rec.file_bytes = s->file_bytes;
	history_sync(s);
	return SFP_OK;
}

void history_close(sfp_stats *s)
{
	if (s->fd < 0)
		return;
	history_sync(s);
	close(s->fd);
	s->fd = -1;
}
