/*
 * sfp.c -- the user's command-line tool: argv -> options -> lib/ calls.
 *
 *   sfp encode -e E -m M [options] IN.npy OUT.sfpt
 *   sfp decode [--isa L] IN.sfpt OUT.npy
 *   sfp inspect [--json] IN.sfpt
 *   sfp bench codec|gecko|refine|train|daemon [...]   (runs sfp-bench, beside sfp)
 *   sfp dataset fmnist [--split S] [--count N] OUT.npy
 *   sfp dataset text FILE... --out DIR [--val-fraction F] [--token-bytes 1|2]
 *   sfp eval --config FILE --checkpoint CKPT | --model MODEL.sfpq
 *   sfp export --config FILE --checkpoint CKPT --out MODEL.sfpq [...]
 *
 * Exit codes: 0 ok, 2 usage error or bad input, 1 other failure. Messages
 * go to stderr; outputs are written atomically, so a failure leaves none.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools/tools.h"
#include "sfp/codec.h"
#include "sfp/config.h"
#include "sfp/data.h"
#include "sfp/train.h"
#include "sfp/npy.h"

static const char *usage_text =
	"usage: sfp <command> [options]\n"
	"\n"
	"commands:\n"
	"  encode -e E -m M [--gecko] [--rounding nearest|stochastic] [--seed S]\n"
	"         [--window-top E] [--underflow zero|min] [--overflow error|saturate]\n"
	"         [--bias off|tensor|channel] [--shift] [--isa scalar|avx2|avx512] IN.npy OUT.sfpt\n"
	"                      float32 .npy -> container (e in 1..8, m in 0..23)\n"
	"  decode [--isa L] IN.sfpt OUT.npy\n"
	"                      container -> float32 .npy, shape restored\n"
	"  inspect [--json] IN.sfpt\n"
	"                      sizes, window, bits per value, exponent entropy\n"
	"  bench codec [--quick] [--repeats N] [FILE.npy ...]\n"
	"                      codec benchmark against zstd, lz4, blosc, zfp, fpzip, fp16, bf16\n"
	"  bench gecko [--quick] [FILE.npy ...]\n"
	"                      Gecko ablation (variants, group sizes, references)\n"
	"  bench refine [--quick] [--config F] [--steps N] [--verbose]\n"
	"                      decoder-side refinement on a trained model's tensors\n"
	"  dataset fmnist [--split train|t10k] [--count N] OUT.npy\n"
	"                      Fashion-MNIST images as float32 N x 28 x 28 in [0, 1]\n"
	"  dataset text FILE... --out DIR [--val-fraction F] [--token-bytes 1|2]\n"
	"                      byte-level token files DIR/train.bin, DIR/val.bin (data.dataset tokens)\n"
	"  eval --config FILE --checkpoint CKPT|DIR [--set K=V ...]\n"
	"                      test-set accuracy of a trained checkpoint (token data: held-out\n"
	"                      loss per token and perplexity)\n"
	"  generate --config FILE --checkpoint CKPT|DIR [--prompt TEXT] [--tokens N]\n"
	"         [--temperature T] [--seed S]\n"
	"                      text sampled from a byte-level token model\n"
	"  export --config FILE --checkpoint CKPT|DIR --out MODEL.sfpq [options]\n"
	"                      BitPruning: learn integer weight widths, write the integer model\n"
	"  eval --config FILE --model MODEL.sfpq [--set K=V ...]\n"
	"                      test-set accuracy and average bits of an integer model\n"
	"  bench train --config FILE [--threads N] [--seconds S] [--repeats R]\n"
	"                      training speed of one model (beside PyTorch: bench/train.sh)\n"
	"  bench daemon --daemon URL [--workers N] [--hz F] [--seconds S]\n"
	"                      simulated workers report to a real sfpd (bench/daemon.sh)\n"
	"  report LOG.jsonl [--png OUT.png]\n"
	"                      learned widths per layer, footprint, and a plot of widths over steps\n"
	"  plan --config FILE [--hosts 2,4,64] [--links 1,10,100] [options]\n"
	"                      data-parallel step time on N hosts from this host's measured costs\n"
	"  help [COMMAND]      this text, or one command's options\n"
	"  --version           the version\n";

/* One usage block per command, for `sfp help CMD` and `sfp CMD --help`. */
static const struct {
	const char *name, *text;
} cmd_help[] = {
	{"encode",
	 "usage: sfp encode -e E -m M [options] IN.npy OUT.sfpt\n"
	 "  -e E                    exponent bits, 1..8\n"
	 "  -m M                    mantissa bits, 0..23 (e = 8, m = 23 is lossless)\n"
	 "  --gecko                 code the exponents with Gecko instead of e raw bits\n"
	 "  --rounding nearest|stochastic   (default nearest, ties to even)\n"
	 "  --seed S                stochastic rounding seed, 0..2^32-1\n"
	 "  --window-top E          fix the window's top biased exponent (1..254)\n"
	 "  --underflow zero|min    values below the window (default zero)\n"
	 "  --overflow error|saturate   values above a fixed window (default error)\n"
	 "  --bias off|tensor|channel   signal a decoder bias correction (docs/refine.md)\n"
	 "  --shift                 signal an entropy-gradient shift step (docs/refine.md)\n"
	 "  --isa scalar|avx2|avx512    cap the SIMD level\n"},
	{"decode", "usage: sfp decode [--isa scalar|avx2|avx512] IN.sfpt OUT.npy\n"
		   "  writes the values as float32 .npy with the container's shape\n"},
	{"inspect", "usage: sfp inspect [--json] IN.sfpt\n"
		    "  shape, window, coder, byte breakdown, bits per value, zero fraction,\n"
		    "  exponent entropy and Gecko bits per exponent; --json: one JSON object\n"},
	{"bench", "usage: sfp bench codec [--quick] [--repeats N] [FILE.npy ...]\n"
		  "       sfp bench gecko [--quick] [FILE.npy ...]\n"
		  "       sfp bench refine [--quick] [--config F] [--steps N] [--verbose]\n"
		  "       sfp bench train --config FILE [--name N] [--threads T] [--seconds S] [--repeats R]\n"
		  "       sfp bench daemon --daemon URL [--workers N] [--hz F] [--seconds S] [--stages S]\n"
		  "                        [--threads T] [--config FILE] [--job NAME] [--token T]\n"
		  "                        [--timeout-s S] [--no-goodbye]\n"},
	{"eval", "usage: sfp eval --config FILE --checkpoint CKPT|DIR [--set section.key=value ...]\n"
		 "       sfp eval --config FILE --model MODEL.sfpq [--set section.key=value ...]\n"
		 "  builds the model of FILE, loads the checkpoint (a folder: its newest) or\n"
		 "  the integer model of `sfp export`, and prints test-set accuracy and loss\n"
		 "  (token data: held-out loss in nats per token, perplexity, token accuracy);\n"
		 "  for a model also its widths per layer and the average bits\n"},
	{"export",
	 "usage: sfp export --config FILE --checkpoint CKPT|DIR --out MODEL.sfpq [options]\n"
	 "  BitPruning (docs/bitpruning.md): from the float checkpoint, fine-tune the\n"
	 "  weights of linear/conv layers with learned integer widths, round them, and\n"
	 "  write the integer model; prints accuracy, widths per layer and average bits\n"
	 "  --granularity layer|channel   one width per layer or per output channel\n"
	 "  --penalty memory|ops          penalize bits per weight or per multiply-add\n"
	 "  --activations                 quantize the inputs of linear/conv layers too\n"
	 "  --gamma G                     penalty weight (prune.gamma)\n"
	 "  --steps N                     steps learning the widths (prune.steps)\n"
	 "  --set prune.KEY=V             any other key of the prune section\n"
	 "  --quiet                       no progress lines\n"},
	{"generate",
	 "usage: sfp generate --config FILE --checkpoint CKPT|DIR [--prompt TEXT] [--tokens N]\n"
	 "                    [--temperature T] [--seed S] [--set section.key=value ...]\n"
	 "  text from a byte-level token model (data.dataset tokens): the prompt, then N\n"
	 "  (default 200) bytes sampled at temperature T (default 1; 0 = the most likely)\n"
	 "  with seed S (default 1); bytes that are not UTF-8 text are shown as \\xNN\n"},
	{"plan",
	 "usage: sfp plan --config FILE [--set section.key=value ...] [--batch N]\n"
	 "                [--hosts 2,4,...] [--links GBIT,...] [--alpha-us A] [--link-efficiency F]\n"
	 "                [--grad-e E] [--grad-m M] [--no-gecko] [--compute-ms MS]\n"
	 "  the scaling model (docs/scaling.md): measures one host's training step at the\n"
	 "  per-host batch N (default the config's), when backward finishes each gradient\n"
	 "  bucket, and the gradient containers (default e4 m2 + Gecko: bits, GB/s); then\n"
	 "  predicts the step on each host count and link rate (Gbit/s; default 1,10,100)\n"
	 "  for ring, tree and hierarchical all-reduce, float32 and sfp, with the exchange\n"
	 "  after and behind backward, and the link rate below which sfp's step is faster.\n"
	 "  Links: latency A us (default 20), F of their rate (default 0.9); --compute-ms\n"
	 "  replaces the measured step (e.g. one measured on the target machine)\n"},
	{"report", "usage: sfp report LOG.jsonl [--png OUT.png]\n"
		   "  the width records of a metrics log: evolution table per tensor, footprint\n"
		   "  reduction against float32, and a PNG (default LOG.jsonl.png)\n"},
	{"dataset", "usage: sfp dataset fmnist [--split train|t10k] [--count N] OUT.npy\n"
		    "  Fashion-MNIST images as float32 N x 28 x 28 scaled to [0, 1]\n"
		    "usage: sfp dataset text FILE... --out DIR [--val-fraction F] [--token-bytes 1|2]\n"
		    "  the files' bytes in the given order as tokens (vocabulary 256): the last\n"
		    "  F (default 0.1, at most 0.9) into DIR/val.bin, the rest into DIR/train.bin,\n"
		    "  each id as uint16 little-endian (default) or uint8; for data.dataset tokens\n"},
};

