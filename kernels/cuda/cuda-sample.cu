/* cuda-sample.cu: greedy, temperature, top-k and top-p sampling on the GPU, with the semantics of
 * kernels/cpu/cpu-sample.c: candidates in the total order (logit descending, id ascending),
 * top-k then top-p (smallest prefix whose probability reaches top_p * sum, at least one token),
 * probabilities exp(l / T - max / T) in double, one draw skv_sample_uniform(seed, step) times
 * the kept sum, and the first candidate whose running sum exceeds it.
 *
 * One block per row and no sort: every "find the candidate where a running count or sum crosses
 * a target" is a radix select over a 32-bit key that orders logits descending, 4 bits per pass,
 * with per-thread 16-bin histograms (counts and double sums) reduced in a fixed order, then the
 * tie group (equal logits) resolved by id. The sums are in double like the CPU's, but added in a
 * different order: the two can disagree only when the draw lands within ~1e-15 (relative) of a
 * boundary between two candidates. Deterministic run to run.
 */
#include "cuda-internal.h"

#define SMP_THREADS 512
#define SMP_WARPS (SMP_THREADS / 32)

/* Logit -> key: ascending key = descending logit; -0 == +0; NaN last. */
__device__ __forceinline__ uint32_t desc_key(float l)
{
	if (l != l)
		return 0xffffffffu;
	uint32_t u = l == 0.0f ? 0u : __float_as_uint(l);
	uint32_t asc = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
	return ~asc;
}

/* Candidate under boundary (bkey, bidx): at or before it in the order. */
__device__ __forceinline__ bool before_eq(uint32_t k, int32_t i, uint32_t bkey, int32_t bidx)
{
	return k < bkey || (k == bkey && i <= bidx);
}

struct smp_shared {
	uint32_t rk[SMP_WARPS];
	int32_t ri[SMP_WARPS];
	double rm[SMP_WARPS][16];
	uint32_t rc[SMP_WARPS][16];
	double tot_m[16];
	uint32_t tot_c[16];
	double dsum[SMP_WARPS];
	int32_t wcount[SMP_WARPS];
	int32_t found_idx;
	int32_t chosen_bin;
	double before;
};

/* Block-wide lexicographic min (and max when want_max) of (key, idx). */
__device__ void block_minmax(smp_shared &sh, uint32_t &k, int32_t &i, bool want_max)
{
	const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
	for (int o = 16; o > 0; o >>= 1) {
		uint32_t k2 = __shfl_xor_sync(0xffffffffu, k, o);
		int32_t i2 = __shfl_xor_sync(0xffffffffu, i, o);
		bool take = want_max ? (k2 > k || (k2 == k && i2 > i)) : (k2 < k || (k2 == k && i2 < i));
		if (take) {
			k = k2;
			i = i2;
		}
	}
	__syncthreads();
	if (lane == 0) {
		sh.rk[warp] = k;
		sh.ri[warp] = i;
	}
	__syncthreads();
	k = sh.rk[0];
	i = sh.ri[0];
	for (int w = 1; w < SMP_WARPS; w++) {
		uint32_t k2 = sh.rk[w];
		int32_t i2 = sh.ri[w];
		bool take = want_max ? (k2 > k || (k2 == k && i2 > i)) : (k2 < k || (k2 == k && i2 < i));
		if (take) {
			k = k2;
			i = i2;
		}
	}
}

__device__ double block_dsum(smp_shared &sh, double v)
{
	const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
	for (int o = 16; o > 0; o >>= 1)
		v += __shfl_xor_sync(0xffffffffu, v, o);
	__syncthreads();
	if (lane == 0)
		sh.dsum[warp] = v;
	__syncthreads();
	double s = 0.0;
	for (int w = 0; w < SMP_WARPS; w++)
		s += sh.dsum[w];
	return s;
}

enum { SEL_COUNT_GE = 0, SEL_MASS_GE = 1, SEL_MASS_GT = 2 };

__device__ __forceinline__ bool crosses(int mode, double acc, double target)
{
	return mode == SEL_MASS_GT ? acc > target : acc >= target;
}

struct sel_result {
	bool found;
	uint32_t key;
	int32_t idx;
	double cum; /* running count or sum through the found candidate (the whole sum if not found) */
};

/* The first candidate (in order, among those up to the boundary) at which the running count
 * (mode COUNT) or probability sum crosses target. */
