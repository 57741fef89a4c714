/* test-summarize.c: the pure parts of libskv's long-document layer (client/libskv-summarize.c):
 * paragraphs, sentence/word/character splits and greedy packing with overlap. The parts that
 * talk to skvd are tested end to end in test-e2e-summarize.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "libskv-internal.h"
#include "test-util.h"

static void expect(const char *text, const struct skv_piece *p, size_t n, const char *const *want)
{
	size_t k = 0;
	for (; want[k]; k++) {
		if (k >= n)
			fail_msg("piece %zu missing (want \"%s\")", k, want[k]);
		if (strlen(want[k]) != p[k].len || memcmp(text + p[k].off, want[k], p[k].len))
			fail_msg("piece %zu is \"%.*s\", want \"%s\"", k, (int)p[k].len, text + p[k].off, want[k]);
	}
	assert_int_equal(n, k);
}

static void test_paragraphs(void **state)
{
	(void)state;
	static const char text[] = "  First line\nsecond line.  \n\n\n \t \nSecond para.\n\nThird\n";
	static const char *const want[] = {"First line\nsecond line.", "Second para.", "Third", NULL};
	struct skv_piece *p;
	size_t n;
	assert_int_equal(skv_split_paragraphs(text, strlen(text), &p, &n), 0);
	expect(text, p, n, want);
	free(p);
	assert_int_equal(skv_split_paragraphs(" \n\n \n", 5, &p, &n), 0);
	assert_int_equal(n, 0);
	assert_null(p);
	assert_int_equal(skv_split_paragraphs("", 0, &p, &n), 0);
	assert_int_equal(n, 0);
}

static void split(const char *text, const char *const *want)
{
	struct skv_piece *p;
	size_t n;
	struct skv_piece whole = {0, strlen(text)};
	assert_int_equal(skv_split_piece(text, whole, &p, &n), 0);
	expect(text, p, n, want);
	free(p);
}

static void test_sentences(void **state)
{
	(void)state;
	/* closers stay with their sentence; "3.5" and "e.g.x" are not ends; a line break is */
	split("He said \"Stop!\" Then he left. It cost 3.5 dollars (e.g.x)? Yes.\nA list item",
	      (const char *const[]){"He said \"Stop!\"", "Then he left.", "It cost 3.5 dollars (e.g.x)?", "Yes.",
				    "A list item", NULL});
	split("\u3053\u308c\u306f\u6587\u3002\u3053\u308c\u3082\u3002",
	      (const char *const[]){"\u3053\u308c\u306f\u6587\u3002", "\u3053\u308c\u3082\u3002", NULL});
	split("It ended.\u201d And then (twice.) more", (const char *const[]){"It ended.\u201d", "And then (twice.)", "more", NULL});
}

static void test_words_and_bytes(void **state)
{
	(void)state;
	/* one sentence: two halves at the whitespace nearest the middle */
	split("aaaa bbbb cccc dddd", (const char *const[]){"aaaa bbbb", "cccc dddd", NULL});
	split("abcdefghij klm", (const char *const[]){"abcdefghij", "klm", NULL});
	/* no whitespace: at a character boundary, never inside a UTF-8 sequence */
	split("abcdef", (const char *const[]){"abc", "def", NULL});
	split("\u00e9\u00e9\u00e9", (const char *const[]){"\u00e9", "\u00e9\u00e9", NULL});
	/* one character cannot be split */
	struct skv_piece *p;
	size_t n;
	assert_int_equal(skv_split_piece("\u20ac", (struct skv_piece){0, 3}, &p, &n), 0);
	assert_int_equal(n, 1);
	free(p);
	/* a piece inside a larger text: offsets are the text's */
	static const char text[] = "xx One. Two. yy";
	assert_int_equal(skv_split_piece(text, (struct skv_piece){3, 9}, &p, &n), 0);
	expect(text, p, n, (const char *const[]){"One.", "Two.", NULL});
	assert_int_equal(p[1].off, 8);
	free(p);
}

static size_t pack_end(const struct skv_piece *pc, const uint32_t *t, size_t start, uint64_t budget, uint32_t sep,
		       size_t bytes)
{
	size_t s = start, e = skv_pack_end(pc, t, 10, &s, 0, budget, sep, bytes);
	assert_int_equal(s, start); /* no previous chunk: the start stays */
	return e;
}

static void test_pack(void **state)
{
	(void)state;
	/* ten pieces of 10 bytes each (one byte apart), tokens as given */
	struct skv_piece pc[10];
	uint32_t t[10] = {10, 10, 10, 10, 50, 10, 10, 10, 10, 10};
	for (size_t i = 0; i < 10; i++)
		pc[i] = (struct skv_piece){i * 11, 10};
	/* budget 32 with a separator of 1: 10 + 1 + 10 + 1 + 10 = 32 */
	assert_int_equal(pack_end(pc, t, 0, 32, 1, SIZE_MAX), 3);
	assert_int_equal(pack_end(pc, t, 0, 31, 1, SIZE_MAX), 2);
	/* an over-budget piece still makes a chunk of one */
	assert_int_equal(pack_end(pc, t, 4, 32, 1, SIZE_MAX), 5);
	assert_int_equal(pack_end(pc, t, 3, 32, 1, SIZE_MAX), 4);
	/* the byte budget: the chunk's span, separators included (3 pieces = 32 bytes) */
	assert_int_equal(pack_end(pc, t, 0, 1000, 1, 32), 3);
	assert_int_equal(pack_end(pc, t, 0, 1000, 1, 31), 2);
	assert_int_equal(pack_end(pc, t, 8, 1000, 1, SIZE_MAX), 10);
	/* overlap: whole pieces back from the end, never to the start */
	assert_int_equal(skv_pack_next_start(t, 10, 0, 3, 0), 3);
	assert_int_equal(skv_pack_next_start(t, 10, 0, 3, 9), 3);
	assert_int_equal(skv_pack_next_start(t, 10, 0, 3, 10), 2);
	assert_int_equal(skv_pack_next_start(t, 10, 0, 3, 25), 1);
	assert_int_equal(skv_pack_next_start(t, 10, 0, 3, 1000), 1);
	assert_int_equal(skv_pack_next_start(t, 10, 2, 10, 1000), 10);
	/* a whole walk with overlap covers every piece and always moves on */
	size_t s = 0, chunks = 0, covered = 0, dropped = 0;
	while (s < 10) {
		size_t s0 = s, e = skv_pack_end(pc, t, 10, &s, covered, 32, 1, SIZE_MAX);
		dropped += s != s0;
		assert_true(e > s && e > covered);
		covered = e;
		s = skv_pack_next_start(t, 10, s, e, 10);
		chunks++;
	}
	assert_int_equal(covered, 10);
	assert_true(chunks >= 4 && chunks <= 8);
	/* [2, 4) then the overlap (piece 3) cannot take the 50-token piece 4 with it: dropped */
	assert_int_equal(dropped, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_paragraphs),
		cmocka_unit_test(test_sentences),
		cmocka_unit_test(test_words_and_bytes),
		cmocka_unit_test(test_pack),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
