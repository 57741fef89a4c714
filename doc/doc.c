/* doc.c: format detection, the text writer every reader shares, and plain text in any charset
 * (uchardet names it, iconv converts it). The readers of markup and packages are in doc-html.c,
 * doc-pdf.c and doc-zip.c. */
#include <errno.h>
#include <iconv.h>
#include <string.h>
#include <strings.h>
#include <uchardet.h>

#include "doc-internal.h"

#define DEFAULT_MAX_TEXT (64u << 20)

static const char *const format_names[] = {
	[SKV_DOC_AUTO] = "auto", [SKV_DOC_TEXT] = "text", [SKV_DOC_HTML] = "html",
	[SKV_DOC_PDF] = "pdf",	 [SKV_DOC_DOCX] = "docx", [SKV_DOC_ODT] = "odt",
};

int skv_doc_format_parse(const char *name, enum skv_doc_format *ret)
{
	for (size_t i = 0; i < SKV_ARRAY_SIZE(format_names); i++)
		if (name && strcasecmp(name, format_names[i]) == 0) {
			*ret = (enum skv_doc_format)i;
			return 0;
		}
	return -EINVAL;
}

const char *skv_doc_format_name(enum skv_doc_format f)
{
	return (size_t)f < SKV_ARRAY_SIZE(format_names) ? format_names[f] : "?";
}

/* ---- the writer: paragraphs separated by one blank line, runs of white space folded */

void doc_out_init(struct doc_out *o, size_t max)
{
	o->s = g_string_sized_new(4096);
	o->max = max;
	o->over = false;
	o->pending_space = false;
	o->pending_break = false;
}

void doc_out_done(struct doc_out *o)
{
	if (o->s)
		g_string_free(o->s, TRUE);
	o->s = NULL;
}

static void put(struct doc_out *o, const char *s, size_t n)
{
	if (o->over)
		return;
	if (o->s->len + n > o->max) {
		o->over = true;
		return;
	}
	g_string_append_len(o->s, s, (gssize)n);
}

void doc_out_break(struct doc_out *o)
{
	if (o->s->len)
		o->pending_break = true;
	o->pending_space = false;
}

/* Text of an element: white space folds to one space, leading space of a paragraph drops. */
void doc_out_text(struct doc_out *o, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
			o->pending_space = true;
			continue;
		}
		/* U+00A0 (no-break space) folds too: HTML's &nbsp; is layout, not content */
		if (c == 0xc2 && i + 1 < n && (unsigned char)s[i + 1] == 0xa0) {
			o->pending_space = true;
			i++;
			continue;
		}
		if (o->pending_break) {
			put(o, "\n\n", 2);
			o->pending_break = false;
			o->pending_space = false;
		} else if (o->pending_space && o->s->len) {
			put(o, " ", 1);
		}
		o->pending_space = false;
		size_t j = i;
		while (j < n && s[j] != ' ' && s[j] != '\t' && s[j] != '\n' && s[j] != '\r' && s[j] != '\f' &&
		       s[j] != '\v' && !((unsigned char)s[j] == 0xc2 && j + 1 < n && (unsigned char)s[j + 1] == 0xa0))
			j++;
		put(o, s + i, j - i);
		i = j - 1;
	}
}

/* Preformatted text (HTML <pre>, a DOCX tab or line break): kept as is, inside the paragraph. */
void doc_out_raw(struct doc_out *o, const char *s, size_t n)
{
	if (!n)
		return;
	if (o->pending_break) {
		put(o, "\n\n", 2);
		o->pending_break = false;
	} else if (o->pending_space && o->s->len) {
		put(o, " ", 1);
	}
	o->pending_space = false;
	put(o, s, n);
}

int doc_out_finish(struct doc_out *o, struct skv_doc_text *ret, enum skv_doc_format f, struct skv_err *err)
{
	if (o->over)
		return skv_err_set(err, -EFBIG, "%s: the text is longer than the limit of %zu bytes", skv_doc_format_name(f),
				   o->max);
	if (!o->s->len)
		return skv_err_set(err, -ENODATA, "%s: the document has no text", skv_doc_format_name(f));
	if (!g_utf8_validate(o->s->str, (gssize)o->s->len, NULL))
		return skv_err_set(err, -EILSEQ, "%s: the text is not valid UTF-8", skv_doc_format_name(f));
	ret->len = o->s->len;
	ret->text = g_string_free(o->s, FALSE); /* g_malloc is malloc: glib >= 2.46 */
	o->s = NULL;
	ret->format = f;
	return 0;
}

void doc_xml_walk(xmlNodePtr root, bool (*enter)(xmlNodePtr n, void *ud), void (*leave)(xmlNodePtr n, void *ud),
		  void *ud, const bool *stop)
{
	xmlNodePtr n = root;
	while (n && !*stop) {
		if (enter(n, ud) && n->children) {
			n = n->children;
			continue;
		}
		/* n is done: leave it, then go to its next sibling or leave its ancestors */
		for (;;) {
			leave(n, ud);
			if (n == root) {
				n = NULL;
				break;
			}
			if (n->next) {
				n = n->next;
				break;
			}
			n = n->parent;
		}
	}
}