__device__ sel_result select_cross(smp_shared &sh, int mode, const float *lr, uint32_t V, uint32_t bkey, int32_t bidx,
				   double target, double inv_t, double mx)
{
	const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
	uint32_t prefix = 0, mask = 0;
	double before = 0.0;
	sel_result res = {false, 0, 0, 0.0};

	for (int shift = 28; shift >= 0; shift -= 4) {
		double hm[16];
		uint32_t hc[16];
#pragma unroll
		for (int b = 0; b < 16; b++) {
			hm[b] = 0.0;
			hc[b] = 0;
		}
		for (uint32_t i = threadIdx.x; i < V; i += SMP_THREADS) {
			const float lv = lr[i];
			const uint32_t k = desc_key(lv);
			if ((k & mask) != prefix || !before_eq(k, (int32_t)i, bkey, bidx) || k == 0xffffffffu)
				continue;
			const uint32_t bin = (k >> shift) & 15u;
			const double p = mode == SEL_COUNT_GE ? 0.0 : exp((double)lv * inv_t - mx);
#pragma unroll
			for (int b = 0; b < 16; b++) {
				if (bin == (uint32_t)b) {
					hc[b]++;
					hm[b] += p;
				}
			}
		}
#pragma unroll
		for (int b = 0; b < 16; b++) {
			for (int o = 16; o > 0; o >>= 1) {
				hm[b] += __shfl_xor_sync(0xffffffffu, hm[b], o);
				hc[b] += __shfl_xor_sync(0xffffffffu, hc[b], o);
			}
		}
		__syncthreads();
		if (lane == 0) {
#pragma unroll
			for (int b = 0; b < 16; b++) {
				sh.rm[warp][b] = hm[b];
				sh.rc[warp][b] = hc[b];
			}
		}
		__syncthreads();
		if (threadIdx.x < 16) {
			double m = 0.0;
			uint32_t c = 0;
			for (int w = 0; w < SMP_WARPS; w++) {
				m += sh.rm[w][threadIdx.x];
				c += sh.rc[w][threadIdx.x];
			}
			sh.tot_m[threadIdx.x] = m;
			sh.tot_c[threadIdx.x] = c;
		}
		__syncthreads();
		if (threadIdx.x == 0) {
			int chosen = -1, last = -1;
			double acc = before, acc_last = before;
			for (int b = 0; b < 16; b++) {
				if (!sh.tot_c[b])
					continue;
				const double val = mode == SEL_COUNT_GE ? (double)sh.tot_c[b] : sh.tot_m[b];
				if (crosses(mode, acc + val, target)) {
					chosen = b;
					break;
				}
				last = b;
				acc_last = acc;
				acc += val;
			}
			/* Below the first pass the crossing is inside this range: if rounding of the
			 * partial sums hides it, it is at the range's end. */
			if (chosen < 0 && mask != 0 && last >= 0) {
				chosen = last;
				acc = acc_last;
			}
			sh.chosen_bin = chosen;
			sh.before = acc;
		}
		__syncthreads();
		const int chosen = sh.chosen_bin;
		before = sh.before;
		if (chosen < 0) {
			res.cum = before;
			return res;
		}
		prefix |= (uint32_t)chosen << shift;
		mask |= 15u << shift;
	}

	/* The tie group: every candidate with key == prefix has the same logit, hence the same p.
	 * The j-th of them by id is where the running value crosses. */
	const uint32_t group_n = sh.tot_c[sh.chosen_bin];
	int32_t j = (int32_t)group_n;
	double acc = before;
	{
		float lv = 0.0f;
		/* the logit of the group (any member; found below by the first member) */
		__syncthreads();
		if (threadIdx.x == 0)
			sh.found_idx = INT32_MAX;
		__syncthreads();
		for (uint32_t i = threadIdx.x; i < V; i += SMP_THREADS) {
			uint32_t k = desc_key(lr[i]);
			if (k == prefix && before_eq(k, (int32_t)i, bkey, bidx)) {
				atomicMin(&sh.found_idx, (int32_t)i);
				break;
			}
		}
		__syncthreads();
		lv = lr[sh.found_idx];
		const double unit = mode == SEL_COUNT_GE ? 1.0 : exp((double)lv * inv_t - mx);
		for (int32_t n = 1; n <= (int32_t)group_n; n++) {
			acc += unit;
			if (crosses(mode, acc, target)) {
				j = n;
				break;
			}
		}
		if (j == (int32_t)group_n && !crosses(mode, acc, target))
			acc = before + unit * group_n; /* rounding: take the group's last member */
	}

	/* the j-th member by ascending id */
	__syncthreads();
	if (threadIdx.x == 0)
		sh.found_idx = -1;
	int32_t seen = 0;
	for (uint32_t base = 0; base < V; base += SMP_THREADS) {
		const uint32_t i = base + threadIdx.x;
		bool match = false;
		if (i < V) {
			uint32_t k = desc_key(lr[i]);
			match = k == prefix && before_eq(k, (int32_t)i, bkey, bidx);
		}
		const unsigned bal = __ballot_sync(0xffffffffu, match);
		__syncthreads();
		if (lane == 0)
			sh.wcount[warp] = __popc(bal);
		__syncthreads();
		int32_t off = seen;
		for (int w = 0; w < warp; w++)
			off += sh.wcount[w];
		const int32_t rank = off + __popc(bal & ((1u << lane) - 1u)); /* 0-based among matches */
		if (match && rank == j - 1)
			sh.found_idx = (int32_t)i;
		int32_t total = 0;
		for (int w = 0; w < SMP_WARPS; w++)
			total += sh.wcount[w];
		seen += total;
		__syncthreads();
		if (sh.found_idx >= 0)
			break;
	}
	res.found = sh.found_idx >= 0;
	res.key = prefix;
	res.idx = sh.found_idx;
	res.cum = acc;
	return res;
}

