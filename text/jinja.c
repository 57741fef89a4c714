/* jinja.c: a lexer, a parser into a tree and a tree-walking evaluator for the Jinja subset of
 * jinja.h, with Python's semantics for the values chat templates handle (str, int, float, bool,
 * None, list, tuple, dict, jinja2's Undefined and namespace).
 *
 * Everything a parse or a render allocates comes from one arena freed as a whole, so values are
 * never freed one by one (Jinja's values are immutable in the sandbox, namespaces aside). Errors
 * deep in the evaluator longjmp back to skv_jinja_parse/skv_jinja_render, which free the arena:
 * no partial state survives a failed render. Not a general Jinja: no file loading (include,
 * import, extends), no autoescape, no Python objects beyond the JSON-shaped ones.
 */
#include "jinja.h"

#include <errno.h>
#include <json-c/json.h>
#include <locale.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wctype.h>

/* ---- arena ------------------------------------------------------------------------------- */

struct chunk {
	struct chunk *next;
	size_t used, cap;
	max_align_t data[];
};

struct arena {
	struct chunk *head;
	size_t total, limit;
};

static void arena_free(struct arena *a)
{
	for (struct chunk *c = a->head, *n; c; c = n) {
		n = c->next;
		free(c);
	}
	a->head = NULL;
	a->total = 0;
}

/* NULL when out of memory or past the limit (the caller reports which). */
static void *arena_alloc(struct arena *a, size_t n)
{
	n = SKV_ALIGN_UP(n ? n : 1, sizeof(max_align_t));
	if (!a->head || a->head->cap - a->head->used < n) {
		size_t cap = SKV_MAX(n, (size_t)64 << 10);
		if (a->total + cap > a->limit)
			return NULL;
		struct chunk *c = malloc(sizeof(*c) + cap);
		if (!c)
			return NULL;
		c->next = a->head;
		c->used = 0;
		c->cap = cap;
		a->head = c;
		a->total += cap;
	}
	void *p = (char *)a->head->data + a->head->used;
	a->head->used += n;
	return p;
}

/* ---- values ------------------------------------------------------------------------------ */

enum vt { V_UNDEF, V_NONE, V_BOOL, V_INT, V_FLOAT, V_STR, V_LIST, V_DICT, V_NS, V_MACRO, V_FUNC };

struct str {
	const char *p;
	size_t n;
};

struct val {
	uint8_t t;
	bool tuple; /* V_LIST: a Python tuple */
	union {
		bool b;
		int64_t i;
		double f;
		struct str s; /* V_STR; V_UNDEF: the name that was undefined (may be empty) */
		struct list *l;
		struct dict *d; /* V_DICT, V_NS */
		struct macro *m;
		int fn;
	};
};

struct list {
	size_t n;
	struct val *v;
};

struct dict {
	size_t n, cap;
	struct val *k, *v;
};

enum fn { FN_RAISE, FN_STRFTIME, FN_NAMESPACE, FN_RANGE, FN_DICT };

/* ---- tokens and nodes -------------------------------------------------------------------- */

enum tok { T_EOF, T_DATA, T_VAR_BEGIN, T_VAR_END, T_BLOCK_BEGIN, T_BLOCK_END, T_NAME, T_STRING, T_INT, T_FLOAT, T_OP };

struct token {
	enum tok t;
	int line;
	struct str s; /* T_DATA, T_NAME, T_STRING (unescaped), T_OP */
	int64_t i;
	double f;
};

enum nk {
	/* statements */
	N_DATA, N_OUT, N_FOR, N_IF, N_SET, N_SETBLOCK, N_MACRO, N_CALLBLOCK, N_BREAK, N_CONTINUE,
	/* expressions */
	E_CONST, E_NAME, E_ATTR, E_ITEM, E_SLICE, E_CALL, E_FILTER, E_TEST, E_BIN, E_NEG, E_POS, E_NOT, E_AND, E_OR,
	E_COND, E_CMP, E_LIST, E_TUPLE, E_DICT, E_KWARG,
};

struct nlist {
	struct node **v;
	size_t n;
};

struct node {
	enum nk k;
	int line;
	int op; /* E_BIN, E_CMP: the operator; E_TEST: negated */
	struct node *a, *b, *c;
	struct nlist l1, l2;
	struct str s;
	struct val v;
};

struct skv_jinja {
	struct arena arena;
	struct nlist body;
	char name[64];
};

/* ---- errors ------------------------------------------------------------------------------ */

struct ctx {
	jmp_buf jb;
	struct skv_err *err;
	const char *name;
	struct arena *arena;
	/* parse */
	struct token *toks;
	size_t n_toks, cap_toks, pos;
	unsigned depth;
	/* render */
	uint64_t steps, max_steps;
	size_t max_output;
	unsigned max_depth;
	time_t now;
	bool in_loop;
};

static _Noreturn SKV_PRINTF(4, 5) void fail(struct ctx *x, int code, int line, const char *fmt, ...)
{
	char msg[600];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (code == -ECANCELED)
		skv_err_set(x->err, code, "%s", msg);
	else if (line > 0)
		skv_err_set(x->err, code, "%s:%d: %s", x->name, line, msg);
	else
		skv_err_set(x->err, code, "%s: %s", x->name, msg);
	longjmp(x->jb, 1);
}

static void *xalloc(struct ctx *x, size_t n)
{
	void *p = arena_alloc(x->arena, n);
	if (!p)
		fail(x, -E2BIG, 0, "the template needs more than %zu bytes of memory", x->arena->limit);
	return p;
}

static void *xcalloc(struct ctx *x, size_t n, size_t size)
{
	size_t b;
	if (!skv_mul_size(n, size, &b))
		fail(x, -E2BIG, 0, "too large");
	void *p = xalloc(x, b);
	memset(p, 0, b);
	return p;
}

static struct str xstrdup(struct ctx *x, const char *p, size_t n)
{
	char *q = xalloc(x, n + 1);
	memcpy(q, p, n);
	q[n] = '\0';
	return (struct str){q, n};
}

/* ---- growable byte buffer (in the arena, except the render's output) ----------------------- */

struct buf {
	char *p;
	size_t n, cap, limit;
	bool heap; /* malloc'ed: the render's output */
};

