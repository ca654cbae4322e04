/* y[M, N] = x[M, K] @ W[N, K]^T with W kept in GGML's 32-weight blocks (Q4_0, Q4_1, Q8_0).

   Decoding reads every weight once per token, so it is bound by memory traffic: 4-bit blocks
   move a sixth of the bytes of the fp32 weights they stand for. Each block is expanded to fp32
   in registers with exactly the arithmetic of engine/gguf_loader.py's dequantisation
   (q * d, then + m: two roundings, never fused), so the weights are bit-identical to the fp32
   model's and only the order of the dot products' additions differs.

   Layout (repacked at load by engine/quant.py): for weight row n and block b of nb = K / 32,
   scale[n * nb + b] and (Q4_1) mins[n * nb + b] in fp32, and the quants at
   qs[(n * nb + b) * QB]: Q4_x 16 bytes (low nibbles are weights 0..15, high nibbles 16..31),
   Q8_0 32 signed bytes.

   Each output element is the same sequence of fused multiply-adds whatever M is and whichever
   rows share the call, so a sequence's logits do not depend on what else is in its batch.
   Built with AVX-512 or AVX2 + FMA when the CPU has them; otherwise a portable loop (correct,
   not fast: the Python side then keeps the fp32 weights, see sb_qmatmul_fast). */
#include <math.h>
#include <stdint.h>
#include <string.h>
#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#include <immintrin.h>
#endif

#define QK 32
#define RB 8 /* rows of x per pass over a weight row (AVX-512: 16 accumulator registers) */

enum { SB_Q4_0 = 2, SB_Q4_1 = 3, SB_Q8_0 = 8 }; /* GGML type ids */

/* 2: AVX-512, 1: AVX2 + FMA, 0: the portable loop (slower than MKL on fp32 weights). */
int sb_qmatmul_fast(void) {
#if defined(__AVX512F__)
    return 2;
#elif defined(__AVX2__) && defined(__FMA__)
    return 1;
#else
    return 0;
#endif
}

#ifdef __AVX512F__
/* The 32 weights of one block as two vectors of 16 floats. */
static inline __attribute__((always_inline)) void load_block(int type, const uint8_t *q,
                                                             float d, float m, __m512 *w0,
                                                             __m512 *w1) {
    const __m512 vd = _mm512_set1_ps(d);
    if (type == SB_Q8_0) {
        __m512 a = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)q)));
        __m512 b = _mm512_cvtepi32_ps(
            _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(q + 16))));
        *w0 = _mm512_mul_ps(a, vd);
        *w1 = _mm512_mul_ps(b, vd);
        return;
    }
    const __m512i qi = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)q));
    __m512i lo = _mm512_and_si512(qi, _mm512_set1_epi32(15));
    __m512i hi = _mm512_srli_epi32(qi, 4);
    if (type == SB_Q4_0) {
        lo = _mm512_sub_epi32(lo, _mm512_set1_epi32(8));
        hi = _mm512_sub_epi32(hi, _mm512_set1_epi32(8));
    }
    *w0 = _mm512_mul_ps(_mm512_cvtepi32_ps(lo), vd);
    *w1 = _mm512_mul_ps(_mm512_cvtepi32_ps(hi), vd);
    if (type == SB_Q4_1) {
        const __m512 vm = _mm512_set1_ps(m);
        *w0 = _mm512_add_ps(*w0, vm);
        *w1 = _mm512_add_ps(*w1, vm);
    }
}

static inline float lane_sum(__m512 a, __m512 b) {
    return _mm512_reduce_add_ps(_mm512_add_ps(a, b)); /* fixed order: same for every row */
}

/* rows r0 .. r0 + NR - 1 of x against weight rows n .. n + NW - 1; NR and NW are constants
   after inlining. Several weight rows at once give the FMA units independent chains to
   overlap when there are few x rows (decoding one sequence). */
