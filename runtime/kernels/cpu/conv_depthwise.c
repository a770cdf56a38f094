/* The depthwise input gradient (groups = channels) of the compiled core. Built with
 * conv_gather.c by native.py, called through NativeConv.depthwise_plan.
 *
 * dx[n, h, x, g] = sum over taps (a, b) and j < M with h + pt - a*dlh = q*sh and
 * x + pl - b*dlw = r*sw, 0 <= q < OH, 0 <= r < OW, of dy[n, q, r, g*M + j] * w[a, b, g*M + j].
 * dy, dx and w are addressed by element strides (any layout). Only terms of that sum reach dx:
 * a tap or position outside dy is skipped, or the product of its vector lane is discarded
 * (blended away, never added), or (the NCHW paths) reads a zero margin, which a finite weight
 * turns into +0.0 (a block of channels with a non-finite weight runs the generic path), so
 * inf/NaN propagate exactly as in a direct loop.
 * The taps of a row or column come from residue tables (no division per pixel).
 *
 * Five ways through it, chosen by the layout:
 *   channels contiguous (NHWC): with M == 1, a kernel at most 4 wide, column stride <= 2 and
 *     pixels under 256 floats, a slide along each dx row (dw_slide: the dy vectors loaded once
 *     per row tap, weights and pending dx columns in registers); otherwise multiply-adds over
 *     channel vectors; with few channels per
 *     dx row and column stride phase, the pixels share one tap list and run in pairs, else
 *     pixel by pixel in column order;
 *   columns contiguous in dx (NCHW, AVX2), M == 1, column stride 2, kernels at most 4 wide with
 *     at most 2 row taps per row: per channel plane and dx row, one vector over 8 column pairs
 *     per column phase (all lanes share the taps, weights broadcast), the two interleaved into
 *     16 dx columns (dw_planes);
 *   columns contiguous in dx (NCHW, AVX2), M == 1, other geometries: blocks of 8 channels,
 *     dy rows transposed into channel-interleaved zero-margin rows, so that per dx row and
 *     column stride phase 8 pixels (contiguous vectors, one tap list) accumulate in
 *     registers, into a tile transposed back to the 8 dx rows;
 *   columns contiguous (NCHW, dlw = 1, AVX2), M > 1: per dx row, 8 dx columns per vector
 *     whatever stride phase each column has: every lane's dy column comes from one load and a
 *     lane permutation (the pattern repeats every P vectors), its weight from a per-channel
 *     table in the same lane order; the dy rows read are copied into zero-margin rows, so
 *     row ends need no masks; partial taps are blended lanes; 4 channels at a time (same
 *     taps), so that their multiply-add chains overlap;
 *   anything else: per row, the columns of each stride phase accumulated in a phase-major row
 *     buffer, then written out. */
#include "conv_common.h"
#include <math.h>
#include <string.h>

#if defined(__AVX2__) && defined(__FMA__)
#define DW_AVX2 1
#endif

/* The order of the int64 parameter block (native.py builds it; DW_VERSION changes with it and
 * with the entry points: 3 added opgraph_depthwise_tasks_f32). */
enum {
    DW_N, DW_YN, DW_YH, DW_YW, DW_YC, DW_OH, DW_OW,
    DW_KH, DW_KW, DW_M, DW_WH, DW_WW, DW_WO,
    DW_XN, DW_XH, DW_XW, DW_XC, DW_H, DW_W, DW_C,
    DW_SH, DW_SW, DW_DH, DW_DW, DW_PT, DW_PL, DW_NPARAMS
};
#define DW_VERSION 3

int opgraph_depthwise_version(void) { return DW_VERSION; }

static inline i64 dw_fdiv(i64 a, i64 b) /* floor(a / b), b > 0 */
{
    i64 q = a / b;
    return q - ((a % b) < 0);
}

typedef struct { i64 k, off; } dw_tap;

/* Taps k < K (stride s, dilation dl) sorted by residue rho = (k*dl) mod s: the taps reaching a
 * position u with u mod s == rho are list[start[rho] .. start[rho+1]), each at source index
 * floor(u / s) + off. start has s + 2 entries. */
static int dw_taps(i64 K, i64 s, i64 dl, dw_tap **list, i64 **start)
{
    dw_tap *l = (dw_tap *)malloc(sizeof(dw_tap) * (size_t)(K > 0 ? K : 1));
    i64 *st = (i64 *)calloc((size_t)(s + 2), sizeof(i64));
    if (!l || !st) { free(l); free(st); return -2; }
    for (i64 k = 0; k < K; k++) st[(k * dl) % s + 2]++;
    for (i64 r = 2; r <= s + 1; r++) st[r] += st[r - 1];
    for (i64 k = 0; k < K; k++) {
        i64 rho = (k * dl) % s;
        l[st[rho + 1]++] = (dw_tap){k, (rho - k * dl) / s};
    }
    *list = l;
    *start = st;
    return 0;
}

#ifdef DW_AVX2
static inline __m256i dw_lanes_below(i64 c) /* lanes i < c set */
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)c), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* dw_dot's 32-channel blocks: TT taps at ys[t] (dy) and ws[t] (weights). */
#define DW_DOT32(TT, YS, WS)                                                                   \
    do {                                                                                       \
        for (; c + 32 <= len; c += 32) {                                                       \
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                        \
            for (i64 t = 0; t < (TT); t++) {                                                   \
                const float *y = (YS)[t] + c, *w = (WS)[t] + c;                                \
                a0 = _mm256_fmadd_ps(_mm256_loadu_ps(y), _mm256_loadu_ps(w), a0);              \
                a1 = _mm256_fmadd_ps(_mm256_loadu_ps(y + 8), _mm256_loadu_ps(w + 8), a1);      \
                a2 = _mm256_fmadd_ps(_mm256_loadu_ps(y + 16), _mm256_loadu_ps(w + 16), a2);    \
                a3 = _mm256_fmadd_ps(_mm256_loadu_ps(y + 24), _mm256_loadu_ps(w + 24), a3);    \
            }                                                                                  \
            _mm256_storeu_ps(o + c, a0);                                                       \
            _mm256_storeu_ps(o + c + 8, a1);                                                   \
            _mm256_storeu_ps(o + c + 16, a2);                                                  \
            _mm256_storeu_ps(o + c + 24, a3);                                                  \
        }                                                                                      \
    } while (0)
/* The same with a constant count, the pointers copied to locals (kept in registers; A/B on
 * 256-512 channels, 2 threads: 1.05-1.15x the loop over yp and wt). */
#define DW_DOT32_K(TT)                                                                         \
    do {                                                                                       \
        const float *y_[TT], *w_[TT];                                                          \
        for (int t = 0; t < (TT); t++) { y_[t] = yp[t]; w_[t] = wt[t]; }                       \
        DW_DOT32(TT, y_, w_);                                                                  \
    } while (0)
#endif

/* o[c] = sum over t < T of yp[t][c] * wt[t][c], c < len (zero when T == 0). */
static void dw_dot(const float *const *yp, const float *const *wt, i64 T, float *o, i64 len)
{
    i64 c = 0;
#ifdef DW_AVX2
    switch (T) {
    case 1: DW_DOT32_K(1); break;
    case 2: DW_DOT32_K(2); break;
    case 3: DW_DOT32_K(3); break;
    case 4: DW_DOT32_K(4); break;
    default: DW_DOT32(T, yp, wt); break;
    }
    if (c + 16 <= len) {
        __m256 a0 = _mm256_setzero_ps(), a1 = a0;
        for (i64 t = 0; t < T; t++) {
            const float *y = yp[t] + c, *w = wt[t] + c;
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(y), _mm256_loadu_ps(w), a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(y + 8), _mm256_loadu_ps(w + 8), a1);
        }
        _mm256_storeu_ps(o + c, a0);
        _mm256_storeu_ps(o + c + 8, a1);
        c += 16;
    }
    if (c + 8 <= len) {
        __m256 a0 = _mm256_setzero_ps();
        for (i64 t = 0; t < T; t++)
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(yp[t] + c), _mm256_loadu_ps(wt[t] + c), a0);
        _mm256_storeu_ps(o + c, a0);
        c += 8;
    }
    if (c < len) { /* masked lanes are neither read nor written */
        const __m256i mk = dw_lanes_below(len - c);
        __m256 a0 = _mm256_setzero_ps();
        for (i64 t = 0; t < T; t++)
            a0 = _mm256_fmadd_ps(_mm256_maskload_ps(yp[t] + c, mk),
                                 _mm256_maskload_ps(wt[t] + c, mk), a0);
        store_first8(o + c, a0, len - c);
    }
#else
    for (; c < len; c++) o[c] = 0.0f;
    for (i64 t = 0; t < T; t++) {
        const float *y = yp[t], *w = wt[t];
        for (c = 0; c < len; c++) o[c] += y[c] * w[c];
    }
#endif
}

#ifdef DW_AVX2
/* NP pixels x (NVEC full channel vectors from channel c, then TAIL: one more vector of the
 * lanes below mk only) of the pixels k .. k+NP-1 of one stride phase (pixel k: dy at
 * yb[t] + k*ys, dx at o + k*os). A tap's weights are loaded once for the NP pixels; masked lanes
 * are neither read nor written. */
#define DW_PHASE_PIX(NP, NVEC, TAIL)                                                           \
    do {                                                                                       \
        enum { NA = NVEC + TAIL };                                                             \
        __m256 acc[NP][NA];                                                                    \
        for (int q = 0; q < NP; q++)                                                           \
            for (int v = 0; v < NA; v++) acc[q][v] = _mm256_setzero_ps();                      \
        for (i64 t = 0; t < T; t++) {                                                          \
            const float *y = yb[t] + k * ys + c, *wp = wt[t] + c;                              \
            for (int v = 0; v < NA; v++) {                                                     \
                const int tl = TAIL && v == NVEC;                                              \
                const __m256 wv = tl ? _mm256_maskload_ps(wp + 8 * v, mk)                      \
                                     : _mm256_loadu_ps(wp + 8 * v);                            \
                for (int q = 0; q < NP; q++)                                                   \
                    acc[q][v] = _mm256_fmadd_ps(                                               \
                        tl ? _mm256_maskload_ps(y + q * ys + 8 * v, mk)                        \
                           : _mm256_loadu_ps(y + q * ys + 8 * v), wv, acc[q][v]);              \
            }                                                                                  \
        }                                                                                      \
        for (int q = 0; q < NP; q++)                                                           \
            for (int v = 0; v < NA; v++) {                                                     \
                float *oq = o + (k + q) * os + c + 8 * v;                                      \
                if (TAIL && v == NVEC) store_first8(oq, acc[q][v], rem);                     \
                else _mm256_storeu_ps(oq, acc[q][v]);                                          \
            }                                                                                  \
    } while (0)
