/* gguf.h: the GGUF file format (llama.cpp's), parsed and checked, and its tensor types
 * dequantized to float.
 *
 * A file is: "GGUF", u32 version (2 or 3), u64 tensor count, u64 metadata count, the metadata
 * (key string, u32 value type, value), the tensor infos (name, u32 dims, u64 extents fastest
 * first, u32 ggml type, u64 offset), padding to general.alignment (32 by default), then the
 * tensor data. Every count, length and offset is checked against the bytes actually there
 * before anything is allocated from it; a tensor's byte size follows from its type and extents
 * and must lie inside the data, aligned, without overlapping another. Errors name the file, the
 * key or tensor and the limit. Nothing is copied: strings and tensor data point into the
 * caller's buffer (an mmapped file), which must outlive the parsed struct.
 *
 * Written here because Debian ships no C library for GGUF (ggml's own reader comes with the
 * whole of ggml, not packaged for Debian 12); docs/gguf.md says more.
 */
#pragma once

#include "skv-base.h"

/* ggml's tensor types that this dequantizes (the numbers are the file format's). */
enum skv_gguf_type {
	SKV_GGUF_F32 = 0,
	SKV_GGUF_F16 = 1,
	SKV_GGUF_Q4_0 = 2,
	SKV_GGUF_Q4_1 = 3,
	SKV_GGUF_Q5_0 = 6,
	SKV_GGUF_Q5_1 = 7,
	SKV_GGUF_Q8_0 = 8,
	SKV_GGUF_Q4_K = 12,
	SKV_GGUF_Q5_K = 13,
	SKV_GGUF_Q6_K = 14,
	SKV_GGUF_BF16 = 30,
};

/* Metadata value types. */
enum skv_gguf_vtype {
	SKV_GGUF_V_U8 = 0,
	SKV_GGUF_V_I8 = 1,
	SKV_GGUF_V_U16 = 2,
	SKV_GGUF_V_I16 = 3,
	SKV_GGUF_V_U32 = 4,
	SKV_GGUF_V_I32 = 5,
	SKV_GGUF_V_F32 = 6,
	SKV_GGUF_V_BOOL = 7,
	SKV_GGUF_V_STRING = 8,
	SKV_GGUF_V_ARRAY = 9,
	SKV_GGUF_V_U64 = 10,
	SKV_GGUF_V_I64 = 11,
	SKV_GGUF_V_F64 = 12,
};

#define SKV_GGUF_MAX_DIMS 4
#define SKV_GGUF_MAX_NAME 256 /* bytes of a tensor name (ggml's own limit is 64) */
#define SKV_GGUF_MAX_KEY 65535
#define SKV_GGUF_MAX_ALIGNMENT 65536u

/* A string inside the file: not NUL-terminated. */
struct skv_gguf_str {
	const char *p;
	uint64_t len;
};

struct skv_gguf_kv {
	char *key;     /* NUL-terminated copy (owned by the parsed file) */
	uint32_t type; /* enum skv_gguf_vtype */
	uint32_t arr_type; /* for arrays: the elements' type (never an array) */
	uint64_t n;	   /* for arrays: the element count */
	union {
		uint64_t u;
		int64_t i;
		double f;
	} v;			   /* numeric and bool scalars, widened */
	struct skv_gguf_str s;	   /* a string scalar */
	const uint8_t *arr;	   /* numeric arrays: the first element, little-endian, packed */
	struct skv_gguf_str *strs; /* string arrays: [n] */
};

struct skv_gguf_tensor {
	char *name; /* NUL-terminated copy */
	uint32_t n_dims;
	uint64_t ne[SKV_GGUF_MAX_DIMS]; /* extents, fastest-moving first (ggml order); 1 past n_dims */
	uint32_t type;			/* enum skv_gguf_type */
	uint64_t offset;		/* relative to the data start */
	uint64_t numel, nbytes;
	const uint8_t *data;
};

struct skv_gguf {
	uint32_t version;
	size_t n_kv;
	struct skv_gguf_kv *kv;
	size_t n_tensors;
	struct skv_gguf_tensor *tensors; /* in file order */
	uint64_t alignment;
	uint64_t data_offset;
};

/* Parse and check a whole GGUF file held in memory (file[0..size)); name is used in messages. */
int skv_gguf_parse(const uint8_t *file, size_t size, const char *name, struct skv_gguf **ret, struct skv_err *err);
void skv_gguf_free(struct skv_gguf *g);

const struct skv_gguf_kv *skv_gguf_find_kv(const struct skv_gguf *g, const char *key);
const struct skv_gguf_tensor *skv_gguf_find_tensor(const struct skv_gguf *g, const char *name);

/* Typed metadata getters: -ENOENT when the key is absent (err untouched), -EINVAL with err set
 * when it holds another type or a value outside [min, max]. Integers of any width are accepted. */
int skv_gguf_get_int(const struct skv_gguf *g, const char *key, int64_t min, int64_t max, int64_t *ret,
		     struct skv_err *err);
int skv_gguf_get_float(const struct skv_gguf *g, const char *key, double *ret, struct skv_err *err);
int skv_gguf_get_bool(const struct skv_gguf *g, const char *key, bool *ret, struct skv_err *err);
int skv_gguf_get_str(const struct skv_gguf *g, const char *key, struct skv_gguf_str *ret, struct skv_err *err);
/* Element i of a numeric array as an integer (i < kv->n; kv->arr_type an integer type). */
int64_t skv_gguf_arr_int(const struct skv_gguf_kv *kv, uint64_t i);

/* "Q4_K", or "type 10" for one this does not know (buf holds it). */
const char *skv_gguf_type_name(uint32_t type, char buf[16]);
/* Elements and bytes per block; -EOPNOTSUPP for a type this does not dequantize. */
int skv_gguf_type_block(uint32_t type, uint32_t *block_elems, uint32_t *block_bytes);
/* Dequantize n elements (a multiple of the type's block) from src into dst, in float, with the
 * same arithmetic as ggml's reference dequantization. */
int skv_gguf_dequantize(uint32_t type, const void *src, float *dst, uint64_t n);