static const char *help_for(const char *cmd)
{
	for (size_t i = 0; i < sizeof cmd_help / sizeof cmd_help[0]; i++)
		if (!strcmp(cmd, cmd_help[i].name))
			return cmd_help[i].text;
	return NULL;
}

/* `s` as a JSON string literal (quotes, backslashes and controls escaped). */
static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch < 0x20)
			fprintf(f, "\\u%04x", ch);
		else
			fputc(ch, f);
	}
	fputc('"', f);
}

static int fail(int rc, const char *what, const char *path, const sfp_error *err)
{
	if (path)
		fprintf(stderr, "sfp: cannot %s '%s': %s: %s\n", what, path, sfp_strerror(rc),
			err->msg);
	else
		fprintf(stderr, "sfp: cannot %s: %s: %s\n", what, sfp_strerror(rc), err->msg);
	return sfp_exit_code(rc);
}

__attribute__((format(printf, 2, 0))) static int usage_error_v(const char *cmd, const char *fmt,
								va_list ap)
{
	fprintf(stderr, "sfp: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n(run 'sfp help%s%s' for usage)\n", cmd ? " " : "", cmd ? cmd : "");
	return SFP_EXIT_USAGE;
}

int sfp_tool_usage(const char *cmd, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	const int rc = usage_error_v(cmd, fmt, ap);
	va_end(ap);
	return rc;
}

