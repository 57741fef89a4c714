/* train-tmpl.c: the distillation ops and the teacher/student model, written once for a real type
 * R with suffix P (train-f32.c and train-f64.c include this file with R = float / double).
 * The math is docs/swiftkv.md section 2 (the forward) and docs/distill.md (the backward). */
#ifndef R
#error "include train-tmpl.c from train-f32.c or train-f64.c"
#endif

#define CAT_(a, b) a##_##b
#define CAT(a, b) CAT_(a, b)
#define FN(name) CAT(name, P)
#define TM struct CAT(skv_tm, P)
#define TL struct CAT(skv_tm_layer, P)

/* y[n, out] = x[n, in] w[out, in]^T (+ b) */
void FN(skv_op_linear_fwd)(const R *x, const R *w, const R *b, R *y, uint32_t n, uint32_t in, uint32_t out)
{
	GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)out, (int)in, 1, x, (int)in, w, (int)in, 0, y,
	     (int)out);
	if (b)
		for (size_t t = 0; t < n; t++)
			for (size_t o = 0; o < out; o++)
				y[t * out + o] += b[o];
}

void FN(skv_op_linear_bwd)(const R *x, const R *w, const R *dy, R *dx, R *dw, R *db, uint32_t n, uint32_t in,
			   uint32_t out)
{
	if (dx) /* dx[n, in] += dy[n, out] w[out, in] */
		GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)in, (int)out, 1, dy, (int)out, w, (int)in,
		     1, dx, (int)in);
	if (dw) /* dw[out, in] += dy^T x */
		GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, (int)out, (int)in, (int)n, 1, dy, (int)out, x, (int)in, 1,
		     dw, (int)in);
	if (db)
		for (size_t t = 0; t < n; t++)
			for (size_t o = 0; o < out; o++)
				db[o] += dy[t * out + o];
}

void FN(skv_op_rmsnorm_fwd)(const R *x, const R *w, R *y, R *rinv, uint32_t n, uint32_t h, double eps)
{
	for (size_t t = 0; t < n; t++) {
		const R *xr = x + t * h;
		double ss = 0;
		for (size_t k = 0; k < h; k++)
			ss += (double)xr[k] * xr[k];
		R r = (R)(1.0 / sqrt(ss / h + eps));
		if (rinv)
			rinv[t] = r;
		for (size_t k = 0; k < h; k++)
			y[t * h + k] = xr[k] * r * w[k];
	}
}

/* y_k = x_k r w_k, r = (mean(x^2) + eps)^-1/2: dx_k = r w_k dy_k - x_k r^3 / h sum_j w_j dy_j x_j,
 * dw_k = sum_t dy_k x_k r. */
void FN(skv_op_rmsnorm_bwd)(const R *x, const R *w, const R *rinv, const R *dy, R *dx, R *dw, uint32_t n,
			    uint32_t h)
{
	for (size_t t = 0; t < n; t++) {
		const R *xr = x + t * h, *dr = dy + t * h;
		R r = rinv[t];
		if (dx) {
			double dot = 0;
			for (size_t k = 0; k < h; k++)
				dot += (double)w[k] * dr[k] * xr[k];
			R c = (R)(dot * r * r * r / h);
			for (size_t k = 0; k < h; k++)
				dx[t * h + k] += r * w[k] * dr[k] - xr[k] * c;
		}
		if (dw)
			for (size_t k = 0; k < h; k++)
				dw[k] += dr[k] * xr[k] * r;
	}
}

/* Rotate-half RoPE (dimension j pairs with j + d/2), position t % S. */
void FN(skv_op_rope)(R *x, uint32_t n, uint32_t heads, uint32_t d, const R *inv_freq, uint32_t S, bool backward)
{
	uint32_t half = d / 2;
	for (size_t t = 0; t < n; t++) {
		R pos = (R)(t % S);
		for (uint32_t j = 0; j < half; j++) {
			R ang = pos * inv_freq[j];
			R c = cos(ang), s = backward ? -sin(ang) : sin(ang);
			for (uint32_t hd = 0; hd < heads; hd++) {
				R *v = x + (t * heads + hd) * d;
				R a = v[j], b = v[j + half];
				v[j] = a * c - b * s;
				v[j + half] = b * c + a * s;
			}
		}
	}
}

