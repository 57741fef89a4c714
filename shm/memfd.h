/* memfd.h: the memory regions skvd owns and hands out as file descriptors.
 *
 * Every region is a memfd created close-on-exec with sealing allowed; its size is sealed at
 * creation (no shrink, no grow) so a peer that maps it can never be SIGBUSed by a truncate.
 * Read-only regions (the weights) are sealed against writes too, once filled. A process that
 * receives a region checks its size and seals before mapping it: an unsealed or wrong-sized fd
 * is a protocol error.
 */
#pragma once

#include "skv-base.h"

#define SKV_SEALS_SIZE (F_SEAL_SHRINK | F_SEAL_GROW)
#define SKV_SEALS_READONLY (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL)

/* A new memfd of size bytes (zero-filled), size sealed. */
int skv_memfd_new(const char *name, size_t size, int *ret_fd, struct skv_err *err);

/* Seals fd against further sealing (its other seals stay as they are): for a region a peer
 * maps writable, which must not be able to add seals of its own. */
int skv_memfd_seal_seals(int fd, struct skv_err *err);

/* Seals fd against writes and further sealing. Fails with -EBUSY while a writable shared
 * mapping of it exists: unmap first. */
int skv_memfd_seal_readonly(int fd, struct skv_err *err);

/* Checks a received fd: a memfd of exactly size bytes (0: any size, returned in *ret_size)
 * carrying at least the seals in `seals`. */
int skv_memfd_check(int fd, size_t size, int seals, size_t *ret_size, struct skv_err *err);

/* mmap of the whole region, shared; read-only unless writable. */
int skv_memfd_map(int fd, size_t size, bool writable, void **ret, struct skv_err *err);