__attribute__((format(printf, 1, 2))) static int usage_error(const char *fmt, ...)
{
	va_list ap;
	int rc;
	va_start(ap, fmt);
	rc = usage_error_v(NULL, fmt, ap);
	va_end(ap);
	return rc;
}

/* Place a positional argument in the first free slot (second may be NULL
 * for commands that take one); a usage error when both are taken. */
static int positional(const char *arg, const char **first, const char **second)
{
	if (arg[0] == '-' && arg[1])
		return usage_error("unknown option '%s'", arg);
	if (!*first)
		*first = arg;
	else if (second && !*second)
		*second = arg;
	else
		return usage_error("unexpected argument '%s'", arg);
	return SFP_EXIT_OK;
}

/* Index of val in the NULL-terminated names, or -1. */
static int parse_choice(const char *val, const char *const *names)
{
	for (int i = 0; names[i]; i++)
		if (!strcmp(val, names[i]))
			return i;
	return -1;
}

/* Fetch the value of option argv[*i]; NULL (and a message) if missing. */
static const char *optval(int argc, char **argv, int *i)
{
	if (*i + 1 >= argc) {
		fprintf(stderr, "sfp: option '%s' needs a value\n", argv[*i]);
		return NULL;
	}
	return argv[++*i];
}

static int apply_isa(sfp_codec *c, const char *name)
{
	int isa = sfp_isa_parse(name);
	if (isa < 0)
		return usage_error("unknown --isa '%s' (scalar, avx2 or avx512)", name);
	if (sfp_codec_set_isa(c, isa) < 0) {
		fprintf(stderr, "sfp: this CPU cannot run --isa %s (best: %s)\n", name,
			sfp_isa_name(sfp_cpu_isa()));
		return SFP_EXIT_USAGE;
	}
	return SFP_EXIT_OK;
}

