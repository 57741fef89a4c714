/* config.c: skv-http.ini through inih, strictly, and the API keys file.
 *
 * inih (Debian's r55) never tells its handler the line number and takes an indented line for a
 * continuation: the file is read whole first (at most 1 MiB, no NUL byte, no line longer than
 * inih keeps) and handed to ini_parse_stream one line per read, so that the reader's count is
 * the handler's line, and inih's runtime options are set on every parse (skvd's config.c does
 * the same for skvd.ini; the two files share no keys, so they share no table either).
 */
#include "http-config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <fcntl.h>
#include <ini.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#define CONFIG_MAX_BYTES (1u << 20)
#define KEYS_MAX_BYTES (4u << 20)

enum key_kind { KEY_STRING, KEY_UINT, KEY_BOOL, KEY_LISTEN };

enum {
	KEY_ABSOLUTE = 1u << 0, /* an absolute path (or empty, unless KEY_NONEMPTY) */
	KEY_NONEMPTY = 1u << 1,
	KEY_SIZE = 1u << 2, /* bytes, with an optional K, M or G suffix */
};

struct key {
	const char *section, *name;
	enum key_kind kind;
	unsigned flags;
	size_t offset, size;
	uint64_t min, max;
};

#define FSIZE(f) sizeof(((struct skv_http_config *)0)->f)
#define KSTR(s, n, f, fl) {s, n, KEY_STRING, fl, offsetof(struct skv_http_config, f), FSIZE(f), 0, 0}
#define KUINT(s, n, f, fl, lo, hi) {s, n, KEY_UINT, fl, offsetof(struct skv_http_config, f), FSIZE(f), lo, hi}
#define KBOOL(s, n, f) {s, n, KEY_BOOL, 0, offsetof(struct skv_http_config, f), FSIZE(f), 0, 0}

/* In the order of etc/skv-http.ini and skv-http.ini(5). */
static const struct key keys[] = {
	{"http", "listen", KEY_LISTEN, 0, offsetof(struct skv_http_config, listen_text), FSIZE(listen_text), 0, 0},
	KSTR("http", "api_keys_file", api_keys_file, KEY_ABSOLUTE),
	KBOOL("http", "allow_unauthenticated", allow_unauthenticated),
	KSTR("http", "tls_cert", tls_cert, KEY_ABSOLUTE),
	KSTR("http", "tls_key", tls_key, KEY_ABSOLUTE),

	KSTR("skvd", "socket", socket, KEY_ABSOLUTE | KEY_NONEMPTY),
	KSTR("skvd", "admin_socket", admin_socket, KEY_ABSOLUTE),
	KUINT("skvd", "connect_timeout_ms", connect_timeout_ms, 0, 100, 600000),

	KUINT("limits", "max_body_bytes", max_body_bytes, KEY_SIZE, 4096, 256u << 20),
	KUINT("limits", "max_concurrent_requests", max_concurrent_requests, 0, 1, 65536),
	KUINT("limits", "max_connections", max_connections, 0, 1, 65536),
	KUINT("limits", "idle_timeout_s", idle_timeout_s, 0, 0, 3600),
	KUINT("limits", "request_timeout_ms", request_timeout_ms, 0, 0, 86400000),
};

static const char *const sections[] = {"http", "skvd", "limits"};

void skv_http_config_defaults(struct skv_http_config *c)
{
	memset(c, 0, sizeof(*c));
	skv_strscpy(c->listen_text, "127.0.0.1:8000", sizeof(c->listen_text));
	struct sockaddr_in *in = (struct sockaddr_in *)&c->listen[0].addr;
	in->sin_family = AF_INET;
	in->sin_port = htons(8000);
	in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	c->listen[0].addr_len = sizeof(*in);
	c->listen[0].loopback = true;
	skv_strscpy(c->listen[0].text, "127.0.0.1:8000", sizeof(c->listen[0].text));
	c->n_listen = 1;
	skv_strscpy(c->socket, "/run/swiftkv/skvd.sock", sizeof(c->socket));
	skv_strscpy(c->admin_socket, "/run/swiftkv/skvd-admin.sock", sizeof(c->admin_socket));
	c->connect_timeout_ms = 5000;
	c->max_body_bytes = 8u << 20;
	c->max_concurrent_requests = 256;
	c->max_connections = 1024;
	c->idle_timeout_s = 60;
	c->request_timeout_ms = 0;
}