/* ---- detection */

static bool has_prefix_ci(const char *s, size_t n, const char *p)
{
	size_t pn = strlen(p);
	return n >= pn && strncasecmp(s, p, pn) == 0;
}

static bool looks_html(const char *s, size_t n)
{
	size_t i = 0;
	if (n >= 3 && memcmp(s, "\xef\xbb\xbf", 3) == 0)
		i = 3;
	while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
		i++;
	const char *p = s + i;
	size_t m = n - i;
	if (has_prefix_ci(p, m, "<!doctype html") || has_prefix_ci(p, m, "<html") || has_prefix_ci(p, m, "<head") ||
	    has_prefix_ci(p, m, "<body"))
		return true;
	/* an XML prolog or a comment first: look for <html in the first 1 KiB */
	if (has_prefix_ci(p, m, "<?xml") || has_prefix_ci(p, m, "<!--")) {
		size_t k = SKV_MIN(m, (size_t)1024);
		for (size_t j = 0; j + 5 <= k; j++)
			if (strncasecmp(p + j, "<html", 5) == 0)
				return true;
	}
	return false;
}

static bool name_has_ext(const char *name, const char *ext)
{
	if (!name)
		return false;
	size_t n = strlen(name), e = strlen(ext);
	return n > e && name[n - e - 1] == '.' && strcasecmp(name + n - e, ext) == 0;
}

enum skv_doc_format skv_doc_detect(const void *data, size_t len, const char *name)
{
	const char *s = data;
	if (len >= 5 && memcmp(s, "%PDF-", 5) == 0)
		return SKV_DOC_PDF;
	if (len >= 4 && memcmp(s, "PK\x03\x04", 4) == 0) {
		enum skv_doc_format f = doc_zip_kind(data, len);
		if (f != SKV_DOC_AUTO)
			return f;
		if (name_has_ext(name, "odt"))
			return SKV_DOC_ODT;
		return SKV_DOC_DOCX; /* a zip of neither kind: the DOCX reader names what is missing */
	}
	if (looks_html(s, len) || ((name_has_ext(name, "html") || name_has_ext(name, "htm") || name_has_ext(name, "xhtml")) &&
				   len && memchr(s, '<', SKV_MIN(len, (size_t)4096))))
		return SKV_DOC_HTML;
	return SKV_DOC_TEXT;
}

/* ---- plain text */

/* The charset of S: a BOM wins, then valid UTF-8 (pure ASCII included), then uchardet. */
static int detect_charset(const char *s, size_t n, char *ret, size_t ret_size, struct skv_err *err)
{
	if (n >= 3 && memcmp(s, "\xef\xbb\xbf", 3) == 0) {
		skv_strscpy(ret, "UTF-8", ret_size);
		return 0;
	}
	if (n >= 2 && (memcmp(s, "\xff\xfe", 2) == 0 || memcmp(s, "\xfe\xff", 2) == 0)) {
		skv_strscpy(ret, "UTF-16", ret_size); /* iconv reads the BOM */
		return 0;
	}
	if (g_utf8_validate(s, (gssize)n, NULL)) {
		skv_strscpy(ret, "UTF-8", ret_size);
		return 0;
	}
	uchardet_t ud = uchardet_new();
	if (!ud)
		return skv_err_set(err, -ENOMEM, "text: out of memory");
	int r = uchardet_handle_data(ud, s, n);
	uchardet_data_end(ud);
	const char *cs = r == 0 ? uchardet_get_charset(ud) : "";
	if (!cs || !*cs || strcasecmp(cs, "ASCII") == 0) {
		uchardet_delete(ud);
		return skv_err_set(err, -EILSEQ,
				   "text: cannot tell the charset (not UTF-8, and uchardet does not recognise it); "
				   "name it (skv summarize --charset NAME)");
	}
	skv_strscpy(ret, cs, ret_size);
	uchardet_delete(ud);
	return 0;
}

static int read_text(const char *s, size_t n, const struct skv_doc_opts *o, size_t max, struct skv_doc_text *ret,
		     struct skv_err *err)
{
	char cs[48];
	int r;

