/* doc-internal.h: what the readers of doc/ share: one text writer (paragraph breaks, folded
 * white space, a size limit) and each format's reader. Not installed, not used outside doc/. */
#pragma once
#include <glib.h>
#include <libxml/tree.h>
#include <poppler.h>
#include <stdbool.h>

#include "doc.h"

struct doc_out {
	GString *s;
	size_t max;	    /* bytes of text allowed */
	bool over;	    /* the limit was hit: finish fails with -EFBIG */
	bool pending_space; /* white space seen since the last text */
	bool pending_break; /* a paragraph ended since the last text */
};

void doc_out_init(struct doc_out *o, size_t max);
void doc_out_done(struct doc_out *o);
void doc_out_break(struct doc_out *o);
void doc_out_text(struct doc_out *o, const char *s, size_t n);
void doc_out_raw(struct doc_out *o, const char *s, size_t n);
/* Moves the text into *ret (0), or says why not: over the limit, empty, not UTF-8. */
int doc_out_finish(struct doc_out *o, struct skv_doc_text *ret, enum skv_doc_format f, struct skv_err *err);

/* Walks the tree under ROOT in document order without recursion (a hostile nesting depth costs
 * no stack): ENTER(n) for each node, which says whether to go into its children; LEAVE(n) once n
 * and everything under it are done (for every node entered). Stops early once *STOP is true. */
void doc_xml_walk(xmlNodePtr root, bool (*enter)(xmlNodePtr n, void *ud), void (*leave)(xmlNodePtr n, void *ud),
		  void *ud, const bool *stop);

int doc_read_html(const char *data, size_t len, size_t max, struct skv_doc_text *ret, struct skv_err *err);
/* One PDF page's text (poppler_page_get_text) into paragraphs, with its layout (one rectangle per
 * character, poppler_page_get_text_layout) when RECTS is not NULL; exposed for the fuzz target. */
void doc_pdf_page_text(struct doc_out *o, const char *t, const PopplerRectangle *rects, guint n_rects);
int doc_read_pdf(const char *data, size_t len, size_t max, struct skv_doc_text *ret, struct skv_err *err);
int doc_read_zip(const char *data, size_t len, enum skv_doc_format f, size_t max, struct skv_doc_text *ret,
		 struct skv_err *err);
/* SKV_DOC_DOCX or SKV_DOC_ODT by the zip's members, SKV_DOC_AUTO when it is neither (or no zip). */
enum skv_doc_format doc_zip_kind(const char *data, size_t len);
