/* cuda-none.c: the CUDA entry points of a build made without nvcc. They say so plainly; a
 * config that asks for CUDA in such a build fails at start-up instead of falling back in silence. */
#include "ops.h"

bool skv_backend_cuda_available(void) { return false; }

int skv_backend_cuda_new(int device, struct skv_backend **ret, struct skv_err *err)
{
	(void)device;
	(void)ret;
	return skv_err_set(err, -ENODEV, "this build of swiftkv has no CUDA backend (nvcc was not found at build time)");
}
