/* Shared by the compiled convolution kernels (conv_gather.c, conv_filter_grad.c,
 * conv_depthwise.c) and their threads (thread_pool.c): 64-bit sizes, the vector width VL, the
 * register tile (NV vectors x RB pixels or rows) chosen for the instruction set, the vector
 * types, and opgraph_run_threads. */
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

/* conv_gather.c's float32 staging copies between strided views and [pixel][channel] rows:
 * dst[p*nc + c] = src[p*s_p + c*s_c] (in), dst[p*d_p + c*d_c] = src[p*ncp + c] (out), for
 * p < np, c < nc; NCHW rows (s_p or d_p 1) by 8 x 8 transposes. */
void opgraph_stage_in_f32(const float *src, i64 s_p, i64 s_c, i64 np, i64 nc, float *dst);
void opgraph_stage_out_f32(const float *src, i64 ncp, float *dst, i64 d_p, i64 d_c, i64 np,
                           i64 nc);

/* fn(arg, i) for i in [0, nthreads) on the pool's parked threads (thread_pool.c), index 0 on
 * the caller's; fn must share its work dynamically (fewer threads may run). */
typedef void (*thread_fn)(void *, int);
void opgraph_run_threads(thread_fn fn, void *arg, i64 nthreads);

#endif
