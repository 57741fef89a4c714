/* doc-zip.c: DOCX (Office Open XML) and ODT (OpenDocument text): a zip read by libzip from
 * memory, one member (word/document.xml, content.xml) parsed by libxml2 without network access,
 * DTD loading or entity substitution. The member's size is checked against a limit before it is
 * inflated, and reading stops at the declared size (a zip bomb cannot grow past it). Only the
 * body's paragraphs are read: headers, footers, comments and deleted (tracked) text are not. */
#include <errno.h>
#include <libxml/parser.h>
#include <string.h>
#include <zip.h>

#include "doc-internal.h"

#define W_NS "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
#define TEXT_NS "urn:oasis:names:tc:opendocument:xmlns:text:1.0"
#define OFFICE_NS "urn:oasis:names:tc:opendocument:xmlns:office:1.0"
#define ODT_MIME "application/vnd.oasis.opendocument.text"
/* The inflated XML may be this much larger than the text allowed (markup is verbose: a DOCX's
 * document.xml is typically 5-20x its text), and never more than 256 MiB. */
#define MEMBER_PER_TEXT 16u
#define MAX_MEMBER (256u << 20)

static zip_t *open_zip(const char *data, size_t len, zip_error_t *ze)
{
	zip_source_t *src = zip_source_buffer_create(data, len, 0, ze);
	if (!src)
		return NULL;
	zip_t *z = zip_open_from_source(src, ZIP_RDONLY, ze);
	if (!z)
		zip_source_free(src);
	return z;
}

/* Reads member NAME whole into a NUL-terminated malloc'd buffer, at most LIMIT bytes. */
static int read_member(zip_t *z, const char *fmt, const char *name, size_t limit, char **ret, size_t *ret_len,
		       struct skv_err *err)
{
	zip_stat_t st;
	zip_stat_init(&st);
	if (zip_stat(z, name, 0, &st) != 0)
		return skv_err_set(err, -EINVAL, "%s: the package has no %s", fmt, name);
	if (!(st.valid & ZIP_STAT_SIZE) || st.size > limit)
		return skv_err_set(err, -EFBIG, "%s: %s inflates to %llu bytes, more than the limit of %zu", fmt, name,
				   (unsigned long long)st.size, limit);
	zip_file_t *f = zip_fopen(z, name, 0);
	if (!f)
		return skv_err_set(err, -EINVAL, "%s: cannot open %s: %s", fmt, name, zip_strerror(z));
	size_t n = (size_t)st.size;
	char *buf = malloc(n + 1);
	if (!buf) {
		zip_fclose(f);
		return skv_err_set(err, -ENOMEM, "%s: out of memory for %s (%zu bytes)", fmt, name, n);
	}
	size_t got = 0;
	while (got < n) {
		zip_int64_t k = zip_fread(f, buf + got, n - got);
		if (k <= 0)
			break;
		got += (size_t)k;
	}
	char extra;
	zip_int64_t more = got == n ? zip_fread(f, &extra, 1) : 0;
	const char *why = got < n || more < 0 ? zip_file_strerror(f) : NULL;
	zip_fclose(f);
	if (got < n || more != 0) {
		free(buf);
		return skv_err_set(err, -EINVAL, "%s: %s is damaged (%s)", fmt, name,
				   why ? why : "more data than its declared size");
	}
	buf[n] = '\0';
	*ret = buf;
	*ret_len = n;
	return 0;
}

enum skv_doc_format doc_zip_kind(const char *data, size_t len)
{
	zip_error_t ze;
	zip_error_init(&ze);
	zip_t *z = open_zip(data, len, &ze);
	zip_error_fini(&ze);
	if (!z)
		return SKV_DOC_AUTO;
	enum skv_doc_format f = SKV_DOC_AUTO;
	if (zip_name_locate(z, "word/document.xml", 0) >= 0) {
		f = SKV_DOC_DOCX;
	} else {
		char *mime = NULL;
		size_t n;
		if (read_member(z, "odt", "mimetype", 256, &mime, &n, NULL) == 0 && strncmp(mime, ODT_MIME, strlen(ODT_MIME)) == 0)
			f = SKV_DOC_ODT;
		else if (zip_name_locate(z, "content.xml", 0) >= 0 && !mime)
			f = SKV_DOC_ODT;
		free(mime);
	}
	zip_discard(z);
	return f;
}

static bool is_el(xmlNodePtr n, const char *ns, const char *name)
{
	return n->type == XML_ELEMENT_NODE && n->ns && n->ns->href && strcmp((const char *)n->ns->href, ns) == 0 &&
	       strcmp((const char *)n->name, name) == 0;
}

/* DOCX: w:p is a paragraph, w:t literal text, w:tab and w:br/w:cr white space; deleted text and
 * field codes are not read. */
