/* test-smollm.c: the real model. SmolLM2-135M-Instruct's GGUF (scripts/fetch-model puts it in
 * $SKV_MODEL_CACHE or build-models/) goes through skv-import and skv-run, and the logits must
 * match an fp64 reference that reads the GGUF with gguf-py and runs llama.cpp's layout
 * (tests/fixtures/smollm, made by scripts/make-smollm-golden.py; docs/gguf.md):
 *   - the f32 import: every greedy id, and per logits row the sampled logits (every 16th id and
 *     the row's top 32) within TOL_ROW of the row's largest |value|, and the row's sum, sum of
 *     squares and largest |value| within the same relative tolerance;
 *   - the bf16 import (the default): the first BF16_IDS greedy ids of every case;
 *   - skv-tok on the imported tokenizer.json: the ids of tricky texts (tokenizer.txt);
 *   - a SwiftKV import (--swiftkv-layers): the original model's ids with --swiftkv off, whole
 *     requests served with it on.
 * Skipped (77) when the GGUF is not fetched.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "test-util.h"

#define GGUF_NAME "SmolLM2-135M-Instruct.Q4_1.gguf"
/* The engine computes in fp32 (sums of 576 and 1536 products, 30 layers) against fp64; the
 * issue asks for about 1e-4 of the row's scale. */
#define TOL_ROW 1e-4
/* bf16 weights move logits by a few hundredths: the cases' first greedy ids have margins of
 * 0.8 or more in the reference (make-smollm-golden.py prints them) */
#define BF16_IDS 4
#define MAX_CASES 8
#define MAX_STATS 64

struct scase {
	char name[64];
	char prompt[4096];
	char ids[1024];
	char golden[128];
	uint32_t n_stats;
	double sum[MAX_STATS], sumsq[MAX_STATS], amax[MAX_STATS];
};

static char gguf[4096], fix[2048];
static char *tmp;
static struct scase cases[MAX_CASES];
static size_t n_cases;

static void field(char *dst, size_t size, const char *src)
{
	size_t n = strlen(src);
	assert_true(n < size);
	memcpy(dst, src, n + 1);
}

static void load_manifest(void)
{
	char p[4200], line[8192];
	snprintf(p, sizeof(p), "%s/manifest.txt", fix);
	FILE *f = fopen(p, "r");
	assert_non_null(f);
	struct scase *c = NULL;
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = 0;
		if (!strncmp(line, "case ", 5)) {
			assert_true(n_cases < MAX_CASES);
			c = &cases[n_cases++];
			field(c->name, sizeof(c->name), line + 5);
		} else if (c && !strncmp(line, "prompt ", 7)) {
			field(c->prompt, sizeof(c->prompt), line + 7);
		} else if (c && !strncmp(line, "ids ", 4)) {
			field(c->ids, sizeof(c->ids), line + 4);
		} else if (c && !strncmp(line, "golden ", 7)) {
			field(c->golden, sizeof(c->golden), line + 7);
		} else if (c && !strncmp(line, "stats ", 6)) {
			unsigned row;
			double s, q, m;
			assert_int_equal(sscanf(line + 6, "%u %lf %lf %lf", &row, &s, &q, &m), 4);
			assert_true(row == c->n_stats && row < MAX_STATS);
			c->sum[row] = s;
			c->sumsq[row] = q;
			c->amax[row] = m;
			c->n_stats++;
		}
	}
	fclose(f);
	assert_true(n_cases >= 2);
}

/* skv-run on one case; returns the generated ids ("a,b,c") in ids and the logits file path. */
static void run_case(const char *model, const struct scase *c, int max_tokens, char *ids, size_t ids_size,
		     char *npy, size_t npy_size)
{
	char out[4200];
	snprintf(npy, npy_size, "%s/%s.npy", tmp, c->name);
	snprintf(out, sizeof(out), "%s/%s.ids", tmp, c->name);
	int r = tu_sh("'%s' --model '%s' --prompt-ids %s --max-tokens %d --ignore-eos --ids --logits-out '%s' >'%s'",
		      tu_tool("SKV_RUN"), model, c->prompt, max_tokens, npy, out);
	assert_int_equal(r, 0);
	char *got = tu_slurp(out, NULL);
	got[strcspn(got, "\n")] = 0;
	for (char *p = got; *p; p++)
		if (*p == ' ')
			*p = ',';
	snprintf(ids, ids_size, "%s", got);
	free(got);
}

