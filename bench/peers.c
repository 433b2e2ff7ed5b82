/*
 * peers.c -- the codecs `sfp bench codec` runs side by side, each wrapped
 * behind bench_peer's encode/decode pair (bench/peers.h): memcpy, sfp (raw
 * and Gecko), zstd, lz4, blosc (shuffle / bitshuffle over lz4 / zstd), fpzip,
 * zfp fixed-rate, fp16 and bf16 casts. Settings are the ones docs/bench.md
 * names; nothing here times or checks anything (codec_bench.c does).
 */
#include <assert.h>
#include <blosc.h>
#include <fpzip.h>
#include <immintrin.h>
#include <lz4.h>
#include <stdio.h>
#include <string.h>
#include <zfp.h>
#include <zstd.h>

#include "bench/peers.h"

static size_t memcpy_enc(bench_peer_ctx *c, const float *x, size_t n, uint8_t *out, size_t cap)
{
	(void)c;
	if (cap < 4 * n)
		return 0;
	memcpy(out, x, 4 * n);
	return 4 * n;
}
static int memcpy_dec(bench_peer_ctx *c, const uint8_t *in, size_t len, float *y, size_t n)
{
	(void)c;
	memcpy(y, in, len < 4 * n ? len : 4 * n);
	return 0;
}

static size_t sfp_enc(bench_peer_ctx *c, const float *x, size_t n, uint8_t *out, size_t cap)
{
	sfp_params p;
	size_t w;
	sfp_params_init(&p, c->e, c->m);
	p.gecko = c->gecko;
	return sfp_encode(c->codec, out, cap, &w, x, n, c->shape, c->ndim, &p, NULL) == SFP_OK ? w : 0;
}
static size_t sfp_pack_enc(bench_peer_ctx *c, const float *x, size_t n, uint8_t *out, size_t cap)
{
	c->gecko = 0;
	return sfp_enc(c, x, n, out, cap);
}
static size_t sfp_gecko_enc(bench_peer_ctx *c, const float *x, size_t n, uint8_t *out, size_t cap)
{
	c->gecko = 1;
	return sfp_enc(c, x, n, out, cap);
}
static int sfp_dec(bench_peer_ctx *c, const uint8_t *in, size_t len, float *y, size_t n)
{
	return sfp_decode(c->codec, y, n, in, len, NULL, NULL);
}

static size_t zstd_enc(bench_peer_ctx *c, const float *x, size_t n, uint8_t *out, size_t cap)
{
	(void)c;
	size_t r = ZSTD_compress(out, cap, x, 4 * n, 1);
	return ZSTD_isError(r) ? 0 : r;
}
static int zstd_dec(bench_peer_ctx *c, const uint8_t *in, size_t len, float *y, size_t n)
{
	(void)c;
	size_t r = ZSTD_decompress(y, 4 * n, in, len);
	return ZSTD_isError(r) || r != 4 * n;
}

static size_t lz4_enc(bench_peer_ctx *c, const float *x, size_t n, uint8_t *out, size_t cap)
{
	(void)c;
	int r = LZ4_compress_default((const char *)x, (char *)out, (int)(4 * n), (int)cap);
	return r > 0 ? (size_t)r : 0;
}
static int lz4_dec(bench_peer_ctx *c, const uint8_t *in, size_t len, float *y, size_t n)
{
	(void)c;
	return LZ4_decompress_safe((const char *)in, (char *)y, (int)len, (int)(4 * n)) != (int)(4 * n);
}

