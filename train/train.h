/* train.h: the CPU reference of SwiftKV distillation (docs/distill.md, docs/swiftkv.md section 5).
 *
 * A teacher/student pair made from one plain Llama checkpoint: the teacher is the original model
 * (frozen), the student the SwiftKV model of the same weights with its own trainable tensors
 * (norm_swiftkv, q_proj_swiftkv of layers >= L, k/v_proj_swiftkv of the group owners, their
 * biases). One call runs the teacher forward (no activations kept), the student forward with
 * every token through every layer (activations kept), the KL loss in vocabulary tiles, and the
 * backward pass to the trainable tensors.
 *
 * Every op and the whole model exist twice, in float (the trainer) and in double (the finite
 * difference checks of tests/test-distill.c): train-tmpl.c is compiled once per precision, its
 * names suffixed _f32 and _f64. Arithmetic is plain C loops plus BLAS (sgemm/dgemm) for the
 * matrix products.
 *
 * Layout: activations are row-major [tokens, features]; a batch is B packed sequences of S tokens
 * each, positions 0..S-1 in every sequence, attention causal inside a sequence only.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "safetensors.h"
#include "skv-base.h"

/* Shapes of a teacher/student pair. */
struct skv_tm_dims {
	uint32_t N, H, inter, nh, nkv, d, V;
	uint32_t L, G, F; /* SwiftKV layers, group size, later groups (N - L) / G */
	bool tie, abias, mbias;
	double eps;
};

/* Checks L and G against the teacher (1 <= L < N, 1 <= G <= N - L, (N - L) % G == 0) and that
 * the teacher is a plain llama checkpoint; err names the option and the limit. */
int skv_tm_check(const struct skv_model_config *c, uint32_t L, uint32_t G, struct skv_err *err);

#define SKV_TM_DECLARE(R, P)                                                                               \
	struct skv_tm_layer_##P {                                                                          \
		const R *in_norm, *wq, *bq, *wk, *bk, *wv, *bv, *wo, *bo, *post_norm;                      \
		const R *wg, *bg, *wu, *bu, *wd, *bd;                                                      \
	};                                                                                                 \
	struct skv_tm_##P {                                                                                \
		struct skv_tm_dims dm;                                                                     \
		R *inv_freq; /* [d / 2] */                                                                 \
		R *frozen;   /* every frozen tensor, one allocation */                                     \
		const R *embed, *head, *norm;                                                              \
		struct skv_tm_layer_##P *layer; /* [N] */                                                  \
		/* trainable: one contiguous vector, and its gradient in the same layout */                \
		size_t n_param;                                                                            \
		R *param, *grad;                                                                           \
		R *norm_s;                 /* [H] */                                                       \
		R **wq_s, **bq_s;          /* [N - L]: layer L + k */                                      \
		R **wk_s, **bk_s, **wv_s, **bv_s; /* [F]: owner L + j * G */                               \
	};                                                                                                 \
	/* The pair from a teacher checkpoint, the student initialised as docs/swiftkv.md says. */         \
	int skv_tm_new_##P(const struct skv_checkpoint *ck, uint32_t L, uint32_t G, struct skv_tm_##P **ret, \
			   struct skv_err *err);                                                           \
	/* Any checkpoint for evaluation: a llama_swiftkv one with its own L, G and SwiftKV tensors; a  \
	 * plain one as a teacher (its student part initialised with L = N - 1, G = 1). */                 \
	int skv_tm_open_##P(const struct skv_checkpoint *ck, struct skv_tm_##P **ret, struct skv_err *err);   \
	void skv_tm_free_##P(struct skv_tm_##P *m);                                                        \
	/* Loss (T^2 KL(teacher || student) of softmax(logits / T), mean over the B*S positions, or    \
	 * over those whose mask byte is non-zero when mask is given) of tokens [B*S]; with grad,       \
	 * m->grad is set (not accumulated) to its gradient. No position scored: loss 0, gradient 0.   \
	 * -EINVAL for a token outside the vocabulary, -ENOMEM. */                                      \
	int skv_tm_loss_##P(struct skv_tm_##P *m, const int32_t *tokens, const uint8_t *mask, uint32_t B,       \
			    uint32_t S, double T, bool grad, double *ret_loss);                            \
	/* Logits [B*S, V] of the teacher (student false) or the student (true). */                        \
	int skv_tm_logits_##P(struct skv_tm_##P *m, const int32_t *tokens, uint32_t B, uint32_t S, bool student, \
			      R *logits);                                                                  \
	/* The ops, exported for the gradient checks. Backward ops accumulate (+=) into their        \
	 * gradients; a NULL gradient is not computed. */                                             \
	void skv_op_linear_fwd_##P(const R *x, const R *w, const R *b, R *y, uint32_t n, uint32_t in,      \
				   uint32_t out);                                                          \
	void skv_op_linear_bwd_##P(const R *x, const R *w, const R *dy, R *dx, R *dw, R *db, uint32_t n,   \
				   uint32_t in, uint32_t out);                                             \
	void skv_op_rmsnorm_fwd_##P(const R *x, const R *w, R *y, R *rinv, uint32_t n, uint32_t h, double eps); \
	void skv_op_rmsnorm_bwd_##P(const R *x, const R *w, const R *rinv, const R *dy, R *dx, R *dw, uint32_t n, \
				    uint32_t h);                                                           \
	/* In place on x [n, heads, d]; backward rotates by the opposite angle. */                        \
	void skv_op_rope_##P(R *x, uint32_t n, uint32_t heads, uint32_t d, const R *inv_freq, uint32_t S,    \
			     bool backward);                                                               \
	/* q [B*S, nh*d], k/v [B*S, nkv*d], out [B*S, nh*d], p [B, nh, S, S] (saved probabilities). */  \
	void skv_op_attn_fwd_##P(const R *q, const R *k, const R *v, R *out, R *p, uint32_t B, uint32_t S,  \
				 uint32_t nh, uint32_t nkv, uint32_t d);                                   \
	void skv_op_attn_bwd_##P(const R *q, const R *k, const R *v, const R *p, const R *dout, R *dq, R *dk, \
				 R *dv, uint32_t B, uint32_t S, uint32_t nh, uint32_t nkv, uint32_t d);    \
	/* h = silu(g) * u over n values. */                                                              \
	void skv_op_swiglu_fwd_##P(const R *g, const R *u, R *h, size_t n);                              \
	void skv_op_swiglu_bwd_##P(const R *g, const R *u, const R *dh, R *dg, R *du, size_t n);          \
	/* Sum over the n rows (those whose mask byte is non-zero, when mask is given) of              \
	 * T^2 KL(softmax(ht W^T / T) || softmax(hs W^T / T)), W [V, h], in vocabulary tiles of `tile` \
	 * columns (never n x V at once). With dhs, adds scale times the gradient of that sum with     \
	 * respect to hs. */                                                                            \
	double skv_op_kl_##P(const R *hs, const R *ht, const R *w, const uint8_t *mask, uint32_t n, uint32_t h,  \
			     uint32_t V, double T, uint32_t tile, R *dhs, double scale);

