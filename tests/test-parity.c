/* test-parity.c: the engine against golden logits, through the real skv-run binary.
 *
 * tests/fixtures/parity/manifest.txt (made by scripts/make-fixtures.py, see docs/testing.md)
 * lists tiny checkpoints with prompts, the greedy ids and the logits of every generated token:
 *   hf   plain Llama checkpoints made by Hugging Face transformers, golden from transformers (fp32);
 *   ref  golden from an independent fp64 implementation of docs/swiftkv.md's forward: SwiftKV
 *        checkpoints from skv-mkmodel with --swiftkv on, the teacher (--swiftkv off), the
 *        same weights saved as a plain Llama (the twin), and the transformers checkpoints.
 * Each case must give the golden ids exactly and every logits row within a relative error
 * (max |diff| / max |golden|) of the golden row. Further: chunked prefill at odd boundaries
 * (--max-batch-tokens 7 and 3) gives the one-shot logits, and --swiftkv off equals the twin.
 * It is not a test of sampling or of the scheduler's batching (test-engine covers those).
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test-util.h"

/* Tolerances, per logits row (docs/testing.md says why these values). */
#define TOL_HF 5e-5	 /* vs transformers in fp32: both sides round differently */
#define TOL_REF 2e-5	 /* vs the fp64 reference: the engine's own fp32 rounding only */
#define TOL_SAME 1e-5	 /* two engine runs that differ only in chunking or in how the weights are filed */
#define MAX_LINE 8192

enum kind { KIND_HF, KIND_REF, KIND_TWIN };

struct pcase {
	enum kind kind;
	char model[128];
	char model2[128];  /* KIND_TWIN: the plain twin */
	char swiftkv[8];   /* on, off or - (the checkpoint's default) */
	char *prompt;	   /* "5,17,3" */
	int32_t *ids;	   /* golden ids */
	uint32_t n_ids;
	char golden[256];  /* golden logits, relative to the fixture folder */
};

static char fixdir[4096];
static char *tmp;
static struct pcase *cases;
static size_t n_cases;

static int32_t *parse_csv(const char *s, uint32_t *ret_n)
{
	size_t n = 1;
	for (const char *p = s; *p; p++)
		n += *p == ',';
	int32_t *v = calloc(n, sizeof(*v));
	assert_non_null(v);
	char *end;
	for (size_t i = 0; i < n; i++) {
		v[i] = (int32_t)strtol(s, &end, 10);
		assert_true(end != s && (*end == ',' || *end == '\0'));
		s = end + (*end == ',');
	}
	*ret_n = (uint32_t)n;
	return v;
}

static int load_manifest(void **state)
{
	(void)state;
	const char *src = tu_tool("SKV_SRCDIR");
	char path[4200], line[MAX_LINE];
	snprintf(fixdir, sizeof(fixdir), "%s/tests/fixtures/parity", src);
	snprintf(path, sizeof(path), "%s/manifest.txt", fixdir);
	FILE *f = fopen(path, "re");
	if (!f) {
		fprintf(stderr, "test-parity: cannot open %s\n", path);
		return -1;
	}
	size_t cap = 0;
	while (fgets(line, sizeof(line), f)) {
		char *save = NULL, *tok[6];
		int nt = 0;
		if (strlen(line) == sizeof(line) - 1) {
			fprintf(stderr, "test-parity: %s: a line is too long\n", path);
			fclose(f);
			return -1;
		}
		if (line[0] == '#' || line[0] == '\n')
			continue;
		for (char *t = strtok_r(line, " \t\n", &save); t && nt < 6; t = strtok_r(NULL, " \t\n", &save))
			tok[nt++] = t;
		if (n_cases == cap) {
			cap = cap ? 2 * cap : 32;
			cases = realloc(cases, cap * sizeof(*cases));
			assert_non_null(cases);
		}
		struct pcase *c = &cases[n_cases];
		memset(c, 0, sizeof(*c));
		if (nt == 4 && !strcmp(tok[0], "twin")) {
			c->kind = KIND_TWIN;
			snprintf(c->model, sizeof(c->model), "%s", tok[1]);
			snprintf(c->model2, sizeof(c->model2), "%s", tok[2]);
			c->prompt = strdup(tok[3]);
		} else if (nt == 6 && (!strcmp(tok[0], "hf") || !strcmp(tok[0], "ref"))) {
			c->kind = !strcmp(tok[0], "hf") ? KIND_HF : KIND_REF;
			snprintf(c->model, sizeof(c->model), "%s", tok[1]);
			snprintf(c->swiftkv, sizeof(c->swiftkv), "%s", tok[2]);
			c->prompt = strdup(tok[3]);
			c->ids = parse_csv(tok[4], &c->n_ids);
			snprintf(c->golden, sizeof(c->golden), "%s", tok[5]);
		} else {
			fprintf(stderr, "test-parity: %s: cannot parse a line starting '%s'\n", path, nt ? tok[0] : "");
			fclose(f);
			return -1;
		}
		n_cases++;
	}
	fclose(f);
	tmp = tu_tmpdir();
	return 0;
}

