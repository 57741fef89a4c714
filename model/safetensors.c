/* safetensors.c: parse, check, map and write safetensors files; open HF checkpoint folders. */
#include "safetensors.h"

#include <fcntl.h>
#include <glob.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

static const struct {
	const char *name;
	enum skv_st_dtype t;
	size_t size;
} st_dtypes[] = {
	{"BOOL", SKV_ST_BOOL, 1},	{"U8", SKV_ST_U8, 1},	  {"I8", SKV_ST_I8, 1},
	{"F8_E5M2", SKV_ST_F8_E5M2, 1}, {"F8_E4M3", SKV_ST_F8_E4M3, 1}, {"I16", SKV_ST_I16, 2},
	{"U16", SKV_ST_U16, 2},		{"F16", SKV_ST_F16, 2},	  {"BF16", SKV_ST_BF16, 2},
	{"I32", SKV_ST_I32, 4},		{"U32", SKV_ST_U32, 4},	  {"F32", SKV_ST_F32, 4},
	{"F64", SKV_ST_F64, 8},		{"I64", SKV_ST_I64, 8},	  {"U64", SKV_ST_U64, 8},
};

const char *skv_st_dtype_name(enum skv_st_dtype t)
{
	for (size_t i = 0; i < SKV_ARRAY_SIZE(st_dtypes); i++)
		if (st_dtypes[i].t == t)
			return st_dtypes[i].name;
	return "?";
}

size_t skv_st_dtype_size(enum skv_st_dtype t)
{
	for (size_t i = 0; i < SKV_ARRAY_SIZE(st_dtypes); i++)
		if (st_dtypes[i].t == t)
			return st_dtypes[i].size;
	return 0;
}

int skv_st_dtype_to_skv(enum skv_st_dtype t, enum skv_dtype *ret)
{
	switch (t) {
	case SKV_ST_F32:
		*ret = SKV_DTYPE_F32;
		return 0;
	case SKV_ST_BF16:
		*ret = SKV_DTYPE_BF16;
		return 0;
	case SKV_ST_F16:
		*ret = SKV_DTYPE_F16;
		return 0;
	default:
		return -EOPNOTSUPP;
	}
}

void skv_st_header_free(struct skv_st_header *h)
{
	if (!h)
		return;
	free(h->tensors);
	free(h->names);
	free(h);
}

static int cmp_begin(const void *a, const void *b)
{
	const struct skv_st_tensor *x = *(const struct skv_st_tensor *const *)a;
	const struct skv_st_tensor *y = *(const struct skv_st_tensor *const *)b;
	if (x->begin != y->begin)
		return x->begin < y->begin ? -1 : 1;
	return x->end < y->end ? -1 : x->end > y->end;
}

static int parse_entry(const char *fname, const char *key, json_object *v, struct skv_st_tensor *t,
		       struct skv_err *err)
{
	json_object *dt, *shape, *offs;
	const char *dts;
	size_t esz = 0;

	if (!json_object_is_type(v, json_type_object))
		return skv_err_set(err, -EINVAL, "%s: tensor '%s': entry is not an object", fname, key);
	if (!json_object_object_get_ex(v, "dtype", &dt) || !json_object_is_type(dt, json_type_string))
		return skv_err_set(err, -EINVAL, "%s: tensor '%s': \"dtype\" missing or not a string", fname, key);
	dts = json_object_get_string(dt);
	for (size_t i = 0; i < SKV_ARRAY_SIZE(st_dtypes); i++)
		if (!strcmp(dts, st_dtypes[i].name)) {
			t->dtype = st_dtypes[i].t;
			esz = st_dtypes[i].size;
		}
	if (!esz)
		return skv_err_set(err, -EINVAL, "%s: tensor '%s': unknown dtype \"%.32s\"", fname, key, dts);

