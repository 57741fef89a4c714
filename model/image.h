/* image.h: the engine's weights image, built once from a checkpoint and shared read-only.
 *
 * An image is the checkpoint converted to the layout the engine runs: one storage dtype (fp32
 * for the CPU backend, bf16 for CUDA), projections that run together packed into one matrix
 * (q|k|v, gate|up, and for SwiftKV every later group's k|v), each tensor aligned to 256 bytes.
 * It is built for one forward mode: SwiftKV on (layers >= L carry only q_proj_swiftkv, plus
 * norm_swiftkv and the packed k|v) or off (every layer carries its original q|k|v).
 *
 * Layout of a host image (what skvd seals in a memfd): the header, the entry table, then the
 * data at data_offset. Everything is offsets, never pointers. skv_image_check validates a mapped
 * image from an untrusted or stale source before anything reads it.
 */
#pragma once

#include "model-config.h"
#include "safetensors.h"
#include "skv-base.h"
#include "skv-dtype.h"

#define SKV_IMAGE_MAGIC 0x574b5653u /* "SKVW" */
#define SKV_IMAGE_VERSION 1u
#define SKV_IMAGE_ALIGN 256u

/* What a tensor of the image is. Per-layer kinds are indexed by layer; globals use layer 0. */
enum skv_wkind {
	SKV_W_EMBED = 0,     /* [vocab, H] */
	SKV_W_FINAL_NORM,    /* [H] */
	SKV_W_LM_HEAD,	     /* [vocab, H]; absent when tied (the engine uses EMBED) */
	SKV_W_NORM_SKV,	     /* [H] norm_swiftkv (SwiftKV on only) */
	SKV_W_KV_SKV,	     /* [F * 2 * nkv * d, H]: group j's k rows then v rows, j = 0..F-1 */
	SKV_W_KV_SKV_BIAS,   /* [F * 2 * nkv * d] (attention_bias only) */
	SKV_W_ATTN_NORM,     /* [H] input_layernorm */
	SKV_W_QKV,	     /* full layer: [(nh + 2 nkv) d, H] q|k|v; SwiftKV layer: [nh d, H] q_swiftkv */
	SKV_W_QKV_BIAS,	     /* matching bias (attention_bias only) */
	SKV_W_O,	     /* [H, nh d] */
	SKV_W_O_BIAS,	     /* [H] (attention_bias only) */
	SKV_W_MLP_NORM,	     /* [H] post_attention_layernorm */
	SKV_W_GATE_UP,	     /* [2 I, H] gate|up */
	SKV_W_GATE_UP_BIAS,  /* [2 I] (mlp_bias only) */
	SKV_W_DOWN,	     /* [H, I] */
	SKV_W_DOWN_BIAS,     /* [H] (mlp_bias only) */
	SKV_W__COUNT,
};

struct skv_image_entry {
	uint32_t kind;	 /* enum skv_wkind */
	uint32_t layer;	 /* layer index for per-layer kinds, 0 otherwise */
	uint64_t rows;	 /* 1 for vectors */
	uint64_t cols;
	uint64_t offset; /* from the start of the data, SKV_IMAGE_ALIGN-aligned */
	uint64_t nbytes;
};
_Static_assert(sizeof(struct skv_image_entry) == 40, "image entry is pinned");

struct skv_image_header {
	uint32_t magic;	      /* SKV_IMAGE_MAGIC */
	uint32_t version;     /* SKV_IMAGE_VERSION */
	uint32_t header_size; /* sizeof(struct skv_image_header) */
	uint32_t n_entries;
	uint64_t data_offset; /* of the data from the start of the image, page-aligned */
	uint64_t data_size;   /* bytes of data */
	uint64_t total_size;  /* data_offset + data_size */
	uint32_t dtype;	      /* enum skv_dtype of every tensor */
	uint32_t swiftkv_on;  /* the forward mode this image was built for */
	uint32_t kv_layers;   /* L in effect (n_layers when off) */
	uint32_t kv_group;    /* G in effect (1 when off) */
	uint32_t cache_layers; /* L + (N - L) / G */
	uint32_t pad0;
	struct skv_model_config config;
};

