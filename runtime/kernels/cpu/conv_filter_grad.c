/* The filter gradient of a convolution on the compiled core's geometry (see conv_gather.c).
 * Built with it by native.py. */
#include <string.h>

#include "conv_common.h"

/* ------------------------------------------------------------------------------------------
 * Filter gradient
 *
 *   dw[a, b, c, o] += sum_{n, q, r} src[n, (q0 + q)*steph + offh[a], r*stepw + offw[b], c]
 *                                    * dy[n, q, r, o]
 *
 * for each of G groups (src, dy and dw of group g at + g*s_g, g*d_g, g*w_g), over the
 * positions inside [0, Hs) x [0, Ws) only (nothing is multiplied by padding, so non-finite
 * values reach exactly the taps that read them), for the taps a in [a0, a1) and the output
 * channels o in [o0, o1) of every group (o0 a multiple of VL; o1 too, or Co: any channel
 * count): callers split dw between threads by groups, taps or channel blocks, and each call
 * adds to what dw holds. dw's channels are contiguous (stride 1); every other stride is in
 * elements (dy's channels too), so NHWC and NCHW operands are read in place.
 *
 * Per tap (a, b) this is a GEMM dw[a, b] (C x O) += X_ab^T (C x P) @ dy (P x O) over the pixels
 * P whose source lies inside. The microkernel keeps an RB x NV-vector tile of dw in registers
 * (RB input channels, NV vectors of output channels; 2*RB x 1 vector for a block of one
 * vector, so that it holds as many accumulators) and, per pixel, does NV vector loads of dy,
 * RB broadcasts of src and RB*NV FMAs. The pixels are cut into chunks of about FGRAD_PIXELS
 * (whole output rows, or pieces of one row when a row is longer): every tile sweeps a chunk's
 * pixels of one tap row a as "segments" (one per (image, row) whose source row lies inside),
 * so a tile is loaded and stored once per chunk, and the chunk's dy block of NV vectors stays
 * in L1 while the tiles of every input channel read it. Within a chunk the input channels are
 * swept in groups whose source values fit in L2 (FGRAD_SRC_BYTES), each group against every
 * channel block of dy.
 *
 * Source tiles are read in place when their rows are contiguous runs of close pixels (NCHW at
 * step 1, or a few NHWC channels); when a tile would read a few floats of every cache line
 * (NHWC with many channels: a pixel's RB channels; NCHW at step 2) and enough channel blocks
 * of dy reuse it, a chunk's tiles are packed first (pixel-major, a pixel's tile rows
 * together).
 *
 * dy's channel blocks (NV*VL channels) are read in place when dy's channels are contiguous and
 * the block is full; otherwise (NCHW dy, or the last block of a channel count that is not a
 * multiple of VL: 3, 21) the chunk's block is packed, pixel-major, into the caller's buffer
 * (else one of our own), its lanes past the real channels zero. Each output channel is its
 * own vector lane, so a padded lane (0 * src, NaN for an inf src) never meets a real channel,
 * and only the real channels of dw are read and written (a partial block goes through a
 * register-tile buffer).
 *
 * The tile rows of one tap column b are its Cs channels. When the channels of consecutive tap
 * columns are contiguous in dw (w_b == Cs*w_c) and the channels alone would leave much of the
 * last tile empty (3 channels: 3 of RB rows), the tile rows run over (b, c) pairs instead, the
 * source offset of each row taken from a table (any source layout, any dilation); the row is
 * then cut into pieces over which the set of tap columns reading inside is constant.
 *
 * One input and one output channel per group with the groups contiguous (FCN's per-class
 * filters, NHWC) runs the groups as the vector lanes instead (fgrad_depthwise).
 * ---------------------------------------------------------------------------------------- */

/* One RBV-row x NVV-vector tile of dw (row i at o + i*orow), added to over ns segments of cnt
 * pixels: segment s reads src row i at x + xrow[s] + roff[i] (pixel p at + p*xps) and dy at
 * d + drow[s] (pixel p at + p*dps, channels contiguous). */
