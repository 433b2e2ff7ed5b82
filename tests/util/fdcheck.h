/*
 * fdcheck.h -- finite-difference gradient checks of a model, shared by the
 * engine's suites: central differences of a loss the suite supplies against
 * its analytic gradients, with the suite's named tolerances.
 */
#ifndef SFP_FDCHECK_H
#define SFP_FDCHECK_H

#include <stddef.h>

#include "sfp/nn.h"

/* The loss as a function of whatever the check perturbs (a training
 * forward of the suite's model and data). */
typedef float (*test_loss_fn)(void *ctx);

/* One check: its settings, then the running results. A coordinate is
 * close when |a - n| <= atol + rtol * max(|a|, |n|), n = (loss(v + eps) -
 * loss(v - eps)) / 2 eps. */
typedef struct test_fd {
	float eps;
	double atol, rtol;
	int samples; /* coordinates per layer, and of the input */
	test_loss_fn loss;
	void *ctx;
	double maxdiff; /* largest |a - n| so far */
	int checked, bad;
} test_fd;

/* `samples` coordinates of every layer's parameters (its first and random
 * others) against the gradients g (the parameter arena's layout); a
 * mismatch is printed, naming `what`, the layer and the values. */
void test_fd_params(test_fd *fd, const char *what, sfp_model *m, const float *g, sfp_rng *r);
/* `samples` random coordinates of the input x (nx values) against gx. */
void test_fd_input(test_fd *fd, const char *what, float *x, const float *gx, size_t nx,
		   sfp_rng *r);

#endif
