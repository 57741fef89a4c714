/* keeper-cuda.c: VMM regions through the CUDA driver API, loaded with dlopen (see keeper.h).
 *
 * Create: cuMemCreate (pinned device memory, POSIX fd handle type), cuMemAddressReserve +
 * cuMemMap + cuMemSetAccess here, cuMemExportToShareableHandle for the fd. Import:
 * cuMemImportFromShareableHandle, then the same reserve, map and access. The creator's handle
 * keeps the memory alive whatever happens to importers.
 */
#include <cuda.h>
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "keeper.h"

/* The driver entry points we use, resolved by their versioned ABI names. */
static struct {
	bool loaded;
	int load_error;
	char why[160];
	__typeof__(cuInit) *Init;
	__typeof__(cuDeviceGetCount) *DeviceGetCount;
	__typeof__(cuDeviceGet) *DeviceGet;
	__typeof__(cuDeviceGetAttribute) *DeviceGetAttribute;
	__typeof__(cuDevicePrimaryCtxRetain) *DevicePrimaryCtxRetain;
	__typeof__(cuCtxSetCurrent) *CtxSetCurrent;
	__typeof__(cuCtxGetCurrent) *CtxGetCurrent;
	__typeof__(cuMemGetInfo) *MemGetInfo;
	__typeof__(cuMemGetAllocationGranularity) *MemGetAllocationGranularity;
	__typeof__(cuMemCreate) *MemCreate;
	__typeof__(cuMemRelease) *MemRelease;
	__typeof__(cuMemExportToShareableHandle) *MemExportToShareableHandle;
	__typeof__(cuMemImportFromShareableHandle) *MemImportFromShareableHandle;
	__typeof__(cuMemAddressReserve) *MemAddressReserve;
	__typeof__(cuMemAddressFree) *MemAddressFree;
	__typeof__(cuMemMap) *MemMap;
	__typeof__(cuMemUnmap) *MemUnmap;
	__typeof__(cuMemSetAccess) *MemSetAccess;
	__typeof__(cuMemcpyHtoD) *MemcpyHtoD;
	__typeof__(cuGetErrorString) *GetErrorString;
} drv;

static int load(struct skv_err *err)
{
	if (drv.loaded)
		return 0;
	if (drv.load_error)
		return skv_err_set(err, drv.load_error, "%s", drv.why);
	void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		drv.load_error = -ENODEV;
		snprintf(drv.why, sizeof(drv.why), "no CUDA driver: %s", dlerror());
		return skv_err_set(err, drv.load_error, "%s", drv.why);
	}
#define SYM(field, name)                                                                                               \
	do {                                                                                                           \
		*(void **)&drv.field = dlsym(h, name);                                                                 \
		if (!drv.field) {                                                                                      \
			drv.load_error = -ENODEV;                                                                      \
			snprintf(drv.why, sizeof(drv.why), "the CUDA driver lacks %s (too old?)", name);              \
			return skv_err_set(err, drv.load_error, "%s", drv.why);                                       \
		}                                                                                                      \
	} while (0)
	SYM(Init, "cuInit");
	SYM(DeviceGetCount, "cuDeviceGetCount");
	SYM(DeviceGet, "cuDeviceGet");
	SYM(DeviceGetAttribute, "cuDeviceGetAttribute");
	SYM(DevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain");
	SYM(CtxSetCurrent, "cuCtxSetCurrent");
	SYM(CtxGetCurrent, "cuCtxGetCurrent");
	SYM(MemGetInfo, "cuMemGetInfo_v2");
	SYM(MemGetAllocationGranularity, "cuMemGetAllocationGranularity");
	SYM(MemCreate, "cuMemCreate");
	SYM(MemRelease, "cuMemRelease");
	SYM(MemExportToShareableHandle, "cuMemExportToShareableHandle");
	SYM(MemImportFromShareableHandle, "cuMemImportFromShareableHandle");
	SYM(MemAddressReserve, "cuMemAddressReserve");
	SYM(MemAddressFree, "cuMemAddressFree");
	SYM(MemMap, "cuMemMap");
	SYM(MemUnmap, "cuMemUnmap");
	SYM(MemSetAccess, "cuMemSetAccess");
	SYM(MemcpyHtoD, "cuMemcpyHtoD_v2");
	SYM(GetErrorString, "cuGetErrorString");
#undef SYM
	CUresult r = drv.Init(0);
	if (r != CUDA_SUCCESS) {
		const char *s = NULL;
		drv.GetErrorString(r, &s);
		drv.load_error = -ENODEV;
		snprintf(drv.why, sizeof(drv.why), "cuInit failed: %s", s ? s : "unknown error");
		return skv_err_set(err, drv.load_error, "%s", drv.why);
	}
	drv.loaded = true;
	return 0;
}

