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

int tu_check_encodings(const char *tokenizer, const char *fixture, const char *pre, const char *tmpdir)
{
	char line[16384], tf[4096], of[4096], ef[4096];
	FILE *f = fopen(fixture, "r");
	int n = 0;
	assert_non_null(f);
	snprintf(tf, sizeof(tf), "%s/enc.text", tmpdir);
	snprintf(of, sizeof(of), "%s/enc.ids", tmpdir);
	snprintf(ef, sizeof(ef), "%s/enc.err", tmpdir);
	while (fgets(line, sizeof(line), f)) {
		char *tab1 = strchr(line, '\t'), *tab2 = tab1 ? strchr(tab1 + 1, '\t') : NULL, text[8192];
		if (!tab2)
			fail_msg("%s: '%s' is not PRE<TAB>HEX<TAB>IDS", fixture, line);
		*tab1 = *tab2 = 0;
		if (strcmp(line, pre))
			continue;
		char *hex = tab1 + 1, *want = tab2 + 1;
		want[strcspn(want, "\n")] = 0;
		size_t tl = strlen(hex) / 2;
		assert_true(tl < sizeof(text));
		for (size_t i = 0; i < tl; i++)
			assert_int_equal(sscanf(hex + 2 * i, "%2hhx", (unsigned char *)&text[i]), 1);
		tu_write(tf, text, tl);
		if (tu_sh("'%s' encode --tokenizer '%s' <'%s' >'%s' 2>'%s'", tu_tool("SKV_TOK"), tokenizer, tf, of, ef)) {
			char *msg = tu_slurp(ef, NULL);
			int digits = strstr(msg, "Digits") != NULL;
			if (!digits)
				fail_msg("skv-tok encode --tokenizer %s: %s", tokenizer, msg);
			free(msg);
			fclose(f);
			return -1;
		}
		char *got = tu_slurp(of, NULL);
		got[strcspn(got, "\n")] = 0;
		for (char *c = want; *c; c++)
			if (*c == ',')
				*c = ' ';
		if (strcmp(got, want))
			fail_msg("%s: '%.*s': skv-tok gives [%s], expected [%s]", pre, (int)tl, text, got, want);
		free(got);
		n++;
	}
	fclose(f);
	return n;
}
