/* skvctl: the admin client of skvd (the protocol is in admin-proto.h: SOCK_STREAM, one JSON line
 * each way, one command per connection).
 *
 *   skvctl [--socket PATH] [--json] [--timeout SEC] COMMAND [ARGS]
 *
 * Exit status: 0 ok, 1 the command failed (skvd said no, or its answer was broken or late),
 * 2 usage, 3 cannot connect. Tables are for people; their layout is nevertheless kept stable
 * (skvctl(8) documents it) and --json prints skvd's answer as it came, for programs.
 *
 * Not here: any state. skvctl never retries, never reads skvd.ini and never talks to systemd.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "admin-proto.h"
#include "config.h"
#include "skv-base.h"
#include "skv-version.h"

enum {
	EXIT_OK = 0,
	EXIT_FAILED = 1,
	EXIT_USAGE = 2,
	EXIT_NOCONNECT = 3,
};

#define ANSWER_MAX (64u << 20) /* metrics of a big box stay far below this */

struct opts {
	const char *socket;
	bool json;
	bool wait;
	int timeout_ms; /* -1: forever */
};

static void usage(FILE *f)
{
	fputs("usage: skvctl [--socket PATH] [--json] [--timeout SEC] COMMAND [ARGS]\n"
	      "\n"
	      "commands:\n"
	      "  status              workers, devices, KV use, queue, clients, tokens/s\n"
	      "  requests            requests queued and running\n"
	      "  cancel ID           cancel request ID\n"
	      "  drain               refuse new requests, finish the running ones, then exit\n"
	      "  reload [--wait]     re-read skvd.ini (non-zero exit when it is rejected)\n"
	      "  restart-worker N    restart replica N's worker\n"
	      "  metrics             Prometheus text\n"
	      "\n"
	      "options:\n"
	      "  -s, --socket PATH   admin socket (default $SKVCTL_SOCKET, else " SKVD_DEFAULT_ADMIN_SOCKET ")\n"
	      "  -j, --json          print skvd's JSON answer as it came\n"
	      "  -w, --wait          reload: answer once the new configuration serves or was rejected\n"
	      "  -t, --timeout SEC   give up after SEC seconds without an answer (default 30, 0 = never)\n"
	      "  -h, --help          this text\n"
	      "  -V, --version       skvctl's version\n"
	      "\n"
	      "exit status: 0 ok, 1 the command failed, 2 usage, 3 cannot connect\n",
	      f);
}

/* ---- talking to skvd ---- */

static int connect_admin(const char *path, int timeout_ms)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	size_t len = strlen(path);
	int fd;

	if (len == 0 || len >= sizeof(sa.sun_path)) {
		fprintf(stderr, "skvctl: %s: a socket path has 1 to %zu bytes\n", path, sizeof(sa.sun_path) - 1);
		return -EXIT_USAGE;
	}
	memcpy(sa.sun_path, path, len);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		fprintf(stderr, "skvctl: socket: %s\n", strerror(errno));
		return -EXIT_NOCONNECT;
	}
	if (timeout_ms > 0) {
		struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
		(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	}
	while (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		if (errno == EINTR)
			continue;
		int e = errno;
		fprintf(stderr, "skvctl: cannot connect to %s: %s%s\n", path, strerror(e),
			e == ENOENT || e == ECONNREFUSED ? " (is skvd running?)" : "");
		close(fd);
		return -EXIT_NOCONNECT;
	}
	return fd;
}

static uint64_t now_ms(void) { return skv_now_ns() / 1000000u; }

/* Sends req and reads one answer line. Returns 0 with *ret_raw (malloc'd, without its newline)
 * and *ret_obj (a JSON object), or an exit status. */