void FN(skv_op_attn_fwd)(const R *q, const R *k, const R *v, R *out, R *p, uint32_t B, uint32_t S, uint32_t nh,
			 uint32_t nkv, uint32_t d)
{
	const R scale = (R)(1.0 / sqrt((double)d));
	const uint32_t qw = nh * d, kw = nkv * d, rep = nh / nkv;
#pragma omp parallel for collapse(2) schedule(static)
	for (uint32_t b = 0; b < B; b++)
		for (uint32_t h = 0; h < nh; h++) {
			uint32_t kh = h / rep;
			for (uint32_t i = 0; i < S; i++) {
				const R *qi = q + ((size_t)b * S + i) * qw + h * d;
				R *pr = p + (((size_t)b * nh + h) * S + i) * S;
				R mx = -INFINITY;
				for (uint32_t j = 0; j <= i; j++) {
					const R *kj = k + ((size_t)b * S + j) * kw + kh * d;
					R s = 0;
					for (uint32_t e = 0; e < d; e++)
						s += qi[e] * kj[e];
					pr[j] = s * scale;
					mx = pr[j] > mx ? pr[j] : mx;
				}
				R sum = 0;
				for (uint32_t j = 0; j <= i; j++)
					sum += pr[j] = exp(pr[j] - mx);
				for (uint32_t j = 0; j <= i; j++)
					pr[j] /= sum;
				for (uint32_t j = i + 1; j < S; j++)
					pr[j] = 0;
				R *o = out + ((size_t)b * S + i) * qw + h * d;
				for (uint32_t e = 0; e < d; e++)
					o[e] = 0;
				for (uint32_t j = 0; j <= i; j++) {
					const R *vj = v + ((size_t)b * S + j) * kw + kh * d;
					for (uint32_t e = 0; e < d; e++)
						o[e] += pr[j] * vj[e];
				}
			}
		}
}

/* dV_j += sum_i P_ij dO_i; dP_ij = dO_i . V_j; dS = P (dP - sum_j P dP); dQ_i += scale sum_j dS_ij K_j;
 * dK_j += scale sum_i dS_ij Q_i. Query heads sharing a KV head add into it, so the loop over the
 * batch is the parallel one (each sequence owns its rows of dk, dv). */
void FN(skv_op_attn_bwd)(const R *q, const R *k, const R *v, const R *p, const R *dout, R *dq, R *dk, R *dv,
			 uint32_t B, uint32_t S, uint32_t nh, uint32_t nkv, uint32_t d)
{
	const R scale = (R)(1.0 / sqrt((double)d));
	const uint32_t qw = nh * d, kw = nkv * d, rep = nh / nkv;
#pragma omp parallel for schedule(static)
	for (uint32_t b = 0; b < B; b++) {
		R *dp = malloc(sizeof(R) * S);
		if (!dp)
			abort();
		for (uint32_t h = 0; h < nh; h++) {
			uint32_t kh = h / rep;
			for (uint32_t i = 0; i < S; i++) {
				const R *qi = q + ((size_t)b * S + i) * qw + h * d;
				const R *doi = dout + ((size_t)b * S + i) * qw + h * d;
				const R *pr = p + (((size_t)b * nh + h) * S + i) * S;
				R dot = 0;
				for (uint32_t j = 0; j <= i; j++) {
					const R *vj = v + ((size_t)b * S + j) * kw + kh * d;
					R *dvj = dv ? dv + ((size_t)b * S + j) * kw + kh * d : NULL;
					R s = 0;
					for (uint32_t e = 0; e < d; e++) {
						s += doi[e] * vj[e];
						if (dvj)
							dvj[e] += pr[j] * doi[e];
					}
					dp[j] = s;
					dot += pr[j] * s;
				}
				R *dqi = dq ? dq + ((size_t)b * S + i) * qw + h * d : NULL;
				for (uint32_t j = 0; j <= i; j++) {
					R ds = pr[j] * (dp[j] - dot) * scale;
					const R *kj = k + ((size_t)b * S + j) * kw + kh * d;
					R *dkj = dk ? dk + ((size_t)b * S + j) * kw + kh * d : NULL;
					for (uint32_t e = 0; e < d; e++) {
						if (dqi)
							dqi[e] += ds * kj[e];
						if (dkj)
							dkj[e] += ds * qi[e];
					}
				}
			}
		}
		free(dp);
	}
}

static inline R FN(sigm)(R x) { return (R)1 / ((R)1 + exp(-x)); }

void FN(skv_op_swiglu_fwd)(const R *g, const R *u, R *h, size_t n)
{
	for (size_t i = 0; i < n; i++)
		h[i] = g[i] * FN(sigm)(g[i]) * u[i];
}

/* silu'(g) = s (1 + g (1 - s)), s = sigmoid(g) */
void FN(skv_op_swiglu_bwd)(const R *g, const R *u, const R *dh, R *dg, R *du, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		R s = FN(sigm)(g[i]);
		if (dg)
			dg[i] += dh[i] * u[i] * s * ((R)1 + g[i] * ((R)1 - s));
		if (du)
			du[i] += dh[i] * g[i] * s;
	}
}

/* Per row: pass 1 over the vocabulary tiles keeps a running max and sum of exp for the teacher's
 * and the student's logits / T (the online log-sum-exp); pass 2 recomputes each tile and adds
 * p_t (log p_t - log p_s) to the loss and T (p_s - p_t) W to the gradient (d/dz_s of
 * T^2 KL(p_t || p_s) with z / T inside). Rows go in blocks of RB so a tile's logits are one GEMM. */