struct parser {
	const char *name, *data;
	size_t size, pos;
	unsigned line;
	struct skv_http_config cfg;
	unsigned seen[SKV_ARRAY_SIZE(keys)];
	bool failed;
	struct skv_err *err;
	int code;
};

static int fail(struct parser *p, unsigned line, const struct key *k, int code, const char *fmt, ...) SKV_PRINTF(5, 6);
static int fail(struct parser *p, unsigned line, const struct key *k, int code, const char *fmt, ...)
{
	char reason[512], where[32] = "";
	va_list ap;

	if (p->failed)
		return p->code;
	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	if (line)
		snprintf(where, sizeof(where), ":%u", line);
	if (k)
		skv_err_set(p->err, code, "%s%s: [%s] %s: %s", p->name, where, k->section, k->name, reason);
	else
		skv_err_set(p->err, code, "%s%s: %s", p->name, where, reason);
	p->failed = true;
	p->code = code;
	return code;
}

static int parse_uint(const char *s, bool size, uint64_t *ret)
{
	uint64_t v = 0;
	const char *q = s;
	if (*q < '0' || *q > '9')
		return -EINVAL;
	for (; *q >= '0' && *q <= '9'; q++)
		if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, (uint64_t)(*q - '0'), &v))
			return -ERANGE;
	if (size && *q) {
		const char *at = strchr("KMG", *q & ~0x20);
		if (!at || !*at || q[1])
			return -EINVAL;
		for (long i = 0; i <= at - "KMG"; i++)
			if (__builtin_mul_overflow(v, 1024, &v))
				return -ERANGE;
		q++;
	}
	if (*q)
		return -EINVAL;
	*ret = v;
	return 0;
}

/* "ADDR:PORT": an IPv4 address or a bracketed IPv6 one, and a port 1 to 65535. */
static int parse_listen(const char *item, size_t len, struct skv_http_listen *ret)
{
	char buf[64], *port;
	uint64_t pv;
	struct skv_http_listen l = {0};

	if (len == 0 || len >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, item, len);
	buf[len] = '\0';
	skv_strscpy(l.text, buf, sizeof(l.text));
	port = strrchr(buf, ':');
	if (!port || parse_uint(port + 1, false, &pv) < 0 || pv < 1 || pv > 65535)
		return -EINVAL;
	*port = '\0';
	if (buf[0] == '[') {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&l.addr;
		size_t n = strlen(buf);
		if (n < 3 || buf[n - 1] != ']')
			return -EINVAL;
		buf[n - 1] = '\0';
		if (inet_pton(AF_INET6, buf + 1, &in6->sin6_addr) != 1)
			return -EINVAL;
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)pv);
		l.addr_len = sizeof(*in6);
		l.loopback = IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
	} else {
		struct sockaddr_in *in = (struct sockaddr_in *)&l.addr;
		if (inet_pton(AF_INET, buf, &in->sin_addr) != 1)
			return -EINVAL;
		in->sin_family = AF_INET;
		in->sin_port = htons((uint16_t)pv);
		l.addr_len = sizeof(*in);
		l.loopback = (ntohl(in->sin_addr.s_addr) >> 24) == 127;
	}
	*ret = l;
	return 0;
}

