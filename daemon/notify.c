/* notify.c: skvd and systemd. sd_notify for READY/STATUS/WATCHDOG/RELOADING/STOPPING (a no-op
 * without NOTIFY_SOCKET), socket activation by name ("client", "admin"), and one journal record
 * per finished request (structured fields under journald; a plain line on stderr otherwise). */
#include <stdio.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-journal.h>

#include "skvd-req.h"

void skvd_log(int prio, const char *fmt, ...)
{
	char line[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fprintf(stderr, "<%d>skvd: %s\n", prio, line);
}

void skvd_notify(struct skvd *d, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	(void)d;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	sd_notify(0, msg);
}

void skvd_journal_request(struct skvd *d, const struct skvd_req *q)
{
	uint64_t now = skv_now_ns();
	unsigned long long ttft = q->t_first_token_ns ? (q->t_first_token_ns - q->t_submit_ns) / 1000000 : 0;
	unsigned long long dur = (now - q->t_submit_ns) / 1000000;
	const char *fin = skv_wire_finish_name(q->finish);
	const char *err = skv_wire_error_name(q->error);
	const struct skvd_replica *r = q->rep ? q->rep : q->last_rep;
	int rep = r ? (int)r->index : -1;
	int dev = r ? r->device : -1;
	(void)d;
	if (getenv("JOURNAL_STREAM")) {
		sd_journal_send("MESSAGE=req %llu uid %u: %u prompt + %u completion tokens, ttft %llu ms, %llu ms, %s%s%s",
				(unsigned long long)q->id, (unsigned)q->uid, q->n_prompt, q->n_generated, ttft, dur, fin,
				q->error ? " " : "", q->error ? err : "",
				"PRIORITY=6", "SYSLOG_IDENTIFIER=skvd", "SKV_REQUEST_ID=%llu", (unsigned long long)q->id,
				"SKV_UID=%u", (unsigned)q->uid, "SKV_REPLICA=%d", rep, "SKV_GPU=%d", dev,
				"SKV_PROMPT_TOKENS=%u", q->n_prompt, "SKV_COMPLETION_TOKENS=%u", q->n_generated,
				"SKV_TTFT_MS=%llu", ttft, "SKV_DURATION_MS=%llu", dur, "SKV_FINISH=%s", fin,
				"SKV_ERROR=%s", err, NULL);
		return;
	}
	skvd_log(SKVD_INFO, "req %llu | uid %u | replica %d | %u prompt + %u completion tokens | ttft %llu ms | %llu ms | %s%s%s",
		 (unsigned long long)q->id, (unsigned)q->uid, rep, q->n_prompt, q->n_generated, ttft, dur, fin,
		 q->error ? " " : "", q->error ? err : "");
}

int skvd_listen_fds(struct skvd *d, struct skv_err *err)
{
	char **names = NULL;
	int n = sd_listen_fds_with_names(1, &names);
	d->client_listen = d->admin_listen = -1;
	if (n < 0)
		return skv_err_set(err, n, "socket activation: %s", strerror(-n));
	for (int i = 0; i < n; i++) {
		int fd = SD_LISTEN_FDS_START + i;
		const char *name = names && names[i] ? names[i] : "";
		if (!strcmp(name, "admin") && sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0) > 0) {
			d->admin_listen = fd;
			d->admin_activated = true;
		} else if ((!strcmp(name, "client") || !strcmp(name, "unknown") || !*name) &&
			   sd_is_socket_unix(fd, SOCK_SEQPACKET, 1, NULL, 0) > 0) {
			d->client_listen = fd;
			d->client_activated = true;
		} else {
			skvd_log(SKVD_WARNING, "socket activation: ignoring fd %d named \"%s\"", fd, name);
			close(fd);
			continue;
		}
		int fl = fcntl(fd, F_GETFL);
		fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	}
	for (int i = 0; names && i < n; i++)
		free(names[i]);
	free(names);
	return 0;
}