#define KL_RB 16
double FN(skv_op_kl)(const R *hs, const R *ht, const R *w, const uint8_t *mask, uint32_t n, uint32_t h, uint32_t V,
		     double T, uint32_t tile, R *dhs, double scale)
{
	double total = 0;
	R *zs = malloc(sizeof(R) * KL_RB * tile), *zt = malloc(sizeof(R) * KL_RB * tile);
	double ms[KL_RB], ss[KL_RB], mt[KL_RB], st[KL_RB];
	if (!zs || !zt)
		abort();
	for (uint32_t r0 = 0; r0 < n; r0 += KL_RB) {
		uint32_t rb = SKV_MIN(KL_RB, n - r0);
		for (uint32_t r = 0; r < rb; r++)
			ms[r] = mt[r] = -INFINITY, ss[r] = st[r] = 0;
		for (int pass = 0; pass < 2; pass++)
			for (uint32_t v0 = 0; v0 < V; v0 += tile) {
				uint32_t vb = SKV_MIN(tile, V - v0);
				GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rb, (int)vb, (int)h, 1, hs + (size_t)r0 * h,
				     (int)h, w + (size_t)v0 * h, (int)h, 0, zs, (int)vb);
				GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rb, (int)vb, (int)h, 1, ht + (size_t)r0 * h,
				     (int)h, w + (size_t)v0 * h, (int)h, 0, zt, (int)vb);
				for (uint32_t r = 0; r < rb; r++) {
					R *a = zs + (size_t)r * vb, *b = zt + (size_t)r * vb;
					if (pass == 0) {
						for (uint32_t c = 0; c < vb; c++) {
							double xs = a[c] / T, xt = b[c] / T;
							if (xs > ms[r])
								ss[r] = ss[r] * exp(ms[r] - xs) + 1, ms[r] = xs;
							else
								ss[r] += exp(xs - ms[r]);
							if (xt > mt[r])
								st[r] = st[r] * exp(mt[r] - xt) + 1, mt[r] = xt;
							else
								st[r] += exp(xt - mt[r]);
						}
						continue;
					}
					double ls = ms[r] + log(ss[r]), lt = mt[r] + log(st[r]);
					if (mask && !mask[r0 + r]) {
						memset(a, 0, sizeof(R) * vb); /* not scored: no loss, no gradient */
						continue;
					}
					for (uint32_t c = 0; c < vb; c++) {
						double lps = a[c] / T - ls, lpt = b[c] / T - lt, pt = exp(lpt);
						total += T * T * pt * (lpt - lps);
						a[c] = (R)(scale * T * (exp(lps) - pt)); /* the gradient of zs */
					}
				}
				if (pass == 1 && dhs) /* dhs[rb, h] += dz[rb, vb] w[v0.., h] */
					GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rb, (int)h, (int)vb, 1, zs, (int)vb,
					     w + (size_t)v0 * h, (int)h, 1, dhs + (size_t)r0 * h, (int)h);
			}
	}
	free(zs);
	free(zt);
	return total;
}

/* ---- the model ---- */

static int FN(load)(const struct skv_checkpoint *ck, const char *name, R *dst, size_t numel)
{
	const struct skv_st_tensor *t = skv_checkpoint_find(ck, name);
	enum skv_dtype dt;
	if (!t || t->numel != numel || skv_st_dtype_to_skv(t->dtype, &dt) < 0)
		return -ENOENT;
	for (size_t i = 0; i < numel; i++)
		dst[i] = (R)skv_load_f32(t->data, dt, i);
	return 0;
}

void FN(skv_tm_free)(TM *m)
{
	if (!m)
		return;
	free(m->inv_freq);
	free(m->frozen);
	free(m->layer);
	free(m->param);
	free(m->grad);
	free(m->wq_s);
	free(m->bq_s);
	free(m->wk_s);
	free(m->bk_s);
	free(m->wv_s);
	free(m->bv_s);
	free(m);
}

