/* Direct (im2col-free) stride-phase convolution for float32 data: the compiled core of
 * runtime/kernels/cpu/conv_impl.py's "native" algorithm. Built and loaded by native.py.
 *
 *   out[n, q, r, :] = sum_{a, b, c} src[n, (q0 + q)*steph + offh[a], r*stepw + offw[b], c]
 *                                   * w[a, b, c, :]
 *
 * Source positions outside [0, Hs) x [0, Ws) read zero. Every stride is in elements, so NHWC
 * and NCHW data and strided views (a stride phase of dx) are read and written in place; the
 * fast case has contiguous output channels, other outputs go through a small tile buffer.
 * offh and offw are ascending.
 *
 * The weights come packed as blocks of BW = NV*VL output channels: wpk[block][a][b][c][BW]
 * (the last block may be narrower, a multiple of VL), so the microkernel streams them
 * contiguously. The microkernel keeps an RB-pixel x NV-vector tile of out in registers and, per
 * input channel, does NV vector loads of w, RB broadcasts of src and RB*NV FMAs. A row of
 * pixels is cut into near-equal tiles; at the row's ends the taps of a tile are grouped by the
 * pixels they read inside the source, one sub-tile call per group, so edges need no padding.
 * Very large weight panels are split into input-channel chunks that each sweep every pixel of
 * the call before the next chunk adds to the same outputs.
 *
 * The filter gradient on the same geometry is in conv_filter_grad.c, the depthwise input
 * gradient in conv_depthwise.c; conv_common.h holds the vector types and tile sizes.
 *
 * Every size, stride, offset and index is a 64-bit integer (i64), so views wider than INT_MAX
 * elements and strides or tap offsets beyond 2^31 are addressed exactly (native.py keeps every
 * coordinate below 2^62, so no product here overflows). Taps that read outside the source are
 * skipped, never multiplied by zeros, so non-finite weights propagate as in a direct loop.
 */
#include "conv_common.h"

/* bytes of weights one channel chunk may stream: whole panels measured best while they fit
 * the 1-2 MiB L2 (C: 295 KiB per block; chunks of 64 or 128 channels were no faster) */
#define CHUNK_WEIGHT_BYTES (1L << 20)

/* A tile's outputs when out's channels are not contiguous (channel stride oc): through a buffer
 * buf[pixel][channel] of the tile's rb pixels x width channels. */
static void tile_load_strided(float *buf, const float *o, i64 ops, i64 oc, int rb, int width)
{
    for (int i = 0; i < rb; i++)
        for (int k = 0; k < width; k++)
            buf[i * width + k] = o[i * ops + k * oc];
}

static void tile_store_strided(const float *buf, float *o, i64 ops, i64 oc, int rb, int width)
{
    for (int k = 0; k < width; k++)
        for (int i = 0; i < rb; i++)
            o[i * ops + k * oc] = buf[i * width + k];
}

/* One RBV-pixel x NVV-vector tile over T taps and C channels. Tap t reads src + soff[t] (pixel
 * i, channel c at + i*ps + c*cs) and weights w + woff[t] (channel c at + c*NVV*VL); out pixel i,
 * channel k is at o + i*ops + k*oc. init: add to what out holds. */