static size_t blosc_enc(int shuffle, const char *comp, const float *x, size_t n, uint8_t *out,
			size_t cap)
{
	int r = blosc_compress_ctx(5, shuffle, 4, 4 * n, x, out, cap, comp, 0, 1);
	return r > 0 ? (size_t)r : 0;
}
static int blosc_dec(bench_peer_ctx *c, const uint8_t *in, size_t len, float *y, size_t n)
{
	(void)c;
	(void)len;
	return blosc_decompress_ctx(in, y, 4 * n, 1) != (int)(4 * n);
}
static size_t bs_lz4(bench_peer_ctx *c, const float *x, size_t n, uint8_t *o, size_t cap)
{
	(void)c;
	return blosc_enc(BLOSC_SHUFFLE, "lz4", x, n, o, cap);
}
static size_t bs_zstd(bench_peer_ctx *c, const float *x, size_t n, uint8_t *o, size_t cap)
{
	(void)c;
	return blosc_enc(BLOSC_SHUFFLE, "zstd", x, n, o, cap);
}
static size_t bb_lz4(bench_peer_ctx *c, const float *x, size_t n, uint8_t *o, size_t cap)
{
	(void)c;
	return blosc_enc(BLOSC_BITSHUFFLE, "lz4", x, n, o, cap);
}
static size_t bb_zstd(bench_peer_ctx *c, const float *x, size_t n, uint8_t *o, size_t cap)
{
	(void)c;
	return blosc_enc(BLOSC_BITSHUFFLE, "zstd", x, n, o, cap);
}

static size_t zfp_enc(bench_peer_ctx *c, const float *x, size_t n, uint8_t *out, size_t cap)
{
	zfp_field *f = zfp_field_1d((void *)x, zfp_type_float, n);
	zfp_stream *z = zfp_stream_open(NULL);
	zfp_stream_set_rate(z, c->zfp_rate, zfp_type_float, 1, zfp_false);
	if (zfp_stream_maximum_size(z, f) > cap) {
		zfp_field_free(f);
		zfp_stream_close(z);
		return 0;
	}
	bitstream *b = stream_open(out, cap);
	zfp_stream_set_bit_stream(z, b);
	zfp_stream_rewind(z);
	size_t r = zfp_compress(z, f);
	stream_close(b);
	zfp_field_free(f);
	zfp_stream_close(z);
	return r;
}
static int zfp_dec(bench_peer_ctx *c, const uint8_t *in, size_t len, float *y, size_t n)
{
	zfp_field *f = zfp_field_1d(y, zfp_type_float, n);
	zfp_stream *z = zfp_stream_open(NULL);
	zfp_stream_set_rate(z, c->zfp_rate, zfp_type_float, 1, zfp_false);
	bitstream *b = stream_open((void *)in, len);
	zfp_stream_set_bit_stream(z, b);
	zfp_stream_rewind(z);
	size_t r = zfp_decompress(z, f);
	stream_close(b);
	zfp_field_free(f);
	zfp_stream_close(z);
	return r == 0;
}

static size_t fpzip_enc(bench_peer_ctx *c, const float *x, size_t n, uint8_t *out, size_t cap)
{
	FPZ *f = fpzip_write_to_buffer(out, cap);
	f->type = FPZIP_TYPE_FLOAT;
	f->prec = c->m == 23 ? 0 : (int)(9 + c->m);
	f->nx = (int)n;
	f->ny = f->nz = f->nf = 1;
	size_t r = fpzip_write_header(f) ? fpzip_write(f, x) : 0;
	fpzip_write_close(f);
	return r;
}
static int fpzip_dec(bench_peer_ctx *c, const uint8_t *in, size_t len, float *y, size_t n)
{
	(void)c;
	(void)len;
	FPZ *f = fpzip_read_from_buffer(in);
	int ok = fpzip_read_header(f) && (size_t)f->nx * f->ny * f->nz * f->nf == n &&
		 fpzip_read(f, y) != 0;
	fpzip_read_close(f);
	return !ok;
}

