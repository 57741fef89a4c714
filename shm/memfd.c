/* memfd.c: sealed memfds (see memfd.h). */
#include "memfd.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

int skv_memfd_new(const char *name, size_t size, int *ret_fd, struct skv_err *err)
{
	_cleanup_close_ int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return skv_err_set(err, -errno, "memfd %s: cannot create: %s", name, strerror(errno));
	if (ftruncate(fd, (off_t)size) < 0)
		return skv_err_set(err, -errno, "memfd %s: cannot size to %zu bytes: %s", name, size, strerror(errno));
	if (fcntl(fd, F_ADD_SEALS, SKV_SEALS_SIZE) < 0)
		return skv_err_set(err, -errno, "memfd %s: cannot seal: %s", name, strerror(errno));
	*ret_fd = SKV_TAKE_FD(fd);
	return 0;
}

int skv_memfd_seal_seals(int fd, struct skv_err *err)
{
	if (fcntl(fd, F_ADD_SEALS, F_SEAL_SEAL) < 0)
		return skv_err_set(err, -errno, "cannot seal memfd against sealing: %s", strerror(errno));
	return 0;
}

int skv_memfd_seal_readonly(int fd, struct skv_err *err)
{
	if (fcntl(fd, F_ADD_SEALS, SKV_SEALS_READONLY) < 0)
		return skv_err_set(err, -errno, "cannot seal memfd read-only: %s", strerror(errno));
	return 0;
}

int skv_memfd_check(int fd, size_t size, int seals, size_t *ret_size, struct skv_err *err)
{
	struct stat st;
	int have;

	if (fstat(fd, &st) < 0)
		return skv_err_set(err, -errno, "region fd %d: cannot stat: %s", fd, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return skv_err_set(err, -EPROTO, "region fd %d is not a memfd", fd);
	have = fcntl(fd, F_GET_SEALS);
	if (have < 0)
		return skv_err_set(err, -EPROTO, "region fd %d is not a sealable memfd", fd);
	if ((have & seals) != seals)
		return skv_err_set(err, -EPROTO, "region fd %d lacks seals (has 0x%x, needs 0x%x)", fd, have, seals);
	if (size && (size_t)st.st_size != size)
		return skv_err_set(err, -EPROTO, "region fd %d has %lld bytes, expected %zu", fd, (long long)st.st_size,
				   size);
	if (ret_size)
		*ret_size = (size_t)st.st_size;
	return 0;
}

int skv_memfd_map(int fd, size_t size, bool writable, void **ret, struct skv_err *err)
{
	void *p = mmap(NULL, size, PROT_READ | (writable ? PROT_WRITE : 0), MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return skv_err_set(err, -errno, "cannot map %zu bytes of region fd %d: %s", size, fd, strerror(errno));
	*ret = p;
	return 0;
}