static int cmd_encode(int argc, char **argv)
{
	sfp_params p;
	uint64_t e = 0, m = 99, v;
	int have_e = 0, have_m = 0, rc;
	const char *in = NULL, *out = NULL, *isa = NULL;
	sfp_params_init(&p, 8, 23);
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *val;
		if (!strcmp(a, "-e") || !strcmp(a, "-m") || !strcmp(a, "--seed") ||
		    !strcmp(a, "--rounding") || !strcmp(a, "--window-top") ||
		    !strcmp(a, "--underflow") || !strcmp(a, "--overflow") || !strcmp(a, "--isa") ||
		    !strcmp(a, "--bias")) {
			if (!(val = optval(argc, argv, &i)))
				return SFP_EXIT_USAGE;
			if (!strcmp(a, "-e")) {
				if (sfp_parse_u64(val, 1, 8, &e) < 0)
					return usage_error("-e must be an integer in 1..8, not '%s'", val);
				have_e = 1;
			} else if (!strcmp(a, "-m")) {
				if (sfp_parse_u64(val, 0, 23, &m) < 0)
					return usage_error("-m must be an integer in 0..23, not '%s'", val);
				have_m = 1;
			} else if (!strcmp(a, "--seed")) {
				if (sfp_parse_u64(val, 0, UINT32_MAX, &v) < 0)
					return usage_error("--seed must be an integer in 0..2^32-1, not '%s'", val);
				p.seed = (uint32_t)v;
			} else if (!strcmp(a, "--rounding")) {
				/* the names in enum sfp_rounding order */
				static const char *const names[] = {"nearest", "stochastic", NULL};
				if ((p.rounding = parse_choice(val, names)) < 0)
					return usage_error("--rounding must be nearest or stochastic, not '%s'", val);
			} else if (!strcmp(a, "--window-top")) {
				if (sfp_parse_u64(val, 1, 254, &v) < 0)
					return usage_error("--window-top must be a biased exponent in 1..254, not '%s'", val);
				p.window = SFP_WINDOW_FIXED;
				p.exp_hi = (unsigned)v;
			} else if (!strcmp(a, "--underflow")) {
				static const char *const names[] = {"zero", "min", NULL};
				if ((p.underflow = parse_choice(val, names)) < 0)
					return usage_error("--underflow must be zero or min, not '%s'", val);
			} else if (!strcmp(a, "--overflow")) {
				static const char *const names[] = {"error", "saturate", NULL};
				if ((p.overflow = parse_choice(val, names)) < 0)
					return usage_error("--overflow must be error or saturate, not '%s'", val);
			} else if (!strcmp(a, "--bias")) {
				/* the names in enum sfp_bias order */
				static const char *const names[] = {"off", "tensor", "channel", NULL};
				if ((p.bias = parse_choice(val, names)) < 0)
					return usage_error("--bias must be off, tensor or channel, not '%s'", val);
			} else {
				isa = val;
			}
		} else if (!strcmp(a, "--gecko")) {
			p.gecko = 1;
		} else if (!strcmp(a, "--shift")) {
			p.shift = 1;
		} else if (positional(a, &in, &out) != SFP_EXIT_OK) {
			return SFP_EXIT_USAGE;
		}
	}
	if (!have_e || !have_m || !in || !out)
		return usage_error("%s", "usage: sfp encode -e E -m M [options] IN.npy OUT.sfpt");
	p.e = (unsigned)e;
	p.m = (unsigned)m;

	sfp_error err;
	sfp_npy a;
	sfp_codec *c = sfp_codec_create();
	uint8_t *buf = NULL;
	int ret = SFP_EXIT_FAIL;
	if (!c) {
		fprintf(stderr, "sfp: out of memory\n");
		return SFP_EXIT_FAIL;
	}
	if (isa && (ret = apply_isa(c, isa)) != SFP_EXIT_OK)
		goto out_codec;
	rc = sfp_npy_read(in, &a, &err);
	if (rc < 0) {
		fprintf(stderr, "sfp: %s\n", err.msg);
		ret = sfp_exit_code(rc);
		goto out_codec;
	}
	size_t cap = sfp_encode_bound_params(a.count, a.shape, a.ndim, &p), w;
	buf = malloc(cap);
	if (!buf) {
		fprintf(stderr, "sfp: out of memory\n");
		goto out;
	}
	rc = sfp_encode(c, buf, cap, &w, a.data, a.count, a.shape, a.ndim, &p, &err);
	if (rc < 0) {
		ret = fail(rc, "encode", in, &err);
		goto out;
	}
	rc = sfp_file_write_atomic(out, buf, w, &err);
	if (rc < 0) {
		fprintf(stderr, "sfp: %s\n", err.msg);
		ret = SFP_EXIT_FAIL;
		goto out;
	}
	ret = SFP_EXIT_OK;
out:
	free(buf);
	sfp_npy_release(&a);
out_codec:
	sfp_codec_free(c);
	return ret;
}

/* The container file `in` into *buf (the caller frees it) and its header
 * into *info; `whole`: bytes after the container are an error. Returns an
 * exit code, the message printed. */
static int read_container(const char *in, const char *verb, int whole, void **buf, size_t *len,
			  sfp_info *info)
{
	sfp_error err;
	int rc = sfp_file_read(in, buf, len, &err);
	if (rc < 0) {
		fprintf(stderr, "sfp: %s\n", err.msg);
		return sfp_exit_code(rc);
	}
	rc = sfp_inspect(*buf, *len, info, &err);
	if (rc == SFP_OK && whole && *len != info->total_bytes)
		rc = sfp_error_set(&err, SFP_ECORRUPT, "%zu trailing bytes", *len - info->total_bytes);
	return rc < 0 ? fail(rc, verb, in, &err) : SFP_EXIT_OK;
}

static int cmd_decode(int argc, char **argv)
{
	const char *in = NULL, *out = NULL, *isa = NULL;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--isa")) {
			if (!(isa = optval(argc, argv, &i)))
				return SFP_EXIT_USAGE;
		} else if (positional(argv[i], &in, &out) != SFP_EXIT_OK) {
			return SFP_EXIT_USAGE;
		}
	}
	if (!in || !out)
		return usage_error("%s", "usage: sfp decode [--isa L] IN.sfpt OUT.npy");

	sfp_error err;
	sfp_info info;
	void *buf = NULL;
	size_t len;
	float *y = NULL;
	int ret = SFP_EXIT_FAIL, rc;
	sfp_codec *c = sfp_codec_create();
	if (!c)
		return SFP_EXIT_FAIL;
	if (isa && (ret = apply_isa(c, isa)) != SFP_EXIT_OK)
		goto out;
	if ((ret = read_container(in, "decode", 0, &buf, &len, &info)) != SFP_EXIT_OK)
		goto out;
	ret = SFP_EXIT_FAIL;
	y = malloc(info.count ? info.count * sizeof(float) : 4);
	if (!y) {
		fprintf(stderr, "sfp: out of memory for %" PRIu64 " values\n", info.count);
		goto out;
	}
	rc = sfp_decode(c, y, info.count, buf, len, &info, &err);
	if (rc < 0) {
		ret = fail(rc, "decode", in, &err);
		goto out;
	}
	rc = sfp_npy_write(out, y, info.shape, info.ndim, &err);
	if (rc < 0) {
		fprintf(stderr, "sfp: %s\n", err.msg);
		goto out;
	}
	ret = SFP_EXIT_OK;
