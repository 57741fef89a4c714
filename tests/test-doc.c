/* test-doc.c: doc/ against documents made by the generators people use (fpdf2, python-docx,
 * odfpy, Python's codecs; tests/fixtures/doc from scripts/make-doc-fixtures.py): every format
 * finds the same sentences in order, drops what is not reading text (scripts, styles, templates),
 * keeps paragraphs apart, detects the format by content whatever the name says, converts every
 * charset, and refuses what it must (encrypted PDF, a zip bomb, a package of neither kind,
 * malformed XML, binary data, an unknown charset) with an error that names the part and limit. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "doc.h"
#include "test-util.h"

static char fixdir[4200];

static const char TITLE[] = "Quarterly Report of the Harbour Authority";
static const char *const PARAS[] = {
	"Cargo volumes rose by 12 percent in the third quarter, led by container traffic.",
	"The new crane on pier four entered service in August and cut average unloading time to 19 hours.",
	"Costs stayed within budget; the board approved the dredging plan for next year.",
};

static char *load(const char *name, size_t *len)
{
	char path[4400];
	snprintf(path, sizeof(path), "%s/%s", fixdir, name);
	return tu_slurp(path, len);
}

/* Extracts fixture NAME; returns the code, the text in *ret (caller frees), the error in *err. */
static int extract(const char *name, const struct skv_doc_opts *o, struct skv_doc_text *ret, struct skv_err *err)
{
	size_t len;
	char *data = load(name, &len);
	memset(ret, 0, sizeof(*ret));
	skv_err_clear(err);
	int r = skv_doc_extract(data, len, o, ret, err);
	free(data);
	return r;
}

/* Every needle occurs in TEXT, in this order. */
static void expect_in_order(const char *text, const char *const *needles, size_t n)
{
	const char *at = text;
	for (size_t i = 0; i < n; i++) {
		const char *p = strstr(at, needles[i]);
		if (!p)
			fail_msg("\"%s\" missing (or out of order) in:\n%s", needles[i], text);
		at = p + strlen(needles[i]);
	}
}

static void expect_absent(const char *text, const char *needle)
{
	if (strstr(text, needle))
		fail_msg("\"%s\" should not be in:\n%s", needle, text);
}

/* "a\n\nb": TEXT has A and B in separate paragraphs (a blank line between them, none inside). */
static void expect_paragraph_break(const char *text, const char *a, const char *b)
{
	const char *pa = strstr(text, a), *pb = strstr(text, b);
	assert_non_null(pa);
	assert_non_null(pb);
	assert_true(pb > pa);
	const char *brk = strstr(pa, "\n\n");
	if (!brk || brk > pb)
		fail_msg("no paragraph break between \"%s\" and \"%s\" in:\n%s", a, b, text);
}

static void expect_report(const struct skv_doc_text *t)
{
	const char *all[] = {TITLE, PARAS[0], PARAS[1], PARAS[2]};
	expect_in_order(t->text, all, 4);
	expect_paragraph_break(t->text, TITLE, PARAS[0]);
	expect_paragraph_break(t->text, PARAS[0], PARAS[1]);
	assert_int_equal(strlen(t->text), t->len);
}

static void test_pdf(void **state)
{
	(void)state;
	struct skv_doc_text t;
	struct skv_err err;
	assert_int_equal(extract("report.pdf", NULL, &t, &err), 0);
	assert_int_equal(t.format, SKV_DOC_PDF);
	assert_int_equal(t.pages, 2);
	expect_report(&t);
	expect_paragraph_break(t.text, PARAS[1], PARAS[2]); /* the page break */
	/* a paragraph wrapped over several lines is one paragraph; a hyphenated line end joins */
	assert_non_null(strstr(t.text, "keeps the container terminal open around the clock, adds two inspection teams"));
	assert_non_null(strstr(t.text, "Sunday night, when traffic is lowest."));
	const char *wrapped = strstr(t.text, "Dock workers");
	assert_non_null(wrapped);
	assert_null(memmem(wrapped, (size_t)(strstr(wrapped, "lowest.") - wrapped), "\n", 1));
	expect_paragraph_break(t.text, PARAS[2], "Dock workers");
	expect_paragraph_break(t.text, "lowest.", "The authority will open");
	assert_non_null(strstr(t.text, "open an international ferry terminal in the spring."));
	free(t.text);

	assert_int_equal(extract("encrypted.pdf", NULL, &t, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "encrypted"));
	assert_int_equal(extract("empty.pdf", NULL, &t, &err), -ENODATA);
	assert_non_null(strstr(err.msg, "pdf: the document has no text"));
	/* a PDF cut short: poppler refuses it, and the message says it is the PDF */
	size_t len;
	char *data = load("report.pdf", &len);
	struct skv_doc_opts o = {.format = SKV_DOC_PDF};
	int r = skv_doc_extract(data, 200, &o, &t, &err);
	assert_true(r == -EINVAL || r == -ENODATA);
	assert_non_null(strstr(err.msg, "pdf: "));
	free(data);
}