static inline __attribute__((always_inline)) void tile_dot(
    int type, const uint8_t *qs, const float *scale, const float *mins, int64_t n, int64_t nb,
    int qb, const float *x, int64_t K, int64_t r0, const int NR, const int NW, float *y,
    int64_t N) {
    __m512 a0[4][RB], a1[4][RB];
    for (int c = 0; c < NW; c++)
        for (int r = 0; r < NR; r++) a0[c][r] = a1[c][r] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const float *xb = x + r0 * K + b * QK;
        for (int c = 0; c < NW; c++) {
            const int64_t blk = (n + c) * nb + b;
            __m512 w0, w1;
            load_block(type, qs + blk * qb, scale[blk], type == SB_Q4_1 ? mins[blk] : 0.0f, &w0, &w1);
            for (int r = 0; r < NR; r++) {
                a0[c][r] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(xb + r * K), a0[c][r]);
                a1[c][r] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(xb + r * K + 16), a1[c][r]);
            }
        }
    }
    for (int c = 0; c < NW; c++)
        for (int r = 0; r < NR; r++) y[(r0 + r) * N + n + c] = lane_sum(a0[c][r], a1[c][r]);
}
#elif defined(__AVX2__) && defined(__FMA__)
/* The 32 weights of one block as four vectors of 8 floats (same arithmetic as AVX-512). */
static inline __attribute__((always_inline)) void load_block(int type, const uint8_t *q,
                                                             float d, float m, __m256 w[4]) {
    const __m256 vd = _mm256_set1_ps(d);
    if (type == SB_Q8_0) {
        for (int i = 0; i < 4; i++) {
            __m128i b = _mm_loadl_epi64((const __m128i *)(q + 8 * i));
            w[i] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b)), vd);
        }
        return;
    }
    const __m128i bytes = _mm_loadu_si128((const __m128i *)q);
    const __m128i lo = _mm_and_si128(bytes, _mm_set1_epi8(15));
    const __m128i hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), _mm_set1_epi8(15));
    const __m128i parts[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
    for (int i = 0; i < 4; i++) {
        __m256i v = _mm256_cvtepu8_epi32(parts[i]);
        if (type == SB_Q4_0) v = _mm256_sub_epi32(v, _mm256_set1_epi32(8));
        w[i] = _mm256_mul_ps(_mm256_cvtepi32_ps(v), vd);
        if (type == SB_Q4_1) w[i] = _mm256_add_ps(w[i], _mm256_set1_ps(m));
    }
}

static inline float lane_sum(const __m256 a[4]) { /* fixed order: same for every row */
    __m256 s = _mm256_add_ps(_mm256_add_ps(a[0], a[1]), _mm256_add_ps(a[2], a[3]));
    float t[8];
    _mm256_storeu_ps(t, s);
    return ((t[0] + t[4]) + (t[1] + t[5])) + ((t[2] + t[6]) + (t[3] + t[7]));
}

static inline __attribute__((always_inline)) void tile_dot(
    int type, const uint8_t *qs, const float *scale, const float *mins, int64_t n, int64_t nb,
    int qb, const float *x, int64_t K, int64_t r0, const int NR, const int NW, float *y,
    int64_t N) {
    __m256 acc[4][RB][4];
    for (int c = 0; c < NW; c++)
        for (int r = 0; r < NR; r++)
            for (int i = 0; i < 4; i++) acc[c][r][i] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const float *xb = x + r0 * K + b * QK;
        for (int c = 0; c < NW; c++) {
            const int64_t blk = (n + c) * nb + b;
            __m256 w[4];
            load_block(type, qs + blk * qb, scale[blk], type == SB_Q4_1 ? mins[blk] : 0.0f, w);
            for (int r = 0; r < NR; r++)
                for (int i = 0; i < 4; i++)
                    acc[c][r][i] = _mm256_fmadd_ps(w[i], _mm256_loadu_ps(xb + r * K + 8 * i),
                                                   acc[c][r][i]);
        }
    }
    for (int c = 0; c < NW; c++)
        for (int r = 0; r < NR; r++) y[(r0 + r) * N + n + c] = lane_sum(acc[c][r]);
}
#else
static inline void load_block(int type, const uint8_t *q, float d, float m, float *w) {
    for (int j = 0; j < QK / 2; j++) {
        if (type == SB_Q8_0) {
            w[j] = (float)((const int8_t *)q)[j] * d;
            w[j + 16] = (float)((const int8_t *)q)[j + 16] * d;
        } else if (type == SB_Q4_1) {
            float lo = (float)(q[j] & 15) * d, hi = (float)(q[j] >> 4) * d;
            w[j] = lo + m;
            w[j + 16] = hi + m;
        } else {
            w[j] = (float)((int)(q[j] & 15) - 8) * d;
            w[j + 16] = (float)((int)(q[j] >> 4) - 8) * d;
        }
    }
}