static int call(const struct opts *o, json_object *req, char **ret_raw, json_object **ret_obj)
{
	_cleanup_close_ int fd = -1;
	_cleanup_free_ char *buf = NULL;
	size_t len = 0, cap = 0;
	const char *s = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);
	size_t slen = strlen(s);
	uint64_t deadline = o->timeout_ms > 0 ? now_ms() + (uint64_t)o->timeout_ms : 0;

	if (slen + 1 > SKVD_ADMIN_MAX_REQUEST) {
		fprintf(stderr, "skvctl: the command is longer than %d bytes\n", SKVD_ADMIN_MAX_REQUEST);
		return EXIT_USAGE;
	}
	fd = connect_admin(o->socket, o->timeout_ms);
	if (fd < 0)
		return -fd;

	/* the command and its newline in one write: skvd reads a line */
	char line[SKVD_ADMIN_MAX_REQUEST + 1];
	memcpy(line, s, slen);
	line[slen] = '\n';
	for (size_t off = 0; off < slen + 1;) {
		ssize_t n = send(fd, line + off, slen + 1 - off, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			fprintf(stderr, "skvctl: sending to %s: %s\n", o->socket, strerror(errno));
			return EXIT_FAILED;
		}
		off += (size_t)n;
	}

	for (;;) {
		if (len == cap) {
			if (cap >= ANSWER_MAX) {
				fprintf(stderr, "skvctl: skvd's answer is longer than %u bytes\n", ANSWER_MAX);
				return EXIT_FAILED;
			}
			cap = cap ? cap * 2 : 16384;
			char *nb = realloc(buf, cap + 1);
			if (!nb) {
				fprintf(stderr, "skvctl: out of memory\n");
				return EXIT_FAILED;
			}
			buf = nb;
		}
		int wait_ms = -1;
		if (deadline) {
			uint64_t now = now_ms();
			if (now >= deadline) {
				fprintf(stderr, "skvctl: no answer from skvd within %d s\n", o->timeout_ms / 1000);
				return EXIT_FAILED;
			}
			wait_ms = (int)SKV_MIN(deadline - now, (uint64_t)INT32_MAX);
		}
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		int pr = poll(&pfd, 1, wait_ms);
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr < 0) {
			fprintf(stderr, "skvctl: poll: %s\n", strerror(errno));
			return EXIT_FAILED;
		}
		if (pr == 0)
			continue; /* the deadline check above reports it */
		ssize_t n = recv(fd, buf + len, cap - len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			fprintf(stderr, "skvctl: reading from %s: %s\n", o->socket, strerror(errno));
			return EXIT_FAILED;
		}
		if (n == 0)
			break;
		char *nl = memchr(buf + len, '\n', (size_t)n);
		len += (size_t)n;
		if (nl) {
			len = (size_t)(nl - buf);
			break;
		}
	}
	if (!buf || len == 0) {
		fprintf(stderr, "skvctl: skvd closed the connection without an answer\n");
		return EXIT_FAILED;
	}
	buf[len] = '\0';

	json_tokener *tok = json_tokener_new();
	if (!tok) {
		fprintf(stderr, "skvctl: out of memory\n");
		return EXIT_FAILED;
	}
	json_object *obj = json_tokener_parse_ex(tok, buf, (int)SKV_MIN(len, (size_t)INT32_MAX));
	enum json_tokener_error jerr = json_tokener_get_error(tok);
	json_tokener_free(tok);
	if (!obj || jerr != json_tokener_success || !json_object_is_type(obj, json_type_object)) {
		json_object_put(obj);
		fprintf(stderr, "skvctl: skvd's answer is not a JSON object: %.200s\n", buf);
		return EXIT_FAILED;
	}
	*ret_raw = SKV_TAKE_PTR(buf);
	*ret_obj = obj;
	return 0;
}

/* ---- reading answers ---- */

static json_object *get(json_object *o, const char *key)
{
	json_object *v = NULL;
	if (!o || !json_object_is_type(o, json_type_object) || !json_object_object_get_ex(o, key, &v))
		return NULL;
	return v;
}

static bool is_number(json_object *v)
{
	return v && (json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double));
}

/* A field as text for a table cell: numbers as integers, strings as they are (spaces made '_'
 * so that every cell stays one word), "-" when absent. */