static int fail(struct skv_err *err, CUresult r, const char *what, int device)
{
	const char *s = NULL;
	if (drv.GetErrorString)
		drv.GetErrorString(r, &s);
	return skv_err_set(err, r == CUDA_ERROR_OUT_OF_MEMORY ? -ENOMEM : -EIO, "GPU %d: %s: %s", device, what,
			   s ? s : "unknown CUDA error");
}

/* The device's primary context current on this thread (skvd's copies run in it; in a worker
 * the runtime already made it current). */
static int use_device(int device, CUdevice *ret_dev, struct skv_err *err)
{
	CUdevice dev;
	CUcontext ctx = NULL;
	CUresult r;
	if ((r = drv.DeviceGet(&dev, device)) != CUDA_SUCCESS)
		return fail(err, r, "no such device", device);
	if ((r = drv.CtxGetCurrent(&ctx)) != CUDA_SUCCESS || !ctx) {
		if ((r = drv.DevicePrimaryCtxRetain(&ctx, dev)) != CUDA_SUCCESS)
			return fail(err, r, "cannot create a context", device);
		if ((r = drv.CtxSetCurrent(ctx)) != CUDA_SUCCESS)
			return fail(err, r, "cannot use its context", device);
	}
	*ret_dev = dev;
	return 0;
}

int skv_keeper_open(int *ret_count, struct skv_err *err)
{
	int n = 0, r = load(err);
	*ret_count = 0;
	if (r < 0)
		return r;
	CUresult cr = drv.DeviceGetCount(&n);
	if (cr != CUDA_SUCCESS || n == 0)
		return skv_err_set(err, -ENODEV, "no CUDA device is visible");
	*ret_count = n;
	return 0;
}

int skv_keeper_mem_info(int device, size_t *ret_free, size_t *ret_total, struct skv_err *err)
{
	CUdevice dev;
	int r = load(err);
	if (r < 0 || (r = use_device(device, &dev, err)) < 0)
		return r;
	CUresult cr = drv.MemGetInfo(ret_free, ret_total);
	return cr == CUDA_SUCCESS ? 0 : fail(err, cr, "cuMemGetInfo", device);
}

static CUmemAllocationProp prop_for(CUdevice dev)
{
	CUmemAllocationProp p;
	memset(&p, 0, sizeof(p));
	p.type = CU_MEM_ALLOCATION_TYPE_PINNED;
	p.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	p.location.id = dev;
	p.requestedHandleTypes = CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;
	return p;
}

/* Reserve, map and open access to handle h of size bytes. */
static int map_here(CUdevice dev, int device, CUmemGenericAllocationHandle h, size_t size, CUdeviceptr *ret_va,
		    struct skv_err *err)
{
	CUdeviceptr va = 0;
	CUresult r = drv.MemAddressReserve(&va, size, 0, 0, 0);
	if (r != CUDA_SUCCESS)
		return fail(err, r, "cuMemAddressReserve", device);
	if ((r = drv.MemMap(va, size, 0, h, 0)) != CUDA_SUCCESS) {
		drv.MemAddressFree(va, size);
		return fail(err, r, "cuMemMap", device);
	}
	CUmemAccessDesc a;
	memset(&a, 0, sizeof(a));
	a.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	a.location.id = dev;
	a.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
	if ((r = drv.MemSetAccess(va, size, &a, 1)) != CUDA_SUCCESS) {
		drv.MemUnmap(va, size);
		drv.MemAddressFree(va, size);
		return fail(err, r, "cuMemSetAccess", device);
	}
	*ret_va = va;
	return 0;
}

