/* test-distill.c: the distillation library (train/): every backward op against central finite
 * differences in float64, the tiled KL against a direct computation, the student's
 * initialisation, the whole-model gradient of the trainable tensors against finite differences on
 * tiny skv-mkmodel models, the float model against the double one, and the refusals.
 *
 * Tolerances: the checks run the double instance of the ops. A central difference with step h
 * has truncation error O(h^2 f''') and rounding error O(eps_64 |f| / h); with h = 1e-5 and O(1)
 * values both are below 1e-9, so analytic and numeric gradients must agree to 1e-6 relative to
 * the largest gradient component (a wrong term in a backward is off by O(1) of that). */
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "skv-json.h"
#include "test-util.h"
#include "tokenizer.h"
#include "train.h"

static uint64_t rng = 88172645463325252ull;
static double urand(void) /* in [-1, 1) */
{
	rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
	return (double)(rng >> 11) / (double)(1ull << 52) - 1.0;
}
static double *rvec(size_t n)
{
	double *v = malloc(n * sizeof(double));
	assert_non_null(v);
	for (size_t i = 0; i < n; i++)
		v[i] = urand();
	return v;
}
static double *zvec(size_t n)
{
	double *v = calloc(n, sizeof(double));
	assert_non_null(v);
	return v;
}

/* The scalar every op check differentiates: sum_i c_i y_i with fixed random c. */
static double dotp(const double *c, const double *y, size_t n)
{
	double s = 0;
	for (size_t i = 0; i < n; i++)
		s += c[i] * y[i];
	return s;
}

