/*
 * fuzz_history.c -- libFuzzer target: sfpd's history-file reader (the
 * replay behind sfp_stats_open). Random bytes rarely carry valid CRCs, so
 * the first byte chooses how the rest is read:
 *   even: the rest is a whole history file, as on disk (framing, resync,
 *         torn tails);
 *   odd:  the rest is record bodies, each preceded by a 2-byte length, which
 *         this target frames with correct CRCs behind a valid header (the
 *         body decoders and the store's checks).
 * Either way the replay must not fail on content, must account for every
 * byte, and the store must render afterwards.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sfp/stats.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Frame bodies from `in` into a history image (caller frees). */
static uint8_t *frame(const uint8_t *in, size_t n, size_t *len)
{
	uint8_t *img = malloc(16 + n * 7 + 16), *w = img;
	if (!img)
		abort();
	memcpy(w, "SFPHIST\n\x01\0\0\0\0\0\0\0", 16);
	w += 16;
	for (size_t i = 0; i + 2 <= n;) {
		size_t bl = sfp_load_le16(in + i);
		i += 2;
		if (bl > n - i)
			bl = n - i;
		if (!bl)
			continue;
		sfp_store_le32(w, 0x52504653u);
		sfp_store_le32(w + 4, (uint32_t)bl);
		sfp_store_le32(w + 8, sfp_crc32c(sfp_crc32c(0, w + 4, 4), in + i, bl));
		memcpy(w + 12, in + i, bl);
		w += 12 + bl;
		i += bl;
	}
	*len = (size_t)(w - img);
	return img;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	sfp_stats_opts o;
	sfp_stats *s;
	sfp_stats_recovery rec;
	sfp_strbuf b;
	size_t valid, len;
	if (size < 1)
		return 0;
	uint8_t *img = NULL;
	const uint8_t *in = data + 1;
	len = size - 1;
	if (data[0] & 1) {
		img = frame(data + 1, size - 1, &len);
		in = img;
	}
	sfp_stats_opts_default(&o);
	o.max_points = 16;
	o.max_layers = 8;
	o.max_jobs = 2;
	o.max_workers = 4;
	if (sfp_stats_open(&s, NULL, &o, NULL) < 0)
		abort();
	int rc = sfp_stats_replay(s, in, len, &valid, &rec, NULL);
	if (rc == SFP_OK) {
		if (valid > len || valid + rec.truncated_bytes != len || rec.skipped_bytes > valid)
			abort();
		if (len >= 16 && (data[0] & 1) && rec.corrupt_records + rec.truncated_bytes)
			abort(); /* framed records always check out */
	} else if (rc != SFP_ECORRUPT && rc != SFP_EVERSION) {
		abort();
	}
	if (sfp_stats_memory_bytes(s) > sfp_stats_memory_bound(&o))
		abort();
	sfp_strbuf_init(&b, 0);
	if (sfp_stats_render_prometheus(s, 0, &b) < 0 ||
	    sfp_stats_render_job(s, NULL, 0, 0, &b, NULL) < 0 ||
	    sfp_stats_render_workers(s, NULL, 0, &b, NULL) < 0 ||
	    sfp_stats_render_bitlengths(s, NULL, NULL, 0, &b, NULL) < 0)
		abort();
	sfp_strbuf_release(&b);
	sfp_stats_close(s);
	free(img);
	return 0;
}