	if (!json_object_object_get_ex(v, "shape", &shape) || !json_object_is_type(shape, json_type_array))
		return skv_err_set(err, -EINVAL, "%s: tensor '%s': \"shape\" missing or not a list", fname, key);
	size_t nd = json_object_array_length(shape);
	if (nd > SKV_ST_MAX_DIMS)
		return skv_err_set(err, -EINVAL, "%s: tensor '%s': %zu dimensions, more than the limit of %d", fname,
				   key, nd, SKV_ST_MAX_DIMS);
	t->ndim = (uint32_t)nd;
	size_t numel = 1;
	for (size_t i = 0; i < nd; i++) {
		json_object *d = json_object_array_get_idx(shape, i);
		if (!json_object_is_type(d, json_type_int) || json_object_get_int64(d) < 0)
			return skv_err_set(err, -EINVAL, "%s: tensor '%s': shape[%zu] is not a non-negative integer",
					   fname, key, i);
		t->shape[i] = (uint64_t)json_object_get_int64(d);
		if (!skv_mul_size(numel, t->shape[i], &numel))
			return skv_err_set(err, -EOVERFLOW, "%s: tensor '%s': shape overflows", fname, key);
	}
	t->numel = numel;

	if (!json_object_object_get_ex(v, "data_offsets", &offs) || !json_object_is_type(offs, json_type_array) ||
	    json_object_array_length(offs) != 2)
		return skv_err_set(err, -EINVAL, "%s: tensor '%s': \"data_offsets\" must be a list of two integers",
				   fname, key);
	for (int i = 0; i < 2; i++) {
		json_object *o = json_object_array_get_idx(offs, i);
		if (!json_object_is_type(o, json_type_int) || json_object_get_int64(o) < 0)
			return skv_err_set(err, -EINVAL,
					   "%s: tensor '%s': data_offsets[%d] is not a non-negative integer", fname,
					   key, i);
	}
	t->begin = (uint64_t)json_object_get_int64(json_object_array_get_idx(offs, 0));
	t->end = (uint64_t)json_object_get_int64(json_object_array_get_idx(offs, 1));
	if (t->end < t->begin)
		return skv_err_set(err, -EINVAL, "%s: tensor '%s': data_offsets [%llu, %llu] end before they begin",
				   fname, key, (unsigned long long)t->begin, (unsigned long long)t->end);
	size_t bytes;
	if (!skv_mul_size(numel, esz, &bytes) || bytes != t->end - t->begin)
		return skv_err_set(err, -EINVAL,
				   "%s: tensor '%s': shape and dtype %s need %zu bytes but data_offsets span %llu",
				   fname, key, dts, numel * esz, (unsigned long long)(t->end - t->begin));
	return 0;
}

int skv_st_header_parse(const uint8_t *file, size_t size, const char *fname, struct skv_st_header **ret,
			struct skv_err *err)
{
	struct skv_st_header *h = NULL;
	json_tokener *tok = NULL;
	json_object *root = NULL;
	_cleanup_free_ const struct skv_st_tensor **order = NULL;
	uint64_t hlen = 0;
	size_t n = 0, names_len = 0, data_len;
	int r;

	if (size < 8)
		return skv_err_set(err, -EINVAL, "%s: %zu bytes, too short for a safetensors file (at least 8)", fname,
				   size);
	for (int i = 7; i >= 0; i--)
		hlen = (hlen << 8) | file[i];
	if (hlen > size - 8)
		return skv_err_set(err, -EINVAL, "%s: header length %llu runs past the end of the file (%zu bytes)",
				   fname, (unsigned long long)hlen, size);
	if (hlen > SKV_ST_MAX_HEADER)
		return skv_err_set(err, -EINVAL, "%s: header length %llu is over the limit of %u bytes", fname,
				   (unsigned long long)hlen, SKV_ST_MAX_HEADER);
	if (hlen < 2 || file[8] != '{')
		return skv_err_set(err, -EINVAL, "%s: header does not start with a JSON object", fname);

