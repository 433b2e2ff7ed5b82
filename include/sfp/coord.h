/*
 * sfp/coord.h -- the worker <-> daemon protocol (proto/sfp.proto, version
 * 1, docs/protocol.md): the worker's client, and the daemon's protocol
 * logic (validation, the job table, Quantum width aggregation, BitWave on
 * the global loss) without sockets, so sfpd wires it to its event loop and
 * tests drive it directly.
 *
 * Transport: nng REQ/REP. Every worker request gets one reply, and the
 * reply to a Report is the Update the worker applies, so a worker learns
 * new widths exactly when it reports and no second socket (PUB/SUB) is
 * needed; see docs/protocol.md for why.
 */
#ifndef SFP_COORD_H
#define SFP_COORD_H

#include <stddef.h>
#include <stdint.h>

#include "sfp/common.h"
#include "sfp/quant.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SFP_COORD_VERSION 1u
#define SFP_COORD_MAX_MSG (1u << 20) /* bytes of one request or reply */
#define SFP_COORD_MAX_TENSORS 4096
#define SFP_COORD_NAME 64

typedef struct sfp_coord_tensor {
	char layer[SFP_COORD_NAME];
	char kind[16]; /* weights | activations */
	uint64_t count;
} sfp_coord_tensor;

/* Register: who a worker is and which containers its stage has. */
typedef struct sfp_coord_hello {
	char job[SFP_COORD_NAME];
	int rank, world, replica, stage;
	char policy[16]; /* fixed | quantum | bitwave */
	int n_tensors;
	const sfp_coord_tensor *tensors;
	char host[SFP_COORD_NAME];
	int pid;
	sfp_bitwave_cfg bitwave; /* policy bitwave */
	int report_every;
} sfp_coord_hello;

typedef struct sfp_coord_width {
	float n_e, n_m; /* learned real widths */
	unsigned e, m;  /* packing widths */
	float g_e, g_m; /* last gradients */
} sfp_coord_width;

typedef struct sfp_coord_traffic {
	const char *kind; /* gradients | activations | activation_gradients */
	uint64_t raw_bytes, wire_bytes, encode_ns, decode_ns, comm_ns;
} sfp_coord_traffic;

typedef struct sfp_coord_report {
	char job[SFP_COORD_NAME];
	int rank;
	int64_t step;
	double loss;
	uint64_t samples;
	int n_widths; /* = the Register's n_tensors, same order */
	const sfp_coord_width *widths;
	double footprint_bits;
	int n_traffic;
	const sfp_coord_traffic *traffic;
} sfp_coord_report;

/* The widths a worker uses from its next step: per tensor (quantum), or
 * one pair for all (BitWave). valid = 0: keep what you have. */
typedef struct sfp_coord_update {
	int valid;
	int64_t step;
	int set_all;
	unsigned e, m;
	int n_widths; /* filled up to the caller's cap */
	sfp_coord_width *widths;
	int cap;
} sfp_coord_update;

/* ---- worker side --------------------------------------------------------- */
typedef struct sfp_coord sfp_coord;

/* Dial the daemon at `address` (tcp://HOST:PORT, ipc://, inproc://) in the
 * background: a daemon that is not up yet is not an error; nng keeps
 * redialling. Each call below waits at most timeout_s for its reply. */
int sfp_coord_connect(sfp_coord **out, const char *address, const char *token, double timeout_s,
		      sfp_error *err);
void sfp_coord_close(sfp_coord *c);
/* Register (kept: re-sent by itself when a restarted daemon does not know
 * the worker). */
int sfp_coord_register(sfp_coord *c, const sfp_coord_hello *h, sfp_error *err);
/* Report and receive the update (u may be NULL). */
int sfp_coord_send_report(sfp_coord *c, const sfp_coord_report *r, sfp_coord_update *u,
		     sfp_error *err);
int sfp_coord_heartbeat(sfp_coord *c, const char *job, int rank, int64_t step, sfp_error *err);
int sfp_coord_goodbye(sfp_coord *c, const char *job, int rank, int64_t step, int ok,
		      sfp_error *err);

/* ---- daemon side --------------------------------------------------------- */
/* Why a request was refused (counted by the daemon, shown in /metrics). */
enum sfp_coord_drop {
	SFP_DROP_OVERSIZE = 0,
	SFP_DROP_MALFORMED = 1,
	SFP_DROP_UNREGISTERED = 2,
	SFP_DROP_BAD_TOKEN = 3,
	SFP_DROP_VERSION = 4,
	SFP_DROP_REASONS = 5
};
const char *sfp_coord_drop_name(int reason);

/* What the daemon does with what it accepted (e.g. the stats store). */
typedef struct sfp_coord_hooks {
	void *user;
	void (*on_register)(void *user, const sfp_coord_hello *h, uint64_t now_ns);
	void (*on_report)(void *user, const sfp_coord_report *r, const sfp_coord_hello *h,
			  uint64_t now_ns);
	void (*on_heartbeat)(void *user, const char *job, int rank, int64_t step, uint64_t now_ns);
	void (*on_goodbye)(void *user, const char *job, int rank, int ok, uint64_t now_ns);
	void (*on_drop)(void *user, int reason);
} sfp_coord_hooks;

typedef struct sfp_coord_server sfp_coord_server;

/* `token`: the job token every request must carry ("" or NULL: none). */
int sfp_coord_server_create(sfp_coord_server **out, const char *token,
			    const sfp_coord_hooks *hooks, sfp_error *err);
void sfp_coord_server_free(sfp_coord_server *s);
/* Handle one request of `len` bytes; the reply (always one, perhaps an
 * Error) is written to a buffer owned by the server, valid until the next
 * call. Never fails on bad input: that is what Error replies are for. */
void sfp_coord_server_handle(sfp_coord_server *s, const void *req, size_t len,
			     const void **reply, size_t *reply_len, uint64_t now_ns);

#ifdef __cplusplus
}
#endif
#endif
