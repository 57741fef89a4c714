/* tokenizer-normalize.c: the NFC normalizer (Qwen2's tokenizer.json has one), on ICU.
 *
 * Unicode normalization is ICU's job, not ours: its tables and the canonical ordering and
 * composition algorithm are what every other program trusts. ICU works in UTF-16, so a text that
 * is not all ASCII (ASCII is NFC already, and stays a zero-copy fast path) goes UTF-8 -> UTF-16 ->
 * NFC -> UTF-8 through amortized buffers. What differs from tokenizers' own tables (the
 * unicode-normalization-alignments crate) is measured by tests/test-tokenizer.c over every code
 * point and every canonical composition, see docs/tokenizer.md.
 */
#include "tokenizer-internal.h"

#include <string.h>
#include <unicode/unorm2.h>
#include <unicode/ustring.h>

static int grow16(uint16_t **p, size_t *cap, size_t need)
{
	if (need <= *cap && *p)
		return 0;
	size_t c = SKV_MAX(need, 2 * *cap);
	if (c > INT32_MAX / 2)
		return -E2BIG;
	uint16_t *n = realloc(*p, c * sizeof(uint16_t));
	if (!n)
		return -ENOMEM;
	*p = n;
	*cap = c;
	return 0;
}

ssize_t skv_tok_nfc(const void *nfc, const char *s, size_t n, struct skv_tok_nfc_buf *b, const char **ret)
{
	UErrorCode st = U_ZERO_ERROR;
	int32_t l16 = 0, ln = 0, l8 = 0;
	size_t i = 0;

	while (i < n && !((uint8_t)s[i] & 0x80))
		i++;
	if (i == n) {
		*ret = s;
		return (ssize_t)n;
	}
	if (n > INT32_MAX / 4)
		return -E2BIG;
	/* UTF-16 never needs more units than UTF-8 has bytes; NFC grows a text at most 3 times
	 * (UAX #15), and ICU would say so otherwise */
	if (grow16(&b->u16[0], &b->cap16[0], n + 1) < 0 || grow16(&b->u16[1], &b->cap16[1], 3 * n + 1) < 0)
		return -ENOMEM;
	u_strFromUTF8(b->u16[0], (int32_t)b->cap16[0], &l16, s, (int32_t)n, &st);
	if (U_FAILURE(st))
		return -EILSEQ;
	ln = unorm2_normalize(nfc, b->u16[0], l16, b->u16[1], (int32_t)b->cap16[1], &st);
	if (st == U_BUFFER_OVERFLOW_ERROR) { /* ICU says how much it needs */
		st = U_ZERO_ERROR;
		if (grow16(&b->u16[1], &b->cap16[1], (size_t)ln + 1) < 0)
			return -ENOMEM;
		ln = unorm2_normalize(nfc, b->u16[0], l16, b->u16[1], (int32_t)b->cap16[1], &st);
	}
	if (U_FAILURE(st))
		return st == U_MEMORY_ALLOCATION_ERROR ? -ENOMEM : -EIO;
	size_t need = 3 * (size_t)ln + 1;
	if (need > b->cap_out) {
		char *o = realloc(b->out, need);
		if (!o)
			return -ENOMEM;
		b->out = o;
		b->cap_out = need;
	}
	u_strToUTF8(b->out, (int32_t)b->cap_out, &l8, b->u16[1], ln, &st);
	if (U_FAILURE(st))
		return -EIO;
	*ret = b->out;
	return l8;
}

void skv_tok_nfc_buf_done(struct skv_tok_nfc_buf *b)
{
	free(b->out);
	free(b->u16[0]);
	free(b->u16[1]);
	memset(b, 0, sizeof(*b));
}