	tok = json_tokener_new();
	if (!tok)
		return skv_err_set(err, -ENOMEM, "%s: out of memory", fname);
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	root = json_tokener_parse_ex(tok, (const char *)file + 8, (int)hlen);
	if (!root || json_tokener_get_error(tok) != json_tokener_success) {
		r = skv_err_set(err, -EINVAL, "%s: header is not valid JSON near byte %zu: %s", fname,
				(size_t)json_tokener_get_parse_end(tok) + 8,
				json_tokener_error_desc(json_tokener_get_error(tok)));
		goto out;
	}
	/* Only trailing spaces may follow the object (the format pads with 0x20). */
	for (size_t i = json_tokener_get_parse_end(tok); i < hlen; i++)
		if (file[8 + i] != ' ') {
			r = skv_err_set(err, -EINVAL, "%s: header has data after its JSON object at byte %zu", fname,
					8 + i);
			goto out;
		}
	if (!json_object_is_type(root, json_type_object)) {
		r = skv_err_set(err, -EINVAL, "%s: header is not a JSON object", fname);
		goto out;
	}

	json_object_object_foreach(root, key0, val0)
	{
		(void)val0;
		if (strcmp(key0, "__metadata__") != 0) {
			n++;
			names_len += strlen(key0) + 1;
		}
	}
	h = calloc(1, sizeof(*h));
	if (!h || !(h->tensors = calloc(n ? n : 1, sizeof(*h->tensors))) || !(h->names = malloc(names_len + 1)) ||
	    !(order = calloc(n ? n : 1, sizeof(*order)))) {
		r = skv_err_set(err, -ENOMEM, "%s: out of memory", fname);
		goto out;
	}
	h->n = n;
	h->data_offset = 8 + hlen;
	data_len = size - h->data_offset;

	size_t i = 0, pos = 0;
	json_object_object_foreach(root, key, val)
	{
		if (!strcmp(key, "__metadata__")) {
			if (!json_object_is_type(val, json_type_object)) {
				r = skv_err_set(err, -EINVAL, "%s: \"__metadata__\" is not an object", fname);
				goto out;
			}
			continue;
		}
		struct skv_st_tensor *t = &h->tensors[i];
		size_t kl = strlen(key);
		if (kl == 0) {
			r = skv_err_set(err, -EINVAL, "%s: a tensor has an empty name", fname);
			goto out;
		}
		memcpy(h->names + pos, key, kl + 1);
		t->name = h->names + pos;
		t->file = fname;
		pos += kl + 1;
		r = parse_entry(fname, key, val, t, err);
		if (r < 0)
			goto out;
		if (t->end > data_len) {
			r = skv_err_set(err, -EINVAL,
					"%s: tensor '%s': data_offsets [%llu, %llu] run past the end of the data "
					"(%zu bytes): the file is truncated or corrupt",
					fname, key, (unsigned long long)t->begin, (unsigned long long)t->end, data_len);
			goto out;
		}
		t->data = file + h->data_offset + t->begin;
		order[i] = t;
		i++;
	}

	/* The ranges must tile [0, data_len) exactly: no overlaps, no holes. */
	qsort(order, n, sizeof(*order), cmp_begin);
	uint64_t expect = 0;
	for (i = 0; i < n; i++) {
		if (order[i]->begin < expect) {
			r = skv_err_set(err, -EINVAL, "%s: tensor '%s' overlaps the tensor before it (offset %llu < %llu)",
					fname, order[i]->name, (unsigned long long)order[i]->begin,
					(unsigned long long)expect);
			goto out;
		}
		if (order[i]->begin > expect) {
			r = skv_err_set(err, -EINVAL, "%s: %llu unindexed bytes at data offset %llu before tensor '%s'",
					fname, (unsigned long long)(order[i]->begin - expect),
					(unsigned long long)expect, order[i]->name);
			goto out;
		}
		expect = order[i]->end;
	}
	if (expect != data_len) {
		r = skv_err_set(err, -EINVAL, "%s: %llu bytes of data after the last tensor are not indexed", fname,
				(unsigned long long)(data_len - expect));
		goto out;
	}
	*ret = h;
	h = NULL;
	r = 0;
out:
	skv_st_header_free(h);
	if (root)
		json_object_put(root);
	json_tokener_free(tok);
	return r;
}