#define MICRO(RBV, NVV)                                                                        \
    static void micro_##RBV##_##NVV(const float *s, i64 ps, i64 cs, const i64 *soff,          \
                                    const i64 *woff, i64 T, i64 C, const float *w, float *o,   \
                                    i64 ops, i64 oc, int init)                                 \
    {                                                                                          \
        vf acc[RBV][NVV];                                                                      \
        float buf[RBV * NVV * VL];                                                             \
        if (init && oc != 1)                                                                   \
            tile_load_strided(buf, o, ops, oc, RBV, NVV * VL);                                 \
        _Pragma("GCC unroll 16") for (int i = 0; i < RBV; i++)                                 \
            _Pragma("GCC unroll 4") for (int j = 0; j < NVV; j++)                              \
                acc[i][j] = !init ? (vf){0}                                                    \
                          : oc == 1 ? *(const vfu *)(o + i * ops + j * VL)                     \
                                    : *(const vfu *)(buf + (i * NVV + j) * VL);                \
        for (i64 t = 0; t < T; t++) {                                                          \
            const float *sp = s + soff[t];                                                     \
            const float *wp = w + woff[t];                                                     \
            _Pragma("GCC unroll 2") for (i64 c = 0; c < C; c++) {                              \
                vf wv[NVV];                                                                    \
                _Pragma("GCC unroll 4") for (int j = 0; j < NVV; j++)                          \
                    wv[j] = *(const vfu *)(wp + c * (NVV * VL) + j * VL);                      \
                const float *spc = sp + c * cs;                                                \
                _Pragma("GCC unroll 16") for (int i = 0; i < RBV; i++) {                       \
                    vf x = BCAST(spc[i * ps]);                                                 \
                    _Pragma("GCC unroll 4") for (int j = 0; j < NVV; j++) acc[i][j] += x * wv[j]; \
                }                                                                              \
            }                                                                                  \
        }                                                                                      \
        if (oc == 1) {                                                                         \
            _Pragma("GCC unroll 16") for (int i = 0; i < RBV; i++)                             \
                _Pragma("GCC unroll 4") for (int j = 0; j < NVV; j++)                          \
                    *(vfu *)(o + i * ops + j * VL) = acc[i][j];                                \
        } else {                                                                               \
            _Pragma("GCC unroll 16") for (int i = 0; i < RBV; i++)                             \
                _Pragma("GCC unroll 4") for (int j = 0; j < NVV; j++)                          \
                    *(vfu *)(buf + (i * NVV + j) * VL) = acc[i][j];                            \
            tile_store_strided(buf, o, ops, oc, RBV, NVV * VL);                                \
        }                                                                                      \
    }

typedef void (*micro_fn)(const float *, i64, i64, const i64 *, const i64 *, i64, i64,
                         const float *, float *, i64, i64, int);

#if RB == 14
#define MICROS(N) MICRO(1, N) MICRO(2, N) MICRO(3, N) MICRO(4, N) MICRO(5, N) MICRO(6, N) \
    MICRO(7, N) MICRO(8, N) MICRO(9, N) MICRO(10, N) MICRO(11, N) MICRO(12, N) MICRO(13, N) \
    MICRO(14, N)
#define TABLE(N) {micro_1_##N, micro_2_##N, micro_3_##N, micro_4_##N, micro_5_##N, micro_6_##N, \
    micro_7_##N, micro_8_##N, micro_9_##N, micro_10_##N, micro_11_##N, micro_12_##N,          \
    micro_13_##N, micro_14_##N}
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

/* Version of the calling convention below (native.py checks it before the first call). */
int opgraph_conv_abi(void) { return 3; }

/* See the file comment. q0: absolute index of out's first row (src rows are absolute).
 * cchunk: input channels per chunk, 0 = automatic. Returns 0, or -1 for arguments this kernel
 * does not take (the caller then uses another algorithm), -2 when out of memory. */
