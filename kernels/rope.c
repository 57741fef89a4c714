/* rope.c: RoPE inverse frequencies, computed the way transformers does (fp32 arithmetic), so that
 * every backend rotates by exactly the same angles. Scaling: none, linear, or llama3
 * (modeling_rope_utils._compute_llama3_parameters). */
#include "ops.h"

#include <math.h>

void skv_rope_inv_freq(float *out, uint32_t d, double theta, uint32_t rope_type, double factor, double low_freq_factor,
		       double high_freq_factor, uint32_t orig_max_position)
{
	const float pi2 = (float)(2.0 * M_PI);

	for (uint32_t i = 0; i < d / 2; i++) {
		float expo = (float)(2 * i) / (float)d;
		float inv = 1.0f / powf((float)theta, expo);

		if (rope_type == 2 /* linear: positions / factor == inv_freq / factor */) {
			inv = inv / (float)factor;
		} else if (rope_type == 1 /* llama3 */) {
			float low_wavelen = (float)((double)orig_max_position / low_freq_factor);
			float high_wavelen = (float)((double)orig_max_position / high_freq_factor);
			float wavelen = pi2 / inv;
			float scaled = wavelen > low_wavelen ? inv / (float)factor : inv;
			float smooth = ((float)orig_max_position / wavelen - (float)low_freq_factor) /
				       (float)(high_freq_factor - low_freq_factor);
			float smoothed = (1.0f - smooth) * scaled / (float)factor + smooth * scaled;
			bool medium = !(wavelen < high_wavelen) && !(wavelen > low_wavelen);
			inv = medium ? smoothed : scaled;
		}
		out[i] = inv;
	}
}