static bool docx_enter(xmlNodePtr n, void *ud)
{
	struct doc_out *o = ud;
	if (is_el(n, W_NS, "p")) {
		doc_out_break(o);
	} else if (is_el(n, W_NS, "t")) {
		for (xmlNodePtr c = n->children; c; c = c->next)
			if (c->type == XML_TEXT_NODE && c->content)
				doc_out_raw(o, (const char *)c->content, strlen((const char *)c->content));
		return false;
	} else if (is_el(n, W_NS, "tab")) {
		doc_out_raw(o, "\t", 1);
	} else if (is_el(n, W_NS, "br") || is_el(n, W_NS, "cr")) {
		doc_out_raw(o, "\n", 1);
	} else if (is_el(n, W_NS, "delText") || is_el(n, W_NS, "instrText")) {
		return false;
	}
	return n->type == XML_ELEMENT_NODE;
}

static void docx_leave(xmlNodePtr n, void *ud)
{
	if (is_el(n, W_NS, "p"))
		doc_out_break(ud);
}

/* ODT: text:p and text:h are paragraphs whose white space folds (as ODF says); text:s adds
 * spaces, text:tab and text:line-break white space; annotations and notes' citations are skipped. */
struct odt_walk {
	struct doc_out o;
	int in_par; /* inside this many text:p / text:h */
};

static bool odt_enter(xmlNodePtr n, void *ud)
{
	struct odt_walk *w = ud;
	if (is_el(n, TEXT_NS, "p") || is_el(n, TEXT_NS, "h")) {
		doc_out_break(&w->o);
		w->in_par++;
	} else if (is_el(n, TEXT_NS, "s")) {
		xmlChar *c = xmlGetNsProp(n, (const xmlChar *)"c", (const xmlChar *)TEXT_NS);
		long k = c ? strtol((const char *)c, NULL, 10) : 1;
		xmlFree(c);
		for (long i = 0; i < SKV_MIN(SKV_MAX(k, 1L), 1024L); i++)
			doc_out_raw(&w->o, " ", 1);
	} else if (is_el(n, TEXT_NS, "tab")) {
		doc_out_raw(&w->o, "\t", 1);
	} else if (is_el(n, TEXT_NS, "line-break")) {
		doc_out_raw(&w->o, "\n", 1);
	} else if (is_el(n, OFFICE_NS, "annotation") || is_el(n, TEXT_NS, "note-citation") ||
		   is_el(n, TEXT_NS, "tracked-changes")) {
		return false;
	} else if (n->type == XML_TEXT_NODE && w->in_par && n->content) {
		doc_out_text(&w->o, (const char *)n->content, strlen((const char *)n->content));
	}
	return n->type == XML_ELEMENT_NODE;
}

static void odt_leave(xmlNodePtr n, void *ud)
{
	struct odt_walk *w = ud;
	if (is_el(n, TEXT_NS, "p") || is_el(n, TEXT_NS, "h")) {
		doc_out_break(&w->o);
		if (w->in_par)
			w->in_par--;
	}
}

int doc_read_zip(const char *data, size_t len, enum skv_doc_format f, size_t max, struct skv_doc_text *ret,
		 struct skv_err *err)
{
	const char *fmt = skv_doc_format_name(f);
	const char *member = f == SKV_DOC_ODT ? "content.xml" : "word/document.xml";
	zip_error_t ze;
	zip_error_init(&ze);
	zip_t *z = open_zip(data, len, &ze);
	if (!z) {
		int r = skv_err_set(err, -EINVAL, "%s: not a readable zip package: %s", fmt, zip_error_strerror(&ze));
		zip_error_fini(&ze);
		return r;
	}
	zip_error_fini(&ze);
	char *xml = NULL;
	size_t n = 0;
	size_t limit = max > (MAX_MEMBER - (1u << 20)) / MEMBER_PER_TEXT ? MAX_MEMBER : max * MEMBER_PER_TEXT + (1u << 20);
	int r = read_member(z, fmt, member, limit, &xml, &n, err);
	zip_discard(z);
	if (r < 0)
		return r;
	if (n > INT32_MAX) {
		free(xml);
		return skv_err_set(err, -EFBIG, "%s: %s is larger than libxml2 reads", fmt, member);
	}
	xmlDocPtr doc = xmlReadMemory(xml, (int)n, NULL, NULL, XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
	free(xml);
	if (!doc)
		return skv_err_set(err, -EINVAL, "%s: %s is not well-formed XML", fmt, member);
	struct odt_walk w = {.in_par = 0};
	doc_out_init(&w.o, max);
	xmlNodePtr root = xmlDocGetRootElement(doc);
	if (f == SKV_DOC_ODT)
		doc_xml_walk(root, odt_enter, odt_leave, &w, &w.o.over);
	else
		doc_xml_walk(root, docx_enter, docx_leave, &w.o, &w.o.over);
	xmlFreeDoc(doc);
	r = doc_out_finish(&w.o, ret, f, err);
	doc_out_done(&w.o);
	return r;
}