static int FN(tm_new)(const struct skv_checkpoint *ck, uint32_t L, uint32_t G, bool student, TM **ret,
		      struct skv_err *err)
{
	const struct skv_model_config *c = &ck->config;
	struct skv_model_config plain = *c;
	plain.swiftkv = 0; /* a student checkpoint: its own L and G, checked as for a teacher */
	int r = skv_tm_check(student ? &plain : c, L, G, err);
	if (r < 0)
		return r;
	TM *m = calloc(1, sizeof(*m));
	if (!m)
		return skv_err_set(err, -ENOMEM, "out of memory");
	struct skv_tm_dims *dm = &m->dm;
	*dm = (struct skv_tm_dims){.N = c->n_layers, .H = c->hidden, .inter = c->intermediate, .nh = c->n_heads,
				   .nkv = c->n_kv_heads, .d = c->head_dim, .V = c->vocab, .L = L, .G = G,
				   .F = (c->n_layers - L) / G, .tie = c->tie_word_embeddings,
				   .abias = c->attention_bias, .mbias = c->mlp_bias, .eps = c->rms_eps};
	const size_t H = dm->H, IM = dm->inter, qd = (size_t)dm->nh * dm->d, kd = (size_t)dm->nkv * dm->d;
	const size_t per_layer = 2 * H + qd * H + 2 * kd * H + H * qd + 3 * H * IM +
				 (dm->abias ? qd + 2 * kd + H : 0) + (dm->mbias ? 2 * IM + H : 0);
	size_t nf = (size_t)dm->V * H * (dm->tie ? 1 : 2) + H + dm->N * per_layer;
	struct skv_tm_tensor *tt = NULL;
	size_t nt = 0;
	m->frozen = malloc(sizeof(R) * nf);
	m->layer = calloc(dm->N, sizeof(*m->layer));
	m->inv_freq = malloc(sizeof(R) * (dm->d / 2));
	float *inv = malloc(sizeof(float) * (dm->d / 2));
	m->wq_s = calloc(dm->N - L, sizeof(R *));
	m->bq_s = calloc(dm->N - L, sizeof(R *));
	m->wk_s = calloc(dm->F, sizeof(R *));
	m->bk_s = calloc(dm->F, sizeof(R *));
	m->wv_s = calloc(dm->F, sizeof(R *));
	m->bv_s = calloc(dm->F, sizeof(R *));
	if (!m->frozen || !m->layer || !m->inv_freq || !inv || !m->wq_s || !m->bq_s || !m->wk_s || !m->bk_s ||
	    !m->wv_s || !m->bv_s || skv_tm_tensors(dm, &tt, &nt) < 0) {
		free(inv);
		FN(skv_tm_free)(m);
		return skv_err_set(err, -ENOMEM, "out of memory");
	}
	skv_rope_inv_freq(inv, dm->d, c->rope_theta, c->rope_type, c->rope_factor, c->rope_low_freq_factor,
			  c->rope_high_freq_factor, c->rope_orig_max_position);
	for (uint32_t j = 0; j < dm->d / 2; j++)
		m->inv_freq[j] = inv[j];
	free(inv);

	R *cur = m->frozen;
	char nm[128];
	const char *miss = NULL;
#define TAKE(field, count, ...)                                                                                \
	do {                                                                                                   \
		snprintf(nm, sizeof(nm), __VA_ARGS__);                                                         \
		if (!miss && FN(load)(ck, nm, cur, (count)) < 0)                                               \
			miss = strdup(nm);                                                                     \
		(field) = cur;                                                                                 \
		cur += (count);                                                                                \
	} while (0)
	TAKE(m->embed, (size_t)dm->V * H, "model.embed_tokens.weight");
	TAKE(m->norm, H, "model.norm.weight");
	if (dm->tie)
		m->head = m->embed;
	else
		TAKE(m->head, (size_t)dm->V * H, "lm_head.weight");
	for (uint32_t i = 0; i < dm->N; i++) {
		TL *l = &m->layer[i];
		const char *p = "model.layers";
		TAKE(l->in_norm, H, "%s.%u.input_layernorm.weight", p, i);
		TAKE(l->post_norm, H, "%s.%u.post_attention_layernorm.weight", p, i);
		TAKE(l->wq, qd * H, "%s.%u.self_attn.q_proj.weight", p, i);
		TAKE(l->wk, kd * H, "%s.%u.self_attn.k_proj.weight", p, i);
		TAKE(l->wv, kd * H, "%s.%u.self_attn.v_proj.weight", p, i);
		TAKE(l->wo, H * qd, "%s.%u.self_attn.o_proj.weight", p, i);
		if (dm->abias) {
			TAKE(l->bq, qd, "%s.%u.self_attn.q_proj.bias", p, i);
			TAKE(l->bk, kd, "%s.%u.self_attn.k_proj.bias", p, i);
			TAKE(l->bv, kd, "%s.%u.self_attn.v_proj.bias", p, i);
			TAKE(l->bo, H, "%s.%u.self_attn.o_proj.bias", p, i);
		}
		TAKE(l->wg, IM * H, "%s.%u.mlp.gate_proj.weight", p, i);
		TAKE(l->wu, IM * H, "%s.%u.mlp.up_proj.weight", p, i);
		TAKE(l->wd, H * IM, "%s.%u.mlp.down_proj.weight", p, i);
		if (dm->mbias) {
			TAKE(l->bg, IM, "%s.%u.mlp.gate_proj.bias", p, i);
			TAKE(l->bu, IM, "%s.%u.mlp.up_proj.bias", p, i);
			TAKE(l->bd, H, "%s.%u.mlp.down_proj.bias", p, i);
		}
	}
#undef TAKE
	if (miss) {
		r = skv_err_set(err, -EINVAL, "%s: tensor %s missing or not of the config's shape (or an unsupported dtype)",
				ck->dir, miss);
		free((void *)miss);
		free(tt);
		FN(skv_tm_free)(m);
		return r;
	}

