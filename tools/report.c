/*
 * report.c -- `sfp report LOG [--png OUT]`: the learned widths in a metrics
 * log (design.md §4 records) as an evolution table, the footprint reduction
 * against float32, and a PNG with the mantissa and exponent width of every
 * tensor over the steps (lib/plot).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sfp/plot.h"
#include "tools/tools.h"

#define MAX_TENSORS 64
#define MAX_POINTS 4096

typedef struct series {
	char layer[64], kind[16];
	int n;
	double step[MAX_POINTS], ne[MAX_POINTS], nm[MAX_POINTS];
	unsigned e[MAX_POINTS], m[MAX_POINTS];
} series;

/* The value after "key": in a flat JSON object line; 0 if absent. */
static const char *field(const char *line, const char *key)
{
	char pat[80];
	snprintf(pat, sizeof pat, "\"%s\":", key);
	const char *p = strstr(line, pat);
	return p ? p + strlen(pat) : NULL;
}

static int get_num(const char *line, const char *key, double *v)
{
	const char *p = field(line, key);
	char *end;
	if (!p)
		return 0;
	*v = strtod(p, &end);
	return end != p;
}

static int get_str(const char *line, const char *key, char *buf, size_t cap)
{
	const char *p = field(line, key);
	if (!p || *p != '"')
		return 0;
	p++;
	size_t i = 0;
	/* the log escapes quotes and backslashes (\" \\); other escapes stay as written */
	while (*p && *p != '"' && i + 1 < cap) {
		if (p[0] == '\\' && (p[1] == '"' || p[1] == '\\'))
			p++;
		buf[i++] = *p++;
	}
	buf[i] = 0;
	return *p == '"';
}

static const uint32_t palette[] = {0xe6194b, 0x3cb44b, 0x4363d8, 0xf58231, 0x911eb4, 0x42d4f4,
				   0xf032e6, 0x9a6324, 0x469990, 0x800000, 0x808000, 0x000075,
				   0xbfef45, 0xdcbeff, 0xaaffc3, 0xffd8b1};
#define NPAL (int)(sizeof palette / sizeof palette[0])

/* One panel: value `which` (0 mantissa, 1 exponent) of every series. */
static void panel(sfp_canvas *c, int x0, int y0, int w, int h, series *s, int ns, int which,
		  double smax, const char *title)
{
	double vmax = which ? 8.0 : 23.0;
	double top = 0.0;
	for (int i = 0; i < ns; i++)
		for (int k = 0; k < s[i].n; k++) {
			double v = which ? s[i].ne[k] : s[i].nm[k];
			if (v > top)
				top = v;
		}
	vmax = top < 1.0 ? 1.0 : (double)(int)(top + 1.0);
	sfp_canvas_rect(c, x0, y0, x0 + w, y0 + h, 0xffffff);
	for (int b = 0; b <= (int)vmax; b++) {
		int y = y0 + h - (int)((double)b / vmax * h);
		sfp_canvas_line(c, x0, y, x0 + w, y, b ? 0xdddddd : 0x000000, 1);
		char t[16];
		snprintf(t, sizeof t, "%d", b);
		if (vmax <= 12 || b % 2 == 0)
			sfp_canvas_text(c, x0 - 16, y - 3, t, 0x000000, 1);
	}
	sfp_canvas_line(c, x0, y0, x0, y0 + h, 0x000000, 1);
	sfp_canvas_text(c, x0 + 4, y0 - 18, title, 0x000000, 2);
	for (int i = 0; i < ns; i++)
		for (int k = 1; k < s[i].n; k++) {
			double a = which ? s[i].ne[k - 1] : s[i].nm[k - 1];
			double b = which ? s[i].ne[k] : s[i].nm[k];
			int xa = x0 + (int)(s[i].step[k - 1] / smax * w);
			int xb = x0 + (int)(s[i].step[k] / smax * w);
			sfp_canvas_line(c, xa, y0 + h - (int)(a / vmax * h), xb,
					y0 + h - (int)(b / vmax * h), palette[i % NPAL], 2);
		}
}

