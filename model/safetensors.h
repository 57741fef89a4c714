/* safetensors.h: the safetensors format, parsed and checked, and checkpoints built from it.
 *
 * A file is: u64 little-endian header length N, N bytes of JSON header, then the data. Every
 * header field is checked against the file: dtypes known, shapes times element size equal to
 * the byte range, ranges inside the data, and the ranges tiling the data exactly with no holes
 * and no overlaps (the format's own rule; it also catches duplicate names). Errors name the
 * file, the tensor and what is wrong. Files are mmapped read-only; nothing is copied here.
 */
#pragma once

#include "model-config.h"
#include "skv-base.h"
#include "skv-dtype.h"

#define SKV_ST_MAX_DIMS 8
#define SKV_ST_MAX_HEADER (100u << 20) /* the format's own limit: 100 MB */

enum skv_st_dtype {
	SKV_ST_BOOL,
	SKV_ST_U8,
	SKV_ST_I8,
	SKV_ST_F8_E5M2,
	SKV_ST_F8_E4M3,
	SKV_ST_I16,
	SKV_ST_U16,
	SKV_ST_F16,
	SKV_ST_BF16,
	SKV_ST_I32,
	SKV_ST_U32,
	SKV_ST_F32,
	SKV_ST_F64,
	SKV_ST_I64,
	SKV_ST_U64,
};

struct skv_st_tensor {
	const char *name; /* owned by the header that holds it */
	const char *file; /* the file's name as given to the parser; owned by the caller */
	enum skv_st_dtype dtype;
	uint32_t ndim;
	uint64_t shape[SKV_ST_MAX_DIMS];
	uint64_t numel;
	uint64_t begin, end; /* byte range, relative to the start of the data */
	const void *data;    /* begin + the data start inside the mapping */
};

struct skv_st_header {
	size_t n;			/* tensors */
	struct skv_st_tensor *tensors; /* [n], in header order */
	uint64_t data_offset;		/* 8 + N */
	char *names;			/* storage for the names */
};

/* Parse and check the header of a whole safetensors file held in memory (file[0..size)).
 * name is used in messages and stored in each tensor (not copied: keep it alive). */
int skv_st_header_parse(const uint8_t *file, size_t size, const char *name, struct skv_st_header **ret,
			struct skv_err *err);
void skv_st_header_free(struct skv_st_header *h);

const char *skv_st_dtype_name(enum skv_st_dtype t);
/* Maps BF16/F16/F32 to the engine's dtypes; -EOPNOTSUPP for the rest. */
int skv_st_dtype_to_skv(enum skv_st_dtype t, enum skv_dtype *ret);

/* A Hugging Face model directory: config, and every tensor of model.safetensors or of the
 * shards listed by model.safetensors.index.json, mmapped. */
struct skv_checkpoint {
	char *dir;
	struct skv_model_config config;
	size_t n_files;
	struct skv_ckpt_file {
		char *name; /* file name inside dir */
		void *map;
		size_t size;
		struct skv_st_header *header;
	} *files;
	size_t n_tensors;
	const struct skv_st_tensor **sorted; /* [n_tensors] by name, for lookup */
	uint64_t total_bytes;		     /* of tensor data, all files */
};

int skv_checkpoint_open(const char *dir, struct skv_checkpoint **ret, struct skv_err *err);
void skv_checkpoint_free(struct skv_checkpoint *c);
const struct skv_st_tensor *skv_checkpoint_find(const struct skv_checkpoint *c, const char *name);

/* Writes one safetensors file: tensors in the order given, data supplied by a callback that
 * fills each tensor's bytes (so a writer never holds a whole checkpoint in memory).
 * Used by skv-mkmodel and the tests' corrupt-checkpoint makers. */
struct skv_st_out_tensor {
	const char *name;
	enum skv_st_dtype dtype;
	uint32_t ndim;
	uint64_t shape[SKV_ST_MAX_DIMS];
};
typedef int (*skv_st_fill_fn)(void *userdata, size_t index, void *dst, size_t nbytes, struct skv_err *err);
int skv_st_write(const char *path, const struct skv_st_out_tensor *t, size_t n, const char *metadata_json,
		 skv_st_fill_fn fill, void *userdata, struct skv_err *err);
size_t skv_st_dtype_size(enum skv_st_dtype t);
/* Writes a checkpoint's tensors into DIR as Hugging Face does: model.safetensors, or shards of at
 * most max_shard bytes (a larger single tensor gets its own) named model-0000i-of-0000n.safetensors
 * with model.safetensors.index.json. Any earlier model.safetensors, shards and index in DIR are
 * removed first. fill gets each tensor's index in t[]. The shard count and the bytes of tensor
 * data go to *ret_shards and *ret_bytes when not NULL. */
/* Removes DIR's model.safetensors, shards and index (what skv_st_write_sharded writes). */
void skv_st_remove_checkpoint(const char *dir);
int skv_st_write_sharded(const char *dir, const struct skv_st_out_tensor *t, size_t n, uint64_t max_shard,
			 const char *metadata_json, skv_st_fill_fn fill, void *userdata, size_t *ret_shards,
			 uint64_t *ret_bytes, struct skv_err *err);