static const char *cell(json_object *o, const char *key, char *buf, size_t len)
{
	json_object *v = get(o, key);
	if (!v || json_object_is_type(v, json_type_null)) {
		snprintf(buf, len, "-");
	} else if (json_object_is_type(v, json_type_int)) {
		snprintf(buf, len, "%" PRId64, json_object_get_int64(v));
	} else if (json_object_is_type(v, json_type_double)) {
		snprintf(buf, len, "%.0f", json_object_get_double(v));
	} else if (json_object_is_type(v, json_type_boolean)) {
		snprintf(buf, len, "%s", json_object_get_boolean(v) ? "yes" : "no");
	} else if (json_object_is_type(v, json_type_string)) {
		snprintf(buf, len, "%s", json_object_get_string(v));
		for (char *p = buf; *p; p++)
			if (*p == ' ' || *p == '\t' || *p == '\n')
				*p = '_';
		if (!buf[0])
			snprintf(buf, len, "-");
	} else {
		snprintf(buf, len, "?");
	}
	return buf;
}

static const char *text(json_object *o, const char *key, const char *dflt)
{
	json_object *v = get(o, key);
	return v && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : dflt;
}

static double num(json_object *o, const char *key, double dflt)
{
	json_object *v = get(o, key);
	return is_number(v) ? json_object_get_double(v) : dflt;
}

