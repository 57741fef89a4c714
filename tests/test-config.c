/* test-config.c: skvd.ini (daemon/config.c). The shipped file is the defaults, every key parses,
 * and every kind of bad file is rejected with FILE:LINE and the key in the message, leaving the
 * caller's configuration untouched (what a reload relies on). Files go through the real
 * skvd_config_load, from a temporary directory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "test-util.h"

static char *dir;

static int setup(void **state)
{
	(void)state;
	dir = tu_tmpdir();
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	tu_rmdir(dir);
	free(dir);
	return 0;
}

static char *path_of(const char *name)
{
	char *p = NULL;
	assert_true(asprintf(&p, "%s/%s", dir, name) > 0);
	return p;
}

static int load_text(const char *text, size_t len, struct skvd_config *c, struct skv_err *err)
{
	char *p = path_of("t.ini");
	tu_write(p, text, len);
	int r = skvd_config_load(p, c, err);
	free(p);
	return r;
}

/* The configuration as text, every key: comparing two of these compares every field. */
static char *dump(const struct skvd_config *c)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	assert_non_null(f);
	assert_int_equal(skvd_config_write(c, f), 0);
	assert_int_equal(fclose(f), 0);
	return buf;
}

static void assert_same_config(const struct skvd_config *a, const struct skvd_config *b)
{
	char *ta = dump(a), *tb = dump(b);
	assert_string_equal(ta, tb);
	free(ta);
	free(tb);
	assert_memory_equal(a, b, sizeof(*a));
}

static const char *srcdir(void)
{
	const char *s = getenv("SKV_SRCDIR");
	if (!s) {
		fprintf(stderr, "test: SKV_SRCDIR is not set (run through meson test)\n");
		exit(77);
	}
	return s;
}

/* ---- the shipped file and the documentation ---- */