static int set_listen(struct parser *p, const struct key *k, const char *v)
{
	struct skv_http_listen l[SKV_HTTP_MAX_LISTEN];
	uint32_t n = 0;
	const char *s = v;

	for (;;) {
		s += strspn(s, " \t,");
		if (!*s)
			break;
		size_t len = strcspn(s, " \t,");
		if (n == SKV_HTTP_MAX_LISTEN)
			return fail(p, p->line, k, -E2BIG, "more than %d addresses", SKV_HTTP_MAX_LISTEN);
		if (parse_listen(s, len, &l[n]) < 0)
			return fail(p, p->line, k, -EINVAL,
				    "\"%.*s\" is not ADDR:PORT (a numeric IPv4 address or a bracketed IPv6 one, "
				    "and a port 1 to 65535, as in 127.0.0.1:8000 or [::1]:8000)",
				    (int)SKV_MIN(len, 64), s);
		n++;
		s += len;
	}
	if (!n)
		return fail(p, p->line, k, -EINVAL, "must name at least one ADDR:PORT");
	memcpy(p->cfg.listen, l, n * sizeof(l[0]));
	p->cfg.n_listen = n;
	skv_strscpy(p->cfg.listen_text, v, sizeof(p->cfg.listen_text));
	return 0;
}

static int set_value(struct parser *p, const struct key *k, const char *v)
{
	char *field = (char *)&p->cfg + k->offset;
	size_t len = strlen(v);

	for (size_t i = 0; i < len; i++)
		if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f)
			return fail(p, p->line, k, -EINVAL, "the value holds a control character (byte 0x%02x)",
				    (unsigned char)v[i]);
	switch (k->kind) {
	case KEY_LISTEN:
		if (len >= k->size)
			return fail(p, p->line, k, -ENAMETOOLONG, "the value is %zu bytes long; at most %zu fit", len,
				    k->size - 1);
		return set_listen(p, k, v);
	case KEY_STRING:
		if (len >= k->size)
			return fail(p, p->line, k, -ENAMETOOLONG, "the value is %zu bytes long; at most %zu fit", len,
				    k->size - 1);
		if ((k->flags & KEY_NONEMPTY) && !len)
			return fail(p, p->line, k, -EINVAL, "must not be empty");
		if ((k->flags & KEY_ABSOLUTE) && len && v[0] != '/')
			return fail(p, p->line, k, -EINVAL, "\"%s\" is not an absolute path", v);
		memset(field, 0, k->size);
		memcpy(field, v, len);
		return 0;
	case KEY_BOOL: {
		bool b;
		if (!strcasecmp(v, "yes") || !strcasecmp(v, "true") || !strcasecmp(v, "on") || !strcmp(v, "1"))
			b = true;
		else if (!strcasecmp(v, "no") || !strcasecmp(v, "false") || !strcasecmp(v, "off") || !strcmp(v, "0"))
			b = false;
		else
			return fail(p, p->line, k, -EINVAL, "\"%s\" is not one of yes, no", v);
		memcpy(field, &b, sizeof(b));
		return 0;
	}
	case KEY_UINT: {
		uint64_t x;
		int r = parse_uint(v, k->flags & KEY_SIZE, &x);
		if (r == -EINVAL)
			return fail(p, p->line, k, r,
				    k->flags & KEY_SIZE ? "\"%s\" is not a size (a whole number of bytes with an "
							  "optional K, M or G suffix, as in 8M)"
							: "\"%s\" is not a whole number",
				    v);
		if (r == -ERANGE || x < k->min || x > k->max)
			return fail(p, p->line, k, -ERANGE, "%.24s is out of range (%llu to %llu)", v,
				    (unsigned long long)k->min, (unsigned long long)k->max);
		uint32_t x32 = (uint32_t)x;
		memcpy(field, &x32, sizeof(x32));
		return 0;
	}
	}
	return fail(p, p->line, k, -EINVAL, "internal error: unknown key kind");
}

static int on_key(void *user, const char *section, const char *name, const char *value)
{
	struct parser *p = user;

	if (p->failed)
		return 0;
	if (!value) {
		fail(p, p->line, NULL, -EINVAL, "expected \"key = value\", a [section] or a comment");
		return 0;
	}
	if (!*section) {
		fail(p, p->line, NULL, -EINVAL, "%s: a key before any [section]", name);
		return 0;
	}
	for (size_t i = 0; i < SKV_ARRAY_SIZE(keys); i++) {
		if (strcmp(keys[i].section, section) || strcmp(keys[i].name, name))
			continue;
		if (p->seen[i]) {
			fail(p, p->line, &keys[i], -EINVAL, "set twice (first on line %u)", p->seen[i]);
			return 0;
		}
		p->seen[i] = p->line;
		return set_value(p, &keys[i], value) == 0;
	}
	char list[512];
	size_t off = 0;
	list[0] = '\0';
	for (size_t i = 0; i < SKV_ARRAY_SIZE(keys); i++)
		if (!strcmp(keys[i].section, section) && off < sizeof(list))
			off += (size_t)snprintf(list + off, sizeof(list) - off, "%s%s", off ? ", " : "", keys[i].name);
	fail(p, p->line, NULL, -EINVAL, "[%s] %s: unknown key ([%s] has %s)", section, name, section, list);
	return 0;
}

