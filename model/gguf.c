/* gguf.c: parse and check GGUF files; dequantize ggml's tensor types (see gguf.h).
 *
 * The block layouts and the dequantization arithmetic follow ggml's reference code
 * (ggml-quants.c, dequantize_row_*) and the GGUF spec (ggml/docs/gguf.md); tests/test-gguf.c
 * checks every type against gguf-py's numpy dequantization on random blocks.
 */
#include "gguf.h"

#include <stdio.h>
#include <string.h>

#include "skv-dtype.h"

static const struct {
	uint32_t type;
	const char *name;
	uint32_t elems, bytes;
} types[] = {
	{SKV_GGUF_F32, "F32", 1, 4},	   {SKV_GGUF_F16, "F16", 1, 2},	      {SKV_GGUF_BF16, "BF16", 1, 2},
	{SKV_GGUF_Q4_0, "Q4_0", 32, 18},   {SKV_GGUF_Q4_1, "Q4_1", 32, 20},   {SKV_GGUF_Q5_0, "Q5_0", 32, 22},
	{SKV_GGUF_Q5_1, "Q5_1", 32, 24},   {SKV_GGUF_Q8_0, "Q8_0", 32, 34},   {SKV_GGUF_Q4_K, "Q4_K", 256, 144},
	{SKV_GGUF_Q5_K, "Q5_K", 256, 176}, {SKV_GGUF_Q6_K, "Q6_K", 256, 210},
};

/* ggml's other types, named in refusals */
static const char *const other_names[] = {
	[4] = "Q4_2", [5] = "Q4_3", [9] = "Q8_1", [10] = "Q2_K", [11] = "Q3_K", [15] = "Q8_K",
	[16] = "IQ2_XXS", [17] = "IQ2_XS", [18] = "IQ3_XXS", [19] = "IQ1_S", [20] = "IQ4_NL", [21] = "IQ3_S",
	[22] = "IQ2_S", [23] = "IQ4_XS", [24] = "I8", [25] = "I16", [26] = "I32", [27] = "I64", [28] = "F64",
	[29] = "IQ1_M", [34] = "TQ1_0", [35] = "TQ2_0", [39] = "MXFP4",
};

const char *skv_gguf_type_name(uint32_t type, char buf[16])
{
	for (size_t i = 0; i < SKV_ARRAY_SIZE(types); i++)
		if (types[i].type == type)
			return types[i].name;
	if (type < SKV_ARRAY_SIZE(other_names) && other_names[type])
		return other_names[type];
	snprintf(buf, 16, "type %u", type);
	return buf;
}

int skv_gguf_type_block(uint32_t type, uint32_t *block_elems, uint32_t *block_bytes)
{
	for (size_t i = 0; i < SKV_ARRAY_SIZE(types); i++)
		if (types[i].type == type) {
			*block_elems = types[i].elems;
			*block_bytes = types[i].bytes;
			return 0;
		}
	return -EOPNOTSUPP;
}

/* ---- reading ---- */

struct rd {
	const uint8_t *p;
	size_t size, pos;
	const char *name;
	struct skv_err *err;
};

static int need(struct rd *r, uint64_t n, const char *what)
{
	if (n > r->size - r->pos)
		return skv_err_set(r->err, -EBADMSG,
				   "%s: truncated: %s needs %llu bytes at offset %zu, the file has %zu", r->name, what,
				   (unsigned long long)n, r->pos, r->size);
	return 0;
}