/* NP pixels from k, all channels: blocks of 16, the last block (up to 2 full vectors and
 * the partial one) in one pass. */
#define DW_PHASE_ALL(NP)                                                                       \
    do {                                                                                       \
        i64 c = 0, f = full;                                                                   \
        for (; f >= 3 || (f == 2 && !rem); f -= 2, c += 16) DW_PHASE_PIX(NP, 2, 0);            \
        if (f == 2) DW_PHASE_PIX(NP, 2, 1);                                                    \
        else if (f == 1 && rem) DW_PHASE_PIX(NP, 1, 1);                                        \
        else if (f == 1) DW_PHASE_PIX(NP, 1, 0);                                               \
        else if (rem) DW_PHASE_PIX(NP, 0, 1);                                                  \
    } while (0)
#endif

/* The pixels k0 .. k1-1 of one stride phase of a dx row, all with the same T taps (dy of
 * pixel k at yb[t] + k*ys, weights wt[t]), channels [0, len) (M == 1): o[k*os + c]. Pixels in
 * pairs (fours when there are at most 8 channels), each written whole before the next. */
static void dw_phase(const float *const *yb, const float *const *wt, i64 T, i64 ys, float *o,
                     i64 os, i64 k0, i64 k1, i64 len, const float **yp)
{
#ifdef DW_AVX2
    const i64 full = len / 8;
    const int rem = (int)(len % 8);
    const __m256i mk = dw_lanes_below(rem);
    i64 k = k0;
    if (full + (rem > 0) <= 1)
        for (; k + 4 <= k1; k += 4) DW_PHASE_ALL(4);
    for (; k + 2 <= k1; k += 2) DW_PHASE_ALL(2);
    if (k < k1) DW_PHASE_ALL(1);
    (void)yp;
#else
    for (i64 k = k0; k < k1; k++) {
        for (i64 t = 0; t < T; t++) yp[t] = yb[t] + k * ys;
        dw_dot(yp, wt, T, o + k * os, len);
    }
#endif
}

/* One dx pixel x (x + pl = vd*sw + ph) from its own tap list. */
#define DW_NHWC_PIXEL(X, VD, PH)                                                               \
    do {                                                                                       \
        i64 T = 0;                                                                             \
        if (nr)                                                                                \
            for (i64 i = sb[PH]; i < sb[(PH) + 1]; i++) {                                      \
                const i64 r = (VD) + tb[i].off;                                                \
                if (r < 0 || r >= OW) continue;                                                \
                for (i64 j = 0; j < nr; j++) {                                                 \
                    yp[T] = rowp[j] + r * yw;                                                  \
                    wt[T++] = roww[j] + tb[i].k * ww;                                          \
                }                                                                              \
            }                                                                                  \
        float *o = orow + (X) * xw;                                                            \
        if (M == 1) {                                                                          \
            dw_dot(yp, wt, T, o, L);                                                           \
        } else { /* dy channel sums first, then the M of each dx channel */                    \
            dw_dot(yp, wt, T, tmp, L);                                                         \
            for (i64 g = 0; g < g1 - g0; g++) {                                                \
                float s = 0.0f;                                                                \
                for (i64 j = 0; j < M; j++) s += tmp[g * M + j];                               \
                o[g] = s;                                                                      \
            }                                                                                  \
        }                                                                                      \
    } while (0)

/* Channels contiguous (yc == xc == wo == 1). With few channels (M == 1, at most 32), per dx
 * row and column stride phase: the pixels whose taps all lie inside dy share one tap list and
 * run in pairs (dw_phase), the others, near the row ends, list their own taps. Otherwise pixel
 * by pixel in column order, each listing its taps (the writes stay sequential, which matters
 * once dx is not in cache). */
static int dw_nhwc(const float *dy, const float *w, float *dx, const i64 *p,
                   i64 n0, i64 n1, i64 h0, i64 h1, i64 g0, i64 g1)
{
    const i64 yn = p[DW_YN], yh = p[DW_YH], yw = p[DW_YW], OH = p[DW_OH], OW = p[DW_OW];
    const i64 KH = p[DW_KH], KW = p[DW_KW], M = p[DW_M], wh = p[DW_WH], ww = p[DW_WW];
    const i64 xn = p[DW_XN], xh = p[DW_XH], xw = p[DW_XW], W = p[DW_W];
    const i64 sh = p[DW_SH], sw = p[DW_SW], pt = p[DW_PT], pl = p[DW_PL];
    const i64 L = (g1 - g0) * M; /* dy channels of the range */
    const int byphase = M == 1 && L <= 32;
    dw_tap *ta = NULL, *tb = NULL;
    i64 *sa = NULL, *sb = NULL;
    const float **rowp = (const float **)malloc(sizeof(float *) * (size_t)(2 * KH + 3 * KH * KW));
    float *tmp = M > 1 ? (float *)malloc(sizeof(float) * (size_t)L) : NULL;
    i64 *cp = (i64 *)malloc(sizeof(i64) * (size_t)(5 * sw)); /* per column phase, below */
    int rc = -2;
    if (!rowp || !cp || (M > 1 && !tmp)) goto done;
    if (dw_taps(KH, sh, p[DW_DH], &ta, &sa) || dw_taps(KW, sw, p[DW_DW], &tb, &sb)) goto done;
    const float **roww = rowp + KH, **yp = roww + KH, **wt = yp + KH * KW, **yb = wt + KH * KW;
    for (i64 ph = 0; ph < sw; ph++) {
        /* pixels x = x0 + k*sw (x + pl = (vd0 + k)*sw + ph), k < np; [ka, kb): the pixels
         * whose column taps are all inside dy (empty: none is) */
        const i64 x0 = ((ph - pl) % sw + sw) % sw, vd0 = (x0 + pl - ph) / sw;
        const i64 np = x0 < W ? (W - x0 + sw - 1) / sw : 0;
        i64 ka = 0, kb = np;
        for (i64 i = sb[ph]; i < sb[ph + 1]; i++) {
            const i64 r0 = vd0 + tb[i].off; /* dy column of pixel 0 */
            if (-r0 > ka) ka = -r0;
            if (OW - r0 < kb) kb = OW - r0;
        }
        if (sb[ph] == sb[ph + 1] || kb < ka) ka = kb = np;
        i64 *c5 = cp + 5 * ph;
        c5[0] = x0; c5[1] = vd0; c5[2] = np; c5[3] = ka; c5[4] = kb;
    }
    for (i64 n = n0; n < n1; n++)
        for (i64 h = h0; h < h1; h++) {
            const i64 hd = dw_fdiv(h + pt, sh), rh = h + pt - hd * sh;
            i64 nr = 0;
            for (i64 i = sa[rh]; i < sa[rh + 1]; i++) {
                const i64 q = hd + ta[i].off;
                if (q < 0 || q >= OH) continue;
                rowp[nr] = dy + n * yn + q * yh + g0 * M;
                roww[nr++] = w + ta[i].k * wh + g0 * M;
            }
            float *orow = dx + n * xn + h * xh + g0;
            if (byphase) {
                for (i64 ph = 0; ph < sw; ph++) {
                    const i64 *c5 = cp + 5 * ph, x0 = c5[0], vd0 = c5[1], np = c5[2];
                    const i64 ka = nr ? c5[3] : np, kb = nr ? c5[4] : np;
                    for (i64 k = 0; k < np; k++) {
                        if (k == ka && ka < kb) { /* the shared tap list */
                            i64 T = 0;
                            for (i64 i = sb[ph]; i < sb[ph + 1]; i++)
                                for (i64 j = 0; j < nr; j++) {
                                    yb[T] = rowp[j] + (vd0 + tb[i].off) * yw;
                                    wt[T++] = roww[j] + tb[i].k * ww;
                                }
                            dw_phase(yb, wt, T, yw, orow + x0 * xw, sw * xw, ka, kb, L, yp);
                            k = kb - 1;
                            continue;
                        }
                        DW_NHWC_PIXEL(x0 + k * sw, vd0 + k, ph);
                    }
                }
            } else {
                i64 vd = dw_fdiv(pl, sw), ph = pl - vd * sw; /* x + pl = vd*sw + ph */
                for (i64 x = 0; x < W; x++) {
                    DW_NHWC_PIXEL(x, vd, ph);
                    if (++ph == sw) { ph = 0; vd++; }
                }
            }
        }
    rc = 0;
done:
    free(rowp); free(tmp); free(cp); free(ta); free(sa); free(tb); free(sb);
    return rc;
}

#ifdef DW_AVX2
/* Channels contiguous, M == 1, column dilation 1, KW <= 4, sw <= 2 (most upsampling layers):
 * per dx row and block of 16 channels (8 for the last odd block), a slide along the dy columns
 * r. Each dy vector is loaded
 * once per row tap and multiplied into the KW dx columns it reaches (x = sw*r - pl + b), whose
 * accumulators stay in registers until their last tap; the weights of the row's taps stay in
 * registers for the whole slide. Against a dot product per dx pixel this loads each dy vector
 * once instead of once per tap it serves, and each weight once per row instead of per pixel.
 * Only terms of the sum are added (a dy column outside dy adds nothing), so inf/NaN propagate
 * as in a direct loop. */
/* dx columns ahead of the stores that a slide prefetches for writing (A/B on 128 channels,
 * batch 8: 1.06x -> 1.35x the pixel-order kernel; 4 and 16 ahead were slower) */
