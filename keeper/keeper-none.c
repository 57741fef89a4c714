/* keeper-none.c: the memory keeper of a build without CUDA: it says so. */
#include "keeper.h"

int skv_keeper_open(int *ret_count, struct skv_err *err)
{
	*ret_count = 0;
	return skv_err_set(err, -EOPNOTSUPP, "this build of swiftkv has no CUDA support (nvcc was not found at build time)");
}

int skv_keeper_mem_info(int device, size_t *ret_free, size_t *ret_total, struct skv_err *err)
{
	(void)device, (void)ret_free, (void)ret_total;
	return skv_err_set(err, -EOPNOTSUPP, "no CUDA support in this build");
}

int skv_keeper_create(int device, size_t bytes, struct skv_keeper_region *ret, struct skv_err *err)
{
	(void)device, (void)bytes, (void)ret;
	return skv_err_set(err, -EOPNOTSUPP, "no CUDA support in this build");
}

int skv_keeper_import(int device, int fd, size_t size, struct skv_keeper_region *ret, struct skv_err *err)
{
	(void)device, (void)fd, (void)size, (void)ret;
	return skv_err_set(err, -EOPNOTSUPP, "no CUDA support in this build");
}

int skv_keeper_upload(const struct skv_keeper_region *r, size_t offset, const void *src, size_t n, struct skv_err *err)
{
	(void)r, (void)offset, (void)src, (void)n;
	return skv_err_set(err, -EOPNOTSUPP, "no CUDA support in this build");
}

void skv_keeper_release(struct skv_keeper_region *r) { (void)r; }
