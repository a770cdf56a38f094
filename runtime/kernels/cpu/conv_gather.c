/* Direct (im2col-free) stride-phase convolution for float32 NHWC data: the compiled core of
 * runtime/kernels/cpu/conv_impl.py's "native" algorithm. Built and loaded by native.py.
 *
 *   out[n, q, r, :] = sum_{a, b, c} src[n, (q0 + q)*steph + offh[a], r*stepw + offw[b], c]
 *                                   * w[a, b, c, :]
 *
 * Source positions outside [0, Hs) x [0, Ws) read zero. Channels are contiguous (stride 1) in
 * both src and out; every other stride is in elements, so strided views (a stride phase of dx)
 * are written in place. offh and offw are ascending.
 *
 * The weights come packed as blocks of BW = NV*VL output channels: wpk[block][a][b][c][BW]
 * (the last block may be narrower, a multiple of VL), so the microkernel streams them
 * contiguously. The microkernel keeps an RB-pixel x NV-vector tile of out in registers and, per
 * input channel, does NV vector loads of w, RB broadcasts of src and RB*NV FMAs. The input
 * channels are processed in chunks whose weights (taps x chunk x BW floats) stay in L1, each
 * chunk sweeping every pixel of the call before the next chunk adds to the same outputs.
 */
#include <stdlib.h>

#if defined(__AVX512F__)
#include <immintrin.h>
#define VL 16
#define NV 2
#define RB 12
#define BCAST(v) ((vf)_mm512_set1_ps(v))
#elif defined(__AVX__)
#include <immintrin.h>
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
/* bytes of weights one channel chunk may stream (L2 is 1-2 MiB; whole panels measured best) */
#define CHUNK_WEIGHT_BYTES 262144

typedef float vf __attribute__((vector_size(VL * 4)));
typedef float vfu __attribute__((vector_size(VL * 4), aligned(4))); /* unaligned access */

/* One RBV-pixel x NVV-vector tile over T taps and C channels. Tap t reads src + soff[t] (pixel
 * i at + i*ps) and weights w + woff[t] (channel c at + c*NVV*VL). init: add to what out holds. */
#define MICRO(RBV, NVV)                                                                        \
    static void micro_##RBV##_##NVV(const float *s, long ps, const long *soff,                 \
                                    const long *woff, int T, int C, const float *w, float *o,  \
                                    long ops, int init)                                        \
    {                                                                                          \
        vf acc[RBV][NVV];                                                                      \
        _Pragma("GCC unroll 16") for (int i = 0; i < RBV; i++)                                 \
            _Pragma("GCC unroll 4") for (int j = 0; j < NVV; j++)                              \
                acc[i][j] = init ? *(const vfu *)(o + i * ops + j * VL) : (vf){0};             \
        for (int t = 0; t < T; t++) {                                                          \
            const float *sp = s + soff[t];                                                     \
            const float *wp = w + woff[t];                                                     \
            for (int c = 0; c < C; c++) {                                                      \
                vf wv[NVV];                                                                    \
                _Pragma("GCC unroll 4") for (int j = 0; j < NVV; j++)                          \
                    wv[j] = *(const vfu *)(wp + (long)c * (NVV * VL) + j * VL);                \
                _Pragma("GCC unroll 16") for (int i = 0; i < RBV; i++) {                       \
                    vf x = BCAST(sp[i * ps + c]);                                              \
                    _Pragma("GCC unroll 4") for (int j = 0; j < NVV; j++) acc[i][j] += x * wv[j]; \
                }                                                                              \
            }                                                                                  \
        }                                                                                      \
        _Pragma("GCC unroll 16") for (int i = 0; i < RBV; i++)                                 \
            _Pragma("GCC unroll 4") for (int j = 0; j < NVV; j++)                              \
                *(vfu *)(o + i * ops + j * VL) = acc[i][j];                                    \
    }

typedef void (*micro_fn)(const float *, long, const long *, const long *, int, int,
                         const float *, float *, long, int);

#if RB == 12
#define MICROS(N) MICRO(1, N) MICRO(2, N) MICRO(3, N) MICRO(4, N) MICRO(5, N) MICRO(6, N) \
    MICRO(7, N) MICRO(8, N) MICRO(9, N) MICRO(10, N) MICRO(11, N) MICRO(12, N)