static char *import_with(const char *dtype, const char *name, const char *args)
{
	char *dir = malloc(4200);
	snprintf(dir, 4200, "%s/%s", tmp, name);
	assert_int_equal(tu_sh("'%s' --dtype %s %s '%s' '%s' >/dev/null", tu_tool("SKV_IMPORT"), dtype, args, gguf, dir),
			 0);
	return dir;
}

static char *import(const char *dtype)
{
	char name[64];
	snprintf(name, sizeof(name), "smollm-%s", dtype);
	return import_with(dtype, name, "");
}

/* The golden's first n ids of case k ("a,b,c"). */
static void first_ids(size_t k, int n, char *out, size_t size)
{
	snprintf(out, size, "%s", cases[k].ids);
	char *p = out;
	for (int i = 0; i < n && p; i++)
		p = strchr(p + 1, ',');
	if (p)
		*p = 0;
}

static void test_f32_parity(void **state)
{
	(void)state;
	char *model = import("f32");
	for (size_t k = 0; k < n_cases; k++) {
		const struct scase *c = &cases[k];
		char ids[1024], npy[4200], gp[4200];
		int n_want = 1;
		for (const char *p = c->ids; *p; p++)
			n_want += *p == ',';
		run_case(model, c, n_want, ids, sizeof(ids), npy, sizeof(npy));
		if (strcmp(ids, c->ids))
			fail_msg("%s: skv-run gives %s, the fp64 reference %s", c->name, ids, c->ids);
		uint32_t rows, vocab, grows, gcols;
		float *lg = tu_read_npy(npy, &rows, &vocab);
		snprintf(gp, sizeof(gp), "%s/%s", fix, c->golden);
		float *g = tu_read_npy(gp, &grows, &gcols);
		assert_int_equal(rows, n_want);
		assert_int_equal(grows, rows);
		assert_int_equal(c->n_stats, rows);
		uint32_t m = gcols / 2;
		for (uint32_t i = 0; i < rows; i++) {
			const float *row = lg + (size_t)i * vocab, *gi = g + (size_t)i * gcols;
			double sum = 0, sumsq = 0, amax = 0, worst = 0;
			for (uint32_t v = 0; v < vocab; v++) {
				sum += row[v];
				sumsq += (double)row[v] * row[v];
				amax = fmax(amax, fabs(row[v]));
			}
			for (uint32_t j = 0; j < m; j++) {
				uint32_t v = (uint32_t)gi[j];
				assert_true(v < vocab);
				worst = fmax(worst, fabs(row[v] - gi[m + j]) / c->amax[i]);
			}
			double e_sum = fabs(sum - c->sum[i]) / (c->amax[i] * vocab);
			double e_sq = fabs(sumsq - c->sumsq[i]) / c->sumsq[i];
			double e_max = fabs(amax - c->amax[i]) / c->amax[i];
			print_message("%s row %u: sampled %.2e, sum %.2e, sumsq %.2e, max %.2e\n", c->name, i, worst, e_sum,
				      e_sq, e_max);
			if (worst > TOL_ROW || e_sum > TOL_ROW || e_sq > 2 * TOL_ROW || e_max > TOL_ROW)
				fail_msg("%s row %u: relative errors %.2e (sampled), %.2e (sum), %.2e (sumsq), %.2e (max) "
					 "over %g", c->name, i, worst, e_sum, e_sq, e_max, TOL_ROW);
		}
		free(lg);
		free(g);
	}
	tu_rmdir(model);
	free(model);
}

static void test_bf16_greedy(void **state)
{
	(void)state;
	char *model = import("bf16");
	for (size_t k = 0; k < n_cases; k++) {
		char ids[1024], npy[4200], want[1024];
		run_case(model, &cases[k], BF16_IDS, ids, sizeof(ids), npy, sizeof(npy));
		first_ids(k, BF16_IDS, want, sizeof(want));
		if (strcmp(ids, want))
			fail_msg("%s (bf16): skv-run gives %s, the fp64 reference %s", cases[k].name, ids, want);
	}
	free(model); /* removed with tmp: test_tokenizer uses it */
}