	/* the trainable vector, initialised as docs/swiftkv.md section 5 says */
	m->n_param = tt[nt - 1].offset + tt[nt - 1].numel;
	m->param = calloc(m->n_param, sizeof(R));
	m->grad = calloc(m->n_param, sizeof(R));
	if (!m->param || !m->grad) {
		free(tt);
		FN(skv_tm_free)(m);
		return skv_err_set(err, -ENOMEM, "out of memory");
	}
	size_t k = 0;
	m->norm_s = m->param + tt[k++].offset;
	memcpy(m->norm_s, m->layer[L].in_norm, sizeof(R) * H);
	for (uint32_t i = L; i < dm->N; i++) {
		R *w = m->wq_s[i - L] = m->param + tt[k++].offset;
		memcpy(w, m->layer[i].wq, sizeof(R) * qd * H);
		if (dm->abias) {
			m->bq_s[i - L] = m->param + tt[k++].offset;
			memcpy(m->bq_s[i - L], m->layer[i].bq, sizeof(R) * qd);
		}
		if ((i - L) % G)
			continue;
		uint32_t j = (i - L) / G;
		R **dst[4] = {&m->wk_s[j], &m->bk_s[j], &m->wv_s[j], &m->bv_s[j]};
		for (int t = 0; t < 4; t++) {
			bool bias = t & 1;
			if (bias && !dm->abias)
				continue;
			R *o = *dst[t] = m->param + tt[k++].offset;
			size_t cnt = bias ? kd : kd * H;
			for (uint32_t g = 0; g < G; g++) {
				const TL *l = &m->layer[i + g];
				const R *src = t == 0 ? l->wk : t == 1 ? l->bk : t == 2 ? l->wv : l->bv;
				for (size_t e = 0; e < cnt; e++)
					o[e] += src[e] / (R)G;
			}
		}
	}
	if (student) /* the trainable tensors as the checkpoint holds them */
		for (size_t e = 0; e < nt; e++)
			if (FN(load)(ck, tt[e].name, m->param + tt[e].offset, tt[e].numel) < 0) {
				r = skv_err_set(err, -EINVAL, "%s: tensor %s missing or not of the config's shape", ck->dir,
						tt[e].name);
				free(tt);
				FN(skv_tm_free)(m);
				return r;
			}
	free(tt);
	*ret = m;
	return 0;
}

int FN(skv_tm_new)(const struct skv_checkpoint *ck, uint32_t L, uint32_t G, TM **ret, struct skv_err *err)
{
	return FN(tm_new)(ck, L, G, false, ret, err);
}

int FN(skv_tm_open)(const struct skv_checkpoint *ck, TM **ret, struct skv_err *err)
{
	const struct skv_model_config *c = &ck->config;
	if (c->swiftkv)
		return FN(tm_new)(ck, c->kv_layers, c->kv_group, true, ret, err);
	if (c->n_layers < 2)
		return skv_err_set(err, -EINVAL, "%s: a model of one layer has no SwiftKV form", ck->dir);
	return FN(tm_new)(ck, c->n_layers - 1, 1, false, ret, err);
}

/* Activations of one later layer, kept for the backward. */
struct FN(saved) {
	R *x_in, *a, *r1, *q, *p, *att, *x_mid, *mm, *r2, *g, *u;
};

/* One decoder layer on x [n, H] in place. q weights given (the teacher's or the student's); kv
 * NULL: the layer's own k/v from its input (the original path), else the shared K/V [n, kd].
 * sv non-NULL: keep what the backward needs (its buffers allocated by the caller). ws: scratch
 * of (2 qd + 2 kd + H + 3 IM) * n. */
