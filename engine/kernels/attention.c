/* Bidirectional self-attention over packed variable-length sequences: the BERT encoder's
 * serving path (engine/bert_packed.py). Sequences lie end to end with no padding, so there is
 * no mask and no work on pad positions. torch's CPU attention kernels tile for long sequences
 * and spend most of their time on overhead at the 10-40 tokens of a support question; this
 * loop computes four queries of one sequence and head at a time against a vector of keys.
 *
 *   qv      [N, 2, nh, hd] fp32 or bf16: each token's query and value heads
 *   kt      [nh, hd, ldk]  same: keys transposed (kt[h, d, j] = k_j[h, d]), ldk >= N + VL;
 *                          the caller's matmul writes them so: nothing is transposed here
 *   out     [N, nh, hd]    fp32: softmax(q·kᵀ·scale)·v over the token's own sequence
 *   offsets [n_seq + 1]    int64: sequence s is tokens offsets[s] .. offsets[s+1]-1
 *
 * bf16 inputs (straight from bf16 matmuls) are widened as they are loaded; all arithmetic is
 * fp32. Scores are computed for whole vectors of keys; the lanes past a sequence's end read
 * the next sequence's keys (or the padding columns) and are never used.
 *
 * Vectors are GCC/Clang vector extensions sized to the CPU (vec.h: VL = 16, 8 or 4 floats):
 * AVX-512, AVX2 or SSE/NEON from the same source. Returns 0; -1 when out of memory; -2 when
 * ldk leaves no room for the padding lanes.
 */
/* The library builds with -ffp-contract=off for qmatmul.c's exact dequantisation; attention has
 * no such contract with anyone, so it lets the compiler fuse multiply-adds. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT ON
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=fast")
#endif

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vec.h"

#define QB 4 /* queries per block: four independent accumulator chains */

/* Element i of an fp32 or bf16 array, and VL of them from i on, as fp32 (bf16 is the top half
 * of an fp32). `bf16` is a constant at every call site, so each variant compiles branch-free. */
static inline __attribute__((always_inline)) float load_one(const void *p, int64_t i, int bf16) {
    if (!bf16) return ((const float *)p)[i];
    const uint32_t bits = (uint32_t)((const uint16_t *)p)[i] << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}
static inline __attribute__((always_inline)) vf load_vec(const void *p, int64_t i, int bf16) {
    if (!bf16) return vload((const float *)p + i);
    vh h;
    memcpy(&h, (const uint16_t *)p + i, sizeof h);
    return (vf)(__builtin_convertvector(h, vi) << 16);
}

/* exp for x <= 0 (scores minus their maximum), a vector at a time: Cephes' expf polynomial,
 * within 2 ulp over [-87, 0]. */
