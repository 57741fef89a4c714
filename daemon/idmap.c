/* idmap.c: see idmap.h. Slot ids of 0 mean empty, so id 0 is never stored (skvd starts at 1). */
#include "idmap.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

struct skvd_idmap {
	uint64_t *ids;
	void **vals;
	uint32_t cap; /* power of two */
	uint32_t n;
};

static uint32_t slot_of(const struct skvd_idmap *m, uint64_t id)
{
	return (uint32_t)((id * 0x9e3779b97f4a7c15ull) >> 32) & (m->cap - 1);
}

struct skvd_idmap *skvd_idmap_new(void)
{
	struct skvd_idmap *m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	m->cap = 64;
	m->ids = calloc(m->cap, sizeof(*m->ids));
	m->vals = calloc(m->cap, sizeof(*m->vals));
	if (!m->ids || !m->vals) {
		skvd_idmap_free(m);
		return NULL;
	}
	return m;
}

void skvd_idmap_free(struct skvd_idmap *m)
{
	if (!m)
		return;
	free(m->ids);
	free(m->vals);
	free(m);
}

static int grow(struct skvd_idmap *m)
{
	struct skvd_idmap big = {.cap = m->cap * 2};
	big.ids = calloc(big.cap, sizeof(*big.ids));
	big.vals = calloc(big.cap, sizeof(*big.vals));
	if (!big.ids || !big.vals) {
		free(big.ids);
		free(big.vals);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < m->cap; i++)
		if (m->ids[i]) {
			uint32_t s = slot_of(&big, m->ids[i]);
			while (big.ids[s])
				s = (s + 1) & (big.cap - 1);
			big.ids[s] = m->ids[i];
			big.vals[s] = m->vals[i];
		}
	free(m->ids);
	free(m->vals);
	m->ids = big.ids;
	m->vals = big.vals;
	m->cap = big.cap;
	return 0;
}

int skvd_idmap_put(struct skvd_idmap *m, uint64_t id, void *p)
{
	if (!id)
		return -EINVAL;
	if (2 * (m->n + 1) > m->cap && grow(m) < 0)
		return -ENOMEM;
	uint32_t s = slot_of(m, id);
	while (m->ids[s]) {
		if (m->ids[s] == id)
			return -EEXIST;
		s = (s + 1) & (m->cap - 1);
	}
	m->ids[s] = id;
	m->vals[s] = p;
	m->n++;
	return 0;
}

void *skvd_idmap_get(const struct skvd_idmap *m, uint64_t id)
{
	if (!id)
		return NULL;
	for (uint32_t s = slot_of(m, id); m->ids[s]; s = (s + 1) & (m->cap - 1))
		if (m->ids[s] == id)
			return m->vals[s];
	return NULL;
}

void *skvd_idmap_del(struct skvd_idmap *m, uint64_t id)
{
	uint32_t s;
	if (!id)
		return NULL;
	for (s = slot_of(m, id); m->ids[s]; s = (s + 1) & (m->cap - 1))
		if (m->ids[s] == id)
			break;
	if (!m->ids[s])
		return NULL;
	void *v = m->vals[s];
	/* backward shift: pull later members of the cluster into the hole when their home allows */
	uint32_t hole = s;
	for (uint32_t j = (s + 1) & (m->cap - 1); m->ids[j]; j = (j + 1) & (m->cap - 1)) {
		uint32_t home = slot_of(m, m->ids[j]);
		/* j may move to hole iff home is not in the cyclic range (hole, j] */
		bool in_range = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
		if (!in_range) {
			m->ids[hole] = m->ids[j];
			m->vals[hole] = m->vals[j];
			hole = j;
		}
	}
	m->ids[hole] = 0;
	m->vals[hole] = NULL;
	m->n--;
	return v;
}