#define TABLE(N) {micro_1_##N, micro_2_##N, micro_3_##N, micro_4_##N, micro_5_##N, micro_6_##N, \
    micro_7_##N, micro_8_##N, micro_9_##N, micro_10_##N, micro_11_##N, micro_12_##N}
#elif RB == 6
#define MICROS(N) MICRO(1, N) MICRO(2, N) MICRO(3, N) MICRO(4, N) MICRO(5, N) MICRO(6, N)
#define TABLE(N) {micro_1_##N, micro_2_##N, micro_3_##N, micro_4_##N, micro_5_##N, micro_6_##N}
#else
#define MICROS(N) MICRO(1, N) MICRO(2, N) MICRO(3, N) MICRO(4, N)
#define TABLE(N) {micro_1_##N, micro_2_##N, micro_3_##N, micro_4_##N}
#endif
MICROS(1)
MICROS(2)
static const micro_fn MICRO_TABLE[NV][RB] = {TABLE(1), TABLE(2)};

/* Output channels per weight block (the packing unit) and the vector width (out channels must
 * be a multiple of it). */
int opgraph_conv_block_width(void) { return BW; }
int opgraph_conv_vector_width(void) { return VL; }

/* See the file comment. q0: absolute index of out's first row (src rows are absolute).
 * cchunk: input channels per chunk, 0 = automatic. Returns 0, or -1 for arguments this kernel
 * does not take (the caller then uses another algorithm), -2 when out of memory. */
int opgraph_gather_conv_f32(const float *src, long s_n, long s_h, long s_w, int Hs, int Ws,
                            int Cs, float *out, long o_n, long o_h, long o_w, int N, int Q,
                            int R, int Co, const int *offh, int th, const int *offw, int tw,
                            int steph, int stepw, int q0, const float *wpk, int cchunk)
{
    if (Co <= 0 || Co % VL || th <= 0 || tw <= 0 || Cs <= 0 || stepw <= 0 || steph <= 0)
        return -1;
    if (N <= 0 || Q <= 0 || R <= 0)
        return 0;
    const int T = th * tw;
    if (cchunk <= 0) {
        cchunk = CHUNK_WEIGHT_BYTES / (T * BW * (int)sizeof(float));
        if (cchunk < 4)
            cchunk = 4;
    }
    if (cchunk > Cs)
        cchunk = Cs;
    long *soff = malloc(sizeof(long) * 2 * (size_t)T);
    if (!soff)
        return -2;
    long *woff = soff + T;
    /* output columns whose taps all read inside the source row: [rlo, rhi) */
    int rlo = 0, rhi = R;
    while (rlo < R && (long)rlo * stepw + offw[0] < 0)
        rlo++;
    while (rhi > rlo && (long)(rhi - 1) * stepw + offw[tw - 1] >= Ws)
        rhi--;
    const long ps = (long)stepw * s_w;
    for (int c0 = 0; c0 < Co; c0 += BW) {
        const int nv = Co - c0 >= BW ? NV : (Co - c0) / VL;
        const int width = nv * VL;
        const float *wblk = wpk + (long)c0 * T * Cs;
        for (int k0 = 0; k0 < Cs; k0 += cchunk) {
            const int kc = Cs - k0 < cchunk ? Cs - k0 : cchunk;
            for (int n = 0; n < N; n++) {
                const float *sn = src + n * s_n + k0;
                for (int q = 0; q < Q; q++) {
                    float *orow = out + n * o_n + q * o_h + c0;
                    const long qs = (long)(q0 + q) * steph;
                    for (int r = 0; r < R;) {
                        const int inside = r >= rlo && r < rhi;
                        const int rb = inside ? (rhi - r < RB ? rhi - r : RB) : 1;
                        int t = 0;
                        for (int a = 0; a < th; a++) {
                            const long hh = qs + offh[a];
                            if (hh < 0 || hh >= Hs)
                                continue;
                            for (int b = 0; b < tw; b++) {
                                const long ww = (long)r * stepw + offw[b];
                                if (!inside && (ww < 0 || ww >= Ws))
                                    continue;
                                soff[t] = hh * s_h + ww * s_w;
                                woff[t] = ((long)(a * tw + b) * Cs + k0) * width;
                                t++;
                            }
                        }
                        MICRO_TABLE[nv - 1][rb - 1](sn, ps, soff, woff, t, kc, wblk,
                                                    orow + r * o_w, o_w, k0 > 0);
                        r += rb;
                    }
                }
            }
        }
    }
    free(soff);
    return 0;
}