#define FD_H 1e-5
/* Compares analytic gradient g[n] of f with respect to x[n] with central differences. */
#define CHECK_GRAD(x, g, n, f_expr)                                                                            \
	do {                                                                                                   \
		double gmax_ = 1e-12, emax_ = 0;                                                               \
		for (size_t i_ = 0; i_ < (n); i_++)                                                            \
			gmax_ = fmax(gmax_, fabs((g)[i_]));                                                    \
		for (size_t i_ = 0; i_ < (n); i_++) {                                                          \
			double x0_ = (x)[i_];                                                                  \
			(x)[i_] = x0_ + FD_H;                                                                  \
			double fp_ = (f_expr);                                                                 \
			(x)[i_] = x0_ - FD_H;                                                                  \
			double fm_ = (f_expr);                                                                 \
			(x)[i_] = x0_;                                                                         \
			emax_ = fmax(emax_, fabs((fp_ - fm_) / (2 * FD_H) - (g)[i_]));                         \
		}                                                                                              \
		if (emax_ > 1e-6 * gmax_) {                                                                    \
			print_error("%s: max error %g, max gradient %g\n", #g, emax_, gmax_);                  \
			fail();                                                                                \
		}                                                                                              \
	} while (0)

/* linear */
enum { LN = 3, LIN = 5, LOUT = 4 };
static double *lx, *lw, *lb, *lc;
static double f_linear(void)
{
	double y[LN * LOUT];
	skv_op_linear_fwd_f64(lx, lw, lb, y, LN, LIN, LOUT);
	return dotp(lc, y, LN * LOUT);
}

static void test_linear(void **state)
{
	(void)state;
	lx = rvec(LN * LIN), lw = rvec(LOUT * LIN), lb = rvec(LOUT), lc = rvec(LN * LOUT);
	double *dx = zvec(LN * LIN), *dw = zvec(LOUT * LIN), *db = zvec(LOUT);
	skv_op_linear_bwd_f64(lx, lw, lc, dx, dw, db, LN, LIN, LOUT);
	CHECK_GRAD(lx, dx, LN * LIN, f_linear());
	CHECK_GRAD(lw, dw, LOUT * LIN, f_linear());
	CHECK_GRAD(lb, db, LOUT, f_linear());
	free(lx), free(lw), free(lb), free(lc), free(dx), free(dw), free(db);
}

/* rmsnorm */
enum { RN = 3, RH = 7 };
static double *rx, *rw, *rc;
static double f_rms(void)
{
	double y[RN * RH];
	skv_op_rmsnorm_fwd_f64(rx, rw, y, NULL, RN, RH, 1e-5);
	return dotp(rc, y, RN * RH);
}

static void test_rmsnorm(void **state)
{
	(void)state;
	rx = rvec(RN * RH), rw = rvec(RH), rc = rvec(RN * RH);
	double y[RN * RH], rinv[RN], *dx = zvec(RN * RH), *dw = zvec(RH);
	skv_op_rmsnorm_fwd_f64(rx, rw, y, rinv, RN, RH, 1e-5);
	skv_op_rmsnorm_bwd_f64(rx, rw, rinv, rc, dx, dw, RN, RH);
	CHECK_GRAD(rx, dx, RN * RH, f_rms());
	CHECK_GRAD(rw, dw, RH, f_rms());
	free(rx), free(rw), free(rc), free(dx), free(dw);
}

/* rope: positions t % S, two heads */
enum { PN = 6, PS = 4, PHEADS = 2, PD = 6 };
static double *px, *pc, pinv[PD / 2] = {1.0, 0.3, 0.01};
static double f_rope(void)
{
	double y[PN * PHEADS * PD];
	memcpy(y, px, sizeof(y));
	skv_op_rope_f64(y, PN, PHEADS, PD, pinv, PS, false);
	return dotp(pc, y, PN * PHEADS * PD);
}

static void test_rope(void **state)
{
	(void)state;
	px = rvec(PN * PHEADS * PD), pc = rvec(PN * PHEADS * PD);
	double *dx = malloc(sizeof(double) * PN * PHEADS * PD);
	memcpy(dx, pc, sizeof(double) * PN * PHEADS * PD);
	skv_op_rope_f64(dx, PN, PHEADS, PD, pinv, PS, true);
	CHECK_GRAD(px, dx, PN * PHEADS * PD, f_rope());
	/* position 0 of each sequence is not rotated; backward undoes forward */
	double y[PN * PHEADS * PD];
	memcpy(y, px, sizeof(y));
	skv_op_rope_f64(y, PN, PHEADS, PD, pinv, PS, false);
	assert_memory_equal(y, px, sizeof(double) * PHEADS * PD);
	assert_memory_equal(y + PS * PHEADS * PD, px + PS * PHEADS * PD, sizeof(double) * PHEADS * PD);
	assert_true(fabs(y[PHEADS * PD] - px[PHEADS * PD]) > 1e-6);
	skv_op_rope_f64(y, PN, PHEADS, PD, pinv, PS, true);
	for (size_t i = 0; i < PN * PHEADS * PD; i++)
		assert_true(fabs(y[i] - px[i]) < 1e-12);
	free(px), free(pc), free(dx);
}

/* attention: two sequences, GQA (4 query heads on 2 KV heads) */
enum { AB = 2, AS = 5, ANH = 4, ANKV = 2, AD = 3 };
#define AQN (AB * AS * ANH * AD)
#define AKN (AB * AS * ANKV * AD)
static double *aq, *ak, *av, *ac;
static double f_attn(void)
{
	double out[AQN], p[AB * ANH * AS * AS];
	skv_op_attn_fwd_f64(aq, ak, av, out, p, AB, AS, ANH, ANKV, AD);
	return dotp(ac, out, AQN);
}

static void test_attention(void **state)
{
	(void)state;
	aq = rvec(AQN), ak = rvec(AKN), av = rvec(AKN), ac = rvec(AQN);
	for (size_t i = 0; i < AQN; i++)
		aq[i] *= 2; /* sharper softmax */
	double out[AQN], p[AB * ANH * AS * AS], *dq = zvec(AQN), *dk = zvec(AKN), *dv = zvec(AKN);
	skv_op_attn_fwd_f64(aq, ak, av, out, p, AB, AS, ANH, ANKV, AD);
	skv_op_attn_bwd_f64(aq, ak, av, p, ac, dq, dk, dv, AB, AS, ANH, ANKV, AD);
	CHECK_GRAD(aq, dq, AQN, f_attn());
	CHECK_GRAD(ak, dk, AKN, f_attn());
	CHECK_GRAD(av, dv, AKN, f_attn());
	/* causal: the first token of each sequence attends only to itself */
	for (int b = 0; b < AB; b++)
		for (int h = 0; h < ANH; h++)
			for (int e = 0; e < AD; e++)
				assert_true(fabs(out[((b * AS) * ANH + h) * AD + e] - av[((b * AS) * ANKV + h / 2) * AD + e]) <
					    1e-12);
	/* the float instance computes the same thing */
	float qf[AQN], kf[AKN], vf[AKN], of[AQN], pf[AB * ANH * AS * AS];
	for (size_t i = 0; i < AQN; i++)
		qf[i] = (float)aq[i];
	for (size_t i = 0; i < AKN; i++)
		kf[i] = (float)ak[i], vf[i] = (float)av[i];
	skv_op_attn_fwd_f32(qf, kf, vf, of, pf, AB, AS, ANH, ANKV, AD);
	for (size_t i = 0; i < AQN; i++)
		assert_true(fabs(of[i] - out[i]) < 1e-5);
	free(aq), free(ak), free(av), free(ac), free(dq), free(dk), free(dv);
}

/* swiglu */
enum { SN = 11 };
static double *sg, *su, *sc;
static double f_swiglu(void)
{
	double h[SN];
	skv_op_swiglu_fwd_f64(sg, su, h, SN);
	return dotp(sc, h, SN);
}

static void test_swiglu(void **state)
{
	(void)state;
	sg = rvec(SN), su = rvec(SN), sc = rvec(SN);
	for (size_t i = 0; i < SN; i++)
		sg[i] *= 4;
	double *dg = zvec(SN), *du = zvec(SN);
	skv_op_swiglu_bwd_f64(sg, su, sc, dg, du, SN);
	CHECK_GRAD(sg, dg, SN, f_swiglu());
	CHECK_GRAD(su, du, SN, f_swiglu());
	free(sg), free(su), free(sc), free(dg), free(du);
}

/* KL in vocabulary tiles: rows beyond one row block (16) and a vocabulary not a multiple of the
 * tile, so partial tiles and blocks are exercised */
enum { KN = 19, KH = 5, KV = 37 };
static double *khs, *kht, *kw;
static double f_kl(void) { return skv_op_kl_f64(khs, kht, kw, NULL, KN, KH, KV, 2.0, 8, NULL, 1.0); }

static double kl_direct(const double *hs, const double *ht, const double *w, double T)
{
	double total = 0;
	for (int r = 0; r < KN; r++) {
		double zs[KV], zt[KV], ms = -INFINITY, mt = -INFINITY, ss = 0, st = 0;
		for (int v = 0; v < KV; v++) {
			zs[v] = zt[v] = 0;
			for (int e = 0; e < KH; e++)
				zs[v] += hs[r * KH + e] * w[v * KH + e], zt[v] += ht[r * KH + e] * w[v * KH + e];
			zs[v] /= T, zt[v] /= T;
			ms = fmax(ms, zs[v]), mt = fmax(mt, zt[v]);
		}
		for (int v = 0; v < KV; v++)
			ss += exp(zs[v] - ms), st += exp(zt[v] - mt);
		for (int v = 0; v < KV; v++) {
			double lps = zs[v] - ms - log(ss), lpt = zt[v] - mt - log(st);
			total += exp(lpt) * (lpt - lps);
		}
	}
	return T * T * total;
}

static void test_kl(void **state)
{
	(void)state;
	khs = rvec(KN * KH), kht = rvec(KN * KH), kw = rvec(KV * KH);
	for (size_t i = 0; i < KV * KH; i++)
		kw[i] *= 5; /* logits of a few units: a peaked distribution */
	double *dhs = zvec(KN * KH);
	double l = skv_op_kl_f64(khs, kht, kw, NULL, KN, KH, KV, 2.0, 8, dhs, 1.0);
	double ref = kl_direct(khs, kht, kw, 2.0);
	assert_true(l > 0.1);
	assert_true(fabs(l - ref) < 1e-10 * ref);
	assert_true(fabs(skv_op_kl_f64(khs, kht, kw, NULL, KN, KH, KV, 2.0, KV, NULL, 1.0) - ref) < 1e-10 * ref);
	CHECK_GRAD(khs, dhs, KN * KH, f_kl());
	/* the same distribution: no divergence, no gradient */
	double *d0 = zvec(KN * KH);
	assert_true(fabs(skv_op_kl_f64(kht, kht, kw, NULL, KN, KH, KV, 2.0, 8, d0, 1.0)) < 1e-12);
	for (size_t i = 0; i < KN * KH; i++)
		assert_true(fabs(d0[i]) < 1e-12);
	free(khs), free(kht), free(kw), free(dhs), free(d0);
}

/* ---- the whole model ---- */

static const char *tiny_shape = "--preset tiny --dtype fp32 --layers 4 --hidden 16 --intermediate 24 --heads 4 "
				"--kv-heads 2 --head-dim 4";

static struct skv_checkpoint *open_model(const char *extra, char **ret_dir)
{
	char args[512];
	snprintf(args, sizeof(args), "%s %s", tiny_shape, extra);
	char *dir = tu_mkmodel(args);
	struct skv_checkpoint *ck = NULL;
	struct skv_err err = {0};
	if (skv_checkpoint_open(dir, &ck, &err) < 0)
		fail_msg("%s", err.msg);
	*ret_dir = dir;
	return ck;
}

static const struct skv_st_tensor *tensor(const struct skv_checkpoint *ck, const char *fmt, uint32_t i)
{
	char nm[128];
	snprintf(nm, sizeof(nm), fmt, i);
	const struct skv_st_tensor *t = skv_checkpoint_find(ck, nm);
	assert_non_null(t);
	return t;
}

/* q from q_proj, the owners' k/v the mean of the group's, norm_swiftkv from layer L's input norm */
static void test_init(void **state)
{
	(void)state;
	char *dir;
	struct skv_checkpoint *ck = open_model("--attention-bias", &dir);
	struct skv_tm_f64 *m = NULL;
	struct skv_err err = {0};
	assert_int_equal(skv_tm_new_f64(ck, 2, 2, &m, &err), 0);
	const float *in2 = tensor(ck, "model.layers.%u.input_layernorm.weight", 2)->data;
	for (int e = 0; e < 16; e++)
		assert_true(m->norm_s[e] == in2[e]);
	const float *q3 = tensor(ck, "model.layers.%u.self_attn.q_proj.weight", 3)->data;
	for (int e = 0; e < 16 * 16; e++)
		assert_true(m->wq_s[1][e] == q3[e]);
	const float *k2 = tensor(ck, "model.layers.%u.self_attn.k_proj.weight", 2)->data;
	const float *k3 = tensor(ck, "model.layers.%u.self_attn.k_proj.weight", 3)->data;
	const float *bv2 = tensor(ck, "model.layers.%u.self_attn.v_proj.bias", 2)->data;
	const float *bv3 = tensor(ck, "model.layers.%u.self_attn.v_proj.bias", 3)->data;
	assert_int_equal(m->dm.F, 1);
	for (int e = 0; e < 8 * 16; e++)
		assert_true(fabs(m->wk_s[0][e] - ((double)k2[e] + k3[e]) / 2) < 1e-7);
	for (int e = 0; e < 8; e++)
		assert_true(fabs(m->bv_s[0][e] - ((double)bv2[e] + bv3[e]) / 2) < 1e-7);
	skv_tm_free_f64(m);
	skv_checkpoint_free(ck);
	tu_rmdir(dir);
	free(dir);
}

static void perturb(double *p, size_t n, double amount)
{
	for (size_t i = 0; i < n; i++)
		p[i] += amount * urand();
}

/* Whole-model gradient of every trainable parameter against central differences of the loss. */
static void grad_check(const char *extra, uint32_t L, uint32_t G, const uint8_t *mask)
{
	char *dir;
	struct skv_checkpoint *ck = open_model(extra, &dir);
	struct skv_tm_f64 *m = NULL;
	struct skv_err err = {0};
	assert_int_equal(skv_tm_new_f64(ck, L, G, &m, &err), 0);
	int32_t tok[2 * 6];
	for (int i = 0; i < 12; i++)
		tok[i] = (int32_t)((i * 97 + 13) % m->dm.V);
	double loss;
	/* at the initialisation with G = 1 only the SwiftKV path differs; make the student clearly
	 * different so the gradient is far from zero */
	perturb(m->param, m->n_param, 0.3);
	assert_int_equal(skv_tm_loss_f64(m, tok, mask, 2, 6, 2.0, true, &loss), 0);
	assert_true(loss > 1e-4);
	double *g = malloc(sizeof(double) * m->n_param);
	memcpy(g, m->grad, sizeof(double) * m->n_param);
	double gmax = 0, emax = 0;
	for (size_t i = 0; i < m->n_param; i++)
		gmax = fmax(gmax, fabs(g[i]));
	for (size_t i = 0; i < m->n_param; i++) {
		double x0 = m->param[i], lp, lm;
		m->param[i] = x0 + FD_H;
		skv_tm_loss_f64(m, tok, mask, 2, 6, 2.0, false, &lp);
		m->param[i] = x0 - FD_H;
		skv_tm_loss_f64(m, tok, mask, 2, 6, 2.0, false, &lm);
		m->param[i] = x0;
		emax = fmax(emax, fabs((lp - lm) / (2 * FD_H) - g[i]));
	}
	print_message("L=%u G=%u %s: %zu parameters, loss %g, max gradient %g, max error %g\n", L, G, extra, m->n_param,
		      loss, gmax, emax);
	assert_true(gmax > 1e-4);
	assert_true(emax <= 1e-6 * gmax);

	/* the float model agrees with the double one (float rounding through a few layers) */
	struct skv_tm_f32 *mf = NULL;
	assert_int_equal(skv_tm_new_f32(ck, L, G, &mf, &err), 0);
	for (size_t i = 0; i < m->n_param; i++)
		mf->param[i] = (float)m->param[i];
	double lf;
	assert_int_equal(skv_tm_loss_f32(mf, tok, mask, 2, 6, 2.0, true, &lf), 0);
	assert_true(fabs(lf - loss) < 1e-4 * loss + 1e-6);
	double ge = 0;
	for (size_t i = 0; i < m->n_param; i++)
		ge = fmax(ge, fabs(mf->grad[i] - g[i]));
	assert_true(ge < 1e-3 * gmax);
	skv_tm_free_f32(mf);
	free(g);
	skv_tm_free_f64(m);
	skv_checkpoint_free(ck);
	tu_rmdir(dir);
	free(dir);
}

static void test_grad_g1(void **state)
{
	(void)state;
	grad_check("", 2, 1, NULL);
}

static void test_grad_g2_bias(void **state)
{
	(void)state;
	/* scored positions only (chat data's assistant tokens) */
	static const uint8_t mask[12] = {0, 1, 1, 0, 0, 1, 1, 1, 0, 0, 0, 1};
	grad_check("--attention-bias --mlp-bias", 2, 2, mask);
}

static void test_grad_l1_g3_tied(void **state)
{
	(void)state;
	grad_check("--tie", 1, 3, NULL);
}

/* The student at its initialisation with G = 1 is not the teacher (its K/V come from the stream
 * leaving layer L-1, not from each later layer's input), and a token outside the vocabulary is
 * refused. */
static void test_logits(void **state)
{
	(void)state;
	char *dir;
	struct skv_checkpoint *ck = open_model("", &dir);
	struct skv_tm_f64 *m = NULL;
	struct skv_err err = {0};
	assert_int_equal(skv_tm_new_f64(ck, 2, 1, &m, &err), 0);
	int32_t tok[8] = {5, 17, 300, 2, 9, 1000, 44, 7};
	size_t V = m->dm.V;
	double *lt = malloc(sizeof(double) * 8 * V), *ls = malloc(sizeof(double) * 8 * V);
	assert_int_equal(skv_tm_logits_f64(m, tok, 1, 8, false, lt), 0);
	assert_int_equal(skv_tm_logits_f64(m, tok, 1, 8, true, ls), 0);
	double diff = 0;
	for (size_t i = 0; i < 8 * V; i++)
		diff = fmax(diff, fabs(lt[i] - ls[i]));
	assert_true(diff > 1e-6);
	/* a mask averages over the positions it keeps: the mean of one-position losses is the loss */
	double all, one, sum = 0, none;
	uint8_t mk[8] = {0};
	assert_int_equal(skv_tm_loss_f64(m, tok, NULL, 1, 8, 2.0, false, &all), 0);
	for (int t = 0; t < 8; t++) {
		memset(mk, 0, sizeof(mk));
		mk[t] = 1;
		assert_int_equal(skv_tm_loss_f64(m, tok, mk, 1, 8, 2.0, false, &one), 0);
		sum += one;
	}
	assert_true(all > 0 && fabs(sum / 8 - all) < 1e-12 * all);
	memset(mk, 0, sizeof(mk));
	assert_int_equal(skv_tm_loss_f64(m, tok, mk, 1, 8, 2.0, true, &none), 0);
	assert_true(none == 0 && m->grad[0] == 0);
	int32_t bad[2] = {1, (int32_t)V};
	double loss;
	assert_int_equal(skv_tm_loss_f64(m, bad, NULL, 1, 2, 2.0, false, &loss), -EINVAL);
	free(lt), free(ls);
	skv_tm_free_f64(m);
	skv_checkpoint_free(ck);
	tu_rmdir(dir);
	free(dir);
}

static void test_refusals(void **state)
{
	(void)state;
	struct skv_model_config c = {.n_layers = 8, .head_dim = 4};
	struct skv_err err = {0};
	assert_int_equal(skv_tm_check(&c, 0, 1, &err), -ERANGE);
	assert_non_null(strstr(err.msg, "--swiftkv-layers 0: must be in 1..7"));
	assert_int_equal(skv_tm_check(&c, 8, 1, &err), -ERANGE);
	assert_int_equal(skv_tm_check(&c, 4, 5, &err), -ERANGE);
	assert_non_null(strstr(err.msg, "--group 5: must be in 1..4"));
	assert_int_equal(skv_tm_check(&c, 5, 2, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "must divide N - L = 8 - 5 = 3"));
	assert_int_equal(skv_tm_check(&c, 4, 4, &err), 0);
	c.swiftkv = 1, c.kv_layers = 4;
	assert_int_equal(skv_tm_check(&c, 4, 1, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "already a SwiftKV checkpoint"));
}

static void test_schedule(void **state)
{
	(void)state;
	/* 100 steps: 5 of warm-up reaching lr, then down to lr / 95 at the last step */
	assert_true(fabs(skv_lr_at(0, 100, 1.0) - 0.2) < 1e-12);
	assert_true(fabs(skv_lr_at(4, 100, 1.0) - 1.0) < 1e-12);
	assert_true(fabs(skv_lr_at(5, 100, 1.0) - 1.0) < 1e-12);
	assert_true(fabs(skv_lr_at(99, 100, 1.0) - 1.0 / 95) < 1e-12);
	/* AdamW's first step moves each parameter by lr against its gradient's sign */
	float p[2] = {1, 1}, g[2] = {0.5f, -3}, m[2] = {0}, v[2] = {0};
	skv_adamw_step(p, g, m, v, 2, 1, 0.01, 0.9, 0.999, 1e-8);
	assert_true(fabsf(p[0] - 0.99f) < 1e-6f && fabsf(p[1] - 1.01f) < 1e-6f);
}

/* The double model against the independent float64 numpy reference of
 * scripts/make-distill-fixtures.py (whole vocabulary at once, its own forward, gradients by its
 * own central differences) on two transformers-made checkpoints. Tolerances: the reference's
 * RoPE frequencies are float64, ours are float32 as transformers computes them (relative
 * difference ~6e-8 in every angle), and its gradients carry the O(1e-10) error of a central
 * difference; the loss must agree to 1e-6 and each gradient sample to 1e-5 of the largest. */
static void numpy_case(const char *name)
{
	const char *src = getenv("SKV_SRCDIR");
	char p[4096];
	struct skv_err err = {0};
	assert_non_null(src);
	snprintf(p, sizeof(p), "%s/tests/fixtures/distill/%s.json", src, name);
	size_t len;
	char *text = tu_slurp(p, &len);
	struct json_object *j = NULL, *v;
	assert_int_equal(skv_json_parse(text, len, p, &j, &err), 0);
	json_object_object_get_ex(j, "teacher", &v);
	snprintf(p, sizeof(p), "%s/tests/fixtures/%s", src, json_object_get_string(v));
	struct skv_checkpoint *ck = NULL;
	struct skv_tm_f64 *m = NULL;
	if (skv_checkpoint_open(p, &ck, &err) < 0)
		fail_msg("%s", err.msg);
	json_object_object_get_ex(j, "L", &v);
	uint32_t L = (uint32_t)json_object_get_int(v);
	json_object_object_get_ex(j, "G", &v);
	uint32_t G = (uint32_t)json_object_get_int(v);
	json_object_object_get_ex(j, "B", &v);
	uint32_t B = (uint32_t)json_object_get_int(v);
	json_object_object_get_ex(j, "S", &v);
	uint32_t S = (uint32_t)json_object_get_int(v);
	json_object_object_get_ex(j, "T", &v);
	double T = json_object_get_double(v);
	assert_int_equal(skv_tm_new_f64(ck, L, G, &m, &err), 0);
	struct skv_tm_tensor *tt;
	size_t nt;
	assert_int_equal(skv_tm_tensors(&m->dm, &tt, &nt), 0);
	for (size_t k = 0; k < nt; k++) /* the reference's move away from the initialisation */
		for (size_t e = 0; e < tt[k].numel; e++)
			m->param[tt[k].offset + e] += 0.1 * sin(0.37 * (double)e + (double)k);
	json_object_object_get_ex(j, "tokens", &v);
	assert_int_equal(json_object_array_length(v), B * S);
	int32_t *tok = malloc(sizeof(int32_t) * B * S);
	for (size_t i = 0; i < B * S; i++)
		tok[i] = json_object_get_int(json_object_array_get_idx(v, i));
	double loss;
	assert_int_equal(skv_tm_loss_f64(m, tok, NULL, B, S, T, true, &loss), 0);
	json_object_object_get_ex(j, "loss", &v);
	double ref = json_object_get_double(v);
	json_object_object_get_ex(j, "gradient", &v);
	size_t ns = json_object_array_length(v);
	double gmax = 0, emax = 0;
	for (size_t i = 0; i < ns; i++)
		gmax = fmax(gmax, fabs(json_object_get_double(json_object_array_get_idx(json_object_array_get_idx(v, i), 2))));
	for (size_t i = 0; i < ns; i++) {
		struct json_object *smp = json_object_array_get_idx(v, i);
		const char *tn = json_object_get_string(json_object_array_get_idx(smp, 0));
		size_t e = (size_t)json_object_get_int64(json_object_array_get_idx(smp, 1)), k = 0;
		while (k < nt && strcmp(tt[k].name, tn))
			k++;
		assert_true(k < nt);
		assert_true(e < tt[k].numel);
		double g = json_object_get_double(json_object_array_get_idx(smp, 2));
		emax = fmax(emax, fabs(m->grad[tt[k].offset + e] - g));
	}
	print_message("%s: loss %.9g (numpy %.9g), %zu gradient samples, max %g, max error %g\n", name, loss, ref, ns, gmax,
		      emax);
	assert_true(ref > 1e-3 && gmax > 1e-3);
	assert_true(fabs(loss - ref) < 1e-6 * ref);
	assert_true(emax < 1e-5 * gmax);
	free(tok), free(tt), free(text);
	json_object_put(j);
	skv_tm_free_f64(m);
	skv_checkpoint_free(ck);
}

static void test_numpy_reference(void **state)
{
	(void)state;
	numpy_case("bias-l1-g1");
	numpy_case("llama3-l1-g2");
}

/* ---- skv-distill ---- */

/* Runs skv-distill with ARGS (stderr into DIR/err.txt); returns its exit status. */
static int distill(const char *dir, const char *args)
{
	return tu_sh("'%s' %s >/dev/null 2>'%s/err.txt'", tu_tool("SKV_DISTILL"), args, dir);
}

static void assert_err_has(const char *dir, const char *what)
{
	char p[4096];
	snprintf(p, sizeof(p), "%s/err.txt", dir);
	char *t = tu_slurp(p, NULL);
	if (!strstr(t, what))
		fail_msg("skv-distill's error '%s' does not say '%s'", t, what);
	free(t);
}

/* Logits of the last of ids (comma-separated) from skv-run, [V]. */
static float *run_logits(const char *model, const char *swiftkv, const char *ids, const char *npy, uint32_t *V)
{
	uint32_t rows;
	assert_int_equal(tu_sh("'%s' --model '%s' --swiftkv %s --prompt-ids %s --max-tokens 1 --ignore-eos --threads 1 "
			       "--logits-out '%s' >/dev/null",
			       tu_tool("SKV_RUN"), model, swiftkv, ids, npy),
			 0);
	float *l = tu_read_npy(npy, &rows, V);
	assert_int_equal(rows, 1);
	return l;
}

/* The student's parameters as written in OUT, into m->param. */
static void load_student(struct skv_tm_f32 *m, const char *out)
{
	struct skv_checkpoint *ck = NULL;
	struct skv_err err = {0};
	struct skv_tm_tensor *t;
	size_t n;
	if (skv_checkpoint_open(out, &ck, &err) < 0)
		fail_msg("%s", err.msg);
	assert_int_equal(ck->config.swiftkv, 1);
	assert_int_equal(skv_tm_tensors(&m->dm, &t, &n), 0);
	for (size_t i = 0; i < n; i++) {
		const struct skv_st_tensor *st = skv_checkpoint_find(ck, t[i].name);
		enum skv_dtype dt;
		assert_non_null(st);
		assert_int_equal(st->numel, t[i].numel);
		assert_int_equal(skv_st_dtype_to_skv(st->dtype, &dt), 0);
		for (size_t e = 0; e < t[i].numel; e++)
			m->param[t[i].offset + e] = skv_load_f32(st->data, dt, e);
	}
	free(t);
	skv_checkpoint_free(ck);
}

static const int32_t probe[] = {1024, 17, 300, 2, 9, 1000, 44, 7, 512, 3};
static const char *probe_ids = "1024,17,300,2,9,1000,44,7,512,3";

/* skv-run's SwiftKV forward of OUT equals the trainer's student forward with OUT's parameters
 * (float, bf16 weights in both: summation order only). */
static void check_served_student(const char *teacher_dir, const char *out, uint32_t L, uint32_t G, const char *tmp)
{
	struct skv_checkpoint *ck = NULL;
	struct skv_tm_f32 *m = NULL;
	struct skv_err err = {0};
	char npy[4096];
	uint32_t V;
	assert_int_equal(skv_checkpoint_open(teacher_dir, &ck, &err), 0);
	assert_int_equal(skv_tm_new_f32(ck, L, G, &m, &err), 0);
	load_student(m, out);
	const uint32_t n = SKV_ARRAY_SIZE(probe);
	float *mine = malloc(sizeof(float) * n * m->dm.V);
	assert_int_equal(skv_tm_logits_f32(m, probe, 1, n, true, mine), 0);
	snprintf(npy, sizeof(npy), "%s/s.npy", tmp);
	float *served = run_logits(out, "on", probe_ids, npy, &V);
	assert_int_equal(V, m->dm.V);
	double e = tu_rel_err(served, mine + (size_t)(n - 1) * V, V);
	print_message("served SwiftKV logits vs the trainer's student: relative error %g\n", e);
	assert_true(e < 1e-4);
	/* and the teacher path of the trainer equals the served original model */
	assert_int_equal(skv_tm_logits_f32(m, probe, 1, n, false, mine), 0);
	float *orig = run_logits(out, "off", probe_ids, npy, &V);
	assert_true(tu_rel_err(orig, mine + (size_t)(n - 1) * V, V) < 1e-4);
	free(orig);
	free(served);
	free(mine);
	skv_tm_free_f32(m);
	skv_checkpoint_free(ck);
}

static void test_tool_steps0(void **state)
{
	(void)state;
	char *teacher = tu_mkmodel("--preset tiny"), *tmp = tu_tmpdir(), out[2048], args[8192], npy[4096];
	snprintf(out, sizeof(out), "%s/student", tmp);
	snprintf(args, sizeof(args), "--teacher '%s' --out '%s' --swiftkv-layers 2 --steps 0 --seq-len 64 --data '%s/model/corpus/prose-en.txt'",
		 teacher, out, getenv("SKV_SRCDIR"));
	assert_int_equal(distill(tmp, args), 0);

	/* config: llama_swiftkv with Snowflake's keys */
	struct skv_checkpoint *t = NULL, *s = NULL;
	struct skv_err err = {0};
	assert_int_equal(skv_checkpoint_open(teacher, &t, &err), 0);
	if (skv_checkpoint_open(out, &s, &err) < 0)
		fail_msg("%s", err.msg);
	assert_int_equal(s->config.swiftkv, 1);
	assert_int_equal(s->config.kv_layers, 2);
	assert_int_equal(s->config.kv_group, 1);
	snprintf(npy, sizeof(npy), "%s/config.json", out);
	char *cfg = tu_slurp(npy, NULL);
	assert_non_null(strstr(cfg, "\"swiftkv\": true"));
	assert_non_null(strstr(cfg, "\"LlamaSwiftKVForCausalLM\""));
	free(cfg);
	/* every teacher tensor byte-identical, the new ones added (1 + 2 q + 2 k + 2 v) */
	for (size_t i = 0; i < t->n_tensors; i++) {
		const struct skv_st_tensor *a = t->sorted[i], *b = skv_checkpoint_find(s, a->name);
		assert_non_null(b);
		assert_int_equal(a->dtype, b->dtype);
		assert_int_equal(a->end - a->begin, b->end - b->begin);
		assert_memory_equal(a->data, b->data, a->end - a->begin);
	}
	assert_int_equal(s->n_tensors, t->n_tensors + 7);
	/* q_proj_swiftkv starts as q_proj, bit for bit (bf16 -> float -> bf16) */
	const struct skv_st_tensor *q = skv_checkpoint_find(t, "model.layers.3.self_attn.q_proj.weight"),
				   *qs = skv_checkpoint_find(s, "model.layers.3.self_attn.q_proj_swiftkv.weight");
	assert_non_null(qs);
	assert_memory_equal(q->data, qs->data, q->end - q->begin);
	skv_checkpoint_free(t);
	skv_checkpoint_free(s);

	/* served with SwiftKV off, the output is the teacher, exactly */
	uint32_t V1, V2;
	snprintf(npy, sizeof(npy), "%s/t.npy", tmp);
	float *lt = run_logits(teacher, "off", probe_ids, npy, &V1);
	float *lo = run_logits(out, "off", probe_ids, npy, &V2);
	assert_int_equal(V1, V2);
	assert_memory_equal(lt, lo, sizeof(float) * V1);
	/* with SwiftKV on, it differs (only the SwiftKV path), and equals the trainer's student */
	float *ls = run_logits(out, "on", probe_ids, npy, &V2);
	assert_true(tu_rel_err(ls, lt, V1) > 1e-4);
	check_served_student(teacher, out, 2, 1, tmp);
	free(lt), free(lo), free(ls);
	tu_rmdir(tmp), tu_rmdir(teacher);
	free(tmp), free(teacher);
}

static void test_tool_refusals(void **state)
{
	(void)state;
	char *teacher = tu_mkmodel("--preset tiny"), *skv = tu_mkmodel("--preset tiny --swiftkv-layers 2");
	char *tmp = tu_tmpdir(), args[8192], small[4096];
	const char *src = getenv("SKV_SRCDIR");
	snprintf(small, sizeof(small), "%s/small.txt", tmp);
	tu_writef(small, "a few words");
	struct {
		const char *model, *opts, *data, *says;
	} cases[] = {
		{skv, "--swiftkv-layers 2", NULL, "already a SwiftKV checkpoint"},
		{teacher, "--swiftkv-layers 4", NULL, "--swiftkv-layers 4: must be in 1..3"},
		{teacher, "--swiftkv-layers 1 --group 2", NULL, "--group 2: must divide N - L = 4 - 1 = 3"},
		{teacher, "--swiftkv-layers 2 --group 3", NULL, "--group 3: must be in 1..2"},
		{teacher, "--swiftkv-layers 2 --seq-len 64", small, "shorter than one sequence of --seq-len 64"},
		{teacher, "--swiftkv-layers 2 --seq-len 64 --batch-tokens 100", NULL, "must be a multiple of --seq-len 64"},
	};
	for (size_t i = 0; i < SKV_ARRAY_SIZE(cases); i++) {
		char data[4096];
		if (cases[i].data)
			snprintf(data, sizeof(data), "%s", cases[i].data);
		else
			snprintf(data, sizeof(data), "%s/model/corpus/prose-en.txt", src);
		snprintf(args, sizeof(args), "--teacher '%s' --out '%s/o%zu' %s --data '%s'", cases[i].model, tmp, i,
			 cases[i].opts, data);
		assert_int_equal(distill(tmp, args), 1);
		assert_err_has(tmp, cases[i].says);
		/* nothing written */
		snprintf(data, sizeof(data), "%s/o%zu", tmp, i);
		assert_int_not_equal(access(data, F_OK), 0);
	}
	tu_rmdir(tmp), tu_rmdir(teacher), tu_rmdir(skv);
	free(tmp), free(teacher), free(skv);
}

/* A short run on a tiny model: the KL on fresh batches (one pass, so every batch is new data)
 * falls, and the written student is what the trainer trained (served logits equal its forward). */
static void test_tool_kl_falls(void **state)
{
	(void)state;
	char *teacher = tu_mkmodel("--preset tiny"), *tmp = tu_tmpdir(), out[2048], args[8192], p[4096];
	snprintf(out, sizeof(out), "%s/student", tmp);
	snprintf(args, sizeof(args),
		 "--teacher '%s' --out '%s' --swiftkv-layers 2 --steps 40 --seq-len 32 --batch-tokens 128 --lr 5e-3 "
		 "--data '%s/model/corpus/prose-en.txt'",
		 teacher, out, getenv("SKV_SRCDIR"));
	assert_int_equal(distill(tmp, args), 0);
	snprintf(p, sizeof(p), "%s/distill-log.jsonl", out);
	char *log = tu_slurp(p, NULL), *line = log;
	double loss[40];
	int n = 0;
	for (; n < 40 && line && *line; n++) {
		int step;
		assert_int_equal(sscanf(line, "{\"step\":%d,\"loss\":%lf", &step, &loss[n]), 2);
		assert_int_equal(step, n + 1);
		line = strchr(line, '\n');
		line = line ? line + 1 : NULL;
	}
	assert_int_equal(n, 40);
	double first = 0, last = 0;
	for (int i = 0; i < 5; i++)
		first += loss[i] / 5, last += loss[35 + i] / 5;
	print_message("KL (T^2-scaled): first 5 steps %g, last 5 steps %g\n", first, last);
	assert_true(first > 0);
	assert_true(last < 0.8 * first);
	free(log);
	check_served_student(teacher, out, 2, 1, tmp);

	/* --continue from the student: its first batch (same seed, same order) scores better than the
	 * undistilled start did; the teacher's tensors stay byte-identical and the old student
	 * tensors are replaced, not duplicated */
	char out2[2048];
	snprintf(out2, sizeof(out2), "%s/again", tmp);
	snprintf(args, sizeof(args),
		 "--teacher '%s' --out '%s' --continue --swiftkv-layers 2 --steps 5 --seq-len 32 --batch-tokens 128 "
		 "--lr 5e-3 --data '%s/model/corpus/prose-en.txt'",
		 out, out2, getenv("SKV_SRCDIR"));
	assert_int_equal(distill(tmp, args), 0);
	snprintf(p, sizeof(p), "%s/distill-log.jsonl", out2);
	log = tu_slurp(p, NULL);
	double again;
	assert_int_equal(sscanf(log, "{\"step\":1,\"loss\":%lf", &again), 1);
	free(log);
	print_message("first batch: undistilled %g, continued %g\n", loss[0], again);
	assert_true(again < 0.8 * loss[0]);
	struct skv_checkpoint *t = NULL, *c2 = NULL;
	struct skv_err err = {0};
	assert_int_equal(skv_checkpoint_open(teacher, &t, &err), 0);
	if (skv_checkpoint_open(out2, &c2, &err) < 0)
		fail_msg("%s", err.msg);
	assert_int_equal(c2->n_tensors, t->n_tensors + 7);
	for (size_t i = 0; i < t->n_tensors; i++) {
		const struct skv_st_tensor *a = t->sorted[i], *b = skv_checkpoint_find(c2, a->name);
		assert_non_null(b);
		assert_memory_equal(a->data, b->data, a->end - a->begin);
	}
	skv_checkpoint_free(t);
	skv_checkpoint_free(c2);
	check_served_student(teacher, out2, 2, 1, tmp);
	/* without --continue a SwiftKV teacher is refused, saying how to continue */
	snprintf(args, sizeof(args), "--teacher '%s' --out '%s/x' --swiftkv-layers 2 --data '%s/model/corpus/prose-en.txt'",
		 out, tmp, getenv("SKV_SRCDIR"));
	assert_int_equal(distill(tmp, args), 1);
	assert_err_has(tmp, "or pass --continue");
	snprintf(args, sizeof(args),
		 "--teacher '%s' --out '%s/x' --continue --swiftkv-layers 1 --data '%s/model/corpus/prose-en.txt'", out, tmp,
		 getenv("SKV_SRCDIR"));
	assert_int_equal(distill(tmp, args), 1);
	assert_err_has(tmp, "has num_key_value_layers 2");
	tu_rmdir(tmp), tu_rmdir(teacher);
	free(tmp), free(teacher);
}

/* A run killed (SIGKILL) after its first saved state and resumed ends with the same student, bit
 * for bit, and the same per-step losses as an uninterrupted run. */
static void test_tool_resume(void **state)
{
	(void)state;
	char *teacher = tu_mkmodel("--preset tiny"), *tmp = tu_tmpdir(), common[4096], p[4096];
	snprintf(common, sizeof(common),
		 "--teacher '%s' --swiftkv-layers 2 --group 2 --steps 200 --seq-len 16 --batch-tokens 64 --save-every 5 "
		 "--data '%s/model/corpus/prose-en.txt'",
		 teacher, getenv("SKV_SRCDIR"));
	char args[8192];
	snprintf(args, sizeof(args), "%s --out '%s/a'", common, tmp);
	assert_int_equal(distill(tmp, args), 0);

	snprintf(args, sizeof(args), "exec '%s' %s --out '%s/b' >/dev/null 2>&1", tu_tool("SKV_DISTILL"), common, tmp);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		execl("/bin/sh", "sh", "-c", args, (char *)NULL);
		_exit(127);
	}
	snprintf(p, sizeof(p), "%s/b/distill-state.bin", tmp);
	for (int i = 0; i < 60000 && access(p, F_OK) != 0; i++)
		usleep(1000);
	kill(pid, SIGKILL);
	int ws;
	assert_int_equal(waitpid(pid, &ws, 0), pid);
	assert_true(WIFSIGNALED(ws)); /* killed mid-run, not finished */
	size_t len;
	char *st = tu_slurp(p, &len);
	uint64_t done;
	memcpy(&done, st + 40, sizeof(done));
	free(st);
	print_message("killed after step %llu of 200\n", (unsigned long long)done);
	assert_true(done >= 5 && done < 200 && done % 5 == 0);

	snprintf(args, sizeof(args), "%s --out '%s/b' --resume", common, tmp);
	assert_int_equal(distill(tmp, args), 0);
	size_t la, lbn;
	snprintf(p, sizeof(p), "%s/a/model-swiftkv.safetensors", tmp);
	char *a = tu_slurp(p, &la);
	snprintf(p, sizeof(p), "%s/b/model-swiftkv.safetensors", tmp);
	char *b = tu_slurp(p, &lbn);
	assert_int_equal(la, lbn);
	assert_memory_equal(a, b, la);
	free(a), free(b);
	/* the logs: 200 steps each, the same loss at every step */
	snprintf(p, sizeof(p), "%s/a/distill-log.jsonl", tmp);
	a = tu_slurp(p, NULL);
	snprintf(p, sizeof(p), "%s/b/distill-log.jsonl", tmp);
	b = tu_slurp(p, NULL);
	char *x = a, *y = b;
	int n = 0;
	for (; *x && *y; n++) {
		char *ex = strstr(x, ",\"grad_norm\""), *ey = strstr(y, ",\"grad_norm\"");
		assert_non_null(ex);
		assert_non_null(ey);
		assert_int_equal(ex - x, ey - y);
		assert_memory_equal(x, y, (size_t)(ex - x)); /* {"step":N,"loss":L */
		x = strchr(x, '\n') + 1, y = strchr(y, '\n') + 1;
	}
	assert_int_equal(n, 200);
	assert_true(!*x && !*y);
	free(a), free(b);

	/* a resume with other options is refused, naming the option */
	snprintf(args, sizeof(args), "%s --out '%s/b' --resume --lr 1e-3", common, tmp);
	assert_int_equal(distill(tmp, args), 1);
	assert_err_has(tmp, "was saved with --lr 0.0002, this run has 0.001");
	snprintf(args, sizeof(args), "%s --out '%s/c' --resume", common, tmp);
	assert_int_equal(distill(tmp, args), 1);
	assert_err_has(tmp, "distill-state.bin: No such file");
	tu_rmdir(tmp), tu_rmdir(teacher);
	free(tmp), free(teacher);
}