#define FMICRO(RBV, NVV)                                                                       \
    static void fgrad_##RBV##_##NVV(const float *x, const i64 *roff, i64 xps, const float *d, \
                                    i64 dps, const i64 *xrow, const i64 *drow, i64 ns,         \
                                    i64 cnt, float *o, i64 orow)                               \
    {                                                                                          \
        vf acc[RBV][NVV];                                                                      \
        _Pragma("GCC unroll 16") for (int i = 0; i < RBV; i++)                                 \
            _Pragma("GCC unroll 4") for (int j = 0; j < NVV; j++)                              \
                acc[i][j] = *(const vfu *)(o + i * orow + j * VL);                             \
        for (i64 s = 0; s < ns; s++) {                                                         \
            const float *xr[RBV];                                                              \
            _Pragma("GCC unroll 16") for (int i = 0; i < RBV; i++)                             \
                xr[i] = x + xrow[s] + roff[i];                                                 \
            const float *dp = d + drow[s];                                                     \
            _Pragma("GCC unroll 2") for (i64 p = 0; p < cnt; p++) {                            \
                vf dv[NVV];                                                                    \
                _Pragma("GCC unroll 4") for (int j = 0; j < NVV; j++)                          \
                    dv[j] = *(const vfu *)(dp + p * dps + j * VL);                             \
                _Pragma("GCC unroll 16") for (int i = 0; i < RBV; i++) {                       \
                    vf xv = BCAST(xr[i][p * xps]);                                             \
                    _Pragma("GCC unroll 4") for (int j = 0; j < NVV; j++) acc[i][j] += xv * dv[j]; \
                }                                                                              \
            }                                                                                  \
        }                                                                                      \
        _Pragma("GCC unroll 16") for (int i = 0; i < RBV; i++)                                 \
            _Pragma("GCC unroll 4") for (int j = 0; j < NVV; j++)                              \
                *(vfu *)(o + i * orow + j * VL) = acc[i][j];                                   \
    }                                                                                          \
    /* the same over a packed source tile: pixel k's RBV values at x + k*xst */               \
    static void fgradp_##RBV##_##NVV(const float *x, i64 xst, const float *d, i64 dps,         \
                                     const i64 *drow, i64 ns, i64 cnt, float *o, i64 orow)     \
    {                                                                                          \
        vf acc[RBV][NVV];                                                                      \
        _Pragma("GCC unroll 16") for (int i = 0; i < RBV; i++)                                 \
            _Pragma("GCC unroll 4") for (int j = 0; j < NVV; j++)                              \
                acc[i][j] = *(const vfu *)(o + i * orow + j * VL);                             \
        for (i64 s = 0; s < ns; s++) {                                                         \
            const float *dp = d + drow[s];                                                     \
            _Pragma("GCC unroll 2") for (i64 p = 0; p < cnt; p++) {                            \
                vf dv[NVV];                                                                    \
                _Pragma("GCC unroll 4") for (int j = 0; j < NVV; j++)                          \
                    dv[j] = *(const vfu *)(dp + p * dps + j * VL);                             \
                _Pragma("GCC unroll 16") for (int i = 0; i < RBV; i++) {                       \
                    vf xv = BCAST(x[i]);                                                       \
                    _Pragma("GCC unroll 4") for (int j = 0; j < NVV; j++) acc[i][j] += xv * dv[j]; \
                }                                                                              \
                x += xst;                                                                      \
            }                                                                                  \
        }                                                                                      \
        _Pragma("GCC unroll 16") for (int i = 0; i < RBV; i++)                                 \
            _Pragma("GCC unroll 4") for (int j = 0; j < NVV; j++)                              \
                *(vfu *)(o + i * orow + j * VL) = acc[i][j];                                   \
    }

/* The same over rows in arithmetic progression (row i at + roff[0] + i*rs; used for contiguous
 * rows, rs = 1: NHWC channels): no row pointers, so 2*RB rows of one vector fit the registers
 * (many rows far apart would be as many streams for the prefetchers) */
