/* doc-pdf.c: PDF text through poppler's glib API, page by page in poppler's reading order. A
 * page's lines are joined into paragraphs at blank lines; a word hyphenated across a line end
 * ("exam-" / "ple") is joined again. Encrypted documents that need a password are refused. */
#include <errno.h>
#include <poppler.h>
#include <string.h>

#include "doc-internal.h"

#define MAX_PAGES 20000

static bool is_lower_ascii_or_utf8(unsigned char c) { return (c >= 'a' && c <= 'z') || c >= 0x80; }

struct line {
	const char *s; /* into the page's text */
	size_t n;      /* bytes, without the line end and trailing blanks */
	double top, bottom; /* points from the page's top; both 0 when the layout is unknown */
};

/* Splits T into lines and, when poppler's layout (one rectangle per character of T) matches,
 * gives each line its vertical extent. Returns the count, or -ENOMEM. */
static int split_lines(const char *t, const PopplerRectangle *rects, guint n_rects, struct line **ret)
{
	size_t cap = 64, n = 0;
	struct line *l = malloc(cap * sizeof(*l));
	if (!l)
		return -ENOMEM;
	bool layout = rects && (glong)n_rects == g_utf8_strlen(t, -1);
	guint ci = 0;
	for (const char *p = t; *p;) {
		const char *e = strchr(p, '\n');
		size_t k = e ? (size_t)(e - p) : strlen(p);
		if (n == cap) {
			struct line *g = realloc(l, (cap *= 2) * sizeof(*l));
			if (!g) {
				free(l);
				return -ENOMEM;
			}
			l = g;
		}
		struct line *ln = &l[n++];
		ln->s = p;
		ln->n = k;
		while (ln->n && (p[ln->n - 1] == '\r' || p[ln->n - 1] == ' '))
			ln->n--;
		ln->top = ln->bottom = 0;
		if (layout) {
			bool first = true;
			for (const char *q = p; q < p + k; q = g_utf8_next_char(q), ci++) {
				if (*q == ' ' || ci >= n_rects)
					continue;
				const PopplerRectangle *r = &rects[ci];
				if (first || r->y1 < ln->top)
					ln->top = r->y1;
				if (first || r->y2 > ln->bottom)
					ln->bottom = r->y2;
				first = false;
			}
			ci++; /* the line end has a rectangle of its own */
		}
		if (!e)
			break;
		p = e + 1;
	}
	*ret = l;
	return (int)n;
}

/* One page's text as paragraphs. PDF has no paragraphs, only positioned lines, so they are
 * inferred from the layout: a paragraph ends at an empty line, at a vertical gap well above the
 * page's usual gap between lines of one size (1.5x; a line's height when the page shows no usual
 * gap), or where the text height changes by a fifth (a heading). The lines of a paragraph are joined by a space, or by nothing after a
 * hyphen that splits a word ("exam-" / "ple"). */
void doc_pdf_page_text(struct doc_out *o, const char *t, const PopplerRectangle *rects, guint n_rects)
{
	struct line *l = NULL;
	int n = split_lines(t, rects, n_rects, &l);
	if (n < 0) {
		o->over = true; /* out of memory: reported as a limit, the text is not partial */
		return;
	}
	/* the usual gap: the smallest between two lines of about the same height (a paragraph's
	 * own leading), known when at least two such pairs exist */
	double usual = -1;
	int pairs = 0;
	for (int i = 0; i + 1 < n; i++) {
		const struct line *a = &l[i], *b = &l[i + 1];
		double ha = a->bottom - a->top, hb = b->bottom - b->top;
		if (!a->n || !b->n || ha <= 0 || hb <= 0 || hb > 1.2 * ha || ha > 1.2 * hb || b->top < a->bottom)
			continue;
		double gap = b->top - a->bottom;
		if (usual < 0 || gap < usual)
			usual = gap;
		pairs++;
	}
	if (pairs < 2)
		usual = -1;
	for (int i = 0; i < n; i++) {
		const struct line *ln = &l[i];
		if (!ln->n) {
			doc_out_break(o);
			continue;
		}
		const struct line *next = i + 1 < n ? &l[i + 1] : NULL;
		bool known = next && next->n && ln->bottom > ln->top && next->bottom > next->top;
		bool ends = false;
		if (known) {
			double h = ln->bottom - ln->top, nh = next->bottom - next->top;
			double gap = next->top - ln->bottom;
			/* without a usual gap to compare with, a blank line's worth of space ends it */
			ends = (usual >= 0 ? gap > 1.5 * usual + 0.5 : gap > h) || nh > 1.2 * h || h > 1.2 * nh;
		}
		if (!ends && ln->n >= 2 && ln->s[ln->n - 1] == '-' && ln->s[ln->n - 2] != ' ' && ln->s[ln->n - 2] != '-' &&
		    next && next->n && is_lower_ascii_or_utf8((unsigned char)next->s[0])) {
			doc_out_text(o, ln->s, ln->n - 1);
			o->pending_space = false;
			continue;
		}
		doc_out_text(o, ln->s, ln->n);
		if (ends)
			doc_out_break(o);
		else
			o->pending_space = true;
	}
	free(l);
}

int doc_read_pdf(const char *data, size_t len, size_t max, struct skv_doc_text *ret, struct skv_err *err)
{
	GError *ge = NULL;
	GBytes *bytes = g_bytes_new_static(data, len);
	PopplerDocument *d = poppler_document_new_from_bytes(bytes, NULL, &ge);
	g_bytes_unref(bytes); /* the document holds its own reference */
	if (!d) {
		int r;
		if (ge && ge->domain == POPPLER_ERROR && ge->code == POPPLER_ERROR_ENCRYPTED)
			r = skv_err_set(err, -EINVAL, "pdf: the document is encrypted and needs a password");
		else
			r = skv_err_set(err, -EINVAL, "pdf: poppler cannot read it: %s", ge ? ge->message : "unknown error");
		g_clear_error(&ge);
		return r;
	}
	int pages = poppler_document_get_n_pages(d);
	if (pages > MAX_PAGES) {
		g_object_unref(d);
		return skv_err_set(err, -EFBIG, "pdf: %d pages is more than the limit of %d", pages, MAX_PAGES);
	}
	struct doc_out o;
	doc_out_init(&o, max);
	for (int i = 0; i < pages && !o.over; i++) {
		PopplerPage *pg = poppler_document_get_page(d, i);
		if (!pg)
			continue;
		char *t = poppler_page_get_text(pg);
		PopplerRectangle *rects = NULL;
		guint n_rects = 0;
		if (t && !poppler_page_get_text_layout(pg, &rects, &n_rects))
			rects = NULL;
		if (t)
			doc_pdf_page_text(&o, t, rects, n_rects);
		g_free(rects);
		g_free(t);
		doc_out_break(&o);
		g_object_unref(pg);
	}
	g_object_unref(d);
	int r = doc_out_finish(&o, ret, SKV_DOC_PDF, err);
	doc_out_done(&o);
	if (r == 0)
		ret->pages = (uint32_t)pages;
	return r;
}
