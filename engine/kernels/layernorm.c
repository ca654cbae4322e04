/* The BERT encoder's residual step in one pass (engine/bert_packed.py):
 *
 *   x   <- LayerNorm(x + y) · gamma + beta        x [rows, cols] fp32, updated in place
 *   xbf <- bf16(x)  (round to nearest even)      the next matmul's operand, when xbf != NULL
 *
 * y is the sublayer's output straight from its matmul: bf16 (y_is_bf16) or fp32. In torch this
 * is four passes over the activations (widen y, add, layer_norm, narrow to bf16), which cost
 * the encoder more than its attention. Mean and variance are taken in fp32 over the row.
 */
/* see attention.c: no exactness contract here, so multiply-adds may fuse */
#if defined(__clang__)
#pragma STDC FP_CONTRACT ON
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=fast")
#endif

#include <math.h>
#include <stdint.h>
#include <string.h>

static inline float bf16_to_float(uint16_t h) {
    const uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static inline uint16_t float_to_bf16(float f) {
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((bits >> 16) | 0x40); /* NaN */
    bits += 0x7fffu + ((bits >> 16) & 1u);
    return (uint16_t)(bits >> 16);
}

#include "vec.h"

/* Sum of a row: VL lanes at a time where the width allows (a scalar chain of 384 dependent
 * adds per row would cost more than the rest of the step), then across the lanes. */
static inline float row_sum(const float *v, int64_t n) {
    float total = 0.0f;
    int64_t c = 0;
    if (n >= VL) {
        vf acc = {0};
        for (; c + VL <= n; c += VL) acc += vload(v + c);
        total = hsum(acc);
    }
    for (; c < n; c++) total += v[c];
    return total;
}

void sb_add_layernorm(float *x, const void *y, int y_is_bf16, const float *gamma,
                      const float *beta, uint16_t *xbf, int64_t rows, int64_t cols, float eps) {
#pragma omp parallel
    {
        float dev[cols]; /* per thread: squared deviations from the mean */
#pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            float *xr = x + r * cols;
            if (y_is_bf16) {
                const uint16_t *yr = (const uint16_t *)y + r * cols;
                for (int64_t c = 0; c < cols; c++) xr[c] += bf16_to_float(yr[c]);
            } else {
                const float *yr = (const float *)y + r * cols;
                for (int64_t c = 0; c < cols; c++) xr[c] += yr[c];
            }
            const float mean = row_sum(xr, cols) / (float)cols;
            for (int64_t c = 0; c < cols; c++) dev[c] = (xr[c] - mean) * (xr[c] - mean);
            const float inv = 1.0f / sqrtf(row_sum(dev, cols) / (float)cols + eps);
            for (int64_t c = 0; c < cols; c++) xr[c] = (xr[c] - mean) * inv * gamma[c] + beta[c];
            if (xbf)
                for (int64_t c = 0; c < cols; c++) xbf[r * cols + c] = float_to_bf16(xr[c]);
        }
    }
}