#define FMICROA(RBV, NVV)                                                                      \
    static void fgrada_##RBV##_##NVV(const float *x, const i64 *roff, i64 xps, const float *d,\
                                     i64 dps, const i64 *xrow, const i64 *drow, i64 ns,        \
                                     i64 cnt, float *o, i64 orow)                              \
    {                                                                                          \
        vf acc[RBV][NVV];                                                                      \
        const i64 rs = RBV > 1 ? roff[1] - roff[0] : 0;                                        \
        _Pragma("GCC unroll 32") for (int i = 0; i < RBV; i++)                                 \
            _Pragma("GCC unroll 4") for (int j = 0; j < NVV; j++)                              \
                acc[i][j] = *(const vfu *)(o + i * orow + j * VL);                             \
        for (i64 s = 0; s < ns; s++) {                                                         \
            const float *xs = x + xrow[s] + roff[0];                                           \
            const float *dp = d + drow[s];                                                     \
            _Pragma("GCC unroll 2") for (i64 p = 0; p < cnt; p++) {                            \
                vf dv[NVV];                                                                    \
                _Pragma("GCC unroll 4") for (int j = 0; j < NVV; j++)                          \
                    dv[j] = *(const vfu *)(dp + p * dps + j * VL);                             \
                const float *xq = xs + p * xps;                                                \
                _Pragma("GCC unroll 32") for (int i = 0; i < RBV; i++) {                       \
                    vf xv = BCAST(xq[i * rs]);                                                 \
                    _Pragma("GCC unroll 4") for (int j = 0; j < NVV; j++) acc[i][j] += xv * dv[j]; \
                }                                                                              \
            }                                                                                  \
        }                                                                                      \
        _Pragma("GCC unroll 32") for (int i = 0; i < RBV; i++)                                 \
            _Pragma("GCC unroll 4") for (int j = 0; j < NVV; j++)                              \
                *(vfu *)(o + i * orow + j * VL) = acc[i][j];                                   \
    }

typedef void (*fgrad_fn)(const float *, const i64 *, i64, const float *, i64, const i64 *,
                         const i64 *, i64, i64, float *, i64);
typedef void (*fgradp_fn)(const float *, i64, const float *, i64, const i64 *, i64, i64,
                          float *, i64);

/* Tiles of NV vectors have up to RB rows; single-vector tiles (a block of VL channels: the
 * last block of 3, 8 or 21 channels) over a packed source up to RB1 = 2*RB rows, so they hold
 * as many accumulators (FMA latency); in place they would need too many row pointers */
#define RB1 (2 * RB)
#define FL4(M, N) M(1, N) M(2, N) M(3, N) M(4, N)
#define FL6(M, N) FL4(M, N) M(5, N) M(6, N)
#define FL8(M, N) FL6(M, N) M(7, N) M(8, N)
#define FL12(M, N) FL8(M, N) M(9, N) M(10, N) M(11, N) M(12, N)
#define FL14(M, N) FL12(M, N) M(13, N) M(14, N)
#define FL28(M, N) FL14(M, N) M(15, N) M(16, N) M(17, N) M(18, N) M(19, N) M(20, N) M(21, N) \
    M(22, N) M(23, N) M(24, N) M(25, N) M(26, N) M(27, N) M(28, N)
#define FENTRY(R, N) fgrad_##R##_##N,
#define FPENTRY(R, N) fgradp_##R##_##N,
#if RB == 14
#define FLIST_NV FL14
#define FLIST_1 FL28
#elif RB == 6
#define FLIST_NV FL6
#define FLIST_1 FL12
#else
#define FLIST_NV FL4
#define FLIST_1 FL8
#endif
FLIST_1(FMICRO, 1)
FLIST_NV(FMICRO, 2)
FLIST_1(FMICROA, 1)
FLIST_NV(FMICROA, 2)
#define FAENTRY(R, N) fgrada_##R##_##N,
static const fgrad_fn FGRAD_TABLE1[RB1] = {FLIST_1(FENTRY, 1)};
static const fgrad_fn FGRADA_TABLE1[RB1] = {FLIST_1(FAENTRY, 1)};
static const fgrad_fn FGRADA_TABLE2[RB] = {FLIST_NV(FAENTRY, 2)};
static const fgrad_fn FGRAD_TABLE2[RB] = {FLIST_NV(FENTRY, 2)};
static const fgradp_fn FGRADP_TABLE1[RB1] = {FLIST_1(FPENTRY, 1)};
static const fgradp_fn FGRADP_TABLE2[RB] = {FLIST_NV(FPENTRY, 2)};

