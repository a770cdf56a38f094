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
 * over the positions inside [0, Hs) x [0, Ws) only (nothing is multiplied by padding, so
 * non-finite values reach exactly the taps that read them), for the taps a in [a0, a1) and the
 * output channels o in [o0, o1) (o0 a multiple of VL; o1 too, or Co): callers split dw between
 * threads by taps or channel blocks and each call adds to what dw holds. dw's channels are
 * contiguous (stride 1); every other stride is in elements (dy's channels too), so NHWC and
 * NCHW operands are read in place.
 *
 * Per tap (a, b) this is a GEMM dw[a, b] (C x O) += X_ab^T (C x P) @ dy (P x O) over the pixels
 * P whose source lies inside. The microkernel keeps an RB x NV-vector tile of dw in registers
 * (RB input channels, NV vectors of output channels) and, per pixel, does NV vector loads of dy,
 * RB broadcasts of src and RB*NV FMAs. The pixels are cut into chunks of about FGRAD_PIXELS
 * (whole output rows, or pieces of one row when a row is longer): every tile sweeps a chunk's
 * pixels of one tap row a as "segments" (one per (image, row) whose source row lies inside),
 * so a tile is loaded and stored once per chunk, and the chunk's dy block stays in cache while
 * every tile reads it. Within a chunk the input channels are swept in groups whose source
 * values fit in L2 (FGRAD_SRC_BYTES), each group against every channel block of dy.
 *
 * dy's channel blocks (NV*VL channels) are read in place when dy's channels are contiguous and
 * the block is full; otherwise (NCHW dy, or the last block of a channel count that is not a
 * multiple of VL) the chunk's block is packed, pixel-major, into the caller's buffer (else one
 * of our own), its lanes past the real channels zero. Each output channel is its own vector
 * lane, so a padded lane (0 * src, NaN for an inf src) never meets a real channel, and only the
 * real channels of dw are read and written (a partial block goes through a register-tile
 * buffer).
 *
 * The tile rows of one tap column b are its Cs channels. When the channels of consecutive tap
 * columns are contiguous in dw (w_b == Cs*w_c) and the channels alone would leave much of the
 * last tile empty (3 channels: 3 of RB rows), the tile rows run over (b, c) pairs instead, the
 * source offset of each row taken from a small table (any source layout, any dilation); the
 * row is then cut into pieces over which the set of tap columns reading inside is constant.
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
    /* the same over a packed source tile: pixel k's RBV values at x + k*RBV */                \
    static void fgradp_##RBV##_##NVV(const float *x, const float *d, i64 dps, const i64 *drow, \
                                     i64 ns, i64 cnt, float *o, i64 orow)                      \
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
                x += RBV;                                                                      \
            }                                                                                  \
        }                                                                                      \
        _Pragma("GCC unroll 16") for (int i = 0; i < RBV; i++)                                 \
            _Pragma("GCC unroll 4") for (int j = 0; j < NVV; j++)                              \
                *(vfu *)(o + i * orow + j * VL) = acc[i][j];                                   \
    }

typedef void (*fgrad_fn)(const float *, const i64 *, i64, const float *, i64, const i64 *,
                         const i64 *, i64, i64, float *, i64);
typedef void (*fgradp_fn)(const float *, const float *, i64, const i64 *, i64, i64, float *,
                          i64);

#if RB == 14
#define FMICROS(N) FMICRO(1, N) FMICRO(2, N) FMICRO(3, N) FMICRO(4, N) FMICRO(5, N) FMICRO(6, N) \
    FMICRO(7, N) FMICRO(8, N) FMICRO(9, N) FMICRO(10, N) FMICRO(11, N) FMICRO(12, N)           \
    FMICRO(13, N) FMICRO(14, N)
#define FTABLE(F, N) {F##_1_##N, F##_2_##N, F##_3_##N, F##_4_##N, F##_5_##N, F##_6_##N,     \
    F##_7_##N, F##_8_##N, F##_9_##N, F##_10_##N, F##_11_##N, F##_12_##N, F##_13_##N,          \
    F##_14_##N}
#elif RB == 6
#define FMICROS(N) FMICRO(1, N) FMICRO(2, N) FMICRO(3, N) FMICRO(4, N) FMICRO(5, N) FMICRO(6, N)
#define FTABLE(F, N) {F##_1_##N, F##_2_##N, F##_3_##N, F##_4_##N, F##_5_##N, F##_6_##N}
#else
#define FMICROS(N) FMICRO(1, N) FMICRO(2, N) FMICRO(3, N) FMICRO(4, N)
#define FTABLE(F, N) {F##_1_##N, F##_2_##N, F##_3_##N, F##_4_##N}
#endif
FMICROS(1)
FMICROS(2)
static const fgrad_fn FGRAD_TABLE[NV][RB] = {FTABLE(fgrad, 1), FTABLE(fgrad, 2)};
static const fgradp_fn FGRADP_TABLE[NV][RB] = {FTABLE(fgradp, 1), FTABLE(fgradp, 2)};

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

/* source tiles are packed when dy has at least FGRAD_PACK_SRC_BLOCKS channel blocks and its
 * pixels lie at least FGRAD_PACK_SRC_STRIDE floats apart (or see pack_src below) */
