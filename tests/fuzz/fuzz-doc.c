/* fuzz-doc: doc/ on hostile documents: the detector, the text/charset reader, the HTML walk, the
 * DOCX and ODT package readers (libzip, libxml2) and the PDF paragraph builder fed hostile text
 * and layouts. poppler itself is not driven here: it is fuzzed upstream (OSS-Fuzz) and is not
 * instrumented in this build. The first byte picks the path; the text produced must be valid
 * UTF-8 of the length reported, within the limit asked for. */
#include <glib.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "doc-internal.h"

static void check(const struct skv_doc_text *t, size_t max)
{
	if (t->len > max || strlen(t->text) != t->len || !g_utf8_validate(t->text, (gssize)t->len, NULL))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint8_t sel = data[0];
	data++;
	size--;
	size_t max = 1 + (size_t)(sel >> 4) * 4096;
	if ((sel & 7) == 7) {
		/* the PDF paragraph builder: text as given, a layout made from the bytes that follow */
		char *t = g_strndup((const char *)data, size);
		glong n = g_utf8_validate(t, -1, NULL) ? g_utf8_strlen(t, -1) : 0;
		PopplerRectangle *r = n ? g_new0(PopplerRectangle, n) : NULL;
		for (glong i = 0; i < n; i++) {
			uint8_t b = data[(size_t)i % size];
			r[i].y1 = (b & 15) * 3.0 + (double)i / 8.0;
			r[i].y2 = r[i].y1 + 1 + (b >> 4);
		}
		struct doc_out o;
		struct skv_doc_text out;
		doc_out_init(&o, max);
		if (n)
			doc_pdf_page_text(&o, t, r, (guint)n);
		if (doc_out_finish(&o, &out, SKV_DOC_PDF, NULL) == 0) {
			check(&out, max);
			free(out.text);
		}
		doc_out_done(&o);
		g_free(r);
		g_free(t);
		return 0;
	}
	static const enum skv_doc_format formats[] = {SKV_DOC_AUTO, SKV_DOC_TEXT, SKV_DOC_HTML,
						      SKV_DOC_DOCX, SKV_DOC_ODT,  SKV_DOC_TEXT};
	struct skv_doc_opts o = {.format = formats[(sel & 7) % 6], .max_text_bytes = max};
	if ((sel & 7) == 5)
		o.charset = (sel & 8) ? "SHIFT_JIS" : "UTF-16LE";
	if (o.format == SKV_DOC_AUTO && skv_doc_detect(data, size, NULL) == SKV_DOC_PDF)
		return 0; /* poppler: see above */
	struct skv_doc_text t;
	if (skv_doc_extract(data, size, &o, &t, NULL) == 0) {
		check(&t, max);
		free(t.text);
	}
	return 0;
}