out:
	free(buf);
	free(y);
	sfp_codec_free(c);
	return ret;
}

static const char *coder_name(unsigned c)
{
	return c == SFP_EXP_RAW ? "raw" : c == SFP_EXP_GECKO ? "gecko" : "stored";
}

static const char *variant_name(unsigned v)
{
	switch (v) {
	case SFP_GECKO_DELTA: return "delta";
	case SFP_GECKO_ANS0: return "ans0";
	case SFP_GECKO_ANS1: return "ans1";
	default: return "none";
	}
}

/* What `sfp inspect` works out beyond the header (sfp_info). */
typedef struct inspect_stats {
	double H;         /* entropy of the exponent codes, bits */
	double gecko_bpe; /* Gecko bits per exponent: the stream's own, or what Gecko would give */
	unsigned gvar;    /* the Gecko variant those bits are for */
	double bpv;       /* bits per value (0 for an empty tensor) */
	double zero_frac;
} inspect_stats;

/* Gecko bits per exponent of `codes` as the stream has them, or, for
 * another exponent coder, as Gecko would encode them. */
static int inspect_gecko(const sfp_info *info, const uint8_t *codes, inspect_stats *st,
			 sfp_error *err)
{
	st->gvar = info->gecko_variant;
	st->gecko_bpe = 0;
	if (info->exp_coder == SFP_EXP_GECKO) {
		st->gecko_bpe = info->count ? 8.0 * (double)info->exp_bytes / (double)info->count : 0;
		return SFP_OK;
	}
	if (!info->count)
		return SFP_OK;
	size_t gcap = sfp_gecko_bound(info->count, info->e), wb = sfp_gecko_work_bytes(info->count), gw;
	sfp_gecko_opts o;
	sfp_gecko_opts_init(&o);
	uint8_t *gbuf = malloc(gcap);
	void *work = malloc(wb);
	int rc = SFP_OK;
	if (!gbuf || !work) {
		rc = sfp_error_set(err, SFP_ENOMEM, "out of memory");
		goto out;
	}
	rc = sfp_gecko_encode(gbuf, gcap, &gw, codes, info->count, info->e, &o, sfp_cpu_isa(), work,
			      wb, err);
	if (rc < 0)
		goto out;
	st->gecko_bpe = 8.0 * (double)gw / (double)info->count;
	st->gvar = (unsigned)sfp_gecko_variant_of(gbuf, gw);
out:
	free(gbuf);
	free(work);
	return rc;
}

/* One JSON object; an empty tensor's bits per value and ratio are null. */
static void inspect_print_json(const char *in, const sfp_info *info, const inspect_stats *st)
{
	char bpv_s[32] = "null", ratio_s[32] = "null";
	if (info->count) {
		snprintf(bpv_s, sizeof bpv_s, "%.6f", st->bpv);
		snprintf(ratio_s, sizeof ratio_s, "%.6f", 32.0 / st->bpv);
	}
	printf("{\"file\": ");
	json_str(stdout, in);
	printf(", \"version\": %u, \"count\": %" PRIu64 ", \"shape\": [", info->version,
	       info->count);
	for (unsigned i = 0; i < info->ndim; i++)
		printf("%s%" PRIu64, i ? ", " : "", info->shape[i]);
	printf("], \"e\": %u, \"m\": %u, \"exp_lo\": %u, \"exp_hi\": %u, \"window_lo_pow2\": %d, "
	       "\"window_hi_pow2\": %d, \"flags\": %u, "
	       "\"exp_coder\": \"%s\", \"gecko_variant\": \"%s\", \"total_bytes\": %zu, "
	       "\"header_bytes\": %zu, \"mant_bytes\": %zu, \"sign_bytes\": %zu, "
	       "\"exc_bytes\": %zu, \"exp_bytes\": %zu, \"bits_per_value\": %s, "
	       "\"ratio_vs_fp32\": %s, \"nnz\": %" PRIu64 ", \"zero_fraction\": %.6f, "
	       "\"exceptions\": %" PRIu64 ", \"exp_entropy_bits\": %.6f, "
	       "\"gecko_bits_per_exp\": %.6f, \"side_bytes\": %zu, \"rho_code\": %u, "
	       "\"bias_groups\": %" PRIu64 "}\n",
	       info->e, info->m, info->exp_lo, info->exp_hi, (int)info->exp_lo - 127,
	       (int)info->exp_hi - 127, info->flags, coder_name(info->exp_coder),
	       variant_name(info->exp_coder == SFP_EXP_GECKO ? info->gecko_variant : 0),
	       info->total_bytes, info->header_bytes, info->mant_bytes, info->sign_bytes,
	       info->exc_bytes, info->exp_bytes, bpv_s, ratio_s, info->nnz, st->zero_frac,
	       info->n_exceptions, st->H, st->gecko_bpe, info->side_bytes, info->rho, info->bias_groups);
}