/* output pixels one chunk aims at: a tile's load and store amortised over this many pixels,
 * the chunk's dy block (pixels x channels) small enough to stay in cache */
#ifndef FGRAD_PIXELS
#define FGRAD_PIXELS 256
#endif
/* bytes of source values (one channel group over one chunk's pixels) aimed at per sweep of
 * dy's channel blocks: they stay in L2 meanwhile */
#ifndef FGRAD_SRC_BYTES
#define FGRAD_SRC_BYTES (192L << 10)
#endif

/* source tiles are packed when its pixels lie at least FGRAD_PACK_SRC_STRIDE floats apart and
 * dy has at least FGRAD_PACK_SRC_BLOCKS channel blocks (the packing is a copy per pixel), or
 * when its rows lie apart with the pixels strided and dy has FGRAD_PACK_STRIDED_BLOCKS blocks
 * (a gather, dearer); see pack_src */
#ifndef FGRAD_PACK_SRC_STRIDE
#define FGRAD_PACK_SRC_STRIDE 16
#endif
#ifndef FGRAD_PACK_SRC_BLOCKS
#define FGRAD_PACK_SRC_BLOCKS 3
#endif
#ifndef FGRAD_PACK_STRIDED_BLOCKS
#define FGRAD_PACK_STRIDED_BLOCKS 8
#endif

/* A span of one tap row: the pixels [lo, hi) of an output row, read by the tap columns
 * [b0, b0 + nb) (nb = 1 unless fused); rows = nb * Cs tile rows, row j being tap column
 * b0 + j / Cs, channel j % Cs; its dw row at a*w_a + b0*w_b + j*w_c. */
typedef struct {
    i64 lo, hi, b0, rows, rt; /* rt: the rows' source offsets start at rtab + rt */
    int arith;                /* they are contiguous (offsets step by 1) */
} fspan;

/* Pack the channel block [o, o + real) of dy's rows k0..k1 (absolute rows k = n*Q + q),
 * columns [r0, r1) pixel-major into buf (pixel stride bw >= real, lanes past real zero). */
static void fgrad_pack(float *buf, i64 bw, i64 real, const float *dy, i64 d_n, i64 d_h,
                       i64 d_w, i64 d_c, i64 Q, i64 k0, i64 k1, i64 r0, i64 r1, i64 o)
{
    const i64 ncol = r1 - r0;
    for (i64 k = k0; k < k1; k++) {
        const float *row = dy + (k / Q) * d_n + (k % Q) * d_h + r0 * d_w + o * d_c;
        float *out = buf + (k - k0) * ncol * bw;
        if (d_c == 1) {
            for (i64 r = 0; r < ncol; r++) {
                memcpy(out + r * bw, row + r * d_w, sizeof(float) * (size_t)real);
                for (i64 c = real; c < bw; c++)
                    out[r * bw + c] = 0.0f;
            }
        } else {
            for (i64 c = 0; c < real; c++) {
                const float *in = row + c * d_c;
                for (i64 r = 0; r < ncol; r++)
                    out[r * bw + c] = in[r * d_w];
            }
            for (i64 r = 0; r < ncol; r++)
                for (i64 c = real; c < bw; c++)
                    out[r * bw + c] = 0.0f;
        }
    }
}

/* Pack rows [0, rows) of a span's source (row i at x + xrow[s] + roff[i], pixel p of segment s
 * at + p*xps) into tiles of RB1 rows: tile t at out + t*RB1*kp (kp = ns*cnt pixels), pixel k
 * at + k*trows (trows: the tile's rows). Contiguous rows (NHWC channels) are copied pixel by
 * pixel (reading each pixel's channels in order), others row by row. */