static void test_shipped_is_defaults(void **state)
{
	(void)state;
	struct skvd_config def, c;
	struct skv_err err = {0};
	char *p = NULL;

	assert_true(asprintf(&p, "%s/etc/skvd.ini", srcdir()) > 0);
	skvd_config_defaults(&def);
	memset(&c, 0x5a, sizeof(c));
	if (skvd_config_load(p, &c, &err) < 0)
		fail_msg("%s", err.msg);
	assert_same_config(&c, &def);

	/* every key is set in it, and documented in skvd.ini(5) */
	char *shipped = tu_slurp(p, NULL), *man = NULL, *mp = NULL;
	assert_true(asprintf(&mp, "%s/docs/man/skvd.ini.5", srcdir()) > 0);
	man = tu_slurp(mp, NULL);
	char *keys = dump(&def), *save = NULL;
	unsigned n = 0;
	for (char *line = strtok_r(keys, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (line[0] == '[') {
			char want[64];
			snprintf(want, sizeof(want), "\n%s\n", line);
			if (!strstr(shipped, want))
				fail_msg("etc/skvd.ini has no %s section", line);
			continue;
		}
		char key[64], want[80];
		assert_int_equal(sscanf(line, "%63[a-z_] =", key), 1);
		snprintf(want, sizeof(want), "\n%s = ", key);
		char want_empty[80];
		snprintf(want_empty, sizeof(want_empty), "\n%s =\n", key);
		if (!strstr(shipped, want) && !strstr(shipped, want_empty))
			fail_msg("etc/skvd.ini does not set %s", key);
		snprintf(want, sizeof(want), "\n.B %s\n", key);
		if (!strstr(man, want))
			fail_msg("skvd.ini(5) does not document %s (as \".B %s\")", key, key);
		n++;
	}
	assert_int_equal(n, 38);
	free(keys);
	free(shipped);
	free(man);
	free(mp);
	free(p);
}

static void test_defaults(void **state)
{
	(void)state;
	struct skvd_config c;
	skvd_config_defaults(&c);
	assert_string_equal(c.socket, SKVD_DEFAULT_SOCKET);
	assert_string_equal(c.admin_socket, SKVD_DEFAULT_ADMIN_SOCKET);
	assert_int_equal(c.backend, SKVD_BACKEND_AUTO);
	assert_int_equal(c.swiftkv, -1);
	assert_int_equal(c.n_devices, 0);
	assert_true(c.default_max_tokens <= c.max_new_tokens);
	assert_true(c.restart_backoff_ms <= c.restart_backoff_max_ms);
	assert_true(c.max_prompt_tokens <= c.queue_prompt_tokens);
	assert_true(c.max_sessions_per_uid <= c.max_clients / 2); /* well under: one uid cannot take them all */
	/* the promises: a hung worker is replaced within 15 s, a dead one serves within 2 s */
	assert_true(c.heartbeat_timeout_ms <= 12000);
	assert_true(c.restart_backoff_ms <= 500);
	assert_string_equal(skvd_backend_name(SKVD_BACKEND_CPU), "cpu");
	assert_string_equal(skvd_backend_name(SKVD_BACKEND_CUDA), "cuda");
	assert_string_equal(skvd_backend_name(SKVD_BACKEND_AUTO), "auto");
	/* an empty file is the defaults too */
	struct skvd_config e, d;
	struct skv_err err = {0};
	skvd_config_defaults(&d);
	assert_int_equal(load_text("", 0, &e, &err), 0);
	assert_same_config(&e, &d);
}

/* ---- every key ---- */

static const char every_key[] =
	"; every key, none at its default\n"
	"[model]\n"
	"path = /srv/models/llama-3.1-8b-swiftkv\n"
	"swiftkv = off\n"
	"name = llama-3.1-8b\n"
	"\n"
	"[engine]\n"
	"backend = cuda\n"
	"devices = 0, 2-4 ,7\n"
	"replicas = 4\n"
	"threads = 12\n"
	"max_batch_tokens = 8192\n"
	"mixed_batch_tokens = 1024\n"
	"admission = reserve\n"
	"max_seqs = 256\n"
	"max_context = 32768\n"
	"kv_cache_bytes = 8G\n"
	"kv_cache_fraction = 0.85\n"
	"block_size = 32\n"
	"[server]\n"
	"socket = /tmp/skv/c.sock\n"
	"admin_socket = /tmp/skv/a.sock\n"
	"allow_group = llm-users\n"
	"admin_group =\n"
	"max_clients = 1000\n"
	"max_sessions_per_uid = 100\n"
	"max_in_flight = 7\n"
	"queue_requests = 999\n"
	"queue_prompt_tokens = 4000000\n"
	"[limits]\n"
	"max_prompt_tokens = 100000\n"
	"max_new_tokens = 2000\n"
	"default_max_tokens = 100\n"
	"max_request_bytes = 4M\n"
	"request_timeout_ms = 600000\n"
	"max_stop = 3\n"
	"max_stop_bytes = 64\n"
	"[supervisor]\n"
	"heartbeat_timeout_ms = 5000\n"
	"restart_backoff_ms = 250\n"
	"restart_backoff_max_ms = 60000\n"
	"drain_timeout_ms = 45000\n"
	"stall_timeout_ms = 120000\n"
	"max_request_retries = 0\n";

static void check_every_key(const struct skvd_config *c)
{
	assert_string_equal(c->model_path, "/srv/models/llama-3.1-8b-swiftkv");
	assert_int_equal(c->swiftkv, 0);
	assert_string_equal(c->model_name, "llama-3.1-8b");
	assert_int_equal(c->backend, SKVD_BACKEND_CUDA);
	assert_int_equal(c->n_devices, 5);
	int want[] = {0, 2, 3, 4, 7};
	for (int i = 0; i < 5; i++)
		assert_int_equal(c->devices[i], want[i]);
	assert_int_equal(c->replicas, 4);
	assert_int_equal(c->threads, 12);
	assert_int_equal(c->max_batch_tokens, 8192);
	assert_int_equal(c->mixed_batch_tokens, 1024);
	assert_int_equal(c->admission, 1);
	assert_int_equal(c->max_seqs, 256);
	assert_int_equal(c->max_context, 32768);
	assert_int_equal(c->kv_bytes, 8ull << 30);
	assert_true(c->kv_fraction == 0.85);
	assert_int_equal(c->block_size, 32);
	assert_string_equal(c->socket, "/tmp/skv/c.sock");
	assert_string_equal(c->admin_socket, "/tmp/skv/a.sock");
	assert_string_equal(c->allow_group, "llm-users");
	assert_string_equal(c->admin_group, "");
	assert_int_equal(c->max_clients, 1000);
	assert_int_equal(c->max_sessions_per_uid, 100);
	assert_int_equal(c->max_in_flight, 7);
	assert_int_equal(c->queue_requests, 999);
	assert_int_equal(c->queue_prompt_tokens, 4000000);
	assert_int_equal(c->max_prompt_tokens, 100000);
	assert_int_equal(c->max_new_tokens, 2000);
	assert_int_equal(c->default_max_tokens, 100);
	assert_int_equal(c->max_request_bytes, 4u << 20);
	assert_int_equal(c->request_timeout_ms, 600000);
	assert_int_equal(c->max_stop, 3);
	assert_int_equal(c->max_stop_bytes, 64);
	assert_int_equal(c->heartbeat_timeout_ms, 5000);
	assert_int_equal(c->stall_timeout_ms, 120000);
	assert_int_equal(c->max_request_retries, 0);
	assert_int_equal(c->restart_backoff_ms, 250);
	assert_int_equal(c->restart_backoff_max_ms, 60000);
	assert_int_equal(c->drain_timeout_ms, 45000);
}

static void test_every_key(void **state)
{
	(void)state;
	struct skvd_config c, back;
	struct skv_err err = {0};

	if (load_text(every_key, strlen(every_key), &c, &err) < 0)
		fail_msg("%s", err.msg);
	check_every_key(&c);

	/* written out and read back: the same configuration */
	char *text = dump(&c);
	if (load_text(text, strlen(text), &back, &err) < 0)
		fail_msg("%s\n%s", err.msg, text);
	assert_same_config(&back, &c);
	free(text);
}

/* Spellings that mean the same thing. */
static void test_spellings(void **state)
{
	(void)state;
	static const struct {
		const char *text;
		const char *expect; /* a line of the dump */
	} cases[] = {
		{"[model]\nswiftkv = ON\n", "swiftkv = on"},
		{"[model]\nswiftkv = yes\n", "swiftkv = on"},
		{"[model]\nswiftkv = true\n", "swiftkv = on"},
		{"[model]\nswiftkv = 1\n", "swiftkv = on"},
		{"[model]\nswiftkv = no\n", "swiftkv = off"},
		{"[model]\nswiftkv = 0\n", "swiftkv = off"},
		{"[model]\nswiftkv = Auto\n", "swiftkv = auto"},
		{"[engine]\nbackend = CPU\n", "backend = cpu"},
		{"[engine]\ndevices = ALL\n", "devices = all"},
		{"[engine]\ndevices = 3\n", "devices = 3"},
		{"[engine]\ndevices = 0-15\n", "devices = 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15"},
		{"[engine]\nkv_cache_bytes = 1536k\n", "kv_cache_bytes = 1536K"},
		{"[engine]\nkv_cache_bytes = 1048576\n", "kv_cache_bytes = 1M"},
		{"[engine]\nkv_cache_bytes = 16T\n", "kv_cache_bytes = 16T"},
		{"[engine]\nkv_cache_bytes = 0\n", "kv_cache_bytes = 0"},
		{"[engine]\nkv_cache_bytes = 2000001\n", "kv_cache_bytes = 2000001"},
		{"[engine]\nkv_cache_fraction = .5\n", "kv_cache_fraction = 0.5"},
		{"[engine]\nkv_cache_fraction = 0.123456789\n", "kv_cache_fraction = 0.123456789"},
		{"[engine]\nblock_size = 4\n", "block_size = 4"},
		{"[engine]\nblock_size = 256\n", "block_size = 256"},
		{"[engine]\nmax_context = 0\n", "max_context = 0"},
		{"[limits]\nmax_request_bytes = 4096\n", "max_request_bytes = 4K"},
		/* comments, blank lines, BOM, CRLF, indentation, inline ';' comments */
		{"\xef\xbb\xbf[engine]\r\nreplicas = 3\r\n", "replicas = 3"},
		{"# hash\n; semicolon\n\n   \n[engine]\n  replicas = 5 ; five\n", "replicas = 5"},
		{"[engine] ; the engine\nreplicas=6\n", "replicas = 6"},
		{"[engine]\nreplicas = 7", "replicas = 7"},
		{"[model]\nname = a;b\n", "name = a;b"},
		{"[server]\nallow_group =\n", "allow_group ="},
		{"[server]\nallow_group = _svc$\n", "allow_group = _svc$"},
		/* repeating a section header is harmless */
		{"[engine]\nreplicas = 2\n[model]\n[engine]\nthreads = 3\n", "threads = 3"},
	};
	for (size_t i = 0; i < SKV_ARRAY_SIZE(cases); i++) {
		struct skvd_config c;
		struct skv_err err = {0};
		if (load_text(cases[i].text, strlen(cases[i].text), &c, &err) < 0)
			fail_msg("case %zu rejected: %s", i, err.msg);
		char *d = dump(&c), want[160];
		snprintf(want, sizeof(want), "\n%s\n", cases[i].expect);
		if (!strstr(d, want))
			fail_msg("case %zu: no \"%s\" in\n%s", i, cases[i].expect, d);
		free(d);
	}
}

/* ---- bad files ---- */

struct bad {
	const char *text;
	unsigned line;	    /* 0: the message has no line */
	const char *key;    /* "[section] key", or NULL */
	const char *reason; /* a piece of the message */
};

static void expect_bad_len(const char *text, size_t len, unsigned line, const char *key, const char *reason)
{
	struct skvd_config c, before;
	struct skv_err err = {0};
	char *p = path_of("bad.ini"), want[512];

	tu_write(p, text, len);
	memset(&c, 0xa5, sizeof(c));
	memcpy(&before, &c, sizeof(c));
	int r = skvd_config_load(p, &c, &err);
	if (r == 0)
		fail_msg("accepted:\n%.300s", text);
	assert_true(r < 0);
	assert_int_equal(err.code, r);
	assert_memory_equal(&c, &before, sizeof(c)); /* untouched */
	if (line)
		snprintf(want, sizeof(want), "%s:%u: %s%s", p, line, key ? key : "", key ? ": " : "");
	else
		snprintf(want, sizeof(want), "%s: ", p);
	if (strncmp(err.msg, want, strlen(want)))
		fail_msg("message \"%s\" does not start with \"%s\"", err.msg, want);
	if (reason && !strstr(err.msg, reason))
		fail_msg("message \"%s\" lacks \"%s\"", err.msg, reason);
	free(p);
}

static void expect_bad(const struct bad *b)
{
	expect_bad_len(b->text, strlen(b->text), b->line, b->key, b->reason);
}

static void test_bad_files(void **state)
{
	(void)state;
	static const struct bad cases[] = {
		/* syntax */
		{"[model]\npath = /x\nthis is not a key\n", 3, NULL, "expected \"key = value\""},
		{"[model\npath = /x\n", 1, NULL, "closing ']'"},
		{"[engine]\nreplicas = 2\n  and more\n", 3, NULL, "expected"}, /* no continuation lines */
		{"[engine]\n= 2\n", 2, NULL, "no key"},
		{"path = /x\n[model]\n", 1, NULL, "before any [section]"},
		{"[model] path = /x\n", 1, NULL, "text after the [model] header"},
		/* unknown sections and keys */
		{"[model]\n\n[modle]\npath = /x\n", 3, NULL, "unknown section [modle]"},
		{"[engine]\n[gpu]\n", 2, NULL, "unknown section [gpu]"}, /* a section with no keys */
		{"[ model ]\npath = /x\n", 1, NULL, "unknown section [ model ]"},
		{"[engine]\nreplica = 2\n", 2, NULL, "[engine] replica: unknown key ([engine] has backend, devices"},
		{"[engine]\nBackend = cpu\n", 2, NULL, "unknown key"},
		{"[model]\nreplicas = 2\n", 2, NULL, "[model] replicas: unknown key"},
		/* duplicates */
		{"[engine]\nreplicas = 2\n\nreplicas = 3\n", 4, "[engine] replicas", "set twice (first on line 2)"},
		{"[engine]\nreplicas = 2\n[server]\n[engine]\nreplicas = 2\n", 5, "[engine] replicas", "set twice"},
		/* out of range */
		{"[engine]\nreplicas = 0\n", 2, "[engine] replicas", "0 is out of range (1 to 64)"},
		{"[engine]\nreplicas = 65\n", 2, "[engine] replicas", "65 is out of range (1 to 64)"},
		{"[engine]\nmax_context = 8\n", 2, "[engine] max_context", "out of range (0, or 16 to 1048576)"},
		{"[engine]\nkv_cache_bytes = 512K\n", 2, "[engine] kv_cache_bytes", "512K is out of range (0, or 1M to 16T)"},
		{"[engine]\nkv_cache_bytes = 17T\n", 2, "[engine] kv_cache_bytes", "17T is out of range"},
		{"[engine]\nkv_cache_bytes = 99999999999T\n", 2, "[engine] kv_cache_bytes", "out of range"},
		{"[engine]\nmax_batch_tokens = 99999999999999999999999\n", 2, "[engine] max_batch_tokens", "out of range"},
		{"[engine]\nkv_cache_fraction = 1.5\n", 2, "[engine] kv_cache_fraction", "1.5 is out of range (0.05 to 0.99)"},
		{"[engine]\nkv_cache_fraction = 0\n", 2, "[engine] kv_cache_fraction", "out of range"},
		{"[engine]\nblock_size = 24\n", 2, "[engine] block_size", "not a power of two"},
		{"[engine]\nblock_size = 512\n", 2, "[engine] block_size", "out of range (4 to 256)"},
		{"[supervisor]\nheartbeat_timeout_ms = 100\n", 2, "[supervisor] heartbeat_timeout_ms", "(500 to 600000)"},
		{"[supervisor]\nstall_timeout_ms = 999\n", 2, "[supervisor] stall_timeout_ms", "999 is out of range (1000 to 86400000)"},
		{"[supervisor]\nmax_request_retries = 11\n", 2, "[supervisor] max_request_retries", "11 is out of range (0 to 10)"},
		{"[limits]\nmax_request_bytes = 1K\n", 2, "[limits] max_request_bytes", "1K is out of range (4K to 256M)"},
		{"[server]\nqueue_prompt_tokens = 4294967297\n", 2, "[server] queue_prompt_tokens", "out of range"},
		/* malformed numbers */
		{"[engine]\nreplicas = two\n", 2, "[engine] replicas", "\"two\" is not a whole number"},
		{"[engine]\nreplicas = -1\n", 2, "[engine] replicas", "not a whole number"},
		{"[engine]\nreplicas = +2\n", 2, "[engine] replicas", "not a whole number"},
		{"[engine]\nreplicas = 0x10\n", 2, "[engine] replicas", "not a whole number"},
		{"[engine]\nreplicas = 1.5\n", 2, "[engine] replicas", "not a whole number"},
		{"[engine]\nreplicas = 2 # two\n", 2, "[engine] replicas", "not a whole number"},
		{"[engine]\nreplicas =\n", 2, "[engine] replicas", "not a whole number"},
		{"[engine]\nreplicas = 2K\n", 2, "[engine] replicas", "not a whole number"},
		{"[engine]\nkv_cache_bytes = 8X\n", 2, "[engine] kv_cache_bytes", "not a size"},
		{"[engine]\nkv_cache_bytes = 8GB\n", 2, "[engine] kv_cache_bytes", "not a size"},
		{"[engine]\nkv_cache_bytes = 8 G\n", 2, "[engine] kv_cache_bytes", "not a size"},
		{"[engine]\nkv_cache_bytes = G\n", 2, "[engine] kv_cache_bytes", "not a size"},
		{"[engine]\nkv_cache_fraction = 9e-1\n", 2, "[engine] kv_cache_fraction", "not a decimal number"},
		{"[engine]\nkv_cache_fraction = nan\n", 2, "[engine] kv_cache_fraction", "not a decimal number"},
		{"[engine]\nkv_cache_fraction = .\n", 2, "[engine] kv_cache_fraction", "not a decimal number"},
		/* enums */
		{"[engine]\nbackend = tpu\n", 2, "[engine] backend", "\"tpu\" is not one of auto, cpu, cuda"},
		{"[engine]\nadmission = lazy\n", 2, "[engine] admission", "\"lazy\" is not one of eager, reserve"},
		{"[model]\nswiftkv = maybe\n", 2, "[model] swiftkv", "not one of on, off, auto"},
		{"[engine]\ndevices = 0,0\n", 2, "[engine] devices", "device 0 is listed twice"},
		{"[engine]\ndevices = 0-3,2\n", 2, "[engine] devices", "device 2 is listed twice"},
		{"[engine]\ndevices = 3-1\n", 2, "[engine] devices", "runs backwards"},
		{"[engine]\ndevices = 0,,1\n", 2, "[engine] devices", "an empty item"},
		{"[engine]\ndevices = 0-\n", 2, "[engine] devices", "not a device number"},
		{"[engine]\ndevices = gpu0\n", 2, "[engine] devices", "not a device number"},
		{"[engine]\ndevices = 256\n", 2, "[engine] devices", "device 256 is out of range (0 to 255)"},
		{"[engine]\ndevices = 0-16\n", 2, "[engine] devices", "more than 16 devices"},
		{"[engine]\ndevices =\n", 2, "[engine] devices", "an empty item"},
		/* strings */
		{"[model]\npath =\n", 2, "[model] path", "must not be empty"},
		{"[model]\npath =; /srv/models/x\n", 2, "[model] path", "must not start with ';'"},
		{"[server]\nallow_group = #skv\n", 2, "[server] allow_group", "must not start with '#'"},
		{"[model]\nname = a\tb\n", 2, "[model] name", "control character"},
		{"[server]\nsocket = run/skvd.sock\n", 2, "[server] socket", "not an absolute path"},
		{"[server]\nallow_group = 1abc\n", 2, "[server] allow_group", "not a valid group name"},
		{"[server]\nadmin_group = a b\n", 2, "[server] admin_group", "not a valid group name"},
		{"[server]\nallow_group = abcdefghijklmnopqrstuvwxyz0123456\n", 2, "[server] allow_group", "not a valid group name"},
		{"[model]\nname = 0123456789012345678901234567890123456789012345678901234567890123\n", 2, "[model] name",
		 "the value is 64 bytes long; at most 63 fit"},
		/* relations between keys: the message names the key set last */
		{"[limits]\ndefault_max_tokens = 8192\n", 2, "[limits] default_max_tokens",
		 "8192 is more than [limits] max_new_tokens (4096)"},
		{"[limits]\ndefault_max_tokens = 300\nmax_new_tokens = 200\n", 3, "[limits] max_new_tokens",
		 "200 is less than [limits] default_max_tokens (300)"},
		{"[supervisor]\nrestart_backoff_max_ms = 50\n", 2, "[supervisor] restart_backoff_max_ms",
		 "50 is less than [supervisor] restart_backoff_ms (100)"},
		{"[engine]\nmixed_batch_tokens = 4096\n", 2, "[engine] mixed_batch_tokens",
		 "4096 is more than [engine] max_batch_tokens (2048)"},
		{"[engine]\nmixed_batch_tokens = 8\n", 2, "[engine] mixed_batch_tokens", "8 is out of range (0, or 16 to"},
		{"[server]\nmax_sessions_per_uid = 300\n", 2, "[server] max_sessions_per_uid",
		 "300 is more than [server] max_clients (256)"},
		{"[server]\nmax_sessions_per_uid = 8\nmax_clients = 4\n", 3, "[server] max_clients",
		 "4 is less than [server] max_sessions_per_uid (8)"},
		{"[server]\nmax_sessions_per_uid = 0\n", 2, "[server] max_sessions_per_uid", "0 is out of range (1 to 65536)"},
		{"[server]\nqueue_prompt_tokens = 1000\n", 2, "[server] queue_prompt_tokens", "less than [limits] max_prompt_tokens"},
		{"[server]\nadmin_socket = /run/swiftkv/skvd.sock\n", 2, "[server] admin_socket", "the same path as [server] socket"},
		/* the first error is the one reported */
		{"[engine]\nreplicas = 0\nthis is junk\n", 2, "[engine] replicas", "out of range"},
		{"[engine]\njunk\nreplicas = 0\n", 2, NULL, "expected"},
		{"[engine]\nreplicas = 2\nreplicas = 3\n[nope]\n", 3, "[engine] replicas", "set twice"},
	};
	for (size_t i = 0; i < SKV_ARRAY_SIZE(cases); i++)
		expect_bad(&cases[i]);
}

/* Lines inih would cut: a long value, and a long comment whose tail inih would read as a key. */
static void test_long_lines(void **state)
{
	(void)state;
	char buf[1024];

	/* the longest line inih keeps whole is accepted: a 191-byte path fits exactly */
	char path[192];
	path[0] = '/';
	memset(path + 1, 'p', 190);
	path[191] = '\0';
	snprintf(buf, sizeof(buf), "[model]\npath=%s\n", path);
	struct skvd_config c;
	struct skv_err err = {0};
	if (load_text(buf, strlen(buf), &c, &err) < 0)
		fail_msg("%s", err.msg);
	assert_string_equal(c.model_path, path);

	/* one byte more does not fit the field */
	snprintf(buf, sizeof(buf), "[model]\npath=%sq\n", path);
	expect_bad_len(buf, strlen(buf), 2, "[model] path", "the value is 192 bytes long; at most 191 fit");
	/* a line longer than inih's buffer, whatever is in it */
	snprintf(buf, sizeof(buf), "[model]\npath = %sqqq\n", path);
	expect_bad_len(buf, strlen(buf), 2, NULL, "at most 197 are allowed, since inih would cut it");
	/* inih would read the first 199 bytes as a comment and the tail as "replicas = 9" */
	char comment[210];
	memset(comment, 'c', 197);
	memcpy(comment + 197, "replicas = 9", 13);
	snprintf(buf, sizeof(buf), "[engine]\n\n# %s\n", comment);
	expect_bad_len(buf, strlen(buf), 3, NULL, "the line is 211 bytes long");
	/* a socket path longer than sun_path */
	char sock[120];
	sock[0] = '/';
	memset(sock + 1, 's', 107);
	sock[108] = '\0';
	snprintf(buf, sizeof(buf), "[server]\nsocket = %s\n", sock);
	expect_bad_len(buf, strlen(buf), 2, "[server] socket", "at most 107 fit");
}

static void test_not_text(void **state)
{
	(void)state;
	static const char nul[] = "[engine]\nreplicas = 2\nthreads = 1\0\n";
	expect_bad_len(nul, sizeof(nul) - 1, 3, NULL, "NUL byte");

	/* larger than 1 MiB: refused before parsing */
	size_t big = (1u << 20) + 10;
	char *b = malloc(big);
	assert_non_null(b);
	memset(b, '\n', big);
	memcpy(b, "; big\n", 6);
	expect_bad_len(b, big, 0, NULL, "at most 1048576");
	free(b);

	/* a missing file, a directory */
	struct skvd_config c;
	struct skv_err err = {0};
	char *p = path_of("missing.ini");
	assert_int_equal(skvd_config_load(p, &c, &err), -ENOENT);
	assert_non_null(strstr(err.msg, p));
	free(p);
	assert_int_equal(skvd_config_load(dir, &c, &err), -EISDIR);
}

/* Line numbers stay right deep into a file full of comments, blank lines and CRLF. */
static void test_line_numbers(void **state)
{
	(void)state;
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	fprintf(f, "[engine]\r\n");
	for (int i = 0; i < 150; i++) {
		if (i % 3 == 0)
			fprintf(f, "; comment %d\r\n", i);
		else if (i % 3 == 1)
			fputs("\n", f);
		else
			fprintf(f, "   # indented comment %d\n", i);
	}
	fprintf(f, "threads = 4\nmax_seqs = lots\n");
	fclose(f);
	expect_bad_len(buf, len, 153, "[engine] max_seqs", "\"lots\" is not a whole number");
	free(buf);
}

/* A reload: the running configuration stays as it was when the new file is bad, and a good
 * file replaces it whole. */
static void test_reload(void **state)
{
	(void)state;
	struct skvd_config running, snapshot;
	struct skv_err err = {0};
	char *p = path_of("skvd.ini");

	tu_write(p, every_key, strlen(every_key));
	assert_int_equal(skvd_config_load(p, &running, &err), 0);
	memcpy(&snapshot, &running, sizeof(running));

	/* the operator breaks one line near the end of the file */
	char *broken = strdup(every_key), *at = strstr(broken, "drain_timeout_ms = 45000");
	assert_non_null(at);
	memcpy(at, "drain_timeout_ms = 45s  ", 24);
	tu_write(p, broken, strlen(broken));
	err.msg[0] = '\0';
	assert_true(skvd_config_load(p, &running, &err) < 0);
	assert_memory_equal(&running, &snapshot, sizeof(running));
	char want_msg[96];
	unsigned line = 1;
	for (const char *q = broken; q < at; q++)
		line += *q == '\n';
	snprintf(want_msg, sizeof(want_msg), ":%u: [supervisor] drain_timeout_ms: \"45s\" is not a whole number", line);
	assert_non_null(strstr(err.msg, want_msg));
	check_every_key(&running);

	/* fixed: the new file replaces every field, including ones it no longer sets */
	tu_writef(p, "[engine]\nreplicas = 2\n");
	assert_int_equal(skvd_config_load(p, &running, &err), 0);
	struct skvd_config want;
	skvd_config_defaults(&want);
	want.replicas = 2;
	assert_same_config(&running, &want);
	free(broken);
	free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_shipped_is_defaults), cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_every_key),	    cmocka_unit_test(test_spellings),
		cmocka_unit_test(test_bad_files),	    cmocka_unit_test(test_long_lines),
		cmocka_unit_test(test_not_text),	    cmocka_unit_test(test_line_numbers),
		cmocka_unit_test(test_reload),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