#define DW_SLIDE_AHEAD 8
static inline __attribute__((always_inline)) void
dw_slide_row(const int KWC, const int SWC, const int NR, const int V, const float *const *rowp,
             const float *const *roww, i64 ww, i64 yw, float *orow, i64 xw, i64 OW, i64 W,
             i64 pl)
{
    enum { NAMAX = 4 };
    const int NA = KWC > SWC ? KWC : SWC; /* accumulators: dx columns u0(r) .. u0(r) + NA - 1 */
    __m256 wr[3][4][2], acc[NAMAX][2];
    for (int i = 0; i < NR; i++)
        for (int b = 0; b < KWC; b++)
            for (int v = 0; v < V; v++) wr[i][b][v] = _mm256_loadu_ps(roww[i] + b * ww + 8 * v);
    for (int b = 0; b < NA; b++)
        for (int v = 0; v < V; v++) acc[b][v] = _mm256_setzero_ps();
    /* dx column x completes at step floor((x + pl) / SWC); steps from the first whose window
     * reaches x = 0 */
    const i64 rA = dw_fdiv(pl, SWC), rB = dw_fdiv(W - 1 + pl, SWC);
    const i64 rS = dw_fdiv(pl - (KWC - 1), SWC);
    for (i64 r = rS; r <= rB; r++) {
        if (r >= 0 && r < OW)
            for (int i = 0; i < NR; i++)
                for (int v = 0; v < V; v++) {
                    const __m256 y = _mm256_loadu_ps(rowp[i] + r * yw + 8 * v);
                    for (int b = 0; b < KWC; b++)
                        acc[b][v] = _mm256_fmadd_ps(wr[i][b][v], y, acc[b][v]);
                }
        if (r >= rA) {
            const i64 u0 = SWC * r - pl;
            if (u0 + SWC + DW_SLIDE_AHEAD <= W) /* dx lines owned before they are stored */
                for (int s = 0; s < SWC; s++)
                    for (int v = 0; v < V; v++)
                        __builtin_prefetch(orow + (u0 + s + DW_SLIDE_AHEAD) * xw + 8 * v, 1, 3);
            for (int s = 0; s < SWC; s++)
                if (u0 + s >= 0 && u0 + s < W)
                    for (int v = 0; v < V; v++)
                        _mm256_storeu_ps(orow + (u0 + s) * xw + 8 * v, acc[s][v]);
        }
        for (int b = 0; b < NA; b++)
            for (int v = 0; v < V; v++)
                acc[b][v] = b + SWC < NA ? acc[b + SWC][v] : _mm256_setzero_ps();
    }
}

/* Whether dw_slide takes this geometry (channels contiguous, M == 1 checked by the caller). */
static int dw_slide_applies(const i64 *p)
{
    const i64 KH = p[DW_KH], KW = p[DW_KW], sh = p[DW_SH], dh = p[DW_DH];
    /* pixels of 256 floats or more: dy and dx vectors 1 KiB apart, whose addresses (both
     * arrays page-aligned) repeat every 4 pixels modulo 4 KiB, so that a slide's loads wait on
     * its recent stores (4K aliasing: 0.7-0.8x of dw_nhwc's pixel order at 256 and 512
     * channels, 1.1-2.1x faster below) */
    if (p[DW_DW] != 1 || KW < 1 || KW > 4 || p[DW_SW] > 2 || KH < 1 || p[DW_XW] >= 256
        || p[DW_YW] >= 256)
        return 0;
    i64 nr = 0; /* the most row taps of a dx row: taps k with the same (k*dh) mod sh */
    for (i64 rho = 0; rho < sh && rho < KH * dh + 1; rho++) {
        i64 c = 0;
        for (i64 k = 0; k < KH; k++) c += (k * dh) % sh == rho;
        if (c > nr) nr = c;
    }
    /* weights, accumulators and a dy vector of one 8-channel block fit 16 registers (with two
     * blocks AVX2 keeps some weights in L1; AVX-512's 32 registers hold them all) */
    return nr <= 3 && nr * KW + KW + 1 <= 16;
}

#define DW_SLIDE_CASE(K, S, R)                                                                 \
    case (K) * 100 + (S) * 10 + (R):                                                           \
        if (V == 2) dw_slide_row(K, S, R, 2, rowp, roww, ww, yw, orow, xw, OW, W, pl);         \
        else dw_slide_row(K, S, R, 1, rowp, roww, ww, yw, orow, xw, OW, W, pl);                \
        return 0;

/* dw_slide_row for these run-time (kernel width, column stride, row taps), V vectors (1, 2);
 * -1 for an instance it has none of (dw_slide_applies rules those out). */
static int dw_slide_any(i64 KW, i64 sw, i64 nr, int V, const float *const *rowp,
                        const float *const *roww, i64 ww, i64 yw, float *orow, i64 xw, i64 OW,
                        i64 W, i64 pl)
{
    switch (KW * 100 + sw * 10 + nr) {
        DW_SLIDE_CASE(1, 1, 1) DW_SLIDE_CASE(1, 1, 2) DW_SLIDE_CASE(1, 1, 3)
        DW_SLIDE_CASE(1, 2, 1) DW_SLIDE_CASE(1, 2, 2) DW_SLIDE_CASE(1, 2, 3)
        DW_SLIDE_CASE(2, 1, 1) DW_SLIDE_CASE(2, 1, 2) DW_SLIDE_CASE(2, 1, 3)
        DW_SLIDE_CASE(2, 2, 1) DW_SLIDE_CASE(2, 2, 2) DW_SLIDE_CASE(2, 2, 3)
        DW_SLIDE_CASE(3, 1, 1) DW_SLIDE_CASE(3, 1, 2) DW_SLIDE_CASE(3, 1, 3)
        DW_SLIDE_CASE(3, 2, 1) DW_SLIDE_CASE(3, 2, 2) DW_SLIDE_CASE(3, 2, 3)
        DW_SLIDE_CASE(4, 1, 1) DW_SLIDE_CASE(4, 1, 2) DW_SLIDE_CASE(4, 1, 3)
        DW_SLIDE_CASE(4, 2, 1) DW_SLIDE_CASE(4, 2, 2) DW_SLIDE_CASE(4, 2, 3)
    default:
        return -1;
    }
}
#undef DW_SLIDE_CASE
#undef DW_SLIDE_AHEAD

/* Channels [g0, g0 + 8*nb) of rows [h0, h1) of images [n0, n1), nb = blocks of 8. */
static int dw_slide(const float *dy, const float *w, float *dx, const i64 *p,
                    i64 n0, i64 n1, i64 h0, i64 h1, i64 g0, i64 nb)
{
    const i64 yn = p[DW_YN], yh = p[DW_YH], yw = p[DW_YW], OH = p[DW_OH], OW = p[DW_OW];
    const i64 KH = p[DW_KH], KW = p[DW_KW], wh = p[DW_WH], ww = p[DW_WW];
    const i64 xn = p[DW_XN], xh = p[DW_XH], xw = p[DW_XW], W = p[DW_W];
    const i64 sh = p[DW_SH], sw = p[DW_SW], pt = p[DW_PT], pl = p[DW_PL];
    dw_tap *ta = NULL;
    i64 *sa = NULL;
    if (dw_taps(KH, sh, p[DW_DH], &ta, &sa)) return -2;
    const float *rowp[3], *roww[3];
    for (i64 n = n0; n < n1; n++)
        for (i64 h = h0; h < h1; h++) {
            const i64 hd = dw_fdiv(h + pt, sh), rh = h + pt - hd * sh;
            i64 nr = 0;
            i64 qs[3], as[3];
            for (i64 i = sa[rh]; i < sa[rh + 1] && nr < 3; i++) {
                const i64 q = hd + ta[i].off;
                if (q < 0 || q >= OH) continue;
                qs[nr] = q;
                as[nr++] = ta[i].k;
            }
            float *orow0 = dx + n * xn + h * xh + g0;
            for (i64 blk = 0; blk < nb; blk += 2) {
                const i64 c = g0 + 8 * blk, vb = blk + 1 < nb ? 2 : 1;
                float *orow = orow0 + 8 * blk;
                for (i64 i = 0; i < nr; i++) {
                    rowp[i] = dy + n * yn + qs[i] * yh + c;
                    roww[i] = w + as[i] * wh + c;
                }
                if (nr == 0) {
                    for (i64 x = 0; x < W; x++)
                        for (i64 v = 0; v < vb; v++)
                            _mm256_storeu_ps(orow + x * xw + 8 * v, _mm256_setzero_ps());
                    continue;
                }
                if (dw_slide_any(KW, sw, nr, (int)vb, rowp, roww, ww, yw, orow, xw, OW, W, pl)) {
                    free(ta); free(sa);
                    return -1;
                }
            }
        }
    free(ta); free(sa);
    return 0;
}
#endif

#ifdef DW_AVX2
static int dw_generic(const float *dy, const float *w, float *dx, const i64 *p,
                      i64 n0, i64 n1, i64 h0, i64 h1, i64 g0, i64 g1);

/* The row taps of dx rows h0 .. h0+nh-1 (ta, sa from dw_taps): rows[rs[h] .. rs[h + 1]) are
 * (q, a), the dy rows inside [0, OH) that dx row h0 + h reads and their taps. */
static void dw_row_taps(i64 h0, i64 nh, i64 pt, i64 sh, i64 OH, const dw_tap *ta,
                        const i64 *sa, i64 *rs, i64 *rows)
{
    i64 hd = dw_fdiv(h0 + pt, sh), rh = h0 + pt - hd * sh, m = 0;
    for (i64 h = 0; h < nh; h++) {
        rs[h] = m;
        for (i64 i = sa[rh]; i < sa[rh + 1]; i++) {
            const i64 q = hd + ta[i].off;
            if (q < 0 || q >= OH) continue;
            rows[2 * m] = q;
            rows[2 * m++ + 1] = ta[i].k;
        }
        if (++rh == sh) { rh = 0; hd++; }
    }
    rs[nh] = m;
}

/* Blocks of HB dx rows (returned) whose copied dy rows, rowf floats each, take about
 * `floats`; qb[2*i], qb[2*i + 1]: the first and last dy row block i reads (first > last: none),
 * *QN: the most rows one block reads. qb holds 2 * ceil(nh / HB) entries. */
