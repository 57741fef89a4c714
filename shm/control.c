/* control.c: the control segment's layout and checks (see control.h). */
#include "control.h"

#include <stdio.h>
#include <string.h>

void skv_ctl_layout(struct skv_ctl_header *h, uint32_t replica, uint32_t req_capacity, uint32_t evt_capacity,
		    uint32_t pool_tokens)
{
	uint64_t off = sizeof(*h);
	memset(h, 0, sizeof(*h));
	h->magic = SKV_CTL_MAGIC;
	h->version = SKV_CTL_VERSION;
	h->header_size = sizeof(*h);
	h->replica = replica;
	h->req_capacity = req_capacity;
	h->evt_capacity = evt_capacity;
	h->pool_tokens = pool_tokens;
	h->status_offset = (uint32_t)off;
	off = SKV_ALIGN_UP(off + sizeof(struct skv_worker_status), 128);
	h->req_idx_offset = (uint32_t)off;
	off += sizeof(struct skv_ring_shared);
	h->req_offset = (uint32_t)off;
	off = SKV_ALIGN_UP(off + (uint64_t)req_capacity * sizeof(struct skv_ctl_req), 128);
	h->evt_idx_offset = (uint32_t)off;
	off += sizeof(struct skv_ring_shared);
	h->evt_offset = (uint32_t)off;
	off = SKV_ALIGN_UP(off + (uint64_t)evt_capacity * sizeof(struct skv_ctl_evt), 128);
	h->pool_offset = (uint32_t)off;
	off += (uint64_t)pool_tokens * sizeof(int32_t);
	h->total_size = SKV_ALIGN_UP(off, 4096);
}

int skv_ctl_check(const struct skv_ctl_header *h, size_t size, struct skv_err *err)
{
	struct skv_ctl_header want;
	if (size < sizeof(*h))
		return skv_err_set(err, -EPROTO, "control segment: %zu bytes, smaller than its header", size);
	if (h->magic != SKV_CTL_MAGIC || h->version != SKV_CTL_VERSION || h->header_size != sizeof(*h))
		return skv_err_set(err, -EPROTO, "control segment: bad magic, version or header size");
	if (!skv_ring_capacity_ok(h->req_capacity) || !skv_ring_capacity_ok(h->evt_capacity) ||
	    h->pool_tokens > (1u << 28))
		return skv_err_set(err, -EPROTO, "control segment: bad ring capacities");
	/* every offset must be the one the layout gives for these capacities */
	skv_ctl_layout(&want, h->replica, h->req_capacity, h->evt_capacity, h->pool_tokens);
	if (want.total_size != h->total_size || want.total_size != size || want.status_offset != h->status_offset ||
	    want.req_idx_offset != h->req_idx_offset || want.req_offset != h->req_offset ||
	    want.evt_idx_offset != h->evt_idx_offset || want.evt_offset != h->evt_offset ||
	    want.pool_offset != h->pool_offset)
		return skv_err_set(err, -EPROTO, "control segment: layout does not match its capacities");
	return 0;
}

void skv_ctl_req_ring(void *seg, const struct skv_ctl_header *h, bool producer, struct skv_ring *ret)
{
	skv_ring_attach(ret, (struct skv_ring_shared *)((char *)seg + h->req_idx_offset), (char *)seg + h->req_offset,
			h->req_capacity, sizeof(struct skv_ctl_req), producer);
}

void skv_ctl_evt_ring(void *seg, const struct skv_ctl_header *h, bool producer, struct skv_ring *ret)
{
	skv_ring_attach(ret, (struct skv_ring_shared *)((char *)seg + h->evt_idx_offset), (char *)seg + h->evt_offset,
			h->evt_capacity, sizeof(struct skv_ctl_evt), producer);
}
