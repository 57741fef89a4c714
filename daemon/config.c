/* config.c: skvd.ini through inih, strictly.
 *
 * Debian 12's inih (r55) forgives what skvd must not: it reads at most 199 bytes of a line and
 * parses the rest as a line of its own, takes an indented line for the continuation of the last
 * value, and never tells its handler which line it is on. So the file is read whole first (at
 * most 1 MiB, no NUL byte, no line longer than inih keeps) and handed to ini_parse_stream one
 * line per read: the reader's count is then the handler's line number. inih's runtime globals
 * (Debian builds them as variables) are set on every load: no multi-line values, `;` and `#`
 * comments at the start of a line, `;` comments after whitespace, stop at the first error.
 *
 * A file is taken whole or not at all: a syntax error, an unknown section or key, a key given
 * twice, a malformed number, a value out of range or too long for its field rejects it with
 * "FILE:LINE: [section] key: reason". The new configuration is built in a private copy and
 * reaches the caller only on success.
 *
 * Not here: resolving group names, opening the model, checking that paths exist (skvd does that
 * when it starts, and again for the groups on reload).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define CONFIG_MAX_BYTES (1u << 20)
#define GROUP_NAME_MAX 32 /* what shadow-utils and systemd accept */
#define DEVICE_MAX 255

enum key_kind { KEY_STRING, KEY_UINT, KEY_FRACTION, KEY_SWIFTKV, KEY_BACKEND, KEY_DEVICES, KEY_ADMISSION };

enum {
	KEY_NONEMPTY = 1u << 0,
	KEY_ABSOLUTE = 1u << 1, /* an absolute path */
	KEY_GROUP = 1u << 2,	/* a group name, or empty */
	KEY_SIZE = 1u << 3,	/* bytes, with an optional K, M, G or T suffix (powers of 1024) */
	KEY_POW2 = 1u << 4,	/* a power of two */
	KEY_ZERO = 1u << 5,	/* 0 is also accepted (it means "automatic") */
};

struct key {
	const char *section, *name;
	enum key_kind kind;
	unsigned flags;
	size_t offset, size; /* of the field in struct skvd_config */
	uint64_t min, max;   /* KEY_UINT */
	double dmin, dmax;   /* KEY_FRACTION */
};

#define FIELD_SIZE(f) sizeof(((struct skvd_config *)0)->f)
#define KSTR(s, n, f, fl) {s, n, KEY_STRING, fl, offsetof(struct skvd_config, f), FIELD_SIZE(f), 0, 0, 0, 0}
#define KUINT(s, n, f, fl, lo, hi) {s, n, KEY_UINT, fl, offsetof(struct skvd_config, f), FIELD_SIZE(f), lo, hi, 0, 0}
#define KFRAC(s, n, f, lo, hi) {s, n, KEY_FRACTION, 0, offsetof(struct skvd_config, f), FIELD_SIZE(f), 0, 0, lo, hi}
#define KENUM(s, n, kind, f) {s, n, kind, 0, offsetof(struct skvd_config, f), FIELD_SIZE(f), 0, 0, 0, 0}

static const char *const sections[] = {"model", "engine", "server", "limits", "supervisor"};

