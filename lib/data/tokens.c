/*
 * tokens.c -- token data for language models: flat files of token ids
 * (uint16 little-endian as nanoGPT's and llm.c's .bin files, or uint8),
 * random training windows drawn from (seed, step) alone, so a resumed run
 * sees the same batches, and the held-out part as consecutive windows.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/data_internal.h"

int sfp_tokens_parse(const void *buf, size_t len, int token_bytes, const char *name,
		     uint16_t *dst, size_t cap, size_t *n, sfp_error *err)
{
	const unsigned char *b = buf;
	*n = 0;
	if (token_bytes != 1 && token_bytes != 2)
		return sfp_error_set(err, SFP_EINVAL, "token_bytes %d is not 1 or 2", token_bytes);
	if (len % (size_t)token_bytes)
		return sfp_error_set(err, SFP_ETRUNC,
				     "'%s': %zu bytes is not a whole number of 2-byte tokens "
				     "(data.token_bytes 2: uint16 little-endian)",
				     name, len);
	const size_t count = len / (size_t)token_bytes;
	if (count > cap)
		return sfp_error_set(err, SFP_ENOSPC, "'%s': %zu tokens, room for %zu", name, count,
				     cap);
	for (size_t i = 0; i < count; i++)
		dst[i] = token_bytes == 2 ? sfp_load_le16(b + 2 * i) : b[i];
	*n = count;
	return SFP_OK;
}

void sfp_tokens_release(sfp_tokens *tok)
{
	if (tok) {
		free(tok->ids);
		memset(tok, 0, sizeof *tok);
	}
}

/* Append the ids of `path` to tok->ids (grown), *n their count. */
static int read_ids(sfp_tokens *tok, const char *path, int token_bytes, int64_t have,
		    int64_t *n, sfp_error *err)
{
	void *buf;
	size_t len, got;
	SFP_TRY(sfp_file_read(path, &buf, &len, err));
	size_t count = len / (size_t)token_bytes;
	uint16_t *ids = realloc(tok->ids, ((size_t)have + count + 1) * sizeof *ids);
	int rc;
	if (!ids) {
		rc = sfp_error_set(err, SFP_ENOMEM, "out of memory for '%s'", path);
		goto out;
	}
	tok->ids = ids;
	rc = sfp_tokens_parse(buf, len, token_bytes, path, ids + have, count, &got, err);
	*n = (int64_t)got;
out:
	free(buf);
	return rc;
}

/* At least one window of T + 1 ids in a part. */
static int need_window(int64_t n, int T, const char *what, const char *file, sfp_error *err)
{
	if (n >= (int64_t)T + 1)
		return SFP_OK;
	return sfp_error_set(err, SFP_EINVAL,
			     "'%s': %s part holds %lld tokens, fewer than data.seq_len + 1 = %d",
			     file, what, (long long)n, T + 1);
}

int sfp_tokens_load(sfp_tokens *tok, const sfp_cfg_data *cfg, sfp_error *err)
{
	memset(tok, 0, sizeof *tok);
	int rc;
	const int tb = cfg->token_bytes;
	if (!cfg->train_x[0]) {
		rc = sfp_error_set(err, SFP_EINVAL, "data.train.x (a file of token ids) is required");
		goto out;
	}
	if (cfg->train_y[0] || cfg->test_y[0]) {
		rc = sfp_error_set(err, SFP_EINVAL,
				   "data.train.y / data.test.y are not used by token data (the "
				   "targets are the next tokens)");
		goto out;
	}
	snprintf(tok->train_file, sizeof tok->train_file, "%s", cfg->train_x);
	int64_t n;
	if ((rc = read_ids(tok, cfg->train_x, tb, 0, &n, err)) < 0)
		goto out;
	if (cfg->test_x[0]) {
		tok->n_train = n;
		snprintf(tok->val_file, sizeof tok->val_file, "%s", cfg->test_x);
		if ((rc = read_ids(tok, cfg->test_x, tb, n, &tok->n_val, err)) < 0)
			goto out;
		tok->val_base = 0;
	} else {
		if ((rc = sfp_data_val_count(n, cfg->val_fraction, cfg->train_x, &tok->n_val, err)) <
		    0)
			goto out;
		tok->n_train = n - tok->n_val;
		snprintf(tok->val_file, sizeof tok->val_file, "%s", cfg->train_x);
		tok->val_base = tok->n_train;
	}
	if ((rc = need_window(tok->n_train, cfg->seq_len, "the training", tok->train_file, err)) <
	    0)
		goto out;
	rc = need_window(tok->n_val, cfg->seq_len, "the held-out", tok->val_file, err);
out:
	if (rc < 0)
		sfp_tokens_release(tok);
	return rc;
}