static void inspect_print_text(const char *in, const sfp_info *info, const inspect_stats *st)
{
	printf("file            %s\n", in);
	printf("shape           (");
	for (unsigned i = 0; i < info->ndim; i++)
		printf("%s%" PRIu64, i ? ", " : "", info->shape[i]);
	printf(")  count %" PRIu64 "\n", info->count);
	printf("container       e = %u, m = %u  (1 + %u + %u bits per nonzero value)\n", info->e,
	       info->m, info->e, info->m);
	printf("window          biased exponents %u..%u  (2^%d .. 2^%d)\n", info->exp_lo,
	       info->exp_hi, (int)info->exp_lo - 127, (int)info->exp_hi - 127);
	printf("flags           0x%04x%s%s%s%s%s%s%s%s\n", info->flags,
	       info->flags & SFP_FLAG_SIGN_POS ? " sign-pos" : "",
	       info->flags & SFP_FLAG_SIGN_NEG ? " sign-neg" : "",
	       info->flags & SFP_FLAG_STOCHASTIC ? " stochastic" : "",
	       info->flags & SFP_FLAG_UNDER_MIN ? " underflow-min" : "",
	       info->flags & SFP_FLAG_SATURATE ? " saturate" : "",
	       info->flags & SFP_FLAG_FIXED_WINDOW ? " fixed-window" : "",
	       info->flags & SFP_FLAG_SHIFT ? " shift" : "",
	       info->flags & SFP_FLAG_BIAS_CHANNEL ? " bias-channel"
	       : info->flags & SFP_FLAG_BIAS	  ? " bias"
						  : "");
	printf("exponent coder  %s%s%s\n", coder_name(info->exp_coder),
	       info->exp_coder == SFP_EXP_GECKO ? " / " : "",
	       info->exp_coder == SFP_EXP_GECKO ? variant_name(info->gecko_variant) : "");
	printf("bytes           %zu total: header %zu, mantissa %zu, sign %zu, exceptions %zu, "
	       "exponent %zu, refinement %zu\n",
	       info->total_bytes, info->header_bytes, info->mant_bytes, info->sign_bytes,
	       info->exc_bytes, info->exp_bytes, info->side_bytes);
	if (info->side_bytes)
		printf("refinement      shift step %u/512, %" PRIu64 " bias offset%s\n",
		       info->rho, info->bias_groups, info->bias_groups == 1 ? "" : "s");
	printf("bits per value  %.4f  (ratio %.3f vs float32)\n", st->bpv,
       info->count ? 32.0 / st->bpv : 0);
	printf("nonzero         %" PRIu64 "  (%.2f%% zero), exceptions %" PRIu64 "\n", info->nnz,
	       100.0 * st->zero_frac, info->n_exceptions);
	printf("exponent codes  entropy %.4f bits; gecko %.4f bits per exponent (%s%s)\n",
	       st->H, st->gecko_bpe, variant_name(st->gvar),
	       info->exp_coder == SFP_EXP_GECKO ? "" : ", if enabled");
}

static int cmd_inspect(int argc, char **argv)
{
	const char *in = NULL;
	int json = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json"))
			json = 1;
		else if (positional(argv[i], &in, NULL) != SFP_EXIT_OK)
			return SFP_EXIT_USAGE;
	}
	if (!in)
		return usage_error("%s", "usage: sfp inspect [--json] IN.sfpt");

	sfp_error err;
	sfp_info info;
	void *buf = NULL;
	size_t len;
	uint8_t *codes = NULL;
	int ret = SFP_EXIT_FAIL, rc;
	sfp_codec *c = sfp_codec_create();
	if (!c)
		return SFP_EXIT_FAIL;
	if ((ret = read_container(in, "inspect", 1, &buf, &len, &info)) != SFP_EXIT_OK)
		goto out;
	ret = SFP_EXIT_FAIL;
	codes = malloc(info.count ? info.count : 1);
	if (!codes)
		goto out;
	inspect_stats st = {0};
	rc = sfp_decode_codes(c, codes, info.count, buf, len, &err);
	if (rc == SFP_OK)
		rc = inspect_gecko(&info, codes, &st, &err);
	if (rc < 0) {
		ret = fail(rc, "inspect", in, &err);
		goto out;
	}
	st.H = sfp_entropy_u8(codes, info.count);
	double n = info.count ? (double)info.count : 1;
	st.bpv = info.count ? 8.0 * (double)info.total_bytes / n : 0;
	st.zero_frac = info.count ? 1.0 - (double)(info.nnz + info.n_exceptions) / n : 0;
	if (json)
		inspect_print_json(in, &info, &st);
	else
		inspect_print_text(in, &info, &st);
	ret = SFP_EXIT_OK;
out:
	free(buf);
	free(codes);
	sfp_codec_free(c);
	return ret;
}

#define MAX_TEXT_FILES 1024

