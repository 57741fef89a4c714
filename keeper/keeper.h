/* keeper.h: GPU memory that outlives the processes using it (the CUDA VMM API).
 *
 * skvd creates the weights and the KV arena of each GPU here and exports each as a POSIX file
 * descriptor; a worker imports and maps them. When a worker dies, even on a device fault, the
 * memory and its contents stay with skvd, and the next worker maps them again in a fraction of a
 * millisecond instead of reloading gigabytes. The driver is loaded at run time (dlopen of
 * libcuda.so.1), so binaries built with CUDA still start, and serve on the CPU, on machines
 * without a GPU driver. The only module besides shm/ and model/ that daemon/ may use.
 */
#pragma once

#include "skv-base.h"

struct skv_keeper_region {
	int device;
	int fd;		/* exported handle (creator) or the imported one (kept open); -1 when none */
	size_t size;	/* bytes, a multiple of the allocation granularity */
	uint64_t va;	/* device address mapped in this process */
	uint64_t handle; /* CUmemGenericAllocationHandle */
};

/* Loads the driver and counts devices: 0 (and *ret_count) when usable, -ENODEV without a driver
 * or device, -EOPNOTSUPP in a build without CUDA. err says which. */
int skv_keeper_open(int *ret_count, struct skv_err *err);

/* Free and total memory of a device, in bytes. */
int skv_keeper_mem_info(int device, size_t *ret_free, size_t *ret_total, struct skv_err *err);

/* Creates a region of at least bytes on device, mapped read-write here, exportable (r->fd is a
 * close-on-exec fd: pass it with SCM_RIGHTS or dup2 it at spawn). */
int skv_keeper_create(int device, size_t bytes, struct skv_keeper_region *ret, struct skv_err *err);

/* Imports a region another process created (fd is consumed: the region owns it) and maps it
 * read-write on device. Call it after the process's CUDA runtime is initialised on that device
 * (the mapping goes into the current context). */
int skv_keeper_import(int device, int fd, size_t size, struct skv_keeper_region *ret, struct skv_err *err);

/* Copies host memory into a region (synchronous). */
int skv_keeper_upload(const struct skv_keeper_region *r, size_t offset, const void *src, size_t n,
		      struct skv_err *err);

/* Unmaps and releases; the memory is freed when no process holds it any more. Accepts a zeroed
 * or already released region. */
void skv_keeper_release(struct skv_keeper_region *r);