static int write_plot(const char *path, series *s, int ns, sfp_error *err)
{
	const int W = 1000, PH = 300, LEG = 14 * ((ns + 1) / 2) + 20, H = 2 * PH + 120 + LEG;
	sfp_canvas c;
	SFP_TRY(sfp_canvas_init(&c, W, H, 0xf4f4f4, err));
	double smax = 1.0;
	for (int i = 0; i < ns; i++)
		if (s[i].n && s[i].step[s[i].n - 1] > smax)
			smax = s[i].step[s[i].n - 1];
	panel(&c, 40, 30, W - 60, PH, s, ns, 0, smax, "MANTISSA BITS PER TENSOR");
	panel(&c, 40, PH + 80, W - 60, PH, s, ns, 1, smax, "EXPONENT BITS PER TENSOR");
	char t[32];
	snprintf(t, sizeof t, "STEP %.0f", smax);
	sfp_canvas_text(&c, W - 20 - 6 * (int)strlen(t), 2 * PH + 84, t, 0x000000, 1);
	for (int i = 0; i < ns; i++) {
		int x = 40 + (i % 2) * 480, y = 2 * PH + 100 + (i / 2) * 14;
		sfp_canvas_rect(&c, x, y, x + 20, y + 6, palette[i % NPAL]);
		char name[96];
		snprintf(name, sizeof name, "%.60s %.15s", s[i].layer, s[i].kind);
		for (char *p = name; *p; p++)
			*p = (char)toupper((unsigned char)*p);
		sfp_canvas_text(&c, x + 28, y, name, 0x000000, 1);
	}
	int rc = sfp_png_write(path, &c, err);
	sfp_canvas_release(&c);
	return rc;
}

/* What a metrics log says: the width series per tensor, the footprint
 * records' first and last values, the last test accuracy. */
typedef struct report {
	series s[MAX_TENSORS];
	int ns;
	long lines, bad;
	double steps, acc;
	double first_fp, last_fp, last_red, last_packed, last_gecko, red_packed, red_gecko;
} report;

/* One width record into its tensor's series (a new tensor while there is room). */
static void add_width(report *r, const char *layer, const char *kind, double step, double e,
		      double m, double ne, double nm)
{
	int i;
	for (i = 0; i < r->ns; i++)
		if (!strcmp(r->s[i].layer, layer) && !strcmp(r->s[i].kind, kind))
			break;
	if (i == r->ns) {
		if (r->ns == MAX_TENSORS)
			return;
		snprintf(r->s[i].layer, sizeof r->s[i].layer, "%s", layer);
		snprintf(r->s[i].kind, sizeof r->s[i].kind, "%s", kind);
		r->ns++;
	}
	series *t = &r->s[i];
	if (t->n < MAX_POINTS) {
		const int k = t->n++;
		t->step[k] = step;
		t->ne[k] = ne;
		t->nm[k] = nm;
		t->e[k] = (unsigned)e;
		t->m[k] = (unsigned)m;
	}
}

static void read_log(FILE *f, report *r)
{
	char line[1024];
	r->acc = -1;
	while (fgets(line, sizeof line, f)) {
		r->lines++;
		double step, v;
		if (line[0] != '{' || !get_num(line, "step", &step)) {
			r->bad++;
			continue;
		}
		if (step > r->steps)
			r->steps = step;
		char layer[64], kind[16];
		double e, m, ne, nm;
		if (get_str(line, "layer", layer, sizeof layer) && get_str(line, "kind", kind, sizeof kind) &&
		    get_num(line, "e", &e) && get_num(line, "m", &m) && get_num(line, "n_e", &ne) &&
		    get_num(line, "n_m", &nm)) {
			add_width(r, layer, kind, step, e, m, ne, nm);
		} else if (get_num(line, "footprint_bits_per_value", &v)) {
			if (r->first_fp == 0)
				r->first_fp = v;
			r->last_fp = v;
			get_num(line, "reduction_vs_fp32", &r->last_red);
			get_num(line, "packed_bits_per_value", &r->last_packed);
			get_num(line, "packed_reduction_vs_fp32", &r->red_packed);
			get_num(line, "gecko_bits_per_value", &r->last_gecko);
			get_num(line, "gecko_reduction_vs_fp32", &r->red_gecko);
		} else if (get_num(line, "test_acc", &v)) {
			r->acc = v;
		}
	}
}