/* In the order of etc/skvd.ini and skvd.ini(5). */
static const struct key keys[] = {
	KSTR("model", "path", model_path, KEY_NONEMPTY),
	KENUM("model", "swiftkv", KEY_SWIFTKV, swiftkv),
	KSTR("model", "name", model_name, 0),
	KSTR("model", "chat_template", chat_template, 0),

	KENUM("engine", "backend", KEY_BACKEND, backend),
	KENUM("engine", "devices", KEY_DEVICES, devices),
	KUINT("engine", "replicas", replicas, 0, 1, 64),
	KUINT("engine", "threads", threads, 0, 0, 4096),
	KUINT("engine", "max_batch_tokens", max_batch_tokens, 0, 16, 1u << 20),
	KUINT("engine", "mixed_batch_tokens", mixed_batch_tokens, KEY_ZERO, 16, 1u << 20),
	KENUM("engine", "admission", KEY_ADMISSION, admission),
	KUINT("engine", "max_seqs", max_seqs, 0, 1, 4096),
	KUINT("engine", "max_context", max_context, KEY_ZERO, 16, 1u << 20),
	KUINT("engine", "kv_cache_bytes", kv_bytes, KEY_SIZE | KEY_ZERO, 1ull << 20, 16ull << 40),
	KFRAC("engine", "kv_cache_fraction", kv_fraction, 0.05, 0.99),
	KUINT("engine", "block_size", block_size, KEY_POW2, 4, 256),

	KSTR("server", "socket", socket, KEY_NONEMPTY | KEY_ABSOLUTE),
	KSTR("server", "admin_socket", admin_socket, KEY_NONEMPTY | KEY_ABSOLUTE),
	KSTR("server", "allow_group", allow_group, KEY_GROUP),
	KSTR("server", "admin_group", admin_group, KEY_GROUP),
	KUINT("server", "max_clients", max_clients, 0, 1, 65536),
	KUINT("server", "max_sessions_per_uid", max_sessions_per_uid, 0, 1, 65536),
	KUINT("server", "max_in_flight", max_in_flight, 0, 1, 1024),
	KUINT("server", "queue_requests", queue_requests, 0, 1, 65536),
	KUINT("server", "queue_prompt_tokens", queue_prompt_tokens, 0, 1, 1ull << 32),

	KUINT("limits", "max_prompt_tokens", max_prompt_tokens, 0, 1, 1u << 20),
	KUINT("limits", "max_new_tokens", max_new_tokens, 0, 1, 1u << 20),
	KUINT("limits", "default_max_tokens", default_max_tokens, 0, 1, 1u << 20),
	KUINT("limits", "max_request_bytes", max_request_bytes, KEY_SIZE, 4096, 256u << 20),
	KUINT("limits", "request_timeout_ms", request_timeout_ms, 0, 0, 86400000),
	KUINT("limits", "max_stop", max_stop, 0, 0, 64),
	KUINT("limits", "max_stop_bytes", max_stop_bytes, 0, 1, 4096),

	KUINT("supervisor", "heartbeat_timeout_ms", heartbeat_timeout_ms, 0, 500, 600000),
	KUINT("supervisor", "stall_timeout_ms", stall_timeout_ms, 0, 1000, 86400000),
	KUINT("supervisor", "max_request_retries", max_request_retries, 0, 0, 10),
	KUINT("supervisor", "restart_backoff_ms", restart_backoff_ms, 0, 0, 600000),
	KUINT("supervisor", "restart_backoff_max_ms", restart_backoff_max_ms, 0, 0, 3600000),
	KUINT("supervisor", "drain_timeout_ms", drain_timeout_ms, 0, 0, 3600000),
};

#define N_KEYS SKV_ARRAY_SIZE(keys)

void skvd_config_defaults(struct skvd_config *c)
{
	memset(c, 0, sizeof(*c));
	skv_strscpy(c->model_path, "/var/lib/swiftkv/model", sizeof(c->model_path));
	c->swiftkv = -1;

	c->backend = SKVD_BACKEND_AUTO;
	c->n_devices = 0;
	c->replicas = 1;
	c->threads = 0;
	c->max_batch_tokens = 2048;
	c->mixed_batch_tokens = 0;
	c->admission = 0;
	c->max_seqs = 32;
	c->max_context = 0;
	c->kv_bytes = 0;
	c->kv_fraction = 0.9;
	c->block_size = 16;

	skv_strscpy(c->socket, SKVD_DEFAULT_SOCKET, sizeof(c->socket));
	skv_strscpy(c->admin_socket, SKVD_DEFAULT_ADMIN_SOCKET, sizeof(c->admin_socket));
	skv_strscpy(c->allow_group, "skv", sizeof(c->allow_group));
	skv_strscpy(c->admin_group, "skv-admin", sizeof(c->admin_group));
	c->max_clients = 256;
	c->max_sessions_per_uid = 64;
	c->max_in_flight = 32;
	c->queue_requests = 128;
	c->queue_prompt_tokens = 1u << 20;

	c->max_prompt_tokens = 131072;
	c->max_new_tokens = 4096;
	c->default_max_tokens = 512;
	c->max_request_bytes = 1u << 20;
	c->request_timeout_ms = 0;
	c->max_stop = 8;
	c->max_stop_bytes = 128;

	c->heartbeat_timeout_ms = 10000;
	c->stall_timeout_ms = 600000;
	c->max_request_retries = 2;
	c->restart_backoff_ms = 100;
	c->restart_backoff_max_ms = 30000;
	c->drain_timeout_ms = 30000;
}