static i64 dw_row_blocks(i64 nh, i64 KH, i64 dh, i64 sh, i64 OH, i64 floats, i64 rowf,
                         const i64 *rs, const i64 *rows, i64 **qb, i64 *QN)
{
    const i64 span = (KH > 0 ? ((KH - 1) * dh) / sh : 0) + 2;
    i64 QB = floats / rowf;
    if (QB < span + 1) QB = span + 1;
    const i64 HB = (QB - span) * sh, nhb = (nh + HB - 1) / HB;
    *qb = (i64 *)malloc(sizeof(i64) * (size_t)(2 * nhb + 1));
    if (!*qb) return 0;
    *QN = 1;
    for (i64 b = 0; b < nhb; b++) {
        const i64 ha = b * HB, hz = ha + HB < nh ? ha + HB : nh;
        i64 qlo = OH, qhi = -1;
        for (i64 r = rs[ha]; r < rs[hz]; r++) {
            if (rows[2 * r] < qlo) qlo = rows[2 * r];
            if (rows[2 * r] > qhi) qhi = rows[2 * r];
        }
        (*qb)[2 * b] = qlo;
        (*qb)[2 * b + 1] = qhi;
        if (qhi - qlo + 1 > *QN) *QN = qhi - qlo + 1;
    }
    return HB;
}

/* Columns contiguous in dx (xw == 1), dlw == 1, M > 1 (M == 1 runs dw_planes or dw_nchw8). Column
 * tap b of dx column x (u = x + pl) is b = (u mod sw) + t*sw for t < T = ceil(KW / sw), at dy
 * column floor(u / sw) - t. Vector k
 * holds columns 8k .. 8k+7; its lane pattern depends on pk = k mod P only (P = sw / gcd(sw, 8)):
 * lane i reads dy column F[k] - t + idx[pk][i] (one load of 8 from F[k] - t, then permuted)
 * with weight tab[a, j, t, pk][i]. The dy rows a block of dx rows reads are first copied into
 * rows with zero margins (pad), so that every vector runs the same code: a column outside dy
 * reads +0.0, whose product with a finite weight adds nothing (a block of channels with a
 * non-finite weight runs dw_generic instead, where such columns are skipped). Lanes whose last
 * column tap has b >= KW are blended out. Up to 4 channels run together (same row taps and
 * lane patterns), so that their multiply-add chains overlap. */

/* Vectors k .. k+U-1 of CB channels' dx rows, accumulated in registers over the row taps i
 * (padded dy row rowp[i] + c*cs, weight table rowt[i] + c*tabn) and the column taps t. PONE:
 * P == 1 (one lane pattern); PERM: lanes need permuting (sw > 1); PART: the last column tap
 * is partial (blended); TAIL: the last vector holds W - 8k < 8 columns (partial store). */
#define DW_NCHW_VECS(CB, U, PONE, PERM, PART, TAIL)                                            \
    do {                                                                                       \
        enum { UP = PONE ? 1 : U };                                                            \
        __m256 acc[CB][U];                                                                     \
        __m256i ix[UP], lv[UP];                                                                \
        i64 fo[U], wo8[UP];                                                                    \
        for (int c = 0; c < CB; c++)                                                           \
            for (int u = 0; u < U; u++) acc[c][u] = _mm256_setzero_ps();                       \
        for (int u = 0; u < U; u++) fo[u] = Fk[k + u];                                         \
        for (int u = 0; u < UP; u++) {                                                         \
            const i64 pu = PONE ? 0 : pkk[k + u];                                              \
            ix[u] = idx[pu];                                                                   \
            lv[u] = vml[pu];                                                                   \
            wo8[u] = pu * 8;                                                                   \
        }                                                                                      \
        for (i64 i = 0; i < nr; i++) {                                                         \
            const float *yr = rowp[i], *wr = rowt[i];                                          \
            for (i64 t = 0; t < T; t++, wr += P * 8)                                           \
                for (int c = 0; c < CB; c++)                                                   \
                    for (int u = 0; u < U; u++) {                                              \
                        const int v = PONE ? 0 : u;                                            \
                        __m256 y = _mm256_loadu_ps(yr + c * cs + fo[u] - t);                   \
                        if (PERM) y = _mm256_permutevar8x32_ps(y, ix[v]);                      \
                        const __m256 f = _mm256_fmadd_ps(                                      \
                            _mm256_load_ps(wr + c * tabn + wo8[v]), y, acc[c][u]);             \
                        acc[c][u] = (PART && t == T - 1)                                       \
                            ? _mm256_blendv_ps(acc[c][u], f, _mm256_castsi256_ps(lv[v])) : f;  \
                    }                                                                          \
        }                                                                                      \
        for (int c = 0; c < CB; c++)                                                           \
            for (int u = 0; u < U; u++) {                                                      \
                if (TAIL) store_first8(orow + c * xc + 8 * (k + u), acc[c][u], W - 8 * k);  \
                else _mm256_storeu_ps(orow + c * xc + 8 * (k + u), acc[c][u]);                 \
            }                                                                                  \
    } while (0)

/* The full vectors of CB channels' dx rows by fours (twos for 4 channels), then the partial
 * one. */
#define DW_NCHW_RUN(CB, PONE, PERM, PART)                                                      \
    do {                                                                                       \
        i64 k = 0;                                                                             \
        if (CB == 4) {                                                                         \
            for (; k + 2 <= nfull; k += 2) DW_NCHW_VECS(CB, 2, PONE, PERM, PART, 0);           \
        } else                                                                                 \
            for (; k + 4 <= nfull; k += 4) DW_NCHW_VECS(CB, 4, PONE, PERM, PART, 0);           \
        switch (nfull - k) {                                                                   \
        case 3: DW_NCHW_VECS(CB, 3, PONE, PERM, PART, 0); break;                               \
        case 2: DW_NCHW_VECS(CB, 2, PONE, PERM, PART, 0); break;                               \
        case 1: DW_NCHW_VECS(CB, 1, PONE, PERM, PART, 0); break;                               \
        default: break;                                                                        \
        }                                                                                      \
        k = nfull;                                                                             \
        if (k < nv) DW_NCHW_VECS(CB, 1, PONE, PERM, PART, 1);                                  \
    } while (0)
#define DW_NCHW_ROW(CB)                                                                        \
    do {                                                                                       \
        if (sw == 1) {                                                                         \
            if (part) { DW_NCHW_RUN(CB, 1, 0, 1); } else { DW_NCHW_RUN(CB, 1, 0, 0); }          \
        } else if (P == 1) {                                                                   \
            if (part) { DW_NCHW_RUN(CB, 1, 1, 1); } else { DW_NCHW_RUN(CB, 1, 1, 0); }          \
        } else {                                                                               \
            if (part) { DW_NCHW_RUN(CB, 0, 1, 1); } else { DW_NCHW_RUN(CB, 0, 1, 0); }          \
        }                                                                                      \
    } while (0)

/* Floats of padded dy rows a block of dx rows copies (per 4 channels): about L2-resident. */
#define DW_PAD_FLOATS (16 * 1024)