/* skv-eval --json of ARGS: the four numbers (kl and top1 -1 when null). */
struct evres {
	long tokens;
	double ppl, kl, top1;
};
static struct evres eval(const char *tmp, const char *args)
{
	char p[4096];
	struct evres e = {0};
	snprintf(p, sizeof(p), "%s/eval.json", tmp);
	assert_int_equal(tu_sh("'%s' %s --json >'%s'", tu_tool("SKV_EVAL"), args, p), 0);
	char *j = tu_slurp(p, NULL);
	assert_int_equal(sscanf(j, "{\"tokens\":%ld,", &e.tokens), 1);
	char *x = strstr(j, "\"ppl\":");
	assert_non_null(x);
	e.ppl = strtod(x + 6, NULL);
	x = strstr(j, "\"kl_vs_teacher\":");
	e.kl = strncmp(x + 16, "null", 4) ? strtod(x + 16, NULL) : -1;
	x = strstr(j, "\"top1_agreement\":");
	e.top1 = strncmp(x + 17, "null", 4) ? strtod(x + 17, NULL) : -1;
	free(j);
	return e;
}

/* Perplexity of the first n_seq sequences of S tokens of FILE under the double teacher model,
 * computed here from its logits (the reference for skv-eval's aggregation). */
static double ref_ppl(const char *model, const char *file, uint32_t S, uint32_t n_seq)
{
	struct skv_checkpoint *ck = NULL;
	struct skv_tm_f64 *m = NULL;
	struct skv_tokenizer *tok = NULL;
	struct skv_err err = {0};
	size_t len;
	char *text = tu_slurp(file, &len);
	int32_t *ids = NULL;
	assert_int_equal(skv_checkpoint_open(model, &ck, &err), 0);
	assert_int_equal(skv_tm_open_f64(ck, &m, &err), 0);
	assert_int_equal(skv_tokenizer_load(model, &tok, &err), 0);
	ssize_t n = skv_tokenizer_encode_alloc(tok, text, len, SKV_TOKENIZER_ADD_SPECIAL | SKV_TOKENIZER_SPECIAL_AS_TEXT,
					       &ids, &err);
	assert_true(n >= (ssize_t)(S * n_seq));
	const uint32_t V = m->dm.V;
	double *z = malloc(sizeof(double) * S * V), nll = 0;
	for (uint32_t q = 0; q < n_seq; q++) {
		assert_int_equal(skv_tm_logits_f64(m, ids + q * S, 1, S, false, z), 0);
		for (uint32_t i = 0; i + 1 < S; i++) {
			double mx = -INFINITY, sum = 0;
			for (uint32_t v = 0; v < V; v++)
				mx = fmax(mx, z[(size_t)i * V + v]);
			for (uint32_t v = 0; v < V; v++)
				sum += exp(z[(size_t)i * V + v] - mx);
			nll += mx + log(sum) - z[(size_t)i * V + ids[q * S + i + 1]];
		}
	}
	free(z), free(ids), free(text);
	skv_tokenizer_free(tok);
	skv_tm_free_f64(m);
	skv_checkpoint_free(ck);
	return exp(nll / (n_seq * (S - 1.0)));
}