static uint64_t le(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static int rd_u(struct rd *r, unsigned n, uint64_t *ret, const char *what)
{
	int e = need(r, n, what);
	if (e < 0)
		return e;
	*ret = le(r->p + r->pos, n);
	r->pos += n;
	return 0;
}

static int rd_str(struct rd *r, uint64_t max, struct skv_gguf_str *s, const char *what)
{
	uint64_t len;
	int e = rd_u(r, 8, &len, what);
	if (e < 0)
		return e;
	if (len > max)
		return skv_err_set(r->err, -EBADMSG, "%s: %s is %llu bytes long, the limit is %llu", r->name, what,
				   (unsigned long long)len, (unsigned long long)max);
	if ((e = need(r, len, what)) < 0)
		return e;
	s->p = (const char *)r->p + r->pos;
	s->len = len;
	r->pos += len;
	return 0;
}

static char *str_dup(const struct skv_gguf_str *s)
{
	char *c = malloc(s->len + 1);
	if (c) {
		memcpy(c, s->p, s->len);
		c[s->len] = '\0';
	}
	return c;
}

static unsigned scalar_size(uint32_t t)
{
	static const unsigned sz[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
	return t < SKV_ARRAY_SIZE(sz) ? sz[t] : 0;
}

static int read_value(struct rd *r, struct skv_gguf_kv *kv)
{
	const char *key = kv->key;
	int e;
	switch (kv->type) {
	case SKV_GGUF_V_STRING:
		return rd_str(r, r->size, &kv->s, key);
	case SKV_GGUF_V_ARRAY: {
		uint64_t at, n;
		if ((e = rd_u(r, 4, &at, key)) < 0 || (e = rd_u(r, 8, &n, key)) < 0)
			return e;
		kv->arr_type = (uint32_t)at;
		kv->n = n;
		if (at == SKV_GGUF_V_STRING) {
			/* each element has at least its 8-byte length: bound n before allocating */
			if (n > (r->size - r->pos) / 8)
				return skv_err_set(r->err, -EBADMSG,
						   "%s: truncated: %s: %llu strings cannot fit in the %zu bytes left",
						   r->name, key, (unsigned long long)n, r->size - r->pos);
			kv->strs = calloc(n ? n : 1, sizeof(*kv->strs));
			if (!kv->strs)
				return skv_err_set(r->err, -ENOMEM, "%s: %s: out of memory", r->name, key);
			for (uint64_t i = 0; i < n; i++)
				if ((e = rd_str(r, r->size, &kv->strs[i], key)) < 0)
					return e;
			return 0;
		}
		unsigned es = scalar_size((uint32_t)at);
		if (!es)
			return skv_err_set(r->err, -EBADMSG, "%s: %s: array element type %llu is not supported%s", r->name,
					   key, (unsigned long long)at,
					   at == SKV_GGUF_V_ARRAY ? " (nested arrays)" : "");
		if (n > (r->size - r->pos) / es)
			return skv_err_set(r->err, -EBADMSG,
					   "%s: truncated: %s: %llu elements of %u bytes cannot fit in the %zu bytes left",
					   r->name, key, (unsigned long long)n, es, r->size - r->pos);
		kv->arr = r->p + r->pos;
		r->pos += n * es;
		return 0;
	}
	default: {
		unsigned es = scalar_size(kv->type);
		uint64_t u;
		if (!es)
			return skv_err_set(r->err, -EBADMSG, "%s: %s: value type %u is not a GGUF type", r->name, key,
					   kv->type);
		if ((e = rd_u(r, es, &u, key)) < 0)
			return e;
		switch (kv->type) {
		case SKV_GGUF_V_I8:
			kv->v.i = (int8_t)u;
			break;
		case SKV_GGUF_V_I16:
			kv->v.i = (int16_t)u;
			break;
		case SKV_GGUF_V_I32:
			kv->v.i = (int32_t)u;
			break;
		case SKV_GGUF_V_I64:
			kv->v.i = (int64_t)u;
			break;
		case SKV_GGUF_V_F32: {
			float f;
			uint32_t w = (uint32_t)u;
			memcpy(&f, &w, 4);
			kv->v.f = f;
			break;
		}
		case SKV_GGUF_V_F64:
			memcpy(&kv->v.f, &u, 8);
			break;
		case SKV_GGUF_V_BOOL:
			if (u > 1)
				return skv_err_set(r->err, -EBADMSG, "%s: %s: a bool must be 0 or 1, not %llu", r->name,
						   key, (unsigned long long)u);
			kv->v.u = u;
			break;
		default:
			kv->v.u = u;
		}
		return 0;
	}
	}
}

void skv_gguf_free(struct skv_gguf *g)
{
	if (!g)
		return;
	for (size_t i = 0; i < g->n_kv; i++) {
		free(g->kv[i].key);
		free(g->kv[i].strs);
	}
	for (size_t i = 0; i < g->n_tensors; i++)
		free(g->tensors[i].name);
	free(g->kv);
	free(g->tensors);
	free(g);
}

static void gguf_freep(struct skv_gguf **g) { skv_gguf_free(*g); }

static int cmp_offset(const void *a, const void *b)
{
	const struct skv_gguf_tensor *x = *(const struct skv_gguf_tensor *const *)a;
	const struct skv_gguf_tensor *y = *(const struct skv_gguf_tensor *const *)b;
	return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp((*(const struct skv_gguf_tensor *const *)a)->name,
		      (*(const struct skv_gguf_tensor *const *)b)->name);
}

static int cmp_key(const void *a, const void *b)
{
	return strcmp((*(const struct skv_gguf_kv *const *)a)->key, (*(const struct skv_gguf_kv *const *)b)->key);
}

static int check_tensors(struct skv_gguf *g, size_t size, const char *name, struct skv_err *err)
{
	size_t n = g->n_tensors;
	_cleanup_free_ const struct skv_gguf_tensor **v = calloc(n ? n : 1, sizeof(*v));
	if (!v)
		return skv_err_set(err, -ENOMEM, "%s: out of memory", name);
	for (size_t i = 0; i < n; i++)
		v[i] = &g->tensors[i];
	qsort(v, n, sizeof(*v), cmp_name);
	for (size_t i = 1; i < n; i++)
		if (!strcmp(v[i - 1]->name, v[i]->name))
			return skv_err_set(err, -EBADMSG, "%s: tensor '%s' appears twice", name, v[i]->name);
	qsort(v, n, sizeof(*v), cmp_offset);
	for (size_t i = 0; i < n; i++) {
		const struct skv_gguf_tensor *t = v[i];
		if (t->offset > size - g->data_offset || t->nbytes > size - g->data_offset - t->offset)
			return skv_err_set(err, -EBADMSG,
					   "%s: tensor '%s': bytes [%llu, +%llu) of the data run past the file's end "
					   "(%llu bytes of data)",
					   name, t->name, (unsigned long long)t->offset, (unsigned long long)t->nbytes,
					   (unsigned long long)(size - g->data_offset));
		if (i > 0 && v[i - 1]->offset + v[i - 1]->nbytes > t->offset)
			return skv_err_set(err, -EBADMSG, "%s: tensors '%s' and '%s' overlap", name, v[i - 1]->name,
					   t->name);
	}
	return 0;
}

static int read_tensor(struct rd *r, struct skv_gguf *g, struct skv_gguf_tensor *t)
{
	struct skv_gguf_str s;
	uint64_t nd, ty;
	char tb[16];
	int e;
	if ((e = rd_str(r, SKV_GGUF_MAX_NAME, &s, "a tensor name")) < 0)
		return e;
	if (memchr(s.p, '\0', s.len) || s.len == 0)
		return skv_err_set(r->err, -EBADMSG, "%s: tensor %zu: its name is empty or holds a NUL byte", r->name,
				   (size_t)(t - g->tensors));
	if (!(t->name = str_dup(&s)))
		return skv_err_set(r->err, -ENOMEM, "%s: out of memory", r->name);
	if ((e = rd_u(r, 4, &nd, t->name)) < 0)
		return e;
	if (nd < 1 || nd > SKV_GGUF_MAX_DIMS)
		return skv_err_set(r->err, -EBADMSG, "%s: tensor '%s': %llu dimensions (1 to %d allowed)", r->name,
				   t->name, (unsigned long long)nd, SKV_GGUF_MAX_DIMS);
	t->n_dims = (uint32_t)nd;
	t->numel = 1;
	for (uint32_t d = 0; d < SKV_GGUF_MAX_DIMS; d++) {
		uint64_t x = 1;
		if (d < nd && (e = rd_u(r, 8, &x, t->name)) < 0)
			return e;
		if (x == 0 || __builtin_mul_overflow(t->numel, x, &t->numel) || t->numel > (1ull << 50))
			return skv_err_set(r->err, -EBADMSG, "%s: tensor '%s': extent %u is %llu (must be >= 1, %s)",
					   r->name, t->name, d, (unsigned long long)x, "at most 2^50 elements in all");
		t->ne[d] = x;
	}
	if ((e = rd_u(r, 4, &ty, t->name)) < 0 || (e = rd_u(r, 8, &t->offset, t->name)) < 0)
		return e;
	t->type = (uint32_t)ty;
	uint32_t be, bb;
	if (ty > UINT32_MAX || skv_gguf_type_block(t->type, &be, &bb) < 0)
		return skv_err_set(r->err, -EOPNOTSUPP,
				   "%s: tensor '%s': type %s is not supported (F32, F16, BF16, Q4_0, Q4_1, Q5_0, "
				   "Q5_1, Q8_0, Q4_K, Q5_K, Q6_K are)",
				   r->name, t->name, skv_gguf_type_name(t->type, tb));
	if (t->ne[0] % be)
		return skv_err_set(r->err, -EBADMSG,
				   "%s: tensor '%s': its first extent %llu is not a multiple of %s's block of %u",
				   r->name, t->name, (unsigned long long)t->ne[0], skv_gguf_type_name(t->type, tb), be);
	t->nbytes = t->numel / be * bb;
	return 0;
}

int skv_gguf_parse(const uint8_t *file, size_t size, const char *name, struct skv_gguf **ret, struct skv_err *err)
{
	struct rd r = {.p = file, .size = size, .name = name, .err = err};
	_cleanup_(gguf_freep) struct skv_gguf *g = calloc(1, sizeof(*g));
	uint64_t magic, ver, nt, nkv;
	int e;

	if (!g)
		return skv_err_set(err, -ENOMEM, "%s: out of memory", name);
	if ((e = rd_u(&r, 4, &magic, "the magic")) < 0)
		return e;
	if (magic != 0x46554747u) /* "GGUF" */
		return skv_err_set(err, -EBADMSG, "%s: not a GGUF file (no \"GGUF\" magic)", name);
	if ((e = rd_u(&r, 4, &ver, "the version")) < 0)
		return e;
	if (ver != 2 && ver != 3)
		return skv_err_set(err, -EBADMSG, "%s: GGUF version %llu is not supported (2 and 3 are%s)", name,
				   (unsigned long long)ver, (ver & 0xffff) == 0 ? "; a big-endian file?" : "");
	g->version = (uint32_t)ver;
	if ((e = rd_u(&r, 8, &nt, "the tensor count")) < 0 || (e = rd_u(&r, 8, &nkv, "the metadata count")) < 0)
		return e;
	/* a metadata entry takes at least 13 bytes, a tensor info 32: bound the counts first */
	if (nkv > (size - r.pos) / 13 || nt > (size - r.pos) / 32)
		return skv_err_set(err, -EBADMSG, "%s: truncated: %llu metadata entries and %llu tensors cannot fit "
				   "in %zu bytes", name, (unsigned long long)nkv, (unsigned long long)nt, size);
	g->kv = calloc(nkv ? nkv : 1, sizeof(*g->kv));
	g->tensors = calloc(nt ? nt : 1, sizeof(*g->tensors));
	if (!g->kv || !g->tensors)
		return skv_err_set(err, -ENOMEM, "%s: out of memory", name);
	g->alignment = 32;
	for (uint64_t i = 0; i < nkv; i++) {
		struct skv_gguf_kv *kv = &g->kv[i];
		struct skv_gguf_str k;
		uint64_t t;
		if ((e = rd_str(&r, SKV_GGUF_MAX_KEY, &k, "a metadata key")) < 0)
			return e;
		if (k.len == 0 || memchr(k.p, '\0', k.len))
			return skv_err_set(err, -EBADMSG, "%s: metadata entry %llu: its key is empty or holds a NUL byte",
					   name, (unsigned long long)i);
		if (!(kv->key = str_dup(&k)))
			return skv_err_set(err, -ENOMEM, "%s: out of memory", name);
		g->n_kv = i + 1;
		if ((e = rd_u(&r, 4, &t, kv->key)) < 0)
			return e;
		kv->type = (uint32_t)t;
		if ((e = read_value(&r, kv)) < 0)
			return e;
	}
	/* duplicate keys: ambiguous, refused */
	{
		_cleanup_free_ const struct skv_gguf_kv **v = calloc(nkv ? nkv : 1, sizeof(*v));
		if (!v)
			return skv_err_set(err, -ENOMEM, "%s: out of memory", name);
		for (size_t i = 0; i < nkv; i++)
			v[i] = &g->kv[i];
		qsort(v, nkv, sizeof(*v), cmp_key);
		for (size_t i = 1; i < nkv; i++)
			if (!strcmp(v[i - 1]->key, v[i]->key))
				return skv_err_set(err, -EBADMSG, "%s: metadata key '%s' appears twice", name, v[i]->key);
	}
	int64_t al;
	e = skv_gguf_get_int(g, "general.alignment", 1, SKV_GGUF_MAX_ALIGNMENT, &al, err);
	if (e == 0) {
		if (al & (al - 1))
			return skv_err_set(err, -EBADMSG, "%s: general.alignment %lld is not a power of two", name,
					   (long long)al);
		g->alignment = (uint64_t)al;
	} else if (e != -ENOENT) {
		return skv_err_prefix(err, e, "%s: ", name);
	}
	for (uint64_t i = 0; i < nt; i++) {
		g->n_tensors = i + 1;
		if ((e = read_tensor(&r, g, &g->tensors[i])) < 0)
			return e;
		if (g->tensors[i].offset % g->alignment)
			return skv_err_set(err, -EBADMSG, "%s: tensor '%s': offset %llu is not a multiple of the "
					   "alignment %llu", name, g->tensors[i].name,
					   (unsigned long long)g->tensors[i].offset, (unsigned long long)g->alignment);
	}
	g->data_offset = SKV_ALIGN_UP((uint64_t)r.pos, g->alignment);
	if (g->data_offset > size) {
		if (nt == 0)
			g->data_offset = size;
		else
			return skv_err_set(err, -EBADMSG, "%s: truncated: the tensor data would start at %llu, past the "
					   "file's %zu bytes", name, (unsigned long long)g->data_offset, size);
	}
	if ((e = check_tensors(g, size, name, err)) < 0)
		return e;
	for (size_t i = 0; i < g->n_tensors; i++)
		g->tensors[i].data = file + g->data_offset + g->tensors[i].offset;
	*ret = SKV_TAKE_PTR(g);
	return 0;
}

const struct skv_gguf_kv *skv_gguf_find_kv(const struct skv_gguf *g, const char *key)
{
	for (size_t i = 0; i < g->n_kv; i++)
		if (!strcmp(g->kv[i].key, key))
			return &g->kv[i];
	return NULL;
}

const struct skv_gguf_tensor *skv_gguf_find_tensor(const struct skv_gguf *g, const char *name)
{
	for (size_t i = 0; i < g->n_tensors; i++)
		if (!strcmp(g->tensors[i].name, name))
			return &g->tensors[i];
	return NULL;
}

static bool is_int(uint32_t t)
{
	return t <= SKV_GGUF_V_I32 || t == SKV_GGUF_V_U64 || t == SKV_GGUF_V_I64;
}

static bool is_signed(uint32_t t)
{
	return t == SKV_GGUF_V_I8 || t == SKV_GGUF_V_I16 || t == SKV_GGUF_V_I32 || t == SKV_GGUF_V_I64;
}

int skv_gguf_get_int(const struct skv_gguf *g, const char *key, int64_t min, int64_t max, int64_t *ret,
		     struct skv_err *err)
{
	const struct skv_gguf_kv *kv = skv_gguf_find_kv(g, key);
	if (!kv)
		return -ENOENT;
	if (!is_int(kv->type))
		return skv_err_set(err, -EINVAL, "%s must be an integer (it has value type %u)", key, kv->type);
	bool ok = is_signed(kv->type) ? kv->v.i >= min && kv->v.i <= max
				      : kv->v.u <= (uint64_t)INT64_MAX && (int64_t)kv->v.u >= min && (int64_t)kv->v.u <= max;
	if (!ok)
		return skv_err_set(err, -EINVAL, "%s is %lld, outside [%lld, %lld]", key,
				   is_signed(kv->type) ? (long long)kv->v.i : (long long)kv->v.u, (long long)min,
				   (long long)max);
	*ret = kv->v.i;
	return 0;
}

int skv_gguf_get_float(const struct skv_gguf *g, const char *key, double *ret, struct skv_err *err)
{
	const struct skv_gguf_kv *kv = skv_gguf_find_kv(g, key);
	if (!kv)
		return -ENOENT;
	if (kv->type == SKV_GGUF_V_F32 || kv->type == SKV_GGUF_V_F64)
		*ret = kv->v.f;
	else if (is_int(kv->type))
		*ret = is_signed(kv->type) ? (double)kv->v.i : (double)kv->v.u;
	else
		return skv_err_set(err, -EINVAL, "%s must be a number (it has value type %u)", key, kv->type);
	return 0;
}

int skv_gguf_get_bool(const struct skv_gguf *g, const char *key, bool *ret, struct skv_err *err)
{
	const struct skv_gguf_kv *kv = skv_gguf_find_kv(g, key);
	if (!kv)
		return -ENOENT;
	if (kv->type != SKV_GGUF_V_BOOL)
		return skv_err_set(err, -EINVAL, "%s must be a bool (it has value type %u)", key, kv->type);
	*ret = kv->v.u != 0;
	return 0;
}

int skv_gguf_get_str(const struct skv_gguf *g, const char *key, struct skv_gguf_str *ret, struct skv_err *err)
{
	const struct skv_gguf_kv *kv = skv_gguf_find_kv(g, key);
	if (!kv)
		return -ENOENT;
	if (kv->type != SKV_GGUF_V_STRING)
		return skv_err_set(err, -EINVAL, "%s must be a string (it has value type %u)", key, kv->type);
	*ret = kv->s;
	return 0;
}

int64_t skv_gguf_arr_int(const struct skv_gguf_kv *kv, uint64_t i)
{
	unsigned es = scalar_size(kv->arr_type);
	uint64_t u = le(kv->arr + i * es, es);
	switch (kv->arr_type) {
	case SKV_GGUF_V_I8:
		return (int8_t)u;
	case SKV_GGUF_V_I16:
		return (int16_t)u;
	case SKV_GGUF_V_I32:
		return (int32_t)u;
	default:
		return (int64_t)u;
	}
}

/* ---- dequantization (ggml's reference arithmetic, in float) ---- */

static inline float h2f(const uint8_t *p) { return skv_f16_to_f32((uint16_t)(p[0] | p[1] << 8)); }

/* Q4_K/Q5_K: the 6-bit scale and min of sub-block j from the 12 packed bytes */
static inline void scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m)
{
	if (j < 4) {
		*d = q[j] & 63;
		*m = q[j + 4] & 63;
	} else {
		*d = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
		*m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
	}
}

static void dq_block(uint32_t type, const uint8_t *b, float *y)
{
	switch (type) {
	case SKV_GGUF_Q4_0: {
		float d = h2f(b);
		for (int j = 0; j < 16; j++) {
			y[j] = (float)((b[2 + j] & 0xF) - 8) * d;
			y[j + 16] = (float)((b[2 + j] >> 4) - 8) * d;
		}
		break;
	}
	case SKV_GGUF_Q4_1: {
		float d = h2f(b), m = h2f(b + 2);
		for (int j = 0; j < 16; j++) {
			y[j] = (float)(b[4 + j] & 0xF) * d + m;
			y[j + 16] = (float)(b[4 + j] >> 4) * d + m;
		}
		break;
	}
	case SKV_GGUF_Q5_0:
	case SKV_GGUF_Q5_1: {
		bool one = type == SKV_GGUF_Q5_1;
		float d = h2f(b), m = one ? h2f(b + 2) : 0.0f;
		const uint8_t *qhp = b + (one ? 4 : 2), *qs = qhp + 4;
		uint32_t qh = (uint32_t)le(qhp, 4);
		int off = one ? 0 : 16;
		for (int j = 0; j < 16; j++) {
			int x0 = (qs[j] & 0xF) | (int)(((qh >> j) << 4) & 0x10);
			int x1 = (qs[j] >> 4) | (int)((qh >> (j + 12)) & 0x10);
			y[j] = (float)(x0 - off) * d;
			y[j + 16] = (float)(x1 - off) * d;
			if (one) { /* not for Q5_0: -0.0 + 0.0 would lose ggml's sign of zero */
				y[j] += m;
				y[j + 16] += m;
			}
		}
		break;
	}
	case SKV_GGUF_Q8_0: {
		float d = h2f(b);
		for (int j = 0; j < 32; j++)
			y[j] = (float)(int8_t)b[2 + j] * d;
		break;
	}
	case SKV_GGUF_Q4_K:
	case SKV_GGUF_Q5_K: {
		bool five = type == SKV_GGUF_Q5_K;
		float d = h2f(b), dmin = h2f(b + 2);
		const uint8_t *sc = b + 4, *qh = b + 16, *q = b + (five ? 48 : 16);
		unsigned u1 = 1, u2 = 2;
		for (int j = 0, is = 0; j < 256; j += 64, is += 2) {
			uint8_t s, mm;
			scale_min_k4(is, sc, &s, &mm);
			float d1 = d * s, m1 = dmin * mm;
			scale_min_k4(is + 1, sc, &s, &mm);
			float d2 = d * s, m2 = dmin * mm;
			for (int l = 0; l < 32; l++)
				*y++ = d1 * (float)((q[l] & 0xF) + (five && (qh[l] & u1) ? 16 : 0)) - m1;
			for (int l = 0; l < 32; l++)
				*y++ = d2 * (float)((q[l] >> 4) + (five && (qh[l] & u2) ? 16 : 0)) - m2;
			q += 32;
			u1 <<= 2;
			u2 <<= 2;
		}
		break;
	}
	case SKV_GGUF_Q6_K: {
		const uint8_t *ql = b, *qh = b + 128;
		const int8_t *sc = (const int8_t *)(b + 192);
		float d = h2f(b + 208);
		for (int n = 0; n < 256; n += 128) {
			for (int l = 0; l < 32; l++) {
				int is = l / 16;
				int q1 = (int)((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
				int q2 = (int)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
				int q3 = (int)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
				int q4 = (int)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
				y[l] = d * (float)sc[is] * (float)q1;
				y[l + 32] = d * (float)sc[is + 2] * (float)q2;
				y[l + 64] = d * (float)sc[is + 4] * (float)q3;
				y[l + 96] = d * (float)sc[is + 6] * (float)q4;
			}
			y += 128;
			ql += 64;
			qh += 32;
			sc += 8;
		}
		break;
	}
	}
}

int skv_gguf_dequantize(uint32_t type, const void *src, float *dst, uint64_t n)
{
	uint32_t be, bb;
	const uint8_t *s = src;
	if (skv_gguf_type_block(type, &be, &bb) < 0)
		return -EOPNOTSUPP;
	if (n % be)
		return -EINVAL;
	switch (type) {
	case SKV_GGUF_F32:
		memcpy(dst, src, n * 4);
		return 0;
	case SKV_GGUF_F16:
		for (uint64_t i = 0; i < n; i++)
			dst[i] = h2f(s + 2 * i);
		return 0;
	case SKV_GGUF_BF16:
		for (uint64_t i = 0; i < n; i++)
			dst[i] = skv_bf16_to_f32((uint16_t)(s[2 * i] | s[2 * i + 1] << 8));
		return 0;
	}
#pragma omp parallel for schedule(static)
	for (uint64_t k = 0; k < n / be; k++)
		dq_block(type, s + k * bb, dst + k * be);
	return 0;
}