int skv_keeper_create(int device, size_t bytes, struct skv_keeper_region *ret, struct skv_err *err)
{
	CUdevice dev;
	CUmemGenericAllocationHandle h;
	size_t gran = 0;
	int fd = -1, r = load(err);

	if (r < 0 || (r = use_device(device, &dev, err)) < 0)
		return r;
	CUmemAllocationProp p = prop_for(dev);
	CUresult cr = drv.MemGetAllocationGranularity(&gran, &p, CU_MEM_ALLOC_GRANULARITY_RECOMMENDED);
	if (cr != CUDA_SUCCESS || !gran)
		return fail(err, cr, "cuMemGetAllocationGranularity", device);
	size_t size = SKV_ALIGN_UP(SKV_MAX(bytes, (size_t)1), gran);
	if ((cr = drv.MemCreate(&h, size, &p, 0)) != CUDA_SUCCESS)
		return fail(err, cr, "cuMemCreate", device);
	if ((cr = drv.MemExportToShareableHandle(&fd, h, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0)) != CUDA_SUCCESS) {
		drv.MemRelease(h);
		return fail(err, cr, "cuMemExportToShareableHandle", device);
	}
	CUdeviceptr va;
	if ((r = map_here(dev, device, h, size, &va, err)) < 0) {
		close(fd);
		drv.MemRelease(h);
		return r;
	}
	*ret = (struct skv_keeper_region){.device = device, .fd = fd, .size = size, .va = va, .handle = h};
	return 0;
}

int skv_keeper_import(int device, int fd, size_t size, struct skv_keeper_region *ret, struct skv_err *err)
{
	CUdevice dev;
	CUmemGenericAllocationHandle h;
	int r = load(err);

	if (r < 0 || (r = use_device(device, &dev, err)) < 0)
		return r;
	CUresult cr = drv.MemImportFromShareableHandle(&h, (void *)(uintptr_t)fd, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR);
	if (cr != CUDA_SUCCESS)
		return fail(err, cr, "cuMemImportFromShareableHandle", device);
	CUdeviceptr va;
	if ((r = map_here(dev, device, h, size, &va, err)) < 0) {
		drv.MemRelease(h);
		return r;
	}
	*ret = (struct skv_keeper_region){.device = device, .fd = fd, .size = size, .va = va, .handle = h};
	return 0;
}

int skv_keeper_upload(const struct skv_keeper_region *r, size_t offset, const void *src, size_t n,
		      struct skv_err *err)
{
	if (offset > r->size || n > r->size - offset)
		return skv_err_set(err, -ERANGE, "GPU %d: upload of %zu bytes at %zu past a region of %zu", r->device, n,
				   offset, r->size);
	CUresult cr = drv.MemcpyHtoD((CUdeviceptr)(r->va + offset), src, n);
	return cr == CUDA_SUCCESS ? 0 : fail(err, cr, "cuMemcpyHtoD", r->device);
}

void skv_keeper_release(struct skv_keeper_region *r)
{
	if (!r || !r->size || !drv.loaded)
		return;
	drv.MemUnmap((CUdeviceptr)r->va, r->size);
	drv.MemAddressFree((CUdeviceptr)r->va, r->size);
	drv.MemRelease((CUmemGenericAllocationHandle)r->handle);
	if (r->fd >= 0)
		close(r->fd);
	*r = (struct skv_keeper_region){.fd = -1};
}