	bool utf16_bom = n >= 2 && (memcmp(s, "\xff\xfe", 2) == 0 || memcmp(s, "\xfe\xff", 2) == 0);
	const char *nul = utf16_bom || o->charset ? NULL : memchr(s, '\0', n);
	if (nul)
		return skv_err_set(err, -EINVAL, "text: looks binary (a NUL byte at offset %zu); if it is a document, name its "
				   "format (--format), or its charset (--charset) if it is UTF-16 or UTF-32 text without a BOM",
				   (size_t)(nul - s));
	if (o->charset) {
		if (strlen(o->charset) >= sizeof(cs))
			return skv_err_set(err, -EINVAL, "text: charset name \"%.48s...\" is too long", o->charset);
		skv_strscpy(cs, o->charset, sizeof(cs));
	} else {
		r = detect_charset(s, n, cs, sizeof(cs), err);
		if (r < 0)
			return r;
	}
	bool utf8 = strcasecmp(cs, "UTF-8") == 0 || strcasecmp(cs, "UTF8") == 0;
	if (utf8) {
		if (n >= 3 && memcmp(s, "\xef\xbb\xbf", 3) == 0) {
			s += 3;
			n -= 3;
		}
		const char *bad;
		if (!g_utf8_validate(s, (gssize)n, &bad))
			return skv_err_set(err, -EILSEQ, "text: not valid UTF-8 (at byte %zu); name its charset with --charset",
					   (size_t)(bad - s));
		if (n > max)
			return skv_err_set(err, -EFBIG, "text: %zu bytes is more than the limit of %zu", n, max);
		ret->text = g_strndup(s, n);
		ret->len = n;
	} else {
		iconv_t cd = iconv_open("UTF-8", cs);
		if (cd == (iconv_t)-1)
			return skv_err_set(err, -EILSEQ, "text: charset \"%s\" is not one iconv can convert", cs);
		/* UTF-8 is at most 3 bytes per UTF-16 unit and 4 per code point: grow as needed */
		size_t cap = SKV_MIN(max, n * 2 + 16), used = 0;
		char *out = malloc(cap + 1);
		char *in = (char *)s;
		size_t inleft = n;
		r = 0;
		while (out && inleft) {
			char *op = out + used;
			size_t opleft = cap - used;
			size_t k = iconv(cd, &in, &inleft, &op, &opleft);
			used = (size_t)(op - out);
			if (k != (size_t)-1)
				break;
			if (errno == E2BIG) {
				if (cap >= max) {
					r = skv_err_set(err, -EFBIG, "text: the text is longer than the limit of %zu bytes", max);
					break;
				}
				cap = SKV_MIN(max, cap * 2);
				char *grown = realloc(out, cap + 1);
				if (!grown) {
					free(out);
					out = NULL;
				}
				out = grown;
				continue;
			}
			r = skv_err_set(err, -EILSEQ, "text: byte %zu is not valid %s", (size_t)(in - s), cs);
			break;
		}
		iconv_close(cd);
		if (!out)
			return skv_err_set(err, -ENOMEM, "text: out of memory");
		if (r < 0) {
			free(out);
			return r;
		}
		out[used] = '\0';
		/* a BOM that the conversion kept (UTF-16LE named explicitly, say) */
		if (used >= 3 && memcmp(out, "\xef\xbb\xbf", 3) == 0) {
			memmove(out, out + 3, used - 2);
			used -= 3;
		}
		if (memchr(out, '\0', used)) {
			free(out);
			return skv_err_set(err, -EINVAL, "text: a NUL character after conversion from %s (a binary file?)", cs);
		}
		ret->text = out;
		ret->len = used;
	}
	if (!ret->text)
		return skv_err_set(err, -ENOMEM, "text: out of memory");
	if (memchr(ret->text, '\0', ret->len)) {
		free(ret->text);
		ret->text = NULL;
		return skv_err_set(err, -EINVAL, "text: looks binary (a NUL byte); give --format if it is a document");
	}
	skv_strscpy(ret->charset, cs, sizeof(ret->charset));
	ret->format = SKV_DOC_TEXT;
	bool blank = true;
	for (size_t i = 0; i < ret->len && blank; i++)
		blank = ret->text[i] == ' ' || ret->text[i] == '\n' || ret->text[i] == '\r' || ret->text[i] == '\t';
	if (blank) {
		free(ret->text);
		ret->text = NULL;
		return skv_err_set(err, -ENODATA, "text: the document has no text");
	}
	return 0;
}

int skv_doc_extract(const void *data, size_t len, const struct skv_doc_opts *opts, struct skv_doc_text *ret,
		    struct skv_err *err)
{
	struct skv_doc_opts o = opts ? *opts : (struct skv_doc_opts){0};
	size_t max = o.max_text_bytes ? o.max_text_bytes : DEFAULT_MAX_TEXT;
	struct skv_doc_text t = {0};
	int r;

	enum skv_doc_format f = o.format == SKV_DOC_AUTO ? skv_doc_detect(data, len, NULL) : o.format;
	if (o.charset && f != SKV_DOC_TEXT)
		return skv_err_set(err, -EINVAL, "%s: a charset is given only for plain text (the %s names its own)",
				   skv_doc_format_name(f), skv_doc_format_name(f));
	switch (f) {
	case SKV_DOC_TEXT:
		r = read_text(data, len, &o, max, &t, err);
		break;
	case SKV_DOC_HTML:
		r = doc_read_html(data, len, max, &t, err);
		break;
	case SKV_DOC_PDF:
		r = doc_read_pdf(data, len, max, &t, err);
		break;
	case SKV_DOC_DOCX:
	case SKV_DOC_ODT:
		r = doc_read_zip(data, len, f, max, &t, err);
		break;
	default:
		return skv_err_set(err, -EINVAL, "unknown document format %d", (int)f);
	}
	if (r < 0)
		return r;
	if (!t.charset[0])
		skv_strscpy(t.charset, "UTF-8", sizeof(t.charset));
	*ret = t;
	return 0;
}