static void FN(layer_fwd)(const TM *m, uint32_t i, R *x, uint32_t B, uint32_t S, const R *wq, const R *bq,
			  const R *kv_k, const R *kv_v, struct FN(saved) *sv, R *ws)
{
	const struct skv_tm_dims *dm = &m->dm;
	const TL *l = &m->layer[i];
	const uint32_t n = B * S, H = dm->H, IM = dm->inter, qd = dm->nh * dm->d, kd = dm->nkv * dm->d;
	R *a = ws, *q = a + (size_t)n * H, *att = q + (size_t)n * qd, *k = att + (size_t)n * qd,
	  *v = k + (size_t)n * kd, *g = v + (size_t)n * kd, *u = g + (size_t)n * IM, *hh = u + (size_t)n * IM;
	R *p = NULL, *r1 = NULL, *r2 = NULL, *mm = a;
	if (sv) {
		memcpy(sv->x_in, x, sizeof(R) * n * H);
		a = sv->a, q = sv->q, att = sv->att, g = sv->g, u = sv->u, p = sv->p, r1 = sv->r1, r2 = sv->r2;
		mm = sv->mm;
	}
	R *pbuf = NULL;
	if (!p) {
		pbuf = malloc(sizeof(R) * B * dm->nh * S * S);
		if (!pbuf)
			abort();
		p = pbuf;
	}
	FN(skv_op_rmsnorm_fwd)(x, l->in_norm, a, r1, n, H, dm->eps);
	FN(skv_op_linear_fwd)(a, wq, bq, q, n, H, qd);
	FN(skv_op_rope)(q, n, dm->nh, dm->d, m->inv_freq, S, false);
	if (!kv_k) {
		FN(skv_op_linear_fwd)(a, l->wk, l->bk, k, n, H, kd);
		FN(skv_op_linear_fwd)(a, l->wv, l->bv, v, n, H, kd);
		FN(skv_op_rope)(k, n, dm->nkv, dm->d, m->inv_freq, S, false);
		kv_k = k, kv_v = v;
	}
	FN(skv_op_attn_fwd)(q, kv_k, kv_v, att, p, B, S, dm->nh, dm->nkv, dm->d);
	free(pbuf);
	/* x += att wo^T + bo */
	GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)H, (int)qd, 1, att, (int)qd, l->wo, (int)qd, 1, x,
	     (int)H);
	if (l->bo)
		for (size_t t = 0; t < n; t++)
			for (size_t e = 0; e < H; e++)
				x[t * H + e] += l->bo[e];
	if (sv)
		memcpy(sv->x_mid, x, sizeof(R) * n * H);
	FN(skv_op_rmsnorm_fwd)(x, l->post_norm, mm, r2, n, H, dm->eps);
	FN(skv_op_linear_fwd)(mm, l->wg, l->bg, g, n, H, IM);
	FN(skv_op_linear_fwd)(mm, l->wu, l->bu, u, n, H, IM);
	FN(skv_op_swiglu_fwd)(g, u, hh, (size_t)n * IM);
	GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)H, (int)IM, 1, hh, (int)IM, l->wd, (int)IM, 1, x, (int)H);
	if (l->bd)
		for (size_t t = 0; t < n; t++)
			for (size_t e = 0; e < H; e++)
				x[t * H + e] += l->bd[e];
}

/* Scratch of one layer_fwd / layer_bwd, in elements. */
static size_t FN(ws_size)(const struct skv_tm_dims *dm, size_t n)
{
	return n * (2 * (size_t)dm->H + 2 * (size_t)dm->nh * dm->d + 2 * (size_t)dm->nkv * dm->d + 3 * (size_t)dm->inter);
}

/* Backward of one later layer: dx [n, H] is the gradient of its output on entry and of its input
 * on return; dk, dv (the group's K/V, after RoPE for K) are added to. */
static void FN(layer_bwd)(TM *m, uint32_t i, const struct FN(saved) *sv, const R *K, const R *Vv, R *dx, R *dk,
			  R *dv, uint32_t B, uint32_t S, R *ws)
{
	const struct skv_tm_dims *dm = &m->dm;
	const TL *l = &m->layer[i];
	const uint32_t n = B * S, H = dm->H, IM = dm->inter, qd = dm->nh * dm->d, j = i - dm->L;
	R *dh = ws, *dg = dh + (size_t)n * IM, *du = dg + (size_t)n * IM, *dm_ = du + (size_t)n * IM,
	  *datt = dm_ + (size_t)n * H, *dq = datt + (size_t)n * qd, *da = dq + (size_t)n * qd;
	memset(dh, 0, sizeof(R) * n * (3 * (size_t)IM + 2 * H + 2 * qd));
	/* MLP: x_out = x_mid + down(silu(gate(mm)) * up(mm)), mm = norm(x_mid) */
	FN(skv_op_linear_bwd)(NULL, l->wd, dx, dh, NULL, NULL, n, IM, H);
	FN(skv_op_swiglu_bwd)(sv->g, sv->u, dh, dg, du, (size_t)n * IM);
	FN(skv_op_linear_bwd)(NULL, l->wg, dg, dm_, NULL, NULL, n, H, IM);
	FN(skv_op_linear_bwd)(NULL, l->wu, du, dm_, NULL, NULL, n, H, IM);
	FN(skv_op_rmsnorm_bwd)(sv->x_mid, l->post_norm, sv->r2, dm_, dx, NULL, n, H);
	/* attention: x_mid = x_in + att wo^T, att = attn(rope(a wq_s^T), K, V), a = norm(x_in) */
	FN(skv_op_linear_bwd)(NULL, l->wo, dx, datt, NULL, NULL, n, qd, H);
	FN(skv_op_attn_bwd)(sv->q, K, Vv, sv->p, datt, dq, dk, dv, B, S, dm->nh, dm->nkv, dm->d);
	FN(skv_op_rope)(dq, n, dm->nh, dm->d, m->inv_freq, S, true);
	R *gw = m->grad + (m->wq_s[j] - m->param), *gb = m->bq_s[j] ? m->grad + (m->bq_s[j] - m->param) : NULL;
	FN(skv_op_linear_bwd)(sv->a, m->wq_s[j], dq, da, gw, gb, n, H, qd);
	FN(skv_op_rmsnorm_bwd)(sv->x_in, l->in_norm, sv->r1, da, dx, NULL, n, H);
}

