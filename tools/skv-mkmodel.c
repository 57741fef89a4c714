/* skv-mkmodel: writes a synthetic checkpoint in exactly the Hugging Face layout.
 *
 *   skv-mkmodel --preset NAME [--swiftkv-layers L] [--group G] [--dtype bf16|fp16|fp32]
 *               [--seed S] [--max-shard-size BYTES] [--layers N] [--hidden H] [--intermediate I]
 *               [--heads NH] [--kv-heads NKV] [--head-dim D] [--tie] [--attention-bias]
 *               [--mlp-bias] [--force] OUTDIR
 *
 * Weights are deterministic in (seed, tensor name, element index), so the same model comes out
 * whatever the sharding and however many threads fill it. They are scaled so activations stay
 * O(1) through every projection (std 1/sqrt(fan_in)), norms are near 1, and a SwiftKV checkpoint
 * starts its extra tensors the way distillation does (q_proj_swiftkv from q_proj, the group
 * owner's k/v_proj_swiftkv from the group's mean, norm_swiftkv from layer L's input norm), plus
 * noise so the SwiftKV path is really different from the teacher. The teacher's q/k/v stay in
 * the file, as in the released checkpoints.
 *
 * On a terminal (stderr), a checkpoint of SKV_MKMODEL_PROGRESS_BYTES or more shows how many of
 * its bytes are written; a pipe or a log file gets only the final line.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "safetensors.h"
#include "skv-base.h"
#include "skv-version.h"
#include "tokenizer-synth.h"

struct preset {
	const char *name;
	uint32_t layers, hidden, inter, heads, kv_heads, head_dim, base_vocab, max_pos;
	bool tie;
	float eps, theta;
	uint32_t rope_orig;
};

/* base_vocab: ordinary tokens (a BPE trained on the corpus in model/corpus/); the model's vocab
 * adds Llama-3's 256 specials. */
static const struct preset presets[] = {
	{"tiny", 4, 64, 192, 4, 2, 16, 1024, 8192, false, 1e-5f, 500000.0f, 1024},
	{"small", 8, 256, 768, 8, 2, 32, 4096, 8192, false, 1e-5f, 500000.0f, 1024},
	{"llama-3.2-1b", 16, 2048, 8192, 32, 8, 64, 128000, 131072, true, 1e-5f, 500000.0f, 8192},
	{"llama-3.1-8b", 32, 4096, 14336, 32, 8, 128, 128000, 131072, false, 1e-5f, 500000.0f, 8192},
	{"llama-3.3-70b", 80, 8192, 28672, 64, 8, 128, 128000, 131072, false, 1e-5f, 500000.0f, 8192},
};

enum init { INIT_NORMAL, INIT_NORM, INIT_ZERO };

/* One tensor to write: its name, shape, and how its values come about. */
struct wtensor {
	char name[96];
	uint32_t ndim;
	uint64_t shape[2];
	enum init init;
	float scale; /* std for NORMAL; noise std for NORM (values 1 + noise) */
	/* value = mix * (mean of `base` tensors' values) + scale * own noise */
	uint32_t n_base;
	char base[8][96];
	float base_mix;
};

struct job {
	struct wtensor *t;
	size_t n;
	uint64_t seed;
	enum skv_st_dtype dtype;
	const struct wtensor **list;
	uint64_t total;	   /* bytes of every shard's tensors */
	uint64_t done;	   /* of them, filled so far */
	bool progress;	   /* show done/total on stderr (a terminal, a big checkpoint) */
	int shown_permille; /* last shown, -1 before the first */
};

/* Big enough that a checkpoint taking a second or more shows its progress (tiny and small
 * are written in well under a second). */
#define SKV_MKMODEL_PROGRESS_BYTES (128ull << 20)

/* One line, rewritten in place: "skv-mkmodel: 3.21 / 16.06 GB (20.0%)"; the last call ends it. */
static void progress_show(struct job *j)
{
	int pm = j->total ? (int)(j->done * 1000 / j->total) : 1000;
	if (!j->progress || pm == j->shown_permille)
		return;
	j->shown_permille = pm;
	fprintf(stderr, "\rskv-mkmodel: %.2f / %.2f GB (%.1f%%)%s", (double)j->done / 1e9, (double)j->total / 1e9,
		pm / 10.0, j->done >= j->total ? "\n" : "");
	fflush(stderr);
}

