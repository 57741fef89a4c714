/* fuzz-summarize-split: libskv's long-document splitter and packer (client/libskv-summarize.c)
 * on hostile text: paragraphs, then every piece split again and again until it is one
 * character, then greedy packing with overlap over fake counts. Checks the promises of
 * libskv-internal.h: pieces lie inside their parent, in order, never empty, never start or end
 * with whitespace, a split never cuts a UTF-8 sequence of valid text, and packing always moves on
 * and covers every piece. */
#include <stdlib.h>
#include <string.h>

#include "libskv-internal.h"

static bool space(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

static void check_pieces(const char *text, struct skv_piece parent, const struct skv_piece *p, size_t n)
{
	size_t at = parent.off;
	for (size_t i = 0; i < n; i++) {
		if (p[i].len == 0 || p[i].off < at || p[i].off + p[i].len > parent.off + parent.len)
			abort();
		if (space((unsigned char)text[p[i].off]) || space((unsigned char)text[p[i].off + p[i].len - 1]))
			abort();
		at = p[i].off + p[i].len;
	}
}

/* Splits p until single characters, depth-first, at most `budget` splits. */
static void split_down(const char *text, struct skv_piece p, int depth, size_t *budget)
{
	struct skv_piece *parts;
	size_t n;
	if (depth > 64 || *budget == 0)
		return;
	(*budget)--;
	if (skv_split_piece(text, p, &parts, &n) < 0)
		return;
	if (n == 0)
		abort();
	check_pieces(text, p, parts, n);
	if (n == 1 && (parts[0].off != p.off || parts[0].len != p.len))
		abort(); /* indivisible: the piece itself */
	if (n >= 2)
		for (size_t i = 0; i < n; i++)
			split_down(text, parts[i], depth + 1, budget);
	free(parts);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 4)
		return 0;
	uint32_t budget = data[0] | (uint32_t)data[1] << 8, overlap = data[2] | (uint32_t)data[3] << 4;
	data += 4;
	size -= 4;
	char *text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	struct skv_piece *p;
	size_t n;
	if (skv_split_paragraphs(text, size, &p, &n) < 0) {
		free(text);
		return 0;
	}
	check_pieces(text, (struct skv_piece){0, size}, p, n);
	size_t splits = 2000;
	for (size_t i = 0; i < n; i++)
		split_down(text, p[i], 0, &splits);

	/* packing over fake counts (a token per 3 bytes, at least 1) */
	uint32_t *tok = malloc((n ? n : 1) * sizeof(*tok));
	if (tok && n) {
		for (size_t i = 0; i < n; i++)
			tok[i] = (uint32_t)(p[i].len / 3 + 1);
		size_t s = 0, covered = 0, chunks = 0;
		while (s < n) {
			size_t e = skv_pack_end(p, tok, n, &s, covered, budget + 1u, 1, (size_t)budget * 4 + 1);
			if (e <= s || e <= covered || e > n || s > covered)
				abort();
			covered = e;
			s = skv_pack_next_start(tok, n, s, e, overlap);
			if (++chunks > n)
				abort();
		}
		if (covered != n)
			abort();
	}
	free(tok);
	free(p);
	free(text);
	return 0;
}
