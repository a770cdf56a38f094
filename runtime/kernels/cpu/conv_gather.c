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
 * opgraph_filter_grad_f32 (end of file) is the filter gradient on the same geometry: the taps'
 * source values times out_backprop, summed over pixels into the HWIO filter.
 *
 * Every size, stride, offset and index is a 64-bit integer (i64), so views wider than INT_MAX
 * elements and strides or tap offsets beyond 2^31 are addressed exactly (native.py keeps every
 * coordinate below 2^62, so no product here overflows). Taps that read outside the source are
 * skipped, never multiplied by zeros, so non-finite weights propagate as in a direct loop.
 */
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
/* bytes of weights one channel chunk may stream: whole panels measured best while they fit
 * the 1-2 MiB L2 (C: 295 KiB per block; chunks of 64 or 128 channels were no faster) */
#define CHUNK_WEIGHT_BYTES (1L << 20)

typedef float vf __attribute__((vector_size(VL * 4)));
typedef float vfu __attribute__((vector_size(VL * 4), aligned(4))); /* unaligned access */

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

/* ------------------------------------------------------------------------------------------
 * Filter gradient
 *
 *   dw[a, b, c, o] += sum_{n, q, r} src[n, (q0 + q)*steph + offh[a], r*stepw + offw[b], c]
 *                                    * dy[n, q, r, o]
 *
 * over the positions inside [0, Hs) x [0, Ws) only (nothing is multiplied by padding, so
 * non-finite values reach exactly the taps that read them), for the taps a in [a0, a1) and the
 * output channels o in [o0, o1) (multiples of VL): callers split dw between threads by taps or
 * channel blocks and each call adds to what dw holds. dy's and dw's channels are contiguous
 * (stride 1); every other stride is in elements, so NHWC and NCHW sources are read in place.
 *
 * The microkernel keeps an RB x NV-vector tile of dw in registers (RB input channels, NV
 * vectors of output channels) and, per pixel, does NV vector loads of dy, RB broadcasts of src
 * and RB*NV FMAs. The pixels of one tap row a are the valid columns [lo, hi) of every output row
 * whose source row lies inside: one "segment" per (image, row), gathered per chunk of rows so
 * that the chunk's source and dy rows stay in L2 while every tile of dw sweeps them. When the
 * channels of neighbouring tap columns are contiguous in src and dw (NHWC, dilation 1: tap
 * column b + 1's channel c is b's channel c + Cs) the tile rows run over (b, c) pairs, so a
 * source with few channels (3) still fills the tile; the row is then cut into pieces over which
 * the set of tap columns reading inside is constant.
 * ---------------------------------------------------------------------------------------- */

/* One RBV-row x NVV-vector tile of dw (row i at o + i*orow), added to over ns segments of cnt
 * pixels: segment s reads src at x + xrow[s] (pixel p, row i at + p*xps + i*xcs) and dy at
 * d + drow[s] (pixel p at + p*dps, channels contiguous). */
#define FMICRO(RBV, NVV)                                                                       \
    static void fgrad_##RBV##_##NVV(const float *x, i64 xps, i64 xcs, const float *d, i64 dps,\
                                    const i64 *xrow, const i64 *drow, i64 ns, i64 cnt,         \
                                    float *o, i64 orow)                                        \
    {                                                                                          \
        vf acc[RBV][NVV];                                                                      \
        _Pragma("GCC unroll 16") for (int i = 0; i < RBV; i++)                                 \
            _Pragma("GCC unroll 4") for (int j = 0; j < NVV; j++)                              \
                acc[i][j] = *(const vfu *)(o + i * orow + j * VL);                             \
        for (i64 s = 0; s < ns; s++) {                                                         \
            const float *xp = x + xrow[s];                                                     \
            const float *dp = d + drow[s];                                                     \
            _Pragma("GCC unroll 2") for (i64 p = 0; p < cnt; p++) {                            \
                vf dv[NVV];                                                                    \
                _Pragma("GCC unroll 4") for (int j = 0; j < NVV; j++)                          \
                    dv[j] = *(const vfu *)(dp + p * dps + j * VL);                             \
                const float *xq = xp + p * xps;                                                \
                _Pragma("GCC unroll 16") for (int i = 0; i < RBV; i++) {                       \
                    vf xv = BCAST(xq[i * xcs]);                                                \
                    _Pragma("GCC unroll 4") for (int j = 0; j < NVV; j++) acc[i][j] += xv * dv[j]; \
                }                                                                              \
            }                                                                                  \
        }                                                                                      \
        _Pragma("GCC unroll 16") for (int i = 0; i < RBV; i++)                                 \
            _Pragma("GCC unroll 4") for (int j = 0; j < NVV; j++)                              \
                *(vfu *)(o + i * orow + j * VL) = acc[i][j];                                   \
    }

