/* Portable SIMD for the encoder kernels (attention.c, layernorm.c): GCC/Clang vector
 * extensions sized to the widest registers the build targets (-march=native), so the same
 * source is AVX-512, AVX2 or SSE/NEON code. A vector wider than the registers would be split
 * and passed through memory (7x slower on AVX2), hence VL follows the ISA. */
#ifndef SUPPORTBOT_VEC_H
#define SUPPORTBOT_VEC_H

#include <stdint.h>
#include <string.h>

#if defined(__AVX512F__)
#define VL 16 /* floats per vector */
#elif defined(__AVX__)
#define VL 8
#else
#define VL 4
#endif

typedef float vf __attribute__((vector_size(VL * sizeof(float))));
typedef int32_t vi __attribute__((vector_size(VL * sizeof(int32_t))));
typedef uint16_t vh __attribute__((vector_size(VL * sizeof(uint16_t))));

#define VEC_INLINE static inline __attribute__((always_inline))

VEC_INLINE vf vload(const float *p) { vf v; memcpy(&v, p, sizeof v); return v; }
VEC_INLINE void vstore(float *p, vf v) { memcpy(p, &v, sizeof v); }
VEC_INLINE vf splat(float x) { return (vf){0} + x; }

VEC_INLINE vf vmax(vf a, vf b) {
    const vi gt = a > b;
    return (vf)(((vi)a & gt) | ((vi)b & ~gt));
}

/* Horizontal max and sum: fold by rotations of VL/2, ..., 1 lanes, with constant masks
 * (masks built at run time cost a third of the attention kernel). */
#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 12)
#define ROTATE(v, ...) __builtin_shufflevector(v, v, __VA_ARGS__)
#else
#define ROTATE(v, ...) __builtin_shuffle(v, (vi){__VA_ARGS__})
#endif
#if VL == 16
#define FOLD(v, op)                                                                  \
    v = op(v, ROTATE(v, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7));      \
    v = op(v, ROTATE(v, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3));      \
    v = op(v, ROTATE(v, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1));      \
    v = op(v, ROTATE(v, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0))
#elif VL == 8
#define FOLD(v, op)                                   \
    v = op(v, ROTATE(v, 4, 5, 6, 7, 0, 1, 2, 3));     \
    v = op(v, ROTATE(v, 2, 3, 4, 5, 6, 7, 0, 1));     \
    v = op(v, ROTATE(v, 1, 2, 3, 4, 5, 6, 7, 0))
#else
#define FOLD(v, op)                       \
    v = op(v, ROTATE(v, 2, 3, 0, 1));     \
    v = op(v, ROTATE(v, 1, 2, 3, 0))
#endif

VEC_INLINE vf vadd(vf a, vf b) { return a + b; }
VEC_INLINE float hmax(vf v) { FOLD(v, vmax); return v[0]; }
VEC_INLINE float hsum(vf v) { FOLD(v, vadd); return v[0]; }

#endif