/* "[ http ]", text after the ']' and unknown sections are refused before inih sees the line. */
static int check_section_line(struct parser *p, const char *line)
{
	const char *s = line + strspn(line, " \t\r\v\f"), *end;

	if (p->line == 1 && (unsigned char)s[0] == 0xef && (unsigned char)s[1] == 0xbb && (unsigned char)s[2] == 0xbf)
		s += 3;
	if (*s != '[')
		return 0;
	end = strchr(s, ']');
	if (!end)
		return fail(p, p->line, NULL, -EINVAL, "a [section] line without its closing ']'");
	bool known = false;
	for (size_t i = 0; i < SKV_ARRAY_SIZE(sections); i++)
		known |= strlen(sections[i]) == (size_t)(end - s - 1) && !memcmp(sections[i], s + 1, (size_t)(end - s - 1));
	if (!known)
		return fail(p, p->line, NULL, -EINVAL,
			    "unknown section [%.*s] (the sections are [http], [skvd] and [limits])",
			    (int)SKV_MIN(end - s - 1, 64), s + 1);
	end += 1 + strspn(end + 1, " \t\r\n");
	if (*end && *end != ';' && *end != '#')
		return fail(p, p->line, NULL, -EINVAL, "text after the [%.*s] header", (int)SKV_MIN(end - s, 64), s + 1);
	return 0;
}

static char *read_line(char *str, int num, void *stream)
{
	struct parser *p = stream;
	size_t n = 0;

	if (p->failed || p->pos >= p->size || num < 2)
		return NULL;
	while (p->pos < p->size && n < (size_t)num - 1) {
		char c = p->data[p->pos++];
		str[n++] = c;
		if (c == '\n')
			break;
	}
	str[n] = '\0';
	p->line++;
	if (check_section_line(p, str) < 0)
		return NULL;
	return str;
}

static int check_lines(struct parser *p)
{
	size_t max = ini_max_line > 8 ? (size_t)ini_max_line - 3 : 5, start = 0;
	unsigned line = 0;

	if (p->size > CONFIG_MAX_BYTES)
		return fail(p, 0, NULL, -EFBIG, "%zu bytes; a configuration file has at most %u", p->size,
			    CONFIG_MAX_BYTES);
	while (start < p->size) {
		const char *s = p->data + start, *nl = memchr(s, '\n', p->size - start);
		size_t len = nl ? (size_t)(nl - s) : p->size - start;
		line++;
		if (memchr(s, '\0', len))
			return fail(p, line, NULL, -EINVAL, "a NUL byte: this is not a text file");
		if (len && s[len - 1] == '\r')
			len--;
		if (len > max)
			return fail(p, line, NULL, -E2BIG, "the line is %zu bytes long; at most %zu are allowed", len, max);
		if (!nl)
			break;
		start += (size_t)(nl - s) + 1;
	}
	return 0;
}

static const struct key *key_named(const char *section, const char *name)
{
	for (size_t i = 0; i < SKV_ARRAY_SIZE(keys); i++)
		if (!strcmp(keys[i].section, section) && !strcmp(keys[i].name, name))
			return &keys[i];
	return NULL;
}

static unsigned seen_line(const struct parser *p, const char *section, const char *name)
{
	return p->seen[key_named(section, name) - keys];
}