static void test_html(void **state)
{
	(void)state;
	struct skv_doc_text t;
	struct skv_err err;
	assert_int_equal(extract("page.html", NULL, &t, &err), 0);
	assert_int_equal(t.format, SKV_DOC_HTML);
	/* &nbsp; folds to a space; <b> inside a paragraph joins it without a break */
	expect_report(&t);
	const char *tail[] = {"Tonnage", "4.2 million", "col1   col2\n  1      2", PARAS[2], "Signed, the board & staff."};
	expect_in_order(t.text, tail, 5);
	expect_paragraph_break(t.text, "Tonnage", "4.2 million"); /* table cells are paragraphs */
	assert_non_null(strstr(t.text, "next year.\nSigned")); /* <br> */
	expect_absent(t.text, "SCRIPT-NOISE");
	expect_absent(t.text, "NOSCRIPT-NOISE");
	expect_absent(t.text, "TEMPLATE-NOISE");
	expect_absent(t.text, "color: red");
	expect_absent(t.text, "\n\n\n");
	free(t.text);

	/* the page's own charset (a windows-1252 <meta>) */
	assert_int_equal(extract("page-cp1252.html", NULL, &t, &err), 0);
	const char *latin[] = {"Caf\u00e9 report", PARAS[0], "Na\u00efve \u201cquotes\u201d \u2013 \u00fcber."};
	expect_in_order(t.text, latin, 3);
	free(t.text);
}

static void test_docx_odt(void **state)
{
	(void)state;
	struct skv_doc_text t;
	struct skv_err err;
	assert_int_equal(extract("report.docx", NULL, &t, &err), 0);
	assert_int_equal(t.format, SKV_DOC_DOCX);
	expect_report(&t); /* PARAS[1] is three runs: they join into one sentence */
	expect_paragraph_break(t.text, "Tonnage", "4.2 million");
	assert_non_null(strstr(t.text, "next year.\nSigned,\tthe board."));
	free(t.text);

	assert_int_equal(extract("report.odt", NULL, &t, &err), 0);
	assert_int_equal(t.format, SKV_DOC_ODT);
	expect_report(&t);
	assert_non_null(strstr(t.text, "next year.\nSigned,\tthe   board."));
	free(t.text);

	/* the limits and the damaged packages */
	struct skv_doc_opts small = {.max_text_bytes = 1000};
	assert_int_equal(extract("bomb.docx", &small, &t, &err), -EFBIG);
	assert_non_null(strstr(err.msg, "word/document.xml inflates to 4194304 bytes, more than the limit"));
	assert_int_equal(extract("plain.zip", NULL, &t, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "docx: the package has no word/document.xml"));
	assert_int_equal(extract("malformed.docx", NULL, &t, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "docx: word/document.xml is not well-formed XML"));
	struct skv_doc_opts tiny = {.max_text_bytes = 50};
	assert_int_equal(extract("report.odt", &tiny, &t, &err), -EFBIG);
	assert_non_null(strstr(err.msg, "odt: the text is longer than the limit of 50 bytes"));
	/* a truncated zip */
	size_t len;
	char *data = load("report.docx", &len);
	struct skv_doc_opts o = {.format = SKV_DOC_DOCX};
	assert_int_equal(skv_doc_extract(data, len / 2, &o, &t, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "docx: "));
	free(data);
}