int sfp_tokens_check(const sfp_tokens *tok, int vocab, sfp_error *err)
{
	for (int64_t i = 0; i < tok->n_train + tok->n_val; i++) {
		if (tok->ids[i] < vocab)
			continue;
		const int val = i >= tok->n_train;
		return sfp_error_set(err, SFP_ECORRUPT,
				     "'%s': token %u at position %lld is not below the vocabulary "
				     "size %d",
				     val ? tok->val_file : tok->train_file, tok->ids[i],
				     (long long)(val ? tok->val_base + (i - tok->n_train) : i), vocab);
	}
	return SFP_OK;
}

static void window(const uint16_t *ids, int T, float *x, int32_t *targets)
{
	for (int t = 0; t < T; t++) {
		x[t] = (float)ids[t];
		targets[t] = ids[t + 1];
	}
}

int sfp_tokens_batch(const sfp_tokens *tok, int B, int T, uint64_t seed, int64_t step, float *x,
		     int32_t *targets, sfp_error *err)
{
	if (B < 1 || T < 1 || tok->n_train < (int64_t)T + 1)
		return sfp_error_set(err, SFP_EINVAL,
				     "%lld training tokens cannot give %d windows of %d + 1",
				     (long long)tok->n_train, B, T);
	sfp_rng r;
	sfp_rng_seed(&r, seed ^ 0x544f4b454e53ull ^ (0x9e3779b97f4a7c15ull * (uint64_t)(step + 1)));
	const uint64_t starts = (uint64_t)(tok->n_train - T);
	for (int b = 0; b < B; b++) {
		uint64_t s = sfp_rng_below(&r, starts);
		window(tok->ids + s, T, x + (size_t)b * T, targets + (size_t)b * T);
	}
	return SFP_OK;
}

int64_t sfp_tokens_val_windows(const sfp_tokens *tok, int T)
{
	return T >= 1 && tok->n_val >= (int64_t)T + 1 ? (tok->n_val - 1) / T : 0;
}

int sfp_tokens_val_batch(const sfp_tokens *tok, int T, int64_t first, int B, float *x,
			 int32_t *targets)
{
	const int64_t nw = sfp_tokens_val_windows(tok, T);
	int k = 0;
	for (; k < B && first + k < nw; k++)
		window(tok->ids + tok->n_train + (first + k) * T, T, x + (size_t)k * T,
		       targets + (size_t)k * T);
	return k;
}

/* n byte tokens as dir/name, token_bytes per id */
static int write_ids(const char *dir, const char *name, const unsigned char *bytes, size_t n,
		     int token_bytes, sfp_error *err)
{
	char path[SFP_CFG_PATH + 16];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	unsigned char *out = malloc(n * (size_t)token_bytes + 1);
	if (!out)
		return sfp_error_set(err, SFP_ENOMEM, "out of memory for '%s'", path);
	for (size_t i = 0; i < n; i++) {
		if (token_bytes == 2)
			sfp_store_le16(out + 2 * i, bytes[i]);
		else
			out[i] = bytes[i];
	}
	int rc = sfp_file_write_atomic(path, out, n * (size_t)token_bytes, err);
	free(out);
	return rc;
}

int sfp_tokens_write_text(const char *const *files, int nfiles, const char *dir,
			  float val_fraction, int token_bytes, int64_t *n_train, int64_t *n_val,
			  sfp_error *err)
{
	unsigned char *all = NULL;
	size_t n = 0;
	int rc = SFP_OK;
	if (token_bytes != 1 && token_bytes != 2)
		return sfp_error_set(err, SFP_EINVAL, "token bytes %d is not 1 or 2", token_bytes);
	if (!(val_fraction > 0.0f && val_fraction <= 0.9f))
		return sfp_error_set(err, SFP_EINVAL, "the held-out fraction %g is not in (0, 0.9]",
				     (double)val_fraction);
	if (nfiles < 1)
		return sfp_error_set(err, SFP_EINVAL, "no text files given");
	for (int i = 0; i < nfiles; i++) {
		void *buf;
		size_t len;
		if ((rc = sfp_file_read(files[i], &buf, &len, err)) < 0)
			goto out;
		unsigned char *grown = realloc(all, n + len + 1);
		if (!grown) {
			free(buf);
			rc = sfp_error_set(err, SFP_ENOMEM, "out of memory reading '%s'", files[i]);
			goto out;
		}
		all = grown;
		memcpy(all + n, buf, len);
		n += len;
		free(buf);
	}
	int64_t nv;
	if ((rc = sfp_data_val_count((int64_t)n, val_fraction, files[nfiles - 1], &nv, err)) < 0)
		goto out;
	if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
		rc = sfp_error_set(err, errno == ENOENT ? SFP_ENOENT : SFP_EIO,
				   "cannot create folder '%s': %s", dir, strerror(errno));
		goto out;
	}
	const size_t nt = n - (size_t)nv;
	if ((rc = write_ids(dir, "train.bin", all, nt, token_bytes, err)) < 0 ||
	    (rc = write_ids(dir, "val.bin", all + nt, (size_t)nv, token_bytes, err)) < 0)
		goto out;
	*n_train = (int64_t)nt;
	*n_val = nv;
out:
	free(all);
	return rc;
}