static void fgrad_pack_src(float *out, const float *x, const i64 *xrow, i64 ns, i64 cnt,
                           i64 xps, const i64 *roff, i64 rows)
{
    const i64 kp = ns * cnt;
    int contiguous = 1;
    for (i64 i = 1; i < rows; i++)
        contiguous &= roff[i] == roff[0] + i;
    if (contiguous) {
        const i64 full = rows / RB1, rest = rows - full * RB1;
        float *tail = out + full * RB1 * kp;
        for (i64 s = 0, k = 0; s < ns; s++) {
            const float *xs = x + xrow[s] + roff[0];
            for (i64 p = 0; p < cnt; p++, k++) {
                const float *xp = xs + p * xps;
                for (i64 t = 0; t < full; t++)
                    memcpy(out + t * RB1 * kp + k * RB1, xp + t * RB1, sizeof(float) * RB1);
                if (rest)
                    memcpy(tail + k * rest, xp + full * RB1, sizeof(float) * (size_t)rest);
            }
        }
        return;
    }
    for (i64 i = 0; i < rows; i++) {
        const i64 t0 = i / RB1 * RB1;
        const i64 trows = rows - t0 < RB1 ? rows - t0 : RB1;
        float *o = out + t0 * kp + (i - t0);
        for (i64 s = 0, k = 0; s < ns; s++) {
            const float *xr = x + xrow[s] + roff[i];
            for (i64 p = 0; p < cnt; p++, k++)
                o[k * trows] = xr[p * xps];
        }
    }
}

/* One input and one output channel per group, the groups contiguous in src, dy and dw
 * (depthwise, NHWC): the groups are the vector lanes, dw[a, b, 0, g] += sum over the pixels
 * inside of src[.., g] * dy[.., g], four accumulators per tap and vector of groups (the lanes
 * past the last group run as scalars). */
static void fgrad_depthwise(const float *src, i64 s_n, i64 s_h, i64 s_w, i64 Hs,
                            const float *dy, i64 d_n, i64 d_h, i64 d_w, i64 N, i64 Q,
                            const i64 *offh, const i64 *offw, i64 tw, const i64 *lo,
                            const i64 *hi, i64 steph, i64 stepw, i64 q0, float *dw, i64 w_a,
                            i64 w_b, i64 a0, i64 a1, i64 G)
{
    const i64 xps = stepw * s_w;
    for (i64 a = a0; a < a1; a++)
        for (i64 b = 0; b < tw; b++) {
            if (lo[b] >= hi[b])
                continue;
            float *wt = dw + a * w_a + b * w_b;
            for (i64 g0 = 0; g0 < G; g0 += VL) {
                const int full = G - g0 >= VL;
                vf acc[4] = {BCAST(0.0f), BCAST(0.0f), BCAST(0.0f), BCAST(0.0f)};
                float sacc[VL] = {0};
                for (i64 k = 0; k < N * Q; k++) {
                    const i64 n = k / Q, q = k % Q;
                    const i64 hh = (q0 + q) * steph + offh[a];
                    if (hh < 0 || hh >= Hs)
                        continue;
                    const float *xp = src + n * s_n + hh * s_h + offw[b] * s_w + g0;
                    const float *dp = dy + n * d_n + q * d_h + g0;
                    i64 r = lo[b];
                    if (full) {
                        for (; r + 4 <= hi[b]; r += 4)
                            for (int u = 0; u < 4; u++)
                                acc[u] += *(const vfu *)(xp + (r + u) * xps) *
                                          *(const vfu *)(dp + (r + u) * d_w);
                        for (; r < hi[b]; r++)
                            acc[0] += *(const vfu *)(xp + r * xps) * *(const vfu *)(dp + r * d_w);
                    } else {
                        for (; r < hi[b]; r++)
                            for (i64 c = 0; c < G - g0; c++)
                                sacc[c] += xp[r * xps + c] * dp[r * d_w + c];
                    }
                }
                if (full) {
                    vf t = (acc[0] + acc[1]) + (acc[2] + acc[3]);
                    *(vfu *)(wt + g0) += t;
                } else {
                    for (i64 c = 0; c < G - g0; c++)
                        wt[g0 + c] += sacc[c];
                }
            }
        }
}

/* See the comment above. q0: absolute index of dy's first row (src rows are absolute). pack:
 * npack floats of scratch for packed dy blocks (NULL: allocated here when needed). Returns 0,
 * -1 for arguments this kernel does not take, -2 when out of memory. */