/* sfp dataset text FILE... --out DIR [--val-fraction F] [--token-bytes 1|2] */
static int cmd_dataset_text(int argc, char **argv)
{
	const char *files[MAX_TEXT_FILES], *dir = NULL;
	int nfiles = 0;
	double frac = 0.1;
	uint64_t tb = 2;
	for (int i = 1; i < argc; i++) {
		const char *val;
		if (!strcmp(argv[i], "--out")) {
			if (!(dir = optval(argc, argv, &i)))
				return SFP_EXIT_USAGE;
		} else if (!strcmp(argv[i], "--val-fraction")) {
			char *end;
			if (!(val = optval(argc, argv, &i)))
				return SFP_EXIT_USAGE;
			frac = strtod(val, &end);
			if (!val[0] || *end || !(frac > 0.0 && frac <= 0.9))
				return usage_error("--val-fraction must be a number in (0, 0.9], not '%s'",
						   val);
		} else if (!strcmp(argv[i], "--token-bytes")) {
			if (!(val = optval(argc, argv, &i)))
				return SFP_EXIT_USAGE;
			if (sfp_parse_u64(val, 1, 2, &tb) < 0)
				return usage_error("--token-bytes must be 1 or 2, not '%s'", val);
		} else if (argv[i][0] == '-' && argv[i][1]) {
			return usage_error("unknown option '%s'", argv[i]);
		} else if (nfiles == MAX_TEXT_FILES) {
			return usage_error("more than %d files", MAX_TEXT_FILES);
		} else {
			files[nfiles++] = argv[i];
		}
	}
	if (!nfiles || !dir)
		return usage_error("%s", "usage: sfp dataset text FILE... --out DIR "
				   "[--val-fraction F] [--token-bytes 1|2]");
	sfp_error err;
	int64_t nt, nv;
	int rc = sfp_tokens_write_text(files, nfiles, dir, (float)frac, (int)tb, &nt, &nv, &err);
	if (rc < 0) {
		fprintf(stderr, "sfp: %s\n", err.msg);
		return sfp_exit_code(rc);
	}
	printf("%s/train.bin: %" PRId64 " tokens\n%s/val.bin: %" PRId64
	       " tokens\nvocabulary 256 (bytes), %d byte%s a token\n",
	       dir, nt, dir, nv, (int)tb, tb == 1 ? "" : "s");
	return SFP_EXIT_OK;
}

static int cmd_dataset(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "text"))
		return cmd_dataset_text(argc - 1, argv + 1);
	const char *split = "t10k", *out = NULL, *name = NULL;
	uint64_t count = 0;
	for (int i = 1; i < argc; i++) {
		const char *val;
		if (!strcmp(argv[i], "--split")) {
			if (!(split = optval(argc, argv, &i)))
				return SFP_EXIT_USAGE;
		} else if (!strcmp(argv[i], "--count")) {
			if (!(val = optval(argc, argv, &i)))
				return SFP_EXIT_USAGE;
			if (sfp_parse_u64(val, 1, 100000000, &count) < 0)
				return usage_error("--count must be a positive integer, not '%s'", val);
		} else if (positional(argv[i], &name, &out) != SFP_EXIT_OK) {
			return SFP_EXIT_USAGE;
		}
	}
	if (!name || !out)
		return usage_error("%s", "usage: sfp dataset fmnist [--split train|t10k] [--count N] OUT.npy");
	if (strcmp(name, "fmnist") != 0)
		return usage_error("unknown dataset '%s' (fmnist, text)", name);
	sfp_idx img, lab;
	sfp_error err;
	int rc = sfp_fmnist_load(NULL, split, &img, &lab, &err);
	if (rc < 0) {
		fprintf(stderr, "sfp: %s\n", err.msg);
		return sfp_exit_code(rc);
	}
	uint64_t n = img.dims[0];
	int ret = SFP_EXIT_FAIL;
	float *x = NULL;
	if (count > n) {
		ret = usage_error("--count %lu is more than the %" PRIu64 " images of split '%s'",
				  count, n, split);
		goto out;
	}
	if (count)
		n = count;
	x = malloc(n * 784 * sizeof(float));
	if (!x) {
		fprintf(stderr, "sfp: out of memory for %" PRIu64 " images\n", n);
	} else {
		for (uint64_t i = 0; i < n * 784; i++)
			x[i] = (float)img.data[i] / 255.0f;
		uint64_t shape[3] = {n, 28, 28};
		rc = sfp_npy_write(out, x, shape, 3, &err);
		if (rc < 0)
			fprintf(stderr, "sfp: %s\n", err.msg);
		else
			ret = SFP_EXIT_OK;
	}
out:
	free(x);
	sfp_idx_release(&img);
	sfp_idx_release(&lab);
	return ret;
}

#define MAX_SETS 256