const char *skvd_backend_name(enum skvd_backend b)
{
	switch (b) {
	case SKVD_BACKEND_AUTO:
		return "auto";
	case SKVD_BACKEND_CPU:
		return "cpu";
	case SKVD_BACKEND_CUDA:
		return "cuda";
	}
	return "?";
}

/* ---- values ---- */

/* "8G" for 8 << 30, "1536K", "1000": the largest suffix that divides v exactly. */
static void format_size(uint64_t v, char *buf, size_t len)
{
	static const char suffix[] = "KMGT";
	int s = -1;
	while (v && s < 3 && v % 1024 == 0) {
		v /= 1024;
		s++;
	}
	if (s < 0)
		snprintf(buf, len, "%llu", (unsigned long long)v);
	else
		snprintf(buf, len, "%llu%c", (unsigned long long)v, suffix[s]);
}

static void format_uint(const struct key *k, uint64_t v, char *buf, size_t len)
{
	if (k->flags & KEY_SIZE)
		format_size(v, buf, len);
	else
		snprintf(buf, len, "%llu", (unsigned long long)v);
}

/* Decimal digits only (no sign, no spaces, no hex), with an optional size suffix. */
static int parse_uint(const char *s, bool size, uint64_t *ret)
{
	uint64_t v = 0;
	const char *p = s;

	if (*p < '0' || *p > '9')
		return -EINVAL;
	for (; *p >= '0' && *p <= '9'; p++)
		if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, (uint64_t)(*p - '0'), &v))
			return -ERANGE;
	if (size && *p) {
		const char *suffixes = "KMGT", *at = strchr(suffixes, *p & ~0x20);
		if (!at || !*at || p[1])
			return -EINVAL;
		for (long i = 0; i <= at - suffixes; i++)
			if (__builtin_mul_overflow(v, 1024, &v))
				return -ERANGE;
		p++;
	}
	if (*p)
		return -EINVAL;
	*ret = v;
	return 0;
}

/* [0-9]+ or [0-9]*.[0-9]+ ; nothing strtod would also take (hex, inf, exponents, spaces). */
static int parse_fraction(const char *s, double *ret)
{
	size_t i = 0, digits = 0;
	while (s[i] >= '0' && s[i] <= '9')
		i++, digits++;
	if (s[i] == '.') {
		i++;
		while (s[i] >= '0' && s[i] <= '9')
			i++, digits++;
	}
	if (s[i] || !digits || i > 32)
		return -EINVAL;
	*ret = strtod(s, NULL);
	return 0;
}

