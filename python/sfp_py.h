/*
 * sfp_py.h -- shared between the files of the CPython extension `sfp._sfp`
 * (python/): the module's exception, how library errors become Python
 * exceptions, and the codec contexts the module hands out.
 *
 * The extension is a thin layer: arguments are checked and turned into the
 * library's structs, the GIL is released around every library call that
 * codes or waits, and libsfp's errors come back as sfp.Error (or
 * ValueError / MemoryError) with the library's message.
 */
#ifndef SFP_PY_H
#define SFP_PY_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "sfp/codec.h"
#include "sfp/common.h"

/* sfp.Error, created at import. */
extern PyObject *sfp_py_error;

/* Raise the Python exception for a library result rc < 0 and its detail:
 * SFP_EINVAL -> ValueError, SFP_ENOMEM -> MemoryError, anything else ->
 * sfp.Error(message) with .code (the negative sfp_err) and .reason
 * (sfp_strerror). Returns NULL, for `return sfp_py_raise(...)`. */
PyObject *sfp_py_raise(int rc, const sfp_error *err);

/* A codec context for one call: the module keeps one spare, so calls that
 * follow each other reuse its scratch; concurrent calls (the GIL is released
 * while coding) get their own. NULL (and MemoryError set) when out of
 * memory; give it back with sfp_py_codec_put, which needs no GIL. */
sfp_codec *sfp_py_codec_get(void);
void sfp_py_codec_put(sfp_codec *c);

/* The params of encode/quantize/allreduce from their keyword values:
 * ValueError (and -1) for widths out of range, an unknown rounding name or
 * a seed that is not a 32-bit unsigned integer. seed may be NULL or None. */
int sfp_py_params(sfp_params *p, int e, int m, int gecko, const char *rounding, PyObject *seed);

/* Types and functions defined in comm.c, added to the module at import. */
extern PyTypeObject sfp_py_comm_type;
extern PyTypeObject sfp_py_coord_type;

#endif