/* The table: packing widths at the first, 25/50/75% and last record, the
 * learned widths at the end; then the footprint and the accuracy. */
static void print_report(const report *r, const char *log)
{
	const series *s = r->s;
	printf("widths (packing e/m) per tensor, from '%s' (%ld lines%s)\n", log, r->lines,
	       r->bad ? ", some not records" : "");
	printf("%-14s %-12s", "layer", "kind");
	const double fr[5] = {0, 0.25, 0.5, 0.75, 1};
	for (int j = 0; j < 5; j++)
		printf(" %9s", j == 0 ? "first" : j == 4 ? "last" : j == 1 ? "25%" : j == 2 ? "50%" : "75%");
	printf("   learned n_e / n_m\n");
	for (int i = 0; i < r->ns; i++) {
		printf("%-14s %-12s", s[i].layer, s[i].kind);
		for (int j = 0; j < 5; j++) {
			int k = (int)(fr[j] * (s[i].n - 1) + 0.5);
			char cell[16];
			snprintf(cell, sizeof cell, "e%u m%u", s[i].e[k], s[i].m[k]);
			printf(" %9s", cell);
		}
		printf("   %.2f / %.2f\n", s[i].ne[s[i].n - 1], s[i].nm[s[i].n - 1]);
	}
	if (r->last_fp > 0)
		printf("footprint (weights + stored activations): %.2f -> %.2f bits per value; "
		       "%.2fx smaller than float32 (32 bits)\n",
		       r->first_fp, r->last_fp, r->last_red);
	if (r->last_packed > 0)
		printf("encoded containers at the last record: %.2f bits per value packed (%.2fx), "
		       "%.2f with Gecko (%.2fx)\n",
		       r->last_packed, r->red_packed, r->last_gecko, r->red_gecko);
	if (r->acc >= 0)
		printf("last test accuracy: %.4f (step %.0f)\n", r->acc, r->steps);
}

static int report_usage(void)
{
	fprintf(stderr, "usage: sfp report LOG.jsonl [--png OUT.png]\n");
	return SFP_EXIT_USAGE;
}

int sfp_report_main(int argc, char **argv)
{
	const char *log = NULL, *png = NULL;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--png") && i + 1 < argc)
			png = argv[++i];
		else if (argv[i][0] == '-' || log)
			return report_usage();
		else
			log = argv[i];
	}
	if (!log)
		return report_usage();
	FILE *f = fopen(log, "r");
	if (!f) {
		fprintf(stderr, "sfp: cannot open metrics log '%s'\n", log);
		return SFP_EXIT_USAGE;
	}
	static report r;
	memset(&r, 0, sizeof r);
	read_log(f, &r);
	fclose(f);
	if (r.ns == 0) {
		fprintf(stderr, "sfp: '%s' has no width records (train with bitlength.policy "
				"quantum, bitwave or fixed below 32 bits)\n", log);
		return SFP_EXIT_USAGE;
	}
	print_report(&r, log);
	char def[1100];
	if (!png) {
		snprintf(def, sizeof def, "%s.png", log);
		png = def;
	}
	sfp_error err;
	if (write_plot(png, r.s, r.ns, &err) < 0) {
		fprintf(stderr, "sfp: %s\n", err.msg);
		return SFP_EXIT_FAIL;
	}
	printf("plot: %s\n", png);
	return SFP_EXIT_OK;
}