static void test_tool_eval(void **state)
{
	(void)state;
	char *teacher = tu_mkmodel("--preset tiny"), *tmp = tu_tmpdir(), args[8192], held[4096];
	const char *src = getenv("SKV_SRCDIR");
	/* trained on prose, evaluated on text it never saw */
	snprintf(held, sizeof(held), "%s/model/corpus/world.txt", src);
	snprintf(args, sizeof(args),
		 "--teacher '%s' --out '%s/s0' --swiftkv-layers 2 --steps 0 --seq-len 32 --data '%s/model/corpus/prose-en.txt'",
		 teacher, tmp, src);
	assert_int_equal(distill(tmp, args), 0);
	snprintf(args, sizeof(args),
		 "--teacher '%s' --out '%s/s1' --swiftkv-layers 2 --steps 40 --seq-len 32 --batch-tokens 128 --lr 5e-3 "
		 "--data '%s/model/corpus/prose-en.txt'",
		 teacher, tmp, src);
	assert_int_equal(distill(tmp, args), 0);

	/* the teacher against itself */
	snprintf(args, sizeof(args), "--model '%s' --teacher '%s' --data '%s' --seq-len 64", teacher, teacher, held);
	struct evres t = eval(tmp, args);
	assert_true(t.tokens > 1000 && t.tokens % 64 == 0);
	assert_true(t.kl == 0 && t.top1 == 1);
	/* perplexity as computed here from the double model's logits */
	snprintf(args, sizeof(args), "--model '%s' --data '%s' --seq-len 64 --max-tokens 200", teacher, held);
	struct evres t3 = eval(tmp, args);
	assert_int_equal(t3.tokens, 192);
	assert_true(t3.kl == -1 && t3.top1 == -1);
	double ref = ref_ppl(teacher, held, 64, 3);
	assert_true(fabs(t3.ppl - ref) < 1e-4 * ref);
	/* the undistilled student: with SwiftKV off it is the teacher; on, it is not */
	snprintf(args, sizeof(args), "--model '%s/s0' --swiftkv off --teacher '%s' --data '%s' --seq-len 64", tmp, teacher,
		 held);
	struct evres off = eval(tmp, args);
	assert_true(off.ppl == t.ppl && off.kl == 0 && off.top1 == 1);
	snprintf(args, sizeof(args), "--model '%s/s0' --teacher '%s' --data '%s' --seq-len 64", tmp, teacher, held);
	struct evres s0 = eval(tmp, args);
	snprintf(args, sizeof(args), "--model '%s/s1' --teacher '%s' --data '%s' --seq-len 64", tmp, teacher, held);
	struct evres s1 = eval(tmp, args);
	print_message("held-out KL to the teacher: undistilled %g (top-1 %.3f), distilled %g (top-1 %.3f)\n", s0.kl,
		      s0.top1, s1.kl, s1.top1);
	assert_true(s0.kl > 0);
	assert_true(s1.kl < 0.8 * s0.kl);
	assert_true(s1.top1 > s0.top1);
	/* refusals */
	snprintf(args, sizeof(args), "--model '%s' --swiftkv on --data '%s'", teacher, held);
	assert_int_not_equal(tu_sh("'%s' %s 2>/dev/null", tu_tool("SKV_EVAL"), args), 0);
	snprintf(args, sizeof(args), "--model '%s' --data '%s' --seq-len 64 --max-tokens 63", teacher, held);
	assert_int_not_equal(tu_sh("'%s' %s 2>/dev/null", tu_tool("SKV_EVAL"), args), 0);
	tu_rmdir(tmp), tu_rmdir(teacher);
	free(tmp), free(teacher);
}