static int check_relations(struct parser *p)
{
	struct skv_http_config *c = &p->cfg;

	if (!c->tls_cert[0] != !c->tls_key[0]) {
		const char *set = c->tls_cert[0] ? "tls_cert" : "tls_key", *unset = c->tls_cert[0] ? "tls_key" : "tls_cert";
		return fail(p, seen_line(p, "http", set), key_named("http", set), -EINVAL,
			    "set without [http] %s: TLS needs both the certificate and its key", unset);
	}
	if (c->max_connections < c->max_concurrent_requests)
		return fail(p, seen_line(p, "limits", "max_connections"), key_named("limits", "max_connections"), -EINVAL,
			    "%u is less than [limits] max_concurrent_requests (%u): every request needs a connection",
			    c->max_connections, c->max_concurrent_requests);
	if (!c->api_keys_file[0] && !c->allow_unauthenticated)
		for (uint32_t i = 0; i < c->n_listen; i++)
			if (!c->listen[i].loopback)
				return fail(p, seen_line(p, "http", "listen"), key_named("http", "listen"), -EPERM,
					    "%s is not a loopback address, and there is no [http] api_keys_file: "
					    "anyone who reaches it could use the model. Set api_keys_file, or "
					    "allow_unauthenticated = yes (behind a proxy that authenticates)",
					    c->listen[i].text);
	return 0;
}

int skv_http_config_parse(const char *data, size_t size, const char *name, struct skv_http_config *ret,
			  struct skv_err *err)
{
	static char start_comments[] = ";#", inline_comments[] = ";";
	struct parser p = {.name = name ? name : "(config)", .data = data, .size = size, .err = err};
	int r;

	skv_http_config_defaults(&p.cfg);
	if ((r = check_lines(&p)) < 0)
		return r;
	ini_allow_multiline = false;
	ini_allow_bom = true;
	ini_allow_inline_comments = true;
	ini_inline_comment_prefixes = inline_comments;
	ini_start_comment_prefixes = start_comments;
	ini_stop_on_first_error = true;
	ini_allow_no_value = false;
	int n = ini_parse_stream(read_line, &p, on_key, &p);
	if (n > 0 && !p.failed)
		fail(&p, (unsigned)n, NULL, -EINVAL, "expected \"key = value\", a [section] or a comment");
	else if (n < 0 && !p.failed)
		fail(&p, 0, NULL, -ENOMEM, "inih failed (%d)", n);
	if (p.failed)
		return p.code;
	if ((r = check_relations(&p)) < 0)
		return r;
	*ret = p.cfg;
	return 0;
}