static void FN(teacher_fwd)(const TM *m, const int32_t *tokens, uint32_t B, uint32_t S, R *x, R *xL, R *ws)
{
	const struct skv_tm_dims *dm = &m->dm;
	const uint32_t n = B * S, H = dm->H;
	for (size_t t = 0; t < n; t++)
		memcpy(x + t * H, m->embed + (size_t)tokens[t] * H, sizeof(R) * H);
	for (uint32_t i = 0; i < dm->N; i++) {
		if (i == dm->L && xL)
			memcpy(xL, x, sizeof(R) * n * H);
		FN(layer_fwd)(m, i, x, B, S, m->layer[i].wq, m->layer[i].bq, NULL, NULL, NULL, ws);
	}
}

/* s = norm_swiftkv(xL); K_j = rope(s wk_s[j]^T + bk), V_j = s wv_s[j]^T + bv. */
static void FN(swiftkv_kv)(const TM *m, const R *xL, R *s, R *rs, R *K, R *Vv, uint32_t B, uint32_t S)
{
	const struct skv_tm_dims *dm = &m->dm;
	const uint32_t n = B * S, kd = dm->nkv * dm->d;
	FN(skv_op_rmsnorm_fwd)(xL, m->norm_s, s, rs, n, dm->H, dm->eps);
	for (uint32_t j = 0; j < dm->F; j++) {
		R *k = K + (size_t)j * n * kd, *v = Vv + (size_t)j * n * kd;
		FN(skv_op_linear_fwd)(s, m->wk_s[j], m->bk_s[j], k, n, dm->H, kd);
		FN(skv_op_linear_fwd)(s, m->wv_s[j], m->bv_s[j], v, n, dm->H, kd);
		FN(skv_op_rope)(k, n, dm->nkv, dm->d, m->inv_freq, S, false);
	}
}

static int FN(check_tokens)(const TM *m, const int32_t *tokens, size_t n)
{
	for (size_t t = 0; t < n; t++)
		if (tokens[t] < 0 || (uint32_t)tokens[t] >= m->dm.V)
			return -EINVAL;
	return 0;
}

int FN(skv_tm_logits)(TM *m, const int32_t *tokens, uint32_t B, uint32_t S, bool student, R *logits)
{
	const struct skv_tm_dims *dm = &m->dm;
	const size_t n = (size_t)B * S, H = dm->H, kd = (size_t)dm->nkv * dm->d;
	if (FN(check_tokens)(m, tokens, n) < 0)
		return -EINVAL;
	R *x = malloc(sizeof(R) * n * H), *xL = malloc(sizeof(R) * n * H), *ws = malloc(sizeof(R) * FN(ws_size)(dm, n));
	R *s = malloc(sizeof(R) * n * H), *K = malloc(sizeof(R) * (dm->F * n * kd + 1)),
	  *Vv = malloc(sizeof(R) * (dm->F * n * kd + 1)), *hn = malloc(sizeof(R) * n * H);
	int r = 0;
	if (!x || !xL || !ws || !s || !K || !Vv || !hn) {
		r = -ENOMEM;
		goto out;
	}
	FN(teacher_fwd)(m, tokens, B, S, x, xL, ws);
	if (student) {
		FN(swiftkv_kv)(m, xL, s, NULL, K, Vv, B, S);
		memcpy(x, xL, sizeof(R) * n * H);
		for (uint32_t i = dm->L; i < dm->N; i++) {
			uint32_t j = (i - dm->L) / dm->G;
			FN(layer_fwd)(m, i, x, B, S, m->wq_s[i - dm->L], m->bq_s[i - dm->L], K + j * n * kd, Vv + j * n * kd,
				      NULL, ws);
		}
	}
	FN(skv_op_rmsnorm_fwd)(x, m->norm, hn, NULL, (uint32_t)n, dm->H, dm->eps);
	FN(skv_op_linear_fwd)(hn, m->head, NULL, logits, (uint32_t)n, dm->H, dm->V);
out:
	free(x), free(xL), free(ws), free(s), free(K), free(Vv), free(hn);
	return r;
}