VEC_INLINE vf vexp_nonpositive(vf x) {
    const vf shifter = splat(12582912.0f); /* 1.5 * 2^23: adding it rounds to an integer */
    x = vmax(x, splat(-87.0f));
    const vf t = x * 1.44269504088896341f + shifter;
    const vf n = t - shifter;
    vf r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    vf p = splat(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    const vi pow2n = ((vi)t - 0x4B400000 + 127) << 23; /* n sits in t's low mantissa bits */
    return p * (vf)pow2n;
}

/* exp(scale·(p[j] - max)) for p[0..T) in place, over whole vectors (p has T rounded up to a
 * multiple of VL; lanes past T become zeros), returning 1/sum: the caller scales its weighted
 * sum once instead of every weight. Lanes are masked in registers, never patched with scalar
 * stores: a vector load over fresh scalar stores stalls store forwarding. */
static inline float softmax_row(float *p, int64_t T, int64_t Tp, float scale) {
    vi lane;
    for (int i = 0; i < VL; i++) lane[i] = i;
    const vf lowest = splat(-3.0e38f);
    vf m = lowest;
    for (int64_t jb = 0; jb < Tp; jb += VL) {
        const vi valid = lane + (int32_t)jb < (int32_t)T;
        m = vmax(m, (vf)(((vi)vload(p + jb) & valid) | ((vi)lowest & ~valid)));
    }
    const float mx = hmax(m);
    vf sum = {0};
    for (int64_t jb = 0; jb < Tp; jb += VL) {
        const vi valid = lane + (int32_t)jb < (int32_t)T;
        const vf e = (vf)((vi)vexp_nonpositive((vload(p + jb) - mx) * scale) & valid);
        vstore(p + jb, e);
        sum += e;
    }
    return 1.0f / hsum(sum);
}

/* One (sequence, head): T tokens; q and v at `qv` (rows `row` apart; v at +H), keys at `kt`
 * (dims `ldk` apart), output rows `H` apart. Offsets are in elements of the input type. */
static inline __attribute__((always_inline)) void attend_head(
    const void *qv, const void *kt, float *out, int64_t T, int64_t row, int64_t ldk, int64_t H,
    int64_t hd, float scale, float *P, int bf16) {
    const int64_t Tp = (T + VL - 1) / VL * VL; /* scores per row, whole vectors */
    for (int64_t i0 = 0; i0 < T; i0 += QB) {
        int64_t q[QB]; /* element offset of each query row; past the end: repeat the last */
        for (int u = 0; u < QB; u++) q[u] = (i0 + u < T ? i0 + u : T - 1) * row;
        for (int64_t jb = 0; jb < Tp; jb += VL) { /* q·k, VL keys x QB queries at a time */
            vf acc[QB] = {0};
            for (int64_t d = 0; d < hd; d++) {
                const vf k = load_vec(kt, d * ldk + jb, bf16);
                for (int u = 0; u < QB; u++) acc[u] += load_one(qv, q[u] + d, bf16) * k;
            }
            for (int u = 0; u < QB; u++) vstore(P + u * Tp + jb, acc[u]);
        }
        float inv[QB]; /* 1 / each row's sum of weights */
        for (int u = 0; u < QB; u++) inv[u] = softmax_row(P + u * Tp, T, Tp, scale);
        if (hd % VL == 0) {
            for (int64_t c = 0; c < hd; c += VL) { /* out = P·V, VL dims x QB queries */
                vf acc[QB] = {0};
                for (int64_t j = 0; j < T; j++) {
                    const vf v = load_vec(qv, j * row + H + c, bf16);
                    for (int u = 0; u < QB; u++) acc[u] += P[u * Tp + j] * v;
                }
                for (int u = 0; u < QB && i0 + u < T; u++)
                    vstore(out + (i0 + u) * H + c, acc[u] * inv[u]);
            }
        } else {
            for (int u = 0; u < QB && i0 + u < T; u++) {
                float *o = out + (i0 + u) * H;
                for (int64_t d = 0; d < hd; d++) o[d] = 0.0f;
                for (int64_t j = 0; j < T; j++)
                    for (int64_t d = 0; d < hd; d++)
                        o[d] += P[u * Tp + j] * load_one(qv, j * row + H + d, bf16);
                for (int64_t d = 0; d < hd; d++) o[d] *= inv[u];
            }
        }
    }
}

static void attend_head_f32(const void *qv, const void *kt, float *out, int64_t T, int64_t row,
                            int64_t ldk, int64_t H, int64_t hd, float scale, float *P) {
    attend_head(qv, kt, out, T, row, ldk, H, hd, scale, P, 0);
}

static void attend_head_bf16(const void *qv, const void *kt, float *out, int64_t T,
                             int64_t row, int64_t ldk, int64_t H, int64_t hd, float scale,
                             float *P) {
    attend_head(qv, kt, out, T, row, ldk, H, hd, scale, P, 1);
}

int sb_attention_packed(const void *qv, const void *kt, float *out, const int64_t *offsets,
                        int64_t n_seq, int64_t nh, int64_t hd, int64_t ldk, float scale,
                        int bf16) {
    const int64_t H = nh * hd, row = 2 * H;
    int64_t longest = 0;
    for (int64_t s = 0; s < n_seq; s++)
        if (offsets[s + 1] - offsets[s] > longest) longest = offsets[s + 1] - offsets[s];
    if (n_seq > 0 && offsets[n_seq] + VL > ldk) return -2; /* no room for the padding lanes */
    const int64_t Tp = (longest + VL - 1) / VL * VL;
    int failed = 0;
#pragma omp parallel
    {
        float *P = malloc(sizeof(float) * (size_t)(QB * Tp + 1)); /* per thread: QB score rows */
        if (!P) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for collapse(2) schedule(dynamic, 8)
        for (int64_t s = 0; s < n_seq; s++) {
            for (int64_t h = 0; h < nh; h++) {
                const int64_t start = offsets[s], T = offsets[s + 1] - start;
                if (!P || T <= 0) continue;
                const int64_t q0 = start * row + h * hd, k0 = h * hd * ldk + start;
                float *o = out + start * H + h * hd;
                if (bf16)
                    attend_head_bf16((const uint16_t *)qv + q0, (const uint16_t *)kt + k0, o, T,
                                     row, ldk, H, hd, scale, P);
                else
                    attend_head_f32((const float *)qv + q0, (const float *)kt + k0, o, T, row,
                                    ldk, H, hd, scale, P);
            }
        }
        free(P);
    }
    return failed ? -1 : 0;
}