static int dw_nchw(const float *dy, const float *w, float *dx, const i64 *p,
                   i64 n0, i64 n1, i64 h0, i64 h1, i64 g0, i64 g1)
{
    const i64 yn = p[DW_YN], yh = p[DW_YH], yw = p[DW_YW], yc = p[DW_YC], OH = p[DW_OH];
    const i64 OW = p[DW_OW], KH = p[DW_KH], KW = p[DW_KW], M = p[DW_M], wh = p[DW_WH];
    const i64 ww = p[DW_WW], wo = p[DW_WO], xn = p[DW_XN], xh = p[DW_XH], xc = p[DW_XC];
    const i64 W = p[DW_W], sh = p[DW_SH], sw = p[DW_SW], pt = p[DW_PT], pl = p[DW_PL];
    const i64 T = (KW + sw - 1) / sw;
    i64 gc = sw, v8 = 8;
    while (v8) { i64 t = gc % v8; gc = v8; v8 = t; }
    const i64 P = sw / gc, LP = P * 8 / sw;
    const i64 nv = (W + 7) / 8, nfull = W / 8;        /* vectors 0 .. nv-1 cover [0, W) */
    const i64 R0 = dw_fdiv(pl, sw), c0 = pl - R0 * sw;
    const i64 tabn = KH * M * T * P * 8, nh = h1 - h0;
    dw_tap *ta = NULL;
    i64 *sa = NULL;
    float *pad = NULL;
    i64 *qb = NULL;
    i64 *rb = (i64 *)malloc(sizeof(i64) * (size_t)(P + 2 * nv + 1));
    /* idx[pk], vm[t*P + pk] (lanes whose tap t has b < KW) */
    __m256i *idx = (__m256i *)aligned_alloc(32, sizeof(__m256i) * (size_t)(T * P + P));
    float *tab = (float *)aligned_alloc(32, sizeof(float) * (size_t)(tabn > 0 ? 4 * tabn : 8));
    const float **rowp = (const float **)malloc(sizeof(float *) * (size_t)(2 * KH * M + 1));
    int *ph = (int *)malloc(sizeof(int) * (size_t)(8 * P)); /* ph[pk*8 + i]: lane phase */
    /* the row taps of dx rows h0 .. h1-1: rows[rs[h - h0] .. rs[h - h0 + 1]) = (q, a) */
    i64 *rs = (i64 *)malloc(sizeof(i64) * (size_t)(nh + 1 + 2 * nh * KH));
    int rc = -2;
    if (!rb || !idx || !tab || !rowp || !ph || !rs) goto done;
    if (dw_taps(KH, sh, p[DW_DH], &ta, &sa)) goto done;
    const float **rowt = rowp + KH * M;
    __m256i *vm = idx + P;
    i64 *Fk = rb + P, *pkk = Fk + nv, *rows = rs + nh + 1; /* per vector: dy column, pattern */
    int part = 0;
    for (i64 pk = 0; pk < P; pk++) {
        rb[pk] = (c0 + pk * 8) / sw;
        int li[8];
        for (int i = 0; i < 8; i++) {
            li[i] = (int)((c0 + pk * 8 + i) / sw - rb[pk]);
            ph[pk * 8 + i] = (int)((c0 + pk * 8 + i) % sw);
        }
        idx[pk] = _mm256_loadu_si256((const __m256i *)li);
        for (i64 t = 0; t < T; t++) {
            int m[8];
            for (int i = 0; i < 8; i++) {
                m[i] = ph[pk * 8 + i] + t * sw < KW ? -1 : 0;
                /* (only the last tap can be partial: ph + t*sw < sw*(T-1) <= KW - 1) */
                part |= m[i] == 0;
            }
            vm[t * P + pk] = _mm256_loadu_si256((const __m256i *)m);
        }
    }
    /* the dy columns the vectors read: F[k] - T + 1 .. F[k] + 7; margins so they all exist */
    i64 cmin = 0, cmax = OW - 1;
    for (i64 k = 0; k < nv; k++) {
        const i64 pk = k % P, F = R0 + (k / P) * LP + rb[pk];
        pkk[k] = pk;
        Fk[k] = F;
        if (F - T + 1 < cmin) cmin = F - T + 1;
        if (F + 7 > cmax) cmax = F + 7;
    }
    const i64 Lm = -cmin, RS = (cmax + 1 - cmin + 7) / 8 * 8; /* padded row: col c at Lm + c */
    dw_row_taps(h0, nh, pt, sh, OH, ta, sa, rs, rows);
    /* blocks of HB dx rows, each reading dy rows qb[2*i] .. qb[2*i + 1] (QN at most) */
    i64 QN;
    const i64 HB = dw_row_blocks(nh, KH, p[DW_DH], sh, OH, DW_PAD_FLOATS, 4 * M * RS, rs, rows,
                                 &qb, &QN);
    if (!HB) goto done;
    const i64 cs = M * QN * RS; /* one channel's padded rows to the next */
    pad = (float *)aligned_alloc(32, sizeof(float) * (size_t)(4 * cs));
    if (!pad) goto done;
    for (i64 i = 0; i < 4 * cs; i++) pad[i] = 0.0f; /* the margins stay zero */
    const __m256i *vml = vm + (T - 1) * P;
    for (i64 g = g0; g < g1; ) {
        const i64 cb = g + 3 < g1 ? 4 : (g + 1 < g1 ? 2 : 1);
        /* tab[c*tabn + (((a*M + j)*T + t)*P + pk)*8 + i] = w[a, ph + t*sw, (g+c)*M + j]
         * (0 where b >= KW) */
        int finite = 1;
        for (i64 c = 0; c < cb; c++)
            for (i64 a = 0; a < KH; a++)
                for (i64 j = 0; j < M; j++) {
                    const float *wr = w + a * wh + ((g + c) * M + j) * wo;
                    float *tr = tab + c * tabn + (a * M + j) * T * P * 8;
                    for (i64 b = 0; b < KW; b++) finite &= isfinite(wr[b * ww]) != 0;
                    for (i64 t = 0; t < T; t++)
                        for (i64 pk = 0; pk < P; pk++)
                            for (int i = 0; i < 8; i++) {
                                const i64 b = ph[pk * 8 + i] + t * sw;
                                tr[(t * P + pk) * 8 + i] = b < KW ? wr[b * ww] : 0.0f;
                            }
                }
        if (!finite) {
            const int r = dw_generic(dy, w, dx, p, n0, n1, h0, h1, g, g + cb);
            if (r) { rc = r; goto done; }
            g += cb;
            continue;
        }
        for (i64 n = n0; n < n1; n++) {
            const float *dyg = dy + n * yn + g * M * yc;
            for (i64 ha = 0; ha < nh; ha += HB) {
                const i64 hb = ha + HB < nh ? ha + HB : nh;
                const i64 qlo = qb[2 * (ha / HB)], qhi = qb[2 * (ha / HB) + 1];
                for (i64 c = 0; c < cb; c++)
                    for (i64 j = 0; j < M; j++)
                        for (i64 q = qlo; q <= qhi; q++) {
                            const float *src = dyg + (c * M + j) * yc + q * yh;
                            float *dst = pad + c * cs + (j * QN + q - qlo) * RS + Lm;
                            if (yw == 1) memcpy(dst, src, sizeof(float) * (size_t)OW);
                            else for (i64 r = 0; r < OW; r++) dst[r] = src[r * yw];
                        }
                for (i64 h = h0 + ha; h < h0 + hb; h++) {
                    i64 nr = 0;
                    for (i64 r = rs[h - h0]; r < rs[h - h0 + 1]; r++)
                        for (i64 j = 0; j < M; j++) {
                            rowp[nr] = pad + (j * QN + rows[2 * r] - qlo) * RS + Lm;
                            rowt[nr++] = tab + (rows[2 * r + 1] * M + j) * T * P * 8;
                        }
                    float *orow = dx + n * xn + g * xc + h * xh;
                    if (nr == 0) {
                        for (i64 c = 0; c < cb; c++)
                            for (i64 x = 0; x < W; x++) orow[c * xc + x] = 0.0f;
                    } else if (cb == 4) {
                        DW_NCHW_ROW(4);
                    } else if (cb == 2) {
                        DW_NCHW_ROW(2);
                    } else {
                        DW_NCHW_ROW(1);
                    }
                }
            }
        }
        g += cb;
    }
    rc = 0;
done:
    free(rb); free(idx); free(tab); free(rowp); free(ph); free(rs); free(pad); free(qb);
    free(ta); free(sa);
    return rc;
}

/* dst[i] = src[i], i < n, inline: the dy rows of small planes are a few vectors each, where a
 * memcpy call costs about as much as the copy (the empty asm keeps the compiler from turning
 * the loop into one). */
static inline void dw_copy_row(float *dst, const float *src, i64 n)
{
    i64 i = 0;
    for (; i + 8 <= n; i += 8) {
        _mm256_storeu_ps(dst + i, _mm256_loadu_ps(src + i));
        __asm__ volatile("" ::: "memory");
    }
    if (i < n)
        store_first8(dst + i, _mm256_maskload_ps(src + i, dw_lanes_below(n - i)), n - i);
}


/* A run of nrun dx rows of CB planes of dw_planes (orow, then every ostep floats), each a dy
 * row (RS floats of pad) below the last: T0 taps of column phase 0 (pairs e0: offset of dy in
 * a plane's pad, weight index in its wv) and T1 of phase 1 (e1); per vector of 8 dx column
 * pairs, the two phases interleaved into 16 dx columns of orow (plane c at orow + c*xc). UVK
 * vectors per row of WK columns (constants for rows of 16, 32 and 64 columns, where the
 * per-row setup is a large part of the work). */
#define DW_PL_ROW(CB, T0, T1, NR, UVK, WK)                                                     \
    do {                                                                                       \
        const float *ya[T0 > 0 ? T0 : 1], *yb[T1 > 0 ? T1 : 1];                                \
        __m256 wa[CB][T0 > 0 ? T0 : 1], wb[CB][T1 > 0 ? T1 : 1];                               \
        for (i64 t = 0; t < (T0); t++) {                                                       \
            ya[t] = pad + e0[2 * t];                                                           \
            for (int c = 0; c < CB; c++) wa[c][t] = wv[c * KK + e0[2 * t + 1]];                \
        }                                                                                      \
        for (i64 t = 0; t < (T1); t++) {                                                       \
            yb[t] = pad + e1[2 * t];                                                           \
            for (int c = 0; c < CB; c++) wb[c][t] = wv[c * KK + e1[2 * t + 1]];                \
        }                                                                                      \
        for (i64 r = 0; r < (NR); r++, orow += ostep)                                          \
            for (i64 v = 0; v < (UVK); v++)                                                    \
                for (int c = 0; c < CB; c++) {                                                 \
                    const i64 o = r * RS + c * PS + 8 * v;                                     \
                    __m256 E = _mm256_setzero_ps(), O = E;                                     \
                    for (i64 t = 0; t < (T0); t++)                                             \
                        E = _mm256_fmadd_ps(_mm256_loadu_ps(ya[t] + o), wa[c][t], E);          \
                    for (i64 t = 0; t < (T1); t++)                                             \
                        O = _mm256_fmadd_ps(_mm256_loadu_ps(yb[t] + o), wb[c][t], O);          \
                    store_pairs16(orow + c * xc + 16 * v, E, O, (WK) - 16 * v);               \
                }                                                                              \
    } while (0)
/* The tap counts dw_planes_applies allows as constants (1 or 2 row taps of 0-2 column taps per
 * phase; rows without taps write zeros), any other (none arises) through the general loops. */
#define DW_PL_CASES(CB, NR, UVK, WK)                                                           \
    do {                                                                                       \
        switch (T0 * 16 + T1) {                                                                \
        case 0x12: DW_PL_ROW(CB, 1, 2, NR, UVK, WK); break;                                    \
        case 0x21: DW_PL_ROW(CB, 2, 1, NR, UVK, WK); break;                                    \
        case 0x24: DW_PL_ROW(CB, 2, 4, NR, UVK, WK); break;                                    \
        case 0x42: DW_PL_ROW(CB, 4, 2, NR, UVK, WK); break;                                    \
        case 0x11: DW_PL_ROW(CB, 1, 1, NR, UVK, WK); break;                                    \
        case 0x22: DW_PL_ROW(CB, 2, 2, NR, UVK, WK); break;                                    \
        case 0x44: DW_PL_ROW(CB, 4, 4, NR, UVK, WK); break;                                    \
        case 0x10: DW_PL_ROW(CB, 1, 0, NR, UVK, WK); break;                                    \
        case 0x01: DW_PL_ROW(CB, 0, 1, NR, UVK, WK); break;                                    \
        case 0x20: DW_PL_ROW(CB, 2, 0, NR, UVK, WK); break;                                    \
        case 0x02: DW_PL_ROW(CB, 0, 2, NR, UVK, WK); break;                                    \
        case 0x00: DW_PL_ROW(CB, 0, 0, NR, UVK, WK); break;                                    \
        default: DW_PL_ROW(CB, T0, T1, NR, UVK, WK); break;                                    \
        }                                                                                      \
    } while (0)

/* DW_PL_CASES for the cb (1 or 2) planes of dw_planes' current pair. */
#define DW_PL_PLANES(NR, UVK, WK)                                                              \
    do {                                                                                       \
        if (cb == 2) DW_PL_CASES(2, NR, UVK, WK);                                              \
        else DW_PL_CASES(1, NR, UVK, WK);                                                      \
    } while (0)

