/* Shared by the compiled convolution kernels (conv_gather.c, conv_filter_grad.c,
 * conv_depthwise.c) and their threads (thread_pool.c): 64-bit sizes, the vector width VL, the
 * register tile (NV vectors x RB pixels or rows) chosen for the instruction set, the vector
 * types, the float32 staging copies, partial and phase-interleaving vector stores, and
 * opgraph_run_threads. */
#ifndef OPGRAPH_CONV_COMMON_H
#define OPGRAPH_CONV_COMMON_H

#include <stdint.h>
#include <stdlib.h>

typedef int64_t i64;

#if defined(__AVX__)
#include <immintrin.h>
#endif
#if defined(__AVX512F__)
#define VL 16
#define NV 2
#define RB 14
#define BCAST(v) ((vf)_mm512_set1_ps(v))
#elif defined(__AVX__)
#define VL 8
#define NV 2
#define RB 6
#define BCAST(v) ((vf)_mm256_set1_ps(v))
#else
#define VL 4
#define NV 2
#define RB 4
#define BCAST(v) ((vf){(v), (v), (v), (v)})
#endif
#define BW (NV * VL)

typedef float vf __attribute__((vector_size(VL * 4)));
typedef float vfu __attribute__((vector_size(VL * 4), aligned(4))); /* unaligned access */

/* conv_gather.c's microkernel: out tile o (rb pixels at stride ops, channels at stride oc, wr
 * of nv*VL real) [+]= sum over taps t < T and channels c < C of s[soff[t] + i*ps + c*cs] *
 * w[woff[t] + c*nv*VL + lane]; init: add to what o holds. */
void opgraph_micro_f32(int rb, int nv, const float *s, i64 ps, i64 cs, const i64 *soff,
                       const i64 *woff, i64 T, i64 C, const float *w, float *o, i64 ops, i64 oc,
                       int init, int wr);

/* Element types of the operands the kernels read and write (their arithmetic is float32). */
enum { DT_F32 = 0, DT_F16 = 1, DT_BF16 = 2 };

/* conv_gather.c's staging copies between strided views and float32 [pixel][channel] rows:
 * dst[p*nc + c] = src[p*s_p + c*s_c] (in), dst[p*d_p + c*d_c] = src[p*ncp + c] (out), for
 * p < np, c < nc, element strides; NCHW rows (s_p or d_p 1) by 8 x 8 transposes. The views
 * are of element type dt (converted; rounded to nearest even on the way out), float32 for
 * the _f32 forms. */
void opgraph_stage_in(const void *src, int dt, i64 s_p, i64 s_c, i64 np, i64 nc, float *dst);
void opgraph_stage_out(const float *src, i64 ncp, void *dst, int dt, i64 d_p, i64 d_c, i64 np,
                       i64 nc);
void opgraph_stage_in_f32(const float *src, i64 s_p, i64 s_c, i64 np, i64 nc, float *dst);
void opgraph_stage_out_f32(const float *src, i64 ncp, float *dst, i64 d_p, i64 d_c, i64 np,
                           i64 nc);

#if defined(__AVX__)
/* o[i] = v[i] for i < rem (< 8): 4-, 2- and 1-lane stores (a masked store is microcoded and
 * slow on some processors). */
static inline void store_first8(float *o, __m256 v, i64 rem)
{
    __m128 x = _mm256_castps256_ps128(v);
    if (rem & 4) {
        _mm_storeu_ps(o, x);
        x = _mm256_extractf128_ps(v, 1);
        o += 4;
    }
    if (rem & 2) {
        _mm_storel_pi((__m64 *)o, x);
        x = _mm_movehl_ps(x, x);
        o += 2;
    }
    if (rem & 1) _mm_store_ss(o, x);
}

/* o[2i] = E[i], o[2i + 1] = O[i] for 2i, 2i + 1 < n (the two column phases of 8 dx column
 * pairs): one two-source permute and one (masked) store with AVX-512, else unpacks and
 * 128-bit permutes (the AVX-512 form, A/B on Zen 4: 1.04-1.08x on most depthwise layers;
 * conv_depthwise.c's planes, conv_gather.c's shuffle into channel planes). */
static inline void store_pairs16(float *o, __m256 E, __m256 O, i64 n)
{
#if defined(__AVX512F__)
    const __m512i idx = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512 x = _mm512_permutex2var_ps(_mm512_castps256_ps512(E), idx,
                                            _mm512_castps256_ps512(O));
    if (n >= 16) _mm512_storeu_ps(o, x);
    else _mm512_mask_storeu_ps(o, (__mmask16)((1u << n) - 1), x);
#else
    const __m256 lo = _mm256_unpacklo_ps(E, O), hi = _mm256_unpackhi_ps(E, O);
    const __m256 x0 = _mm256_permute2f128_ps(lo, hi, 0x20);
    const __m256 x1 = _mm256_permute2f128_ps(lo, hi, 0x31);
    if (n >= 16) {
        _mm256_storeu_ps(o, x0);
        _mm256_storeu_ps(o + 8, x1);
    } else if (n >= 8) {
        _mm256_storeu_ps(o, x0);
        if (n > 8) store_first8(o + 8, x1, n - 8);
    } else {
        store_first8(o, x0, n);
    }
#endif
}
#endif

/* fn(arg, i) for i in [0, nthreads) on the pool's parked threads (thread_pool.c), index 0 on
 * the caller's; fn must share its work dynamically (fewer threads may run). */
typedef void (*thread_fn)(void *, int);
void opgraph_run_threads(thread_fn fn, void *arg, i64 nthreads);

#endif