static uint64_t splitmix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static uint64_t name_hash(const char *s)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */
	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 1099511628211ull;
	return h;
}

/* A standard-normal-like value for element i of the stream `key`: the sum of four uniform 16-bit
 * draws, centred and scaled to unit variance (Irwin-Hall; bounded at +-3.46, cheap and enough
 * for synthetic weights). */
static inline float noise(uint64_t key, uint64_t i)
{
	uint64_t x = splitmix64(key ^ (i * 0xd1342543de82ef95ull));
	float s = (float)(x & 0xffff) + (float)((x >> 16) & 0xffff) + (float)((x >> 32) & 0xffff) +
		  (float)(x >> 48);
	return (s / 65535.0f - 2.0f) * 1.7320508f;
}

static float value(const struct wtensor *t, uint64_t seed, uint64_t i)
{
	float v = 0.0f;
	switch (t->init) {
	case INIT_ZERO:
		return 0.0f;
	case INIT_NORM:
		v = 1.0f;
		break;
	case INIT_NORMAL:
		break;
	}
	if (t->n_base) {
		float m = 0.0f;
		for (uint32_t b = 0; b < t->n_base; b++)
			m += noise(seed ^ name_hash(t->base[b]), i);
		/* the base tensors' noise, at their scale (base_mix): for a norm that is the noise
		 * around the 1 they share */
		v += t->base_mix * m / (float)t->n_base;
	}
	return v + t->scale * noise(seed ^ name_hash(t->name), i);
}

static int fill(void *userdata, size_t index, void *dst, size_t nbytes, struct skv_err *err)
{
	struct job *j = userdata;
	const struct wtensor *t = j->list[index];
	enum skv_dtype dt = j->dtype == SKV_ST_F32 ? SKV_DTYPE_F32 : j->dtype == SKV_ST_F16 ? SKV_DTYPE_F16 : SKV_DTYPE_BF16;
	size_t n = nbytes / skv_dtype_size(dt);
	(void)err;
#pragma omp parallel for schedule(static)
	for (size_t i = 0; i < n; i++)
		skv_store_f32(dst, dt, i, value(t, j->seed, i));
	j->done += nbytes;
	progress_show(j);
	return 0;
}

static struct wtensor *add(struct wtensor *v, size_t *n, const char *name, uint64_t rows, uint64_t cols, enum init init,
			   float scale)
{
	struct wtensor *t = &v[(*n)++];
	memset(t, 0, sizeof(*t));
	snprintf(t->name, sizeof(t->name), "%s", name);
	t->ndim = rows ? 2 : 1;
	t->shape[0] = rows ? rows : cols;
	t->shape[1] = cols;
	t->init = init;
	t->scale = scale;
	return t;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: skv-mkmodel --preset NAME [options] OUTDIR\n"
		   "  --preset NAME          tiny, small, llama-3.2-1b, llama-3.1-8b, llama-3.3-70b\n"
		   "  --swiftkv-layers L     write a llama_swiftkv checkpoint with num_key_value_layers = L\n"
		   "  --group G              key_value_group_size (AcrossKV), default 1\n"
		   "  --dtype bf16|fp16|fp32 storage dtype, default bf16\n"
		   "  --seed S               weights seed, default 0\n"
		   "  --layers N, --hidden H, --intermediate I, --heads NH, --kv-heads NKV, --head-dim D\n"
		   "                         override the preset's shape\n"
		   "  --max-shard-size BYTES shard above this size (default 5000000000)\n"
		   "  --tie | --untie        tie (or untie) lm_head to the embeddings\n"
		   "  --attention-bias       q/k/v/o projections with biases\n"
		   "  --mlp-bias             gate/up/down projections with biases\n"
		   "  --force                write into an existing OUTDIR\n"
		   "  --version, --help      this program's version, this text\n");
}

