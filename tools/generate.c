/*
 * generate.c -- `sfp generate`: text from a byte-level token model (a GPT
 * of deploy/examples/fortunes-gpt.yaml, data.dataset tokens). The prompt's
 * bytes are the first tokens; each step runs the model on the newest
 * model.input[0] tokens (left-aligned: causal attention makes the padding
 * after them invisible to the positions before), takes the scores of the
 * last real position, and samples the next byte at the given temperature
 * (0: the most likely one) with a seeded generator, so a seed repeats its
 * text. Output is the prompt and the sampled bytes, as UTF-8 where they
 * form it; other bytes and control characters but newline and tab are
 * shown as \xNN.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/tools.h"

#define MAX_SETS 64

#define usage(...) sfp_tool_usage("generate", __VA_ARGS__)

/* The length of the valid UTF-8 sequence at s[0..n) (0: not one). */
static int utf8_len(const unsigned char *s, size_t n)
{
	const unsigned c = s[0];
	int len = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
	if (!len || (size_t)len > n || (len == 2 && c < 0xc2) || c > 0xf4)
		return 0;
	for (int i = 1; i < len; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	if ((len == 3 && c == 0xe0 && s[1] < 0xa0) || (len == 4 && c == 0xf0 && s[1] < 0x90) ||
	    (len == 4 && c == 0xf4 && s[1] > 0x8f) || (len == 3 && c == 0xed && s[1] > 0x9f))
		return 0; /* overlong, past U+10FFFF, surrogates */
	return len;
}

static void print_text(const unsigned char *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		const int len = utf8_len(s + i, n - i);
		if (len == 1 && (s[i] >= 0x20 || s[i] == '\n' || s[i] == '\t') && s[i] != 0x7f)
			putchar(s[i]);
		else if (len > 1)
			fwrite(s + i, 1, (size_t)len, stdout);
		else
			printf("\\x%02x", s[i]);
		i += len > 0 ? (size_t)len : 1;
	}
	putchar('\n');
}

/* The next token from the scores z[0..V): the largest at temperature 0,
 * else drawn from softmax(z / temperature). */
static int sample(const float *z, int V, float temperature, sfp_rng *rng)
{
	int best = 0;
	for (int v = 1; v < V; v++)
		if (z[v] > z[best])
			best = v;
	if (temperature <= 0.0f)
		return best;
	double sum = 0.0;
	for (int v = 0; v < V; v++)
		sum += exp((double)(z[v] - z[best]) / temperature);
	double u = (double)sfp_rng_uniform(rng) * sum;
	for (int v = 0; v < V; v++) {
		u -= exp((double)(z[v] - z[best]) / temperature);
		if (u <= 0.0)
			return v;
	}
	return best;
}

typedef struct gen_opts {
	const char *config, *ckpt, *prompt;
	const char *sets[MAX_SETS];
	int nsets;
	uint64_t tokens, seed;
	float temperature;
} gen_opts;

static int parse(gen_opts *o, int argc, char **argv)
{
	*o = (gen_opts){.prompt = "", .tokens = 200, .seed = 1, .temperature = 1.0f};
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!v)
			return usage("'%s' needs a value", a);
		i++;
		if (!strcmp(a, "--config"))
			o->config = v;
		else if (!strcmp(a, "--checkpoint"))
			o->ckpt = v;
		else if (!strcmp(a, "--prompt"))
			o->prompt = v;
		else if (!strcmp(a, "--tokens")) {
			if (sfp_parse_u64(v, 1, 1000000, &o->tokens) < 0)
				return usage("--tokens must be 1..1000000, not '%s'", v);
		} else if (!strcmp(a, "--seed")) {
			if (sfp_parse_u64(v, 0, UINT64_MAX, &o->seed) < 0)
				return usage("--seed must be a whole number, not '%s'", v);
		} else if (!strcmp(a, "--temperature")) {
			char *end;
			o->temperature = strtof(v, &end);
			if (*end || !(o->temperature >= 0.0f && o->temperature <= 100.0f))
				return usage("--temperature must be a number in [0, 100], not '%s'", v);
		} else if (!strcmp(a, "--set")) {
			if (o->nsets == MAX_SETS)
				return usage("more than %d --set options", MAX_SETS);
			o->sets[o->nsets++] = v;
		} else {
			return usage("unknown option '%s'", a);
		}
	}
	if (!o->config || !o->ckpt)
		return usage("generate needs --config FILE and --checkpoint CKPT|DIR");
	return SFP_EXIT_OK;
}

/* Sample o->tokens bytes after the prompt into text (which holds the
 * prompt first); *n its length. */
static int run(sfp_trainer *t, const gen_opts *o, unsigned char *text, size_t *n, sfp_error *err)
{
	sfp_model *m = sfp_trainer_model(t);
	const int T = sfp_trainer_token_data(t);
	sfp_layer_info li;
	sfp_model_layer(m, sfp_model_n_layers(m) - 1, &li);
	const int V = li.out.w;
	float *x = calloc((size_t)T, sizeof *x);
	if (!x)
		return sfp_error_set(err, SFP_ENOMEM, "out of memory");
	sfp_rng rng;
	sfp_rng_seed(&rng, o->seed);
	for (uint64_t k = 0; k < o->tokens; k++) {
		const size_t L = *n < (size_t)T ? *n : (size_t)T;
		const unsigned char *w = text + *n - L;
		for (int i = 0; i < T; i++)
			x[i] = (size_t)i < L ? (float)w[i] : 0.0f;
		const float *z = sfp_model_forward(m, x, 1, SFP_FORWARD_EVAL, 0);
		const int next = sample(z + (L - 1) * (size_t)V, V, o->temperature, &rng);
		if (next > 255) {
			free(x);
			return sfp_error_set(err, SFP_EUNSUPPORTED,
					     "token %d is not a byte: sfp generate writes byte-level "
					     "text (vocabulary 256)",
					     next);
		}
		text[(*n)++] = (unsigned char)next;
	}
	free(x);
	return SFP_OK;
}

int sfp_generate_main(int argc, char **argv)
{
	gen_opts o;
	int rc = parse(&o, argc, argv);
	if (rc != SFP_EXIT_OK)
		return rc;
	static sfp_config cfg;
	sfp_error err;
	sfp_trainer *t = NULL;
	char path[SFP_CFG_PATH + 64];
	const size_t plen = strlen(o.prompt);
	unsigned char *text = malloc(plen + o.tokens + 1);
	if (!text)
		return SFP_EXIT_FAIL;
	memcpy(text, o.prompt, plen);
	size_t n = plen;
	if (!n)
		text[n++] = '\n'; /* an empty prompt starts as a new line would */
	rc = sfp_config_load_all(&cfg, o.config, o.sets, o.nsets, &err);
	cfg.log.metrics[0] = 0;
	if (rc == SFP_OK)
		rc = sfp_tool_load_checkpoint(&t, &cfg, o.config, o.ckpt, path, sizeof path, &err);
	if (rc == SFP_OK && !sfp_trainer_token_data(t))
		rc = sfp_error_set(&err, SFP_EINVAL,
				   "'%s' is not a token model (data.dataset tokens): nothing to "
				   "generate",
				   o.config);
	if (rc == SFP_OK)
		rc = run(t, &o, text, &n, &err);
	if (rc == SFP_OK)
		print_text(text + (plen ? 0 : 1), n - (plen ? 0 : 1));
	else
		fprintf(stderr, "sfp: %s\n", err.msg);
	sfp_trainer_free(t);
	free(text);
	return rc == SFP_OK ? SFP_EXIT_OK : sfp_exit_code(rc);
}