static int free_manifest(void **state)
{
	(void)state;
	for (size_t i = 0; i < n_cases; i++) {
		free(cases[i].prompt);
		free(cases[i].ids);
	}
	free(cases);
	tu_rmdir(tmp);
	free(tmp);
	return 0;
}

/* Runs skv-run on a fixture model; returns its logits [*rows, *cols] (malloc) and its ids. */
static float *run(const char *model, const char *swiftkv, const char *extra, const char *prompt, uint32_t k,
		  int32_t *ret_ids, uint32_t *rows, uint32_t *cols)
{
	char sw[32] = "";
	if (strcmp(swiftkv, "-") != 0)
		snprintf(sw, sizeof(sw), "--swiftkv %s", swiftkv);
	int r = tu_sh("'%s' --model '%s/%s' %s %s --prompt-ids %s --max-tokens %u --ignore-eos "
		      "--logits-out '%s/logits.npy' --ids > '%s/ids.txt'",
		      tu_tool("SKV_RUN"), fixdir, model, sw, extra, prompt, k, tmp, tmp);
	if (r != 0)
		fail_msg("skv-run on %s %s %s exited with %d", model, sw, extra, r);

	char path[4200], buf[4096];
	snprintf(path, sizeof(path), "%s/ids.txt", tmp);
	FILE *f = fopen(path, "re");
	assert_non_null(f);
	assert_non_null(fgets(buf, sizeof(buf), f));
	fclose(f);
	char *p = buf, *end;
	for (uint32_t i = 0; i < k; i++) {
		long v = strtol(p, &end, 10);
		if (end == p)
			fail_msg("%s %s %s: skv-run printed %u ids, expected %u: %s", model, sw, extra, i, k, buf);
		ret_ids[i] = (int32_t)v;
		p = end;
	}
	strtol(p, &end, 10);
	if (end != p)
		fail_msg("%s %s %s: skv-run printed more than %u ids: %s", model, sw, extra, k, buf);

	snprintf(path, sizeof(path), "%s/logits.npy", tmp);
	float *l = tu_read_npy(path, rows, cols);
	assert_int_equal(*rows, k);
	return l;
}

/* Worst row of tu_rel_err between a and b, both [rows, cols]. */
static double worst_rel(const float *a, const float *b, uint32_t rows, uint32_t cols)
{
	double w = 0;
	for (uint32_t i = 0; i < rows; i++) {
		double e = tu_rel_err(a + (size_t)i * cols, b + (size_t)i * cols, cols);
		w = e > w ? e : w;
	}
	return w;
}

static void check_ids(const struct pcase *c, const char *what, const int32_t *got, const int32_t *want)
{
	for (uint32_t i = 0; i < c->n_ids; i++)
		if (got[i] != want[i])
			fail_msg("%s %s (%s, prompt %.40s...): generated token %u is %d, expected %d", c->model,
				 c->swiftkv, what, c->prompt, i, got[i], want[i]);
}