int skv_http_read_file(const char *path, size_t max, char **ret, size_t *ret_len, struct skv_err *err)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	_cleanup_free_ char *buf = NULL;
	size_t len = 0;
	struct stat st;

	if (fd < 0)
		return skv_err_set(err, -errno, "%s: cannot open: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0)
		return skv_err_set(err, -errno, "%s: %s", path, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return skv_err_set(err, -EINVAL, "%s: not a regular file", path);
	buf = malloc(max + 2);
	if (!buf)
		return skv_err_set(err, -ENOMEM, "%s: out of memory", path);
	while (len < max + 1) {
		ssize_t n = read(fd, buf + len, max + 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return skv_err_set(err, -errno, "%s: cannot read: %s", path, strerror(errno));
		if (n == 0)
			break;
		len += (size_t)n;
	}
	if (len > max)
		return skv_err_set(err, -EFBIG, "%s: larger than %zu bytes", path, max);
	buf[len] = '\0';
	*ret = SKV_TAKE_PTR(buf);
	*ret_len = len;
	return 0;
}

int skv_http_config_load(const char *path, struct skv_http_config *ret, struct skv_err *err)
{
	_cleanup_free_ char *buf = NULL;
	size_t len;
	int r = skv_http_read_file(path, CONFIG_MAX_BYTES, &buf, &len, err);
	if (r < 0)
		return r;
	return skv_http_config_parse(buf, len, path, ret, err);
}

int skv_http_config_write(const struct skv_http_config *c, FILE *f)
{
	const char *section = "";
	for (size_t i = 0; i < SKV_ARRAY_SIZE(keys); i++) {
		const struct key *k = &keys[i];
		const char *field = (const char *)c + k->offset;
		if (strcmp(section, k->section))
			fprintf(f, "%s[%s]\n", i ? "\n" : "", section = k->section);
		switch (k->kind) {
		case KEY_LISTEN:
		case KEY_STRING:
			fprintf(f, "%s =%s%s\n", k->name, field[0] ? " " : "", field);
			break;
		case KEY_BOOL:
			fprintf(f, "%s = %s\n", k->name, *(const bool *)field ? "yes" : "no");
			break;
		case KEY_UINT: {
			uint32_t x;
			memcpy(&x, field, sizeof(x));
			fprintf(f, "%s = %u\n", k->name, x);
			break;
		}
		}
	}
	return ferror(f) ? -EIO : 0;
}

/* ---- API keys ---- */

int skv_http_keys_parse(const char *data, size_t size, const char *name, struct skv_http_keys *ret,
			struct skv_err *err)
{
	struct skv_http_keys k = {0};
	size_t start = 0, cap = 0;
	unsigned line = 0;

	while (start < size) {
		const char *s = data + start, *nl = memchr(s, '\n', size - start);
		size_t len = nl ? (size_t)(nl - s) : size - start;
		start += len + (nl ? 1 : 0);
		line++;
		while (len && isspace((unsigned char)*s))
			s++, len--;
		while (len && isspace((unsigned char)s[len - 1]))
			len--;
		if (!len || s[0] == '#')
			continue;
		int code = 0;
		const char *why = NULL;
		for (size_t i = 0; i < len && !why; i++)
			if (s[i] <= 0x20 || s[i] >= 0x7f)
				why = "holds a space, a control character or a non-ASCII byte", code = -EINVAL;
		if (!why && (len < SKV_HTTP_KEY_MIN || len > SKV_HTTP_KEY_MAX))
			why = "is not 8 to 256 characters long", code = -EINVAL;
		if (!why && k.n == SKV_HTTP_KEYS_MAX)
			why = "is one key more than the 4096 allowed", code = -E2BIG;
		if (why) {
			skv_http_keys_done(&k);
			return skv_err_set(err, code, "%s:%u: the key %s", name, line, why);
		}
		if (k.n == cap) {
			size_t ncap = cap ? cap * 2 : 8;
			void *nk = realloc(k.keys, ncap * sizeof(*k.keys));
			if (!nk) {
				skv_http_keys_done(&k);
				return skv_err_set(err, -ENOMEM, "%s: out of memory", name);
			}
			k.keys = nk;
			cap = ncap;
		}
		memset(k.keys[k.n], 0, sizeof(k.keys[k.n]));
		memcpy(k.keys[k.n], s, len);
		k.n++;
	}
	*ret = k;
	return 0;
}

int skv_http_keys_load(const char *path, struct skv_http_keys *ret, struct skv_err *err)
{
	_cleanup_free_ char *buf = NULL;
	size_t len;
	int r = skv_http_read_file(path, KEYS_MAX_BYTES, &buf, &len, err);
	if (r < 0)
		return r;
	return skv_http_keys_parse(buf, len, path, ret, err);
}

void skv_http_keys_done(struct skv_http_keys *k)
{
	if (!k)
		return;
	if (k->keys)
		explicit_bzero(k->keys, k->n * sizeof(*k->keys));
	free(k->keys);
	k->keys = NULL;
	k->n = 0;
}

bool skv_http_keys_match(const struct skv_http_keys *k, const char *key, size_t len)
{
	unsigned found = 0;
	if (len < SKV_HTTP_KEY_MIN || len > SKV_HTTP_KEY_MAX)
		return false;
	for (size_t i = 0; i < k->n; i++) {
		/* every byte of the stored key (NUL-padded) against the offered one: the time depends
		 * on the number of keys and the offered length only */
		unsigned diff = 0;
		for (size_t j = 0; j <= SKV_HTTP_KEY_MAX; j++)
			diff |= (unsigned)(unsigned char)k->keys[i][j] ^ (unsigned)(unsigned char)(j < len ? key[j] : 0);
		found |= !diff;
	}
	return found != 0;
}