static void fmt_bytes(double b, char *buf, size_t len)
{
	static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	int u = 0;
	if (!(b >= 0)) {
		snprintf(buf, len, "-");
		return;
	}
	while (b >= 1024 && u < 4) {
		b /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%.0f B", b);
	else
		snprintf(buf, len, "%.1f %s", b, units[u]);
}

static void fmt_duration(double s, char *buf, size_t len)
{
	if (!(s >= 0)) {
		snprintf(buf, len, "-");
		return;
	}
	uint64_t t = (uint64_t)s, d = t / 86400, h = t / 3600 % 24, m = t / 60 % 60, sec = t % 60;
	if (d)
		snprintf(buf, len, "%llud %02lluh %02llum %02llus", (unsigned long long)d, (unsigned long long)h,
			 (unsigned long long)m, (unsigned long long)sec);
	else if (h)
		snprintf(buf, len, "%lluh %02llum %02llus", (unsigned long long)h, (unsigned long long)m,
			 (unsigned long long)sec);
	else if (m)
		snprintf(buf, len, "%llum %02llus", (unsigned long long)m, (unsigned long long)sec);
	else
		snprintf(buf, len, "%llus", (unsigned long long)sec);
}

static void print_status(json_object *o)
{
	json_object *model = get(o, "model"), *queue = get(o, "queue"), *tps = get(o, "tokens_per_s");
	json_object *workers = get(o, "workers"), *sw = get(model, "swiftkv"), *dr = get(o, "draining");
	char b1[64], b2[64];

	printf("model:     %s (%s), %s backend, swiftkv %s\n", text(model, "name", "-"), text(model, "path", "-"),
	       text(model, "backend", "-"),
	       sw && json_object_is_type(sw, json_type_boolean) ? (json_object_get_boolean(sw) ? "on" : "off") : "-");
	fmt_bytes(num(model, "weights_bytes", -1), b1, sizeof(b1));
	printf("weights:   %s, context %s tokens\n", b1, cell(model, "max_context", b2, sizeof(b2)));
	fmt_duration(num(o, "uptime_s", -1), b1, sizeof(b1));
	printf("uptime:    %s\n", b1);
	printf("clients:   %s\n", cell(o, "clients", b1, sizeof(b1)));
	printf("requests:  %s running, ", cell(o, "requests_running", b1, sizeof(b1)));
	printf("%s queued ", cell(queue, "requests", b1, sizeof(b1)));
	printf("(%s prompt tokens)\n", cell(queue, "prompt_tokens", b1, sizeof(b1)));
	printf("tokens/s:  %.1f prompt, %.1f generated (average since start)\n", num(tps, "prompt", 0),
	       num(tps, "generated", 0));
	printf("draining:  %s\n", dr && json_object_is_type(dr, json_type_boolean) && json_object_get_boolean(dr) ? "yes" : "no");
	printf("\n%-8s %-8s %-10s %-8s %-6s %-7s %-7s %-8s %-8s %-6s %-12s %s\n", "REPLICA", "PID", "STATE", "RESTARTS",
	       "DEVICE", "RUNNING", "WAITING", "KV_USED", "KV_TOTAL", "KV_USE", "HEARTBEAT_MS", "PREEMPTIONS");
	size_t n = workers && json_object_is_type(workers, json_type_array) ? json_object_array_length(workers) : 0;
	for (size_t i = 0; i < n; i++) {
		json_object *w = json_object_array_get_idx(workers, i);
		char c[12][48];
		double used = num(w, "kv_used_blocks", -1), total = num(w, "kv_total_blocks", -1);
		if (used >= 0 && total > 0)
			snprintf(c[10], sizeof(c[10]), "%.1f%%", 100.0 * used / total);
		else
			snprintf(c[10], sizeof(c[10]), "-");
		printf("%-8s %-8s %-10s %-8s %-6s %-7s %-7s %-8s %-8s %-6s %-12s %s\n",
		       cell(w, "replica", c[0], sizeof(c[0])), cell(w, "pid", c[1], sizeof(c[1])),
		       cell(w, "state", c[2], sizeof(c[2])), cell(w, "restarts", c[3], sizeof(c[3])),
		       cell(w, "device", c[4], sizeof(c[4])), cell(w, "running", c[5], sizeof(c[5])),
		       cell(w, "waiting", c[6], sizeof(c[6])), cell(w, "kv_used_blocks", c[7], sizeof(c[7])),
		       cell(w, "kv_total_blocks", c[8], sizeof(c[8])), c[10],
		       cell(w, "heartbeat_age_ms", c[9], sizeof(c[9])), cell(w, "preemptions", c[11], sizeof(c[11])));
	}
}

static void print_requests(json_object *o)
{
	json_object *list = get(o, "requests");
	size_t n = list && json_object_is_type(list, json_type_array) ? json_object_array_length(list) : 0;

	printf("%-10s %-10s %-8s %-8s %-8s %-14s %-10s %s\n", "ID", "CLIENT_ID", "UID", "REPLICA", "STATE",
	       "PROMPT_TOKENS", "GENERATED", "AGE_MS");
	for (size_t i = 0; i < n; i++) {
		json_object *r = json_object_array_get_idx(list, i);
		char c[8][48];
		printf("%-10s %-10s %-8s %-8s %-8s %-14s %-10s %s\n", cell(r, "id", c[0], sizeof(c[0])),
		       cell(r, "client_id", c[1], sizeof(c[1])), cell(r, "uid", c[2], sizeof(c[2])),
		       cell(r, "replica", c[3], sizeof(c[3])), cell(r, "state", c[4], sizeof(c[4])),
		       cell(r, "prompt_tokens", c[5], sizeof(c[5])), cell(r, "generated", c[6], sizeof(c[6])),
		       cell(r, "age_ms", c[7], sizeof(c[7])));
	}
}

/* ---- commands ---- */

static int parse_count(const char *s, int64_t min, int64_t *ret)
{
	if (!s || !*s || *s < '0' || *s > '9')
		return -EINVAL;
	return skv_parse_i64(s, min, INT64_MAX, ret);
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
		{"socket", required_argument, NULL, 's'}, {"json", no_argument, NULL, 'j'},
		{"wait", no_argument, NULL, 'w'},	  {"timeout", required_argument, NULL, 't'},
		{"help", no_argument, NULL, 'h'},	  {"version", no_argument, NULL, 'V'},
		{0},
	};
	struct opts o = {.timeout_ms = 30000};
	const char *env = getenv("SKVCTL_SOCKET");
	int c;

	o.socket = env && *env ? env : SKVD_DEFAULT_ADMIN_SOCKET;
	while ((c = getopt_long(argc, argv, "s:jwt:hV", options, NULL)) != -1) {
		switch (c) {
		case 's':
			o.socket = optarg;
			break;
		case 'j':
			o.json = true;
			break;
		case 'w':
			o.wait = true;
			break;
		case 't': {
			int64_t t;
			if (parse_count(optarg, 0, &t) < 0 || t > 86400) {
				fprintf(stderr, "skvctl: --timeout: \"%s\" is not a number of seconds (0 to 86400)\n", optarg);
				return EXIT_USAGE;
			}
			o.timeout_ms = t ? (int)t * 1000 : -1;
			break;
		}
		case 'h':
			usage(stdout);
			return EXIT_OK;
		case 'V':
			skv_version_print("skvctl");
			return EXIT_OK;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return EXIT_USAGE;
	}
	const char *cmd = argv[optind];
	char **args = argv + optind + 1;
	int nargs = argc - optind - 1;
	int want_args = !strcmp(cmd, "cancel") || !strcmp(cmd, "restart-worker") ? 1 : 0;
	bool known = !strcmp(cmd, "status") || !strcmp(cmd, "requests") || !strcmp(cmd, "cancel") ||
		     !strcmp(cmd, "drain") || !strcmp(cmd, "reload") || !strcmp(cmd, "restart-worker") ||
		     !strcmp(cmd, "metrics");
	if (!known) {
		fprintf(stderr, "skvctl: unknown command \"%s\"\n", cmd);
		usage(stderr);
		return EXIT_USAGE;
	}
	if (nargs != want_args) {
		fprintf(stderr, "skvctl: %s takes %s\n", cmd,
			want_args ? (strcmp(cmd, "cancel") ? "a replica number" : "a request id") : "no arguments");
		return EXIT_USAGE;
	}
	if (o.wait && strcmp(cmd, "reload")) {
		fprintf(stderr, "skvctl: --wait goes with reload only\n");
		return EXIT_USAGE;
	}

	json_object *req = json_object_new_object();
	int64_t arg = 0;
	json_object_object_add(req, "cmd", json_object_new_string(cmd));
	if (!strcmp(cmd, "cancel")) {
		if (parse_count(args[0], 1, &arg) < 0) {
			fprintf(stderr, "skvctl: cancel: \"%s\" is not a request id (a whole number from 1)\n", args[0]);
			json_object_put(req);
			return EXIT_USAGE;
		}
		json_object_object_add(req, "id", json_object_new_int64(arg));
	} else if (!strcmp(cmd, "restart-worker")) {
		if (parse_count(args[0], 0, &arg) < 0 || arg > INT32_MAX) {
			fprintf(stderr, "skvctl: restart-worker: \"%s\" is not a replica number (0, 1, ...)\n", args[0]);
			json_object_put(req);
			return EXIT_USAGE;
		}
		json_object_object_add(req, "replica", json_object_new_int64(arg));
	} else if (!strcmp(cmd, "reload")) {
		json_object_object_add(req, "wait", json_object_new_boolean(o.wait));
	}

	_cleanup_free_ char *raw = NULL;
	json_object *ans = NULL;
	int rc = call(&o, req, &raw, &ans);
	json_object_put(req);
	if (rc)
		return rc;

	json_object *okv = get(ans, "ok");
	bool ok = okv && json_object_is_type(okv, json_type_boolean) && json_object_get_boolean(okv);
	if (o.json) {
		printf("%s\n", raw);
		if (!ok)
			fprintf(stderr, "skvctl: %s: %s\n", cmd, text(ans, "error", "skvd said no"));
	} else if (!ok) {
		fprintf(stderr, "skvctl: %s: %s\n", cmd, text(ans, "error", "skvd said no, without a reason"));
	} else if (!strcmp(cmd, "status")) {
		print_status(ans);
	} else if (!strcmp(cmd, "requests")) {
		print_requests(ans);
	} else if (!strcmp(cmd, "metrics")) {
		const char *t = text(ans, "text", NULL);
		if (!t) {
			fprintf(stderr, "skvctl: metrics: the answer has no \"text\"\n");
			ok = false;
		} else {
			size_t tl = strlen(t);
			fputs(t, stdout);
			if (tl && t[tl - 1] != '\n')
				putchar('\n');
		}
	} else if (!strcmp(cmd, "cancel")) {
		printf("cancelled request %" PRId64 "\n", arg);
	} else if (!strcmp(cmd, "drain")) {
		printf("draining: new requests are refused; skvd exits when the running ones have finished\n");
	} else if (!strcmp(cmd, "reload")) {
		printf("%s\n", o.wait ? "reloaded: the new configuration serves" : "reload requested");
	} else if (!strcmp(cmd, "restart-worker")) {
		printf("restarting the worker of replica %" PRId64 "\n", arg);
	}
	json_object_put(ans);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "skvctl: writing the output: %s\n", strerror(errno));
		return EXIT_FAILED;
	}
	return ok ? EXIT_OK : EXIT_FAILED;
}