/* Runs one hf or ref case with `extra` arguments against its golden; returns the worst row error. */
static double check_case(const struct pcase *c, const char *extra, double tol)
{
	char path[4500];
	uint32_t gr, gc, rows, cols;
	int32_t *ids = calloc(c->n_ids, sizeof(*ids));
	assert_non_null(ids);
	snprintf(path, sizeof(path), "%s/%s", fixdir, c->golden);
	float *g = tu_read_npy(path, &gr, &gc);
	assert_int_equal(gr, c->n_ids);
	float *l = run(c->model, c->swiftkv, extra, c->prompt, c->n_ids, ids, &rows, &cols);
	assert_int_equal(cols, gc);
	check_ids(c, extra[0] ? extra : "one prefill", ids, c->ids);
	double w = worst_rel(l, g, rows, cols);
	if (!(w < tol))
		fail_msg("%s %s %s (prompt %.40s...): logits relative error %.3g, tolerance %.3g", c->model, c->swiftkv,
			 extra, c->prompt, w, tol);
	free(l);
	free(g);
	free(ids);
	return w;
}

static void report(const char *what, size_t n, double worst, const char *where, double tol)
{
	printf("parity: %-42s %2zu runs, worst row rel err %.2e (%s), tolerance %.0e\n", what, n, worst, where, tol);
}

/* The manifest must hold what docs/testing.md promises, so a truncated one cannot pass. */
static void test_manifest(void **state)
{
	(void)state;
	size_t hf = 0, on = 0, off = 0, plain_ref = 0, twin = 0;
	for (size_t i = 0; i < n_cases; i++) {
		const struct pcase *c = &cases[i];
		if (c->kind == KIND_HF)
			hf++;
		else if (c->kind == KIND_TWIN)
			twin++;
		else if (!strcmp(c->swiftkv, "on"))
			on++;
		else if (!strcmp(c->swiftkv, "off"))
			off++;
		else
			plain_ref++;
		if (c->kind != KIND_TWIN)
			assert_true(c->n_ids >= 4);
	}
	printf("parity: manifest: %zu hf, %zu swiftkv-on, %zu swiftkv-off, %zu plain-ref, %zu twin cases\n", hf, on,
	       off, plain_ref, twin);
	assert_true(hf >= 8);
	assert_true(on >= 8);
	assert_true(off >= 2);
	assert_true(plain_ref >= 9);
	assert_true(twin >= 1);
}

static void test_hf(void **state)
{
	(void)state;
	double worst = 0;
	const char *where = "";
	size_t n = 0;
	for (size_t i = 0; i < n_cases; i++) {
		if (cases[i].kind != KIND_HF)
			continue;
		double w = check_case(&cases[i], "", TOL_HF);
		if (w >= worst)
			worst = w, where = cases[i].model;
		n++;
	}
	assert_true(n > 0);
	report("vs transformers fp32", n, worst, where, TOL_HF);
}

/* The ref cases run with --swiftkv `swiftkv` (on, off, or - for plain checkpoints). */
static void run_ref(const char *swiftkv, const char *what)
{
	double worst = 0;
	const char *where = "";
	size_t n = 0;
	for (size_t i = 0; i < n_cases; i++) {
		const struct pcase *c = &cases[i];
		if (c->kind != KIND_REF || strcmp(c->swiftkv, swiftkv) != 0)
			continue;
		double w = check_case(c, "", TOL_REF);
		if (w >= worst)
			worst = w, where = c->model;
		n++;
	}
	assert_true(n > 0);
	report(what, n, worst, where, TOL_REF);
}

static void test_ref_swiftkv(void **state)
{
	(void)state;
	run_ref("on", "SwiftKV path vs fp64 reference");
}

static void test_ref_teacher(void **state)
{
	(void)state;
	run_ref("off", "--swiftkv off (teacher) vs fp64 reference");
}

static void test_ref_plain(void **state)
{
	(void)state;
	run_ref("-", "plain checkpoints vs fp64 reference");
}