typedef void (*fgrad_fn)(const float *, i64, i64, const float *, i64, const i64 *, const i64 *,
                         i64, i64, float *, i64);

#if RB == 14
#define FMICROS(N) FMICRO(1, N) FMICRO(2, N) FMICRO(3, N) FMICRO(4, N) FMICRO(5, N) FMICRO(6, N) \
    FMICRO(7, N) FMICRO(8, N) FMICRO(9, N) FMICRO(10, N) FMICRO(11, N) FMICRO(12, N)           \
    FMICRO(13, N) FMICRO(14, N)
#define FTABLE(N) {fgrad_1_##N, fgrad_2_##N, fgrad_3_##N, fgrad_4_##N, fgrad_5_##N, fgrad_6_##N, \
    fgrad_7_##N, fgrad_8_##N, fgrad_9_##N, fgrad_10_##N, fgrad_11_##N, fgrad_12_##N,          \
    fgrad_13_##N, fgrad_14_##N}
#elif RB == 6
#define FMICROS(N) FMICRO(1, N) FMICRO(2, N) FMICRO(3, N) FMICRO(4, N) FMICRO(5, N) FMICRO(6, N)
#define FTABLE(N) {fgrad_1_##N, fgrad_2_##N, fgrad_3_##N, fgrad_4_##N, fgrad_5_##N, fgrad_6_##N}
#else
#define FMICROS(N) FMICRO(1, N) FMICRO(2, N) FMICRO(3, N) FMICRO(4, N)
#define FTABLE(N) {fgrad_1_##N, fgrad_2_##N, fgrad_3_##N, fgrad_4_##N}
#endif
FMICROS(1)
FMICROS(2)
static const fgrad_fn FGRAD_TABLE[NV][RB] = {FTABLE(1), FTABLE(2)};

/* bytes of source and dy rows one chunk of output rows aims at (they stay in L2 while every
 * tile of dw sweeps them) */
#define FGRAD_CHUNK_BYTES (1L << 18)

/* A span of one tap row: the pixels [lo, hi) of an output row, ntr tile rows whose source
 * values lie at src + r*stepw*s_w + xoff + i*s_c and whose dw rows at a*w_a + woff + i*w_c. */
typedef struct {
    i64 lo, hi, xoff, woff, rows;
} fspan;

/* See the comment above. q0: absolute index of dy's first row (src rows are absolute). Returns
 * 0, -1 for arguments this kernel does not take, -2 when out of memory. */
