/* local.c: a model loaded and run inside one process (see local.h). */
#include "local.h"

#include <stdio.h>
#include <string.h>

int skv_backend_open(const char *name, unsigned threads, struct skv_backend **ret, struct skv_err *err)
{
	if (!name || !strcmp(name, "cpu"))
		return skv_backend_cpu_new(threads, ret, err);
	if (!strcmp(name, "cuda"))
		return skv_backend_cuda_new(0, ret, err);
	return skv_err_set(err, -EINVAL, "backend \"%s\" is unknown (cpu and cuda are)", name);
}

void skv_local_close(struct skv_local *l)
{
	if (!l)
		return;
	skv_sched_free(l->sched);
	skv_engine_free(l->engine);
	if (l->be) {
		if (l->kv)
			l->be->ops->free(l->be, l->kv);
		if (l->weights && l->weights != (char *)l->image + (l->hdr ? l->hdr->data_offset : 0))
			l->be->ops->free(l->be, l->weights);
		l->be->ops->destroy(l->be);
	}
	free(l->image);
	skv_checkpoint_free(l->ckpt);
	free(l);
}

int skv_local_open(const struct skv_local_params *p, struct skv_local **ret, struct skv_err *err)
{
	struct skv_local *l = calloc(1, sizeof(*l));
	struct skv_image_plan *plan = NULL;
	int r;

	if (!l)
		return skv_err_set(err, -ENOMEM, "out of memory");
	r = skv_backend_open(p->backend, p->threads, &l->be, err);
	if (r < 0)
		goto fail;
	r = skv_checkpoint_open(p->model_dir, &l->ckpt, err);
	if (r < 0)
		goto fail;
	const struct skv_model_config *c = &l->ckpt->config;
	bool on = p->swiftkv < 0 ? c->swiftkv != 0 : p->swiftkv != 0;
	if (on && !c->swiftkv) {
		r = skv_err_set(err, -EINVAL, "%s: swiftkv on needs a llama_swiftkv checkpoint (this one is llama)",
				p->model_dir);
		goto fail;
	}
	r = skv_image_plan_new(l->ckpt, l->be->ops->w_dtype, on, &plan, err);
	if (r < 0)
		goto fail;
	l->image = malloc(plan->header.total_size);
	if (!l->image) {
		r = skv_err_set(err, -ENOMEM, "cannot allocate %llu bytes for the weights image",
				(unsigned long long)plan->header.total_size);
		goto fail;
	}
	r = skv_image_fill(plan, l->image, NULL, NULL, err);
	if (r < 0)
		goto fail;
	l->hdr = l->image;
	if (!strcmp(l->be->ops->name, "cpu")) {
		l->weights = (char *)l->image + l->hdr->data_offset;
	} else {
		r = l->be->ops->alloc(l->be, l->hdr->data_size, &l->weights);
		if (r < 0) {
			skv_err_set(err, r, "cannot allocate %llu bytes of weights on the %s backend",
				    (unsigned long long)l->hdr->data_size, l->be->ops->name);
			goto fail;
		}
		r = l->be->ops->upload(l->be, l->weights, (char *)l->image + l->hdr->data_offset, l->hdr->data_size);
		if (r < 0) {
			skv_err_set(err, r, "cannot upload the weights");
			goto fail;
		}
	}

	struct skv_engine_params *ep = &l->ep;
	ep->be = l->be;
	ep->image = l->hdr;
	ep->weights = l->weights;
	ep->keep_logits = p->keep_logits;
	ep->no_graphs = p->no_graphs;
	ep->block_size = p->block_size ? p->block_size : 16;
	ep->max_batch_tokens = p->max_batch_tokens ? p->max_batch_tokens : 2048;
	ep->max_seqs = p->max_seqs ? p->max_seqs : 16;
	ep->max_context = p->max_context ? p->max_context : SKV_MIN(c->max_position, 8192u);
	if (ep->max_context > c->max_position) {
		r = skv_err_set(err, -EINVAL, "context %u exceeds the model's max_position_embeddings (%u)",
				ep->max_context, c->max_position);
		goto fail;
	}
	ep->num_blocks = p->num_blocks ? p->num_blocks : ep->max_seqs * SKV_DIV_UP(ep->max_context, ep->block_size);
	size_t kv_bytes = skv_engine_kv_bytes(l->hdr, l->be->ops->kv_dtype, ep->num_blocks, ep->block_size);
	if (!kv_bytes) {
		r = skv_err_set(err, -EOVERFLOW, "KV arena size overflows");
		goto fail;
	}
	r = l->be->ops->alloc(l->be, kv_bytes, &l->kv);
	if (r < 0) {
		skv_err_set(err, r, "cannot allocate %zu bytes of KV arena", kv_bytes);
		goto fail;
	}
	ep->kv_arena = l->kv;
	r = skv_engine_new(ep, &l->engine, err);
	if (r < 0)
		goto fail;
	struct skv_sched_params sp = {
		.num_blocks = ep->num_blocks,
		.block_size = ep->block_size,
		.max_batch_tokens = ep->max_batch_tokens,
		.mixed_batch_tokens = p->mixed_batch_tokens,
		.max_seqs = ep->max_seqs,
		.max_context = ep->max_context,
		.admission = p->admission,
	};
	r = skv_sched_new(&sp, c, &l->sched, err);
	if (r < 0)
		goto fail;
	skv_image_plan_free(plan);
	*ret = l;
	return 0;
fail:
	skv_image_plan_free(plan);
	skv_local_close(l);
	return r;
}
