/* doc.h: documents to plain UTF-8 text, for summarization (skv summarize, skv-http).
 *
 * A document's bytes come in (a file the user named, an upload); its readable text comes out as
 * UTF-8 with paragraphs separated by one blank line. Each format goes through a well-kept
 * library, never a parser of ours: PDF through poppler (glib API), HTML through libxml2's HTML
 * parser (script, style and other non-text elements dropped; headings, paragraphs, list items
 * and table cells kept as paragraphs), DOCX and ODT through libzip and libxml2 (the document
 * part only: word/document.xml, content.xml), plain text in any charset uchardet can name,
 * converted by iconv.
 *
 * The format is picked from the content (magic bytes, the zip's members, markup), and the file
 * name's extension only breaks a tie; a caller may force one. Every input is untrusted: sizes are
 * bounded (the zip member's declared and real size, the text produced, PDF pages), XML is read
 * without network access or entity expansion, and an error names the document part and the limit.
 * This library is not a layout engine: reading order is poppler's, tables become one paragraph per
 * cell, images and their alt text are dropped. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "skv-base.h"

enum skv_doc_format {
	SKV_DOC_AUTO = 0, /* pick from the content (skv_doc_detect) */
	SKV_DOC_TEXT,
	SKV_DOC_HTML,
	SKV_DOC_PDF,
	SKV_DOC_DOCX,
	SKV_DOC_ODT,
};

/* "auto", "text", "html", "pdf", "docx", "odt"; -EINVAL for another name. */
int skv_doc_format_parse(const char *name, enum skv_doc_format *ret);
const char *skv_doc_format_name(enum skv_doc_format f);

/* The format of DATA by its content; NAME (may be NULL) only breaks ties (a zip that is neither
 * DOCX nor ODT, text that might be HTML). Never fails: what nothing else claims is text. */
enum skv_doc_format skv_doc_detect(const void *data, size_t len, const char *name);

struct skv_doc_opts {
	enum skv_doc_format format; /* SKV_DOC_AUTO: skv_doc_detect */
	const char *charset;	    /* text only: the input's charset (iconv's name); NULL: detect */
	size_t max_text_bytes;	    /* the text produced may not exceed this; 0: 64 MiB */
};

struct skv_doc_text {
	char *text;		      /* NUL-terminated UTF-8, owned by the caller (free()) */
	size_t len;		      /* bytes of text, without the NUL */
	enum skv_doc_format format;   /* the format read */
	char charset[48];	      /* text: the charset converted from ("UTF-8" when none was) */
	uint32_t pages;		      /* PDF: pages read */
};

/* Extracts the text of DATA [LEN bytes] (borrowed for the call). On success fills *RET (its text
 * is the caller's) and returns 0; on failure returns a negative errno with ERR saying why in
 * words a user can act on: -EINVAL malformed or unsupported content (naming the format and the
 * part), -EILSEQ a charset that cannot be detected or converted (naming it), -EFBIG a limit
 * (naming it), -ENODATA a document with no text, -ENOMEM. */
int skv_doc_extract(const void *data, size_t len, const struct skv_doc_opts *opts, struct skv_doc_text *ret,
		    struct skv_err *err);
