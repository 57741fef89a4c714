/* idmap.h: uint64 id -> pointer, open addressing with backward-shift deletion (no tombstones).
 * Grows by doubling; never shrinks. Ids are skvd's own (sequential), so a multiplicative hash
 * spreads them well. */
#pragma once

#include <stdint.h>

struct skvd_idmap;

struct skvd_idmap *skvd_idmap_new(void);
void skvd_idmap_free(struct skvd_idmap *m);
int skvd_idmap_put(struct skvd_idmap *m, uint64_t id, void *p); /* -EEXIST, -ENOMEM */
void *skvd_idmap_get(const struct skvd_idmap *m, uint64_t id);
void *skvd_idmap_del(struct skvd_idmap *m, uint64_t id); /* returns what it held, or NULL */