/* Chat data: the scored positions are exactly those whose next token is an assistant message's
 * (its content and the end-of-turn token), in a multi-turn conversation with a system message;
 * plain text is scored everywhere; bad lines are refused naming the file and the line. */
static void test_chat_data(void **state)
{
	(void)state;
	char *model = tu_mkmodel("--preset tiny"), *tmp = tu_tmpdir(), chat[2048], text[2048], bad[2048];
	struct skv_tokenizer *tok = NULL;
	struct skv_err err = {0};
	assert_int_equal(skv_tokenizer_load(model, &tok, &err), 0);
	snprintf(chat, sizeof(chat), "%s/c.jsonl", tmp);
	snprintf(text, sizeof(text), "%s/t.txt", tmp);
	tu_writef(chat, "{\"messages\": [{\"role\": \"user\", \"content\": \"the cat\"}, {\"role\": \"assistant\", "
			"\"content\": \"sat on the mat\"}]}\n\n"
			"{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": "
			"\"why\"}, {\"role\": \"assistant\", \"content\": \"because\"}, {\"role\": \"user\", \"content\": "
			"\"more\"}, {\"role\": \"assistant\", \"content\": \"no more\"}]}\n");
	tu_writef(text, "plain text");
	const char *files[] = {text, chat};
	struct skv_tm_data d = {0};
	if (skv_tm_data_read(model, tok, 1280, files, 2, &d, &err) < 0)
		fail_msg("%s", err.msg);
	assert_int_equal(d.conversations, 2);
	assert_int_equal(d.tok[0], 1024); /* BOS before the text */
	/* the scored runs of the chat part, decoded */
	size_t i = 0;
	while (d.tok[i] != 1024 || i == 0) /* to the first conversation's BOS (rendered by the template) */
		assert_int_equal(d.mask[i++], 1);
	const char *want[] = {"sat on the mat<|eot_id|>", "because<|eot_id|>", "no more<|eot_id|>"};
	size_t runs = 0;
	struct skv_tokenizer_ws *ws = NULL;
	assert_int_equal(skv_tokenizer_ws_new(tok, &ws), 0);
	while (i < d.n) {
		if (!d.mask[i]) {
			i++;
			continue;
		}
		size_t j = i;
		while (j < d.n && d.mask[j])
			j++;
		const char *out;
		assert_true(j < d.n || j == d.n); /* the last scored position predicts the last token */
		ssize_t len = skv_tokenizer_decode(tok, ws, d.tok + i + 1, j - i, 0, &out, &err);
		assert_true(len >= 0);
		assert_true(runs < 3);
		if (strcmp(out, want[runs]))
			fail_msg("scored run %zu decodes to '%s', not '%s'", runs, out, want[runs]);
		runs++;
		i = j;
	}
	assert_int_equal(runs, 3);
	/* the conversation ends with the last assistant's end-of-turn: the position before it is the
	 * last scored one, and the very last position (nothing after it in this file) is not */
	assert_int_equal(d.mask[d.n - 1], 0);
	skv_tokenizer_ws_free(ws);
	skv_tm_data_free(&d);

	struct {
		const char *line, *says;
	} cases[] = {
		{"{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}", "line 2: no assistant message"},
		{"{\"msgs\": []}", "line 2: not an object with a \"messages\" array"},
		{"{\"messages\": [", "line 2"},
	};
	for (size_t k = 0; k < SKV_ARRAY_SIZE(cases); k++) {
		snprintf(bad, sizeof(bad), "%s/b.jsonl", tmp);
		tu_writef(bad, "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", "
			       "\"content\": \"b\"}]}\n%s\n",
			  cases[k].line);
		const char *bf[] = {bad};
		struct skv_tm_data e = {0};
		assert_true(skv_tm_data_read(model, tok, 1280, bf, 1, &e, &err) < 0);
		if (!strstr(err.msg, cases[k].says) || !strstr(err.msg, "b.jsonl"))
			fail_msg("'%s' does not name the file and say '%s'", err.msg, cases[k].says);
		skv_tm_data_free(&e);
	}
	/* a vocabulary smaller than the tokenizer's ids: another model's tokenizer */
	const char *tf[] = {text};
	struct skv_tm_data e = {0};
	assert_int_equal(skv_tm_data_read(model, tok, 100, tf, 1, &e, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "the tokenizer does not belong to this model"));
	skv_tm_data_free(&e);

	/* skv-distill runs on it */
	char args[16384];
	snprintf(args, sizeof(args),
		 "--teacher '%s' --out '%s/s' --swiftkv-layers 2 --steps 3 --seq-len 8 --batch-tokens 16 --data '%s' "
		 "--data '%s'",
		 model, tmp, chat, text);
	assert_int_equal(distill(tmp, args), 0);
	assert_err_has(tmp, "2 conversations, ");
	skv_tokenizer_free(tok);
	tu_rmdir(tmp), tu_rmdir(model);
	free(tmp), free(model);
}

