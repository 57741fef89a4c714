/* skv-base.h: the zero-dependency floor every module may include.
 *
 * Cleanup attributes, error messages with context, overflow-checked size arithmetic and a few
 * macros. Nothing here allocates behind the caller's back or knows about models, rings or GPUs.
 * This is deliberately tiny: anything with a concept of its own belongs in a module.
 */
#pragma once

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#define SKV_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define SKV_MIN(a, b) ((a) < (b) ? (a) : (b))
#define SKV_MAX(a, b) ((a) > (b) ? (a) : (b))
#define SKV_DIV_UP(a, b) (((a) + (b)-1) / (b))
#define SKV_ALIGN_UP(a, b) (SKV_DIV_UP(a, b) * (b))
#define SKV_UNUSED __attribute__((unused))
#define SKV_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define SKV_EXPORT __attribute__((visibility("default")))

/* Cleanup by attribute (systemd's _cleanup_). Every destructor below accepts NULL / -1. */
#define _cleanup_(f) __attribute__((cleanup(f)))
static inline void skv_freep(void *p) { free(*(void **)p); }
static inline void skv_closep(int *fd)
{
	if (*fd >= 0) {
		int saved = errno;
		close(*fd);
		errno = saved;
	}
}
#define _cleanup_free_ _cleanup_(skv_freep)
#define _cleanup_close_ _cleanup_(skv_closep)

/* Hand ownership out of a cleanup-managed variable. */
#define SKV_TAKE_PTR(p)                                                                            \
	({                                                                                         \
		__typeof__(p) _tmp = (p);                                                          \
		(p) = NULL;                                                                        \
		_tmp;                                                                              \
	})
#define SKV_TAKE_FD(fd)                                                                            \
	({                                                                                         \
		int _tmp = (fd);                                                                   \
		(fd) = -1;                                                                         \
		_tmp;                                                                              \
	})

/* An error message with context, filled by the function that failed (caller-owned storage).
 * Functions return a negative errno and, when given a non-NULL err, say what went wrong in
 * words that name the file, field or tensor and the limit. Log once, at the edge. */
struct skv_err {
	int code;	 /* the negative errno last set, 0 when none */
	char msg[768]; /* NUL-terminated; empty when none */
};

/* Sets err (if non-NULL) and returns code (a negative errno) so callers can `return skv_err_set(...)`. */
int skv_err_set(struct skv_err *err, int code, const char *fmt, ...) SKV_PRINTF(3, 4);
/* Prefixes the message already in err with more context ("model.safetensors: " + msg). */
int skv_err_prefix(struct skv_err *err, int code, const char *fmt, ...) SKV_PRINTF(3, 4);
static inline void skv_err_clear(struct skv_err *err)
{
	if (err) {
		err->code = 0;
		err->msg[0] = '\0';
	}
}

/* Overflow-checked size arithmetic: false on overflow, *ret untouched. */
static inline bool skv_mul_size(size_t a, size_t b, size_t *ret)
{
	size_t r;
	if (__builtin_mul_overflow(a, b, &r))
		return false;
	*ret = r;
	return true;
}
static inline bool skv_add_size(size_t a, size_t b, size_t *ret)
{
	size_t r;
	if (__builtin_add_overflow(a, b, &r))
		return false;
	*ret = r;
	return true;
}

/* Copies src into dst[size] (size > 0), truncating, always NUL-terminated; returns dst. */
static inline char *skv_strscpy(char *dst, const char *src, size_t size)
{
	size_t n = 0;
	while (n + 1 < size && src[n])
		n++;
	for (size_t i = 0; i < n; i++)
		dst[i] = src[i];
	dst[n] = '\0';
	return dst;
}

/* Monotonic clock in nanoseconds (one unit for all durations inside the process). */
uint64_t skv_now_ns(void);

/* For the tools that run the CPU backend in their own process (skv-run, skv-bench): OpenMP
 * threads that spin while idle fight OpenBLAS's threads for the cores (on 2 cores a decode step
 * took 4x longer). libgomp reads OMP_WAIT_POLICY once, when it loads, so when the variable is
 * unset this sets it to PASSIVE and re-executes the program with the same arguments; it returns
 * only when nothing needed doing or the exec failed. skvd does the same for its workers by
 * setting the variable before it spawns them. */
void skv_reexec_passive_omp(char **argv);

/* Read a whole small file (config, index, tokenizer) into a NUL-terminated heap buffer.
 * Refuses files larger than max_bytes with -EFBIG. */
int skv_read_file(const char *path, size_t max_bytes, char **ret_buf, size_t *ret_len, struct skv_err *err);

/* Parse a whole decimal integer in [min, max]; -EINVAL on junk, -ERANGE outside. */
int skv_parse_i64(const char *s, int64_t min, int64_t max, int64_t *ret);
int skv_parse_f64(const char *s, double min, double max, double *ret);