int opgraph_filter_grad_f32(const float *src, i64 s_n, i64 s_h, i64 s_w, i64 s_c, i64 Hs,
                            i64 Ws, i64 Cs, const float *dy, i64 d_n, i64 d_h, i64 d_w, i64 N,
                            i64 Q, i64 R, i64 Co, const i64 *offh, i64 th, const i64 *offw,
                            i64 tw, i64 steph, i64 stepw, i64 q0, float *dw, i64 w_a, i64 w_b,
                            i64 w_c, i64 a0, i64 a1, i64 o0, i64 o1)
{
    if (Co <= 0 || th <= 0 || tw <= 0 || Cs <= 0 || steph <= 0 || stepw <= 0)
        return -1;
    if (a0 < 0 || a1 > th || o0 < 0 || o1 > Co || o0 % VL || (o1 - o0) % VL)
        return -1;
    if (N <= 0 || Q <= 0 || R <= 0 || a0 >= a1 || o0 >= o1 || Hs <= 0 || Ws <= 0)
        return 0;
    /* (b, c) tile rows when the channels of consecutive tap columns are contiguous and the
     * channels alone would leave much of the last tile empty (3 channels: 3 of RB rows) */
    const i64 ctiles = (Cs + RB - 1) / RB;
    int fuse = tw > 1 && w_b == Cs * w_c && 5 * Cs < 4 * RB * ctiles;
    for (i64 b = 0; fuse && b + 1 < tw; b++)
        fuse = (offw[b + 1] - offw[b]) * s_w == Cs * s_c;
    const i64 total_rows = N * Q;
    const double row_bytes = 4.0 * ((double)steph * (double)Ws * (double)Cs +
                                    (double)R * (double)(o1 - o0));
    i64 chunk = (i64)(FGRAD_CHUNK_BYTES / (row_bytes > 1 ? row_bytes : 1));
    if (chunk < 1)
        chunk = 1;
    if (chunk > total_rows)
        chunk = total_rows;
    if (tw > (INT64_MAX / 16) / 4 || chunk > (INT64_MAX / 16) / 2)
        return -2;
    i64 *lo = malloc(sizeof(i64) * (size_t)(2 * tw + 2 * chunk + 2 * tw + 2));
    fspan *spans = malloc(sizeof(fspan) * (size_t)(2 * tw + 1));
    if (!lo || !spans) {
        free(lo);
        free(spans);
        return -2;
    }
    i64 *hi = lo + tw, *xrow = hi + tw, *drow = xrow + chunk, *cuts = drow + chunk;
    /* the valid output columns of every tap column */
    for (i64 b = 0; b < tw; b++) {
        i64 l = 0, h = R;
        if (offw[b] < 0)
            l = (-offw[b] + stepw - 1) / stepw;
        if (Ws - 1 - offw[b] < 0)
            h = 0;
        else if ((Ws - 1 - offw[b]) / stepw + 1 < R)
            h = (Ws - 1 - offw[b]) / stepw + 1;
        lo[b] = l < h ? l : 0;
        hi[b] = l < h ? h : 0;
    }
    i64 nspan = 0;
    if (fuse) { /* pieces of the row over which the tap columns inside are constant */
        i64 ncut = 0;
        cuts[ncut++] = 0;
        cuts[ncut++] = R;
        for (i64 b = 0; b < tw; b++)
            if (lo[b] < hi[b]) {
                cuts[ncut++] = lo[b];
                cuts[ncut++] = hi[b];
            }
        for (i64 i = 1; i < ncut; i++) /* insertion sort: at most 2*tw + 2 values */
            for (i64 k = i; k > 0 && cuts[k - 1] > cuts[k]; k--) {
                i64 t = cuts[k];
                cuts[k] = cuts[k - 1];
                cuts[k - 1] = t;
            }
        for (i64 i = 0; i + 1 < ncut; i++) {
            const i64 p0 = cuts[i], p1 = cuts[i + 1];
            if (p0 >= p1)
                continue;
            i64 bl = -1, bh = -1;
            for (i64 b = 0; b < tw; b++)
                if (lo[b] <= p0 && p1 <= hi[b]) {
                    if (bl < 0)
                        bl = b;
                    bh = b + 1;
                }
            if (bl < 0)
                continue;
            spans[nspan++] = (fspan){p0, p1, offw[bl] * s_w, bl * w_b, (bh - bl) * Cs};
        }
    } else {
        for (i64 b = 0; b < tw; b++)
            if (lo[b] < hi[b])
                spans[nspan++] = (fspan){lo[b], hi[b], offw[b] * s_w, b * w_b, Cs};
    }
    const i64 xps = stepw * s_w;
    for (i64 k0 = 0; k0 < total_rows; k0 += chunk) {
        const i64 k1 = k0 + chunk < total_rows ? k0 + chunk : total_rows;
        for (i64 a = a0; a < a1; a++) {
            i64 ns = 0;
            for (i64 k = k0; k < k1; k++) {
                const i64 n = k / Q, q = k % Q;
                const i64 hh = (q0 + q) * steph + offh[a];
                if (hh < 0 || hh >= Hs)
                    continue;
                xrow[ns] = n * s_n + hh * s_h;
                drow[ns] = n * d_n + q * d_h;
                ns++;
            }
            if (!ns)
                continue;
            for (i64 sp = 0; sp < nspan; sp++) {
                const fspan *S = spans + sp;
                const float *xb = src + S->lo * xps + S->xoff;
                const float *db = dy + S->lo * d_w;
                float *wb = dw + a * w_a + S->woff;
                const i64 cnt = S->hi - S->lo;
                for (i64 o = o0; o < o1; o += BW) {
                    const int nv = o1 - o >= BW ? NV : (int)((o1 - o) / VL);
                    for (i64 v0 = 0; v0 < S->rows; v0 += RB) {
                        const int rb = S->rows - v0 >= RB ? RB : (int)(S->rows - v0);
                        FGRAD_TABLE[nv - 1][rb - 1](xb + v0 * s_c, xps, s_c, db + o, d_w, xrow,
                                                    drow, ns, cnt, wb + v0 * w_c + o, w_c);
                    }
                }
            }
        }
    }
    free(lo);
    free(spans);
    return 0;
}


