/* test-util.h: small helpers the cmocka tests share (temporary folders, files, tools). */
#pragma once

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

/* A fresh temporary directory (removed by tu_rmdir). */
char *tu_tmpdir(void);
void tu_rmdir(const char *dir);
/* The whole file at path, NUL-terminated (its length in *len when len is not NULL); fails the
 * test when it cannot be read. */
char *tu_slurp(const char *path, size_t *len);
void tu_write(const char *path, const void *data, size_t len);
void tu_writef(const char *path, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Runs a shell command; returns its exit status. */
int tu_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Path of a built tool, from the environment meson sets (SKV_MKMODEL, SKV_RUN, ...). */
const char *tu_tool(const char *env);
/* Makes a synthetic model with skv-mkmodel ARGS into a new temp dir; returns the dir. */
char *tu_mkmodel(const char *args);
/* Reads a .npy float32 2-D array; returns data (malloc) and its shape. */
float *tu_read_npy(const char *path, uint32_t *rows, uint32_t *cols);
/* Factor for time limits in tests of timing promises (SKV_TEST_TIME_SCALE: sanitizer builds run
 * several times slower); 1 by default. */
long tu_time_scale(void);
/* max |a - b| / max |b| over one row */
double tu_rel_err(const float *a, const float *b, size_t n);
/* skv-tok encode (SKV_TOK) with TOKENIZER (a tokenizer.json or model dir) on every line of
 * FIXTURE ("PRE<TAB>text as hex<TAB>ids,comma,separated") whose PRE is pre; fails the test on
 * the first difference. Returns the lines checked, or -1 when the tokenizer names a Digits
 * pre-tokenizer it cannot load (the caller skips). Scratch files go to tmpdir. */
int tu_check_encodings(const char *tokenizer, const char *fixture, const char *pre, const char *tmpdir);