/* Columns contiguous in dx (xw == 1), M == 1, column stride 2, kernels at most 4 wide with at
 * most 2 row taps per dx row, no dilation (the 2x2, 3x3 and 4x4 stride-2 upsampling layers in
 * NCHW): per channel plane and dx row, one vector over 8 dx column pairs u (columns 2u and
 * 2u + 1) per column stride phase. Phase e's column taps b (b = e + pl mod 2) read the staged dy
 * row at column u + (e + pl - b) / 2, so all lanes of a vector share one tap list and one
 * (broadcast) weight per tap; the two phase vectors are interleaved into 16 contiguous dx
 * columns. The per-row tap lists are built once per call (every plane has the same). The dy
 * rows a block of dx rows reads are copied into rows with zero margins first (as dw_nchw: a
 * column outside dy reads +0.0, whose product with a finite weight adds nothing; a channel
 * with a non-finite weight runs dw_generic instead). Two planes at a time, each written row by
 * row in order. A/B, 2 threads, Zen 4: 1.1-1.4x dw_nchw8 (which writes 8 planes at once
 * through transposes) on 3x3 and 4x4 layers, 2x on 2x2; 0.3-0.5x on 5x5 and wider kernels
 * (their tap lists vary per row), 0.8-1.1x at stride 1 (more taps per output): those keep
 * dw_nchw8. One plane at a time: 0.75-0.9x; four: 0.8-0.95x. */
static int dw_planes_applies(const i64 *p)
{
    return p[DW_XW] == 1 && p[DW_M] == 1 && p[DW_SW] == 2 && p[DW_DW] == 1 && p[DW_DH] == 1
           && p[DW_KW] <= 4 && (p[DW_KH] + p[DW_SH] - 1) / p[DW_SH] <= 2;
}

static int dw_planes(const float *dy, const float *w, float *dx, const i64 *p,
                     i64 n0, i64 n1, i64 h0, i64 h1, i64 g0, i64 g1)
{
    const i64 yn = p[DW_YN], yh = p[DW_YH], yw = p[DW_YW], yc = p[DW_YC], OH = p[DW_OH];
    const i64 OW = p[DW_OW], KH = p[DW_KH], KW = p[DW_KW], wh = p[DW_WH], ww = p[DW_WW];
    const i64 wo = p[DW_WO], xn = p[DW_XN], xh = p[DW_XH], xc = p[DW_XC], W = p[DW_W];
    const i64 sh = p[DW_SH], pt = p[DW_PT], pl = p[DW_PL], nh = h1 - h0;
    const i64 UV = (W + 15) / 16; /* vectors of 8 column pairs */
    /* per phase e: its taps tb[e][t] at dy column offsets to[e][t], t < nt[e] */
    i64 tb[2][4], to[2][4], nt[2] = {0, 0}, omin = 0, omax = 0;
    for (i64 b = 0; b < KW; b++) {
        const i64 e = ((b - pl) % 2 + 2) % 2, off = (e + pl - b) / 2;
        tb[e][nt[e]] = b;
        to[e][nt[e]++] = off;
        if (off < omin) omin = off;
        if (off > omax) omax = off;
    }
    /* a staged row: dy column r at Lm + r, read at Lm + u + off for u < 8*UV */
    const i64 Lm = -omin, RS = (Lm + (8 * UV + omax > OW ? 8 * UV + omax : OW) + 7) / 8 * 8;
    dw_tap *ta = NULL;
    i64 *sa = NULL, *qb = NULL, *tl = NULL;
    float *pad = NULL;
    i64 *rs = (i64 *)malloc(sizeof(i64) * (size_t)(nh + 1 + 2 * nh * KH)), *run = NULL;
    __m256 *wv = (__m256 *)aligned_alloc(32, sizeof(__m256) * (size_t)(2 * KH * KW + 1));
    int rc = -2;
    if (!rs || !wv || dw_taps(KH, sh, p[DW_DH], &ta, &sa)) goto done;
    i64 *rows = rs + nh + 1;
    dw_row_taps(h0, nh, pt, sh, OH, ta, sa, rs, rows);
    i64 QN;
    const i64 HB = dw_row_blocks(nh, KH, p[DW_DH], sh, OH, DW_PAD_FLOATS, RS, rs, rows, &qb,
                                 &QN);
    if (!HB) goto done;
    /* per dx row h, the same for every plane: tl[tl[h] ..] = T0, T1, then (offset in pad,
     * weight index) of its T0 taps of phase 0 (even dx columns) and T1 of phase 1 */
    tl = (i64 *)malloc(sizeof(i64) * (size_t)(nh + 2 * nh + 2 * rs[nh] * KW + 1));
    if (!tl) goto done;
    for (i64 h = 0, m = nh; h < nh; h++) {
        const i64 qlo = qb[2 * (h / HB)];
        tl[h] = m;
        tl[m] = tl[m + 1] = 0;
        i64 *e = tl + m + 2;
        for (int ph = 0; ph < 2; ph++)
            for (i64 r = rs[h]; r < rs[h + 1]; r++)
                for (i64 t = 0; t < nt[ph]; t++) {
                    *e++ = (rows[2 * r] - qlo) * RS + Lm + to[ph][t];
                    *e++ = rows[2 * r + 1] * KW + tb[ph][t];
                    tl[m + ph]++;
                }
        m = e - tl;
    }
    /* Rows of up to 32 columns in runs: dx row h continues the run of row h - sh where its taps
     * are that row's one dy row further down (never across row blocks: the offsets count from
     * a block's first staged row); run[h]: the rows of the run starting at h, 0 where h
     * continues one. A run's setup is made once (A/B, 2 threads, Zen 4: 1.25-1.35x on 3x3 and
     * 4x4 layers onto 16- and 32-column maps; 0.9x onto 128 columns, whose row parities then
     * pass the staged dy one after the other). */
    run = (i64 *)malloc(sizeof(i64) * (size_t)(2 * nh + 1));
    if (!run) goto done;
    i64 *start = run + nh;
    for (i64 h = 0; h < nh; h++) {
        run[h] = 1;
        start[h] = h;
        if (W > 32 || h < sh) continue;
        const i64 *a = tl + tl[h], *b = tl + tl[h - sh];
        int same = a[0] == b[0] && a[1] == b[1];
        for (i64 t = 0; same && t < a[0] + a[1]; t++)
            same = a[2 + 2 * t] == b[2 + 2 * t] + RS && a[3 + 2 * t] == b[3 + 2 * t];
        if (same) {
            start[h] = start[h - sh];
            run[start[h]]++;
            run[h] = 0;
        }
    }
    const i64 ostep = sh * xh, KK = KH * KW, PS = QN * RS; /* (PS: a plane's pad to the next) */
    pad = (float *)aligned_alloc(32, sizeof(float) * (size_t)(2 * PS));
    if (!pad) goto done;
    memset(pad, 0, sizeof(float) * (size_t)(2 * PS)); /* the margins stay zero */
    for (i64 n = n0; n < n1; n++)
        for (i64 g = g0; g < g1; ) {
            /* two planes at a time (one at the end, or where a weight is not finite) */
            i64 cb = g + 1 < g1 ? 2 : 1;
            int finite[2] = {1, 1};
            for (i64 c = 0; c < cb; c++)
                for (i64 a = 0; a < KH; a++)
                    for (i64 b = 0; b < KW; b++) {
                        const float v = w[a * wh + b * ww + (g + c) * wo];
                        finite[c] &= isfinite(v) != 0;
                        wv[c * KK + a * KW + b] = _mm256_set1_ps(v);
                    }
            if (!finite[0]) {
                const int r = dw_generic(dy, w, dx, p, n, n + 1, h0, h1, g, g + 1);
                if (r) { rc = r; goto done; }
                g++;
                continue;
            }
            if (!finite[1]) cb = 1;
            const float *dyg = dy + n * yn + g * yc;
            float *dxg = dx + n * xn + g * xc;
            for (i64 ha = 0; ha < nh; ha += HB) {
                const i64 hz = ha + HB < nh ? ha + HB : nh, qlo = qb[2 * (ha / HB)];
                for (i64 c = 0; c < cb; c++)
                    for (i64 q = qlo; q <= qb[2 * (ha / HB) + 1]; q++) {
                        const float *src = dyg + c * yc + q * yh;
                        float *dst = pad + c * PS + (q - qlo) * RS + Lm;
                        if (yw == 1) dw_copy_row(dst, src, OW);
                        else for (i64 r = 0; r < OW; r++) dst[r] = src[r * yw];
                    }
                for (i64 h = ha; h < hz; h++) {
                    const i64 nrun = run[h];
                    if (!nrun) continue; /* (written with its run) */
                    float *orow = dxg + (h0 + h) * xh;
                    const i64 *e = tl + tl[h], T0 = e[0], T1 = e[1];
                    const i64 *e0 = e + 2, *e1 = e0 + 2 * T0;
                    /* (over 32 columns runs are of one row, whose loop must compile away;
                     * the UV tests are implied by W, yet GCC 12 built 1.05-1.08x faster code
                     * with them, A/B) */
                    if (W == 32 && UV == 2) DW_PL_PLANES(nrun, 2, 32);
                    else if (W == 16 && UV == 1) DW_PL_PLANES(nrun, 1, 16);
                    else if (W == 64 && UV == 4) DW_PL_PLANES(1, 4, 64); /* (1.03x) */
                    else if (W <= 32) DW_PL_PLANES(nrun, UV, W);
                    else DW_PL_PLANES(1, UV, W);
                }
            }
            g += cb;
        }
    rc = 0;
done:
    free(rs); free(run); free(wv); free(tl); free(qb); free(pad); free(ta); free(sa);
    return rc;
}
#undef DW_PL_ROW
#undef DW_PL_CASES
#undef DW_PL_PLANES

/* M == 1, columns contiguous in dx (xw == 1), any dilation: blocks of 8 channels, each vector
 * holding one pixel's 8 channels. Per block of dx rows, the dy rows they read are transposed
 * into channel-interleaved rows yt[row][Lm + r][8] with zero margins (a column outside dy reads
 * +0.0, whose product with a finite weight adds nothing; a block with a non-finite weight runs
 * dw_generic instead, where such columns are skipped). Per dx row and column stride phase the
 * taps are those of every pixel of the phase, and consecutive pixels read consecutive vectors:
 * 8 (or 4) pixels accumulate in registers, into a tile [x][8], which is transposed back to the
 * channels' dx rows. Missing channels of the last block read zeros and are not written. */

/* o[j][i] = src[i*st + j] for i, j < 8 (an 8x8 transpose). Rows i and i+4 share a vector (two
 * 128-bit loads), so in-lane unpacks and shuffles finish it without lane-crossing shuffles. */
