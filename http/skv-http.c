/* skv-http: the OpenAI-compatible HTTP gateway of the swiftkv appliance (skv-http(8)).
 *
 * A separate process that is a libskv client of skvd, so that the network-facing parser runs
 * in its own sandbox, with no GPU and no weights, and skvd stays AF_UNIX-only. The main thread
 * only handles signals (SIGHUP re-reads the API keys, SIGTERM/SIGINT stop) and systemd's
 * watchdog; libmicrohttpd's threads serve the requests (server.c).
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "skv-version.h"
#include "http-config.h"
#include "http-metrics.h"
#include "http-server.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: skv-http [--config FILE] [--check-config] [--print-config]\n"
		   "  -c, --config FILE   skv-http.ini (default " SKV_HTTP_DEFAULT_CONFIG ")\n"
		   "      --check-config  check the file (and the API keys file) and exit\n"
		   "      --print-config  print the configuration in effect and exit\n"
		   "  -h, --help\n"
		   "      --version\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'},
		{"check-config", no_argument, NULL, 'C'},
		{"print-config", no_argument, NULL, 'P'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{0},
	};
	const char *path = SKV_HTTP_DEFAULT_CONFIG;
	bool check = false, print = false;
	struct skv_http_config cfg;
	struct skv_http_server *srv = NULL;
	struct skv_err err = {0};
	int o;

	while ((o = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
		switch (o) {
		case 'c':
			path = optarg;
			break;
		case 'C':
			check = true;
			break;
		case 'P':
			print = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			skv_version_print("skv-http");
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if (skv_http_config_load(path, &cfg, &err) < 0) {
		fprintf(stderr, "skv-http: %s\n", err.msg);
		return 1;
	}
	if (print)
		return skv_http_config_write(&cfg, stdout) < 0 ? 1 : 0;
	if (check) {
		struct skv_http_keys k = {0};
		if (cfg.api_keys_file[0] && skv_http_keys_load(cfg.api_keys_file, &k, &err) < 0) {
			fprintf(stderr, "skv-http: %s\n", err.msg);
			return 1;
		}
		skv_http_keys_done(&k);
		printf("%s: ok\n", path);
		return 0;
	}

	/* a connection and its skvd session take about five fds: the soft limit (often 1024)
	 * up to the hard one */
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}

	/* every thread libmicrohttpd starts inherits this mask: signals reach only sigtimedwait */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigprocmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	int fds[SKV_HTTP_MAX_LISTEN];
	int n_fds = sd_listen_fds(1);
	if (n_fds < 0) {
		skv_http_log(3, "socket activation: %s", strerror(-n_fds));
		return 1;
	}
	for (int i = 0; i < n_fds && i < SKV_HTTP_MAX_LISTEN; i++)
		fds[i] = SD_LISTEN_FDS_START + i;

	skv_http_metrics_init();
	if (skv_http_server_new(&cfg, fds, (size_t)n_fds, &srv, &err) < 0) {
		skv_http_log(3, "%s", err.msg);
		return 1;
	}
	if (n_fds)
		skv_http_log(5, "serving on %d socket%s from systemd, skvd at %s", n_fds, n_fds == 1 ? "" : "s", cfg.socket);
	else
		skv_http_log(5, "serving on %s%s, skvd at %s", cfg.listen_text, cfg.tls_cert[0] ? " (TLS)" : "", cfg.socket);
	if (!cfg.api_keys_file[0])
		skv_http_log(4, "no [http] api_keys_file: requests are not authenticated");
	sd_notify(0, "READY=1\nSTATUS=serving");

	uint64_t watchdog_us = 0;
	if (sd_watchdog_enabled(0, &watchdog_us) <= 0)
		watchdog_us = 0;
	int code = 0;
	for (;;) {
		struct timespec ts = {.tv_sec = 1};
		if (watchdog_us) {
			uint64_t half = watchdog_us / 2;
			ts.tv_sec = (time_t)(half / 1000000);
			ts.tv_nsec = (long)(half % 1000000) * 1000;
		}
		int sig = sigtimedwait(&set, NULL, &ts);
		if (watchdog_us)
			sd_notify(0, "WATCHDOG=1");
		if (sig == SIGHUP) {
			struct timespec now;
			clock_gettime(CLOCK_MONOTONIC, &now);
			char msg[96];
			snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%llu",
				 (unsigned long long)now.tv_sec * 1000000ull + (unsigned long long)now.tv_nsec / 1000);
			sd_notify(0, msg);
			if (skv_http_server_reload_keys(srv, &err) < 0)
				skv_http_log(3, "reload: %s (the old keys stay in force)", err.msg);
			else if (cfg.api_keys_file[0])
				skv_http_log(5, "reload: API keys re-read from %s", cfg.api_keys_file);
			sd_notify(0, "READY=1");
		} else if (sig == SIGTERM || sig == SIGINT) {
			skv_http_log(5, "stopping (signal %d)", sig);
			sd_notify(0, "STOPPING=1");
			break;
		}
	}
	skv_http_server_free(srv);
	return code;
}
