/* test-util.c: helpers for the cmocka tests. */
#include "test-util.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

char *tu_tmpdir(void)
{
	char tmpl[] = "/tmp/skv-test-XXXXXX";
	char *d = mkdtemp(tmpl);
	assert_non_null(d);
	return strdup(d);
}

void tu_rmdir(const char *dir)
{
	if (dir && !strncmp(dir, "/tmp/skv-test-", 14))
		tu_sh("rm -rf '%s'", dir);
}

void tu_write(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

void tu_writef(const char *path, const char *fmt, ...)
{
	char *s = NULL;
	va_list ap;
	va_start(ap, fmt);
	int n = vasprintf(&s, fmt, ap);
	va_end(ap);
	assert_true(n >= 0);
	tu_write(path, s, (size_t)n);
	free(s);
}

int tu_sh(const char *fmt, ...)
{
	char *s = NULL;
	va_list ap;
	va_start(ap, fmt);
	int n = vasprintf(&s, fmt, ap);
	va_end(ap);
	assert_true(n >= 0);
	int r = system(s);
	free(s);
	return r == -1 ? -1 : WEXITSTATUS(r);
}

const char *tu_tool(const char *env)
{
	const char *p = getenv(env);
	if (!p) {
		fprintf(stderr, "test: %s is not set (run through meson test)\n", env);
		exit(77);
	}
	return p;
}

char *tu_mkmodel(const char *args)
{
	char *d = tu_tmpdir();
	int r = tu_sh("'%s' --force %s '%s' >/dev/null", tu_tool("SKV_MKMODEL"), args, d);
	assert_int_equal(r, 0);
	return d;
}

float *tu_read_npy(const char *path, uint32_t *rows, uint32_t *cols)
{
	FILE *f = fopen(path, "rb");
	uint8_t pre[10];
	char hdr[4096];
	assert_non_null(f);
	assert_int_equal(fread(pre, 1, 10, f), 10);
	assert_memory_equal(pre, "\x93NUMPY\x01\x00", 8);
	size_t hl = pre[8] | (size_t)pre[9] << 8;
	assert_true(hl < sizeof(hdr));
	assert_int_equal(fread(hdr, 1, hl, f), hl);
	hdr[hl] = 0;
	assert_non_null(strstr(hdr, "'<f4'"));
	assert_non_null(strstr(hdr, "'fortran_order': False"));
	const char *sh = strstr(hdr, "'shape': (");
	assert_non_null(sh);
	unsigned a = 0, b = 1;
	int k = sscanf(sh, "'shape': (%u, %u)", &a, &b);
	assert_true(k >= 1);
	float *d = malloc((size_t)a * b * sizeof(float) + 1);
	assert_non_null(d);
	assert_int_equal(fread(d, sizeof(float), (size_t)a * b, f), (size_t)a * b);
	fclose(f);
	*rows = a;
	*cols = b;
	return d;
}

long tu_time_scale(void)
{
	const char *s = getenv("SKV_TEST_TIME_SCALE");
	long v = s ? atol(s) : 1;
	return v >= 1 ? v : 1;
}

double tu_rel_err(const float *a, const float *b, size_t n)
{
	double md = 0, mb = 0;
	for (size_t i = 0; i < n; i++) {
		double d = fabs((double)a[i] - (double)b[i]);
		if (isnan(a[i]) || isnan(b[i]))
			return INFINITY;
		md = d > md ? d : md;
		mb = fabs(b[i]) > mb ? fabs(b[i]) : mb;
	}
	return mb > 0 ? md / mb : md;
}

char *tu_slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		fail_msg("cannot open %s", path);
	char *buf = NULL;
	size_t cap = 0, n = 0;
	for (;;) { /* to the end, whatever the file claims its size is */
		if (n + 4096 + 1 > cap) {
			cap = cap ? cap * 2 : 65536;
			buf = realloc(buf, cap);
			assert_non_null(buf);
		}
		size_t k = fread(buf + n, 1, 4096, f);
		n += k;
		if (k == 0)
			break;
	}
	fclose(f);
	buf[n] = '\0';
	if (len)
		*len = n;
	return buf;
}