int FN(skv_tm_loss)(TM *m, const int32_t *tokens, const uint8_t *mask, uint32_t B, uint32_t S, double T, bool grad,
		    double *ret_loss)
{
	const struct skv_tm_dims *dm = &m->dm;
	const size_t n = (size_t)B * S, H = dm->H, IM = dm->inter, qd = (size_t)dm->nh * dm->d, kd = (size_t)dm->nkv * dm->d;
	const size_t nl = dm->N - dm->L, psz = (size_t)B * dm->nh * S * S;
	if (FN(check_tokens)(m, tokens, n) < 0)
		return -EINVAL;
	size_t scored = n;
	if (mask) {
		scored = 0;
		for (size_t t = 0; t < n; t++)
			scored += mask[t] != 0;
	}
	if (!scored) {
		*ret_loss = 0;
		if (grad)
			memset(m->grad, 0, sizeof(R) * m->n_param);
		return 0;
	}
	/* per later layer: x_in a x_mid mm [n,H]; q att [n,qd]; g u [n,IM]; r1 r2 [n]; p */
	const size_t per = 4 * n * H + 2 * n * qd + 2 * n * IM + 2 * n + psz;
	const size_t wsz = FN(ws_size)(dm, n) + n * H;
	R *big = malloc(sizeof(R) * (nl * per + 7 * n * H + 4 * dm->F * n * kd + 2 * n + wsz));
	struct FN(saved) *sv = calloc(nl, sizeof(*sv));
	if (!big || !sv) {
		free(big), free(sv);
		return -ENOMEM;
	}
	R *c = big;
	for (size_t k = 0; k < nl; k++) {
		struct FN(saved) *s = &sv[k];
		s->x_in = c, c += n * H;
		s->a = c, c += n * H;
		s->x_mid = c, c += n * H;
		s->mm = c, c += n * H;
		s->q = c, c += n * qd;
		s->att = c, c += n * qd;
		s->g = c, c += n * IM;
		s->u = c, c += n * IM;
		s->r1 = c, c += n;
		s->r2 = c, c += n;
		s->p = c, c += psz;
	}
	R *x = c, *xL = x + n * H, *s_ = xL + n * H, *ht = s_ + n * H, *hs = ht + n * H, *dx = hs + n * H,
	  *ds = dx + n * H, *K = ds + n * H, *Vv = K + dm->F * n * kd, *dK = Vv + dm->F * n * kd,
	  *dV = dK + dm->F * n * kd, *rs = dV + dm->F * n * kd, *rf = rs + n, *ws = rf + n;

	/* teacher, original path; its final normed hidden state is what the loss needs */
	FN(teacher_fwd)(m, tokens, B, S, x, xL, ws);
	FN(skv_op_rmsnorm_fwd)(x, m->norm, ht, NULL, (uint32_t)n, dm->H, dm->eps);
	/* student: layers < L are the teacher's (frozen, same input), so x_L is shared */
	FN(swiftkv_kv)(m, xL, s_, rs, K, Vv, B, S);
	memcpy(x, xL, sizeof(R) * n * H);
	for (uint32_t i = dm->L; i < dm->N; i++) {
		uint32_t j = (i - dm->L) / dm->G;
		FN(layer_fwd)(m, i, x, B, S, m->wq_s[i - dm->L], m->bq_s[i - dm->L], K + j * n * kd, Vv + j * n * kd,
			      grad ? &sv[i - dm->L] : NULL, ws);
	}
	FN(skv_op_rmsnorm_fwd)(x, m->norm, hs, rf, (uint32_t)n, dm->H, dm->eps);
	memset(ds, 0, sizeof(R) * n * H);
	double loss = FN(skv_op_kl)(hs, ht, m->head, mask, (uint32_t)n, dm->H, dm->V, T, 256, grad ? ds : NULL,
				    1.0 / scored) /
		      scored;
	*ret_loss = loss;
	if (!grad)
		goto out;

	memset(m->grad, 0, sizeof(R) * m->n_param);
	memset(dx, 0, sizeof(R) * n * H);
	FN(skv_op_rmsnorm_bwd)(x, m->norm, rf, ds, dx, NULL, (uint32_t)n, dm->H);
	memset(dK, 0, sizeof(R) * 2 * dm->F * n * kd);
	for (uint32_t i = dm->N; i-- > dm->L;) {
		uint32_t j = (i - dm->L) / dm->G;
		FN(layer_bwd)(m, i, &sv[i - dm->L], K + j * n * kd, Vv + j * n * kd, dx, dK + j * n * kd, dV + j * n * kd, B,
			      S, ws);
	}
	/* the KV projection: K_j = rope(s wk^T + bk), V_j = s wv^T + bv, s = norm_swiftkv(x_L) */
	memset(ds, 0, sizeof(R) * n * H);
	for (uint32_t j = 0; j < dm->F; j++) {
		R *dk = dK + j * n * kd, *dv = dV + j * n * kd;
		FN(skv_op_rope)(dk, (uint32_t)n, dm->nkv, dm->d, m->inv_freq, S, true);
		R *gbk = m->bk_s[j] ? m->grad + (m->bk_s[j] - m->param) : NULL;
		R *gbv = m->bv_s[j] ? m->grad + (m->bv_s[j] - m->param) : NULL;
		FN(skv_op_linear_bwd)(s_, m->wk_s[j], dk, ds, m->grad + (m->wk_s[j] - m->param), gbk, (uint32_t)n, dm->H,
				      (uint32_t)kd);
		FN(skv_op_linear_bwd)(s_, m->wv_s[j], dv, ds, m->grad + (m->wv_s[j] - m->param), gbv, (uint32_t)n, dm->H,
				      (uint32_t)kd);
	}
	FN(skv_op_rmsnorm_bwd)(xL, m->norm_s, rs, ds, NULL, m->grad + (m->norm_s - m->param), (uint32_t)n, dm->H);
out:
	free(big);
	free(sv);
	return 0;
}

#undef CAT_
#undef CAT
#undef FN
#undef TM
#undef TL
