/*
 * fdcheck.c -- see fdcheck.h.
 */
#include "tests/util/fdcheck.h"

#include <math.h>
#include <stdio.h>

/* The central difference at *v (restored after) against `analytic`. */
static int fd_close(test_fd *fd, float *v, double analytic, double *numeric)
{
	const float keep = *v;
	*v = keep + fd->eps;
	const float lp = fd->loss(fd->ctx);
	*v = keep - fd->eps;
	const float lm = fd->loss(fd->ctx);
	*v = keep;
	const double n = ((double)lp - lm) / (2.0 * fd->eps), d = fabs(analytic - n);
	if (d > fd->maxdiff)
		fd->maxdiff = d;
	*numeric = n;
	fd->checked++;
	return d <= fd->atol + fd->rtol * fmax(fabs(analytic), fabs(n));
}

void test_fd_params(test_fd *fd, const char *what, sfp_model *m, const float *g, sfp_rng *r)
{
	float *p = sfp_model_params(m, NULL);
	for (int li = 0; li < sfp_model_n_layers(m); li++) {
		sfp_layer_info inf;
		sfp_model_layer(m, li, &inf);
		for (int k = 0; k < fd->samples && inf.nparams; k++) {
			const size_t j = inf.param_offset + (k == 0 ? 0 : sfp_rng_below(r, inf.nparams));
			double num;
			if (!fd_close(fd, &p[j], g[j], &num)) {
				fd->bad++;
				fprintf(stderr, "\n%s: layer %s param %zu: analytic %g numeric %g", what,
					inf.name, j - inf.param_offset, g[j], num);
			}
		}
	}
}

void test_fd_input(test_fd *fd, const char *what, float *x, const float *gx, size_t nx,
		   sfp_rng *r)
{
	for (int k = 0; k < fd->samples; k++) {
		const size_t j = sfp_rng_below(r, nx);
		double num;
		if (!fd_close(fd, &x[j], gx[j], &num)) {
			fd->bad++;
			fprintf(stderr, "\n%s: input %zu: analytic %g numeric %g", what, j, gx[j], num);
		}
	}
}
