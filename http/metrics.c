/* metrics.c: the gateway's counters and histograms, in Prometheus' text format (version 0.0.4).
 *
 * Names start with skv_http_ so that they never collide with skvd's (skv:...) in one scrape.
 * Status codes are counted per code from a fixed list, and paths from the fixed routes, so a
 * client cannot grow the label sets.
 */
#include "http-metrics.h"

#include <pthread.h>
#include <string.h>

#include "skv-base.h"

static const double buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
				 1,     2.5,    5,     10,   20,    30,   60,  120};
#define N_BUCKETS SKV_ARRAY_SIZE(buckets)
/* the gateway's own share of a request: microseconds */
static const double fine_buckets[] = {0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001,
				      0.0025,  0.005,	 0.01,	  0.025,  0.05,	   0.1,	   1};
_Static_assert(SKV_ARRAY_SIZE(fine_buckets) <= N_BUCKETS, "a histogram holds either bucket set");

static const int codes[] = {200, 400, 401, 404, 405, 413, 429, 499, 500, 503, 504};
#define N_CODES SKV_ARRAY_SIZE(codes)

static const char *const refusal_reasons[] = {"auth", "busy", "invalid", "body_too_large", "skvd_down"};
#define N_REFUSALS SKV_ARRAY_SIZE(refusal_reasons)

struct histogram {
	const double *le; /* the bucket bounds, NULL: buckets[] */
	size_t n_le;
	uint64_t counts[N_BUCKETS + 1]; /* per bucket, not cumulative; the last is +Inf */
	double sum;
	uint64_t n;
};

static struct {
	pthread_mutex_t lock;
	uint64_t requests[SKV_HTTP_ROUTE_COUNT][N_CODES + 1]; /* the last: any other code */
	struct histogram duration[SKV_HTTP_ROUTE_COUNT];
	struct histogram ttft[2];
	struct histogram overhead, stream_delay;
	uint64_t prompt_tokens, generation_tokens, disconnects;
	uint64_t refused[N_REFUSALS];
	int64_t in_progress;
} m = {.lock = PTHREAD_MUTEX_INITIALIZER,
       .overhead = {.le = fine_buckets, .n_le = SKV_ARRAY_SIZE(fine_buckets)},
       .stream_delay = {.le = fine_buckets, .n_le = SKV_ARRAY_SIZE(fine_buckets)}};

const char *skv_http_route_path(enum skv_http_route r)
{
	static const char *const paths[] = {"/v1/chat/completions", "/v1/completions", "/v1/models", "/health", "/metrics",
					    "other"};
	return (unsigned)r < SKV_ARRAY_SIZE(paths) ? paths[r] : "other";
}

void skv_http_metrics_init(void)
{
	pthread_mutex_lock(&m.lock);
	memset(m.requests, 0, sizeof(m.requests));
	memset(m.duration, 0, sizeof(m.duration));
	memset(m.ttft, 0, sizeof(m.ttft));
	memset(m.overhead.counts, 0, sizeof(m.overhead.counts));
	m.overhead.sum = 0;
	m.overhead.n = 0;
	memset(m.stream_delay.counts, 0, sizeof(m.stream_delay.counts));
	m.stream_delay.sum = 0;
	m.stream_delay.n = 0;
	m.prompt_tokens = m.generation_tokens = m.disconnects = 0;
	memset(m.refused, 0, sizeof(m.refused));
	m.in_progress = 0;
	pthread_mutex_unlock(&m.lock);
}

static void observe(struct histogram *h, double v)
{
	const double *le = h->le ? h->le : buckets;
	size_t n = h->le ? h->n_le : N_BUCKETS, b = 0;
	while (b < n && v > le[b])
		b++;
	h->counts[b]++;
	h->sum += v;
	h->n++;
}

void skv_http_metrics_request(enum skv_http_route r, int status, double seconds)
{
	size_t c = 0;
	if ((unsigned)r >= SKV_HTTP_ROUTE_COUNT)
		r = SKV_HTTP_ROUTE_OTHER;
	while (c < N_CODES && codes[c] != status)
		c++;
	pthread_mutex_lock(&m.lock);
	m.requests[r][c]++;
	observe(&m.duration[r], seconds);
	pthread_mutex_unlock(&m.lock);
}

void skv_http_metrics_ttft(enum skv_http_route r, double seconds)
{
	pthread_mutex_lock(&m.lock);
	observe(&m.ttft[r == SKV_HTTP_ROUTE_CHAT ? 0 : 1], seconds);
	pthread_mutex_unlock(&m.lock);
}

void skv_http_metrics_overhead(double seconds)
{
	pthread_mutex_lock(&m.lock);
	observe(&m.overhead, seconds);
	pthread_mutex_unlock(&m.lock);
}

void skv_http_metrics_stream_delay(double seconds)
{
	pthread_mutex_lock(&m.lock);
	observe(&m.stream_delay, seconds);
	pthread_mutex_unlock(&m.lock);
}

void skv_http_metrics_tokens(uint32_t prompt, uint32_t generated)
{
	pthread_mutex_lock(&m.lock);
	m.prompt_tokens += prompt;
	m.generation_tokens += generated;
	pthread_mutex_unlock(&m.lock);
}

void skv_http_metrics_disconnect(void)
{
	pthread_mutex_lock(&m.lock);
	m.disconnects++;
	pthread_mutex_unlock(&m.lock);
}

