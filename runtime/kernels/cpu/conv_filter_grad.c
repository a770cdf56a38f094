/* The filter gradient of a convolution on the compiled core's geometry (see conv_gather.c).
 * Built with it by native.py. */
#include "conv_common.h"

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