__attribute__((target("avx2,f16c"))) static size_t fp16_enc(bench_peer_ctx *c, const float *x, size_t n, uint8_t *out, size_t cap)
{
	(void)c;
	if (cap < 2 * n)
		return 0;
	size_t i = 0;
	for (; i + 8 <= n; i += 8)
		_mm_storeu_si128((__m128i *)(out + 2 * i),
				 _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
	for (; i < n; i++) {
		uint16_t h = _cvtss_sh(x[i], _MM_FROUND_TO_NEAREST_INT);
		memcpy(out + 2 * i, &h, 2);
	}
	return 2 * n;
}
__attribute__((target("avx2,f16c"))) static int fp16_dec(bench_peer_ctx *c, const uint8_t *in, size_t len, float *y, size_t n)
{
	(void)c;
	(void)len;
	size_t i = 0;
	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(in + 2 * i))));
	for (; i < n; i++) {
		uint16_t h;
		memcpy(&h, in + 2 * i, 2);
		y[i] = _cvtsh_ss(h);
	}
	return 0;
}

static size_t bf16_enc(bench_peer_ctx *c, const float *x, size_t n, uint8_t *out, size_t cap)
{
	(void)c;
	if (cap < 2 * n)
		return 0;
	const uint32_t *u = (const uint32_t *)x;
	uint16_t *o = (uint16_t *)out;
	for (size_t i = 0; i < n; i++)
		o[i] = (uint16_t)((u[i] + 0x7fffu + ((u[i] >> 16) & 1)) >> 16);
	return 2 * n;
}
static int bf16_dec(bench_peer_ctx *c, const uint8_t *in, size_t len, float *y, size_t n)
{
	(void)c;
	(void)len;
	const uint16_t *h = (const uint16_t *)in;
	uint32_t *o = (uint32_t *)y;
	for (size_t i = 0; i < n; i++)
		o[i] = (uint32_t)h[i] << 16;
	return 0;
}

const bench_peer bench_peers[BENCH_NPEERS] = {
	{"memcpy", 0, memcpy_enc, memcpy_dec},
	{"sfp", 0, sfp_pack_enc, sfp_dec},
	{"sfp+gecko", 0, sfp_gecko_enc, sfp_dec},
	{"zstd-1", 0, zstd_enc, zstd_dec},
	{"lz4", 0, lz4_enc, lz4_dec},
	{"blosc-shuf-lz4", 0, bs_lz4, blosc_dec},
	{"blosc-shuf-zstd", 0, bs_zstd, blosc_dec},
	{"blosc-bshuf-lz4", 0, bb_lz4, blosc_dec},
	{"blosc-bshuf-zstd", 0, bb_zstd, blosc_dec},
	{"fpzip", 0, fpzip_enc, fpzip_dec},
	{"zfp-rate", 1, zfp_enc, zfp_dec},
	{"fp16", 1, fp16_enc, fp16_dec},
	{"bf16", 1, bf16_enc, bf16_dec},
};
static_assert(sizeof bench_peers / sizeof bench_peers[0] == BENCH_NPEERS, "peer table size");

size_t bench_peers_bound(size_t n, unsigned ndim)
{
	size_t cap = sfp_encode_bound(n, ndim) + 4 * n + 65536;
	size_t z = ZSTD_compressBound(4 * n), l = (size_t)LZ4_compressBound((int)(4 * n));
	cap = z > cap ? z : cap;
	return l > cap ? l : cap;
}

int bench_peers_init(void)
{
	if (!__builtin_cpu_supports("f16c") || !__builtin_cpu_supports("avx2"))
		return -1;
	blosc_init();
	return 0;
}

void bench_peers_release(void)
{
	blosc_destroy();
}

void bench_peers_versions(char *buf, size_t cap)
{
	snprintf(buf, cap, "zstd %s, lz4 %s, blosc %s, zfp %s, fpzip %d.%d", ZSTD_versionString(),
		 LZ4_versionString(), BLOSC_VERSION_STRING, ZFP_VERSION_STRING, FPZIP_VERSION_MAJOR,
		 FPZIP_VERSION_MINOR);
}