static inline void dw_tr8(const float *src, i64 st, __m256 o[8])
{
    __m256 v[8];
    for (int i = 0; i < 4; i++)
        for (int hf = 0; hf < 2; hf++)
            v[4 * hf + i] = _mm256_insertf128_ps(
                _mm256_castps128_ps256(_mm_loadu_ps(src + i * st + 4 * hf)),
                _mm_loadu_ps(src + (i + 4) * st + 4 * hf), 1);
    for (int hf = 0; hf < 2; hf++) {
        const __m256 *u = v + 4 * hf;
        const __m256 t0 = _mm256_unpacklo_ps(u[0], u[1]), t1 = _mm256_unpackhi_ps(u[0], u[1]);
        const __m256 t2 = _mm256_unpacklo_ps(u[2], u[3]), t3 = _mm256_unpackhi_ps(u[2], u[3]);
        o[4 * hf] = _mm256_shuffle_ps(t0, t2, 0x44);
        o[4 * hf + 1] = _mm256_shuffle_ps(t0, t2, 0xEE);
        o[4 * hf + 2] = _mm256_shuffle_ps(t1, t3, 0x44);
        o[4 * hf + 3] = _mm256_shuffle_ps(t1, t3, 0xEE);
    }
}

/* Pixels k .. k+U-1 of one column stride phase: tap t reads yt + ot[2*t] + 8*k on
 * (consecutive pixels, consecutive vectors), weights wb + ot[2*t + 1]; pixel k goes to the
 * tile at tp + k*ts. */
#define DW_T8_PIX(U)                                                                           \
    do {                                                                                       \
        __m256 acc[U];                                                                         \
        for (int u = 0; u < U; u++) acc[u] = _mm256_setzero_ps();                              \
        for (i64 t = 0; t < T; t++) {                                                          \
            const float *y = yt + ot[2 * t] + 8 * k;                                           \
            const __m256 wv = _mm256_load_ps(wb + ot[2 * t + 1]);                              \
            for (int u = 0; u < U; u++)                                                        \
                acc[u] = _mm256_fmadd_ps(_mm256_load_ps(y + 8 * u), wv, acc[u]);               \
        }                                                                                      \
        for (int u = 0; u < U; u++) _mm256_store_ps(tp + (k + u) * ts, acc[u]);                \
    } while (0)

/* Floats of the transposed dy rows a block of dx rows reads: about L2-resident. */
#define DW_T8_FLOATS (16 * 1024)

static int dw_nchw8(const float *dy, const float *w, float *dx, const i64 *p,
                    i64 n0, i64 n1, i64 h0, i64 h1, i64 g0, i64 g1)
{
    const i64 yn = p[DW_YN], yh = p[DW_YH], yw = p[DW_YW], yc = p[DW_YC], OH = p[DW_OH];
    const i64 OW = p[DW_OW], KH = p[DW_KH], KW = p[DW_KW], wh = p[DW_WH], ww = p[DW_WW];
    const i64 wo = p[DW_WO], xn = p[DW_XN], xh = p[DW_XH], xc = p[DW_XC], W = p[DW_W];
    const i64 sh = p[DW_SH], sw = p[DW_SW], pt = p[DW_PT], pl = p[DW_PL], nh = h1 - h0;
    const i64 nblk = (g1 - g0 + 7) / 8, KK = KH * KW;
    dw_tap *ta = NULL, *tb = NULL;
    i64 *sa = NULL, *sb = NULL, *to = NULL, *qb = NULL;
    float *yt = NULL, *tile = NULL;
    /* per column phase ph: cp[5*ph ..] = x0, vd0, pixels rounded up, its taps [t0, t1) in ct */
    i64 *cp = (i64 *)malloc(sizeof(i64) * (size_t)(5 * sw + 2 * KW + 1));
    /* the row taps of dx rows h0 .. h1-1: rows[rs[h - h0] .. rs[h - h0 + 1]) = (q, a) */
    i64 *rs = (i64 *)malloc(sizeof(i64) * (size_t)(nh + 1 + 2 * nh * KH));
    /* per block of 8 channels: its weights wT[blk*8*KK + (a*KW + b)*8 + c] = w[a, b, g + c]
     * (0 for missing channels), and whether they are all finite */
    float *wT = (float *)aligned_alloc(32, sizeof(float) * (size_t)(8 * KK * nblk + 8));
    int *fin = (int *)malloc(sizeof(int) * (size_t)nblk);
    int rc = -2;
    if (!cp || !rs || !wT || !fin) goto done;
    if (dw_taps(KH, sh, p[DW_DH], &ta, &sa) || dw_taps(KW, sw, p[DW_DW], &tb, &sb)) goto done;
    i64 *ct = cp + 5 * sw, *rows = rs + nh + 1; /* ct[2*t]: b, ct[2*t + 1]: offset */
    for (i64 blk = 0; blk < nblk; blk++) {
        const i64 g = g0 + 8 * blk, cb = g1 - g < 8 ? g1 - g : 8;
        fin[blk] = 1;
        for (i64 a = 0; a < KH; a++)
            for (i64 b = 0; b < KW; b++)
                for (i64 c = 0; c < 8; c++) {
                    const float v = c < cb ? w[a * wh + b * ww + (g + c) * wo] : 0.0f;
                    fin[blk] &= isfinite(v) != 0;
                    wT[blk * 8 * KK + (a * KW + b) * 8 + c] = v;
                }
    }
    /* the phases' pixels x = x0 + k*sw (x + pl = (vd0 + k)*sw + ph), k < np, run in groups of
     * 8 and one of 4 (the pixels past np land in the tile's slack); a tap every pixel of the
     * phase has outside dy is dropped. The dy columns read: rmin .. rmax. */
    i64 TW = (W + 7) / 8 * 8, rmin = 0, rmax = OW > 0 ? OW - 1 : 0, nct = 0;
    for (i64 ph = 0; ph < sw; ph++) {
        const i64 x0 = ((ph - pl) % sw + sw) % sw, vd0 = (x0 + pl - ph) / sw;
        const i64 np = x0 < W ? (W - x0 + sw - 1) / sw : 0;
        const i64 npad = np / 8 * 8 + (np % 8 == 0 ? 0 : np % 8 <= 4 ? 4 : 8);
        i64 *c5 = cp + 5 * ph;
        c5[0] = x0; c5[1] = vd0; c5[2] = npad; c5[3] = nct;
        for (i64 i = sb[ph]; i < sb[ph + 1]; i++) {
            const i64 r0 = vd0 + tb[i].off; /* dy column of pixel 0 */
            if (np == 0 || r0 > OW - 1 || r0 + np - 1 < 0) continue;
            ct[2 * nct] = tb[i].k;
            ct[2 * nct++ + 1] = tb[i].off;
            if (r0 < rmin) rmin = r0;
            if (r0 + npad - 1 > rmax) rmax = r0 + npad - 1;
        }
        c5[4] = nct;
        if (np && x0 + (npad - 1) * sw + 1 > TW) TW = x0 + (npad - 1) * sw + 1;
    }
    const i64 Lm = -rmin, RS = Lm + rmax + 1; /* a transposed row: dy column r at Lm + r */
    dw_row_taps(h0, nh, pt, sh, OH, ta, sa, rs, rows);
    /* blocks of HB dx rows, each reading dy rows qb[2*i] .. qb[2*i + 1] (QN at most) */
    i64 QN;
    const i64 HB = dw_row_blocks(nh, KH, p[DW_DH], sh, OH, DW_T8_FLOATS, 8 * RS, rs, rows, &qb,
                                 &QN);
    if (!HB) goto done;
    const i64 nhb = (nh + HB - 1) / HB;
    /* per dx row h and phase ph, its taps (row x column) as offsets of the dy vector of pixel 0
     * in yt and of the weights in a block's wT: to[2*to[e] ..] for e = (h - h0)*sw + ph, up to
     * to[2*to[e + 1]] */
    const i64 ne = nh * sw + 1;
    to = (i64 *)malloc(sizeof(i64) * (size_t)(ne + 2 * rs[nh] * nct));
    if (!to) goto done;
    for (i64 hb = 0, e = 0, m = 0; hb < nhb; hb++) {
        const i64 ha = hb * HB, hz = ha + HB < nh ? ha + HB : nh, qlo = qb[2 * hb];
        for (i64 h = ha; h < hz; h++)
            for (i64 ph = 0; ph < sw; ph++, e++) {
                const i64 *c5 = cp + 5 * ph;
                to[e] = m;
                for (i64 r = rs[h]; r < rs[h + 1]; r++)
                    for (i64 t = c5[3]; t < c5[4]; t++) {
                        const i64 col = Lm + c5[1] + ct[2 * t + 1];
                        to[ne + 2 * m] = ((rows[2 * r] - qlo) * RS + col) * 8;
                        to[ne + 2 * m++ + 1] = (rows[2 * r + 1] * KW + ct[2 * t]) * 8;
                    }
            }
        if (hb == nhb - 1) to[e] = m;
    }
    const i64 *tv = to + ne;
    yt = (float *)aligned_alloc(32, sizeof(float) * (size_t)(8 * QN * RS));
    tile = (float *)aligned_alloc(32, sizeof(float) * (size_t)(8 * TW));
    if (!yt || !tile) goto done;
    memset(yt, 0, sizeof(float) * (size_t)(8 * QN * RS)); /* the margins stay zero */
    memset(tile, 0, sizeof(float) * (size_t)(8 * TW));
    for (i64 n = n0; n < n1; n++)
        for (i64 blk = 0; blk < nblk; blk++) {
            const i64 g = g0 + 8 * blk, cb = g1 - g < 8 ? g1 - g : 8;
            if (!fin[blk]) {
                const int r = dw_generic(dy, w, dx, p, n, n + 1, h0, h1, g, g + cb);
                if (r) { rc = r; goto done; }
                continue;
            }
            const float *dyg = dy + n * yn + g * yc, *wb = wT + blk * 8 * KK;
            float *dxg = dx + n * xn + g * xc;
            for (i64 hb = 0; hb < nhb; hb++) {
                const i64 ha = hb * HB, hz = ha + HB < nh ? ha + HB : nh, qlo = qb[2 * hb];
                /* dy rows qlo .. qhi transposed: yt[((q - qlo)*RS + Lm + r)*8 + c], by 8x8
                 * blocks where all 8 channels and 8 contiguous columns exist */
                for (i64 q = qlo; q <= qb[2 * hb + 1]; q++) {
                    const float *src = dyg + q * yh;
                    float *dst = yt + ((q - qlo) * RS + Lm) * 8;
                    i64 r = 0;
                    if (cb == 8 && yw == 1)
                        for (; r + 8 <= OW; r += 8) {
                            __m256 o[8];
                            dw_tr8(src + r, yc, o);
                            for (int j = 0; j < 8; j++) _mm256_store_ps(dst + (r + j) * 8, o[j]);
                        }
                    for (; r < OW; r++)
                        for (i64 c = 0; c < 8; c++)
                            dst[r * 8 + c] = c < cb ? src[c * yc + r * yw] : 0.0f;
                }
                for (i64 h = ha; h < hz; h++) {
                    /* per phase: its pixels into the tile */
                    for (i64 ph = 0; ph < sw; ph++) {
                        const i64 e = h * sw + ph, T = to[e + 1] - to[e], *ot = tv + 2 * to[e];
                        const i64 npad = cp[5 * ph + 2], ts = sw * 8;
                        float *tp = tile + cp[5 * ph] * 8;
                        i64 k = 0;
                        for (; k + 8 <= npad; k += 8) DW_T8_PIX(8);
                        if (k < npad) DW_T8_PIX(4);
                    }
                    /* the tile transposed back to the channels' dx rows: 8 columns of 8
                     * channels, then those of fewer channels or columns */
                    float *orow = dxg + (h0 + h) * xh;
                    i64 x = 0;
                    if (cb == 8)
                        for (; x + 8 <= W; x += 8) {
                            __m256 o[8];
                            dw_tr8(tile + 8 * x, 8, o);
                            for (int c = 0; c < 8; c++) _mm256_storeu_ps(orow + c * xc + x, o[c]);
                        }
                    for (; x < W; x += 8) {
                        __m256 o[8];
                        dw_tr8(tile + 8 * x, 8, o);
                        for (i64 c = 0; c < cb; c++) {
                            if (x + 8 <= W) _mm256_storeu_ps(orow + c * xc + x, o[c]);
                            else store_first8(orow + c * xc + x, o[c], W - x);
                        }
                    }
                }
            }
        }
    rc = 0;
done:
    free(cp); free(rs); free(wT); free(fin); free(to); free(qb); free(yt); free(tile);
    free(ta); free(sa); free(tb); free(sb);
    return rc;
}
#undef DW_T8_PIX
#undef DW_T8_FLOATS
#undef DW_NCHW_VECS
#undef DW_NHWC_PIXEL
#undef DW_PHASE_PIX
#undef DW_PHASE_ALL
#undef DW_DOT32
#undef DW_DOT32_K
#undef DW_NCHW_ROW
#undef DW_NCHW_RUN
#undef DW_PAD_FLOATS
#endif