void skv_http_metrics_refused(const char *reason)
{
	pthread_mutex_lock(&m.lock);
	for (size_t i = 0; i < N_REFUSALS; i++)
		if (!strcmp(refusal_reasons[i], reason))
			m.refused[i]++;
	pthread_mutex_unlock(&m.lock);
}

void skv_http_metrics_in_progress(int delta)
{
	pthread_mutex_lock(&m.lock);
	m.in_progress += delta;
	pthread_mutex_unlock(&m.lock);
}

static void write_histogram(FILE *f, const char *name, const char *label, const struct histogram *h)
{
	const double *le = h->le ? h->le : buckets;
	size_t n = h->le ? h->n_le : N_BUCKETS;
	uint64_t cum = 0;
	for (size_t b = 0; b <= n; b++) {
		cum += h->counts[b];
		if (b < n)
			fprintf(f, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, label, label[0] ? "," : "", le[b],
				(unsigned long long)cum);
		else
			fprintf(f, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, label, label[0] ? "," : "",
				(unsigned long long)cum);
	}
	const char *open = label[0] ? "{" : "", *close = label[0] ? "}" : "";
	fprintf(f, "%s_sum%s%s%s %.9g\n", name, open, label, close, h->sum);
	fprintf(f, "%s_count%s%s%s %llu\n", name, open, label, close, (unsigned long long)h->n);
}

void skv_http_metrics_write(FILE *f)
{
	char label[96];

	pthread_mutex_lock(&m.lock);
	fprintf(f, "# HELP skv_http_requests_total HTTP requests answered, by path and status code.\n"
		   "# TYPE skv_http_requests_total counter\n");
	for (int r = 0; r < SKV_HTTP_ROUTE_COUNT; r++)
		for (size_t c = 0; c <= N_CODES; c++) {
			if (!m.requests[r][c] && (c == N_CODES || codes[c] != 200))
				continue;
			if (c < N_CODES)
				fprintf(f, "skv_http_requests_total{path=\"%s\",code=\"%d\"} %llu\n", skv_http_route_path(r),
					codes[c], (unsigned long long)m.requests[r][c]);
			else
				fprintf(f, "skv_http_requests_total{path=\"%s\",code=\"other\"} %llu\n",
					skv_http_route_path(r), (unsigned long long)m.requests[r][c]);
		}
	fprintf(f, "# HELP skv_http_request_duration_seconds Time from a request's arrival to its last byte.\n"
		   "# TYPE skv_http_request_duration_seconds histogram\n");
	for (int r = 0; r < SKV_HTTP_ROUTE_COUNT; r++) {
		snprintf(label, sizeof(label), "path=\"%s\"", skv_http_route_path(r));
		write_histogram(f, "skv_http_request_duration_seconds", label, &m.duration[r]);
	}
	fprintf(f, "# HELP skv_http_time_to_first_token_seconds Time from a generation's arrival to its first token.\n"
		   "# TYPE skv_http_time_to_first_token_seconds histogram\n");
	for (int r = 0; r < 2; r++) {
		snprintf(label, sizeof(label), "path=\"%s\"", skv_http_route_path(r));
		write_histogram(f, "skv_http_time_to_first_token_seconds", label, &m.ttft[r]);
	}
	fprintf(f, "# HELP skv_http_overhead_seconds The gateway's own share of a generation: from its body's last byte "
		   "to skvd reading the submission, plus from skvd sending the final to the response's last bytes "
		   "handed to the connection.\n# TYPE skv_http_overhead_seconds histogram\n");
	write_histogram(f, "skv_http_overhead_seconds", "", &m.overhead);
	fprintf(f, "# HELP skv_http_stream_delay_seconds From skvd sending a streamed delta to the gateway handing its "
		   "event to the connection.\n# TYPE skv_http_stream_delay_seconds histogram\n");
	write_histogram(f, "skv_http_stream_delay_seconds", "", &m.stream_delay);
	fprintf(f,
		"# HELP skv_http_prompt_tokens_total Prompt tokens of the generations that ended.\n"
		"# TYPE skv_http_prompt_tokens_total counter\n"
		"skv_http_prompt_tokens_total %llu\n"
		"# HELP skv_http_generation_tokens_total Tokens generated for the gateway's clients.\n"
		"# TYPE skv_http_generation_tokens_total counter\n"
		"skv_http_generation_tokens_total %llu\n"
		"# HELP skv_http_client_disconnects_total Generations whose client went away first (cancelled in skvd).\n"
		"# TYPE skv_http_client_disconnects_total counter\n"
		"skv_http_client_disconnects_total %llu\n"
		"# HELP skv_http_requests_in_progress Generations running through the gateway now.\n"
		"# TYPE skv_http_requests_in_progress gauge\n"
		"skv_http_requests_in_progress %lld\n",
		(unsigned long long)m.prompt_tokens, (unsigned long long)m.generation_tokens,
		(unsigned long long)m.disconnects, (long long)m.in_progress);
	fprintf(f, "# HELP skv_http_refused_total Requests the gateway refused before skvd saw them, by reason.\n"
		   "# TYPE skv_http_refused_total counter\n");
	for (size_t i = 0; i < N_REFUSALS; i++)
		fprintf(f, "skv_http_refused_total{reason=\"%s\"} %llu\n", refusal_reasons[i],
			(unsigned long long)m.refused[i]);
	pthread_mutex_unlock(&m.lock);
}