/* Chunked prefill: the prompt in chunks of 7 and of 3 tokens (odd boundaries, across KV blocks)
 * gives the logits of one prefill, and still the golden ids and logits. */
static void test_chunked(void **state)
{
	(void)state;
	static const char *const chunks[] = {"--max-batch-tokens 7", "--max-batch-tokens 3"};
	double worst_same = 0, worst_ref = 0;
	size_t n = 0;
	for (size_t i = 0; i < n_cases; i++) {
		const struct pcase *c = &cases[i];
		if (c->kind != KIND_REF || strcmp(c->swiftkv, "on") != 0)
			continue;
		uint32_t r0, c0, r1, c1;
		int32_t *ids0 = calloc(c->n_ids, sizeof(int32_t)), *ids1 = calloc(c->n_ids, sizeof(int32_t));
		assert_non_null(ids0);
		assert_non_null(ids1);
		float *one = run(c->model, c->swiftkv, "", c->prompt, c->n_ids, ids0, &r0, &c0);
		for (size_t k = 0; k < sizeof(chunks) / sizeof(chunks[0]); k++) {
			float *l = run(c->model, c->swiftkv, chunks[k], c->prompt, c->n_ids, ids1, &r1, &c1);
			assert_int_equal(c1, c0);
			check_ids(c, chunks[k], ids1, ids0);
			double w = worst_rel(l, one, r0, c0);
			if (!(w < TOL_SAME))
				fail_msg("%s %s: logits differ from one prefill by %.3g (tolerance %.0e)", c->model, chunks[k], w,
					 TOL_SAME);
			worst_same = w > worst_same ? w : worst_same;
			free(l);
			double wr = check_case(c, chunks[k], TOL_REF);
			worst_ref = wr > worst_ref ? wr : worst_ref;
			n++;
		}
		free(one);
		free(ids0);
		free(ids1);
	}
	assert_true(n > 0);
	report("chunked prefill vs one prefill", n, worst_same, "max-batch-tokens 7 and 3", TOL_SAME);
	report("chunked prefill vs fp64 reference", n, worst_ref, "max-batch-tokens 7 and 3", TOL_REF);
}

/* A SwiftKV checkpoint with --swiftkv off equals the same weights saved as a plain Llama. */
static void test_twin(void **state)
{
	(void)state;
	double worst = 0;
	size_t n = 0;
	enum { k = 8 }; /* make-fixtures.py's K */
	int32_t a_ids[k], b_ids[k];
	for (size_t i = 0; i < n_cases; i++) {
		const struct pcase *c = &cases[i];
		if (c->kind != KIND_TWIN)
			continue;
		uint32_t ra, ca, rb, cb;
		float *a = run(c->model, "off", "", c->prompt, k, a_ids, &ra, &ca);
		float *b = run(c->model2, "-", "", c->prompt, k, b_ids, &rb, &cb);
		assert_int_equal(ca, cb);
		for (uint32_t j = 0; j < k; j++)
			if (a_ids[j] != b_ids[j])
				fail_msg("%s --swiftkv off and %s: token %u is %d vs %d", c->model, c->model2, j, a_ids[j],
					 b_ids[j]);
		double w = worst_rel(a, b, k, ca);
		if (!(w < TOL_SAME))
			fail_msg("%s --swiftkv off and %s: logits differ by %.3g (tolerance %.0e)", c->model, c->model2, w,
				 TOL_SAME);
		worst = w > worst ? w : worst;
		free(a);
		free(b);
		n++;
	}
	assert_true(n > 0);
	report("--swiftkv off vs its plain twin", n, worst, "same weights, two files", TOL_SAME);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_manifest),    cmocka_unit_test(test_hf),	   cmocka_unit_test(test_ref_swiftkv),
		cmocka_unit_test(test_ref_teacher), cmocka_unit_test(test_ref_plain), cmocka_unit_test(test_chunked),
		cmocka_unit_test(test_twin),
	};
	return cmocka_run_group_tests(tests, load_manifest, free_manifest);
}