/* Depthwise (one dx channel per group, M dy channels per group) input gradient, gather form:
 * dx[n, h, x, g] = sum over taps (a, b) and j < M with h + pt - a*dlh = q*sh, x + pl - b*dlw =
 * r*sw, 0 <= q < OH, 0 <= r < OW, of dy[n, q, r, g*M + j] * wp[(a*KW + b)*M + j][g]
 * (wp: [KH][KW][M][C] contiguous float32). Rows h in [h0, h1) of images [n0, n1); any strides
 * (elements). Only the terms of the sum are multiplied (exact for any values). */
int opgraph_depthwise_bpi_f32(const float *dy, i64 yn, i64 yh, i64 yw, i64 yc, i64 OH, i64 OW,
                              const float *wp, i64 KH, i64 KW, i64 M,
                              float *dx, i64 xn, i64 xh, i64 xw, i64 xc, i64 H, i64 W, i64 C,
                              i64 sh, i64 sw, i64 dlh, i64 dlw, i64 pt, i64 pl,
                              i64 n0, i64 n1, i64 h0, i64 h1)
{
    if (sh < 1 || sw < 1 || dlh < 1 || dlw < 1 || M < 1) return -1;
    if (yc == 1 && xc == 1) {           /* channels contiguous: vectorise over channels */
        /* taps by residue: ta[rho*KH + i] (count na[rho]) are the rows a with
         * (rho - a*dlh) % sh == 0; likewise tb for the columns */
        float *acc = (float *)malloc(sizeof(float) * (size_t)(C > 0 ? C : 1));
        i64 *ta = (i64 *)malloc(sizeof(i64) * (size_t)(sh * KH + sh + sw * KW + sw + 4));
        if (!acc || !ta) { free(acc); free(ta); return -2; }
        i64 *na = ta + sh * KH, *tb = na + sh, *nb = tb + sw * KW;
        for (i64 rho = 0; rho < sh; rho++) {
            na[rho] = 0;
            for (i64 a = 0; a < KH; a++)
                if ((((rho - a * dlh) % sh) + sh) % sh == 0) ta[rho * KH + na[rho]++] = a;
        }
        for (i64 rho = 0; rho < sw; rho++) {
            nb[rho] = 0;
            for (i64 b = 0; b < KW; b++)
                if ((((rho - b * dlw) % sw) + sw) % sw == 0) tb[rho * KW + nb[rho]++] = b;
        }
        for (i64 n = n0; n < n1; n++)
            for (i64 h = h0; h < h1; h++)
                for (i64 x = 0; x < W; x++) {
                    for (i64 g = 0; g < C; g++) acc[g] = 0.0f;
                    i64 rh = (((h + pt) % sh) + sh) % sh, rw = (((x + pl) % sw) + sw) % sw;
                    for (i64 ia = 0; ia < na[rh]; ia++) {
                        i64 a = ta[rh * KH + ia];
                        i64 v = h + pt - a * dlh;
                        if (v < 0) continue;
                        i64 q = v / sh;
                        if (q >= OH) continue;
                        for (i64 ib = 0; ib < nb[rw]; ib++) {
                            i64 b = tb[rw * KW + ib];
                            i64 u = x + pl - b * dlw;
                            if (u < 0) continue;
                            i64 r = u / sw;
                            if (r >= OW) continue;
                            const float *yp = dy + n * yn + q * yh + r * yw;
                            const float *wt = wp + (a * KW + b) * M * C;
                            if (M == 1) {
                                for (i64 g = 0; g < C; g++) acc[g] += yp[g] * wt[g];
                            } else {
                                for (i64 j = 0; j < M; j++)
                                    for (i64 g = 0; g < C; g++)
                                        acc[g] += yp[g * M + j] * wt[j * C + g];
                            }
                        }
                    }
                    float *o = dx + n * xn + h * xh + x * xw;
                    for (i64 g = 0; g < C; g++) o[g] = acc[g];
                }
        free(acc);
        free(ta);
        return 0;
    }
    /* otherwise: per (image, channel, row), vectorise over the columns of one stride phase
     * (the row accumulator is phase-major: column x at acc[(x % sw) * WP + x / sw]) */
    i64 WP = (W + sw - 1) / sw;
    float *acc = (float *)malloc(sizeof(float) * (size_t)(sw * WP > 0 ? sw * WP : 1));
    if (!acc) return -2;
    for (i64 n = n0; n < n1; n++)
        for (i64 g = 0; g < C; g++)
            for (i64 h = h0; h < h1; h++) {
                for (i64 x = 0; x < sw * WP; x++) acc[x] = 0.0f;
                for (i64 a = 0; a < KH; a++) {
                    i64 v = h + pt - a * dlh;
                    if (v < 0 || v % sh) continue;
                    i64 q = v / sh;
                    if (q >= OH) continue;
                    for (i64 b = 0; b < KW; b++) {
                        /* columns x = x0 + k*sw, r = r0 + k, with x in [0, W), r in [0, OW) */
                        i64 off = pl - b * dlw;            /* x + off = r*sw */
                        i64 r0 = off > 0 ? (off + sw - 1) / sw : 0;
                        i64 x0 = r0 * sw - off;
                        i64 cnt = OW - r0;
                        i64 cx = x0 < W ? (W - x0 + sw - 1) / sw : 0;
                        if (cx < cnt) cnt = cx;
                        if (cnt <= 0) continue;
                        const float *yp = dy + n * yn + q * yh + r0 * yw;
                        float *ap = acc + (x0 % sw) * WP + x0 / sw;
                        for (i64 j = 0; j < M; j++) {
                            const float wv = wp[((a * KW + b) * M + j) * C + g];
                            const float *yq = yp + (g * M + j) * yc;
                            if (yw == 1)
                                for (i64 k = 0; k < cnt; k++) ap[k] += wv * yq[k];
                            else
                                for (i64 k = 0; k < cnt; k++) ap[k] += wv * yq[k * yw];
                        }
                    }
                }
                float *o = dx + n * xn + g * xc + h * xh;
                for (i64 px = 0; px < sw; px++)
                    for (i64 k = 0, x = px; x < W; k++, x += sw) o[x * xw] = acc[px * WP + k];
            }
    free(acc);
    return 0;
}
