/*
 * data_internal.h -- between the files of lib/data: the loaders of the
 * classification sources (sources.c) that sfp_dataset_load (dataset.c)
 * dispatches to. Each fills train and test with samples scaled to [0, 1]
 * (not normalised, not limited: dataset.c does both for every source),
 * labels checked against the classes, and source/ndim/dims; on error it
 * may leave partial sets, which the caller releases.
 */
#ifndef SFP_DATA_INTERNAL_H
#define SFP_DATA_INTERNAL_H

#include "sfp/data.h"

int sfp_data_load_npy(sfp_dataset *train, sfp_dataset *test, const sfp_cfg_data *cfg,
		      sfp_error *err);
int sfp_data_load_idx(sfp_dataset *train, sfp_dataset *test, const sfp_cfg_data *cfg,
		      sfp_error *err);
int sfp_data_load_cifar10(sfp_dataset *train, sfp_dataset *test, const sfp_cfg_data *cfg,
			  sfp_error *err);

/* Held-out part of a file of n items: the last floor(n * fraction), at
 * least 1; SFP_EINVAL naming `file` when that leaves no training item or
 * fraction is 0. */
int sfp_data_val_count(int64_t n, float fraction, const char *file, int64_t *n_val,
		       sfp_error *err);

#endif