static inline void tile_dot(int type, const uint8_t *qs, const float *scale, const float *mins,
                            int64_t n0, int64_t nb, int qb, const float *x, int64_t K, int64_t r0,
                            const int NR, const int NW, float *y, int64_t N) {
  for (int64_t n = n0; n < n0 + NW; n++) {
    float acc[RB][QK], w[QK];
    memset(acc, 0, sizeof(acc));
    for (int64_t b = 0; b < nb; b++) {
        const int64_t blk = n * nb + b;
        load_block(type, qs + blk * qb, scale[blk], type == SB_Q4_1 ? mins[blk] : 0.0f, w);
        for (int r = 0; r < NR; r++)
            for (int j = 0; j < QK; j++) acc[r][j] += w[j] * x[(r0 + r) * K + b * QK + j];
    }
    for (int r = 0; r < NR; r++) {
        float s = 0.0f;
        for (int j = 0; j < QK; j++) s += acc[r][j];
        y[(r0 + r) * N + n] = s;
    }
  }
}
#endif

/* The whole product for one block type; `type` is a constant after inlining, so the block
   expansion has no branches in the inner loop. */
static inline __attribute__((always_inline)) void qmatmul_typed(
    const int type, const uint8_t *qs, const float *scale, const float *mins, const float *x,
    float *y, int64_t M, int64_t N, int64_t K) {
    const int qb = type == SB_Q8_0 ? QK : QK / 2;
    const int64_t nb = K / QK;
/* Tiles of NW weight rows x NR rows of x: at most 16 accumulator registers per tile. */
#define SB_TILE(nr, nw) tile_dot(type, qs, scale, mins, n, nb, qb, x, K, r0, nr, nw, y, N)
    const int64_t tiles = (N + 3) / 4;
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < tiles; t++) {
        const int64_t n0 = t * 4;
        for (int64_t r0 = 0; r0 < M; r0 += RB) {
            const int64_t rows = M - r0 < RB ? M - r0 : RB;
            for (int64_t n = n0; n < n0 + 4 && n < N;) {
                if (n + 4 <= N && rows <= 2) {
                    if (rows == 1) SB_TILE(1, 4); else SB_TILE(2, 4);
                    n += 4;
                } else if (n + 2 <= N && rows <= 4) {
                    if (rows == 3) SB_TILE(3, 2); else if (rows == 4) SB_TILE(4, 2);
                    else if (rows == 2) SB_TILE(2, 2); else SB_TILE(1, 2);
                    n += 2;
                } else {
                    switch (rows) {
                        case 1: SB_TILE(1, 1); break;
                        case 2: SB_TILE(2, 1); break;
                        case 3: SB_TILE(3, 1); break;
                        case 4: SB_TILE(4, 1); break;
                        case 5: SB_TILE(5, 1); break;
                        case 6: SB_TILE(6, 1); break;
                        case 7: SB_TILE(7, 1); break;
                        default: SB_TILE(RB, 1); break;
                    }
                    n += 1;
                }
            }
        }
    }
#undef SB_TILE
}

int sb_qmatmul(int type, const uint8_t *qs, const float *scale, const float *mins,
               const float *x, float *y, int64_t M, int64_t N, int64_t K) {
    if (K % QK != 0) return -1;
    switch (type) {
        case SB_Q4_0: qmatmul_typed(SB_Q4_0, qs, scale, mins, x, y, M, N, K); return 0;
        case SB_Q4_1: qmatmul_typed(SB_Q4_1, qs, scale, mins, x, y, M, N, K); return 0;
        case SB_Q8_0: qmatmul_typed(SB_Q8_0, qs, scale, mins, x, y, M, N, K); return 0;
        default: return -2;
    }
}

/* RMSNorm of a decode step's few rows, y = (x * rsqrt(mean(x^2) + eps)) * w, as transformers'
   LlamaRMSNorm in fp32 (only the summation order of mean(x^2) differs). One call instead of
   the handful of tensor ops torch's CPU rms_norm runs; the C loop is vectorised by the
   compiler. */
void sb_rmsnorm(const float *x, const float *w, float *y, int64_t rows, int64_t dim,
                float eps) {
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * dim;
        float *yr = y + r * dim;
        float lanes[16] = {0};
        int64_t j = 0;
        for (; j + 16 <= dim; j += 16)
            for (int l = 0; l < 16; l++) lanes[l] += xr[j + l] * xr[j + l];
        float ss = 0.0f;
        for (int l = 0; l < 16; l++) ss += lanes[l];
        for (; j < dim; j++) ss += xr[j] * xr[j];
        const float inv = 1.0f / sqrtf(ss / (float)dim + eps);
        for (j = 0; j < dim; j++) yr[j] = (xr[j] * inv) * w[j];
    }
}