/* Any strides: per (image, channel, row), the columns of each stride phase accumulated in a
 * phase-major row buffer (column x at acc[(x % sw)*WP + x / sw]), then written out. */
static int dw_generic(const float *dy, const float *w, float *dx, const i64 *p,
                      i64 n0, i64 n1, i64 h0, i64 h1, i64 g0, i64 g1)
{
    const i64 yn = p[DW_YN], yh = p[DW_YH], yw = p[DW_YW], yc = p[DW_YC], OH = p[DW_OH];
    const i64 OW = p[DW_OW], KH = p[DW_KH], KW = p[DW_KW], M = p[DW_M], wh = p[DW_WH];
    const i64 ww = p[DW_WW], wo = p[DW_WO], xn = p[DW_XN], xh = p[DW_XH], xw = p[DW_XW];
    const i64 xc = p[DW_XC], W = p[DW_W], sh = p[DW_SH], sw = p[DW_SW], dlw = p[DW_DW];
    const i64 pt = p[DW_PT], pl = p[DW_PL];
    const i64 WP = (W + sw - 1) / sw;
    dw_tap *ta = NULL;
    i64 *sa = NULL;
    float *acc = (float *)malloc(sizeof(float) * (size_t)(sw * WP > 0 ? sw * WP : 1));
    i64 *cb = (i64 *)malloc(sizeof(i64) * (size_t)(3 * KW + 1)); /* per b: r0, offset, count */
    int rc = -2;
    if (!acc || !cb || dw_taps(KH, p[DW_SH], p[DW_DH], &ta, &sa)) goto done;
    for (i64 b = 0; b < KW; b++) {
        /* columns x = x0 + k*sw, r = r0 + k, with x in [0, W), r in [0, OW) */
        const i64 off = pl - b * dlw; /* x + off = r*sw */
        const i64 r0 = off > 0 ? (off + sw - 1) / sw : 0, x0 = r0 * sw - off;
        i64 cnt = OW - r0;
        const i64 cx = x0 < W ? (W - x0 + sw - 1) / sw : 0;
        if (cx < cnt) cnt = cx;
        cb[3 * b] = r0;
        cb[3 * b + 1] = x0 < W ? (x0 % sw) * WP + x0 / sw : 0;
        cb[3 * b + 2] = cnt;
    }
    for (i64 n = n0; n < n1; n++)
        for (i64 g = g0; g < g1; g++)
            for (i64 h = h0; h < h1; h++) {
                const i64 hd = dw_fdiv(h + pt, sh), rh = h + pt - hd * sh;
                for (i64 x = 0; x < sw * WP; x++) acc[x] = 0.0f;
                for (i64 i = sa[rh]; i < sa[rh + 1]; i++) {
                    const i64 q = hd + ta[i].off, a = ta[i].k;
                    if (q < 0 || q >= OH) continue;
                    for (i64 b = 0; b < KW; b++) {
                        const i64 cnt = cb[3 * b + 2];
                        if (cnt <= 0) continue;
                        const float *yp = dy + n * yn + q * yh + cb[3 * b] * yw;
                        float *ap = acc + cb[3 * b + 1];
                        for (i64 j = 0; j < M; j++) {
                            const float wv = w[a * wh + b * ww + (g * M + j) * wo];
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
    rc = 0;
done:
    free(acc); free(cb); free(ta); free(sa);
    return rc;
}

/* dx rows [h0, h1) of images [n0, n1), channels [g0, g1). p: the DW_NPARAMS parameters in
 * the enum's order (element strides of dy [N, OH, OW, C*M], w [KH, KW, C*M] and dx
 * [N, H, W, C]; strides sh, sw; dilations; the paddings before pt, pl, any sign). Returns 0,
 * -1 for invalid arguments, -2 when out of memory. */
int opgraph_depthwise_bpi_f32(const float *dy, const float *w, float *dx, const i64 *p,
                              i64 np, i64 n0, i64 n1, i64 h0, i64 h1, i64 g0, i64 g1)
{
    if (np != DW_NPARAMS) return -1;
    if (p[DW_SH] < 1 || p[DW_SW] < 1 || p[DW_DH] < 1 || p[DW_DW] < 1 || p[DW_M] < 1
        || p[DW_KH] < 0 || p[DW_KW] < 0 || p[DW_OH] < 0 || p[DW_OW] < 0 || p[DW_W] < 0)
        return -1;
    if (n0 < 0 || n1 > p[DW_N] || h0 < 0 || h1 > p[DW_H] || g0 < 0 || g1 > p[DW_C]) return -1;
    if (n0 >= n1 || h0 >= h1 || g0 >= g1 || p[DW_W] == 0) return 0;
    if (p[DW_YC] == 1 && p[DW_XC] == 1 && p[DW_WO] == 1) {
#ifdef DW_AVX2
        const i64 nb = (g1 - g0) / 8; /* whole blocks of 8 channels slide; the rest below */
        if (p[DW_M] == 1 && nb > 0 && dw_slide_applies(p)) {
            const int rc = dw_slide(dy, w, dx, p, n0, n1, h0, h1, g0, nb);
            if (rc || g0 + 8 * nb == g1) return rc;
            g0 += 8 * nb;
        }
#endif
        return dw_nhwc(dy, w, dx, p, n0, n1, h0, h1, g0, g1);
    }
#ifdef DW_AVX2
    if (dw_planes_applies(p))
        return dw_planes(dy, w, dx, p, n0, n1, h0, h1, g0, g1);
    if (p[DW_XW] == 1 && p[DW_M] == 1)
        return dw_nchw8(dy, w, dx, p, n0, n1, h0, h1, g0, g1);
    if (p[DW_XW] == 1 && p[DW_DW] == 1 && p[DW_SW] <= 64)
        return dw_nchw(dy, w, dx, p, n0, n1, h0, h1, g0, g1);
#endif
    return dw_generic(dy, w, dx, p, n0, n1, h0, h1, g0, g1);
}

/* Many work items of opgraph_depthwise_bpi_f32 in one call, on nthreads of the pool's threads
 * (thread_pool.c): tasks holds ntasks rows (n0, n1, h0, h1, g0, g1) whose dx ranges must be
 * disjoint; threads take them from a shared counter. Returns 0, or the first nonzero code an
 * item returned (the other items still run or are skipped; dx is then undefined). */
typedef struct {
    const float *dy, *w;
    float *dx;
    const i64 *p, *tasks;
    i64 np, ntasks, next;
    int rc;
} dw_job;

static void dw_worker(void *arg, int index)
{
    (void)index;
    dw_job *J = arg;
    for (;;) {
        const i64 k = __atomic_fetch_add(&J->next, 1, __ATOMIC_RELAXED);
        if (k >= J->ntasks || __atomic_load_n(&J->rc, __ATOMIC_RELAXED))
            break;
        const i64 *t = J->tasks + 6 * k;
        const int rc = opgraph_depthwise_bpi_f32(J->dy, J->w, J->dx, J->p, J->np, t[0], t[1],
                                                 t[2], t[3], t[4], t[5]);
        if (rc) {
            int zero = 0;
            __atomic_compare_exchange_n(&J->rc, &zero, rc, 0, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED);
        }
    }
}

int opgraph_depthwise_tasks_f32(const float *dy, const float *w, float *dx, const i64 *p,
                                i64 np, const i64 *tasks, i64 ntasks, i64 nthreads)
{
    if (np != DW_NPARAMS || ntasks < 0 || nthreads < 1) return -1;
    if (ntasks == 0) return 0;
    dw_job J = {dy, w, dx, p, tasks, np, ntasks, 0, 0};
    opgraph_run_threads(dw_worker, &J, nthreads < ntasks ? nthreads : ntasks);
    return J.rc;
}
