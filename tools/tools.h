/*
 * tools.h -- commands of the sfp tool that live in their own files.
 * Each returns a process exit code (0 ok, 2 usage or bad input, 1 failure).
 */
#ifndef SFP_TOOLS_H
#define SFP_TOOLS_H

/* `sfp report LOG.jsonl [--png OUT.png]`: widths, footprint, plot. */
int sfp_report_main(int argc, char **argv);

/* `sfp export ...`: BitPruning fine-tune of a checkpoint -> MODEL.sfpq. */
int sfp_export_main(int argc, char **argv);
/* `sfp eval --model MODEL.sfpq --config FILE`: accuracy and widths. */
int sfp_eval_model(const char *config, const char *model, const char *const *sets, int nsets);

#endif