/* ---- checkpoints ---- */

static int cmp_name(const void *a, const void *b)
{
	const struct skv_st_tensor *x = *(const struct skv_st_tensor *const *)a;
	const struct skv_st_tensor *y = *(const struct skv_st_tensor *const *)b;
	return strcmp(x->name, y->name);
}

void skv_checkpoint_free(struct skv_checkpoint *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n_files; i++) {
		skv_st_header_free(c->files[i].header);
		if (c->files[i].map && c->files[i].map != MAP_FAILED)
			munmap(c->files[i].map, c->files[i].size);
		free(c->files[i].name);
	}
	free(c->files);
	free(c->sorted);
	free(c->dir);
	free(c);
}

static int map_file(struct skv_checkpoint *c, struct skv_ckpt_file *f, struct skv_err *err)
{
	char path[4096];
	struct stat st;
	_cleanup_close_ int fd = -1;

	snprintf(path, sizeof(path), "%s/%s", c->dir, f->name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return skv_err_set(err, -errno, "%s: cannot open: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0)
		return skv_err_set(err, -errno, "%s: cannot stat: %s", path, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return skv_err_set(err, -EINVAL, "%s: not a regular file", path);
	f->size = (size_t)st.st_size;
	if (f->size < 8)
		return skv_err_set(err, -EINVAL, "%s: %zu bytes, too short for a safetensors file", path, f->size);
	f->map = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (f->map == MAP_FAILED) {
		f->map = NULL;
		return skv_err_set(err, -errno, "%s: mmap failed: %s", path, strerror(errno));
	}
	return skv_st_header_parse(f->map, f->size, f->name, &f->header, err);
}

static bool safe_shard_name(const char *s)
{
	return *s && !strchr(s, '/') && strcmp(s, ".") != 0 && strcmp(s, "..") != 0 && strlen(s) < 256;
}

/* Reads model.safetensors.index.json: the set of shard files, and the map checked later. */
static int open_index(struct skv_checkpoint *c, const char *path, json_object **ret_map, struct skv_err *err)
{
	_cleanup_free_ char *text = NULL;
	size_t len;
	json_object *root, *map;
	int r;

	r = skv_read_file(path, 64 << 20, &text, &len, err);
	if (r < 0)
		return r;
	root = json_tokener_parse(text);
	if (!root || !json_object_is_type(root, json_type_object)) {
		if (root)
			json_object_put(root);
		return skv_err_set(err, -EINVAL, "%s: not a JSON object", path);
	}
	if (!json_object_object_get_ex(root, "weight_map", &map) || !json_object_is_type(map, json_type_object)) {
		json_object_put(root);
		return skv_err_set(err, -EINVAL, "%s: \"weight_map\" missing or not an object", path);
	}
	size_t cap = 16;
	c->files = calloc(cap, sizeof(*c->files));
	if (!c->files) {
		json_object_put(root);
		return skv_err_set(err, -ENOMEM, "out of memory");
	}
	json_object_object_foreach(map, tname, fval)
	{
		if (!json_object_is_type(fval, json_type_string) || !safe_shard_name(json_object_get_string(fval))) {
			/* the message first: tname lives in root */
			int rc = skv_err_set(err, -EINVAL, "%s: tensor '%s' maps to an invalid file name", path, tname);
			json_object_put(root);
			return rc;
		}
		const char *fn = json_object_get_string(fval);
		bool seen = false;
		for (size_t i = 0; i < c->n_files && !seen; i++)
			seen = !strcmp(c->files[i].name, fn);
		if (seen)
			continue;
		if (c->n_files == cap) {
			void *p = realloc(c->files, 2 * cap * sizeof(*c->files));
			if (!p) {
				json_object_put(root);
				return skv_err_set(err, -ENOMEM, "out of memory");
			}
			c->files = p;
			memset(c->files + cap, 0, cap * sizeof(*c->files));
			cap *= 2;
		}
		c->files[c->n_files].name = strdup(fn);
		if (!c->files[c->n_files].name) {
			json_object_put(root);
			return skv_err_set(err, -ENOMEM, "out of memory");
		}
		c->n_files++;
	}
	if (c->n_files == 0) {
		json_object_put(root);
		return skv_err_set(err, -EINVAL, "%s: \"weight_map\" is empty", path);
	}
	*ret_map = root;
	return 0;
}

int skv_checkpoint_open(const char *dir, struct skv_checkpoint **ret, struct skv_err *err)
{
	struct skv_checkpoint *c;
	json_object *index = NULL;
	char path[4096];
	int r;

	c = calloc(1, sizeof(*c));
	if (!c || !(c->dir = strdup(dir))) {
		free(c);
		return skv_err_set(err, -ENOMEM, "out of memory");
	}
	r = skv_model_config_load(dir, &c->config, err);
	if (r < 0)
		goto fail;

	snprintf(path, sizeof(path), "%s/model.safetensors.index.json", dir);
	if (access(path, F_OK) == 0) {
		r = open_index(c, path, &index, err);
		if (r < 0)
			goto fail;
	} else {
		snprintf(path, sizeof(path), "%s/model.safetensors", dir);
		if (access(path, F_OK) != 0) {
			r = skv_err_set(err, -ENOENT, "%s: no model.safetensors or model.safetensors.index.json", dir);
			goto fail;
		}
		c->files = calloc(1, sizeof(*c->files));
		if (!c->files || !(c->files[0].name = strdup("model.safetensors"))) {
			r = skv_err_set(err, -ENOMEM, "out of memory");
			goto fail;
		}
		c->n_files = 1;
	}

	for (size_t i = 0; i < c->n_files; i++) {
		r = map_file(c, &c->files[i], err);
		if (r < 0) {
			if (err && !strstr(err->msg, dir))
				skv_err_prefix(err, r, "%s/", dir);
			goto fail;
		}
		c->n_tensors += c->files[i].header->n;
	}
	c->sorted = calloc(c->n_tensors ? c->n_tensors : 1, sizeof(*c->sorted));
	if (!c->sorted) {
		r = skv_err_set(err, -ENOMEM, "out of memory");
		goto fail;
	}
	size_t k = 0;
	for (size_t i = 0; i < c->n_files; i++)
		for (size_t j = 0; j < c->files[i].header->n; j++) {
			c->sorted[k++] = &c->files[i].header->tensors[j];
			c->total_bytes += c->files[i].header->tensors[j].end - c->files[i].header->tensors[j].begin;
		}
	qsort(c->sorted, c->n_tensors, sizeof(*c->sorted), cmp_name);
	for (size_t i = 1; i < c->n_tensors; i++)
		if (!strcmp(c->sorted[i - 1]->name, c->sorted[i]->name)) {
			r = skv_err_set(err, -EINVAL, "%s: tensor '%s' appears in both %s and %s", dir, c->sorted[i]->name,
					c->sorted[i - 1]->file, c->sorted[i]->file);
			goto fail;
		}

	if (index) {
		json_object *map;
		json_object_object_get_ex(index, "weight_map", &map);
		json_object_object_foreach(map, tname, fval)
		{
			const struct skv_st_tensor *t = skv_checkpoint_find(c, tname);
			const char *fn = json_object_get_string(fval);
			if (!t) {
				r = skv_err_set(err, -EINVAL, "%s: index maps tensor '%s' to %s, which does not hold it", dir,
						tname, fn);
				goto fail;
			}
			if (strcmp(t->file, fn) != 0) {
				r = skv_err_set(err, -EINVAL, "%s: index maps tensor '%s' to %s, but it is in %s", dir,
						tname, fn, t->file);
				goto fail;
			}
		}
		json_object_put(index);
		index = NULL;
	}
	*ret = c;
	return 0;
fail:
	if (index)
		json_object_put(index);
	skv_checkpoint_free(c);
	return r;
}

const struct skv_st_tensor *skv_checkpoint_find(const struct skv_checkpoint *c, const char *name)
{
	size_t lo = 0, hi = c->n_tensors;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int d = strcmp(c->sorted[mid]->name, name);
		if (d == 0)
			return c->sorted[mid];
		if (d < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* ---- writing ---- */

int skv_st_write(const char *path, const struct skv_st_out_tensor *t, size_t n, const char *metadata_json,
		 skv_st_fill_fn fill, void *userdata, struct skv_err *err)
{
	json_object *root = json_object_new_object();
	_cleanup_close_ int fd = -1;
	uint8_t *map = NULL;
	size_t total = 0, off = 0, hlen, padded, fsize;
	const char *hs;
	int r = 0;

	if (!root)
		return skv_err_set(err, -ENOMEM, "out of memory");
	if (metadata_json) {
		json_object *m = json_tokener_parse(metadata_json);
		if (!m || !json_object_is_type(m, json_type_object)) {
			json_object_put(m);
			json_object_put(root);
			return skv_err_set(err, -EINVAL, "%s: metadata is not a JSON object", path);
		}
		json_object_object_add(root, "__metadata__", m);
	}
	for (size_t i = 0; i < n; i++) {
		size_t numel = 1, bytes;
		json_object *e = json_object_new_object(), *shape = json_object_new_array(),
			    *offs = json_object_new_array();
		for (uint32_t d = 0; d < t[i].ndim; d++) {
			numel *= t[i].shape[d];
			json_object_array_add(shape, json_object_new_int64((int64_t)t[i].shape[d]));
		}
		bytes = numel * skv_st_dtype_size(t[i].dtype);
		json_object_array_add(offs, json_object_new_int64((int64_t)off));
		json_object_array_add(offs, json_object_new_int64((int64_t)(off + bytes)));
		json_object_object_add(e, "dtype", json_object_new_string(skv_st_dtype_name(t[i].dtype)));
		json_object_object_add(e, "shape", shape);
		json_object_object_add(e, "data_offsets", offs);
		json_object_object_add(root, t[i].name, e);
		off += bytes;
	}
	total = off;
	hs = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	hlen = strlen(hs);
	padded = SKV_ALIGN_UP(hlen, 8);
	fsize = 8 + padded + total;

	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		r = skv_err_set(err, -errno, "%s: cannot create: %s", path, strerror(errno));
		goto out;
	}
	if (ftruncate(fd, (off_t)fsize) < 0) {
		r = skv_err_set(err, -errno, "%s: cannot size to %zu bytes: %s", path, fsize, strerror(errno));
		goto out;
	}
	map = mmap(NULL, fsize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED) {
		map = NULL;
		r = skv_err_set(err, -errno, "%s: mmap failed: %s", path, strerror(errno));
		goto out;
	}
	for (int i = 0; i < 8; i++)
		map[i] = (uint8_t)((uint64_t)padded >> (8 * i));
	memcpy(map + 8, hs, hlen);
	memset(map + 8 + hlen, ' ', padded - hlen);
	off = 0;
	for (size_t i = 0; i < n && r == 0; i++) {
		size_t numel = 1;
		for (uint32_t d = 0; d < t[i].ndim; d++)
			numel *= t[i].shape[d];
		size_t bytes = numel * skv_st_dtype_size(t[i].dtype);
		r = fill(userdata, i, map + 8 + padded + off, bytes, err);
		off += bytes;
	}
out:
	if (map)
		munmap(map, fsize);
	json_object_put(root);
	if (r < 0 && fd >= 0)
		unlink(path);
	return r;
}

/* skv_st_write_sharded: consecutive tensors go into one shard until the next would take it past
 * max_shard bytes; fill sees each tensor's index in t[]. */
struct shard_fill {
	skv_st_fill_fn fill;
	void *userdata;
	size_t first; /* index in t[] of the shard's first tensor */
};

static int shard_fill(void *userdata, size_t index, void *dst, size_t nbytes, struct skv_err *err)
{
	struct shard_fill *s = userdata;
	return s->fill(s->userdata, s->first + index, dst, nbytes, err);
}

static uint64_t out_bytes(const struct skv_st_out_tensor *t)
{
	uint64_t b = skv_st_dtype_size(t->dtype);
	for (uint32_t d = 0; d < t->ndim; d++)
		b *= t->shape[d];
	return b;
}

void skv_st_remove_checkpoint(const char *dir)
{
	char old[4096];
	snprintf(old, sizeof(old), "%s/model.safetensors.index.json", dir);
	unlink(old);
	snprintf(old, sizeof(old), "%s/model.safetensors", dir);
	unlink(old);
	glob_t g;
	snprintf(old, sizeof(old), "%s/model-[0-9]*-of-[0-9]*.safetensors", dir);
	if (glob(old, 0, NULL, &g) == 0) {
		for (size_t k = 0; k < g.gl_pathc; k++)
			unlink(g.gl_pathv[k]);
		globfree(&g);
	}
}

int skv_st_write_sharded(const char *dir, const struct skv_st_out_tensor *t, size_t n, uint64_t max_shard,
			 const char *metadata_json, skv_st_fill_fn fill, void *userdata, size_t *ret_shards,
			 uint64_t *ret_bytes, struct skv_err *err)
{
	char path[4096];
	size_t shards = 1;
	uint64_t cur = 0, total = 0;
	int r = 0;

	/* an earlier checkpoint's index and shards must not outlive it (a loader prefers the index) */
	skv_st_remove_checkpoint(dir);
	for (size_t i = 0; i < n; i++) {
		uint64_t b = out_bytes(&t[i]);
		if (cur > 0 && cur + b > max_shard) {
			shards++;
			cur = 0;
		}
		cur += b;
		total += b;
	}
	json_object *wmap = json_object_new_object();
	if (!wmap)
		return skv_err_set(err, -ENOMEM, "out of memory");
	size_t i = 0;
	for (size_t s = 0; s < shards && r == 0; s++) {
		char fname[128];
		size_t first = i;
		if (shards == 1)
			snprintf(fname, sizeof(fname), "model.safetensors");
		else
			snprintf(fname, sizeof(fname), "model-%05zu-of-%05zu.safetensors", s + 1, shards);
		cur = 0;
		while (i < n && (i == first || cur + out_bytes(&t[i]) <= max_shard)) {
			cur += out_bytes(&t[i]);
			json_object_object_add(wmap, t[i].name, json_object_new_string(fname));
			i++;
		}
		struct shard_fill sf = {.fill = fill, .userdata = userdata, .first = first};
		snprintf(path, sizeof(path), "%s/%s", dir, fname);
		r = skv_st_write(path, t + first, i - first, metadata_json, shard_fill, &sf, err);
	}
	if (r == 0 && shards > 1) {
		json_object *index = json_object_new_object(), *meta = json_object_new_object();
		json_object_object_add(meta, "total_size", json_object_new_int64((int64_t)total));
		json_object_object_add(index, "metadata", meta);
		json_object_object_add(index, "weight_map", json_object_get(wmap));
		r = skv_json_write(dir, "model.safetensors.index.json", index, err);
	}
	json_object_put(wmap);
	if (r == 0 && ret_shards)
		*ret_shards = shards;
	if (r == 0 && ret_bytes)
		*ret_bytes = total;
	return r;
}
