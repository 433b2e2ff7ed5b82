/*
 * series.c -- a bounded list of points by step, downsampled when full.
 *
 * Rule: each new distinct step is an "arrival" (0, 1, 2, ...). The series
 * keeps the arrivals that are multiples of its stride, plus the newest
 * arrival whatever it is (a "tentative" point, replaced by the next one).
 * When the series is full, the stride doubles and the points whose arrival
 * is no longer a multiple go: half of them, evenly spread. So a series of
 * at most `max` points always covers the whole run at a uniform resolution
 * and always ends with the newest step, and replaying the same inputs gives
 * the same points (the history file relies on that).
 *
 * Reports for a step that is already held merge into it (several ranks
 * report the same step, not always in order); a report for a step that is
 * no longer held, or older than the oldest, is counted as late and dropped.
 */
#include <stdlib.h>
#include <string.h>

#include "lib/stats/stats_internal.h"

#define SERIES_FIRST_CAP 64u

void series_init(series *se, uint32_t esz, uint32_t max)
{
	memset(se, 0, sizeof *se);
	se->esz = esz;
	se->max = max;
	se->stride = 1;
}

void series_release(series *se, uint64_t *bytes)
{
	*bytes -= (uint64_t)se->cap * se->esz;
	free(se->pts);
	se->pts = NULL;
	se->len = se->cap = 0;
}

uint64_t series_bytes_max(uint32_t esz, uint32_t max)
{
	return (uint64_t)esz * max;
}

uint32_t series_lower_bound(const series *se, int64_t since)
{
	uint32_t lo = 0, hi = se->len;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (((const point_hdr *)series_at(se, mid))->step < since)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static point_hdr *hdr(const series *se, uint32_t i)
{
	return (point_hdr *)series_at(se, i);
}

/* Keep the arrivals that are multiples of the doubled stride. */
static void decimate(series *se)
{
	uint32_t w = 0;
	se->stride *= 2;
	for (uint32_t i = 0; i < se->len; i++) {
		if (hdr(se, i)->arrival % se->stride)
			continue;
		if (w != i)
			memcpy(series_at(se, w), series_at(se, i), se->esz);
		w++;
	}
	se->len = w;
}

static int grow(series *se, uint64_t *bytes)
{
	uint32_t cap = se->cap ? se->cap * 2 : SERIES_FIRST_CAP;
	if (cap > se->max || cap < se->cap)
		cap = se->max;
	unsigned char *p = realloc(se->pts, (size_t)cap * se->esz);
	if (!p)
		return SFP_ENOMEM;
	*bytes += (uint64_t)(cap - se->cap) * se->esz;
	se->pts = p;
	se->cap = cap;
	return SFP_OK;
}

int series_add(series *se, void *p, point_merge_fn merge, uint64_t *bytes)
{
	point_hdr *h = p;
	if (se->len) {
		point_hdr *last = hdr(se, se->len - 1);
		if (h->step <= last->step) {
			uint32_t i =
			    h->step == last->step ? se->len - 1 : series_lower_bound(se, h->step);
			if (i < se->len && hdr(se, i)->step == h->step)
				merge(hdr(se, i), p);
			else
				se->late++;
			return SFP_OK;
		}
		if (last->arrival % se->stride) {
			/* the newest was tentative: the new step takes its place */
			h->arrival = se->arrivals++;
			memcpy(last, p, se->esz);
			return SFP_OK;
		}
	}
	if (se->len == se->cap) {
		if (se->cap < se->max)
			SFP_TRY(grow(se, bytes));
		else
			decimate(se);
	}
	h->arrival = se->arrivals++;
	memcpy(series_at(se, se->len), p, se->esz);
	se->len++;
	return SFP_OK;
}
