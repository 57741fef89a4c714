/* doc-html.c: HTML to paragraphs through libxml2's HTML parser (error-tolerant, as browsers are;
 * no network). Script, style and the other elements that hold no reading text are dropped with
 * everything inside them; block elements (headings, paragraphs, list items, table cells...) end a
 * paragraph; <pre> keeps its white space; <br> is a line break. The walk is iterative, so a
 * hostile nesting depth costs no stack. The charset is the page's own (BOM, <meta charset>),
 * which libxml2 reads. */
#include <errno.h>
#include <libxml/HTMLparser.h>
#include <string.h>
#include <strings.h>

#include "doc-internal.h"

static bool name_in(const xmlChar *name, const char *const *list)
{
	for (; *list; list++)
		if (strcasecmp((const char *)name, *list) == 0)
			return true;
	return false;
}

static const char *const skipped[] = {"script", "style",  "noscript", "template", "svg",	   "math",   "iframe",
				      "object", "embed",  "canvas",   "select",	  "textarea", "button", NULL};
static const char *const blocks[] = {
	"p",	  "div",     "h1",	  "h2",	     "h3",     "h4",	  "h5",	     "h6",     "li",	"ul",
	"ol",	  "dl",	     "dt",	  "dd",	     "tr",     "td",	  "th",	     "table",  "thead", "tbody",
	"tfoot",  "caption", "section",	  "article", "header", "footer",  "nav",     "aside",  "main",	"blockquote",
	"pre",	  "figure",  "figcaption", "hr",     "title",  "address", "details", "summary", "form", "fieldset",
	"legend", "body",    "html",	  "center",  NULL};

/* an element whose text is read (skipped ones are never entered, so never left) */
static bool is_kept(xmlNodePtr n)
{
	return n->type == XML_ELEMENT_NODE && n->name && !name_in(n->name, skipped);
}

struct html_walk {
	struct doc_out o;
	int pre; /* inside this many <pre>: white space kept */
};

static bool html_enter(xmlNodePtr n, void *ud)
{
	struct html_walk *w = ud;
	if (is_kept(n)) {
		if (name_in(n->name, blocks))
			doc_out_break(&w->o);
		if (strcasecmp((const char *)n->name, "br") == 0)
			doc_out_raw(&w->o, "\n", 1);
		if (strcasecmp((const char *)n->name, "pre") == 0)
			w->pre++;
		return true;
	}
	if ((n->type == XML_TEXT_NODE || n->type == XML_CDATA_SECTION_NODE) && n->content) {
		size_t k = strlen((const char *)n->content);
		if (w->pre)
			doc_out_raw(&w->o, (const char *)n->content, k);
		else
			doc_out_text(&w->o, (const char *)n->content, k);
	}
	return false;
}

static void html_leave(xmlNodePtr n, void *ud)
{
	struct html_walk *w = ud;
	if (!is_kept(n))
		return;
	if (name_in(n->name, blocks))
		doc_out_break(&w->o);
	if (strcasecmp((const char *)n->name, "pre") == 0 && w->pre)
		w->pre--;
}

int doc_read_html(const char *data, size_t len, size_t max, struct skv_doc_text *ret, struct skv_err *err)
{
	if (len > INT32_MAX)
		return skv_err_set(err, -EFBIG, "html: %zu bytes is more than libxml2 reads (%d)", len, INT32_MAX);
	htmlDocPtr doc = htmlReadMemory(data, (int)len, NULL, NULL,
					HTML_PARSE_RECOVER | HTML_PARSE_NOERROR | HTML_PARSE_NOWARNING |
						HTML_PARSE_NONET | HTML_PARSE_COMPACT);
	if (!doc)
		return skv_err_set(err, -EINVAL, "html: libxml2 could not parse the page");
	struct html_walk w = {.pre = 0};
	doc_out_init(&w.o, max);
	doc_xml_walk(xmlDocGetRootElement(doc), html_enter, html_leave, &w, &w.o.over);
	xmlFreeDoc(doc);
	int r = doc_out_finish(&w.o, ret, SKV_DOC_HTML, err);
	doc_out_done(&w.o);
	return r;
}
