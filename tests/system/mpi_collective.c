/*
 * mpi_collective.c -- the compressed collectives and the MPI transport
 * under a real mpirun (tests/system/dist.sh runs it with 2 and 4 ranks).
 *
 * Checks, on every rank: lossless all-reduce equals MPI_Allreduce on
 * float32 (bitwise with 2 ranks, where a + b is one addition either way;
 * within summation-order rounding with more) for both schemes; every rank
 * ends with the same bits, lossy too; error feedback makes the mean of
 * repeated lossy reductions converge to the exact sum; a corrupted
 * container is refused naming its sender and the next good one arrives; a
 * receive from a silent rank times out naming it; f64 sums and broadcast;
 * a bit flipped on the wire (the transport's fault injection) in f64 sums,
 * a broadcast or a 16-bit cast is refused naming its sender.
 * Prints "ok"/"FAIL" lines; exits 1 if anything failed on any rank.
 */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sfp/transport.h"

static int fails, rank, size;

static void check(int cond, const char *what)
{
	if (!cond) {
		fails++;
		printf("FAIL rank %d: %s\n", rank, what);
	} else if (rank == 0) {
		printf("ok   %s\n", what);
	}
}

/* every rank holds the same n floats? */
static int same_everywhere(const float *x, size_t n)
{
	uint32_t h = sfp_crc32c(0, x, n * sizeof(float)), lo, hi;
	MPI_Allreduce(&h, &lo, 1, MPI_UINT32_T, MPI_MIN, MPI_COMM_WORLD);
	MPI_Allreduce(&h, &hi, 1, MPI_UINT32_T, MPI_MAX, MPI_COMM_WORLD);
	return lo == hi;
}

static void fill(float *x, size_t n, uint64_t seed)
{
	sfp_rng r;
	sfp_rng_seed(&r, seed);
	for (size_t i = 0; i < n; i++)
		x[i] = (2.0f * sfp_rng_uniform(&r) - 1.0f) * expf(4.0f * sfp_rng_uniform(&r) - 8.0f);
}

