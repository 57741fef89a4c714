/* base.c: error messages, clocks, number parsing and small-file reading shared by every module. */
#include "skv-base.h"

#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int skv_err_set(struct skv_err *err, int code, const char *fmt, ...)
{
	if (err) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
		va_end(ap);
		err->code = code;
	}
	return code;
}

int skv_err_prefix(struct skv_err *err, int code, const char *fmt, ...)
{
	if (err) {
		char prefix[256];
		va_list ap;
		va_start(ap, fmt);
		int n = vsnprintf(prefix, sizeof(prefix), fmt, ap);
		va_end(ap);
		size_t plen = n < 0 ? 0 : SKV_MIN((size_t)n, sizeof(prefix) - 1);
		size_t old = strnlen(err->msg, sizeof(err->msg) - 1);
		if (plen + old > sizeof(err->msg) - 1)
			old = sizeof(err->msg) - 1 - plen;
		memmove(err->msg + plen, err->msg, old);
		memcpy(err->msg, prefix, plen);
		err->msg[plen + old] = '\0';
		err->code = code;
	}
	return code;
}

uint64_t skv_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void skv_reexec_passive_omp(char **argv)
{
	if (getenv("OMP_WAIT_POLICY"))
		return;
	setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
	execv("/proc/self/exe", argv);
	/* no /proc: run on with spinning threads (slower, not wrong) */
}

int skv_parse_i64(const char *s, int64_t min, int64_t max, int64_t *ret)
{
	char *end;
	long long v;

	if (!s || !*s)
		return -EINVAL;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (*end != '\0' || end == s)
		return -EINVAL;
	if (errno == ERANGE || v < min || v > max)
		return -ERANGE;
	*ret = v;
	return 0;
}

int skv_parse_f64(const char *s, double min, double max, double *ret)
{
	char *end;
	double v;

	if (!s || !*s)
		return -EINVAL;
	errno = 0;
	v = strtod(s, &end);
	if (*end != '\0' || end == s || isnan(v))
		return -EINVAL;
	if (errno == ERANGE || v < min || v > max)
		return -ERANGE;
	*ret = v;
	return 0;
}

int skv_read_file(const char *path, size_t max_bytes, char **ret_buf, size_t *ret_len, struct skv_err *err)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	_cleanup_free_ char *buf = NULL;
	struct stat st;
	size_t got = 0;

	if (fd < 0)
		return skv_err_set(err, -errno, "%s: cannot open: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0)
		return skv_err_set(err, -errno, "%s: cannot stat: %s", path, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return skv_err_set(err, -EINVAL, "%s: not a regular file", path);
	if ((uint64_t)st.st_size > max_bytes)
		return skv_err_set(err, -EFBIG, "%s: %lld bytes, more than the limit of %zu", path,
				   (long long)st.st_size, max_bytes);
	buf = malloc((size_t)st.st_size + 1);
	if (!buf)
		return skv_err_set(err, -ENOMEM, "%s: out of memory", path);
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return skv_err_set(err, -errno, "%s: read failed: %s", path, strerror(errno));
		if (n == 0)
			break;
		got += (size_t)n;
	}
	buf[got] = '\0';
	*ret_buf = SKV_TAKE_PTR(buf);
	*ret_len = got;
	return 0;
}
