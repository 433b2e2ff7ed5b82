/*
 * main.c -- sfpd's command line: argv -> sfpd_opts -> sfpd_run -> exit code
 * (0 stopped by a signal, 2 bad usage or unreadable history, 1 other
 * failures such as a port in use).
 */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/sfpd.h"


static const char *usage_text =
    "usage: sfpd [--http HOST:PORT] [--history FILE] [--token TOKEN] [--listen URL]\n"
    "\n"
    "The sfp coordinator daemon: keeps the workers' reports and serves them as\n"
    "Prometheus metrics (/metrics), JSON (/api/v1/...) and a live page (/).\n"
    "\n"
    "  --http HOST:PORT      serve HTTP here (default " SFPD_DEFAULT_HTTP "; port 0: any free)\n"
    "  --history FILE        keep the history in FILE and recover it at start\n"
    "  --token TOKEN         the job token workers must present (default: $SFP_TOKEN)\n"
    "  --listen URL          where workers connect, tcp://HOST:PORT\n"
    "  --max-points N        points kept per series before downsampling (default 4096)\n"
    "  --dead-after SECONDS  a silent worker is dead after this (default 30)\n"
    "  --simulate N          SIMULATION: N fake workers report made-up numbers into\n"
    "                        job 'simulation', to try the page and metrics (docs/sfpd.md)\n"
    "  --simulate-interval-ms MS  between two fake reports (default 200)\n"
    "  --help, --version\n";

static int usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "sfpd: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n(sfpd --help lists the options)\n");
	return SFP_EXIT_USAGE;
}

/* argv -> opts: -1 to go on, else the exit code (--help, --version, bad usage). */
static int parse_args(int argc, char **argv, sfpd_opts *o)
{
	uint64_t v;
	memset(o, 0, sizeof *o);
	o->http_addr = SFPD_DEFAULT_HTTP;
	o->token = getenv("SFP_TOKEN");
	o->simulate_ms = 200;
	sfp_stats_opts_default(&o->stats);
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			fputs(usage_text, stdout);
			return SFP_EXIT_OK;
		} else if (!strcmp(a, "--version")) {
			printf("sfpd %s\n", SFP_VERSION);
			return SFP_EXIT_OK;
		}
		if (a[0] != '-' || a[1] != '-')
			return usage("unexpected argument '%s'", a);
		if (!val)
			return usage("option '%s' needs a value", a);
		i++;
		if (!strcmp(a, "--http")) {
			o->http_addr = val;
		} else if (!strcmp(a, "--history")) {
			o->history = val;
		} else if (!strcmp(a, "--token")) {
			o->token = val;
		} else if (!strcmp(a, "--listen")) {
			if (!strstr(val, "://"))
				return usage(
				    "--listen '%s': expected a URL such as tcp://HOST:PORT", val);
			o->listen_url = val;
		} else if (!strcmp(a, "--max-points")) {
			if (sfp_parse_u64(val, 16, 1u << 24, &v) < 0)
				return usage("--max-points '%s': expected 16..16777216", val);
			o->stats.max_points = (uint32_t)v;
		} else if (!strcmp(a, "--dead-after")) {
			if (sfp_parse_u64(val, 1, 86400, &v) < 0)
				return usage("--dead-after '%s': expected 1..86400 seconds", val);
			o->stats.dead_after_ns = v * 1000000000ull;
		} else if (!strcmp(a, "--simulate")) {
			if (sfp_parse_u64(val, 1, 64, &v) < 0)
				return usage("--simulate '%s': expected 1..64 fake workers", val);
			o->simulate = (unsigned)v;
		} else if (!strcmp(a, "--simulate-interval-ms")) {
			if (sfp_parse_u64(val, 1, 3600000, &v) < 0)
				return usage("--simulate-interval-ms '%s': expected 1..3600000",
				             val);
			o->simulate_ms = (unsigned)v;
		} else {
			return usage("unknown option '%s'", a);
		}
	}
	if (o->token && !*o->token)
		o->token = NULL;
	return -1;
}

int main(int argc, char **argv)
{
	sfpd_opts o;
	sfp_error err;
	int code = parse_args(argc, argv, &o);
	if (code >= 0)
		return code;
	/* a client that goes away mid-response is an error code, not a signal */
	signal(SIGPIPE, SIG_IGN);
	int rc = sfpd_run(&o, &err);
	if (rc < 0) {
		fprintf(stderr, "sfpd: %s\n", err.msg);
		return sfp_exit_code(rc);
	}
	return SFP_EXIT_OK;
}