static void buf_put(struct ctx *x, struct buf *b, const char *s, size_t n)
{
	if (b->limit && b->n + n > b->limit)
		fail(x, -E2BIG, 0, "the rendered text exceeds %zu bytes", b->limit);
	if (b->n + n + 1 > b->cap) {
		size_t cap = SKV_MAX(b->cap * 2, b->n + n + 64);
		char *p;
		if (b->heap) {
			p = realloc(b->p, cap);
			if (!p)
				fail(x, -ENOMEM, 0, "out of memory");
		} else {
			p = xalloc(x, cap);
			if (b->n)
				memcpy(p, b->p, b->n);
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->n, s, n);
	b->n += n;
	b->p[b->n] = '\0';
}
static void buf_puts(struct ctx *x, struct buf *b, const char *s) { buf_put(x, b, s, strlen(s)); }
static SKV_PRINTF(3, 4) void buf_printf(struct ctx *x, struct buf *b, const char *fmt, ...)
{
	char tmp[64];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	buf_put(x, b, tmp, (size_t)SKV_MIN(n, (int)sizeof(tmp) - 1));
}
static struct str buf_str(struct buf *b) { return (struct str){b->p ? b->p : "", b->n}; }

/* ---- UTF-8 and Python's whitespace ------------------------------------------------------- */

static size_t utf8_len(const char *s, size_t n, size_t i)
{
	unsigned char c = (unsigned char)s[i];
	size_t l = c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
	return SKV_MIN(l, n - i);
}

static uint32_t utf8_cp(const char *s, size_t n, size_t i)
{
	const unsigned char *u = (const unsigned char *)s + i;
	size_t l = utf8_len(s, n, i);
	if (l == 1)
		return u[0];
	if (l == 2)
		return (uint32_t)(u[0] & 0x1f) << 6 | (u[1] & 0x3f);
	if (l == 3)
		return (uint32_t)(u[0] & 0x0f) << 12 | (uint32_t)(u[1] & 0x3f) << 6 | (u[2] & 0x3f);
	return (uint32_t)(u[0] & 0x07) << 18 | (uint32_t)(u[1] & 0x3f) << 12 | (uint32_t)(u[2] & 0x3f) << 6 |
	       (u[3] & 0x3f);
}

static void put_utf8(struct ctx *x, struct buf *b, uint32_t cp)
{
	char o[4];
	size_t n;
	if (cp < 0x80)
		o[0] = (char)cp, n = 1;
	else if (cp < 0x800)
		o[0] = (char)(0xc0 | cp >> 6), o[1] = (char)(0x80 | (cp & 0x3f)), n = 2;
	else if (cp < 0x10000)
		o[0] = (char)(0xe0 | cp >> 12), o[1] = (char)(0x80 | ((cp >> 6) & 0x3f)), o[2] = (char)(0x80 | (cp & 0x3f)),
		n = 3;
	else
		o[0] = (char)(0xf0 | cp >> 18), o[1] = (char)(0x80 | ((cp >> 12) & 0x3f)),
		o[2] = (char)(0x80 | ((cp >> 6) & 0x3f)), o[3] = (char)(0x80 | (cp & 0x3f)), n = 4;
	buf_put(x, b, o, n);
}

/* Python's str.isspace() */
static bool py_space(uint32_t cp)
{
	return (cp >= 0x09 && cp <= 0x0d) || (cp >= 0x1c && cp <= 0x20) || cp == 0x85 || cp == 0xa0 || cp == 0x1680 ||
	       (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 || cp == 0x202f || cp == 0x205f ||
	       cp == 0x3000;
}

/* the start of the trailing whitespace of s[0..n) */
static size_t rstrip_ws(const char *s, size_t n)
{
	while (n > 0) {
		size_t c = n - 1;
		while (c > 0 && ((unsigned char)s[c] & 0xc0) == 0x80)
			c--;
		if (!py_space(utf8_cp(s, n, c)))
			break;
		n = c;
	}
	return n;
}

static size_t lstrip_ws(const char *s, size_t n)
{
	size_t i = 0;
	while (i < n && py_space(utf8_cp(s, n, i)))
		i += utf8_len(s, n, i);
	return i;
}

void skv_jinja_strip(const char *s, size_t len, size_t *ret_start, size_t *ret_len)
{
	size_t a = lstrip_ws(s, len);
	*ret_start = a;
	*ret_len = rstrip_ws(s + a, len - a);
}

static size_t cp_count(struct str s)
{
	size_t c = 0;
	for (size_t i = 0; i < s.n; i++)
		c += ((unsigned char)s.p[i] & 0xc0) != 0x80;
	return c;
}

/* byte offset of code point k (k <= count) */
static size_t cp_offset(struct str s, size_t k)
{
	size_t i = 0;
	while (k-- && i < s.n)
		i += utf8_len(s.p, s.n, i);
	return i;
}

/* ---- lexer ------------------------------------------------------------------------------- */

static void push_tok(struct ctx *x, struct token t)
{
	if (x->n_toks == x->cap_toks) {
		size_t cap = SKV_MAX(x->cap_toks * 2, (size_t)256);
		struct token *n = xalloc(x, cap * sizeof(*n));
		if (x->n_toks)
			memcpy(n, x->toks, x->n_toks * sizeof(*n));
		x->toks = n;
		x->cap_toks = cap;
	}
	x->toks[x->n_toks++] = t;
}

static int count_nl(const char *s, size_t n)
{
	int c = 0;
	for (size_t i = 0; i < n; i++)
		c += s[i] == '\n';
	return c;
}

static bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_name_char(char c) { return is_name_start(c) || is_digit(c); }

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* A string literal's body, unescaped as Python's unicode-escape codec does. */
static struct str unescape(struct ctx *x, const char *s, size_t n, int line)
{
	struct buf b = {0};
	buf_put(x, &b, "", 0);
	for (size_t i = 0; i < n; i++) {
		if (s[i] != '\\' || i + 1 >= n) {
			buf_put(x, &b, &s[i], 1);
			continue;
		}
		char c = s[++i];
		int digits = 0;
		static const char simple[] = "abfnrtv", simple_to[] = "\a\b\f\n\r\t\v";
		const char *e = c ? strchr(simple, c) : NULL;
		if (c == '\n') { /* a line continuation */
		} else if (c == '\\' || c == '\'' || c == '"') {
			buf_put(x, &b, &c, 1);
		} else if (e) {
			buf_put(x, &b, &simple_to[e - simple], 1);
		} else if (c == 'x' || c == 'u' || c == 'U') {
			digits = c == 'x' ? 2 : c == 'u' ? 4 : 8;
		} else if (c >= '0' && c <= '7') {
			uint32_t v = (uint32_t)(c - '0');
			for (int k = 0; k < 2 && i + 1 < n && s[i + 1] >= '0' && s[i + 1] <= '7'; k++)
				v = v * 8 + (uint32_t)(s[++i] - '0');
			put_utf8(x, &b, v);
		} else {
			buf_put(x, &b, "\\", 1);
			buf_put(x, &b, &c, 1);
		}
		if (digits) {
			uint32_t v = 0;
			for (int k = 0; k < digits; k++) {
				int h = i + 1 < n ? hexval(s[i + 1]) : -1;
				if (h < 0)
					fail(x, -EINVAL, line, "a string literal has a truncated \\%c escape", c);
				v = v * 16 + (uint32_t)h;
				i++;
			}
			if (v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
				fail(x, -EINVAL, line, "a string literal escapes an invalid code point");
			put_utf8(x, &b, v);
		}
	}
	return buf_str(&b);
}

static const char *const ops3[] = {"//", "**", "==", "!=", "<=", ">="};
static const char ops1[] = "+-*/%~()[]{},.:|=<>;";

/* Lexes the inside of a {% %} or {{ }} tag from *pos; stops after its end marker. */
static void lex_tag(struct ctx *x, const char *s, size_t n, size_t *pos, int *line, bool block)
{
	size_t i = *pos;
	char stack[256];
	size_t depth = 0;
	const char *end = block ? "%}" : "}}";
	for (;;) {
		while (i < n && py_space(utf8_cp(s, n, i))) {
			*line += s[i] == '\n';
			i += utf8_len(s, n, i);
		}
		if (i >= n)
			fail(x, -EINVAL, *line, "unexpected end of template: %s is missing", end);
		if (depth == 0) {
			bool minus = s[i] == '-' && i + 2 < n && !memcmp(s + i + 1, end, 2);
			bool plus = block && s[i] == '+' && i + 2 < n && !memcmp(s + i + 1, end, 2);
			if (minus || plus || (i + 1 < n && !memcmp(s + i, end, 2))) {
				i += minus || plus ? 3 : 2;
				push_tok(x, (struct token){.t = block ? T_BLOCK_END : T_VAR_END, .line = *line});
				if (minus) {
					size_t k = lstrip_ws(s + i, n - i);
					*line += count_nl(s + i, k);
					i += k;
				} else if (block && !plus && i < n && s[i] == '\n') {
					i++; /* trim_blocks */
					(*line)++;
				}
				*pos = i;
				return;
			}
		}
		struct token t = {.line = *line};
		char c = s[i];
		if (is_name_start(c)) {
			size_t j = i;
			while (j < n && is_name_char(s[j]))
				j++;
			t.t = T_NAME;
			t.s = (struct str){s + i, j - i};
			i = j;
		} else if (c == '\'' || c == '"') {
			size_t j = i + 1;
			while (j < n && s[j] != c)
				j += s[j] == '\\' ? 2 : 1;
			if (j >= n)
				fail(x, -EINVAL, *line, "unterminated string literal");
			t.t = T_STRING;
			t.s = unescape(x, s + i + 1, j - i - 1, *line);
			*line += count_nl(s + i, j - i);
			i = j + 1;
		} else if (is_digit(c)) {
			char num[64];
			size_t j = i, k = 0;
			bool flt = false;
			while (j < n && (is_digit(s[j]) || s[j] == '_' ||
					 (s[j] == '.' && !flt && j + 1 < n && is_digit(s[j + 1])) ||
					 ((s[j] == 'e' || s[j] == 'E') && j + 1 < n &&
					  (is_digit(s[j + 1]) || ((s[j + 1] == '-' || s[j + 1] == '+') && j + 2 < n &&
								  is_digit(s[j + 2])))))) {
				if (s[j] == '.' || s[j] == 'e' || s[j] == 'E') {
					flt = true;
					if (s[j] != '.' && k < sizeof(num) - 2)
						num[k++] = s[j++];
				}
				if (s[j] != '_' && k < sizeof(num) - 1)
					num[k++] = s[j];
				j++;
			}
			num[k] = '\0';
			if (k >= sizeof(num) - 2)
				fail(x, -EINVAL, *line, "a number literal is too long");
			if (flt) {
				t.t = T_FLOAT;
				t.f = strtod(num, NULL);
			} else {
				errno = 0;
				t.t = T_INT;
				t.i = strtoll(num, NULL, 10);
				if (errno)
					fail(x, -EINVAL, *line, "an integer literal is out of range");
			}
			i = j;
		} else {
			size_t l = 0;
			for (size_t k = 0; k < SKV_ARRAY_SIZE(ops3) && !l; k++)
				if (i + 1 < n && !memcmp(s + i, ops3[k], 2))
					l = 2;
			if (!l && c && strchr(ops1, c))
				l = 1;
			if (!l)
				fail(x, -EINVAL, *line, "unexpected character '%c'", c >= 0x20 && c < 0x7f ? c : '?');
			t.t = T_OP;
			t.s = (struct str){s + i, l};
			if (l == 1 && (c == '(' || c == '[' || c == '{')) {
				if (depth == sizeof(stack))
					fail(x, -E2BIG, *line, "brackets nested more than %zu deep", sizeof(stack));
				stack[depth++] = c == '(' ? ')' : c == '[' ? ']' : '}';
			} else if (l == 1 && (c == ')' || c == ']' || c == '}')) {
				if (!depth)
					fail(x, -EINVAL, *line, "unexpected '%c'", c);
				if (stack[--depth] != c)
					fail(x, -EINVAL, *line, "unexpected '%c', expected '%c'", c, stack[depth]);
			}
			i += l;
		}
		push_tok(x, t);
	}
}

/* Whether s[i..] is "{%[-+]? raw [-]?%}"; sets *end past it and *minus_end. */
static bool raw_begin(const char *s, size_t n, size_t i, size_t *end, bool *minus_end)
{
	i += 2;
	if (i < n && (s[i] == '-' || s[i] == '+'))
		i++;
	while (i < n && py_space(utf8_cp(s, n, i)))
		i += utf8_len(s, n, i);
	if (i + 3 > n || memcmp(s + i, "raw", 3))
		return false;
	i += 3;
	if (i < n && is_name_char(s[i]))
		return false;
	while (i < n && py_space(utf8_cp(s, n, i)))
		i += utf8_len(s, n, i);
	*minus_end = i < n && s[i] == '-';
	if (*minus_end)
		i++;
	if (i + 2 > n || memcmp(s + i, "%}", 2))
		return false;
	*end = i + 2;
	return true;
}

/* Data before a tag, with the tag's whitespace control applied (jinja2's OptionalLStrip). */
static void push_data(struct ctx *x, const char *s, size_t n, char sign, bool lstrip, bool line_starting, int line)
{
	if (sign == '-') {
		n = rstrip_ws(s, n);
	} else if (sign != '+' && lstrip) {
		size_t l = n;
		while (l > 0 && s[l - 1] != '\n')
			l--;
		if ((l > 0 || line_starting) && l < n && lstrip_ws(s + l, n - l) == n - l)
			n = l;
	}
	if (n)
		push_tok(x, (struct token){.t = T_DATA, .line = line, .s = {s, n}});
}

static void lex(struct ctx *x, const char *s, size_t n)
{
	size_t i = 0;
	int line = 1;
	bool line_starting = true;
	while (i < n) {
		size_t k = i;
		while (k + 1 < n && !(s[k] == '{' && (s[k + 1] == '%' || s[k + 1] == '{' || s[k + 1] == '#')))
			k++;
		if (k + 1 >= n) {
			push_tok(x, (struct token){.t = T_DATA, .line = line, .s = {s + i, n - i}});
			break;
		}
		char kind = s[k + 1];
		char sign = k + 2 < n && (s[k + 2] == '-' || s[k + 2] == '+') ? s[k + 2] : 0;
		size_t rend;
		bool rminus;
		int data_line = line;
		line += count_nl(s + i, k - i);
		if (kind == '%' && raw_begin(s, n, k, &rend, &rminus)) {
			push_data(x, s + i, k - i, sign, true, line_starting, data_line);
			if (rminus) {
				size_t w = lstrip_ws(s + rend, n - rend);
				line += count_nl(s + rend, w);
				rend += w;
			}
			/* the body runs to {%[-+]? endraw [-+]?%} */
			size_t j = rend, body_end = 0, after = 0;
			char esign = 0;
			for (; j + 1 < n; j++) {
				if (s[j] != '{' || s[j + 1] != '%')
					continue;
				size_t q = j + 2;
				char sg = q < n && (s[q] == '-' || s[q] == '+') ? s[q] : 0;
				q += sg != 0;
				while (q < n && py_space(utf8_cp(s, n, q)))
					q += utf8_len(s, n, q);
				if (q + 6 > n || memcmp(s + q, "endraw", 6))
					continue;
				q += 6;
				while (q < n && py_space(utf8_cp(s, n, q)))
					q += utf8_len(s, n, q);
				char es = q < n && (s[q] == '-' || s[q] == '+') ? s[q] : 0;
				q += es != 0;
				if (q + 2 > n || memcmp(s + q, "%}", 2))
					continue;
				body_end = j;
				esign = sg;
				after = q + 2;
				if (es == '-')
					after += lstrip_ws(s + after, n - after);
				else if (es != '+' && after < n && s[after] == '\n')
					after++;
				break;
			}
			if (!after)
				fail(x, -EINVAL, line, "missing end of raw directive");
			bool ls = rend > 0 && s[rend - 1] == '\n';
			push_data(x, s + rend, body_end - rend, esign, true, ls, line);
			line += count_nl(s + rend, after - rend);
			line_starting = s[after - 1] == '\n';
			i = after;
			continue;
		}
		push_data(x, s + i, k - i, sign, kind != '{', line_starting, data_line);
		i = k + 2 + (sign != 0);
		if (kind == '#') {
			size_t j = i;
			while (j + 1 < n && !(s[j] == '#' && s[j + 1] == '}'))
				j++;
			if (j + 1 >= n)
				fail(x, -EINVAL, line, "missing end of comment tag");
			char es = j > i && (s[j - 1] == '-' || s[j - 1] == '+') ? s[j - 1] : 0;
			line += count_nl(s + i, j - i);
			j += 2;
			if (es == '-') {
				size_t w = lstrip_ws(s + j, n - j);
				line += count_nl(s + j, w);
				j += w;
			} else if (es != '+' && j < n && s[j] == '\n') {
				j++;
				line++;
			}
			line_starting = s[j - 1] == '\n';
			i = j;
			continue;
		}
		push_tok(x, (struct token){.t = kind == '%' ? T_BLOCK_BEGIN : T_VAR_BEGIN, .line = line});
		lex_tag(x, s, n, &i, &line, kind == '%');
		line_starting = s[i - 1] == '\n';
	}
	push_tok(x, (struct token){.t = T_EOF, .line = line});
}

/* ---- parser ------------------------------------------------------------------------------ */

static struct token *peek(struct ctx *x) { return &x->toks[x->pos]; }
static struct token *next(struct ctx *x)
{
	struct token *t = &x->toks[x->pos];
	if (t->t != T_EOF)
		x->pos++;
	return t;
}

static bool str_is(struct str s, const char *c) { return s.n == strlen(c) && !memcmp(s.p, c, s.n); }
static bool is_op(struct token *t, const char *op) { return t->t == T_OP && str_is(t->s, op); }
static bool is_name(struct token *t, const char *nm) { return t->t == T_NAME && str_is(t->s, nm); }

static const char *tok_desc(struct token *t)
{
	switch (t->t) {
	case T_EOF:
		return "end of template";
	case T_DATA:
		return "template data";
	case T_VAR_BEGIN:
		return "'{{'";
	case T_VAR_END:
		return "'}}'";
	case T_BLOCK_BEGIN:
		return "'{%'";
	case T_BLOCK_END:
		return "'%}'";
	case T_NAME:
		return "a name";
	case T_STRING:
		return "a string";
	case T_INT:
	case T_FLOAT:
		return "a number";
	default:
		return "an operator";
	}
}

static _Noreturn void unexpected(struct ctx *x, struct token *t, const char *want)
{
	if (t->t == T_NAME || t->t == T_OP)
		fail(x, -EINVAL, t->line, "expected %s, got '%.*s'", want, (int)SKV_MIN(t->s.n, 40), t->s.p);
	fail(x, -EINVAL, t->line, "expected %s, got %s", want, tok_desc(t));
}

static void expect_op(struct ctx *x, const char *op)
{
	struct token *t = next(x);
	if (!is_op(t, op)) {
		char want[16];
		snprintf(want, sizeof(want), "'%s'", op);
		unexpected(x, t, want);
	}
}

static struct str expect_name(struct ctx *x)
{
	struct token *t = next(x);
	if (t->t != T_NAME)
		unexpected(x, t, "a name");
	return t->s;
}

static void expect_block_end(struct ctx *x)
{
	struct token *t = next(x);
	if (t->t != T_BLOCK_END)
		unexpected(x, t, "end of statement block");
}

static struct node *mk(struct ctx *x, enum nk k, int line)
{
	struct node *n = xcalloc(x, 1, sizeof(*n));
	n->k = k;
	n->line = line;
	return n;
}

static void nl_push(struct ctx *x, struct nlist *l, struct node *n)
{
	/* capacity doubles at powers of two */
	if ((l->n & (l->n - 1)) == 0) {
		struct node **v = xalloc(x, SKV_MAX(l->n * 2, (size_t)1) * sizeof(*v));
		if (l->n)
			memcpy(v, l->v, l->n * sizeof(*v));
		l->v = v;
	}
	l->v[l->n++] = n;
}

static void enter(struct ctx *x, int line)
{
	if (++x->depth > SKV_JINJA_MAX_PARSE_DEPTH)
		fail(x, -E2BIG, line, "nested more than %u levels deep", SKV_JINJA_MAX_PARSE_DEPTH);
}

static struct node *parse_expr(struct ctx *x, bool with_cond);
static struct node *parse_unary(struct ctx *x, bool with_filter);
static struct node *parse_primary(struct ctx *x);
static struct node *parse_postfix(struct ctx *x, struct node *n);

/* (args) of a call, filter or test: positional and name=value */
static void parse_args(struct ctx *x, struct nlist *args)
{
	expect_op(x, "(");
	while (!is_op(peek(x), ")")) {
		if (args->n)
			expect_op(x, ",");
		if (is_op(peek(x), ")"))
			break;
		struct token *t = peek(x);
		if (t->t == T_NAME && is_op(&x->toks[x->pos + 1], "=")) {
			struct node *kw = mk(x, E_KWARG, t->line);
			kw->s = t->s;
			x->pos += 2;
			kw->a = parse_expr(x, true);
			nl_push(x, args, kw);
		} else {
			nl_push(x, args, parse_expr(x, true));
		}
	}
	expect_op(x, ")");
}

/* jinja2 refuses an unknown filter or test when it compiles the template */
static const char *const filter_names[] = {"length", "count", "trim", "tojson", "string", "list", "first", "last",
					   "join", "map", "selectattr", "rejectattr", "select", "reject", "default",
					   "d", "items", "int", "float", "abs", "upper", "lower", "capitalize",
					   "replace", "safe", "reverse", NULL};
static const char *const test_names[] = {"defined", "undefined", "none", "string", "number", "integer", "float",
					 "boolean", "true", "false", "mapping", "iterable", "sequence", "callable",
					 "odd", "even", "lower", "upper", "equalto", "eq", "==", "ne", "!=", "sameas",
					 "lt", "<", "lessthan", "le", "<=", "gt", ">", "greaterthan", "ge", ">=",
					 "divisibleby", "in", NULL};

static bool known(const char *const *names, struct str s)
{
	for (size_t i = 0; names[i]; i++)
		if (str_is(s, names[i]))
			return true;
	return false;
}

static struct node *parse_filters(struct ctx *x, struct node *n)
{
	for (;;) {
		struct token *t = peek(x);
		if (is_op(t, "|")) {
			next(x);
			struct node *f = mk(x, E_FILTER, t->line);
			f->a = n;
			f->s = expect_name(x);
			if (!known(filter_names, f->s) || is_op(peek(x), "."))
				fail(x, -EINVAL, t->line, "no filter named '%.*s'", (int)SKV_MIN(f->s.n, 40), f->s.p);
			if (is_op(peek(x), "("))
				parse_args(x, &f->l1);
			n = f;
		} else if (is_name(t, "is")) {
			next(x);
			struct node *f = mk(x, E_TEST, t->line);
			f->a = n;
			if (is_name(peek(x), "not")) {
				next(x);
				f->op = 1;
			}
			struct token *nt = next(x);
			if (nt->t != T_NAME)
				unexpected(x, nt, "the name of a test");
			f->s = nt->s;
			if (!known(test_names, f->s))
				fail(x, -EINVAL, t->line, "no test named '%.*s'", (int)SKV_MIN(f->s.n, 40), f->s.p);
			struct token *a = peek(x);
			if (is_op(a, "(")) {
				parse_args(x, &f->l1);
			} else if ((a->t == T_NAME || a->t == T_STRING || a->t == T_INT || a->t == T_FLOAT || is_op(a, "[") ||
				    is_op(a, "{")) &&
				   !is_name(a, "else") && !is_name(a, "or") && !is_name(a, "and")) {
				nl_push(x, &f->l1, parse_postfix(x, parse_primary(x)));
			}
			n = f;
		} else if (is_op(t, "(")) {
			struct node *c = mk(x, E_CALL, t->line);
			c->a = n;
			parse_args(x, &c->l1);
			n = c;
		} else {
			return n;
		}
	}
}

static struct node *parse_postfix(struct ctx *x, struct node *n)
{
	for (;;) {
		struct token *t = peek(x);
		if (is_op(t, ".")) {
			next(x);
			struct token *a = next(x);
			struct node *g;
			if (a->t == T_NAME) {
				g = mk(x, E_ATTR, t->line);
				g->s = a->s;
			} else if (a->t == T_INT) {
				g = mk(x, E_ITEM, t->line);
				g->b = mk(x, E_CONST, t->line);
				g->b->v = (struct val){.t = V_INT, .i = a->i};
			} else {
				unexpected(x, a, "an attribute name");
			}
			g->a = n;
			n = g;
		} else if (is_op(t, "[")) {
			next(x);
			struct node *parts[3] = {0};
			int colons = 0;
			enter(x, t->line);
			while (!is_op(peek(x), "]")) {
				if (is_op(peek(x), ":")) {
					next(x);
					if (++colons > 2)
						unexpected(x, peek(x), "']'");
					continue;
				}
				if (parts[colons])
					unexpected(x, peek(x), "':' or ']'");
				parts[colons] = parse_expr(x, true);
				if (!colons && is_op(peek(x), ",")) { /* a[1, 2]: a tuple key */
					struct node *tu = mk(x, E_TUPLE, t->line);
					nl_push(x, &tu->l1, parts[0]);
					while (is_op(peek(x), ",")) {
						next(x);
						if (is_op(peek(x), "]"))
							break;
						nl_push(x, &tu->l1, parse_expr(x, true));
					}
					parts[0] = tu;
				}
			}
			x->depth--;
			next(x);
			struct node *g;
			if (colons) {
				g = mk(x, E_SLICE, t->line);
				g->b = parts[0];
				g->c = parts[1];
				g->l1.v = NULL;
				if (parts[2])
					nl_push(x, &g->l1, parts[2]);
			} else {
				if (!parts[0])
					unexpected(x, peek(x), "a subscript");
				g = mk(x, E_ITEM, t->line);
				g->b = parts[0];
			}
			g->a = n;
			n = g;
		} else if (is_op(t, "(")) {
			struct node *c = mk(x, E_CALL, t->line);
			c->a = n;
			parse_args(x, &c->l1);
			n = c;
		} else {
			return n;
		}
	}
}

static struct node *parse_primary(struct ctx *x)
{
	struct token *t = next(x);
	struct node *n;
	switch (t->t) {
	case T_NAME:
		n = mk(x, E_CONST, t->line);
		if (str_is(t->s, "true") || str_is(t->s, "True"))
			n->v = (struct val){.t = V_BOOL, .b = true};
		else if (str_is(t->s, "false") || str_is(t->s, "False"))
			n->v = (struct val){.t = V_BOOL, .b = false};
		else if (str_is(t->s, "none") || str_is(t->s, "None"))
			n->v = (struct val){.t = V_NONE};
		else {
			n->k = E_NAME;
			n->s = t->s;
		}
		return n;
	case T_STRING: {
		/* adjacent literals concatenate */
		struct buf b = {0};
		buf_put(x, &b, t->s.p, t->s.n);
		while (peek(x)->t == T_STRING) {
			struct token *u = next(x);
			buf_put(x, &b, u->s.p, u->s.n);
		}
		n = mk(x, E_CONST, t->line);
		n->v = (struct val){.t = V_STR, .s = buf_str(&b)};
		return n;
	}
	case T_INT:
		n = mk(x, E_CONST, t->line);
		n->v = (struct val){.t = V_INT, .i = t->i};
		return n;
	case T_FLOAT:
		n = mk(x, E_CONST, t->line);
		n->v = (struct val){.t = V_FLOAT, .f = t->f};
		return n;
	case T_OP:
		if (is_op(t, "(")) {
			enter(x, t->line);
			if (is_op(peek(x), ")")) {
				next(x);
				x->depth--;
				return mk(x, E_TUPLE, t->line);
			}
			n = parse_expr(x, true);
			if (is_op(peek(x), ",")) {
				struct node *tu = mk(x, E_TUPLE, t->line);
				nl_push(x, &tu->l1, n);
				while (is_op(peek(x), ",")) {
					next(x);
					if (is_op(peek(x), ")"))
						break;
					nl_push(x, &tu->l1, parse_expr(x, true));
				}
				n = tu;
			}
			expect_op(x, ")");
			x->depth--;
			return n;
		}
		if (is_op(t, "[")) {
			enter(x, t->line);
			n = mk(x, E_LIST, t->line);
			while (!is_op(peek(x), "]")) {
				if (n->l1.n)
					expect_op(x, ",");
				if (is_op(peek(x), "]"))
					break;
				nl_push(x, &n->l1, parse_expr(x, true));
			}
			next(x);
			x->depth--;
			return n;
		}
		if (is_op(t, "{")) {
			enter(x, t->line);
			n = mk(x, E_DICT, t->line);
			while (!is_op(peek(x), "}")) {
				if (n->l1.n)
					expect_op(x, ",");
				if (is_op(peek(x), "}"))
					break;
				nl_push(x, &n->l1, parse_expr(x, true));
				expect_op(x, ":");
				nl_push(x, &n->l2, parse_expr(x, true));
			}
			next(x);
			x->depth--;
			return n;
		}
		break;
	default:
		break;
	}
	unexpected(x, t, "an expression");
}

static struct node *parse_unary(struct ctx *x, bool with_filter)
{
	struct token *t = peek(x);
	struct node *n;
	enter(x, t->line);
	if (is_op(t, "-") || is_op(t, "+")) {
		next(x);
		n = mk(x, is_op(t, "-") ? E_NEG : E_POS, t->line);
		n->a = parse_unary(x, false);
	} else {
		n = parse_primary(x);
	}
	n = parse_postfix(x, n);
	if (with_filter)
		n = parse_filters(x, n);
	x->depth--;
	return n;
}

enum binop { OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_FLOORDIV, OP_MOD, OP_POW, OP_CONCAT };
enum cmpop { C_EQ, C_NE, C_LT, C_LE, C_GT, C_GE, C_IN, C_NOTIN };

static struct node *bin(struct ctx *x, int op, struct node *a, struct node *b, int line)
{
	struct node *n = mk(x, E_BIN, line);
	n->op = op;
	n->a = a;
	n->b = b;
	return n;
}

static struct node *parse_pow(struct ctx *x)
{
	struct node *n = parse_unary(x, true);
	while (is_op(peek(x), "**")) {
		int line = next(x)->line;
		n = bin(x, OP_POW, n, parse_unary(x, true), line);
	}
	return n;
}

static struct node *parse_math2(struct ctx *x)
{
	struct node *n = parse_pow(x);
	for (;;) {
		struct token *t = peek(x);
		int op = is_op(t, "*") ? OP_MUL : is_op(t, "/") ? OP_DIV : is_op(t, "//") ? OP_FLOORDIV : is_op(t, "%") ? OP_MOD : -1;
		if (op < 0)
			return n;
		next(x);
		n = bin(x, op, n, parse_pow(x), t->line);
	}
}

static struct node *parse_concat(struct ctx *x)
{
	struct node *n = parse_math2(x);
	while (is_op(peek(x), "~")) {
		int line = next(x)->line;
		n = bin(x, OP_CONCAT, n, parse_math2(x), line);
	}
	return n;
}

static struct node *parse_math1(struct ctx *x)
{
	struct node *n = parse_concat(x);
	for (;;) {
		struct token *t = peek(x);
		int op = is_op(t, "+") ? OP_ADD : is_op(t, "-") ? OP_SUB : -1;
		if (op < 0)
			return n;
		next(x);
		n = bin(x, op, n, parse_concat(x), t->line);
	}
}

static struct node *parse_compare(struct ctx *x)
{
	struct node *first = parse_math1(x), *n = NULL;
	for (;;) {
		struct token *t = peek(x);
		int op;
		if (is_op(t, "=="))
			op = C_EQ;
		else if (is_op(t, "!="))
			op = C_NE;
		else if (is_op(t, "<"))
			op = C_LT;
		else if (is_op(t, "<="))
			op = C_LE;
		else if (is_op(t, ">"))
			op = C_GT;
		else if (is_op(t, ">="))
			op = C_GE;
		else if (is_name(t, "in"))
			op = C_IN;
		else if (is_name(t, "not") && is_name(&x->toks[x->pos + 1], "in")) {
			next(x);
			op = C_NOTIN;
		} else
			break;
		next(x);
		if (!n) {
			n = mk(x, E_CMP, t->line);
			n->a = first;
		}
		struct node *o = mk(x, E_CONST, t->line);
		o->op = op;
		o->a = parse_math1(x);
		nl_push(x, &n->l1, o);
	}
	return n ? n : first;
}

static struct node *parse_not(struct ctx *x)
{
	struct token *t = peek(x);
	if (is_name(t, "not")) {
		next(x);
		enter(x, t->line);
		struct node *n = mk(x, E_NOT, t->line);
		n->a = parse_not(x);
		x->depth--;
		return n;
	}
	return parse_compare(x);
}

static struct node *parse_and(struct ctx *x)
{
	struct node *n = parse_not(x);
	while (is_name(peek(x), "and")) {
		struct node *a = mk(x, E_AND, next(x)->line);
		a->a = n;
		a->b = parse_not(x);
		n = a;
	}
	return n;
}

static struct node *parse_or(struct ctx *x)
{
	struct node *n = parse_and(x);
	while (is_name(peek(x), "or")) {
		struct node *a = mk(x, E_OR, next(x)->line);
		a->a = n;
		a->b = parse_and(x);
		n = a;
	}
	return n;
}

static struct node *parse_expr(struct ctx *x, bool with_cond)
{
	enter(x, peek(x)->line);
	struct node *n = parse_or(x);
	while (with_cond && is_name(peek(x), "if")) {
		struct node *c = mk(x, E_COND, next(x)->line);
		c->b = n;
		c->a = parse_or(x);
		if (is_name(peek(x), "else")) {
			next(x);
			c->c = parse_expr(x, true);
		}
		n = c;
	}
	x->depth--;
	return n;
}

/* an assignment target: a name, ns.attr, or names separated by commas */
static struct node *parse_target(struct ctx *x, bool attr_ok)
{
	struct token *t = peek(x);
	struct node *n = mk(x, E_NAME, t->line);
	n->s = expect_name(x);
	if (attr_ok && is_op(peek(x), ".")) {
		next(x);
		struct node *g = mk(x, E_ATTR, t->line);
		g->a = n;
		g->s = expect_name(x);
		return g;
	}
	if (!is_op(peek(x), ","))
		return n;
	struct node *tu = mk(x, E_TUPLE, t->line);
	nl_push(x, &tu->l1, n);
	while (is_op(peek(x), ",")) {
		next(x);
		if (peek(x)->t != T_NAME)
			break;
		struct node *m = mk(x, E_NAME, peek(x)->line);
		m->s = expect_name(x);
		nl_push(x, &tu->l1, m);
	}
	return tu;
}

static const char *const stmt_ends[] = {"endfor", "endif", "endset", "endmacro", "endcall", "else", "elif", NULL};

/* Statements until one of the block names in ends (left unconsumed, after its {%). */
static void parse_body(struct ctx *x, struct nlist *body, const char *const *ends, const char **ret_end);

static struct node *parse_stmt(struct ctx *x)
{
	struct token *t = next(x);
	if (t->t != T_NAME)
		unexpected(x, t, "a statement name");
	int line = t->line;
	struct node *n;
	const char *end;
	enter(x, line);
	if (str_is(t->s, "for")) {
		n = mk(x, N_FOR, line);
		n->a = parse_target(x, false);
		if (!is_name(next(x), "in"))
			unexpected(x, &x->toks[x->pos - 1], "'in'");
		n->b = parse_expr(x, false);
		if (is_name(peek(x), "if")) {
			next(x);
			n->c = parse_expr(x, true);
		}
		if (is_name(peek(x), "recursive"))
			fail(x, -EINVAL, line, "recursive for loops are not supported");
		expect_block_end(x);
		parse_body(x, &n->l1, (const char *const[]){"endfor", "else", NULL}, &end);
		if (!strcmp(end, "else")) {
			expect_block_end(x);
			parse_body(x, &n->l2, (const char *const[]){"endfor", NULL}, &end);
		}
		expect_block_end(x);
	} else if (str_is(t->s, "if")) {
		n = mk(x, N_IF, line);
		n->a = parse_expr(x, true);
		expect_block_end(x);
		struct node *cur = n;
		for (;;) {
			parse_body(x, &cur->l1, (const char *const[]){"endif", "elif", "else", NULL}, &end);
			if (!strcmp(end, "elif")) {
				struct node *e = mk(x, N_IF, x->toks[x->pos - 1].line);
				e->a = parse_expr(x, true);
				expect_block_end(x);
				nl_push(x, &cur->l2, e);
				cur = e;
				continue;
			}
			if (!strcmp(end, "else")) {
				expect_block_end(x);
				parse_body(x, &cur->l2, (const char *const[]){"endif", NULL}, &end);
			}
			break;
		}
		expect_block_end(x);
	} else if (str_is(t->s, "set")) {
		struct node *target = parse_target(x, true);
		if (is_op(peek(x), "=")) {
			next(x);
			n = mk(x, N_SET, line);
			n->a = target;
			n->b = parse_expr(x, true);
			if (is_op(peek(x), ",")) { /* set a = 1, 2: a tuple */
				struct node *tu = mk(x, E_TUPLE, line);
				nl_push(x, &tu->l1, n->b);
				while (is_op(peek(x), ",")) {
					next(x);
					nl_push(x, &tu->l1, parse_expr(x, true));
				}
				n->b = tu;
			}
			expect_block_end(x);
		} else {
			if (target->k != E_NAME)
				unexpected(x, peek(x), "'='");
			n = mk(x, N_SETBLOCK, line);
			n->a = target;
			/* {% set x | filter %}: the filters apply to the block's text */
			struct node *f = parse_filters(x, mk(x, E_CONST, line));
			if (f->k != E_CONST)
				n->b = f;
			expect_block_end(x);
			parse_body(x, &n->l1, (const char *const[]){"endset", NULL}, &end);
			expect_block_end(x);
		}
	} else if (str_is(t->s, "macro") || str_is(t->s, "call")) {
		bool call = str_is(t->s, "call");
		n = mk(x, call ? N_CALLBLOCK : N_MACRO, line);
		if (!call)
			n->s = expect_name(x);
		/* parameters: {% macro m(a, b=1) %}, {% call(a) m() %} (a call block's own ones) */
		bool is_params = !call;
		if (call && is_op(peek(x), "(")) {
			size_t d = 0, q = x->pos;
			for (; x->toks[q].t != T_BLOCK_END && x->toks[q].t != T_EOF; q++) {
				if (is_op(&x->toks[q], "("))
					d++;
				else if (is_op(&x->toks[q], ")") && --d == 0)
					break;
			}
			is_params = x->toks[q].t == T_OP && x->toks[q + 1].t == T_NAME;
		}
		if (is_params) {
			expect_op(x, "(");
			while (!is_op(peek(x), ")")) {
				if (n->l2.n)
					expect_op(x, ",");
				struct node *p = mk(x, E_NAME, peek(x)->line);
				p->s = expect_name(x);
				if (is_op(peek(x), "=")) {
					next(x);
					p->a = parse_expr(x, true);
				}
				nl_push(x, &n->l2, p);
			}
			expect_op(x, ")");
		}
		if (call) {
			n->a = parse_expr(x, true);
			if (n->a->k != E_CALL)
				fail(x, -EINVAL, line, "expected a call after 'call'");
		}
		expect_block_end(x);
		parse_body(x, &n->l1, (const char *const[]){call ? "endcall" : "endmacro", NULL}, &end);
		if (!call && peek(x)->t == T_NAME)
			next(x); /* {% endmacro name %} */
		expect_block_end(x);
	} else if (str_is(t->s, "break") || str_is(t->s, "continue")) {
		n = mk(x, str_is(t->s, "break") ? N_BREAK : N_CONTINUE, line);
		expect_block_end(x);
	} else if (str_is(t->s, "include") || str_is(t->s, "import") || str_is(t->s, "from") ||
		   str_is(t->s, "extends") || str_is(t->s, "block")) {
		fail(x, -EINVAL, line, "'%.*s' is not supported: a chat template cannot load other templates", (int)t->s.n,
		     t->s.p);
	} else {
		for (size_t i = 0; stmt_ends[i]; i++)
			if (str_is(t->s, stmt_ends[i]))
				fail(x, -EINVAL, line, "unexpected '%s'", stmt_ends[i]);
		fail(x, -EINVAL, line, "unknown statement '%.*s'", (int)SKV_MIN(t->s.n, 40), t->s.p);
	}
	x->depth--;
	return n;
}

static void parse_body(struct ctx *x, struct nlist *body, const char *const *ends, const char **ret_end)
{
	for (;;) {
		struct token *t = next(x);
		switch (t->t) {
		case T_EOF:
			if (ends) {
				char want[64] = "";
				for (size_t i = 0; ends[i]; i++)
					snprintf(want + strlen(want), sizeof(want) - strlen(want), "%s'%s'", i ? " or " : "", ends[i]);
				fail(x, -EINVAL, t->line, "unexpected end of template, expected %s", want);
			}
			return;
		case T_DATA: {
			struct node *d = mk(x, N_DATA, t->line);
			d->s = t->s;
			nl_push(x, body, d);
			break;
		}
		case T_VAR_BEGIN: {
			struct node *o = mk(x, N_OUT, t->line);
			o->a = parse_expr(x, true);
			struct token *e = next(x);
			if (e->t != T_VAR_END)
				unexpected(x, e, "end of print statement");
			nl_push(x, body, o);
			break;
		}
		case T_BLOCK_BEGIN: {
			struct token *nm = peek(x);
			if (ends && nm->t == T_NAME)
				for (size_t i = 0; ends[i]; i++)
					if (str_is(nm->s, ends[i])) {
						next(x);
						*ret_end = ends[i];
						return;
					}
			nl_push(x, body, parse_stmt(x));
			break;
		}
		default:
			unexpected(x, t, "template data or a tag");
		}
	}
}

/* ---- parse entry ------------------------------------------------------------------------- */

int skv_jinja_parse(const char *src, size_t len, const char *name, struct skv_jinja **ret, struct skv_err *err)
{
	struct skv_jinja *t = calloc(1, sizeof(*t));
	struct ctx x = {.err = err};
	if (!t)
		return skv_err_set(err, -ENOMEM, "%s: out of memory", name);
	snprintf(t->name, sizeof(t->name), "%s", name);
	x.name = t->name;
	t->arena.limit = (size_t)64 * SKV_JINJA_MAX_SOURCE;
	x.arena = &t->arena;
	if (len > SKV_JINJA_MAX_SOURCE) {
		free(t);
		return skv_err_set(err, -E2BIG, "%s: %zu bytes, more than the limit of %u", name, len, SKV_JINJA_MAX_SOURCE);
	}
	if (setjmp(x.jb)) {
		skv_jinja_free(t);
		return err ? err->code : -EINVAL;
	}
	/* jinja2: newlines are \n, \r\n or \r, all become \n; one trailing newline is dropped */
	char *s = xalloc(&x, len + 1);
	size_t n = 0;
	for (size_t i = 0; i < len; i++) {
		if (src[i] == '\r') {
			s[n++] = '\n';
			if (i + 1 < len && src[i + 1] == '\n')
				i++;
		} else {
			s[n++] = src[i];
		}
	}
	if (n && s[n - 1] == '\n')
		n--;
	s[n] = '\0';
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		size_t l = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
		bool ok = l && i + l <= n && c != 0xc0 && c != 0xc1 && c < 0xf5;
		for (size_t k = 1; ok && k < l; k++)
			ok = ((unsigned char)s[i + k] & 0xc0) == 0x80;
		if (ok && l > 1) {
			uint32_t cp = utf8_cp(s, n, i);
			ok = cp >= (l == 2 ? 0x80u : l == 3 ? 0x800u : 0x10000u) && cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff);
		}
		if (!ok || c == 0)
			fail(&x, -EILSEQ, count_nl(s, i) + 1, "the template is not valid UTF-8 text");
		i += l - 1;
	}
	lex(&x, s, n);
	parse_body(&x, &t->body, NULL, NULL);
	*ret = t;
	return 0;
}

void skv_jinja_free(struct skv_jinja *t)
{
	if (!t)
		return;
	arena_free(&t->arena);
	free(t);
}

/* ==== evaluation ========================================================================== */

struct scope {
	struct scope *parent;
	struct dict vars;
};

struct macro {
	const struct node *def; /* N_MACRO, or N_CALLBLOCK for a caller */
	struct scope *sc;	/* where it was defined */
	struct macro *caller;	/* the caller() a call block passes */
};

#define UNDEF(name) ((struct val){.t = V_UNDEF, .s = (name)})
#define NONE ((struct val){.t = V_NONE})
#define BOOL(x) ((struct val){.t = V_BOOL, .b = (x)})
#define INT(x) ((struct val){.t = V_INT, .i = (x)})
#define STRV(x) ((struct val){.t = V_STR, .s = (x)})

static struct str S(const char *c) { return (struct str){c, strlen(c)}; }

static const char *type_name(struct val v)
{
	switch (v.t) {
	case V_UNDEF:
		return "Undefined";
	case V_NONE:
		return "NoneType";
	case V_BOOL:
		return "bool";
	case V_INT:
		return "int";
	case V_FLOAT:
		return "float";
	case V_STR:
		return "str";
	case V_LIST:
		return v.tuple ? "tuple" : "list";
	case V_DICT:
		return "dict";
	case V_NS:
		return "Namespace";
	default:
		return "function";
	}
}

static _Noreturn void undefined_error(struct ctx *x, int line, struct val v)
{
	if (v.s.n)
		fail(x, -EINVAL, line, "'%.*s' is undefined", (int)SKV_MIN(v.s.n, 80), v.s.p);
	fail(x, -EINVAL, line, "a value is undefined");
}

static bool str_eq(struct str a, struct str b) { return a.n == b.n && !memcmp(a.p, b.p, a.n); }

static bool val_eq(struct val a, struct val b);

static struct val *dict_get(struct dict *d, struct val k)
{
	for (size_t i = 0; i < d->n; i++)
		if (val_eq(d->k[i], k))
			return &d->v[i];
	return NULL;
}

static struct val *dict_gets(struct dict *d, struct str k)
{
	for (size_t i = 0; i < d->n; i++)
		if (d->k[i].t == V_STR && str_eq(d->k[i].s, k))
			return &d->v[i];
	return NULL;
}

static void dict_set(struct ctx *x, struct dict *d, struct val k, struct val v)
{
	struct val *p = dict_get(d, k);
	if (p) {
		*p = v;
		return;
	}
	if (d->n == d->cap) {
		size_t cap = SKV_MAX(d->cap * 2, (size_t)8);
		struct val *nk = xalloc(x, cap * sizeof(*nk)), *nv = xalloc(x, cap * sizeof(*nv));
		if (d->n) {
			memcpy(nk, d->k, d->n * sizeof(*nk));
			memcpy(nv, d->v, d->n * sizeof(*nv));
		}
		d->k = nk;
		d->v = nv;
		d->cap = cap;
	}
	d->k[d->n] = k;
	d->v[d->n++] = v;
}

static struct val new_list(struct ctx *x, size_t n)
{
	struct list *l = xalloc(x, sizeof(*l));
	l->n = n;
	l->v = xcalloc(x, SKV_MAX(n, (size_t)1), sizeof(struct val));
	return (struct val){.t = V_LIST, .l = l};
}

static struct val new_dict(struct ctx *x, enum vt t)
{
	struct dict *d = xcalloc(x, 1, sizeof(*d));
	return (struct val){.t = (uint8_t)t, .d = d};
}

static bool is_num(struct val v) { return v.t == V_INT || v.t == V_FLOAT || v.t == V_BOOL; }
static double num_f(struct val v) { return v.t == V_FLOAT ? v.f : v.t == V_INT ? (double)v.i : (double)v.b; }
static int64_t num_i(struct val v) { return v.t == V_INT ? v.i : (int64_t)v.b; }

/* the render in progress on this thread, for the few helpers without a ctx argument */
static _Thread_local struct ctx *cur_ctx;

static bool val_eq_inner(struct val a, struct val b);

static bool val_eq(struct val a, struct val b)
{
	struct ctx *x = cur_ctx;
	if (x && ++x->depth > x->max_depth)
		fail(x, -E2BIG, 0, "a value nested more than %u levels deep", x->max_depth);
	bool r = val_eq_inner(a, b);
	if (x)
		x->depth--;
	return r;
}

static bool val_eq_inner(struct val a, struct val b)
{
	if (is_num(a) && is_num(b)) {
		if (a.t == V_FLOAT || b.t == V_FLOAT)
			return num_f(a) == num_f(b);
		return num_i(a) == num_i(b);
	}
	if (a.t != b.t)
		return false;
	switch (a.t) {
	case V_UNDEF:
	case V_NONE:
		return true;
	case V_STR:
		return str_eq(a.s, b.s);
	case V_LIST:
		if (a.tuple != b.tuple || a.l->n != b.l->n)
			return false;
		for (size_t i = 0; i < a.l->n; i++)
			if (!val_eq(a.l->v[i], b.l->v[i]))
				return false;
		return true;
	case V_DICT:
		if (a.d->n != b.d->n)
			return false;
		for (size_t i = 0; i < a.d->n; i++) {
			struct val *o = dict_get(b.d, a.d->k[i]);
			if (!o || !val_eq(a.d->v[i], *o))
				return false;
		}
		return true;
	case V_NS:
		return a.d == b.d;
	case V_MACRO:
		return a.m == b.m;
	case V_FUNC:
		return a.fn == b.fn;
	default:
		return false;
	}
}

static bool truthy(struct val v)
{
	switch (v.t) {
	case V_UNDEF:
	case V_NONE:
		return false;
	case V_BOOL:
		return v.b;
	case V_INT:
		return v.i != 0;
	case V_FLOAT:
		return v.f != 0;
	case V_STR:
		return v.s.n != 0;
	case V_LIST:
		return v.l->n != 0;
	case V_DICT:
		return v.d->n != 0;
	default:
		return true;
	}
}

/* Python's repr(float) */
static void put_float(struct ctx *x, struct buf *b, double f, bool json)
{
	if (isnan(f)) {
		buf_puts(x, b, json ? "NaN" : "nan");
		return;
	}
	if (isinf(f)) {
		buf_puts(x, b, f < 0 ? (json ? "-Infinity" : "-inf") : (json ? "Infinity" : "inf"));
		return;
	}
	char e[40];
	int p;
	for (p = 1; p <= 17; p++) {
		snprintf(e, sizeof(e), "%.*e", p - 1, f);
		if (strtod(e, NULL) == f)
			break;
	}
	/* e = [-]d.ddde[+-]XX: digits and exponent */
	char digits[24];
	size_t nd = 0;
	const char *q = e;
	bool neg = *q == '-';
	if (neg)
		q++;
	for (; *q && *q != 'e'; q++)
		if (is_digit(*q))
			digits[nd++] = *q;
	int exp = atoi(q + 1);
	while (nd > 1 && digits[nd - 1] == '0')
		nd--;
	char out[64];
	size_t o = 0;
	if (neg)
		out[o++] = '-';
	if (exp >= -4 && exp < 16) {
		if (exp < 0) {
			out[o++] = '0';
			out[o++] = '.';
			for (int k = -1; k > exp; k--)
				out[o++] = '0';
			for (size_t k = 0; k < nd; k++)
				out[o++] = digits[k];
		} else {
			for (int k = 0; k <= exp; k++)
				out[o++] = (size_t)k < nd ? digits[k] : '0';
			out[o++] = '.';
			if ((size_t)exp + 1 < nd)
				for (size_t k = (size_t)exp + 1; k < nd; k++)
					out[o++] = digits[k];
			else
				out[o++] = '0';
		}
		out[o] = '\0';
	} else {
		out[o++] = digits[0];
		if (nd > 1) {
			out[o++] = '.';
			for (size_t k = 1; k < nd; k++)
				out[o++] = digits[k];
		}
		snprintf(out + o, sizeof(out) - o, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
	}
	buf_puts(x, b, out);
}

/* Python's repr(str) */
static void put_repr_str(struct ctx *x, struct buf *b, struct str s)
{
	bool sq = memchr(s.p, '\'', s.n) != NULL, dq = memchr(s.p, '"', s.n) != NULL;
	char q = sq && !dq ? '"' : '\'';
	buf_put(x, b, &q, 1);
	for (size_t i = 0; i < s.n;) {
		size_t l = utf8_len(s.p, s.n, i);
		uint32_t cp = utf8_cp(s.p, s.n, i);
		if (cp == (uint32_t)q || cp == '\\') {
			buf_put(x, b, "\\", 1);
			buf_put(x, b, &s.p[i], 1);
		} else if (cp == '\n')
			buf_puts(x, b, "\\n");
		else if (cp == '\r')
			buf_puts(x, b, "\\r");
		else if (cp == '\t')
			buf_puts(x, b, "\\t");
		else if (cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp < 0xa0))
			buf_printf(x, b, "\\x%02x", cp);
		else
			buf_put(x, b, s.p + i, l);
		i += l;
	}
	buf_put(x, b, &q, 1);
}

static void put_str_inner(struct ctx *x, struct buf *b, struct val v, bool repr);

/* Values nest as deep as a template makes them ({% set ns.l = [ns.l] %} in a loop): walking
 * them counts toward the nesting bound too. */
static void put_str(struct ctx *x, struct buf *b, struct val v, bool repr)
{
	if (++x->depth > x->max_depth)
		fail(x, -E2BIG, 0, "a value nested more than %u levels deep", x->max_depth);
	put_str_inner(x, b, v, repr);
	x->depth--;
}

static void put_str_inner(struct ctx *x, struct buf *b, struct val v, bool repr)
{
	switch (v.t) {
	case V_UNDEF:
		if (repr)
			buf_puts(x, b, "Undefined");
		break;
	case V_NONE:
		buf_puts(x, b, "None");
		break;
	case V_BOOL:
		buf_puts(x, b, v.b ? "True" : "False");
		break;
	case V_INT:
		buf_printf(x, b, "%lld", (long long)v.i);
		break;
	case V_FLOAT:
		put_float(x, b, v.f, false);
		break;
	case V_STR:
		if (repr)
			put_repr_str(x, b, v.s);
		else
			buf_put(x, b, v.s.p, v.s.n);
		break;
	case V_LIST:
		buf_puts(x, b, v.tuple ? "(" : "[");
		for (size_t i = 0; i < v.l->n; i++) {
			if (i)
				buf_puts(x, b, ", ");
			put_str(x, b, v.l->v[i], true);
		}
		buf_puts(x, b, v.tuple ? (v.l->n == 1 ? ",)" : ")") : "]");
		break;
	case V_DICT:
		buf_puts(x, b, "{");
		for (size_t i = 0; i < v.d->n; i++) {
			if (i)
				buf_puts(x, b, ", ");
			put_str(x, b, v.d->k[i], true);
			buf_puts(x, b, ": ");
			put_str(x, b, v.d->v[i], true);
		}
		buf_puts(x, b, "}");
		break;
	case V_NS:
		buf_puts(x, b, "<Namespace>");
		break;
	default:
		buf_puts(x, b, "<function>");
	}
}

static struct str to_str(struct ctx *x, struct val v)
{
	if (v.t == V_STR)
		return v.s;
	struct buf b = {0};
	buf_put(x, &b, "", 0);
	put_str(x, &b, v, false);
	return buf_str(&b);
}

/* json.dumps(v, ensure_ascii=False, indent=..., separators=..., sort_keys=...) */
struct jsonfmt {
	struct str indent; /* NULL p: no indent */
	struct str item_sep, key_sep;
	bool sort_keys;
};

static int cmp_str(struct str a, struct str b)
{
	int c = memcmp(a.p, b.p, SKV_MIN(a.n, b.n));
	return c ? c : a.n < b.n ? -1 : a.n > b.n;
}

static void put_json_str(struct ctx *x, struct buf *b, struct str s)
{
	buf_put(x, b, "\"", 1);
	size_t run = 0;
	for (size_t i = 0; i < s.n; i++) {
		unsigned char c = (unsigned char)s.p[i];
		const char *esc = NULL;
		char tmp[8];
		if (c == '"')
			esc = "\\\"";
		else if (c == '\\')
			esc = "\\\\";
		else if (c == '\n')
			esc = "\\n";
		else if (c == '\r')
			esc = "\\r";
		else if (c == '\t')
			esc = "\\t";
		else if (c == '\b')
			esc = "\\b";
		else if (c == '\f')
			esc = "\\f";
		else if (c < 0x20) {
			snprintf(tmp, sizeof(tmp), "\\u%04x", c);
			esc = tmp;
		}
		if (esc) {
			buf_put(x, b, s.p + run, i - run);
			buf_puts(x, b, esc);
			run = i + 1;
		}
	}
	buf_put(x, b, s.p + run, s.n - run);
	buf_put(x, b, "\"", 1);
}

static void put_json(struct ctx *x, struct buf *b, struct val v, const struct jsonfmt *f, unsigned level, int line)
{
	if (level > x->max_depth)
		fail(x, -E2BIG, line, "tojson: nested more than %u levels deep", x->max_depth);
	switch (v.t) {
	case V_NONE:
		buf_puts(x, b, "null");
		return;
	case V_BOOL:
		buf_puts(x, b, v.b ? "true" : "false");
		return;
	case V_INT:
		buf_printf(x, b, "%lld", (long long)v.i);
		return;
	case V_FLOAT:
		put_float(x, b, v.f, true);
		return;
	case V_STR:
		put_json_str(x, b, v.s);
		return;
	case V_LIST:
	case V_DICT: {
		bool list = v.t == V_LIST;
		size_t n = list ? v.l->n : v.d->n;
		if (!n) {
			buf_puts(x, b, list ? "[]" : "{}");
			return;
		}
		size_t *order = xalloc(x, n * sizeof(size_t));
		for (size_t i = 0; i < n; i++)
			order[i] = i;
		if (!list) {
			for (size_t i = 0; i < n; i++)
				if (v.d->k[i].t != V_STR && v.d->k[i].t != V_INT && v.d->k[i].t != V_BOOL &&
				    v.d->k[i].t != V_NONE && v.d->k[i].t != V_FLOAT)
					fail(x, -EINVAL, line, "tojson: keys must be str, int, float, bool or None, not %s",
					     type_name(v.d->k[i]));
			if (f->sort_keys)
				for (size_t i = 1; i < n; i++) /* insertion sort: stable, like Python's */
					for (size_t j = i; j > 0; j--) {
						struct val a = v.d->k[order[j - 1]], c = v.d->k[order[j]];
						if (a.t != V_STR || c.t != V_STR)
							fail(x, -EINVAL, line, "tojson: sort_keys needs str keys");
						if (cmp_str(a.s, c.s) <= 0)
							break;
						size_t t = order[j];
						order[j] = order[j - 1];
						order[j - 1] = t;
					}
		}
		buf_puts(x, b, list ? "[" : "{");
		for (size_t k = 0; k < n; k++) {
			size_t i = order[k];
			if (k)
				buf_put(x, b, f->item_sep.p, f->item_sep.n);
			if (f->indent.p) {
				buf_puts(x, b, "\n");
				for (unsigned l = 0; l <= level; l++)
					buf_put(x, b, f->indent.p, f->indent.n);
			}
			if (!list) {
				struct val key = v.d->k[i];
				if (key.t == V_STR)
					put_json_str(x, b, key.s);
				else {
					buf_puts(x, b, "\"");
					if (key.t == V_NONE)
						buf_puts(x, b, "null");
					else if (key.t == V_BOOL)
						buf_puts(x, b, key.b ? "true" : "false");
					else
						put_json(x, b, key, f, level + 1, line);
					buf_puts(x, b, "\"");
				}
				buf_put(x, b, f->key_sep.p, f->key_sep.n);
			}
			put_json(x, b, list ? v.l->v[i] : v.d->v[i], f, level + 1, line);
		}
		if (f->indent.p) {
			buf_puts(x, b, "\n");
			for (unsigned l = 0; l < level; l++)
				buf_put(x, b, f->indent.p, f->indent.n);
		}
		buf_puts(x, b, list ? "]" : "}");
		return;
	}
	default:
		fail(x, -EINVAL, line, "tojson: Object of type %s is not JSON serializable", type_name(v));
	}
}

/* json-c input -> values */
static struct val from_json(struct ctx *x, const json_object *o, unsigned depth)
{
	if (depth > x->max_depth)
		fail(x, -E2BIG, 0, "the variables are nested more than %u levels deep", x->max_depth);
	switch (json_object_get_type(o)) {
	case json_type_null:
		return NONE;
	case json_type_boolean:
		return BOOL(json_object_get_boolean(o));
	case json_type_int:
		return INT(json_object_get_int64(o));
	case json_type_double:
		return (struct val){.t = V_FLOAT, .f = json_object_get_double(o)};
	case json_type_string:
		return STRV(xstrdup(x, json_object_get_string((json_object *)o), (size_t)json_object_get_string_len(o)));
	case json_type_array: {
		size_t n = json_object_array_length(o);
		struct val l = new_list(x, n);
		for (size_t i = 0; i < n; i++)
			l.l->v[i] = from_json(x, json_object_array_get_idx(o, i), depth + 1);
		return l;
	}
	case json_type_object: {
		struct val d = new_dict(x, V_DICT);
		json_object_object_foreach((json_object *)o, k, v)
		{
			dict_set(x, d.d, STRV(xstrdup(x, k, strlen(k))), from_json(x, v, depth + 1));
		}
		return d;
	}
	}
	return NONE;
}

/* ---- evaluator --------------------------------------------------------------------------- */

struct frame {
	struct scope *sc;
	struct buf *out;
	struct macro *caller;
};

enum flow { FLOW_NORMAL, FLOW_BREAK, FLOW_CONTINUE };

static struct val eval(struct ctx *x, struct frame *fr, const struct node *n);
static enum flow exec_body(struct ctx *x, struct frame *fr, const struct nlist *body);

static void step(struct ctx *x, int line)
{
	if (++x->steps > x->max_steps)
		fail(x, -E2BIG, line, "the template ran more than %llu steps", (unsigned long long)x->max_steps);
}

static struct val lookup(struct scope *sc, struct str name)
{
	for (; sc; sc = sc->parent) {
		struct val *v = dict_gets(&sc->vars, name);
		if (v)
			return *v;
	}
	if (str_is(name, "raise_exception"))
		return (struct val){.t = V_FUNC, .fn = FN_RAISE};
	if (str_is(name, "strftime_now"))
		return (struct val){.t = V_FUNC, .fn = FN_STRFTIME};
	if (str_is(name, "namespace"))
		return (struct val){.t = V_FUNC, .fn = FN_NAMESPACE};
	if (str_is(name, "range"))
		return (struct val){.t = V_FUNC, .fn = FN_RANGE};
	if (str_is(name, "dict"))
		return (struct val){.t = V_FUNC, .fn = FN_DICT};
	return UNDEF(name);
}

static void assign(struct ctx *x, struct scope *sc, struct str name, struct val v)
{
	dict_set(x, &sc->vars, STRV(name), v);
}

/* items of an iterable (for loops, list(), filters) */
static struct val iter_list(struct ctx *x, struct val v, int line)
{
	switch (v.t) {
	case V_UNDEF:
		return new_list(x, 0);
	case V_LIST:
		return v;
	case V_DICT: {
		struct val l = new_list(x, v.d->n);
		memcpy(l.l->v, v.d->k, v.d->n * sizeof(struct val));
		return l;
	}
	case V_STR: {
		size_t n = cp_count(v.s), k = 0;
		struct val l = new_list(x, n);
		for (size_t i = 0; i < v.s.n; k++) {
			size_t c = utf8_len(v.s.p, v.s.n, i);
			l.l->v[k] = STRV(((struct str){v.s.p + i, c}));
			i += c;
		}
		return l;
	}
	default:
		fail(x, -EINVAL, line, "'%s' object is not iterable", type_name(v));
	}
}

static struct val get_attr(struct ctx *x, struct val o, struct str name, int line)
{
	switch (o.t) {
	case V_UNDEF:
		undefined_error(x, line, o);
	case V_DICT:
	case V_NS: {
		struct val *v = dict_gets(o.d, name);
		return v ? *v : UNDEF(name);
	}
	default:
		return UNDEF(name);
	}
}

static int64_t norm_index(int64_t i, size_t n) { return i < 0 ? i + (int64_t)n : i; }

static struct val get_item(struct ctx *x, struct val o, struct val k, int line)
{
	switch (o.t) {
	case V_UNDEF:
		undefined_error(x, line, o);
	case V_DICT:
	case V_NS: {
		struct val *v = dict_get(o.d, k);
		return v ? *v : UNDEF(k.t == V_STR ? k.s : S(""));
	}
	case V_LIST:
		if (k.t == V_INT || k.t == V_BOOL) {
			int64_t i = norm_index(num_i(k), o.l->n);
			if (i >= 0 && (size_t)i < o.l->n)
				return o.l->v[i];
		}
		return UNDEF(S(""));
	case V_STR:
		if (k.t == V_INT || k.t == V_BOOL) {
			size_t n = cp_count(o.s);
			int64_t i = norm_index(num_i(k), n);
			if (i >= 0 && (size_t)i < n) {
				size_t a = cp_offset(o.s, (size_t)i);
				return STRV(((struct str){o.s.p + a, utf8_len(o.s.p, o.s.n, a)}));
			}
		}
		return UNDEF(S(""));
	default:
		return UNDEF(k.t == V_STR ? k.s : S(""));
	}
}

/* Python's slice.indices() */
static void slice_bounds(struct ctx *x, size_t n, struct val a, struct val b, struct val c, int64_t *start, int64_t *stop,
			 int64_t *stepv, int line)
{
	int64_t len = (int64_t)n;
	*stepv = c.t == V_NONE || c.t == V_UNDEF ? 1 : (c.t == V_INT ? c.i : 0);
	if (*stepv == 0)
		fail(x, -EINVAL, line, "slice step cannot be zero");
	for (int k = 0; k < 2; k++) {
		struct val v = k ? b : a;
		int64_t *r = k ? stop : start;
		if (v.t == V_NONE || v.t == V_UNDEF) {
			*r = *stepv > 0 ? (k ? len : 0) : (k ? -1 : len - 1);
			continue;
		}
		if (v.t != V_INT && v.t != V_BOOL)
			fail(x, -EINVAL, line, "slice indices must be integers or None");
		int64_t i = num_i(v);
		if (i < 0) {
			i += len;
			if (i < 0)
				i = *stepv > 0 ? 0 : -1;
		} else if (i >= len) {
			i = *stepv > 0 ? len : len - 1;
		}
		*r = i;
	}
}

static struct val do_slice(struct ctx *x, struct val o, struct val a, struct val b, struct val c, int line)
{
	if (o.t == V_UNDEF)
		undefined_error(x, line, o);
	if (o.t != V_LIST && o.t != V_STR)
		fail(x, -EINVAL, line, "'%s' object is not subscriptable", type_name(o));
	struct val items = o.t == V_STR ? iter_list(x, o, line) : o;
	int64_t start, stop, st;
	slice_bounds(x, items.l->n, a, b, c, &start, &stop, &st, line);
	size_t cnt = 0;
	for (int64_t i = start; st > 0 ? i < stop : i > stop; i += st)
		cnt++;
	struct val r = new_list(x, cnt);
	r.tuple = o.tuple;
	size_t k = 0;
	for (int64_t i = start; st > 0 ? i < stop : i > stop; i += st)
		r.l->v[k++] = items.l->v[i];
	if (o.t != V_STR)
		return r;
	struct buf bb = {0};
	buf_put(x, &bb, "", 0);
	for (size_t i = 0; i < cnt; i++)
		buf_put(x, &bb, r.l->v[i].s.p, r.l->v[i].s.n);
	return STRV(buf_str(&bb));
}

/* ---- arguments --------------------------------------------------------------------------- */

#define MAX_ARGS 8

struct args {
	size_t n, nkw;
	struct val v[MAX_ARGS];
	struct str kwn[MAX_ARGS];
	struct val kwv[MAX_ARGS];
};

static void eval_args(struct ctx *x, struct frame *fr, const struct nlist *l, struct args *a, int line)
{
	memset(a, 0, sizeof(*a));
	for (size_t i = 0; i < l->n; i++) {
		const struct node *e = l->v[i];
		if (e->k == E_KWARG) {
			if (a->nkw == MAX_ARGS)
				fail(x, -EINVAL, line, "too many keyword arguments");
			a->kwn[a->nkw] = e->s;
			a->kwv[a->nkw++] = eval(x, fr, e->a);
		} else {
			if (a->n == MAX_ARGS)
				fail(x, -EINVAL, line, "too many arguments");
			a->v[a->n++] = eval(x, fr, e);
		}
	}
}

/* Argument i, or the keyword name, or dflt; each name may be given once. */
static struct val arg(struct args *a, size_t i, const char *name, struct val dflt)
{
	if (i < a->n)
		return a->v[i];
	for (size_t k = 0; k < a->nkw; k++)
		if (str_is(a->kwn[k], name))
			return a->kwv[k];
	return dflt;
}

static void check_args(struct ctx *x, struct args *a, size_t max_pos, const char *const *names, const char *what, int line)
{
	if (a->n > max_pos)
		fail(x, -EINVAL, line, "%s takes at most %zu arguments, %zu given", what, max_pos, a->n);
	for (size_t k = 0; k < a->nkw; k++) {
		bool ok = false;
		for (size_t i = 0; names && names[i] && !ok; i++)
			ok = str_is(a->kwn[k], names[i]);
		if (!ok)
			fail(x, -EINVAL, line, "%s got an unexpected keyword argument '%.*s'", what, (int)SKV_MIN(a->kwn[k].n, 40),
			     a->kwn[k].p);
	}
}

static struct str need_str(struct ctx *x, struct val v, const char *what, int line)
{
	if (v.t == V_UNDEF)
		undefined_error(x, line, v);
	if (v.t != V_STR)
		fail(x, -EINVAL, line, "%s: expected a str, got %s", what, type_name(v));
	return v.s;
}

/* ---- string helpers ---------------------------------------------------------------------- */

static struct str strip_chars(struct str s, struct val chars, bool left, bool right)
{
	size_t a = 0, b = s.n;
	if (chars.t == V_STR) {
		/* strip code points found in chars */
		while (a < b) {
			size_t l = utf8_len(s.p, s.n, a);
			bool hit = false;
			for (size_t i = 0; i < chars.s.n && !hit; i += utf8_len(chars.s.p, chars.s.n, i))
				hit = utf8_len(chars.s.p, chars.s.n, i) == l && !memcmp(chars.s.p + i, s.p + a, l);
			if (!hit || !left)
				break;
			a += l;
		}
		while (right && b > a) {
			size_t c = b - 1;
			while (c > a && ((unsigned char)s.p[c] & 0xc0) == 0x80)
				c--;
			size_t l = b - c;
			bool hit = false;
			for (size_t i = 0; i < chars.s.n && !hit; i += utf8_len(chars.s.p, chars.s.n, i))
				hit = utf8_len(chars.s.p, chars.s.n, i) == l && !memcmp(chars.s.p + i, s.p + c, l);
			if (!hit)
				break;
			b = c;
		}
		return (struct str){s.p + a, b - a};
	}
	if (left)
		a = lstrip_ws(s.p, s.n);
	if (right)
		b = a + rstrip_ws(s.p + a, s.n - a);
	return (struct str){s.p + a, b - a};
}

enum casefn { CASE_UPPER, CASE_LOWER, CASE_TITLE, CASE_CAPITALIZE };

/* Unicode's simple case mappings, from glibc's C.UTF-8 locale (independent of the process's
 * locale); ASCII only where that locale is missing. Python's full mappings that change a
 * string's length (German sharp s to "SS", ligatures) and the final-sigma rule are not applied
 * (docs/chat-templates.md). */
static locale_t case_locale(void)
{
	static locale_t loc;
	static bool tried;
	if (!tried) { /* a race here only makes two threads create the same locale */
		loc = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
		tried = true;
	}
	return loc;
}

static uint32_t map_case(uint32_t cp, bool up)
{
	locale_t l = case_locale();
	if (l)
		return (uint32_t)(up ? towupper_l((wint_t)cp, l) : towlower_l((wint_t)cp, l));
	if (up && cp >= 'a' && cp <= 'z')
		return cp - 32;
	if (!up && cp >= 'A' && cp <= 'Z')
		return cp + 32;
	return cp;
}

static bool is_cased(uint32_t cp) { return map_case(cp, true) != cp || map_case(cp, false) != cp; }

static struct str change_case(struct ctx *x, struct str s, enum casefn f)
{
	struct buf b = {0};
	bool prev_cased = false;
	buf_put(x, &b, "", 0);
	for (size_t i = 0; i < s.n;) {
		uint32_t cp = utf8_cp(s.p, s.n, i);
		bool up = f == CASE_UPPER || (f == CASE_TITLE && !prev_cased) || (f == CASE_CAPITALIZE && i == 0);
		prev_cased = is_cased(cp);
		put_utf8(x, &b, map_case(cp, up));
		i += utf8_len(s.p, s.n, i);
	}
	return buf_str(&b);
}

static struct str str_replace(struct ctx *x, struct str s, struct str old, struct str new, int64_t count)
{
	struct buf b = {0};
	buf_put(x, &b, "", 0);
	size_t i = 0;
	int64_t done = 0;
	if (old.n == 0) {
		/* Python inserts new between every code point (and at both ends) */
		while ((count < 0 || done < count) && i <= s.n) {
			buf_put(x, &b, new.p, new.n);
			done++;
			if (i == s.n)
				break;
			size_t l = utf8_len(s.p, s.n, i);
			buf_put(x, &b, s.p + i, l);
			i += l;
		}
		buf_put(x, &b, s.p + i, s.n - i);
		return buf_str(&b);
	}
	while (count < 0 || done < count) {
		const char *h = old.n <= s.n - i ? memmem(s.p + i, s.n - i, old.p, old.n) : NULL;
		if (!h)
			break;
		buf_put(x, &b, s.p + i, (size_t)(h - (s.p + i)));
		buf_put(x, &b, new.p, new.n);
		i = (size_t)(h - s.p) + old.n;
		done++;
	}
	buf_put(x, &b, s.p + i, s.n - i);
	return buf_str(&b);
}

static struct val str_split(struct ctx *x, struct str s, struct val sep, int64_t maxsplit, int line)
{
	struct val out = new_list(x, 0);
	size_t cap = 0;
	struct val *items = NULL;
	size_t n = 0;
#define PUSH(str_)                                                                                         \
	do {                                                                                               \
		if (n == cap) {                                                                            \
			cap = SKV_MAX(cap * 2, (size_t)8);                                                 \
			struct val *ni = xalloc(x, cap * sizeof(*ni));                                     \
			if (n)                                                                             \
				memcpy(ni, items, n * sizeof(*ni));                                        \
			items = ni;                                                                        \
		}                                                                                          \
		items[n++] = STRV(str_);                                                                   \
	} while (0)
	if (sep.t == V_NONE || sep.t == V_UNDEF) {
		size_t i = lstrip_ws(s.p, s.n);
		while (i < s.n) {
			if (maxsplit >= 0 && (int64_t)n >= maxsplit) {
				size_t e = i + rstrip_ws(s.p + i, s.n - i);
				PUSH(((struct str){s.p + i, e - i}));
				i = s.n;
				break;
			}
			size_t j = i;
			while (j < s.n && !py_space(utf8_cp(s.p, s.n, j)))
				j += utf8_len(s.p, s.n, j);
			PUSH(((struct str){s.p + i, j - i}));
			i = j + lstrip_ws(s.p + j, s.n - j);
		}
	} else {
		struct str d = need_str(x, sep, "split", line);
		if (!d.n)
			fail(x, -EINVAL, line, "split: empty separator");
		size_t i = 0;
		for (;;) {
			const char *h = (maxsplit < 0 || (int64_t)n < maxsplit) && d.n <= s.n - i
						? memmem(s.p + i, s.n - i, d.p, d.n)
						: NULL;
			if (!h) {
				PUSH(((struct str){s.p + i, s.n - i}));
				break;
			}
			PUSH(((struct str){s.p + i, (size_t)(h - (s.p + i))}));
			i = (size_t)(h - s.p) + d.n;
		}
	}
#undef PUSH
	out.l->n = n;
	out.l->v = items ? items : out.l->v;
	return out;
}

static bool has_affix(struct str s, struct str a, bool prefix)
{
	if (a.n > s.n)
		return false;
	return !memcmp(prefix ? s.p : s.p + s.n - a.n, a.p, a.n);
}

/* ---- methods ----------------------------------------------------------------------------- */

static struct val call_method(struct ctx *x, struct val o, struct str name, struct args *a, int line)
{
#define M(nm) str_is(name, nm)
	if (o.t == V_STR) {
		struct str s = o.s;
		if (M("strip") || M("lstrip") || M("rstrip")) {
			check_args(x, a, 1, NULL, "strip", line);
			struct val chars = arg(a, 0, "", NONE);
			if (chars.t != V_NONE && chars.t != V_STR)
				fail(x, -EINVAL, line, "strip arg must be None or str");
			return STRV(strip_chars(s, chars, !M("rstrip"), !M("lstrip")));
		}
		if (M("split")) {
			check_args(x, a, 2, (const char *const[]){"sep", "maxsplit", NULL}, "split", line);
			struct val ms = arg(a, 1, "maxsplit", INT(-1));
			if (ms.t != V_INT)
				fail(x, -EINVAL, line, "split: maxsplit must be an int");
			return str_split(x, s, arg(a, 0, "sep", NONE), ms.i, line);
		}
		if (M("replace")) {
			check_args(x, a, 3, NULL, "replace", line);
			if (a->n < 2)
				fail(x, -EINVAL, line, "replace expected at least 2 arguments, got %zu", a->n);
			struct val cnt = arg(a, 2, "", INT(-1));
			if (cnt.t != V_INT)
				fail(x, -EINVAL, line, "replace: count must be an int");
			return STRV(str_replace(x, s, need_str(x, a->v[0], "replace", line), need_str(x, a->v[1], "replace", line),
						cnt.i));
		}
		if (M("startswith") || M("endswith")) {
			check_args(x, a, 1, NULL, "startswith", line);
			if (a->n != 1)
				fail(x, -EINVAL, line, "%.*s takes one argument", (int)name.n, name.p);
			struct val p = a->v[0];
			if (p.t == V_LIST && p.tuple) {
				for (size_t i = 0; i < p.l->n; i++)
					if (has_affix(s, need_str(x, p.l->v[i], "startswith", line), M("startswith")))
						return BOOL(true);
				return BOOL(false);
			}
			return BOOL(has_affix(s, need_str(x, p, "startswith", line), M("startswith")));
		}
		if (M("upper") || M("lower") || M("title") || M("capitalize")) {
			check_args(x, a, 0, NULL, "upper", line);
			return STRV(change_case(x, s, M("upper") ? CASE_UPPER : M("lower") ? CASE_LOWER : M("title") ? CASE_TITLE : CASE_CAPITALIZE));
		}
		if (M("join")) {
			check_args(x, a, 1, NULL, "join", line);
			if (a->n != 1)
				fail(x, -EINVAL, line, "join takes one argument");
			struct val l = iter_list(x, a->v[0], line);
			struct buf b = {0};
			buf_put(x, &b, "", 0);
			for (size_t i = 0; i < l.l->n; i++) {
				if (i)
					buf_put(x, &b, s.p, s.n);
				buf_put(x, &b, need_str(x, l.l->v[i], "join", line).p, l.l->v[i].s.n);
			}
			return STRV(buf_str(&b));
		}
		if (M("count") || M("find")) {
			check_args(x, a, 1, NULL, "count", line);
			if (a->n != 1)
				fail(x, -EINVAL, line, "%.*s takes one argument", (int)name.n, name.p);
			struct str sub = need_str(x, a->v[0], "count", line);
			if (M("find")) {
				const char *h = sub.n <= s.n ? memmem(s.p, s.n, sub.p, sub.n) : NULL;
				return INT(h ? (int64_t)cp_count((struct str){s.p, (size_t)(h - s.p)}) : -1);
			}
			if (!sub.n)
				return INT((int64_t)cp_count(s) + 1);
			int64_t c = 0;
			for (size_t i = 0; i + sub.n <= s.n;) {
				const char *h = memmem(s.p + i, s.n - i, sub.p, sub.n);
				if (!h)
					break;
				c++;
				i = (size_t)(h - s.p) + sub.n;
			}
			return INT(c);
		}
	} else if (o.t == V_DICT || o.t == V_NS) {
		if (M("get")) {
			check_args(x, a, 2, NULL, "get", line);
			if (a->n < 1)
				fail(x, -EINVAL, line, "get expected at least 1 argument, got 0");
			struct val *v = dict_get(o.d, a->v[0]);
			return v ? *v : arg(a, 1, "", NONE);
		}
		if (M("items") || M("keys") || M("values")) {
			check_args(x, a, 0, NULL, "items", line);
			struct val l = new_list(x, o.d->n);
			for (size_t i = 0; i < o.d->n; i++) {
				if (M("items")) {
					struct val p = new_list(x, 2);
					p.tuple = true;
					p.l->v[0] = o.d->k[i];
					p.l->v[1] = o.d->v[i];
					l.l->v[i] = p;
				} else {
					l.l->v[i] = M("keys") ? o.d->k[i] : o.d->v[i];
				}
			}
			return l;
		}
	} else if (o.t == V_UNDEF) {
		undefined_error(x, line, o);
	}
	fail(x, -EINVAL, line, "'%s' object has no method '%.*s' the renderer supports", type_name(o), (int)SKV_MIN(name.n, 40),
	     name.p);
#undef M
}

/* ---- tests (x is defined, x is string, ...) ------------------------------------------------ */

static int cmp_vals(struct ctx *x, struct val a, struct val b, int line);

static bool run_test(struct ctx *x, struct str name, struct val v, struct args *a, int line)
{
#define T(nm) str_is(name, nm)
	if (T("defined"))
		return v.t != V_UNDEF;
	if (T("undefined"))
		return v.t == V_UNDEF;
	if (T("none"))
		return v.t == V_NONE;
	if (T("string"))
		return v.t == V_STR;
	if (T("number"))
		return v.t == V_INT || v.t == V_FLOAT;
	if (T("integer"))
		return v.t == V_INT;
	if (T("float"))
		return v.t == V_FLOAT;
	if (T("boolean"))
		return v.t == V_BOOL;
	if (T("true"))
		return v.t == V_BOOL && v.b;
	if (T("false"))
		return v.t == V_BOOL && !v.b;
	if (T("mapping"))
		return v.t == V_DICT;
	if (T("iterable"))
		return v.t == V_LIST || v.t == V_DICT || v.t == V_STR || v.t == V_UNDEF;
	if (T("sequence"))
		return v.t == V_LIST || v.t == V_DICT || v.t == V_STR;
	if (T("callable")) /* jinja2's Undefined has __call__ */
		return v.t == V_MACRO || v.t == V_FUNC || v.t == V_UNDEF;
	if (T("odd") || T("even")) {
		if (v.t != V_INT && v.t != V_BOOL)
			fail(x, -EINVAL, line, "test '%.*s' needs an int, got %s", (int)name.n, name.p, type_name(v));
		return (num_i(v) % 2 != 0) == T("odd");
	}
	if (T("lower") || T("upper")) { /* str.islower()/isupper(): cased, and none of the other case */
		struct str s = to_str(x, v);
		bool cased = false;
		for (size_t i = 0; i < s.n; i += utf8_len(s.p, s.n, i)) {
			uint32_t cp = utf8_cp(s.p, s.n, i);
			if (!is_cased(cp))
				continue;
			cased = true;
			if (map_case(cp, !T("lower")) != cp)
				return false;
		}
		return cased;
	}
	if (a->n < 1)
		fail(x, -EINVAL, line, "test '%.*s' needs an argument or is unknown", (int)SKV_MIN(name.n, 40), name.p);
	struct val o = a->v[0];
	if (T("equalto") || T("eq") || T("=="))
		return val_eq(v, o);
	if (T("ne") || T("!="))
		return !val_eq(v, o);
	if (T("sameas"))
		return v.t == o.t && (v.t == V_NONE || v.t == V_UNDEF || (v.t == V_BOOL && v.b == o.b) || val_eq(v, o));
	if (T("lt") || T("<") || T("lessthan"))
		return cmp_vals(x, v, o, line) < 0;
	if (T("le") || T("<="))
		return cmp_vals(x, v, o, line) <= 0;
	if (T("gt") || T(">") || T("greaterthan"))
		return cmp_vals(x, v, o, line) > 0;
	if (T("ge") || T(">="))
		return cmp_vals(x, v, o, line) >= 0;
	if (T("divisibleby")) {
		if (!is_num(v) || !is_num(o) || num_f(o) == 0)
			fail(x, -EINVAL, line, "divisibleby needs non-zero numbers");
		return fmod(num_f(v), num_f(o)) == 0;
	}
	if (T("in")) {
		if (o.t == V_STR)
			return v.t == V_STR && (v.s.n == 0 || (v.s.n <= o.s.n && memmem(o.s.p, o.s.n, v.s.p, v.s.n)));
		if (o.t == V_DICT)
			return dict_get(o.d, v) != NULL;
		struct val l = iter_list(x, o, line);
		for (size_t i = 0; i < l.l->n; i++)
			if (val_eq(l.l->v[i], v))
				return true;
		return false;
	}
	fail(x, -EINVAL, line, "no test named '%.*s'", (int)SKV_MIN(name.n, 40), name.p);
#undef T
}

/* ---- comparison and arithmetic ----------------------------------------------------------- */

static int cmp_vals_inner(struct ctx *x, struct val a, struct val b, int line);

static int cmp_vals(struct ctx *x, struct val a, struct val b, int line)
{
	if (++x->depth > x->max_depth)
		fail(x, -E2BIG, line, "a value nested more than %u levels deep", x->max_depth);
	int r = cmp_vals_inner(x, a, b, line);
	x->depth--;
	return r;
}

static int cmp_vals_inner(struct ctx *x, struct val a, struct val b, int line)
{
	if (is_num(a) && is_num(b)) {
		if (a.t == V_FLOAT || b.t == V_FLOAT) {
			double p = num_f(a), q = num_f(b);
			return p < q ? -1 : p > q;
		}
		return num_i(a) < num_i(b) ? -1 : num_i(a) > num_i(b);
	}
	if (a.t == V_STR && b.t == V_STR)
		return cmp_str(a.s, b.s);
	if (a.t == V_LIST && b.t == V_LIST && a.tuple == b.tuple) {
		for (size_t i = 0; i < a.l->n && i < b.l->n; i++)
			if (!val_eq(a.l->v[i], b.l->v[i]))
				return cmp_vals(x, a.l->v[i], b.l->v[i], line);
		return a.l->n < b.l->n ? -1 : a.l->n > b.l->n;
	}
	if (a.t == V_UNDEF)
		undefined_error(x, line, a);
	if (b.t == V_UNDEF)
		undefined_error(x, line, b);
	fail(x, -EINVAL, line, "'<' not supported between instances of '%s' and '%s'", type_name(a), type_name(b));
}

static bool contains(struct ctx *x, struct val hay, struct val needle, int line)
{
	switch (hay.t) {
	case V_STR:
		if (needle.t == V_UNDEF)
			undefined_error(x, line, needle);
		if (needle.t != V_STR)
			fail(x, -EINVAL, line, "'in <string>' requires string as left operand, not %s", type_name(needle));
		return needle.s.n == 0 || (needle.s.n <= hay.s.n && memmem(hay.s.p, hay.s.n, needle.s.p, needle.s.n));
	case V_LIST:
		for (size_t i = 0; i < hay.l->n; i++)
			if (val_eq(hay.l->v[i], needle))
				return true;
		return false;
	case V_DICT:
	case V_NS:
		return dict_get(hay.d, needle) != NULL;
	case V_UNDEF:
		return false;
	default:
		fail(x, -EINVAL, line, "argument of type '%s' is not iterable", type_name(hay));
	}
}

static struct val checked_int(struct ctx *x, __int128 r, int line)
{
	if (r > INT64_MAX || r < INT64_MIN)
		fail(x, -EINVAL, line, "integer result out of the 64-bit range the renderer supports");
	return INT((int64_t)r);
}

static struct val binop(struct ctx *x, int op, struct val a, struct val b, int line)
{
	static const char *const names[] = {"+", "-", "*", "/", "//", "%", "**", "~"};
	if (op == OP_CONCAT) {
		struct buf bb = {0};
		buf_put(x, &bb, "", 0);
		put_str(x, &bb, a, false);
		put_str(x, &bb, b, false);
		return STRV(buf_str(&bb));
	}
	if (a.t == V_UNDEF)
		undefined_error(x, line, a);
	if (b.t == V_UNDEF)
		undefined_error(x, line, b);
	if (is_num(a) && is_num(b)) {
		bool fl = a.t == V_FLOAT || b.t == V_FLOAT;
		if (op == OP_DIV || (fl && op != OP_POW)) {
			double p = num_f(a), q = num_f(b);
			if ((op == OP_DIV || op == OP_FLOORDIV || op == OP_MOD) && q == 0)
				fail(x, -EINVAL, line, "division by zero");
			double r = op == OP_ADD ? p + q : op == OP_SUB ? p - q : op == OP_MUL ? p * q : op == OP_DIV ? p / q
				 : op == OP_FLOORDIV ? floor(p / q) : fmod(p, q);
			if (op == OP_MOD && r != 0 && ((r < 0) != (q < 0)))
				r += q;
			return (struct val){.t = V_FLOAT, .f = r};
		}
		if (op == OP_POW) {
			if (fl || num_i(b) < 0)
				return (struct val){.t = V_FLOAT, .f = pow(num_f(a), num_f(b))};
			__int128 r = 1, base = num_i(a);
			for (int64_t e = num_i(b); e > 0; e--) {
				r *= base;
				if (r > INT64_MAX || r < INT64_MIN)
					fail(x, -EINVAL, line, "integer result out of the 64-bit range the renderer supports");
			}
			return INT((int64_t)r);
		}
		__int128 p = num_i(a), q = num_i(b);
		switch (op) {
		case OP_ADD:
			return checked_int(x, p + q, line);
		case OP_SUB:
			return checked_int(x, p - q, line);
		case OP_MUL:
			return checked_int(x, p * q, line);
		default: {
			if (q == 0)
				fail(x, -EINVAL, line, "integer division or modulo by zero");
			__int128 d = p / q, m = p % q;
			if (m != 0 && ((m < 0) != (q < 0))) {
				d--;
				m += q;
			}
			return checked_int(x, op == OP_FLOORDIV ? d : m, line);
		}
		}
	}
	if (op == OP_ADD && a.t == V_STR && b.t == V_STR) {
		struct buf bb = {0};
		buf_put(x, &bb, a.s.p, a.s.n);
		buf_put(x, &bb, b.s.p, b.s.n);
		return STRV(buf_str(&bb));
	}
	if (op == OP_ADD && a.t == V_LIST && b.t == V_LIST && a.tuple == b.tuple) {
		struct val r = new_list(x, a.l->n + b.l->n);
		r.tuple = a.tuple;
		memcpy(r.l->v, a.l->v, a.l->n * sizeof(struct val));
		memcpy(r.l->v + a.l->n, b.l->v, b.l->n * sizeof(struct val));
		return r;
	}
	if (op == OP_MUL && ((a.t == V_STR || a.t == V_LIST) && (b.t == V_INT || b.t == V_BOOL))) {
		int64_t k = SKV_MAX(num_i(b), 0);
		size_t unit = a.t == V_STR ? a.s.n : a.l->n, total;
		if (!skv_mul_size(unit, (size_t)k, &total) || total > x->max_output)
			fail(x, -E2BIG, line, "a repeated value exceeds %zu", x->max_output);
		if (a.t == V_STR) {
			struct buf bb = {0};
			buf_put(x, &bb, "", 0);
			for (int64_t i = 0; i < k; i++)
				buf_put(x, &bb, a.s.p, a.s.n);
			return STRV(buf_str(&bb));
		}
		struct val r = new_list(x, total);
		for (int64_t i = 0; i < k; i++)
			memcpy(r.l->v + (size_t)i * unit, a.l->v, unit * sizeof(struct val));
		return r;
	}
	if (op == OP_MUL && (b.t == V_STR || b.t == V_LIST) && (a.t == V_INT || a.t == V_BOOL))
		return binop(x, op, b, a, line);
	fail(x, -EINVAL, line, "unsupported operand type(s) for %s: '%s' and '%s'", names[op], type_name(a), type_name(b));
}

/* ---- filters ----------------------------------------------------------------------------- */

static struct val apply_filter(struct ctx *x, struct frame *fr, struct str name, struct val v, struct args *a, int line);

/* an item's attribute for map/selectattr: "a.b" walks, digits index */
static struct val attr_path(struct ctx *x, struct val v, struct str path, int line)
{
	size_t i = 0;
	while (i <= path.n) {
		size_t j = i;
		while (j < path.n && path.p[j] != '.')
			j++;
		struct str part = {path.p + i, j - i};
		bool digits = part.n > 0;
		for (size_t k = 0; k < part.n; k++)
			digits &= is_digit(part.p[k]);
		if (v.t == V_UNDEF)
			return v;
		if (digits)
			v = get_item(x, v, INT(strtoll(part.p, NULL, 10)), line);
		else
			v = v.t == V_DICT || v.t == V_NS ? get_attr(x, v, part, line) : UNDEF(part);
		i = j + 1;
	}
	return v;
}

static struct val select_items(struct ctx *x, struct val seq, struct args *a, bool by_attr, bool keep, int line)
{
	struct val l = iter_list(x, seq, line);
	struct val out = new_list(x, l.l->n);
	size_t n = 0, first = by_attr ? 1 : 0;
	if (by_attr && a->n < 1)
		fail(x, -EINVAL, line, "selectattr needs an attribute name");
	struct str attr = by_attr ? need_str(x, a->v[0], "selectattr", line) : S("");
	struct args ta = {0};
	for (size_t i = first + 1; i < a->n; i++)
		ta.v[ta.n++] = a->v[i];
	for (size_t i = 0; i < l.l->n; i++) {
		struct val item = by_attr ? attr_path(x, l.l->v[i], attr, line) : l.l->v[i];
		bool r;
		if (a->n > first)
			r = run_test(x, need_str(x, a->v[first], "select", line), item, &ta, line);
		else
			r = truthy(item);
		if (r == keep)
			out.l->v[n++] = l.l->v[i];
	}
	out.l->n = n;
	return out;
}

static int64_t to_int(struct ctx *x, struct val v, int64_t dflt)
{
	(void)x;
	switch (v.t) {
	case V_INT:
		return v.i;
	case V_BOOL:
		return v.b;
	case V_FLOAT:
		return isfinite(v.f) && fabs(v.f) < 9.2e18 ? (int64_t)v.f : dflt;
	case V_STR: {
		char tmp[64];
		size_t a = lstrip_ws(v.s.p, v.s.n), b = a + rstrip_ws(v.s.p + a, v.s.n - a), k = 0;
		if (b - a == 0 || b - a >= sizeof(tmp))
			return dflt;
		for (size_t i = a; i < b; i++)
			if (v.s.p[i] != '_')
				tmp[k++] = v.s.p[i];
		tmp[k] = '\0';
		char *end;
		errno = 0;
		long long r = strtoll(tmp, &end, 10);
		if (!*end && !errno)
			return r;
		double d = strtod(tmp, &end);
		if (!*end && isfinite(d) && fabs(d) < 9.2e18)
			return (int64_t)d;
		return dflt;
	}
	default:
		return dflt;
	}
}

static struct val apply_filter(struct ctx *x, struct frame *fr, struct str name, struct val v, struct args *a, int line)
{
#define F(nm) str_is(name, nm)
	(void)fr;
	if (F("length") || F("count")) {
		check_args(x, a, 0, NULL, "length", line);
		switch (v.t) {
		case V_UNDEF:
			return INT(0);
		case V_STR:
			return INT((int64_t)cp_count(v.s));
		case V_LIST:
			return INT((int64_t)v.l->n);
		case V_DICT:
		case V_NS:
			return INT((int64_t)v.d->n);
		default:
			fail(x, -EINVAL, line, "object of type '%s' has no len()", type_name(v));
		}
	}
	if (F("trim")) {
		check_args(x, a, 1, (const char *const[]){"chars", NULL}, "trim", line);
		return STRV(strip_chars(to_str(x, v), arg(a, 0, "chars", NONE), true, true));
	}
	if (F("tojson")) {
		check_args(x, a, 4, (const char *const[]){"ensure_ascii", "indent", "separators", "sort_keys", NULL}, "tojson",
			   line);
		/* transformers' signature: tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False) */
		struct val ea = arg(a, 0, "ensure_ascii", BOOL(false)), ind = arg(a, 1, "indent", NONE),
			   sep = arg(a, 2, "separators", NONE), sk = arg(a, 3, "sort_keys", BOOL(false));
		if (truthy(ea))
			fail(x, -EINVAL, line, "tojson: ensure_ascii=True is not supported");
		struct jsonfmt f = {.item_sep = S(", "), .key_sep = S(": "), .sort_keys = truthy(sk)};
		if (ind.t == V_INT || ind.t == V_BOOL) {
			int64_t k = num_i(ind);
			char *sp = xalloc(x, (size_t)SKV_MAX(SKV_MIN(k, 64), 0) + 1);
			memset(sp, ' ', (size_t)SKV_MAX(SKV_MIN(k, 64), 0));
			f.indent = (struct str){sp, (size_t)SKV_MAX(SKV_MIN(k, 64), 0)};
		} else if (ind.t == V_STR) {
			f.indent = ind.s;
		} else if (ind.t != V_NONE) {
			fail(x, -EINVAL, line, "tojson: indent must be an int, a str or None");
		}
		if (f.indent.p)
			f.item_sep = S(",");
		if (sep.t == V_LIST && sep.l->n == 2) {
			f.item_sep = need_str(x, sep.l->v[0], "tojson separators", line);
			f.key_sep = need_str(x, sep.l->v[1], "tojson separators", line);
		} else if (sep.t != V_NONE) {
			fail(x, -EINVAL, line, "tojson: separators must be a pair of strings");
		}
		struct buf b = {0};
		buf_put(x, &b, "", 0);
		put_json(x, &b, v, &f, 0, line);
		return STRV(buf_str(&b));
	}
	if (F("string")) {
		check_args(x, a, 0, NULL, "string", line);
		return STRV(to_str(x, v));
	}
	if (F("list")) {
		check_args(x, a, 0, NULL, "list", line);
		struct val l = iter_list(x, v, line), r = new_list(x, l.l->n);
		memcpy(r.l->v, l.l->v, l.l->n * sizeof(struct val));
		return r;
	}
	if (F("first") || F("last")) {
		check_args(x, a, 0, NULL, "first", line);
		struct val l = iter_list(x, v, line);
		if (!l.l->n)
			return UNDEF(S(""));
		return F("first") ? l.l->v[0] : l.l->v[l.l->n - 1];
	}
	if (F("join")) {
		check_args(x, a, 2, (const char *const[]){"d", "attribute", NULL}, "join", line);
		struct val sep = arg(a, 0, "d", STRV(S(""))), at = arg(a, 1, "attribute", NONE);
		struct str d = to_str(x, sep);
		struct val l = iter_list(x, v, line);
		struct buf b = {0};
		buf_put(x, &b, "", 0);
		for (size_t i = 0; i < l.l->n; i++) {
			if (i)
				buf_put(x, &b, d.p, d.n);
			struct val item = at.t == V_NONE ? l.l->v[i] : attr_path(x, l.l->v[i], to_str(x, at), line);
			put_str(x, &b, item, false);
		}
		return STRV(buf_str(&b));
	}
	if (F("map")) {
		struct val l = iter_list(x, v, line), r = new_list(x, l.l->n);
		struct val at = arg(a, SIZE_MAX, "attribute", UNDEF(S("")));
		if (at.t != V_UNDEF) {
			check_args(x, a, 0, (const char *const[]){"attribute", "default", NULL}, "map", line);
			struct val dflt = arg(a, SIZE_MAX, "default", UNDEF(S("")));
			struct str path = to_str(x, at);
			for (size_t i = 0; i < l.l->n; i++) {
				struct val item = attr_path(x, l.l->v[i], path, line);
				r.l->v[i] = item.t == V_UNDEF && dflt.t != V_UNDEF ? dflt : item;
			}
			return r;
		}
		if (a->n < 1)
			fail(x, -EINVAL, line, "map: needs a filter name or attribute=");
		struct str fname = need_str(x, a->v[0], "map", line);
		struct args fa = *a;
		fa.n--;
		memmove(fa.v, fa.v + 1, fa.n * sizeof(struct val));
		for (size_t i = 0; i < l.l->n; i++)
			r.l->v[i] = apply_filter(x, fr, fname, l.l->v[i], &fa, line);
		return r;
	}
	if (F("selectattr") || F("rejectattr"))
		return select_items(x, v, a, true, F("selectattr"), line);
	if (F("select") || F("reject"))
		return select_items(x, v, a, false, F("select"), line);
	if (F("default") || F("d")) {
		check_args(x, a, 2, (const char *const[]){"default_value", "boolean", NULL}, "default", line);
		struct val dv = arg(a, 0, "default_value", STRV(S(""))), bo = arg(a, 1, "boolean", BOOL(false));
		if (v.t == V_UNDEF || (truthy(bo) && !truthy(v)))
			return dv;
		return v;
	}
	if (F("items")) {
		check_args(x, a, 0, NULL, "items", line);
		if (v.t == V_UNDEF)
			return new_list(x, 0);
		if (v.t != V_DICT)
			fail(x, -EINVAL, line, "items: can only get item pairs from a mapping, not %s", type_name(v));
		struct args none = {0};
		return call_method(x, v, S("items"), &none, line);
	}
	if (F("int")) {
		check_args(x, a, 2, (const char *const[]){"default", "base", NULL}, "int", line);
		struct val d = arg(a, 0, "default", INT(0));
		return INT(to_int(x, v, d.t == V_INT ? d.i : 0));
	}
	if (F("float")) {
		check_args(x, a, 1, (const char *const[]){"default", NULL}, "float", line);
		if (is_num(v))
			return (struct val){.t = V_FLOAT, .f = num_f(v)};
		if (v.t == V_STR) {
			struct str s = strip_chars(v.s, NONE, true, true);
			char tmp[64];
			if (s.n && s.n < sizeof(tmp)) {
				memcpy(tmp, s.p, s.n);
				tmp[s.n] = '\0';
				char *end;
				double d = strtod(tmp, &end);
				if (!*end)
					return (struct val){.t = V_FLOAT, .f = d};
			}
		}
		struct val d = arg(a, 0, "default", (struct val){.t = V_FLOAT, .f = 0});
		return d;
	}
	if (F("abs")) {
		check_args(x, a, 0, NULL, "abs", line);
		if (v.t == V_FLOAT)
			return (struct val){.t = V_FLOAT, .f = fabs(v.f)};
		if (v.t == V_INT || v.t == V_BOOL)
			return checked_int(x, num_i(v) < 0 ? -(__int128)num_i(v) : num_i(v), line);
		fail(x, -EINVAL, line, "bad operand type for abs(): '%s'", type_name(v));
	}
	if (F("upper") || F("lower") || F("capitalize")) {
		check_args(x, a, 0, NULL, "upper", line);
		struct str s = to_str(x, v);
		if (F("capitalize")) /* jinja2: s.capitalize(): first upper, the rest lower */
			return STRV(change_case(x, s, CASE_CAPITALIZE));
		return STRV(change_case(x, s, F("upper") ? CASE_UPPER : CASE_LOWER));
	}
	if (F("replace")) {
		check_args(x, a, 3, (const char *const[]){"old", "new", "count", NULL}, "replace", line);
		struct val old = arg(a, 0, "old", UNDEF(S("old"))), new = arg(a, 1, "new", UNDEF(S("new"))),
			   cnt = arg(a, 2, "count", NONE);
		if (cnt.t != V_NONE && cnt.t != V_INT)
			fail(x, -EINVAL, line, "replace: count must be an int");
		return STRV(str_replace(x, to_str(x, v), to_str(x, old), to_str(x, new), cnt.t == V_INT ? cnt.i : -1));
	}
	if (F("safe")) {
		check_args(x, a, 0, NULL, "safe", line);
		return v.t == V_STR ? v : STRV(to_str(x, v));
	}
	if (F("reverse")) {
		check_args(x, a, 0, NULL, "reverse", line);
		if (v.t == V_STR) {
			struct val l = iter_list(x, v, line);
			struct buf b = {0};
			buf_put(x, &b, "", 0);
			for (size_t i = l.l->n; i-- > 0;)
				buf_put(x, &b, l.l->v[i].s.p, l.l->v[i].s.n);
			return STRV(buf_str(&b));
		}
		struct val l = iter_list(x, v, line), r = new_list(x, l.l->n);
		for (size_t i = 0; i < l.l->n; i++)
			r.l->v[i] = l.l->v[l.l->n - 1 - i];
		return r;
	}
	fail(x, -EINVAL, line, "no filter named '%.*s'", (int)SKV_MIN(name.n, 40), name.p);
#undef F
}

/* ---- calls ------------------------------------------------------------------------------- */

static struct val call_macro(struct ctx *x, struct frame *fr, struct macro *m, struct args *a, int line);

static struct val call_value(struct ctx *x, struct frame *fr, struct val f, struct args *a, int line)
{
	if (f.t == V_MACRO)
		return call_macro(x, fr, f.m, a, line);
	if (f.t == V_UNDEF)
		undefined_error(x, line, f);
	if (f.t != V_FUNC)
		fail(x, -EINVAL, line, "'%s' object is not callable", type_name(f));
	switch (f.fn) {
	case FN_RAISE: {
		struct val msg = arg(a, 0, "message", UNDEF(S("message")));
		if (msg.t == V_UNDEF)
			undefined_error(x, line, msg);
		struct str s = to_str(x, msg);
		fail(x, -ECANCELED, line, "%.*s", (int)SKV_MIN(s.n, 580), s.p);
	}
	case FN_STRFTIME: {
		check_args(x, a, 1, NULL, "strftime_now", line);
		if (a->n != 1)
			fail(x, -EINVAL, line, "strftime_now takes one argument (a format)");
		struct str fmt = need_str(x, a->v[0], "strftime_now", line);
		if (fmt.n > 256 || memchr(fmt.p, '\0', fmt.n))
			fail(x, -EINVAL, line, "strftime_now: the format is longer than 256 bytes");
		char f0[260], out[1024];
		memcpy(f0, fmt.p, fmt.n);
		f0[fmt.n] = '\0';
		time_t now = x->now ? x->now : time(NULL);
		struct tm tm;
		localtime_r(&now, &tm);
		size_t n = strftime(out, sizeof(out), f0, &tm);
		if (!n && fmt.n)
			fail(x, -EINVAL, line, "strftime_now: the formatted date is too long");
		return STRV(xstrdup(x, out, n));
	}
	case FN_NAMESPACE:
	case FN_DICT: {
		struct val d = new_dict(x, f.fn == FN_NAMESPACE ? V_NS : V_DICT);
		if (a->n > 1)
			fail(x, -EINVAL, line, "%s takes at most one positional argument", f.fn == FN_NAMESPACE ? "namespace" : "dict");
		if (a->n == 1) {
			if (a->v[0].t != V_DICT && a->v[0].t != V_NS)
				fail(x, -EINVAL, line, "namespace: the positional argument must be a mapping");
			for (size_t i = 0; i < a->v[0].d->n; i++)
				dict_set(x, d.d, a->v[0].d->k[i], a->v[0].d->v[i]);
		}
		for (size_t i = 0; i < a->nkw; i++) {
			if (f.fn == FN_NAMESPACE && a->kwn[i].n && a->kwn[i].p[0] == '_')
				fail(x, -EINVAL, line, "Chat templates cannot store underscore-prefixed attributes on a namespace");
			dict_set(x, d.d, STRV(a->kwn[i]), a->kwv[i]);
		}
		return d;
	}
	case FN_RANGE: {
		check_args(x, a, 3, NULL, "range", line);
		int64_t lo = 0, hi, st = 1;
		for (size_t i = 0; i < a->n; i++)
			if (a->v[i].t != V_INT && a->v[i].t != V_BOOL)
				fail(x, -EINVAL, line, "range: '%s' object cannot be interpreted as an integer", type_name(a->v[i]));
		if (a->n == 0)
			fail(x, -EINVAL, line, "range expected at least 1 argument, got 0");
		if (a->n == 1)
			hi = num_i(a->v[0]);
		else
			lo = num_i(a->v[0]), hi = num_i(a->v[1]);
		if (a->n == 3)
			st = num_i(a->v[2]);
		if (st == 0)
			fail(x, -EINVAL, line, "range() arg 3 must not be zero");
		__int128 cnt = st > 0 ? (hi > lo ? ((__int128)hi - lo + st - 1) / st : 0)
				      : (lo > hi ? ((__int128)lo - hi - st - 1) / -st : 0);
		if (cnt > 100000) /* jinja2's sandbox MAX_RANGE */
			fail(x, -E2BIG, line, "Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
		struct val l = new_list(x, (size_t)cnt);
		for (size_t i = 0; i < (size_t)cnt; i++)
			l.l->v[i] = INT(lo + (int64_t)i * st);
		return l;
	}
	}
	fail(x, -EINVAL, line, "not callable");
}

static void put_out(struct ctx *x, struct frame *fr, struct val v)
{
	put_str(x, fr->out, v, false);
}

static struct val call_macro(struct ctx *x, struct frame *fr, struct macro *m, struct args *a, int line)
{
	const struct node *def = m->def;
	if (x->depth >= x->max_depth)
		fail(x, -E2BIG, line, "macro calls nested more than %u deep", x->max_depth);
	struct scope *sc = xcalloc(x, 1, sizeof(*sc));
	sc->parent = m->sc;
	if (a->n > def->l2.n)
		fail(x, -EINVAL, line, "macro '%.*s' takes not more than %zu argument(s)", (int)def->s.n, def->s.p, def->l2.n);
	for (size_t k = 0; k < a->nkw; k++) {
		bool ok = false;
		for (size_t i = 0; i < def->l2.n; i++)
			ok |= str_eq(def->l2.v[i]->s, a->kwn[k]);
		if (!ok)
			fail(x, -EINVAL, line, "macro '%.*s' takes no keyword argument '%.*s'", (int)def->s.n, def->s.p,
			     (int)SKV_MIN(a->kwn[k].n, 40), a->kwn[k].p);
	}
	struct frame f2 = {.sc = sc, .out = NULL, .caller = m->caller};
	for (size_t i = 0; i < def->l2.n; i++) {
		const struct node *p = def->l2.v[i];
		struct val v = UNDEF(p->s);
		bool got = false;
		if (i < a->n) {
			v = a->v[i];
			got = true;
		}
		for (size_t k = 0; k < a->nkw; k++)
			if (str_eq(a->kwn[k], p->s)) {
				v = a->kwv[k];
				got = true;
			}
		if (!got && p->a)
			v = eval(x, &f2, p->a);
		assign(x, sc, p->s, v);
	}
	if (m->caller)
		assign(x, sc, S("caller"), (struct val){.t = V_MACRO, .m = m->caller});
	struct buf out = {0};
	buf_put(x, &out, "", 0);
	out.limit = x->max_output;
	f2.out = &out;
	x->depth++;
	bool in_loop = x->in_loop;
	x->in_loop = false;
	exec_body(x, &f2, &def->l1);
	x->in_loop = in_loop;
	x->depth--;
	(void)fr;
	return STRV(buf_str(&out));
}

/* ---- expressions ------------------------------------------------------------------------- */

static struct val eval_node(struct ctx *x, struct frame *fr, const struct node *n);

/* Expressions count toward the nesting bound too, so that the C stack stays bounded. */
static struct val eval(struct ctx *x, struct frame *fr, const struct node *n)
{
	if (++x->depth > x->max_depth)
		fail(x, -E2BIG, n->line, "nested more than %u levels deep", x->max_depth);
	struct val v = eval_node(x, fr, n);
	x->depth--;
	return v;
}

static struct val eval_node(struct ctx *x, struct frame *fr, const struct node *n)
{
	step(x, n->line);
	switch (n->k) {
	case E_CONST:
		return n->v;
	case E_NAME:
		return lookup(fr->sc, n->s);
	case E_ATTR:
		return get_attr(x, eval(x, fr, n->a), n->s, n->line);
	case E_ITEM: {
		struct val o = eval(x, fr, n->a), k = eval(x, fr, n->b);
		return get_item(x, o, k, n->line);
	}
	case E_SLICE: {
		struct val o = eval(x, fr, n->a);
		struct val a = n->b ? eval(x, fr, n->b) : NONE, b = n->c ? eval(x, fr, n->c) : NONE,
			   c = n->l1.n ? eval(x, fr, n->l1.v[0]) : NONE;
		return do_slice(x, o, a, b, c, n->line);
	}
	case E_CALL: {
		struct args a;
		if (n->a->k == E_ATTR) {
			struct val o = eval(x, fr, n->a->a);
			if (o.t == V_STR || o.t == V_DICT || (o.t == V_NS && !dict_gets(o.d, n->a->s)) || o.t == V_UNDEF ||
			    o.t == V_LIST) {
				if (o.t == V_UNDEF)
					undefined_error(x, n->line, o);
				eval_args(x, fr, &n->l1, &a, n->line);
				return call_method(x, o, n->a->s, &a, n->line);
			}
			struct val f = get_attr(x, o, n->a->s, n->line);
			eval_args(x, fr, &n->l1, &a, n->line);
			return call_value(x, fr, f, &a, n->line);
		}
		struct val f = eval(x, fr, n->a);
		eval_args(x, fr, &n->l1, &a, n->line);
		return call_value(x, fr, f, &a, n->line);
	}
	case E_FILTER: {
		struct val v = eval(x, fr, n->a);
		struct args a;
		eval_args(x, fr, &n->l1, &a, n->line);
		return apply_filter(x, fr, n->s, v, &a, n->line);
	}
	case E_TEST: {
		struct val v = eval(x, fr, n->a);
		struct args a;
		eval_args(x, fr, &n->l1, &a, n->line);
		return BOOL(run_test(x, n->s, v, &a, n->line) != (n->op != 0));
	}
	case E_BIN:
		return binop(x, n->op, eval(x, fr, n->a), eval(x, fr, n->b), n->line);
	case E_NEG:
	case E_POS: {
		struct val v = eval(x, fr, n->a);
		if (v.t == V_UNDEF)
			undefined_error(x, n->line, v);
		if (v.t == V_FLOAT)
			return (struct val){.t = V_FLOAT, .f = n->k == E_NEG ? -v.f : v.f};
		if (v.t == V_INT || v.t == V_BOOL)
			return checked_int(x, n->k == E_NEG ? -(__int128)num_i(v) : num_i(v), n->line);
		fail(x, -EINVAL, n->line, "bad operand type for unary %s: '%s'", n->k == E_NEG ? "-" : "+", type_name(v));
	}
	case E_NOT:
		return BOOL(!truthy(eval(x, fr, n->a)));
	case E_AND: {
		struct val a = eval(x, fr, n->a);
		return truthy(a) ? eval(x, fr, n->b) : a;
	}
	case E_OR: {
		struct val a = eval(x, fr, n->a);
		return truthy(a) ? a : eval(x, fr, n->b);
	}
	case E_COND:
		if (truthy(eval(x, fr, n->a)))
			return eval(x, fr, n->b);
		return n->c ? eval(x, fr, n->c) : UNDEF(S(""));
	case E_CMP: {
		struct val left = eval(x, fr, n->a);
		for (size_t i = 0; i < n->l1.n; i++) {
			const struct node *o = n->l1.v[i];
			struct val right = eval(x, fr, o->a);
			bool r;
			switch (o->op) {
			case C_EQ:
				r = val_eq(left, right);
				break;
			case C_NE:
				r = !val_eq(left, right);
				break;
			case C_LT:
				r = cmp_vals(x, left, right, n->line) < 0;
				break;
			case C_LE:
				r = cmp_vals(x, left, right, n->line) <= 0;
				break;
			case C_GT:
				r = cmp_vals(x, left, right, n->line) > 0;
				break;
			case C_GE:
				r = cmp_vals(x, left, right, n->line) >= 0;
				break;
			case C_IN:
				r = contains(x, right, left, n->line);
				break;
			default:
				r = !contains(x, right, left, n->line);
			}
			if (!r)
				return BOOL(false);
			left = right;
		}
		return BOOL(true);
	}
	case E_LIST:
	case E_TUPLE: {
		struct val l = new_list(x, n->l1.n);
		l.tuple = n->k == E_TUPLE;
		for (size_t i = 0; i < n->l1.n; i++)
			l.l->v[i] = eval(x, fr, n->l1.v[i]);
		return l;
	}
	case E_DICT: {
		struct val d = new_dict(x, V_DICT);
		for (size_t i = 0; i < n->l1.n; i++) {
			struct val k = eval(x, fr, n->l1.v[i]);
			if (k.t == V_LIST && !k.tuple)
				fail(x, -EINVAL, n->line, "unhashable type: 'list'");
			if (k.t == V_DICT || k.t == V_NS)
				fail(x, -EINVAL, n->line, "unhashable type: 'dict'");
			dict_set(x, d.d, k, eval(x, fr, n->l2.v[i]));
		}
		return d;
	}
	default:
		fail(x, -EINVAL, n->line, "internal error: not an expression");
	}
}

/* ---- statements -------------------------------------------------------------------------- */

static void bind_target(struct ctx *x, struct scope *sc, const struct node *t, struct val v, int line)
{
	if (t->k == E_NAME) {
		assign(x, sc, t->s, v);
		return;
	}
	/* a tuple of names */
	if (v.t == V_UNDEF)
		undefined_error(x, line, v);
	struct val l = iter_list(x, v, line);
	if (l.l->n != t->l1.n)
		fail(x, -EINVAL, line, "%s values to unpack (expected %zu, got %zu)",
		     l.l->n > t->l1.n ? "too many" : "not enough", t->l1.n, l.l->n);
	for (size_t i = 0; i < t->l1.n; i++)
		assign(x, sc, t->l1.v[i]->s, l.l->v[i]);
}

/* loop.*: one dict per for loop, updated in place each iteration (no allocation per item) */
static struct val make_loop(struct ctx *x, struct val d, size_t i, size_t n, struct val items)
{
	dict_set(x, d.d, STRV(S("index")), INT((int64_t)i + 1));
	dict_set(x, d.d, STRV(S("index0")), INT((int64_t)i));
	dict_set(x, d.d, STRV(S("revindex")), INT((int64_t)(n - i)));
	dict_set(x, d.d, STRV(S("revindex0")), INT((int64_t)(n - i - 1)));
	dict_set(x, d.d, STRV(S("first")), BOOL(i == 0));
	dict_set(x, d.d, STRV(S("last")), BOOL(i + 1 == n));
	dict_set(x, d.d, STRV(S("length")), INT((int64_t)n));
	dict_set(x, d.d, STRV(S("depth")), INT(1));
	dict_set(x, d.d, STRV(S("depth0")), INT(0));
	dict_set(x, d.d, STRV(S("previtem")), i > 0 ? items.l->v[i - 1] : UNDEF(S("previtem")));
	dict_set(x, d.d, STRV(S("nextitem")), i + 1 < n ? items.l->v[i + 1] : UNDEF(S("nextitem")));
	return d;
}

static enum flow exec_for(struct ctx *x, struct frame *fr, const struct node *n)
{
	struct val it = eval(x, fr, n->b);
	struct val items = iter_list(x, it, n->line);
	struct scope *sc = xcalloc(x, 1, sizeof(*sc));
	sc->parent = fr->sc;
	struct frame f2 = *fr;
	f2.sc = sc;
	if (n->c) { /* for x in xs if cond: the loop sees only the items that pass */
		struct val kept = new_list(x, items.l->n);
		size_t k = 0;
		for (size_t i = 0; i < items.l->n; i++) {
			bind_target(x, sc, n->a, items.l->v[i], n->line);
			if (truthy(eval(x, &f2, n->c)))
				kept.l->v[k++] = items.l->v[i];
		}
		kept.l->n = k;
		items = kept;
	}
	bool in_loop = x->in_loop;
	struct val loop = new_dict(x, V_DICT);
	for (size_t i = 0; i < items.l->n; i++) {
		step(x, n->line);
		/* what a body sets lives for one iteration, as in jinja2 (the storage is reused) */
		sc->vars.n = 0;
		bind_target(x, sc, n->a, items.l->v[i], n->line);
		assign(x, sc, S("loop"), make_loop(x, loop, i, items.l->n, items));
		x->in_loop = true;
		enum flow f = exec_body(x, &f2, &n->l1);
		x->in_loop = in_loop;
		if (f == FLOW_BREAK)
			break;
	}
	if (!items.l->n && n->l2.n) {
		struct frame f3 = *fr;
		f3.sc = xcalloc(x, 1, sizeof(struct scope));
		f3.sc->parent = fr->sc;
		return exec_body(x, &f3, &n->l2);
	}
	return FLOW_NORMAL;
}

static enum flow exec_stmt(struct ctx *x, struct frame *fr, const struct node *n)
{
	step(x, n->line);
	switch (n->k) {
	case N_DATA:
		buf_put(x, fr->out, n->s.p, n->s.n);
		return FLOW_NORMAL;
	case N_OUT:
		put_out(x, fr, eval(x, fr, n->a));
		return FLOW_NORMAL;
	case N_IF:
		return exec_body(x, fr, truthy(eval(x, fr, n->a)) ? &n->l1 : &n->l2);
	case N_FOR:
		return exec_for(x, fr, n);
	case N_SET: {
		struct val v = eval(x, fr, n->b);
		if (n->a->k == E_ATTR) {
			struct val ns = lookup(fr->sc, n->a->a->s);
			if (ns.t != V_NS)
				fail(x, -EINVAL, n->line, "cannot assign attribute on non-namespace object");
			if (n->a->s.n && n->a->s.p[0] == '_')
				fail(x, -EINVAL, n->line, "Chat templates cannot store underscore-prefixed attributes on a namespace");
			dict_set(x, ns.d, STRV(n->a->s), v);
		} else {
			bind_target(x, fr->sc, n->a, v, n->line);
		}
		return FLOW_NORMAL;
	}
	case N_SETBLOCK: {
		struct buf out = {0};
		buf_put(x, &out, "", 0);
		out.limit = x->max_output;
		struct frame f2 = *fr;
		f2.out = &out;
		exec_body(x, &f2, &n->l1);
		struct val v = STRV(buf_str(&out));
		if (n->b) { /* apply the filter chain to the block's text */
			const struct node *chain[64];
			size_t k = 0;
			for (const struct node *f = n->b; f->k == E_FILTER; f = f->a) {
				if (k == SKV_ARRAY_SIZE(chain))
					fail(x, -E2BIG, n->line, "too many filters");
				chain[k++] = f;
			}
			while (k--) {
				struct args a;
				eval_args(x, fr, &chain[k]->l1, &a, n->line);
				v = apply_filter(x, fr, chain[k]->s, v, &a, n->line);
			}
		}
		assign(x, fr->sc, n->a->s, v);
		return FLOW_NORMAL;
	}
	case N_MACRO: {
		struct macro *m = xcalloc(x, 1, sizeof(*m));
		m->def = n;
		m->sc = fr->sc;
		assign(x, fr->sc, n->s, (struct val){.t = V_MACRO, .m = m});
		return FLOW_NORMAL;
	}
	case N_CALLBLOCK: {
		struct macro *caller = xcalloc(x, 1, sizeof(*caller));
		caller->def = n;
		caller->sc = fr->sc;
		const struct node *c = n->a;
		struct val f = eval(x, fr, c->a);
		if (f.t != V_MACRO)
			fail(x, -EINVAL, n->line, "a call block needs a macro");
		struct macro m2 = *f.m;
		m2.caller = caller;
		struct args a;
		eval_args(x, fr, &c->l1, &a, n->line);
		put_out(x, fr, call_macro(x, fr, &m2, &a, n->line));
		return FLOW_NORMAL;
	}
	case N_BREAK:
	case N_CONTINUE:
		if (!x->in_loop)
			fail(x, -EINVAL, n->line, "'%s' outside a loop", n->k == N_BREAK ? "break" : "continue");
		return n->k == N_BREAK ? FLOW_BREAK : FLOW_CONTINUE;
	default:
		fail(x, -EINVAL, n->line, "internal error: not a statement");
	}
}

static enum flow exec_body(struct ctx *x, struct frame *fr, const struct nlist *body)
{
	if (++x->depth > x->max_depth)
		fail(x, -E2BIG, body->n ? body->v[0]->line : 0, "nested more than %u levels deep", x->max_depth);
	for (size_t i = 0; i < body->n; i++) {
		enum flow f = exec_stmt(x, fr, body->v[i]);
		if (f != FLOW_NORMAL) {
			x->depth--;
			return f;
		}
	}
	x->depth--;
	return FLOW_NORMAL;
}

ssize_t skv_jinja_render(const struct skv_jinja *t, const struct json_object *vars,
			 const struct skv_jinja_render_opts *opts, char **ret, struct skv_err *err)
{
	struct arena arena = {0};
	struct ctx x = {.err = err, .name = t->name, .arena = &arena};
	struct skv_jinja_limits lim = opts ? opts->limits : (struct skv_jinja_limits){0};
	struct buf out = {.heap = true};
	x.max_steps = lim.max_steps ? lim.max_steps : SKV_JINJA_MAX_STEPS;
	x.max_output = lim.max_output ? lim.max_output : SKV_JINJA_MAX_OUTPUT;
	x.max_depth = lim.max_depth ? lim.max_depth : SKV_JINJA_MAX_DEPTH;
	arena.limit = lim.max_memory ? lim.max_memory : SKV_JINJA_MAX_MEMORY;
	x.now = opts ? opts->now : 0;
	out.limit = x.max_output;
	if (setjmp(x.jb)) {
		cur_ctx = NULL;
		free(out.p);
		arena_free(&arena);
		return err ? err->code : -EINVAL;
	}
	cur_ctx = &x;
	struct scope *top = xcalloc(&x, 1, sizeof(*top));
	if (vars) {
		if (!json_object_is_type(vars, json_type_object))
			fail(&x, -EINVAL, 0, "the template's variables must be a JSON object");
		json_object_object_foreach((json_object *)vars, k, v)
		{
			assign(&x, top, xstrdup(&x, k, strlen(k)), from_json(&x, v, 0));
		}
	}
	struct frame fr = {.sc = top, .out = &out};
	buf_put(&x, &out, "", 0);
	exec_body(&x, &fr, &t->body);
	cur_ctx = NULL;
	arena_free(&arena);
	*ret = out.p;
	return (ssize_t)out.n;
}
