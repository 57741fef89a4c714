/* skv-dtype.h: the element types a tensor can have, and exact conversions to and from fp32.
 *
 * bf16 -> fp32 and fp16 -> fp32 are exact; fp32 -> bf16/fp16 round to nearest even (what
 * PyTorch does), with NaN kept a NaN. Header-only so kernels and tools inline it.
 */
#pragma once

#include <stdint.h>
#include <string.h>

enum skv_dtype {
	SKV_DTYPE_F32 = 0,
	SKV_DTYPE_BF16 = 1,
	SKV_DTYPE_F16 = 2,
};

static inline size_t skv_dtype_size(enum skv_dtype t) { return t == SKV_DTYPE_F32 ? 4 : 2; }

static inline const char *skv_dtype_name(enum skv_dtype t)
{
	switch (t) {
	case SKV_DTYPE_F32:
		return "F32";
	case SKV_DTYPE_BF16:
		return "BF16";
	case SKV_DTYPE_F16:
		return "F16";
	}
	return "?";
}

static inline float skv_bf16_to_f32(uint16_t h)
{
	uint32_t u = (uint32_t)h << 16;
	float f;
	memcpy(&f, &u, 4);
	return f;
}

static inline uint16_t skv_f32_to_bf16(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: keep it quiet and a NaN */
		return (uint16_t)((u >> 16) | 0x40);
	u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest even */
	return (uint16_t)(u >> 16);
}

static inline float skv_f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
	uint32_t exp = (h >> 10) & 0x1fu;
	uint32_t man = h & 0x3ffu;
	uint32_t u;
	float f;

	if (exp == 0) {
		if (man == 0) {
			u = sign;
		} else { /* subnormal: normalise */
			int e = -1;
			do {
				e++;
				man <<= 1;
			} while (!(man & 0x400u));
			u = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
		}
	} else if (exp == 31) {
		u = sign | 0x7f800000u | (man << 13);
	} else {
		u = sign | ((exp + 127 - 15) << 23) | (man << 13);
	}
	memcpy(&f, &u, 4);
	return f;
}

static inline uint16_t skv_f32_to_f16(float f)
{
	uint32_t u, sign, mag;
	memcpy(&u, &f, 4);
	sign = (u >> 16) & 0x8000u;
	mag = u & 0x7fffffffu;
	if (mag > 0x7f800000u) /* NaN */
		return (uint16_t)(sign | 0x7e00u);
	if (mag >= 0x477ff000u) /* rounds to >= 65520: inf */
		return (uint16_t)(sign | 0x7c00u);
	if (mag < 0x38800000u) { /* below the smallest normal: subnormal or zero */
		if (mag < 0x33000000u)
			return (uint16_t)sign;
		uint32_t e = mag >> 23;
		uint32_t m = (mag & 0x7fffffu) | 0x800000u;
		uint32_t shift = 126 - e; /* 14..24 */
		uint32_t half = m >> shift;
		uint32_t rem = m & ((1u << shift) - 1);
		uint32_t mid = 1u << (shift - 1);
		if (rem > mid || (rem == mid && (half & 1)))
			half++;
		return (uint16_t)(sign | half);
	}
	uint32_t r = mag - 0x38000000u; /* rebias exponent 127 -> 15 */
	r += 0xfffu + ((r >> 13) & 1u);
	return (uint16_t)(sign | (r >> 13));
}

/* Element i of a tensor of type t, as fp32. */
static inline float skv_load_f32(const void *p, enum skv_dtype t, size_t i)
{
	switch (t) {
	case SKV_DTYPE_BF16:
		return skv_bf16_to_f32(((const uint16_t *)p)[i]);
	case SKV_DTYPE_F16:
		return skv_f16_to_f32(((const uint16_t *)p)[i]);
	case SKV_DTYPE_F32:
	default: {
		float f;
		memcpy(&f, (const char *)p + 4 * i, 4);
		return f;
	}
	}
}

static inline void skv_store_f32(void *p, enum skv_dtype t, size_t i, float v)
{
	switch (t) {
	case SKV_DTYPE_BF16:
		((uint16_t *)p)[i] = skv_f32_to_bf16(v);
		break;
	case SKV_DTYPE_F16:
		((uint16_t *)p)[i] = skv_f32_to_f16(v);
		break;
	case SKV_DTYPE_F32:
	default:
		memcpy((char *)p + 4 * i, &v, 4);
		break;
	}
}