/* --self-generate: each conversation of OUT/self-generated.jsonl is a prompt line and the answer
 * skv-run --chat gives greedily with the same token budget (the serving engine, independently
 * driven). */
static void test_tool_self_generate(void **state)
{
	(void)state;
	char *model = tu_mkmodel("--preset tiny"), *tmp = tu_tmpdir(), prompts[2048], args[8192], p[4096];
	const char *lines[] = {"the cat sat", "what is the world", "hello there"};
	snprintf(prompts, sizeof(prompts), "%s/prompts.txt", tmp);
	tu_writef(prompts, "%s\n\n%s\r\n%s", lines[0], lines[1], lines[2]);
	snprintf(args, sizeof(args),
		 "--teacher '%s' --out '%s/s' --swiftkv-layers 2 --prompts '%s' --self-generate 12 --steps 2 --seq-len 16 "
		 "--batch-tokens 32",
		 model, tmp, prompts);
	assert_int_equal(distill(tmp, args), 0);
	assert_err_has(tmp, "the teacher answered 3 prompts");
	snprintf(p, sizeof(p), "%s/s/self-generated.jsonl", tmp);
	char *gen = tu_slurp(p, NULL), *line = gen;
	for (int i = 0; i < 3; i++) {
		char *end = strchr(line, '\n');
		assert_non_null(end);
		*end = 0;
		struct json_object *o = NULL, *msgs;
		struct skv_err err = {0};
		assert_int_equal(skv_json_parse(line, strlen(line), "self-generated.jsonl", &o, &err), 0);
		assert_true(json_object_object_get_ex(o, "messages", &msgs));
		assert_int_equal(json_object_array_length(msgs), 2);
		struct json_object *u = json_object_array_get_idx(msgs, 0), *a = json_object_array_get_idx(msgs, 1), *v;
		json_object_object_get_ex(u, "content", &v);
		assert_string_equal(json_object_get_string(v), lines[i]);
		json_object_object_get_ex(a, "role", &v);
		assert_string_equal(json_object_get_string(v), "assistant");
		json_object_object_get_ex(a, "content", &v);
		char out[2048];
		snprintf(out, sizeof(out), "%s/run.txt", tmp);
		assert_int_equal(tu_sh("'%s' --model '%s' --chat --prompt '%s' --max-tokens 12 >'%s'", tu_tool("SKV_RUN"), model,
				       lines[i], out),
				 0);
		size_t len;
		char *want = tu_slurp(out, &len);
		assert_true(len > 0 && want[len - 1] == '\n');
		want[len - 1] = 0;
		assert_string_equal(json_object_get_string(v), want);
		free(want);
		json_object_put(o);
		line = end + 1;
	}
	assert_int_equal(*line, 0);
	free(gen);
	/* the two go together */
	snprintf(args, sizeof(args), "--teacher '%s' --out '%s/t' --swiftkv-layers 2 --prompts '%s'", model, tmp, prompts);
	assert_int_equal(distill(tmp, args), 2);
	assert_err_has(tmp, "--self-generate N and --prompts FILE go together");
	tu_rmdir(tmp), tu_rmdir(model);
	free(tmp), free(model);
}