#ifndef FGRAD_PACK_SRC_STRIDE
#define FGRAD_PACK_SRC_STRIDE 16
#endif
#ifndef FGRAD_PACK_SRC_BLOCKS
#define FGRAD_PACK_SRC_BLOCKS 2
#endif

/* A span of one tap row: the pixels [lo, hi) of an output row, read by the tap columns
 * [b0, b0 + nb) (nb = 1 unless fused); rows = nb * Cs tile rows, row j being tap column
 * b0 + j / Cs, channel j % Cs; its dw row at a*w_a + b0*w_b + j*w_c. */
typedef struct {
    i64 lo, hi, b0, rows;
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
    const i64 pw = pack_all ? (nblk - 1) * BW + last_bw : (pack_last ? last_bw : 0);
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
    const int pack_src = nblk >= FGRAD_PACK_SRC_BLOCKS &&
                         (axps >= FGRAD_PACK_SRC_STRIDE || (axps >= 2 && s_c != 1));
    const i64 xpk_elems = FGRAD_SRC_BYTES / 4 > RB * rows_per * ncol_cap
                              ? FGRAD_SRC_BYTES / 4 : RB * rows_per * ncol_cap;
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
            spans[nspan++] = (fspan){p0, p1, bl, (bh - bl) * Cs};
        }
    } else {
        for (i64 b = 0; b < tw; b++)
            if (lo[b] < hi[b])
                spans[nspan++] = (fspan){lo[b], hi[b], b, Cs};
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
                    i64 grp = FGRAD_SRC_BYTES / (4 * ns * cnt) / RB * RB;
                    if (grp < RB)
                        grp = RB;
                    for (i64 g0 = 0; g0 < S->rows; g0 += grp) {
                        const i64 g1 = g0 + grp < S->rows ? g0 + grp : S->rows;
                        if (xpk) /* the group's tiles, pixel-major, one after the other */
                            for (i64 v0 = g0; v0 < g1; v0 += RB) {
                                const int rb = g1 - v0 >= RB ? RB : (int)(g1 - v0);
                                i64 roff[RB];
                                for (int i = 0; i < rb; i++) {
                                    const i64 j = v0 + i, b = S->b0 + j / Cs;
                                    roff[i] = offw[b] * s_w + (j % Cs) * s_c;
                                }
                                float *out = xpk + (v0 - g0) * ns * cnt;
                                int contiguous = rb == RB;
                                for (int i = 1; i < rb; i++)
                                    contiguous &= roff[i] == roff[0] + i;
                                for (i64 sg = 0; sg < ns; sg++) {
                                    const float *xs = xb + xrow[sg];
                                    if (contiguous) /* a fixed-size copy per pixel */
                                        for (i64 p = 0; p < cnt; p++, out += RB)
                                            memcpy(out, xs + p * xps + roff[0], sizeof(float) * RB);
                                    else
                                        for (i64 p = 0; p < cnt; p++, out += rb)
                                            for (int i = 0; i < rb; i++)
                                                out[i] = xs[p * xps + roff[i]];
                                }
                            }
                        for (i64 ob = 0; ob < nblk; ob++) {
                            const i64 o = o0 + ob * BW;
                            const int last = ob + 1 == nblk;
                            const i64 real = last ? last_real : BW, bwid = last ? last_bw : BW;
                            const int nv = (int)(bwid / VL);
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
                            for (i64 v0 = g0; v0 < g1; v0 += RB) {
                                const int rb = g1 - v0 >= RB ? RB : (int)(g1 - v0);
                                i64 roff[RB];
                                for (int i = 0; i < rb; i++) {
                                    const i64 j = v0 + i, b = S->b0 + j / Cs;
                                    roff[i] = offw[b] * s_w + (j % Cs) * s_c;
                                }
                                float *wt = wb + v0 * w_c + o;
                                const fgrad_fn fn = FGRAD_TABLE[nv - 1][rb - 1];
                                const float *xt = xpk ? xpk + (v0 - g0) * ns * cnt : NULL;
                                if (real == bwid) {
                                    if (xt)
                                        FGRADP_TABLE[nv - 1][rb - 1](xt, db, dps, drow, ns, cnt,
                                                                     wt, w_c);
                                    else
                                        fn(xb, roff, xps, db, dps, xrow, drow, ns, cnt, wt,
                                           w_c);
                                    continue;
                                }
                                /* a partial block: the real channels through a tile buffer */
                                float tile[RB * BW];
                                for (int i = 0; i < rb; i++) {
                                    for (i64 c = 0; c < real; c++)
                                        tile[i * BW + c] = wt[i * w_c + c];
                                    for (i64 c = real; c < bwid; c++)
                                        tile[i * BW + c] = 0.0f;
                                }
                                if (xt)
                                    FGRADP_TABLE[nv - 1][rb - 1](xt, db, dps, drow, ns, cnt,
                                                                 tile, BW);
                                else
                                    fn(xb, roff, xps, db, dps, xrow, drow, ns, cnt, tile, BW);
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
    return 0;
}