static void lossless(sfp_collective *c, const sfp_group *g, int algo, size_t n)
{
	float *x = malloc((n ? n : 1) * sizeof(float)), *ref = malloc((n ? n : 1) * sizeof(float));
	fill(x, n, 1000u + (uint64_t)rank * 7u + n);
	float *mag = malloc((n ? n : 1) * sizeof(float)), *bound = malloc((n ? n : 1) * sizeof(float));
	for (size_t i = 0; i < n; i++)
		mag[i] = fabsf(x[i]);
	MPI_Allreduce(x, ref, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
	MPI_Allreduce(mag, bound, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
	sfp_wire_cfg w = {.algo = algo, .error_feedback = 1};
	sfp_params_init(&w.params, 8, 23);
	w.params.gecko = n % 2 == 1;
	sfp_wire_stats st = {0};
	sfp_error err;
	int rc = sfp_allreduce(c, g, x, n, &w, NULL, &st, &err);
	char what[160];
	snprintf(what, sizeof what, "%s lossless all-reduce of %zu floats (gecko %d) succeeds",
		 algo ? "allgather" : "ring", n, w.params.gecko);
	check(rc == SFP_OK, rc == SFP_OK ? what : err.msg);
	/* two orders of D float additions differ by at most 2 (D - 1) ulps of
	 * the sum of magnitudes */
	int bitwise = 1, within = 1;
	for (size_t i = 0; i < n; i++) {
		if (memcmp(&x[i], &ref[i], 4) != 0)
			bitwise = 0;
		if (fabs((double)x[i] - ref[i]) > 2.0 * (size - 1) * ldexp(bound[i], -23))
			within = 0;
	}
	snprintf(what, sizeof what, "%s, %zu floats: %s MPI_Allreduce", algo ? "allgather" : "ring",
		 n, size == 2 ? "bitwise equal to" : "within summation-order rounding of");
	check(size == 2 ? bitwise : within, what);
	free(mag);
	free(bound);
	snprintf(what, sizeof what, "%s, %zu floats: every rank holds the same bits",
		 algo ? "allgather" : "ring", n);
	check(same_everywhere(x, n), what);
	free(x);
	free(ref);
}

static void lossy(sfp_collective *c, const sfp_group *g, int algo)
{
	const size_t n = 20000;
	const int reps = 64;
	float *x0 = malloc(n * sizeof(float)), *x = malloc(n * sizeof(float));
	float *ref = malloc(n * sizeof(float)), *res = calloc(n, sizeof(float));
	double *mean = calloc(n, sizeof(double));
	fill(x0, n, 77u + (uint64_t)rank);
	MPI_Allreduce(x0, ref, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
	sfp_wire_cfg w = {.algo = algo, .error_feedback = 1};
	sfp_params_init(&w.params, 5, 2);
	w.params.gecko = 1;
	sfp_wire_stats st = {0};
	sfp_error err;
	int ok = 1, same = 1;
	double one = 0.0, avg = 0.0, scale = 0.0;
	for (int r = 0; r < reps && ok; r++) {
		memcpy(x, x0, n * sizeof(float));
		ok = sfp_allreduce(c, g, x, n, &w, res, &st, &err) == SFP_OK;
		same &= same_everywhere(x, n);
		for (size_t i = 0; i < n; i++)
			mean[i] += x[i];
		if (r == 0)
			for (size_t i = 0; i < n; i++)
				one += fabs((double)x[i] - ref[i]);
	}
	for (size_t i = 0; i < n; i++) {
		avg += fabs(mean[i] / reps - ref[i]);
		scale += fabs((double)ref[i]);
	}
	char what[200];
	snprintf(what, sizeof what, "%s e5m2+gecko all-reduce succeeds", algo ? "allgather" : "ring");
	check(ok, ok ? what : err.msg);
	snprintf(what, sizeof what, "%s e5m2: every rank holds the same bits", algo ? "allgather" : "ring");
	check(same, what);
	/* error feedback at every rounding point: the mean of repeated
	 * reductions converges on the exact sum */
	snprintf(what, sizeof what,
		 "%s e5m2: one reduction errs %.3g of the sum's mass, error feedback's mean of %d "
		 "errs %.3g (< 1/20)",
		 algo ? "allgather" : "ring", one / scale, reps, avg / scale);
	check(one / scale < 0.2 && avg < 0.05 * one, what);
	snprintf(what, sizeof what, "%s e5m2+gecko: %.2f wire bytes per float32 byte (< 0.25)",
		 algo ? "allgather" : "ring", (double)st.wire_bytes / (double)st.raw_bytes);
	check(st.wire_bytes * 4 < st.raw_bytes, what);
	free(x0);
	free(x);
	free(ref);
	free(res);
	free(mean);
}

static void corrupt_and_timeout(sfp_collective *c, sfp_transport *t)
{
	const size_t n = 1000;
	float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float));
	fill(x, n, 5);
	sfp_params p;
	sfp_params_init(&p, 6, 4);
	sfp_wire_stats st = {0};
	sfp_error err;
	if (rank == 1) {
		size_t cap = sfp_encode_bound(n, 1), len = 0;
		uint8_t *buf = malloc(cap);
		uint64_t shape = n;
		sfp_codec *cc = sfp_codec_create();
		sfp_encode(cc, buf, cap, &len, x, n, &shape, 1, &p, NULL);
		buf[len / 2] ^= 0x10; /* one flipped bit in the payload */
		sfp_transport_send(t, 0, 7, buf, len, NULL);
		sfp_codec_free(cc);
		free(buf);
		sfp_send_tensor(c, 0, 7, x, n, &p, &st, NULL);
	} else if (rank == 0) {
		int rc = sfp_recv_tensor(c, 1, 7, y, n, &st, &err);
		check(rc == SFP_ECHECKSUM && strstr(err.msg, "from rank 1"),
		      "a flipped bit on the wire is refused, naming the sender");
		if (rc != SFP_ECHECKSUM)
			printf("  got %d: %s\n", rc, err.msg);
		rc = sfp_recv_tensor(c, 1, 7, y, n, &st, &err);
		float *q = malloc(n * sizeof(float));
		sfp_codec *cc = sfp_codec_create();
		sfp_quantize(cc, q, x, n, &p, NULL);
		check(rc == SFP_OK && !memcmp(q, y, n * sizeof(float)),
		      "the next good tensor arrives, decoded exactly");
		sfp_codec_free(cc);
		free(q);
		double keep = sfp_transport_timeout(t);
		sfp_transport_set_timeout(t, 0.5);
		rc = sfp_recv_tensor(c, 1, 99, y, n, &st, &err);
		check(rc == SFP_ETIMEDOUT && strstr(err.msg, "rank 1"),
		      "a receive from a silent rank times out, naming it");
		sfp_transport_set_timeout(t, keep);
	}
	MPI_Barrier(MPI_COMM_WORLD);
	free(x);
	free(y);
}

/* Ranks 0 and 1: rank 1's next message leaves with a flipped bit; rank 0
 * must refuse it with a checksum error naming rank 1. The cast case comes
 * last: rank 0 stops in the middle of the ring and leaves a message behind. */
static void corrupt_raw(sfp_collective *c, sfp_transport *t)
{
	sfp_group g = {.n = 2, .me = rank < 2 ? rank : -1, .ranks = {0, 1}};
	sfp_error err;
	if (rank > 1)
		goto out;
	double v[2] = {1.0, 2.0};
	if (rank == 1)
		sfp_transport_inject_flip(t, 1, 3, NULL, NULL);
	int rc = sfp_allreduce_f64(c, &g, v, 2, &err);
	if (rank == 0)
		check(rc == SFP_ECHECKSUM && strstr(err.msg, "from rank 1"),
		      "a flipped bit in f64 sums is refused, naming the sender");
	char msg[32] = "";
	if (rank == 1) {
		snprintf(msg, sizeof msg, "from rank 1");
		sfp_transport_inject_flip(t, 1, 9, NULL, NULL);
	}
	rc = sfp_broadcast(c, &g, 1, msg, sizeof msg, &err);
	if (rank == 0)
		check(rc == SFP_ECHECKSUM && strstr(err.msg, "from rank 1"),
		      "a flipped bit in a broadcast is refused, naming the sender");
	float x[100];
	fill(x, 100, 9);
	sfp_wire_cfg w = {.algo = SFP_ALLREDUCE_RING, .cast = SFP_CAST_FP16};
	sfp_params_init(&w.params, 8, 23);
	sfp_wire_stats st = {0};
	double keep = sfp_transport_timeout(t);
	sfp_transport_set_timeout(t, 0.5);
	if (rank == 1)
		sfp_transport_inject_flip(t, 1, 17, NULL, NULL);
	rc = sfp_allreduce(c, &g, x, 100, &w, NULL, &st, &err);
	if (rank == 0)
		check(rc == SFP_ECHECKSUM && strstr(err.msg, "from rank 1"),
		      "a flipped bit in an fp16 cast is refused, naming the sender");
	sfp_transport_set_timeout(t, keep);
out:
	MPI_Barrier(MPI_COMM_WORLD);
}

int main(int argc, char **argv)
{
	MPI_Init(&argc, &argv);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &size);
	sfp_transport *t = NULL;
	sfp_collective *c = NULL;
	sfp_error err;
	if (sfp_transport_open_mpi(&t, &err) < 0 || sfp_collective_create(&c, t, &err) < 0) {
		printf("FAIL rank %d: %s\n", rank, err.msg);
		MPI_Abort(MPI_COMM_WORLD, 1);
	}
	sfp_group g = {.n = size, .me = rank};
	for (int k = 0; k < size; k++)
		g.ranks[k] = k;
	static const size_t sizes[] = {0, 1, 7, 1000, 100003};
	for (int algo = 0; algo < 2; algo++) {
		for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++)
			lossless(c, &g, algo, sizes[i]);
		lossy(c, &g, algo);
	}
	double v[2] = {rank + 0.5, 1.0};
	check(sfp_allreduce_f64(c, &g, v, 2, &err) == SFP_OK &&
		      v[0] == size * (size - 1) / 2.0 + size * 0.5 && v[1] == size,
	      "f64 sums are exact");
	char msg[32] = "";
	if (rank == size - 1)
		snprintf(msg, sizeof msg, "from the last rank");
	check(sfp_broadcast(c, &g, size - 1, msg, sizeof msg, &err) == SFP_OK &&
		      !strcmp(msg, "from the last rank"),
	      "broadcast reaches every rank");
	if (size >= 2) {
		corrupt_and_timeout(c, t);
		corrupt_raw(c, t);
	}
	sfp_collective_free(c);
	sfp_transport_close(t);
	int all = 0;
	MPI_Allreduce(&fails, &all, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
	if (rank == 0)
		printf("mpi_collective (%d ranks): %d failed\n", size, all);
	MPI_Finalize();
	return all ? 1 : 0;
}