__global__ void __launch_bounds__(SMP_THREADS) k_sample(int32_t *out, const float *logits,
							 const struct skv_sample_params *params, uint32_t V)
{
	__shared__ smp_shared sh;
	const float *lr = logits + (size_t)blockIdx.x * V;
	const struct skv_sample_params sp = params[blockIdx.x];

	/* first and last candidates in the order */
	uint32_t kmin = 0xffffffffu, kmax = 0;
	int32_t imin = INT32_MAX, imax = -1;
	for (uint32_t i = threadIdx.x; i < V; i += SMP_THREADS) {
		const uint32_t k = desc_key(lr[i]);
		if (k < kmin || (k == kmin && (int32_t)i < imin)) {
			kmin = k;
			imin = (int32_t)i;
		}
		if (k != 0xffffffffu && (k > kmax || (k == kmax && (int32_t)i > imax))) {
			kmax = k;
			imax = (int32_t)i;
		}
	}
	block_minmax(sh, kmin, imin, false);
	const bool greedy = sp.temperature <= 0.0f || sp.top_k == 1;
	if (greedy || kmin == 0xffffffffu) { /* greedy, or a row of NaNs (the CPU answers 0 then too) */
		if (threadIdx.x == 0)
			out[blockIdx.x] = imin == INT32_MAX ? 0 : imin;
		return;
	}
	block_minmax(sh, kmax, imax, true);

	const double inv_t = 1.0 / (double)sp.temperature;
	const double mx = (double)lr[imin] * inv_t;
	uint32_t bkey = kmax;
	int32_t bidx = imax;

	if (sp.top_k > 0 && sp.top_k < V) {
		sel_result r = select_cross(sh, SEL_COUNT_GE, lr, V, bkey, bidx, (double)sp.top_k, inv_t, mx);
		if (r.found) {
			bkey = r.key;
			bidx = r.idx;
		}
	}
	double part = 0.0;
	for (uint32_t i = threadIdx.x; i < V; i += SMP_THREADS) {
		const float lv = lr[i];
		const uint32_t k = desc_key(lv);
		if (k != 0xffffffffu && before_eq(k, (int32_t)i, bkey, bidx))
			part += exp((double)lv * inv_t - mx);
	}
	double sum = block_dsum(sh, part);
	if (sp.top_p < 1.0f) {
		sel_result r = select_cross(sh, SEL_MASS_GE, lr, V, bkey, bidx, (double)sp.top_p * sum, inv_t, mx);
		if (r.found) {
			bkey = r.key;
			bidx = r.idx;
			sum = r.cum;
		}
	}
	const double u = skv_sample_uniform(sp.seed, sp.step) * sum;
	sel_result r = select_cross(sh, SEL_MASS_GT, lr, V, bkey, bidx, u, inv_t, mx);
	if (threadIdx.x == 0)
		out[blockIdx.x] = r.found ? r.idx : bidx;
}

void skv_cuda_sample(struct skv_backend *be, int32_t *out, const float *logits, const struct skv_sample_params *params,
		     uint32_t n, uint32_t vocab)
{
	struct skv_cuda_backend *cb = skv_cuda(be);
	if (n == 0 || skv_cuda_dead(cb))
		return;
	uint32_t tok = skv_cuda_prof_begin(cb);
	k_sample<<<n, SMP_THREADS, 0, cb->stream>>>(out, logits, params, vocab);
	skv_cuda_launched(cb, "sample");
	skv_cuda_prof_end(cb, tok, "sample", 0.0, 4.0 * n * vocab);
}