/* --continue --steps 0 on a skv-mkmodel SwiftKV checkpoint (teacher and student tensors in one
 * file): the file is written again without the student tensors, whose values come back
 * unchanged in model-swiftkv.safetensors; every tensor is bit-identical to the input. */
static void test_tool_continue_mixed(void **state)
{
	(void)state;
	char *in = tu_mkmodel("--preset tiny --swiftkv-layers 2 --group 2"), *tmp = tu_tmpdir(), args[8192], out[2048];
	snprintf(out, sizeof(out), "%s/o", tmp);
	snprintf(args, sizeof(args),
		 "--teacher '%s' --out '%s' --continue --swiftkv-layers 2 --group 2 --steps 0 --seq-len 32 "
		 "--data '%s/model/corpus/prose-en.txt'",
		 in, out, getenv("SKV_SRCDIR"));
	assert_int_equal(distill(tmp, args), 0);
	struct skv_checkpoint *a = NULL, *b = NULL;
	struct skv_err err = {0};
	assert_int_equal(skv_checkpoint_open(in, &a, &err), 0);
	if (skv_checkpoint_open(out, &b, &err) < 0)
		fail_msg("%s", err.msg);
	assert_int_equal(a->n_tensors, b->n_tensors);
	size_t moved = 0;
	for (size_t i = 0; i < a->n_tensors; i++) {
		const struct skv_st_tensor *x = a->sorted[i], *y = skv_checkpoint_find(b, x->name);
		assert_non_null(y);
		assert_int_equal(x->end - x->begin, y->end - y->begin);
		assert_memory_equal(x->data, y->data, x->end - x->begin);
		if (skv_tm_is_student_tensor(x->name)) {
			assert_string_equal(y->file, "model-swiftkv.safetensors");
			moved++;
		}
	}
	assert_int_equal(moved, 1 + 2 + 2); /* norm, two q, one owner's k and v */
	skv_checkpoint_free(a);
	skv_checkpoint_free(b);
	tu_rmdir(tmp), tu_rmdir(in);
	free(tmp), free(in);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_linear),	    cmocka_unit_test(test_rmsnorm),	  cmocka_unit_test(test_rope),
		cmocka_unit_test(test_attention),   cmocka_unit_test(test_swiglu),	  cmocka_unit_test(test_kl),
		cmocka_unit_test(test_init),	    cmocka_unit_test(test_grad_g1),	  cmocka_unit_test(test_grad_g2_bias),
		cmocka_unit_test(test_grad_l1_g3_tied), cmocka_unit_test(test_logits), cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_schedule), cmocka_unit_test(test_numpy_reference),
		cmocka_unit_test(test_tool_steps0), cmocka_unit_test(test_tool_refusals),
		cmocka_unit_test(test_tool_kl_falls), cmocka_unit_test(test_tool_resume),
		cmocka_unit_test(test_tool_eval),
		cmocka_unit_test(test_chat_data), cmocka_unit_test(test_tool_self_generate),
		cmocka_unit_test(test_tool_continue_mixed),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