static int write_configs(const char *dir, const struct preset *p, uint32_t L, uint32_t G, bool swiftkv,
			 enum skv_dtype dtype, bool attn_bias, bool mlp_bias, struct skv_err *err)
{
	int32_t bos = (int32_t)p->base_vocab;
	struct skv_model_config c = {
		.version = SKV_MODEL_CONFIG_VERSION,
		.size = sizeof(c),
		.n_layers = p->layers,
		.hidden = p->hidden,
		.intermediate = p->inter,
		.n_heads = p->heads,
		.n_kv_heads = p->kv_heads,
		.head_dim = p->head_dim,
		.vocab = p->base_vocab + SKV_LLAMA3_N_SPECIAL,
		.max_position = p->max_pos,
		.swiftkv = swiftkv,
		.kv_layers = swiftkv ? L : p->layers,
		.kv_group = swiftkv ? G : 1,
		.tie_word_embeddings = p->tie,
		.attention_bias = attn_bias,
		.mlp_bias = mlp_bias,
		.rms_eps = p->eps,
		.rope_theta = p->theta,
		.rope_type = SKV_ROPE_LLAMA3,
		.rope_factor = 8.0f,
		.rope_low_freq_factor = 1.0f,
		.rope_high_freq_factor = 4.0f,
		.rope_orig_max_position = p->rope_orig,
		.torch_dtype = dtype,
		.bos_id = bos,
		.n_eos = 3,
		.eos_ids = {bos + 1, bos + 8, bos + 9},
		.gen_temperature = 0.6f,
		.gen_top_p = 0.9f,
	};
	return skv_model_config_write(dir, &c, err);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"preset", required_argument, NULL, 'p'},
		{"swiftkv-layers", required_argument, NULL, 'L'},
		{"group", required_argument, NULL, 'G'},
		{"dtype", required_argument, NULL, 'd'},
		{"seed", required_argument, NULL, 's'},
		{"layers", required_argument, NULL, 'n'},
		{"hidden", required_argument, NULL, 'H'},
		{"intermediate", required_argument, NULL, 'I'},
		{"heads", required_argument, NULL, 'A'},
		{"kv-heads", required_argument, NULL, 'K'},
		{"head-dim", required_argument, NULL, 'D'},
		{"max-shard-size", required_argument, NULL, 'm'},
		{"tie", no_argument, NULL, 't'},
		{"untie", no_argument, NULL, 'u'},
		{"attention-bias", no_argument, NULL, 'a'},
		{"mlp-bias", no_argument, NULL, 'b'},
		{"force", no_argument, NULL, 'f'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{0},
	};
	struct preset p = {0};
	const char *preset = NULL, *dtype_name = "bf16";
	int64_t L = -1, G = 1, seed = 0, layers = -1, max_shard = 5000000000ll;
	int64_t hidden = -1, inter = -1, heads = -1, kv_heads = -1, head_dim = -1;
	int tie = -1;
	bool attn_bias = false, mlp_bias = false, force = false;
	struct skv_err err = {0};
	int c, r;

	int li = 0;
	while ((c = getopt_long(argc, argv, "h", opts, &li)) != -1) {
		int pr = 0;
		switch (c) {
		case 'p':
			preset = optarg;
			break;
		case 'L':
			pr = skv_parse_i64(optarg, 1, SKV_MAX_LAYERS, &L);
			break;
		case 'G':
			pr = skv_parse_i64(optarg, 1, SKV_MAX_LAYERS, &G);
			break;
		case 'd':
			dtype_name = optarg;
			break;
		case 's':
			pr = skv_parse_i64(optarg, 0, INT64_MAX, &seed);
			break;
		case 'n':
			pr = skv_parse_i64(optarg, 1, SKV_MAX_LAYERS, &layers);
			break;
		case 'm':
			pr = skv_parse_i64(optarg, 1 << 20, INT64_MAX, &max_shard);
			break;
		case 'H':
			pr = skv_parse_i64(optarg, 1, SKV_MAX_HIDDEN, &hidden);
			break;
		case 'I':
			pr = skv_parse_i64(optarg, 1, SKV_MAX_INTERMEDIATE, &inter);
			break;
		case 'A':
			pr = skv_parse_i64(optarg, 1, SKV_MAX_HEADS, &heads);
			break;
		case 'K':
			pr = skv_parse_i64(optarg, 1, SKV_MAX_HEADS, &kv_heads);
			break;
		case 'D':
			pr = skv_parse_i64(optarg, 2, SKV_MAX_HEAD_DIM, &head_dim);
			break;
		case 't':
			tie = 1;
			break;
		case 'u':
			tie = 0;
			break;
		case 'a':
			attn_bias = true;
			break;
		case 'b':
			mlp_bias = true;
			break;
		case 'f':
			force = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			skv_version_print("skv-mkmodel");
			return 0;
		default:
			usage(stderr);
			return 2;
		}
		if (pr < 0) {
			fprintf(stderr, "skv-mkmodel: --%s: invalid value '%s'\n", opts[li].name, optarg);
			return 2;
		}
	}
	if (!preset || optind != argc - 1) {
		usage(stderr);
		return 2;
	}
	for (size_t i = 0; i < SKV_ARRAY_SIZE(presets); i++)
		if (!strcmp(presets[i].name, preset))
			p = presets[i];
	if (!p.name) {
		fprintf(stderr, "skv-mkmodel: unknown preset '%s'\n", preset);
		return 2;
	}
	if (layers > 0)
		p.layers = (uint32_t)layers;
	if (hidden > 0)
		p.hidden = (uint32_t)hidden;
	if (inter > 0)
		p.inter = (uint32_t)inter;
	if (heads > 0)
		p.heads = (uint32_t)heads;
	if (kv_heads > 0)
		p.kv_heads = (uint32_t)kv_heads;
	if (head_dim > 0)
		p.head_dim = (uint32_t)head_dim;
	if (p.heads % p.kv_heads != 0 || p.head_dim % 2 != 0) {
		fprintf(stderr, "skv-mkmodel: --heads (%u) must be a multiple of --kv-heads (%u), --head-dim (%u) even\n",
			p.heads, p.kv_heads, p.head_dim);
		return 2;
	}
	if (tie >= 0)
		p.tie = tie;
	enum skv_st_dtype dt;
	enum skv_dtype torch_dtype;
	if (!strcmp(dtype_name, "bf16"))
		dt = SKV_ST_BF16, torch_dtype = SKV_DTYPE_BF16;
	else if (!strcmp(dtype_name, "fp16"))
		dt = SKV_ST_F16, torch_dtype = SKV_DTYPE_F16;
	else if (!strcmp(dtype_name, "fp32"))
		dt = SKV_ST_F32, torch_dtype = SKV_DTYPE_F32;
	else {
		fprintf(stderr, "skv-mkmodel: --dtype must be bf16, fp16 or fp32, not '%s'\n", dtype_name);
		return 2;
	}
	bool swiftkv = L > 0;
	if (swiftkv && (L > p.layers || (p.layers - L) % G != 0)) {
		fprintf(stderr,
			"skv-mkmodel: --swiftkv-layers %lld with --group %lld: need L <= %u layers and (N - L) a multiple "
			"of G\n",
			(long long)L, (long long)G, p.layers);
		return 2;
	}
	if (!swiftkv && G != 1) {
		fprintf(stderr, "skv-mkmodel: --group needs --swiftkv-layers\n");
		return 2;
	}

	const char *out = argv[optind];
	if (mkdir(out, 0755) < 0 && !(errno == EEXIST && force)) {
		fprintf(stderr, "skv-mkmodel: %s: %s%s\n", out, strerror(errno),
			errno == EEXIST ? " (use --force to overwrite)" : "");
		return 1;
	}

	/* The tensor list, in the order transformers writes a Llama. */
	const uint64_t H = p.hidden, I = p.inter, d = p.head_dim, nh = p.heads, nkv = p.kv_heads;
	const uint64_t V = p.base_vocab + SKV_LLAMA3_N_SPECIAL;
	size_t cap = 16 + (size_t)p.layers * 24, n = 0;
	_cleanup_free_ struct wtensor *t = calloc(cap, sizeof(*t));
	char nm[96];
	if (!t) {
		fprintf(stderr, "skv-mkmodel: out of memory\n");
		return 1;
	}
	const float norm_noise = 0.1f;
	/* Embeddings small next to what the sublayers add (as in trained Llamas), so the residual
	 * stream is not just the current token's embedding, and a tied lm_head does not simply
	 * echo the last token as readily (random tied models still find attractor tokens). */
	add(t, &n, "model.embed_tokens.weight", V, H, INIT_NORMAL, 0.05f);
	for (uint32_t i = 0; i < p.layers; i++) {
		const char *pj[] = {"q", "k", "v"};
		const uint64_t rows[] = {nh * d, nkv * d, nkv * d};
		snprintf(nm, sizeof(nm), "model.layers.%u.input_layernorm.weight", i);
		add(t, &n, nm, 0, H, INIT_NORM, norm_noise);
		for (int k = 0; k < 3; k++) {
			snprintf(nm, sizeof(nm), "model.layers.%u.self_attn.%s_proj.weight", i, pj[k]);
			add(t, &n, nm, rows[k], H, INIT_NORMAL, 1.0f / sqrtf((float)H));
			if (attn_bias) {
				snprintf(nm, sizeof(nm), "model.layers.%u.self_attn.%s_proj.bias", i, pj[k]);
				add(t, &n, nm, 0, rows[k], INIT_NORMAL, 0.1f);
			}
		}
		snprintf(nm, sizeof(nm), "model.layers.%u.self_attn.o_proj.weight", i);
		add(t, &n, nm, H, nh * d, INIT_NORMAL, 0.5f / sqrtf((float)(nh * d)));
		if (attn_bias) {
			snprintf(nm, sizeof(nm), "model.layers.%u.self_attn.o_proj.bias", i);
			add(t, &n, nm, 0, H, INIT_NORMAL, 0.1f);
		}
		snprintf(nm, sizeof(nm), "model.layers.%u.post_attention_layernorm.weight", i);
		add(t, &n, nm, 0, H, INIT_NORM, norm_noise);
		const char *mp[] = {"gate", "up", "down"};
		for (int k = 0; k < 3; k++) {
			uint64_t rr = k == 2 ? H : I, cc = k == 2 ? I : H;
			snprintf(nm, sizeof(nm), "model.layers.%u.mlp.%s_proj.weight", i, mp[k]);
			add(t, &n, nm, rr, cc, INIT_NORMAL, (k == 2 ? 0.5f : 1.0f) / sqrtf((float)cc));
			if (mlp_bias) {
				snprintf(nm, sizeof(nm), "model.layers.%u.mlp.%s_proj.bias", i, mp[k]);
				add(t, &n, nm, 0, rr, INIT_NORMAL, 0.1f);
			}
		}
		/* SwiftKV student tensors for the later layers (distillation's initialisation + noise) */
		if (swiftkv && i >= (uint32_t)L) {
			for (int bias = 0; bias <= (int)attn_bias; bias++) {
				const char *suf = bias ? "bias" : "weight";
				float sc = bias ? 0.1f : 1.0f / sqrtf((float)H);
				snprintf(nm, sizeof(nm), "model.layers.%u.self_attn.q_proj_swiftkv.%s", i, suf);
				struct wtensor *q = add(t, &n, nm, bias ? 0 : nh * d, bias ? nh * d : H, INIT_NORMAL, 0.3f * sc);
				q->n_base = 1;
				q->base_mix = sc;
				snprintf(q->base[0], sizeof(q->base[0]), "model.layers.%u.self_attn.q_proj.%s", i, suf);
				if ((i - (uint32_t)L) % (uint32_t)G == 0) {
					for (int k = 1; k < 3; k++) {
						snprintf(nm, sizeof(nm), "model.layers.%u.self_attn.%s_proj_swiftkv.%s", i,
							 pj[k], suf);
						struct wtensor *kv = add(t, &n, nm, bias ? 0 : nkv * d, bias ? nkv * d : H,
									 INIT_NORMAL, 0.3f * sc);
						/* the mean of the group's teacher projections (the first 8 of
						 * a larger group: enough for a synthetic start) */
						kv->n_base = (uint32_t)SKV_MIN(G, 8);
						kv->base_mix = sc;
						for (uint32_t gg = 0; gg < kv->n_base; gg++)
							snprintf(kv->base[gg], sizeof(kv->base[0]),
								 "model.layers.%u.self_attn.%s_proj.%s", i + gg, pj[k], suf);
					}
				}
			}
		}
	}
	add(t, &n, "model.norm.weight", 0, H, INIT_NORM, norm_noise);
	if (swiftkv) {
		/* norm_swiftkv starts from layer L's input norm: same base stream, plus noise */
		struct wtensor *ns = add(t, &n, "model.norm_swiftkv.weight", 0, H, INIT_NORM, 0.3f * norm_noise);
		ns->n_base = 1;
		ns->base_mix = norm_noise;
		snprintf(ns->base[0], sizeof(ns->base[0]), "model.layers.%lld.input_layernorm.weight", (long long)L);
	}
	if (!p.tie)
		add(t, &n, "lm_head.weight", V, H, INIT_NORMAL, 1.0f / sqrtf((float)H));

	/* Shards: consecutive tensors up to max_shard bytes each (skv_st_write_sharded, which also
	 * removes an earlier checkpoint's shards and index under --force). */
	_cleanup_free_ const struct wtensor **list = calloc(n, sizeof(*list));
	_cleanup_free_ struct skv_st_out_tensor *ot = calloc(n, sizeof(*ot));
	if (!list || !ot) {
		fprintf(stderr, "skv-mkmodel: out of memory\n");
		return 1;
	}
	for (size_t i = 0; i < n; i++) {
		list[i] = &t[i];
		ot[i] = (struct skv_st_out_tensor){.name = t[i].name, .dtype = dt, .ndim = t[i].ndim};
		ot[i].shape[0] = t[i].shape[0];
		ot[i].shape[1] = t[i].shape[1];
	}
	/* bytes to write, for the progress line (skv_st_write_sharded reports the same sum) */
	uint64_t all = 0;
	enum skv_dtype edt = dt == SKV_ST_F32 ? SKV_DTYPE_F32 : dt == SKV_ST_F16 ? SKV_DTYPE_F16 : SKV_DTYPE_BF16;
	for (size_t i = 0; i < n; i++)
		all += (uint64_t)(t[i].ndim == 2 ? t[i].shape[0] * t[i].shape[1] : t[i].shape[0]) * skv_dtype_size(edt);
	struct job job = {.t = t, .n = n, .seed = (uint64_t)seed, .dtype = dt, .list = list, .total = all,
			  .progress = all >= SKV_MKMODEL_PROGRESS_BYTES && isatty(STDERR_FILENO), .shown_permille = -1};
	size_t shards;
	uint64_t total;
	r = skv_st_write_sharded(out, ot, n, (uint64_t)max_shard, "{\"format\":\"pt\"}", fill, &job, &shards, &total,
				 &err);
	if (r < 0) {
		fprintf(stderr, "skv-mkmodel: %s\n", err.msg);
		return 1;
	}

	if ((r = write_configs(out, &p, (uint32_t)L, (uint32_t)G, swiftkv, torch_dtype, attn_bias, mlp_bias, &err)) < 0 ||
	    (r = skv_tokenizer_write_synthetic(out, p.base_vocab, (uint64_t)seed, &err)) < 0) {
		fprintf(stderr, "skv-mkmodel: %s\n", err.msg);
		return 1;
	}
	printf("%s: %s, %u layers%s, %zu tensors, %.2f GB in %zu file%s\n", out, p.name, p.layers,
	       swiftkv ? " (SwiftKV)" : "", n, (double)total / 1e9, shards, shards > 1 ? "s" : "");
	return 0;
}