int opgraph_filter_grad_f32(const float *src0, i64 s_n, i64 s_h, i64 s_w, i64 s_c, i64 Hs,
                            i64 Ws, i64 Cs, const float *dy0, i64 d_n, i64 d_h, i64 d_w,
                            i64 d_c, i64 N, i64 Q, i64 R, i64 Co, const i64 *offh, i64 th,
                            const i64 *offw, i64 tw, i64 steph, i64 stepw, i64 q0, float *dw0,
                            i64 w_a, i64 w_b, i64 w_c, i64 a0, i64 a1, i64 o0, i64 o1, i64 G,
                            i64 s_g, i64 d_g, i64 w_g, float *pack, i64 npack)
{
    if (Co <= 0 || th <= 0 || tw <= 0 || Cs <= 0 || steph <= 0 || stepw <= 0 || npack < 0 ||
        G < 0)
        return -1;
    if (a0 < 0 || a1 > th || o0 < 0 || o1 > Co || o0 % VL || ((o1 - o0) % VL && o1 != Co))
        return -1;
    if (N <= 0 || Q <= 0 || R <= 0 || a0 >= a1 || o0 >= o1 || Hs <= 0 || Ws <= 0 || G == 0)
        return 0;
    const i64 ctiles = (Cs + RB - 1) / RB;
    const int fuse = tw > 1 && w_b == Cs * w_c && 5 * Cs < 4 * RB * ctiles;
    /* channel blocks: ob covers [o0 + ob*BW, + real), padded to bwid lanes; a block is packed
     * unless it is full and dy's channels are contiguous */
    const i64 nblk = (o1 - o0 + BW - 1) / BW;
    const i64 last_real = o1 - o0 - (nblk - 1) * BW;
    const i64 last_bw = (last_real + VL - 1) / VL * VL;
    const int pack_all = d_c != 1;
    const int pack_last = pack_all || last_real != last_bw;
    /* one channel per group, groups contiguous: fgrad_depthwise (nothing packed) */
    const int depthwise = Cs == 1 && Co == 1 && G >= VL && s_g == 1 && d_g == 1 && w_g == 1;
    const i64 pw = depthwise ? 0
                   : pack_all ? (nblk - 1) * BW + last_bw : (pack_last ? last_bw : 0);
    /* chunk: rows_per whole rows of R pixels, or pieces of ncol_cap pixels of one row */
    const i64 total_rows = N * Q;
    const i64 kpx = FGRAD_PIXELS;
    i64 ncol_cap = R < kpx ? R : kpx;
    i64 rows_per = kpx / ncol_cap;
    if (rows_per > total_rows)
        rows_per = total_rows;
    if (tw > (INT64_MAX / 16) / 8 || pw > (INT64_MAX / 16) / kpx)
        return -2;
    float *own = NULL;
    if (pw > 0 && pack && npack >= pw) { /* fit the chunk to the caller's buffer */
        if (pw * rows_per * ncol_cap > npack) {
            rows_per = npack / (pw * ncol_cap);
            if (rows_per < 1) {
                rows_per = 1;
                ncol_cap = npack / pw;
            }
        }
    } else if (pw > 0) {
        own = malloc(sizeof(float) * (size_t)(pw * rows_per * ncol_cap));
        if (!own)
            return -2;
        pack = own;
    }
    /* source tiles are packed (pixel-major) when enough channel blocks of dy reuse each
     * packed tile and a tile reads few floats of each cache line: its pixels lie a line or
     * more apart (NHWC: RB channels of every pixel), or its rows are apart and the pixels of
     * a row strided (NCHW, stride 2). Contiguous rows of close pixels (NHWC with 3 channels,
     * NCHW with stride 1) are read in place. */
    const i64 axps = stepw * s_w < 0 ? -stepw * s_w : stepw * s_w;
    const int pack_src = (nblk >= FGRAD_PACK_SRC_BLOCKS && axps >= FGRAD_PACK_SRC_STRIDE) ||
                         (nblk >= FGRAD_PACK_STRIDED_BLOCKS && axps >= 2 && s_c != 1);
    const i64 xpk_elems = FGRAD_SRC_BYTES / 4 > RB1 * rows_per * ncol_cap
                              ? FGRAD_SRC_BYTES / 4 : RB1 * rows_per * ncol_cap;
    float *xpk = pack_src ? malloc(sizeof(float) * (size_t)xpk_elems) : NULL;
    i64 *lo = malloc(sizeof(i64) * (size_t)(2 * tw + 4 * rows_per + 2 * tw + 2));
    fspan *spans = malloc(sizeof(fspan) * (size_t)(2 * tw + 1));
    if (!lo || !spans || (pack_src && !xpk)) {
        free(lo);
        free(spans);
        free(own);
        free(xpk);
        return -2;
    }
    i64 *hi = lo + tw, *xrow = hi + tw, *drow_in = xrow + rows_per;
    i64 *drow_bw = drow_in + rows_per, *drow_last = drow_bw + rows_per;
    i64 *cuts = drow_last + rows_per;
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
    if (depthwise) {
        fgrad_depthwise(src0, s_n, s_h, s_w, Hs, dy0, d_n, d_h, d_w, N, Q, offh, offw, tw, lo,
                        hi, steph, stepw, q0, dw0, w_a, w_b, a0, a1, G);
        free(lo);
        free(spans);
        free(own);
        free(xpk);
        return 0;
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
            spans[nspan++] = (fspan){p0, p1, bl, (bh - bl) * Cs, 0, 0};
        }
    } else {
        for (i64 b = 0; b < tw; b++)
            if (lo[b] < hi[b])
                spans[nspan++] = (fspan){lo[b], hi[b], b, Cs, 0, 0};
    }
    /* every span's rows: their source offsets (tap column b's offset plus channel c's) */
    i64 nrt = 0;
    for (i64 sp = 0; sp < nspan; sp++) {
        spans[sp].rt = nrt;
        nrt += spans[sp].rows;
    }
    i64 *rtab = malloc(sizeof(i64) * (size_t)(nrt > 0 ? nrt : 1));
    if (!rtab) {
        free(lo);
        free(spans);
        free(own);
        free(xpk);
        return -2;
    }
    for (i64 sp = 0; sp < nspan; sp++) {
        i64 *rt = rtab + spans[sp].rt;
        for (i64 j = 0; j < spans[sp].rows; j++)
            rt[j] = offw[spans[sp].b0 + j / Cs] * s_w + (j % Cs) * s_c;
        spans[sp].arith = 1; /* contiguous rows (NHWC channels): 2*RB-row tiles in place */
        for (i64 j = 1; j < spans[sp].rows; j++)
            spans[sp].arith &= rt[j] - rt[j - 1] == 1;
    }
    const i64 xps = stepw * s_w;
    for (i64 g = 0; g < G; g++) /* group g: its source channels, dy channels and dw columns */
    for (i64 k0 = 0; k0 < total_rows; k0 += rows_per) {
        const float *src = src0 + g * s_g, *dy = dy0 + g * d_g;
        float *dw = dw0 + g * w_g;
        const i64 k1 = k0 + rows_per < total_rows ? k0 + rows_per : total_rows;
        for (i64 r0 = 0; r0 < R; r0 += ncol_cap) {
            const i64 r1 = r0 + ncol_cap < R ? r0 + ncol_cap : R;
            const i64 ncol = r1 - r0;
            /* pack the blocks that need it: [ob][pixel][bwid], block ob at pack + ob*BW*px */
            const i64 px = (k1 - k0) * ncol;
            if (pack_all)
                for (i64 ob = 0; ob + 1 < nblk; ob++)
                    fgrad_pack(pack + ob * BW * px, BW, BW, dy, d_n, d_h, d_w, d_c, Q, k0, k1,
                               r0, r1, o0 + ob * BW);
            float *pk_last = pack_all ? pack + (nblk - 1) * BW * px : pack;
            if (pack_last)
                fgrad_pack(pk_last, last_bw, last_real, dy, d_n, d_h, d_w, d_c, Q, k0, k1, r0,
                           r1, o0 + (nblk - 1) * BW);
            for (i64 a = a0; a < a1; a++) {
                i64 ns = 0;
                for (i64 k = k0; k < k1; k++) {
                    const i64 n = k / Q, q = k % Q;
                    const i64 hh = (q0 + q) * steph + offh[a];
                    if (hh < 0 || hh >= Hs)
                        continue;
                    xrow[ns] = n * s_n + hh * s_h;
                    drow_in[ns] = n * d_n + q * d_h;
                    drow_bw[ns] = (k - k0) * ncol * BW;
                    drow_last[ns] = (k - k0) * ncol * last_bw;
                    ns++;
                }
                if (!ns)
                    continue;
                for (i64 sp = 0; sp < nspan; sp++) {
                    const fspan *S = spans + sp;
                    const i64 slo = S->lo > r0 ? S->lo : r0, shi = S->hi < r1 ? S->hi : r1;
                    if (slo >= shi)
                        continue;
                    const i64 cnt = shi - slo;
                    const float *xb = src + slo * xps;
                    float *wb = dw + a * w_a + S->b0 * w_b;
                    /* channel groups whose source values over this chunk fit in L2 */
                    const i64 kp = ns * cnt; /* the call's pixels */
                    i64 grp = FGRAD_SRC_BYTES / (4 * kp) / RB1 * RB1;
                    if (grp < RB1)
                        grp = RB1;
                    for (i64 g0 = 0; g0 < S->rows; g0 += grp) {
                        const i64 g1 = g0 + grp < S->rows ? g0 + grp : S->rows;
                        /* the group's tiles of RB1 rows, pixel-major (a pixel's rows
                         * together), one after the other: tile t at xpk + t*RB1*kp */
                        if (xpk)
                            fgrad_pack_src(xpk, xb, xrow, ns, cnt, xps, rtab + S->rt + g0,
                                           g1 - g0);
                        for (i64 ob = 0; ob < nblk; ob++) {
                            const i64 o = o0 + ob * BW;
                            const int last = ob + 1 == nblk;
                            const i64 real = last ? last_real : BW, bwid = last ? last_bw : BW;
                            const int nv = (int)(bwid / VL);
                            /* tile rows: 2*RB for one vector of a packed source (an
                             * unpacked one would need too many row pointers) */
                            const int step = nv == 1 && (xpk || S->arith) ? RB1 : RB;
                            const float *db;
                            const i64 *drow;
                            i64 dps;
                            if (last && pack_last) {
                                db = pk_last + (slo - r0) * bwid;
                                dps = bwid;
                                drow = drow_last;
                            } else if (pack_all) {
                                db = pack + ob * BW * px + (slo - r0) * BW;
                                dps = BW;
                                drow = drow_bw;
                            } else {
                                db = dy + o + slo * d_w;
                                dps = d_w;
                                drow = drow_in;
                            }
                            for (i64 v0 = g0; v0 < g1; v0 += step) {
                                const int rb = g1 - v0 >= step ? step : (int)(g1 - v0);
                                const i64 *roff = rtab + S->rt + v0;
                                float *wt = wb + v0 * w_c + o;
                                /* packed: the part of tile (v0 - g0) / RB1 at row offset sub */
                                const i64 t0 = g0 + (v0 - g0) / RB1 * RB1;
                                const i64 trows = g1 - t0 < RB1 ? g1 - t0 : RB1;
                                const float *xt = xpk ? xpk + (t0 - g0) * kp + (v0 - t0) : NULL;
                                float tile[RB1 * BW];
                                float *to = wt;
                                i64 trow = w_c;
                                if (real != bwid) { /* a partial block: via a tile buffer */
                                    for (int i = 0; i < rb; i++) {
                                        for (i64 c = 0; c < real; c++)
                                            tile[i * BW + c] = wt[i * w_c + c];
                                        for (i64 c = real; c < bwid; c++)
                                            tile[i * BW + c] = 0.0f;
                                    }
                                    to = tile;
                                    trow = BW;
                                }
                                if (xt)
                                    (nv == 1 ? FGRADP_TABLE1 : FGRADP_TABLE2)[rb - 1](
                                        xt, trows, db, dps, drow, ns, cnt, to, trow);
                                else
                                    (nv == 1 ? (S->arith ? FGRADA_TABLE1 : FGRAD_TABLE1)
                                             : (S->arith ? FGRADA_TABLE2 : FGRAD_TABLE2))[rb - 1](
                                        xb, roff, xps, db, dps, xrow, drow, ns, cnt, to, trow);
                                if (real != bwid)
                                    for (int i = 0; i < rb; i++)
                                        for (i64 c = 0; c < real; c++)
                                            wt[i * w_c + c] = tile[i * BW + c];
                            }
                        }
                    }
                }
            }
        }
    }
    free(lo);
    free(spans);
    free(own);
    free(xpk);
    free(rtab);
    return 0;
}