static bool valid_group_name(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > GROUP_NAME_MAX)
		return false;
	if (!((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z') || s[0] == '_'))
		return false;
	for (size_t i = 1; i < n; i++) {
		char c = s[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
			  c == '-' || c == '.' || (c == '$' && i == n - 1);
		if (!ok)
			return false;
	}
	return true;
}

/* ---- the parser ---- */

struct parser {
	const char *name; /* the file, for messages */
	const char *data;
	size_t size, pos;
	unsigned line; /* of the line last handed to inih */
	struct skvd_config cfg;
	unsigned seen[N_KEYS]; /* line each key was set on, 0 when not set */
	bool failed;
	unsigned err_line;
	struct skv_err *err;
	int code;
};

/* Records the first error (by line) and returns its code. k may be NULL. */
static int fail(struct parser *p, unsigned line, const struct key *k, int code, const char *fmt, ...) SKV_PRINTF(5, 6);
static int fail(struct parser *p, unsigned line, const struct key *k, int code, const char *fmt, ...)
{
	char reason[512], where[128];
	va_list ap;

	if (p->failed && (!line || !p->err_line || p->err_line <= line))
		return p->code;
	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	if (line)
		snprintf(where, sizeof(where), ":%u", line);
	else
		where[0] = '\0';
	if (k)
		skv_err_set(p->err, code, "%s%s: [%s] %s: %s", p->name, where, k->section, k->name, reason);
	else
		skv_err_set(p->err, code, "%s%s: %s", p->name, where, reason);
	p->failed = true;
	p->err_line = line;
	p->code = code;
	return code;
}

static const struct key *find_key(const char *section, const char *name)
{
	for (size_t i = 0; i < N_KEYS; i++)
		if (!strcmp(keys[i].section, section) && !strcmp(keys[i].name, name))
			return &keys[i];
	return NULL;
}

static bool known_section(const char *s, size_t n)
{
	for (size_t i = 0; i < SKV_ARRAY_SIZE(sections); i++)
		if (strlen(sections[i]) == n && !memcmp(sections[i], s, n))
			return true;
	return false;
}

static void section_keys(const char *section, char *buf, size_t len)
{
	size_t off = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < N_KEYS && off < len; i++) {
		if (strcmp(keys[i].section, section))
			continue;
		int n = snprintf(buf + off, len - off, "%s%s", off ? ", " : "", keys[i].name);
		if (n < 0)
			break;
		off += (size_t)n;
	}
}

static int set_devices(struct parser *p, const struct key *k, const char *v)
{
	int devs[SKVD_MAX_DEVICES];
	uint32_t n = 0;
	const char *s = v;

	if (!strcasecmp(v, "all")) {
		memset(p->cfg.devices, 0, sizeof(p->cfg.devices));
		p->cfg.n_devices = 0;
		return 0;
	}
	for (;;) {
		uint64_t lo, hi;
		char item[32];
		size_t len = strcspn(s, ",");
		const char *a = s, *b = s + len;
		while (a < b && (*a == ' ' || *a == '\t'))
			a++;
		while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
			b--;
		if (a == b)
			return fail(p, p->line, k, -EINVAL, "\"%s\": an empty item; write all, or device numbers and ranges such as 0,1 or 0-3", v);
		if ((size_t)(b - a) >= sizeof(item))
			return fail(p, p->line, k, -EINVAL, "\"%.*s\" is not a device number", (int)(b - a), a);
		memcpy(item, a, (size_t)(b - a));
		item[b - a] = '\0';
		char *dash = strchr(item, '-');
		if (dash)
			*dash = '\0';
		if (parse_uint(item, false, &lo) < 0 || (dash && parse_uint(dash + 1, false, &hi) < 0)) {
			if (dash)
				*dash = '-';
			return fail(p, p->line, k, -EINVAL, "\"%s\" is not a device number or range (such as 2 or 0-3)", item);
		}
		if (!dash)
			hi = lo;
		if (hi > DEVICE_MAX || lo > DEVICE_MAX)
			return fail(p, p->line, k, -ERANGE, "device %llu is out of range (0 to %d)",
				    (unsigned long long)SKV_MAX(lo, hi), DEVICE_MAX);
		if (hi < lo)
			return fail(p, p->line, k, -EINVAL, "the range %llu-%llu runs backwards", (unsigned long long)lo,
				    (unsigned long long)hi);
		for (uint64_t d = lo; d <= hi; d++) {
			for (uint32_t j = 0; j < n; j++)
				if (devs[j] == (int)d)
					return fail(p, p->line, k, -EINVAL, "device %llu is listed twice", (unsigned long long)d);
			if (n == SKVD_MAX_DEVICES)
				return fail(p, p->line, k, -E2BIG, "more than %d devices", SKVD_MAX_DEVICES);
			devs[n++] = (int)d;
		}
		if (!s[len])
			break;
		s += len + 1;
	}
	memset(p->cfg.devices, 0, sizeof(p->cfg.devices));
	memcpy(p->cfg.devices, devs, n * sizeof(devs[0]));
	p->cfg.n_devices = n;
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
	case KEY_STRING:
		if (len >= k->size)
			return fail(p, p->line, k, -ENAMETOOLONG, "the value is %zu bytes long; at most %zu fit", len,
				    k->size - 1);
		if ((k->flags & KEY_NONEMPTY) && !len)
			return fail(p, p->line, k, -EINVAL, "must not be empty");
		/* a value that starts like a comment reads back as one once written out with the
		 * usual " = " (and confuses people reading the file): refused */
		if (len && (v[0] == ';' || v[0] == '#'))
			return fail(p, p->line, k, -EINVAL, "a value must not start with '%c' (it reads as a comment)",
				    v[0]);
		if ((k->flags & KEY_ABSOLUTE) && v[0] != '/')
			return fail(p, p->line, k, -EINVAL, "\"%s\" is not an absolute path", v);
		if ((k->flags & KEY_GROUP) && len && !valid_group_name(v))
			return fail(p, p->line, k, -EINVAL,
				    "\"%s\" is not a valid group name (letters, digits, '_', '-' and '.', "
				    "not starting with a digit, at most %d bytes), nor empty",
				    v, GROUP_NAME_MAX);
		memset(field, 0, k->size);
		memcpy(field, v, len);
		return 0;

	case KEY_UINT: {
		uint64_t x;
		char lo[32], hi[32], got[32];
		int r = parse_uint(v, k->flags & KEY_SIZE, &x);
		if (r == -EINVAL)
			return fail(p, p->line, k, r,
				    k->flags & KEY_SIZE ? "\"%s\" is not a size (a whole number of bytes, with an "
							  "optional K, M, G or T suffix, as in 8G)"
							: "\"%s\" is not a whole number",
				    v);
		format_uint(k, k->min, lo, sizeof(lo));
		format_uint(k, k->max, hi, sizeof(hi));
		if (r == -ERANGE || x > k->max || (x < k->min && !(x == 0 && (k->flags & KEY_ZERO)))) {
			if (r == -ERANGE)
				snprintf(got, sizeof(got), "%.24s", v);
			else
				format_uint(k, x, got, sizeof(got));
			return fail(p, p->line, k, -ERANGE, "%s is out of range (%s%s to %s)", got,
				    k->flags & KEY_ZERO ? "0, or " : "", lo, hi);
		}
		if ((k->flags & KEY_POW2) && (x & (x - 1)))
			return fail(p, p->line, k, -EINVAL, "%llu is not a power of two (%s, %llu, ..., %s)",
				    (unsigned long long)x, lo, (unsigned long long)k->min * 2, hi);
		if (k->size == sizeof(uint32_t)) {
			uint32_t x32 = (uint32_t)x;
			memcpy(field, &x32, sizeof(x32));
		} else {
			memcpy(field, &x, sizeof(x));
		}
		return 0;
	}

	case KEY_FRACTION: {
		double x;
		if (parse_fraction(v, &x) < 0)
			return fail(p, p->line, k, -EINVAL, "\"%s\" is not a decimal number (such as 0.9)", v);
		if (!(x >= k->dmin && x <= k->dmax))
			return fail(p, p->line, k, -ERANGE, "%s is out of range (%g to %g)", v, k->dmin, k->dmax);
		memcpy(field, &x, sizeof(x));
		return 0;
	}

	case KEY_SWIFTKV: {
		int x;
		if (!strcasecmp(v, "on") || !strcasecmp(v, "yes") || !strcasecmp(v, "true") || !strcmp(v, "1"))
			x = 1;
		else if (!strcasecmp(v, "off") || !strcasecmp(v, "no") || !strcasecmp(v, "false") || !strcmp(v, "0"))
			x = 0;
		else if (!strcasecmp(v, "auto"))
			x = -1;
		else
			return fail(p, p->line, k, -EINVAL, "\"%s\" is not one of on, off, auto", v);
		memcpy(field, &x, sizeof(x));
		return 0;
	}

	case KEY_BACKEND: {
		enum skvd_backend b;
		if (!strcasecmp(v, "auto"))
			b = SKVD_BACKEND_AUTO;
		else if (!strcasecmp(v, "cpu"))
			b = SKVD_BACKEND_CPU;
		else if (!strcasecmp(v, "cuda"))
			b = SKVD_BACKEND_CUDA;
		else
			return fail(p, p->line, k, -EINVAL, "\"%s\" is not one of auto, cpu, cuda", v);
		memcpy(field, &b, sizeof(b));
		return 0;
	}

	case KEY_DEVICES:
		return set_devices(p, k, v);

	case KEY_ADMISSION: {
		int a;
		if (!strcasecmp(v, "eager"))
			a = 0;
		else if (!strcasecmp(v, "reserve"))
			a = 1;
		else
			return fail(p, p->line, k, -EINVAL, "\"%s\" is not one of eager, reserve", v);
		memcpy(field, &a, sizeof(a));
		return 0;
	}
	}
	return fail(p, p->line, k, -EINVAL, "internal error: unknown key kind");
}

static int on_key(void *user, const char *section, const char *name, const char *value)
{
	struct parser *p = user;
	const struct key *k;
	size_t idx;

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
	if (!*name) {
		fail(p, p->line, NULL, -EINVAL, "[%s]: a line with no key before its '='", section);
		return 0;
	}
	k = find_key(section, name);
	if (!k) {
		char list[512];
		section_keys(section, list, sizeof(list));
		fail(p, p->line, NULL, -EINVAL, "[%s] %s: unknown key ([%s] has %s)", section, name, section, list);
		return 0;
	}
	idx = (size_t)(k - keys);
	if (p->seen[idx]) {
		fail(p, p->line, k, -EINVAL, "set twice (first on line %u)", p->seen[idx]);
		return 0;
	}
	p->seen[idx] = p->line;
	return set_value(p, k, value) == 0;
}

/* inih would accept "[ model ]" as a section called " model ", text after the ']', and a
 * section with no keys (its handler never hears of those). Checked here, before inih sees the
 * line. Returns 0 or a negative errno (recorded). */
static int check_section_line(struct parser *p, const char *line)
{
	const char *s = line, *end;

	while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\v' || *s == '\f')
		s++;
	if (p->line == 1 && (unsigned char)s[0] == 0xef && (unsigned char)s[1] == 0xbb && (unsigned char)s[2] == 0xbf)
		s += 3;
	if (*s != '[')
		return 0;
	end = strchr(s, ']');
	if (!end)
		return fail(p, p->line, NULL, -EINVAL, "a [section] line without its closing ']'");
	int name_len = (int)SKV_MIN(end - s - 1, 64);
	if (!known_section(s + 1, (size_t)(end - s - 1)))
		return fail(p, p->line, NULL, -EINVAL,
			    "unknown section [%.*s] (the sections are [model], [engine], [server], [limits] and "
			    "[supervisor])",
			    name_len, s + 1);
	for (end++; *end == ' ' || *end == '\t' || *end == '\r' || *end == '\n'; end++)
		;
	if (*end && *end != ';' && *end != '#')
		return fail(p, p->line, NULL, -EINVAL, "text after the [%.*s] header", name_len, s + 1);
	return 0;
}

/* One line per call, so that p->line is the line inih is working on. */
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

/* What inih keeps of a line: its buffer is ini_max_line bytes for the text, '\r', '\n', '\0'. */
static size_t max_line_bytes(void)
{
	return ini_max_line > 8 ? (size_t)ini_max_line - 3 : 5;
}

static int check_lines(struct parser *p)
{
	size_t max = max_line_bytes(), start = 0;
	unsigned line = 0;

	if (p->size > CONFIG_MAX_BYTES)
		return fail(p, 0, NULL, -EFBIG, "%zu bytes; a configuration file has at most %u", p->size, CONFIG_MAX_BYTES);
	while (start < p->size) {
		const char *s = p->data + start;
		const char *nl = memchr(s, '\n', p->size - start);
		size_t len = nl ? (size_t)(nl - s) : p->size - start;
		const char *nul = memchr(s, '\0', len);
		line++;
		if (nul)
			return fail(p, line, NULL, -EINVAL, "a NUL byte at column %zu: this is not a text file",
				    (size_t)(nul - s) + 1);
		if (len && s[len - 1] == '\r')
			len--;
		if (len > max)
			return fail(p, line, NULL, -E2BIG,
				    "the line is %zu bytes long; at most %zu are allowed, since inih would cut it "
				    "(shorten it, or split a comment over two lines)",
				    len, max);
		start += (nl ? (size_t)(nl - s) + 1 : len);
		if (!nl)
			break;
	}
	return 0;
}

static void describe_syntax_error(struct parser *p, unsigned line)
{
	const char *s = p->data, *end = p->data + p->size;
	for (unsigned l = 1; l < line && s < end; l++) {
		const char *nl = memchr(s, '\n', (size_t)(end - s));
		s = nl ? nl + 1 : end;
	}
	while (s < end && (*s == ' ' || *s == '\t'))
		s++;
	if (s < end && *s == '[')
		fail(p, line, NULL, -EINVAL, "a [section] line without its closing ']'");
	else
		fail(p, line, NULL, -EINVAL, "expected \"key = value\", a [section] or a comment");
}

static uint64_t get_uint(const struct skvd_config *c, const struct key *k)
{
	const char *field = (const char *)c + k->offset;
	if (k->size == sizeof(uint32_t)) {
		uint32_t x;
		memcpy(&x, field, sizeof(x));
		return x;
	}
	uint64_t x;
	memcpy(&x, field, sizeof(x));
	return x;
}

/* A key relation a <= b; the message names the key set last. */
static int check_le(struct parser *p, const char *sa, const char *na, const char *sb, const char *nb)
{
	const struct key *a = find_key(sa, na), *b = find_key(sb, nb);
	uint64_t va = get_uint(&p->cfg, a), vb = get_uint(&p->cfg, b);
	unsigned la = p->seen[a - keys], lb = p->seen[b - keys];
	char ta[32], tb[32];

	if (va <= vb)
		return 0;
	format_uint(a, va, ta, sizeof(ta));
	format_uint(b, vb, tb, sizeof(tb));
	if (lb > la)
		return fail(p, lb, b, -EINVAL, "%s is less than [%s] %s (%s)", tb, sa, na, ta);
	return fail(p, la, a, -EINVAL, "%s is more than [%s] %s (%s)", ta, sb, nb, tb);
}

static int check_relations(struct parser *p)
{
	int r;
	if ((r = check_le(p, "limits", "default_max_tokens", "limits", "max_new_tokens")) < 0 ||
	    (r = check_le(p, "supervisor", "restart_backoff_ms", "supervisor", "restart_backoff_max_ms")) < 0 ||
	    (r = check_le(p, "limits", "max_prompt_tokens", "server", "queue_prompt_tokens")) < 0 ||
	    (r = check_le(p, "server", "max_sessions_per_uid", "server", "max_clients")) < 0 ||
	    (r = check_le(p, "engine", "mixed_batch_tokens", "engine", "max_batch_tokens")) < 0)
		return r;
	if (!strcmp(p->cfg.socket, p->cfg.admin_socket)) {
		const struct key *a = find_key("server", "socket"), *b = find_key("server", "admin_socket");
		unsigned la = p->seen[a - keys], lb = p->seen[b - keys];
		return lb >= la ? fail(p, lb, b, -EINVAL, "the same path as [server] socket")
				: fail(p, la, a, -EINVAL, "the same path as [server] admin_socket");
	}
	return 0;
}

int skvd_config_parse(const char *data, size_t size, const char *name, struct skvd_config *ret,
		      struct skv_err *err)
{
	static char start_comments[] = ";#", inline_comments[] = ";";
	struct parser p = {.name = name ? name : "(config)", .data = data, .size = size, .err = err};
	int r;

	skvd_config_defaults(&p.cfg);
	r = check_lines(&p);
	if (r < 0)
		return r;

	/* Debian's inih makes its compile-time options runtime globals: set every one that changes
	 * what a file means, every time. ini_max_line and the buffer options stay as built. */
	ini_allow_multiline = false;
	ini_allow_bom = true;
	ini_allow_inline_comments = true;
	ini_inline_comment_prefixes = inline_comments;
	ini_start_comment_prefixes = start_comments;
	ini_stop_on_first_error = true;
	ini_allow_no_value = false;

	int n = ini_parse_stream(read_line, &p, on_key, &p);
	if (n > 0 && (!p.failed || (p.err_line && (unsigned)n < p.err_line)))
		describe_syntax_error(&p, (unsigned)n);
	else if (n < 0 && !p.failed)
		fail(&p, 0, NULL, -ENOMEM, "inih failed (%d)", n);
	if (p.failed)
		return p.code;
	r = check_relations(&p);
	if (r < 0)
		return r;
	memcpy(ret, &p.cfg, sizeof(*ret)); /* padding too: callers may memcmp */
	return 0;
}

int skvd_config_load(const char *path, struct skvd_config *ret, struct skv_err *err)
{
	_cleanup_close_ int fd = -1;
	_cleanup_free_ char *buf = NULL;
	size_t len = 0;
	struct stat st;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return skv_err_set(err, -errno, "%s: cannot open: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0)
		return skv_err_set(err, -errno, "%s: %s", path, strerror(errno));
	if (S_ISDIR(st.st_mode))
		return skv_err_set(err, -EISDIR, "%s: a directory, not a configuration file", path);
	buf = malloc(CONFIG_MAX_BYTES + 1);
	if (!buf)
		return skv_err_set(err, -ENOMEM, "%s: out of memory", path);
	while (len < CONFIG_MAX_BYTES + 1) {
		ssize_t n = read(fd, buf + len, CONFIG_MAX_BYTES + 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return skv_err_set(err, -errno, "%s: cannot read: %s", path, strerror(errno));
		if (n == 0)
			break;
		len += (size_t)n;
	}
	return skvd_config_parse(buf, len, path, ret, err);
}

/* ---- writing ---- */

static void format_fraction(double x, char *buf, size_t len)
{
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(buf, len, "%.*f", prec, x);
		if (strtod(buf, NULL) == x)
			break;
	}
	/* drop trailing zeros, keep one digit after the point */
	size_t n = strlen(buf);
	while (n > 2 && buf[n - 1] == '0' && buf[n - 2] != '.')
		buf[--n] = '\0';
}

int skvd_config_write(const struct skvd_config *c, FILE *f)
{
	const char *section = "";

	for (size_t i = 0; i < N_KEYS; i++) {
		const struct key *k = &keys[i];
		const char *field = (const char *)c + k->offset;
		char val[SKVD_PATH_MAX + 16];

		if (strcmp(section, k->section)) {
			fprintf(f, "%s[%s]\n", i ? "\n" : "", k->section);
			section = k->section;
		}
		switch (k->kind) {
		case KEY_STRING:
			snprintf(val, sizeof(val), "%.*s", (int)strnlen(field, k->size), field);
			break;
		case KEY_UINT:
			format_uint(k, get_uint(c, k), val, sizeof(val));
			break;
		case KEY_FRACTION:
			format_fraction(c->kv_fraction, val, sizeof(val));
			break;
		case KEY_SWIFTKV:
			snprintf(val, sizeof(val), "%s", c->swiftkv < 0 ? "auto" : c->swiftkv ? "on" : "off");
			break;
		case KEY_BACKEND:
			snprintf(val, sizeof(val), "%s", skvd_backend_name(c->backend));
			break;
		case KEY_ADMISSION:
			snprintf(val, sizeof(val), "%s", c->admission ? "reserve" : "eager");
			break;
		case KEY_DEVICES: {
			size_t off = 0;
			if (!c->n_devices)
				snprintf(val, sizeof(val), "all");
			for (uint32_t d = 0; d < c->n_devices && d < SKVD_MAX_DEVICES && off < sizeof(val); d++) {
				int n = snprintf(val + off, sizeof(val) - off, "%s%d", d ? "," : "", c->devices[d]);
				off += n > 0 ? (size_t)n : 0;
			}
			break;
		}
		}
		/* "key = value", but "key=value" where the spaces would make the line longer than
		 * skvd reads (a 191-byte path) */
		if (!val[0])
			fprintf(f, "%s =\n", k->name);
		else if (strlen(k->name) + 3 + strlen(val) > max_line_bytes())
			fprintf(f, "%s=%s\n", k->name, val);
		else
			fprintf(f, "%s = %s\n", k->name, val);
	}
	return ferror(f) ? -EIO : 0;
}
