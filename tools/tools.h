/*
 * tools.h -- commands of the sfp tool that live in their own files.
 * Each returns a process exit code (0 ok, 2 usage or bad input, 1 failure).
 */
#ifndef SFP_TOOLS_H
#define SFP_TOOLS_H

#include <stddef.h>

#include "sfp/config.h"
#include "sfp/train.h"

/* "sfp: <message>" and "(run 'sfp help CMD' for usage)" on stderr (cmd
 * NULL: 'sfp help'); returns SFP_EXIT_USAGE. */
int sfp_tool_usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The config file's folder (plug-in paths are relative to it). */
void sfp_tool_config_dir(char *dir, size_t cap, const char *config);

/* `sfp plan --config F ...`: the scaling model (docs/scaling.md). */
int sfp_plan_main(int argc, char **argv);

/* `sfp report LOG.jsonl [--png OUT.png]`: widths, footprint, plot. */
int sfp_report_main(int argc, char **argv);

/* `sfp export ...`: BitPruning fine-tune of a checkpoint -> MODEL.sfpq. */
int sfp_export_main(int argc, char **argv);
/* `sfp eval --model MODEL.sfpq --config FILE`: accuracy and widths. */
int sfp_eval_model(const char *config, const char *model, const char *const *sets, int nsets);
/* A trainer for cfg (loaded from the file `config`, whose folder holds its
 * plug-ins) with the float checkpoint `ckpt` names loaded (a file, or a
 * folder's newest; the path used goes to path[0..cap)). *t is the caller's
 * to free, also after an error. `sfp generate` starts here. */
int sfp_tool_load_checkpoint(sfp_trainer **t, const sfp_config *cfg, const char *config,
			     const char *ckpt, char *path, size_t cap, sfp_error *err);
/* The same, and its test accuracy and loss. `sfp eval --checkpoint` and
 * `sfp export` start here. */
int sfp_tool_eval_checkpoint(sfp_trainer **t, const sfp_config *cfg, const char *config,
			     const char *ckpt, char *path, size_t cap, float *acc, float *loss,
			     sfp_error *err);

/* `sfp generate --config F --checkpoint CK [--prompt TEXT] [--tokens N]
 * [--temperature T] [--seed S]`: text sampled from a token model. */
int sfp_generate_main(int argc, char **argv);

#endif