int opgraph_gather_conv_f32(const float *src, i64 s_n, i64 s_h, i64 s_w, i64 s_c, i64 Hs,
                            i64 Ws, i64 Cs, float *out, i64 o_n, i64 o_h, i64 o_w, i64 o_c,
                            i64 N, i64 Q, i64 R, i64 Co, const i64 *offh, i64 th,
                            const i64 *offw, i64 tw, i64 steph, i64 stepw, i64 q0,
                            const float *wpk, i64 cchunk)
{
    if (Co <= 0 || Co % VL || th <= 0 || tw <= 0 || Cs <= 0 || stepw <= 0 || steph <= 0)
        return -1;
    if (N <= 0 || Q <= 0 || R <= 0)
        return 0;
    if (th > INT64_MAX / tw)
        return -2;
    const i64 T = th * tw;
    if (cchunk <= 0) { /* near-equal chunks whose weights fit CHUNK_WEIGHT_BYTES */
        const double panel = (double)T * (double)Cs * BW * sizeof(float);
        const i64 nchunk = (i64)((panel + CHUNK_WEIGHT_BYTES - 1) / CHUNK_WEIGHT_BYTES);
        cchunk = nchunk <= 1 ? Cs : (Cs + nchunk - 1) / nchunk;
    }
    if (cchunk > Cs)
        cchunk = Cs;
    /* the row of pixels is cut into ntile near-equal tiles of at most RB pixels (the first
     * R % ntile tiles one pixel wider); colo/cohi [tile][b]: the pixels of a tile whose tap
     * column b reads inside the source row */
    const i64 ntile = (R + RB - 1) / RB;
    const i64 base = R / ntile, rem = R % ntile;
    if (ntile > (INT64_MAX / 64 - T) / (tw + 1))
        return -2;
    i64 *soff = malloc(sizeof(i64) * (size_t)(2 * T + 2 * ntile * tw + ntile + 1));
    if (!soff)
        return -2;
    i64 *woff = soff + T;
    i64 *colo = woff + T, *cohi = colo + ntile * tw;
    i64 *tr = cohi + ntile * tw;
    for (i64 i = 0; i <= ntile; i++)
        tr[i] = i * base + (i < rem ? i : rem);
    for (i64 i = 0; i < ntile; i++)
        for (i64 b = 0; b < tw; b++) {
            i64 lo = tr[i], hi = tr[i + 1];
            while (lo < hi && lo * stepw + offw[b] < 0)
                lo++;
            while (hi > lo && (hi - 1) * stepw + offw[b] >= Ws)
                hi--;
            colo[i * tw + b] = lo - tr[i];
            cohi[i * tw + b] = hi - tr[i];
        }
    const i64 ps = stepw * s_w;
    for (i64 c0 = 0; c0 < Co; c0 += BW) {
        const int nv = Co - c0 >= BW ? NV : (int)((Co - c0) / VL);
        const i64 width = (i64)nv * VL;
        const float *wblk = wpk + c0 * T * Cs;
        for (i64 k0 = 0; k0 < Cs; k0 += cchunk) {
            const i64 kc = Cs - k0 < cchunk ? Cs - k0 : cchunk;
            for (i64 n = 0; n < N; n++) {
                const float *sn = src + n * s_n + k0 * s_c;
                for (i64 q = 0; q < Q; q++) {
                    float *orow = out + n * o_n + q * o_h + c0 * o_c;
                    const i64 qs = (q0 + q) * steph;
                    for (i64 i = 0; i < ntile; i++) {
                        const i64 r = tr[i];
                        const int rb = (int)(tr[i + 1] - r);
                        const i64 *lo = colo + i * tw, *hi = cohi + i * tw;
                        float *o = orow + r * o_w;
                        /* Tap columns reading the same pixel range [plo, phi) of the tile form
                         * one microkernel call on that sub-tile; the tile's first call writes
                         * it (or it is zeroed first), the others add to it. */
                        int init = k0 > 0;
                        for (i64 b0 = 0; b0 < tw; b0++) {
                            const i64 plo = lo[b0], phi = hi[b0];
                            int seen = plo >= phi; /* empty, or done with an earlier column */
                            for (i64 b = 0; b < b0 && !seen; b++)
                                seen = lo[b] == plo && hi[b] == phi;
                            if (seen)
                                continue;
                            if (!init && (plo > 0 || phi < rb)) {
                                MICRO_TABLE[nv - 1][rb - 1](sn, ps, s_c, soff, woff, 0, kc, wblk,
                                                            o, o_w, o_c, 0);
                                init = 1;
                            }
                            i64 t = 0;
                            for (i64 a = 0; a < th; a++) {
                                const i64 hh = qs + offh[a];
                                if (hh < 0 || hh >= Hs)
                                    continue;
                                for (i64 b = b0; b < tw; b++) {
                                    if (lo[b] != plo || hi[b] != phi)
                                        continue;
                                    soff[t] = hh * s_h + ((r + plo) * stepw + offw[b]) * s_w;
                                    woff[t] = ((a * tw + b) * Cs + k0) * width;
                                    t++;
                                }
                            }
                            MICRO_TABLE[nv - 1][phi - plo - 1](sn, ps, s_c, soff, woff, t, kc,
                                                               wblk, o + plo * o_w, o_w, o_c,
                                                               init);
                            init = 1;
                        }
                        if (!init) /* no tap column reads inside the source: zeros */
                            MICRO_TABLE[nv - 1][rb - 1](sn, ps, s_c, soff, woff, 0, kc, wblk, o,
                                                        o_w, o_c, 0);
                    }
                }
            }
        }
    }
    free(soff);
    return 0;
}