/* SwiftKV on the real model: skv-import --swiftkv-layers 20 --group 2 (tensors copied from the
 * teacher, not distilled). With --swiftkv off the checkpoint is the original model and must give
 * the bf16 golden ids; with it on, the SwiftKV forward serves whole requests (its values are
 * untrained, so only their shape is asserted: every id inside the vocabulary). */
static void test_swiftkv(void **state)
{
	(void)state;
	char *model = import_with("bf16", "smollm-swiftkv", "--swiftkv-layers 20 --group 2");
	for (size_t k = 0; k < n_cases; k++) {
		char want[1024], out[4200];
		first_ids(k, BF16_IDS, want, sizeof(want));
		snprintf(out, sizeof(out), "%s/swiftkv.ids", tmp);
		for (int on = 0; on < 2; on++) {
			assert_int_equal(tu_sh("'%s' --model '%s' --swiftkv %s --prompt-ids %s --max-tokens %d --ignore-eos "
					       "--ids >'%s'",
					       tu_tool("SKV_RUN"), model, on ? "on" : "off", cases[k].prompt, BF16_IDS, out),
					 0);
			char *got = tu_slurp(out, NULL);
			int n = 0, id, used;
			for (const char *p = got; sscanf(p, "%d%n", &id, &used) == 1; p += used) {
				assert_true(id >= 0 && id < 49152);
				n++;
			}
			assert_int_equal(n, BF16_IDS);
			got[strcspn(got, "\n")] = 0;
			for (char *p = got; *p; p++)
				if (*p == ' ')
					*p = ',';
			print_message("%s --swiftkv %s: %s\n", cases[k].name, on ? "on" : "off", got);
			if (!on && strcmp(got, want))
				fail_msg("%s: the SwiftKV checkpoint with --swiftkv off gives %s, the model %s", cases[k].name,
					 got, want);
			free(got);
		}
	}
	tu_rmdir(model);
	free(model);
}

/* skv-tok on the imported tokenizer.json against Hugging Face tokenizers (tokenizer.txt; the
 * script checks those ids against transformers' own GGUF tokenizer builder). */
static void test_tokenizer(void **state)
{
	(void)state;
	char dir[4200], p[4200];
	snprintf(dir, sizeof(dir), "%s/smollm-bf16", tmp);
	struct stat st;
	if (stat(dir, &st) < 0)
		free(import("bf16"));
	snprintf(p, sizeof(p), "%s/tokenizer.txt", fix);
	int n = tu_check_encodings(dir, p, "smollm", tmp);
	if (n < 0)
		skip(); /* the tokenizer's Digits pre-tokenizer: issue 11 item 2 */
	assert_true(n >= 8);
}

static int setup(void **state)
{
	(void)state;
	load_manifest();
	return 0;
}

int main(void)
{
	const char *cache = getenv("SKV_MODEL_CACHE");
	struct stat st;
	if (cache && *cache)
		snprintf(gguf, sizeof(gguf), "%s/%s", cache, GGUF_NAME);
	else
		snprintf(gguf, sizeof(gguf), "%s/build-models/%s", tu_tool("SKV_SRCDIR"), GGUF_NAME);
	if (stat(gguf, &st) < 0) {
		fprintf(stderr, "test-smollm: %s not found (scripts/fetch-model fetches it): skipped\n", gguf);
		return 77;
	}
	snprintf(fix, sizeof(fix), "%s/tests/fixtures/smollm", tu_tool("SKV_SRCDIR"));
	tmp = tu_tmpdir();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_f32_parity),
		cmocka_unit_test(test_bf16_greedy),
		cmocka_unit_test(test_tokenizer),
		cmocka_unit_test(test_swiftkv),
	};
	int r = cmocka_run_group_tests(tests, setup, NULL);
	tu_rmdir(tmp);
	free(tmp);
	return r;
}
