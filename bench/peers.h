/*
 * peers.h -- the codecs `sfp bench codec` compares, behind one interface.
 * Each row encodes n float32 values into out[0..cap) and decodes them back;
 * the harness (codec_bench.c) times, sizes and checks them.
 */
#ifndef SFP_BENCH_PEERS_H
#define SFP_BENCH_PEERS_H

#include <stddef.h>
#include <stdint.h>

#include "sfp/codec.h"

/* What a row may need besides the data. */
typedef struct bench_peer_ctx {
	unsigned e, m;         /* sfp container; fpzip precision is 9 + m */
	int gecko;             /* set by the sfp rows themselves */
	double zfp_rate;       /* zfp fixed rate, bits per value */
	sfp_codec *codec;      /* borrowed */
	const uint64_t *shape; /* borrowed; ndim entries */
	unsigned ndim;
} bench_peer_ctx;

typedef struct bench_peer {
	const char *name;
	int lossy; /* 0: decode must give back the input bit for bit */
	/* Compressed bytes written to out[0..cap), 0 on failure. */
	size_t (*enc)(bench_peer_ctx *c, const float *x, size_t n, uint8_t *out, size_t cap);
	/* 0 when in[0..len) decoded into exactly n floats at y, else nonzero. */
	int (*dec)(bench_peer_ctx *c, const uint8_t *in, size_t len, float *y, size_t n);
} bench_peer;

/* The rows, in print order: memcpy, sfp, sfp+gecko, zstd-1, lz4, blosc x 4,
 * fpzip, zfp-rate, fp16, bf16. */
#define BENCH_NPEERS 13
extern const bench_peer bench_peers[BENCH_NPEERS];

/* Output capacity that suffices for every row on n values. */
size_t bench_peers_bound(size_t n, unsigned ndim);
/* -1 if this CPU cannot run every row (fp16 needs AVX2 + F16C); else sets
 * up blosc. Pair with bench_peers_release. */
int bench_peers_init(void);
void bench_peers_release(void);
/* "zstd 1.5.4, lz4 1.9.4, ..." into buf[0..cap). */
void bench_peers_versions(char *buf, size_t cap);

#endif