static int cmd_eval(int argc, char **argv)
{
	const char *config = NULL, *ckpt = NULL, *model = NULL, *sets[MAX_SETS];
	int nsets = 0;
	for (int i = 1; i < argc; i++) {
		const char *val;
		if (!strcmp(argv[i], "--config") || !strcmp(argv[i], "--checkpoint") ||
		    !strcmp(argv[i], "--model") || !strcmp(argv[i], "--set")) {
			if (!(val = optval(argc, argv, &i)))
				return SFP_EXIT_USAGE;
			if (!strcmp(argv[i - 1], "--config"))
				config = val;
			else if (!strcmp(argv[i - 1], "--checkpoint"))
				ckpt = val;
			else if (!strcmp(argv[i - 1], "--model"))
				model = val;
			else if (nsets == MAX_SETS)
				return usage_error("more than %d --set options", MAX_SETS);
			else
				sets[nsets++] = val;
		} else {
			return usage_error("unexpected argument '%s'", argv[i]);
		}
	}
	if (!config || !ckpt == !model)
		return usage_error("%s", "usage: sfp eval --config FILE --checkpoint CKPT|DIR\n"
					 "       sfp eval --config FILE --model MODEL.sfpq");
	if (model)
		return sfp_eval_model(config, model, sets, nsets);
	static sfp_config cfg;
	sfp_error err;
	sfp_trainer *t = NULL;
	char path[SFP_CFG_PATH + 64];
	int rc = sfp_config_load_all(&cfg, config, sets, nsets, &err);
	cfg.log.metrics[0] = 0; /* evaluation writes no training log */
	float acc = 0, loss = 0;
	if (rc == SFP_OK)
		rc = sfp_tool_eval_checkpoint(&t, &cfg, config, ckpt, path, sizeof path, &acc, &loss,
					      &err);
	if (rc == SFP_OK && sfp_trainer_token_data(t))
		printf("val_loss %.4f  perplexity %.2f  token_acc %.4f  (checkpoint '%s', step %" PRId64
		       ")\n",
		       (double)loss, exp((double)loss), (double)acc, path, sfp_trainer_step(t));
	else if (rc == SFP_OK)
		printf("test_acc %.4f  test_loss %.4f  (checkpoint '%s', step %" PRId64 ")\n",
		       (double)acc, (double)loss, path, sfp_trainer_step(t));
	else
		fprintf(stderr, "sfp: %s\n", err.msg);
	sfp_trainer_free(t);
	return rc == SFP_OK ? SFP_EXIT_OK : sfp_exit_code(rc);
}

/*
 * `sfp bench VERB ...` runs sfp-bench, the binary beside this one (it links
 * the peer codecs, sfp does not): exec'd with argv = {path, VERB, ...}, so
 * its output and exit code are the command's. Returns only on failure.
 */
static int run_bench(char **argv)
{
	char self[4096], path[4096 + 16];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	if (n <= 0) {
		fprintf(stderr, "sfp: cannot find this program's folder (/proc/self/exe): %s\n",
			strerror(errno));
		return SFP_EXIT_FAIL;
	}
	self[n] = 0;
	snprintf(path, sizeof path, "%s/sfp-bench", dirname(self));
	argv[1] = path; /* argv[1..] = {path, VERB, ...}, argv[argc] = NULL */
	execv(path, argv + 1);
	fprintf(stderr, "sfp: cannot run '%s': %s (sfp bench needs sfp-bench beside sfp; "
			"'make' builds both)\n",
		path, strerror(errno));
	return SFP_EXIT_FAIL;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fputs(usage_text, stderr);
		return SFP_EXIT_USAGE;
	}
	const char *cmd = argv[1];
	for (int i = 2; i < argc; i++)
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			const char *h = help_for(cmd);
			fputs(h ? h : usage_text, stdout);
			return SFP_EXIT_OK;
		}
	if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
		printf("sfp %s (container format %d, %s)\n", SFP_VERSION, SFP_FORMAT_VERSION,
		       sfp_isa_name(sfp_cpu_isa()));
		return SFP_EXIT_OK;
	}
	if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
		if (argc >= 3) {
			const char *h = help_for(argv[2]);
			if (!h)
				return usage_error("no help for unknown command '%s'", argv[2]);
			fputs(h, stdout);
		} else {
			fputs(usage_text, stdout);
		}
		return SFP_EXIT_OK;
	}
	if (!strcmp(cmd, "encode"))
		return cmd_encode(argc - 1, argv + 1);
	if (!strcmp(cmd, "decode"))
		return cmd_decode(argc - 1, argv + 1);
	if (!strcmp(cmd, "inspect"))
		return cmd_inspect(argc - 1, argv + 1);
	if (!strcmp(cmd, "dataset"))
		return cmd_dataset(argc - 1, argv + 1);
	if (!strcmp(cmd, "eval"))
		return cmd_eval(argc - 1, argv + 1);
	if (!strcmp(cmd, "export"))
		return sfp_export_main(argc - 1, argv + 1);
	if (!strcmp(cmd, "generate"))
		return sfp_generate_main(argc - 1, argv + 1);
	if (!strcmp(cmd, "report"))
		return sfp_report_main(argc - 1, argv + 1);
	if (!strcmp(cmd, "plan"))
		return sfp_plan_main(argc - 1, argv + 1);
	if (!strcmp(cmd, "bench"))
		return run_bench(argv);
	return usage_error("unknown command '%s'", cmd);
}