static void test_charsets(void **state)
{
	(void)state;
	static const struct {
		const char *file, *charset, *needle;
	} cases[] = {
		{"report-utf8.txt", "UTF-8", PARAS[1]},
		{"report-utf8-bom.txt", "UTF-8", TITLE},
		{"report-utf16le-bom.txt", "UTF-16", PARAS[2]},
		{"french-latin1.txt", NULL, "Le caf\u00e9 du port a re\u00e7u trois cargaisons de th\u00e9"},
		{"russian-koi8r.txt", "KOI8-R", "\u041e\u0442\u0447\u0451\u0442 \u043f\u043e\u0440\u0442\u0430"},
		{"russian-cp1251.txt", "WINDOWS-1251", "\u041e\u0442\u0447\u0451\u0442 \u043f\u043e\u0440\u0442\u0430"},
		{"japanese-sjis.txt", "SHIFT_JIS", "\u6e2f\u6e7e\u5c40\u306e\u5831\u544a\u66f8"},
	};
	for (size_t i = 0; i < SKV_ARRAY_SIZE(cases); i++) {
		struct skv_doc_text t;
		struct skv_err err;
		int r = extract(cases[i].file, NULL, &t, &err);
		if (r)
			fail_msg("%s: %d %s", cases[i].file, r, err.msg);
		assert_int_equal(t.format, SKV_DOC_TEXT);
		if (!strstr(t.text, cases[i].needle))
			fail_msg("%s (read as %s): \"%s\" missing in:\n%s", cases[i].file, t.charset, cases[i].needle, t.text);
		if (cases[i].charset && strcasecmp(t.charset, cases[i].charset) != 0)
			fail_msg("%s: charset %s, expected %s", cases[i].file, t.charset, cases[i].charset);
		assert_true(memcmp(t.text, "\xef\xbb\xbf", 3) != 0); /* no BOM left */
		free(t.text);
	}
	/* Latin-1 text: uchardet may call it ISO-8859-1 or WINDOWS-1252 (a superset); either way
	 * the text converts; naming it explicitly works too */
	struct skv_doc_text t;
	struct skv_err err;
	struct skv_doc_opts o = {.charset = "ISO-8859-1"};
	assert_int_equal(extract("french-latin1.txt", &o, &t, &err), 0);
	assert_non_null(strstr(t.text, "apr\u00e8s une r\u00e9union tr\u00e8s anim\u00e9e \u00e0 la capitainerie"));
	free(t.text);
	/* refusals: binary data, a charset iconv does not know, bytes invalid in the named charset,
	 * a charset with a format that names its own */
	assert_int_equal(extract("binary.bin", NULL, &t, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "looks binary (a NUL byte at offset 0)"));
	o.charset = "NO-SUCH-CHARSET";
	assert_int_equal(extract("french-latin1.txt", &o, &t, &err), -EILSEQ);
	assert_non_null(strstr(err.msg, "charset \"NO-SUCH-CHARSET\" is not one iconv can convert"));
	o.charset = "UTF-8";
	assert_int_equal(extract("french-latin1.txt", &o, &t, &err), -EILSEQ);
	assert_non_null(strstr(err.msg, "not valid UTF-8 (at byte 6)"));
	o = (struct skv_doc_opts){.charset = "UTF-8", .format = SKV_DOC_PDF};
	assert_int_equal(extract("report.pdf", &o, &t, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "a charset is given only for plain text"));
	o = (struct skv_doc_opts){.max_text_bytes = 100};
	assert_int_equal(extract("report-utf8.txt", &o, &t, &err), -EFBIG);
	assert_non_null(strstr(err.msg, "more than the limit of 100"));
}

static void test_detect(void **state)
{
	(void)state;
	static const struct {
		const char *file, *name;
		enum skv_doc_format f;
	} cases[] = {
		/* content decides, whatever the name says */
		{"report.pdf", "report.txt", SKV_DOC_PDF},
		{"report.docx", "report.pdf", SKV_DOC_DOCX},
		{"report.odt", "notes.docx", SKV_DOC_ODT},
		{"page.html", "page.txt", SKV_DOC_HTML},
		{"page-cp1252.html", NULL, SKV_DOC_HTML},
		{"report-utf8.txt", "report.html", SKV_DOC_TEXT}, /* no markup at all: text */
		{"french-latin1.txt", NULL, SKV_DOC_TEXT},
		{"plain.zip", "x.odt", SKV_DOC_ODT}, /* a zip of neither kind: the name breaks the tie */
		{"plain.zip", NULL, SKV_DOC_DOCX},
	};
	for (size_t i = 0; i < SKV_ARRAY_SIZE(cases); i++) {
		size_t len;
		char *data = load(cases[i].file, &len);
		enum skv_doc_format f = skv_doc_detect(data, len, cases[i].name);
		if (f != cases[i].f)
			fail_msg("%s named %s: detected %s, expected %s", cases[i].file, cases[i].name ? cases[i].name : "-",
				 skv_doc_format_name(f), skv_doc_format_name(cases[i].f));
		free(data);
	}
	enum skv_doc_format f;
	assert_int_equal(skv_doc_format_parse("DOCX", &f), 0);
	assert_int_equal(f, SKV_DOC_DOCX);
	assert_int_equal(skv_doc_format_parse("rtf", &f), -EINVAL);
	/* the forced format wins over detection: HTML read as text keeps its markup */
	struct skv_doc_text t;
	struct skv_err err;
	struct skv_doc_opts o = {.format = SKV_DOC_TEXT};
	assert_int_equal(extract("page.html", &o, &t, &err), 0);
	assert_non_null(strstr(t.text, "<script>"));
	free(t.text);
}

int main(void)
{
	snprintf(fixdir, sizeof(fixdir), "%s/tests/fixtures/doc", tu_tool("SKV_SRCDIR"));
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pdf),	 cmocka_unit_test(test_html),	cmocka_unit_test(test_docx_odt),
		cmocka_unit_test(test_charsets), cmocka_unit_test(test_detect),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