SKV_TM_DECLARE(float, f32)
SKV_TM_DECLARE(double, f64)

static inline void skv_tm_freep_f32(struct skv_tm_f32 **p) { skv_tm_free_f32(*p); }
static inline void skv_tm_freep_f64(struct skv_tm_f64 **p) { skv_tm_free_f64(*p); }

/* The student's trainable tensors, by checkpoint name, in the parameter vector's order. */
struct skv_tm_tensor {
	char name[96];
	uint32_t ndim;
	uint64_t shape[2];
	size_t offset, numel; /* into param */
};
/* Lists them into *ret (malloc'ed, *ret_n entries). */
int skv_tm_tensors(const struct skv_tm_dims *dm, struct skv_tm_tensor **ret, size_t *ret_n);

/* Whether a tensor name is one of the student's (norm_swiftkv, *_proj_swiftkv.*). */
bool skv_tm_is_student_tensor(const char *name);

/* Writes the student as a llama_swiftkv checkpoint in OUT (which must exist): the teacher's
 * safetensors files copied byte for byte (a llama_swiftkv teacher's own student tensors left
 * out, its files holding them written again with the other tensors' bytes), the trainable tensors (in the dtype of the teacher's
 * q_proj) in model-swiftkv.safetensors, model.safetensors.index.json naming every tensor, the
 * teacher's config.json with model_type llama_swiftkv, num_key_value_layers, key_value_group_size
 * and swiftkv set, and the tokenizer and generation files copied. */
int skv_tm_write_student(const struct skv_checkpoint *teacher, const struct skv_tm_dims *dm, const float *param,
			 const char *out, struct skv_err *err);

/* Distillation data: the tokens of every file, concatenated, and a loss mask. */
struct skv_tm_data {
	int32_t *tok;
	uint8_t *mask; /* 1: position i is scored (token i + 1 is text, or an assistant's) */
	size_t n, cap;
	size_t conversations; /* of chat data */
};
struct skv_tokenizer;
/* Appends each file: plain UTF-8 text (BOS in front, every position scored), or FILE.jsonl with
 * one {"messages": [...]} conversation a line (blank lines skipped), rendered with MODEL's chat
 * template and scored only where the next token belongs to an assistant message (its content and
 * the template's end-of-turn token). Errors name the file, the line and the rule; a token id at
 * or above vocab is refused (a tokenizer of another model). */
int skv_tm_data_read(const char *model, const struct skv_tokenizer *tok, uint32_t vocab, const char *const *files,
		     size_t n_files, struct skv_tm_data *d, struct skv_err *err);
void skv_tm_data_free(struct skv_tm_data *d);

/* AdamW (no weight decay) over n parameters: moments m, v; step counts from 1. */
void skv_adamw_step(float *param, const float *grad, float *m, float *v, size_t n, uint64_t step, double lr,
		    double beta1, double beta2, double eps);
/* The schedule: linear warm-up over the first ceil(5% of total) steps, then linear decay to 0. */
double skv_lr_at(uint64_t step, uint64_t total, double lr);