/* The plan of an image: header fields and entries, and for each entry the checkpoint tensors
 * (not owned) stacked back to back to make it. */
#define SKV_IMAGE_MAX_SOURCES 256 /* KV_SKV packs 2 per later group */

struct skv_image_plan {
	struct skv_image_header header;
	struct skv_image_entry *entries; /* [header.n_entries] */
	struct skv_image_src_list {
		uint32_t n;
		const struct skv_st_tensor **src; /* [n] */
	} *sources;				  /* [header.n_entries] */
};

/* Plans an image of checkpoint c in dtype for the given forward mode (swiftkv_on is ignored for a
 * plain llama). Checks every tensor it needs exists with the right shape and a supported dtype;
 * errors name the tensor. */
int skv_image_plan_new(const struct skv_checkpoint *c, enum skv_dtype dtype, bool swiftkv_on,
		       struct skv_image_plan **ret, struct skv_err *err);
void skv_image_plan_free(struct skv_image_plan *p);

/* Bytes of header + entry table, rounded to a page: where the data starts in a host image. */
uint64_t skv_image_meta_size(const struct skv_image_plan *p);

/* Writes the header and entry table into meta (skv_image_meta_size bytes). */
void skv_image_write_meta(const struct skv_image_plan *p, void *meta);

/* Converts entry i's sources into dst (entries[i].nbytes bytes, the image dtype). */
int skv_image_fill_entry(const struct skv_image_plan *p, uint32_t i, void *dst, struct skv_err *err);

/* Progress callback for whole-image fills: bytes done of total. */
typedef void (*skv_image_progress_fn)(void *userdata, uint64_t done, uint64_t total);

/* Fills a whole host image (meta + data, header.total_size bytes) at dst. */
int skv_image_fill(const struct skv_image_plan *p, void *dst, skv_image_progress_fn progress, void *userdata,
		   struct skv_err *err);

/* Validates a mapped image of size bytes (from a memfd someone else wrote): magic, version,
 * sizes, config, every entry inside the data and the entries the config requires present.
 * Returns the header on success. */
int skv_image_check(const void *image, size_t size, const struct skv_image_header **ret, struct skv_err *err);

/* The same for an image whose data lives elsewhere (on a GPU): meta is the header and entry
 * table (meta_size bytes, exactly data_offset), data_size the bytes of the region holding the
 * data (at least the header's data_size). */
int skv_image_check_meta(const void *meta, size_t meta_size, size_t data_size, const struct skv_image_header **ret,
			 struct skv_err *err);

/* The KV cache of an image's forward: K and V of every cache layer, block_size positions a block,
 * in kv_dtype (fp32 on the CPU backend, bf16 on CUDA). Bytes of one block; 0 when that
 * overflows. */
size_t skv_image_kv_block_bytes(const struct skv_image_header *h, enum skv_dtype kv_dtype, uint32_t block_size);

/* Positions (block * block_size + offset) are int32 in the engine's slot tables. */
#define SKV_KV_MAX_SLOTS INT32_MAX

/* Whether a KV arena of num_blocks blocks of block_size positions is one the engine can
 * address: at least one block, at most SKV_KV_MAX_SLOTS positions, its bytes within size_t.
 * The one check of what a configuration allows: skvd applies it when it sizes the arena from
 * [engine] kv_cache_bytes (and skvd --check-config), the engine when it is given one. -E2BIG or
 * -EINVAL with a message naming the numbers and the limit. */
int skv_image_kv_check(const struct skv_image_header *h, enum skv_dtype kv_dtype, uint64_t num_blocks,
		       uint32_t block_size, struct skv_err *err);

/* Finds an entry; NULL when absent. */
const struct skv_image_entry *skv_image_find(const struct skv_image_header *h, enum skv_wkind kind,
					     uint32_t layer);
