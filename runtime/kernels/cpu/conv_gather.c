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
 * Output channels need not be a multiple of VL: the packed weights of the last block are
 * zero-padded to whole vectors and only the real channels are loaded and stored (each output
 * channel is its own vector lane, so nothing computed in a padded lane reaches an output).
 *
 * opgraph_bpi_f32 is the whole input gradient of a convolution (Conv2DBackpropInput) in one
 * call: it enumerates the stride phases of dx (each a gather over dy with the taps that reach
 * it), the groups, the images and chunks of rows as work items, and runs them on its own threads
 * that take items from a shared counter. opgraph_conv_f32 is the forward convolution on the
 * same machinery (one phase, strided source). opgraph_pack_f32 packs a filter for them (and
 * for opgraph_gather_conv_f32) on threads too.
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
#include <string.h>

/* bytes of weights one channel chunk may stream: whole panels measured best while they fit
 * the 1-2 MiB L2 (C: 295 KiB per block; chunks of 64 or 128 channels were no faster) */
#define CHUNK_WEIGHT_BYTES (1L << 20)

/* A tile's outputs when they are not whole contiguous vectors (channel stride oc != 1, or only
 * wr < width real channels): through a buffer buf[pixel][channel] of rb pixels x width
 * channels, of which the first wr are loaded and stored. */
static void tile_load_strided(float *buf, const float *o, i64 ops, i64 oc, int rb, int width,
                              int wr)
{
    for (int i = 0; i < rb; i++) {
        for (int k = 0; k < wr; k++)
            buf[i * width + k] = o[i * ops + k * oc];
        for (int k = wr; k < width; k++)
            buf[i * width + k] = 0.0f;
    }
}

static void tile_store_strided(const float *buf, float *o, i64 ops, i64 oc, int rb, int width,
                               int wr)
{
    if (oc == 1) {
        for (int i = 0; i < rb; i++)
            for (int k = 0; k < wr; k++)
                o[i * ops + k] = buf[i * width + k];
        return;
    }
    for (int k = 0; k < wr; k++)
        for (int i = 0; i < rb; i++)
            o[i * ops + k * oc] = buf[i * width + k];
}

/* One RBV-pixel x NVV-vector tile over T taps and C channels. Tap t reads src + soff[t] (pixel
 * i, channel c at + i*ps + c*cs) and weights w + woff[t] (channel c at + c*NVV*VL); out pixel i,
 * channel k < wr is at o + i*ops + k*oc. init: add to what out holds. */
#define MICRO(RBV, NVV)                                                                        \
    static void micro_##RBV##_##NVV(const float *s, i64 ps, i64 cs, const i64 *soff,          \
                                    const i64 *woff, i64 T, i64 C, const float *w, float *o,   \
                                    i64 ops, i64 oc, int init, int wr)                         \
    {                                                                                          \
        vf acc[RBV][NVV];                                                                      \
        float buf[RBV * NVV * VL];                                                             \
        const int direct = oc == 1 && wr == NVV * VL;                                          \
        if (init && !direct)                                                                   \
            tile_load_strided(buf, o, ops, oc, RBV, NVV * VL, wr);                             \
        _Pragma("GCC unroll 16") for (int i = 0; i < RBV; i++)                                 \
            _Pragma("GCC unroll 4") for (int j = 0; j < NVV; j++)                              \
                acc[i][j] = !init ? (vf){0}                                                    \
                          : direct ? *(const vfu *)(o + i * ops + j * VL)                      \
                                   : *(const vfu *)(buf + (i * NVV + j) * VL);                 \
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
        if (direct) {                                                                          \
            _Pragma("GCC unroll 16") for (int i = 0; i < RBV; i++)                             \
                _Pragma("GCC unroll 4") for (int j = 0; j < NVV; j++)                          \
                    *(vfu *)(o + i * ops + j * VL) = acc[i][j];                                \
        } else {                                                                               \
            _Pragma("GCC unroll 16") for (int i = 0; i < RBV; i++)                             \
                _Pragma("GCC unroll 4") for (int j = 0; j < NVV; j++)                          \
                    *(vfu *)(buf + (i * NVV + j) * VL) = acc[i][j];                            \
            tile_store_strided(buf, o, ops, oc, RBV, NVV * VL, wr);                            \
        }                                                                                      \
    }

typedef void (*micro_fn)(const float *, i64, i64, const i64 *, const i64 *, i64, i64,
                         const float *, float *, i64, i64, int, int);

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

/* The microkernel for the other files of the library (conv_winograd.c): an rb-pixel x
 * nv-vector tile (1 <= rb <= RB, 1 <= nv <= NV), arguments as MICRO's. */
void opgraph_micro_f32(int rb, int nv, const float *s, i64 ps, i64 cs, const i64 *soff,
                       const i64 *woff, i64 T, i64 C, const float *w, float *o, i64 ops, i64 oc,
                       int init, int wr)
{
    MICRO_TABLE[nv - 1][rb - 1](s, ps, cs, soff, woff, T, C, w, o, ops, oc, init, wr);
}

/* Output channels per weight block (the packing unit) and the vector width (packed blocks are
 * whole vectors; the real output channels may be fewer). */
int opgraph_conv_block_width(void) { return BW; }
int opgraph_conv_vector_width(void) { return VL; }
/* Pixels (rows) of the microkernel's register tile. */
int opgraph_conv_tile_rows(void) { return RB; }

/* Version of the calling convention below (native.py checks it before the first call). */
int opgraph_conv_abi(void) { return 4; }

/* One gather over rows: out[n, q, r, k] (k < Co) = sum over taps (a, b) and channels c of
 * src[n, (q0 + q)*steph + offh[a], r*stepw + offw[b], c] * weight(tap (a, b), c, k), where the
 * weights of output channel block c0 (BW wide, the last one padded to whole vectors) start at
 * wpk + c0*wtaps*Cs and tap (a, b) is packed tap wih[a]*wkw + wiw[b] (a*tw + b without wih). */
typedef struct {
    const float *src;
    i64 s_n, s_h, s_w, s_c, Hs, Ws, Cs;
    float *out;
    i64 o_n, o_h, o_w, o_c;
    i64 R, Co;
    const i64 *offh, *offw, *wih, *wiw;
    i64 th, tw, wkw, wtaps;
    i64 steph, stepw;
    const float *wpk;
    i64 cchunk;
} gather_geom;

/* Scratch sizes (i64 elements) for rows of R pixels and T = th*tw taps of tw columns. */
static i64 gather_scratch(i64 R, i64 T, i64 tw)
{
    const i64 ntile = (R + RB - 1) / RB;
    return 2 * T + 2 * ntile * tw + ntile + 1;
}

/* Weights (bytes) of every output channel block of a chunk up to which gather_rows runs the
 * blocks innermost, per tile of pixels (so a tile's output pixels are written whole, one
 * after the other, and its source values stay in L1 across the blocks); above it the
 * blocks run outermost, each streaming its own weight panel from L2. */
#define PIXEL_MAJOR_WEIGHT_BYTES (192 * 1024)

/* The per-tile state of gather_rows: tile i of row q of image n for channel block c0 and
 * input channel chunk [k0, k0 + kc). */
typedef struct {
    const gather_geom *g;
    i64 *soff, *woff;
    const i64 *colo, *cohi, *tr;
    i64 cchunk, ps;
} gather_tiles;

static void gather_tile(const gather_tiles *G, i64 c0, i64 k0, i64 n, i64 q, i64 q0, i64 i)
{
    const gather_geom *g = G->g;
    const i64 th = g->th, tw = g->tw, Cs = g->Cs, o_w = g->o_w, o_c = g->o_c;
    const i64 cop = (g->Co + VL - 1) / VL * VL;
    const int nv = cop - c0 >= BW ? NV : (int)((cop - c0) / VL);
    const i64 width = (i64)nv * VL;
    const int wr = (int)(g->Co - c0 < width ? g->Co - c0 : width);
    const float *wblk = g->wpk + c0 * g->wtaps * Cs;
    const i64 kc = Cs - k0 < G->cchunk ? Cs - k0 : G->cchunk;
    const float *sn = g->src + n * g->s_n + k0 * g->s_c;
    float *orow = g->out + n * g->o_n + q * g->o_h + c0 * o_c;
    const i64 qs = (q0 + q) * g->steph;
    const i64 r = G->tr[i];
    const int rb = (int)(G->tr[i + 1] - r);
    const i64 *lo = G->colo + i * tw, *hi = G->cohi + i * tw;
    i64 *soff = G->soff, *woff = G->woff;
    float *o = orow + r * o_w;
    /* Tap columns reading the same pixel range [plo, phi) of the tile form one microkernel
     * call on that sub-tile; the tile's first call writes it (or it is zeroed first), the
     * others add to it. */
    int init = k0 > 0;
    for (i64 b0 = 0; b0 < tw; b0++) {
        const i64 plo = lo[b0], phi = hi[b0];
        int seen = plo >= phi; /* empty, or done with an earlier column */
        for (i64 b = 0; b < b0 && !seen; b++)
            seen = lo[b] == plo && hi[b] == phi;
        if (seen)
            continue;
        if (!init && (plo > 0 || phi < rb)) {
            MICRO_TABLE[nv - 1][rb - 1](sn, G->ps, g->s_c, soff, woff, 0, kc, wblk, o, o_w,
                                        o_c, 0, wr);
            init = 1;
        }
        i64 t = 0;
        for (i64 a = 0; a < th; a++) {
            const i64 hh = qs + g->offh[a];
            if (hh < 0 || hh >= g->Hs)
                continue;
            const i64 wa = g->wih ? g->wih[a] * g->wkw : a * tw;
            for (i64 b = b0; b < tw; b++) {
                if (lo[b] != plo || hi[b] != phi)
                    continue;
                const i64 wb = g->wiw ? g->wiw[b] : b;
                soff[t] = hh * g->s_h + ((r + plo) * g->stepw + g->offw[b]) * g->s_w;
                woff[t] = ((wa + wb) * Cs + k0) * width;
                t++;
            }
        }
        MICRO_TABLE[nv - 1][phi - plo - 1](sn, G->ps, g->s_c, soff, woff, t, kc, wblk,
                                           o + plo * o_w, o_w, o_c, init, wr);
        init = 1;
    }
    if (!init) /* no tap column reads inside the source: zeros */
        MICRO_TABLE[nv - 1][rb - 1](sn, G->ps, g->s_c, soff, woff, 0, kc, wblk, o, o_w, o_c, 0,
                                    wr);
}

/* Images [0, N) (src and out already offset to the first) and out rows [0, Q) of g, row 0 being
 * absolute row q0; scratch holds gather_scratch(g->R, th*tw, tw) elements. */
static void gather_rows(const gather_geom *g, i64 N, i64 Q, i64 q0, i64 *scratch)
{
    const i64 th = g->th, tw = g->tw, T = th * tw, R = g->R, Cs = g->Cs;
    const i64 cop = (g->Co + VL - 1) / VL * VL;
    i64 cchunk = g->cchunk;
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
    i64 *soff = scratch, *woff = soff + T;
    i64 *colo = woff + T, *cohi = colo + ntile * tw;
    i64 *tr = cohi + ntile * tw;
    for (i64 i = 0; i <= ntile; i++)
        tr[i] = i * base + (i < rem ? i : rem);
    for (i64 i = 0; i < ntile; i++)
        for (i64 b = 0; b < tw; b++) {
            i64 lo = tr[i], hi = tr[i + 1];
            while (lo < hi && lo * g->stepw + g->offw[b] < 0)
                lo++;
            while (hi > lo && (hi - 1) * g->stepw + g->offw[b] >= g->Ws)
                hi--;
            colo[i * tw + b] = lo - tr[i];
            cohi[i * tw + b] = hi - tr[i];
        }
    const gather_tiles G = {g, soff, woff, colo, cohi, tr, cchunk, g->stepw * g->s_w};
    if ((double)T * (double)cchunk * (double)cop * sizeof(float) <= PIXEL_MAJOR_WEIGHT_BYTES) {
        for (i64 k0 = 0; k0 < Cs; k0 += cchunk)
            for (i64 n = 0; n < N; n++)
                for (i64 q = 0; q < Q; q++)
                    for (i64 i = 0; i < ntile; i++)
                        for (i64 c0 = 0; c0 < cop; c0 += BW)
                            gather_tile(&G, c0, k0, n, q, q0, i);
        return;
    }
    for (i64 c0 = 0; c0 < cop; c0 += BW)
        for (i64 k0 = 0; k0 < Cs; k0 += cchunk)
            for (i64 n = 0; n < N; n++)
                for (i64 q = 0; q < Q; q++)
                    for (i64 i = 0; i < ntile; i++)
                        gather_tile(&G, c0, k0, n, q, q0, i);
}

/* See the file comment. q0: absolute index of out's first row (src rows are absolute).
 * cchunk: input channels per chunk, 0 = automatic. Co: output channels (any count; wpk holds
 * them padded to whole vectors). Returns 0, or -1 for arguments this kernel does not take (the
 * caller then uses another algorithm), -2 when out of memory. */
int opgraph_gather_conv_f32(const float *src, i64 s_n, i64 s_h, i64 s_w, i64 s_c, i64 Hs,
                            i64 Ws, i64 Cs, float *out, i64 o_n, i64 o_h, i64 o_w, i64 o_c,
                            i64 N, i64 Q, i64 R, i64 Co, const i64 *offh, i64 th,
                            const i64 *offw, i64 tw, i64 steph, i64 stepw, i64 q0,
                            const float *wpk, i64 cchunk)
{
    if (Co <= 0 || th <= 0 || tw <= 0 || Cs <= 0 || stepw <= 0 || steph <= 0)
        return -1;
    if (N <= 0 || Q <= 0 || R <= 0)
        return 0;
    if (th > INT64_MAX / tw)
        return -2;
    const i64 T = th * tw;
    const i64 ntile = (R + RB - 1) / RB;
    if (ntile > (INT64_MAX / 64 - T) / (tw + 1))
        return -2;
    i64 *scratch = malloc(sizeof(i64) * (size_t)gather_scratch(R, T, tw));
    if (!scratch)
        return -2;
    const gather_geom g = {src, s_n, s_h, s_w, s_c, Hs, Ws, Cs, out, o_n, o_h, o_w, o_c, R, Co,
                           offh, offw, NULL, NULL, th, tw, tw, T, steph, stepw, wpk, cchunk};
    gather_rows(&g, N, Q, q0, scratch);
    free(scratch);
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Weight packing: dst[g][block][a][b][c][lane] = w[g*st_g + a*st_a + b*st_b + c*st_c +
 * (c0 + lane)*st_o] for lanes c0 + lane < O, zero beyond; blocks of BW lanes over O rounded up
 * to whole vectors (the last block narrower), groups of KH*KW*C*round_up(O, VL) values.
 * ---------------------------------------------------------------------------------------- */
#define PACK_C 64
/* filters of fewer values are packed on one thread */
#define PACK_PARALLEL_MIN (1 << 17)

#if defined(__AVX__)
/* dst[j*dstride + i] = src[i*sstride + j] for i, j < 8 */
static inline void transpose8(const float *src, i64 sstride, float *dst, i64 dstride)
{
    __m256 r[8], t[8], u[8];
    for (int i = 0; i < 8; i++)
        r[i] = _mm256_loadu_ps(src + i * sstride);
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        u[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int j = 0; j < 4; j++) {
        _mm256_storeu_ps(dst + j * dstride, _mm256_permute2f128_ps(u[j], u[j + 4], 0x20));
        _mm256_storeu_ps(dst + (j + 4) * dstride, _mm256_permute2f128_ps(u[j], u[j + 4], 0x31));
    }
}
#endif

typedef struct {
    const float *w;
    i64 st_g, st_a, st_b, st_c, st_o, G, KH, KW, C, O;
    float *dst;
    i64 next; /* shared counter of (group, block) items */
} pack_job;

static void pack_worker(void *p, int index)
{
    (void)index;
    pack_job *J = p;
    const i64 op = (J->O + VL - 1) / VL * VL, nblk = (op + BW - 1) / BW;
    const i64 T = J->KH * J->KW, per_group = T * J->C * op;
    for (;;) {
        const i64 item = __atomic_fetch_add(&J->next, 1, __ATOMIC_RELAXED);
        if (item >= J->G * nblk)
            return;
        const i64 gi = item / nblk, c0 = (item % nblk) * BW;
        const i64 width = op - c0 < BW ? op - c0 : BW;
        const i64 wr = J->O - c0 < width ? J->O - c0 : width;
        float *d = J->dst + gi * per_group + c0 * T * J->C;
        const float *wg = J->w + gi * J->st_g + c0 * J->st_o;
        for (i64 a = 0; a < J->KH; a++)
            for (i64 b = 0; b < J->KW; b++) {
                const float *wt = wg + a * J->st_a + b * J->st_b;
                float *dt = d + (a * J->KW + b) * J->C * width;
                /* PACK_C channels at a time, so the lines written stay in L1 while every
                 * lane fills them */
                for (i64 cb = 0; cb < J->C; cb += PACK_C) {
                    const i64 ce = cb + PACK_C < J->C ? cb + PACK_C : J->C;
                    i64 l = 0;
#if defined(__AVX__)
                    if (J->st_c == 1) /* 8 x 8 blocks through registers */
                        for (; l + 8 <= wr; l += 8) {
                            i64 c = cb;
                            for (; c + 8 <= ce; c += 8)
                                transpose8(wt + l * J->st_o + c, J->st_o, dt + c * width + l,
                                           width);
                            for (; c < ce; c++)
                                for (i64 k = l; k < l + 8; k++)
                                    dt[c * width + k] = wt[k * J->st_o + c];
                        }
#endif
                    for (; l < wr; l++) {
                        const float *wl = wt + l * J->st_o;
                        if (J->st_c == 1)
                            for (i64 c = cb; c < ce; c++)
                                dt[c * width + l] = wl[c];
                        else
                            for (i64 c = cb; c < ce; c++)
                                dt[c * width + l] = wl[c * J->st_c];
                    }
                    for (i64 l = wr; l < width; l++)
                        for (i64 c = cb; c < ce; c++)
                            dt[c * width + l] = 0.0f;
                }
            }
    }
}

/* Pack a filter as described above on nthreads threads. Returns 0, or -1 for bad sizes. */
int opgraph_pack_f32(const float *w, i64 st_g, i64 st_a, i64 st_b, i64 st_c, i64 st_o, i64 G,
                     i64 KH, i64 KW, i64 C, i64 O, float *dst, i64 nthreads)
{
    if (G <= 0 || KH <= 0 || KW <= 0 || C <= 0 || O <= 0)
        return -1;
    pack_job J = {w, st_g, st_a, st_b, st_c, st_o, G, KH, KW, C, O, dst, 0};
    const i64 nblk = ((O + VL - 1) / VL * VL + BW - 1) / BW;
    if ((double)G * KH * KW * C * O < PACK_PARALLEL_MIN)
        nthreads = 1; /* (waking a thread costs more than packing a small filter) */
    opgraph_run_threads(pack_worker, &J, nthreads < G * nblk ? nthreads : G * nblk);
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * The input gradient of a convolution (the seed op), all of it in one call:
 *
 *   dx[n, h, x, g*cig + i] = sum over taps (a, b) and j < cog with h + pt - a*dh = q*sh,
 *       x + pl - b*dw = r*sw, 0 <= q < OH, 0 <= r < OW, of
 *       dy[n, q, r, g*cog + j] * w[a, b, i, g*cog + j]
 *
 * dx row h = ph + sh*qq (stride phase ph) reads dy row qq + (ph + pt - a*dh) / sh through the
 * taps a with (ph + pt - a*dh) % sh == 0, likewise for columns: each phase is a gather over dy
 * (step 1) into the strided view dx[:, ph::sh, pw::sw] with its own taps, whose weights are the
 * filter's taps in the packed filter (opgraph_pack_f32 of w as [a][b][j][i] per group). A phase
 * that no tap reaches is zero. Work items are (image, chunk of rows, group): the same rows of
 * every phase, which read about the same rows of dy; nthreads threads take them from a shared
 * counter.
 *
 * dy and dx are float32, float16 or bfloat16 (DT_*), accumulated in float32 and rounded once.
 * Float32 with contiguous channels is read and written in place; otherwise (NCHW: channels
 * strided; grouped NHWC: a group's channels within wider pixels; half types) an item stages
 * the dy rows it reads as float32 [row][pixel][channel] and
 * computes its dx rows into a float32 buffer of whole vectors, written back (converted) at the
 * end, so the temporaries are those of one item per thread.
 * ---------------------------------------------------------------------------------------- */
/* (element types: DT_* of conv_common.h) */

static inline float load_elem(const void *p, i64 i, int dt)
{
    if (dt == DT_F32)
        return ((const float *)p)[i];
    if (dt == DT_F16)
        return (float)((const _Float16 *)p)[i];
    union { uint32_t u; float f; } v = {(uint32_t)((const uint16_t *)p)[i] << 16};
    return v.f;
}

static inline void store_elem(void *p, i64 i, int dt, float x)
{
    if (dt == DT_F32) {
        ((float *)p)[i] = x;
    } else if (dt == DT_F16) {
        ((_Float16 *)p)[i] = (_Float16)x; /* round to nearest even */
    } else {
        union { float f; uint32_t u; } v = {x};
        uint32_t u = v.u;
        if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: keep it a (quiet) NaN */
            u = (u | 0x00400000u);
        else
            u += 0x7fffu + ((u >> 16) & 1u);
        ((uint16_t *)p)[i] = (uint16_t)(u >> 16);
    }
}


/* d[c] = s[c] for c < n, a vector at a time (a few channels: no call to memcpy) */
static inline void copy_run(float *d, const float *s, i64 n)
{
    i64 c = 0;
    for (; c + VL <= n; c += VL)
        *(vfu *)(d + c) = *(const vfu *)(s + c);
    for (; c < n; c++)
        d[c] = s[c];
}

#if defined(__AVX2__) && defined(__F16C__)
#define HALF_VECTORS 1
/* 8 half-precision values (dt DT_F16 or DT_BF16) from s as floats, and back (rounded to
 * nearest even; a bfloat16 NaN stays a quiet NaN, as store_elem) */
static inline __m256 half8_load(const uint16_t *s, int dt)
{
    const __m128i h = _mm_loadu_si128((const __m128i *)s);
    if (dt == DT_F16)
        return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

static inline void half8_store(uint16_t *d, __m256 x, int dt)
{
    __m128i h;
    if (dt == DT_F16) {
        h = _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    } else {
        const __m256i u = _mm256_castps_si256(x), one = _mm256_set1_epi32(1);
        const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff)),
                                               _mm256_set1_epi32(0x7f800000));
        const __m256i rounded = _mm256_add_epi32(
            u, _mm256_add_epi32(_mm256_set1_epi32(0x7fff),
                                _mm256_and_si256(_mm256_srli_epi32(u, 16), one)));
        const __m256i quiet = _mm256_or_si256(u, _mm256_set1_epi32(0x00400000));
        const __m256i r = _mm256_srli_epi32(_mm256_blendv_epi8(rounded, quiet, nan), 16);
        /* (packus works within 128-bit lanes: the lanes' 4 results each, then joined) */
        h = _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
    }
    _mm_storeu_si128((__m128i *)d, h);
}
#endif

/* d[c] = s[c] converted, c < n (half precision to float32 and back): 8 at a time */
static inline void half_run_in(float *d, const void *s, int dt, i64 n)
{
    i64 c = 0;
#ifdef HALF_VECTORS
    for (; c + 8 <= n; c += 8)
        _mm256_storeu_ps(d + c, half8_load((const uint16_t *)s + c, dt));
#endif
    for (; c < n; c++)
        d[c] = load_elem(s, c, dt);
}

static inline void half_run_out(void *d, const float *s, int dt, i64 n)
{
    i64 c = 0;
#ifdef HALF_VECTORS
    for (; c + 8 <= n; c += 8)
        half8_store((uint16_t *)d + c, _mm256_loadu_ps(s + c), dt);
#endif
    for (; c < n; c++)
        store_elem(d, c, dt, s[c]);
}

/* Between channel planes (planes[c*ps + p], of type dt) and float32 pixel rows (rows[p*rs
 * + c]) for c < nc and the first np / 8 * 8 pixels (returned; 0 where this build has no
 * vectors for dt): to_rows copies planes into rows, else rows into planes. 8 x 8 blocks
 * through registers (half precision converted through an 8 x 8 float buffer), blocks of 8
 * channels outermost, so 8 planes stream at a time, each from start to end (all of them at
 * once would be more streams than the prefetchers follow). The side copied from is only
 * read. */
static i64 planes_rows(void *planes, int dt, i64 ps, float *rows, i64 rs, i64 nc, i64 np,
                       int to_rows)
{
#if defined(__AVX__)
#ifndef HALF_VECTORS
    if (dt != DT_F32)
        return 0;
#endif
    const i64 pe = np / 8 * 8;
    float *f = planes;
    i64 c = 0;
    for (; c + 8 <= nc; c += 8)
        for (i64 p = 0; p < pe; p += 8) {
            if (dt == DT_F32 && to_rows) {
                transpose8(f + c * ps + p, ps, rows + p * rs + c, rs);
            } else if (dt == DT_F32) {
                transpose8(rows + p * rs + c, rs, f + c * ps + p, ps);
            } else {
#ifdef HALF_VECTORS
                uint16_t *h = planes;
                float b[64];
                if (to_rows) {
                    for (int i = 0; i < 8; i++)
                        _mm256_storeu_ps(b + 8 * i, half8_load(h + (c + i) * ps + p, dt));
                    transpose8(b, 8, rows + p * rs + c, rs);
                } else {
                    transpose8(rows + p * rs + c, rs, b, 8);
                    for (int i = 0; i < 8; i++)
                        half8_store(h + (c + i) * ps + p, _mm256_loadu_ps(b + 8 * i), dt);
                }
#endif
            }
        }
    for (; c < nc; c++)
        for (i64 p = 0; p < pe; p++) {
            if (to_rows)
                rows[p * rs + c] = load_elem(planes, c * ps + p, dt);
            else
                store_elem(planes, c * ps + p, dt, rows[p * rs + c]);
        }
    return pe;
#else
    (void)planes; (void)dt; (void)ps; (void)rows; (void)rs; (void)nc; (void)np; (void)to_rows;
    return 0;
#endif
}

/* dst[p*nc + c] = src[p*s_p + c*s_c] (converted) for p < np, c < nc */
__attribute__((noinline)) static void stage_in(const void *src, int dt, i64 s_p, i64 s_c,
                                               i64 np, i64 nc, float *dst)
{
    /* NCHW rows: 8 x 8 blocks through registers */
    const i64 p0 = s_p == 1 ? planes_rows((void *)src, dt, s_c, dst, nc, nc, np, 1) : 0;
    if (s_c == 1 && dt == DT_F32) { /* channels contiguous (a group's of NHWC): vectors */
        for (i64 p = p0; p < np; p++)
            copy_run(dst + p * nc, (const float *)src + p * s_p, nc);
    } else if (s_c == 1) {
        for (i64 p = p0; p < np; p++)
            half_run_in(dst + p * nc, (const uint16_t *)src + p * s_p, dt, nc);
    } else {
        for (i64 c = 0; c < nc; c++)
            for (i64 p = p0; p < np; p++)
                dst[p * nc + c] = load_elem(src, p * s_p + c * s_c, dt);
    }
}

/* dst[p*d_p + c*d_c] = src[p*ncp + c] (converted) for p < np, c < nc */
__attribute__((noinline)) static void stage_out(const float *src, i64 ncp, void *dst, int dt,
                                                i64 d_p, i64 d_c, i64 np, i64 nc)
{
    const i64 p0 = d_p == 1 ? planes_rows(dst, dt, d_c, (float *)src, ncp, nc, np, 0) : 0;
    if (d_c == 1 && dt == DT_F32) { /* channels contiguous (a group's of NHWC): vectors */
        for (i64 p = p0; p < np && p < p0 + 16; p++)
            __builtin_prefetch((float *)dst + p * d_p, 1);
        for (i64 p = p0; p < np; p++) {
            if (p + 16 < np)
                __builtin_prefetch((float *)dst + (p + 16) * d_p, 1);
            copy_run((float *)dst + p * d_p, src + p * ncp, nc);
        }
    } else if (d_c == 1) {
        for (i64 p = p0; p < np; p++)
            half_run_out((uint16_t *)dst + p * d_p, src + p * ncp, dt, nc);
    } else {
        for (i64 c = 0; c < nc; c++)
            for (i64 p = p0; p < np; p++)
                store_elem(dst, p * d_p + c * d_c, dt, src[p * ncp + c]);
    }
}

/* dst[i] = src[i] (dt: DT_F16 or DT_BF16) as float32 for i < n, in chunks on nthreads of the
 * pool's threads (numpy converts half precision a value at a time). Returns 0, -1 for a dt it
 * does not take. */
typedef struct {
    const uint16_t *src;
    float *dst;
    i64 n, next;
    int dt;
} half_job;
#define HALF_CHUNK (64 * 1024)

static void half_worker(void *arg, int index)
{
    (void)index;
    half_job *J = arg;
    for (;;) {
        const i64 i = __atomic_fetch_add(&J->next, 1, __ATOMIC_RELAXED) * HALF_CHUNK;
        if (i >= J->n)
            break;
        half_run_in(J->dst + i, J->src + i, J->dt, J->n - i < HALF_CHUNK ? J->n - i : HALF_CHUNK);
    }
}

int opgraph_half_to_f32(const void *src, i64 dt, i64 n, float *dst, i64 nthreads)
{
    if ((dt != DT_F16 && dt != DT_BF16) || n < 0)
        return -1;
    half_job J = {.src = src, .dst = dst, .n = n, .dt = (int)dt};
    const i64 chunks = (n + HALF_CHUNK - 1) / HALF_CHUNK;
    if (chunks > 0)
        opgraph_run_threads(half_worker, &J, nthreads < chunks ? nthreads : chunks);
    return 0;
}
#undef HALF_CHUNK

/* The staging copies for the other kernels (declared in conv_common.h). */
void opgraph_stage_in(const void *src, int dt, i64 s_p, i64 s_c, i64 np, i64 nc, float *dst)
{
    stage_in(src, dt, s_p, s_c, np, nc, dst);
}

void opgraph_stage_out(const float *src, i64 ncp, void *dst, int dt, i64 d_p, i64 d_c, i64 np,
                       i64 nc)
{
    stage_out(src, ncp, dst, dt, d_p, d_c, np, nc);
}

void opgraph_stage_in_f32(const float *src, i64 s_p, i64 s_c, i64 np, i64 nc, float *dst)
{
    stage_in(src, DT_F32, s_p, s_c, np, nc, dst);
}

void opgraph_stage_out_f32(const float *src, i64 ncp, float *dst, i64 d_p, i64 d_c, i64 np,
                           i64 nc)
{
    stage_out(src, ncp, dst, DT_F32, d_p, d_c, np, nc);
}

/* A whole convolution-shaped job for the threads: phases (ph, pw) < (P_h, P_w) of out, each the
 * strided view out[:, ph::P_h, pw::P_w] gathered from src with steps (steph, stepw) through its
 * taps (ptab/taps), groups of Cs source and Co output channels, packed weights per group. */
typedef struct {
    const void *src;
    i64 s_n, s_h, s_w, s_c, Hs, Ws;
    void *out;
    i64 o_n, o_h, o_w, o_c, N, Ho, Wo;
    i64 G, Cs, Co, KH, KW, P_h, P_w, steph, stepw;
    const float *wpk;
    i64 rows, nchunk; /* phase rows per item, chunks per phase */
    i64 cchunk;       /* source channels per weight chunk (0: automatic) */
    const i64 *ptab;  /* per phase (ph*P_w + pw): th, tw, start in taps (offh, wih, offw, wiw) */
    const i64 *taps;
    i64 maxth;        /* most row taps of a phase */
    i64 scratch;      /* i64 elements of tap-table scratch per thread */
    i64 off_lo, off_hi; /* least and greatest source row offset of any phase's taps */
    int dt;           /* DT_* of src and out */
    i64 next;         /* shared item counter */
    int failed;
    i64 nb, nblk_n;   /* images per item, image blocks */
    i64 lanes, nlane; /* output channels per item (a multiple of BW), lane chunks */
} conv_job;

static void zero_rows(void *o, int dt, i64 o_h, i64 o_w, i64 o_c, i64 Q, i64 R, i64 C)
{
    for (i64 q = 0; q < Q; q++)
        for (i64 r = 0; r < R; r++)
            for (i64 c = 0; c < C; c++)
                store_elem(o, q * o_h + r * o_w + c * o_c, dt, 0.0f);
}

/* a per-thread float32 buffer of at least n elements (grown, never shrunk); NULL when out of
 * memory */
static float *grow(float **buf, i64 *cap, i64 n)
{
    if (n > *cap) {
        free(*buf);
        *buf = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
        *cap = *buf ? n : 0;
    }
    return *buf;
}

/* Whether an item stages its source rows / output rows through float32 [row][pixel][channel]
 * buffers: half types, strided channels (NCHW), and a group's channels spread over wider
 * pixels (grouped NHWC: the microkernel then reads one cache line of every source pixel per
 * group and writes one of every output pixel; staged, the lines are the group's alone). */
static int job_stages_src(const conv_job *J)
{
    return J->dt != DT_F32 || J->s_c != 1 || (J->G > 1 && J->s_w != J->Cs);
}

static int job_stages_dst(const conv_job *J)
{
    return J->dt != DT_F32 || J->o_c != 1 || (J->G > 1 && J->o_w != J->Co);
}

/* Work items are (block of images, chunk of rows, group, chunk of output channels): the same
 * rows of every phase, which read about the same source rows (staged once per item when the
 * source needs staging; such items have one image). */
static void conv_worker(void *p, int index)
{
    (void)index;
    conv_job *J = p;
    i64 *scratch = malloc(sizeof(i64) * (size_t)(J->scratch + J->maxth));
    float *sbuf = NULL, *obuf = NULL;
    i64 scap = 0, ocap = 0;
    if (!scratch) {
        __atomic_store_n(&J->failed, 1, __ATOMIC_RELAXED);
        return;
    }
    i64 *offh_s = scratch + J->scratch; /* a phase's row offsets into the staged rows */
    const int dt = J->dt, es = dt == DT_F32 ? 4 : 2;
    const int stage_src = job_stages_src(J), stage_dst = job_stages_dst(J);
    const i64 total = J->nblk_n * J->nchunk * J->G * J->nlane;
    const i64 cop = (J->Co + VL - 1) / VL * VL, wtaps = J->KH * J->KW;
    const i64 d_h = J->P_h * J->o_h, d_w = J->P_w * J->o_w;
    for (;;) {
        const i64 item = __atomic_fetch_add(&J->next, 1, __ATOMIC_RELAXED);
        if (item >= total || __atomic_load_n(&J->failed, __ATOMIC_RELAXED))
            break;
        const i64 lc = item % J->nlane, rest = item / J->nlane;
        const i64 gi = rest % J->G, j = rest / J->G % J->nchunk, n = rest / (J->G * J->nchunk)
                                                                     * J->nb;
        const i64 nn = J->N - n < J->nb ? J->N - n : J->nb;  /* images [n, n + nn) */
        const i64 l0 = lc * J->lanes;                          /* output channels [l0, l0 + co) */
        const i64 co = J->Co - l0 < J->lanes ? J->Co - l0 : J->lanes;
        const i64 cop_i = (co + VL - 1) / VL * VL;
        const i64 q0 = j * J->rows; /* rows [q0, q0 + rows) of every phase (fewer at the end) */
        const char *src = (const char *)J->src + es * (n * J->s_n + gi * J->Cs * J->s_c);
        const float *s_f = (const float *)src;
        i64 s_n = J->s_n, s_h = J->s_h, s_w = J->s_w, s_c = J->s_c, Hs = J->Hs, base = 0;
        if (stage_src) { /* the source rows [r0, r1) any phase reads, float32 [row][px][ch] */
            i64 r0 = q0 * J->steph + J->off_lo;
            i64 r1 = (q0 + J->rows - 1) * J->steph + J->off_hi + 1;
            r0 = r0 < 0 ? 0 : r0 > J->Hs ? J->Hs : r0;
            r1 = r1 > J->Hs ? J->Hs : r1 < r0 ? r0 : r1;
            if (!grow(&sbuf, &scap, (r1 - r0) * J->Ws * J->Cs + 1)) {
                __atomic_store_n(&J->failed, 1, __ATOMIC_RELAXED);
                break;
            }
            for (i64 rr = r0; rr < r1; rr++)
                stage_in(src + es * rr * J->s_h, dt, J->s_w, J->s_c, J->Ws, J->Cs,
                         sbuf + (rr - r0) * J->Ws * J->Cs);
            s_f = sbuf;
            s_n = 0;
            s_h = J->Ws * J->Cs;
            s_w = J->Cs;
            s_c = 1;
            Hs = r1 - r0;
            base = r0; /* rows outside [r0, r1) are outside the source too, or never read */
        }
        /* Staged outputs: the column phases of a row phase are computed into one buffer of
         * whole dx rows, float32 [row][column][cop_i] (phase pw's pixel r at column
         * r*P_w + pw), and written back once per row phase: one pass of contiguous rows, so
         * an NCHW dx is written by 8 x 8 transposes, not by stride-P_w scalar stores. */
        int oom = 0;
        for (i64 ph = 0; ph < J->P_h && ph < J->Ho; ph++) {
            const i64 Qp = (J->Ho - ph + J->P_h - 1) / J->P_h;
            const i64 q1 = q0 + J->rows < Qp ? q0 + J->rows : Qp;
            if (q0 >= q1)
                continue;
            /* out rows [q0, q1) of this row phase, from column 0 */
            char *orow = (char *)J->out + es * (n * J->o_n + (ph + J->P_h * q0) * J->o_h +
                                                (gi * J->Co + l0) * J->o_c);
            if (stage_dst && !grow(&obuf, &ocap, (q1 - q0) * J->Wo * cop_i)) {
                oom = 1;
                break;
            }
            for (i64 pw = 0; pw < J->P_w && pw < J->Wo; pw++) {
                const i64 Rp = (J->Wo - pw + J->P_w - 1) / J->P_w;
                char *out = orow + es * pw * J->o_w;
                const i64 *pt = J->ptab + 3 * (ph * J->P_w + pw);
                const i64 th = pt[0], tw = pt[1];
                if (th == 0 || tw == 0) {
                    if (stage_dst)
                        zero_rows(obuf + pw * cop_i, DT_F32, J->Wo * cop_i, J->P_w * cop_i, 1,
                                  q1 - q0, Rp, cop_i);
                    else
                        for (i64 i = 0; i < nn; i++)
                            zero_rows(out + es * i * J->o_n, dt, d_h, d_w, J->o_c, q1 - q0,
                                      Rp, co);
                    continue;
                }
                const i64 *offh = J->taps + pt[2], *wih = offh + th, *offw = wih + th;
                const i64 *wiw = offw + tw;
                if (base) {
                    for (i64 t = 0; t < th; t++)
                        offh_s[t] = offh[t] - base;
                    offh = offh_s;
                }
                /* (a lane chunk starts on a block: its packed weights are the blocks from l0) */
                gather_geom g = {s_f, s_n, s_h, s_w, s_c, Hs, J->Ws, J->Cs, (float *)out,
                                 J->o_n, d_h, d_w, J->o_c, Rp, co, offh, offw, wih, wiw, th, tw,
                                 J->KW, wtaps, J->steph, J->stepw,
                                 J->wpk + gi * wtaps * J->Cs * cop + l0 * wtaps * J->Cs,
                                 J->cchunk};
                if (stage_dst) { /* whole vectors; the padded lanes are not written back */
                    g.out = obuf + pw * cop_i;
                    g.o_n = 0;
                    g.o_h = J->Wo * cop_i;
                    g.o_w = J->P_w * cop_i;
                    g.o_c = 1;
                    g.Co = cop_i;
                }
                gather_rows(&g, nn, q1 - q0, q0, scratch); /* (staged items have one image) */
            }
            if (stage_dst)
                for (i64 q = 0; q < q1 - q0; q++)
                    stage_out(obuf + q * J->Wo * cop_i, cop_i, orow + es * q * d_h, dt,
                              J->o_w, J->o_c, J->Wo, co);
        }
        if (oom) {
            __atomic_store_n(&J->failed, 1, __ATOMIC_RELAXED);
            break;
        }
    }
    free(scratch);
    free(sbuf);
    free(obuf);
}

/* The work items of J when rows is automatic (returned; J's image block and lane chunk set).
 * An item reads its group's packed filter slice
 * once per item and its source rows once per weight block, so the traffic is about
 * (image blocks x row chunks) x the filter + (blocks of output channels) x the source. With a
 * filter smaller than an image's source (most layers at a batch): an item is one image and
 * rows whose source and output are near 256 KiB, halved until there are 4 items per thread.
 * With a larger filter (a batch-1 layer of 512 channels has an 8 MiB filter and 0.5 MiB of
 * dy): an item takes as many images as the filter outweighs (all of them, unstaged, for a
 * small batch) and all their rows, and the items split the output channels instead, in
 * chunks of whole blocks, so each filter slice is read once; rows are split further only when
 * that leaves fewer than 4 items per thread. */
static i64 plan_items(conv_job *J, i64 Qmax, i64 nthreads, int staged)
{
    const i64 cop = J->lanes, nblocks = (cop + BW - 1) / BW; /* (J: one image, all lanes) */
    const double wbytes = 4.0 * (double)J->KH * J->KW * J->Cs * cop;
    const double sbytes = 4.0 * (double)J->Hs * J->Ws * J->Cs;
    const i64 want = 4 * nthreads;
    const double row_bytes = 4.0 * ((double)J->steph * J->Ws * J->Cs +
                                    (double)J->P_h * J->Wo * J->Co);
    i64 rows = (i64)((1 << 18) / (row_bytes > 1 ? row_bytes : 1));
    if (wbytes > sbytes && nblocks > 1) {
        const double fit = wbytes / (sbytes > 1 ? sbytes : 1);
        J->nb = staged ? 1 : fit >= (double)J->N ? J->N : (i64)fit;
        const i64 others = (J->N + J->nb - 1) / J->nb * J->G;
        i64 nlane = others >= want ? 1 : (want + others - 1) / others;
        if (nlane > nblocks)
            nlane = nblocks;
        J->lanes = (nblocks + nlane - 1) / nlane * BW;
        J->nlane = (cop + J->lanes - 1) / J->lanes;
        rows = Qmax;
    }
    if (rows < 1)
        rows = 1;
    const i64 others = (J->N + J->nb - 1) / J->nb * J->G * J->nlane;
    while (rows > 1 && others * ((Qmax + rows - 1) / rows) < want)
        rows = (rows + 1) / 2;
    return rows;
}

/* Finish J (phase tables set) and run it: rows per item (0: automatic, plan_items; else items
 * are one image and every output channel), threads. Returns 0 or -2 (out of memory). */
static int run_conv_job(conv_job *J, i64 maxT, i64 maxtw, i64 rows, i64 nthreads)
{
    const i64 Qmax = (J->Ho + J->P_h - 1) / J->P_h, Rmax = (J->Wo + J->P_w - 1) / J->P_w;
    if (nthreads < 1)
        nthreads = 1;
    J->nb = 1;
    J->nlane = 1;
    J->lanes = (J->Co + VL - 1) / VL * VL;
    if (rows <= 0)
        rows = plan_items(J, Qmax, nthreads, job_stages_src(J) || job_stages_dst(J));
    if (rows > Qmax)
        rows = Qmax;
    J->rows = rows;
    J->nchunk = (Qmax + rows - 1) / rows;
    J->nblk_n = (J->N + J->nb - 1) / J->nb;
    J->scratch = gather_scratch(Rmax, maxT, maxtw);
    const i64 items = J->nblk_n * J->nchunk * J->G * J->nlane;
    opgraph_run_threads(conv_worker, J, nthreads < items ? nthreads : items);
    return J->failed ? -2 : 0;
}

/* The arguments both one-call entry points share: -1 when they do not take them, 0 when there
 * is nothing to compute (empty batch or output), 1 to go on. */
static int conv_args(i64 G, i64 cig, i64 cog, i64 KH, i64 KW, i64 sh, i64 sw, i64 dh, i64 dw,
                     i64 Hs, i64 Ws, i64 N, i64 Ho, i64 Wo, i64 dtype)
{
    if (G <= 0 || cig <= 0 || cog <= 0 || KH <= 0 || KW <= 0 || sh <= 0 || sw <= 0 ||
        dh <= 0 || dw <= 0 || Hs <= 0 || Ws <= 0 || dtype < DT_F32 || dtype > DT_BF16)
        return -1;
    if (KH > (1 << 20) || KW > (1 << 20)) /* (tap tables) */
        return -1;
    return N > 0 && Ho > 0 && Wo > 0;
}

/* See the comment above: dy [N, OH, OW, G*cog] and dx [N, H, W, G*cig] are views of any layout
 * (strides in elements) of type dtype (DT_*), wpk the packed float32 filter, rows the dx rows
 * of a phase per work item and cchunk the dy channels per weight chunk (0: automatic).
 * Returns 0, -1 for arguments it does not take, -2 when out of memory. */
int opgraph_bpi_f32(const void *dy, i64 y_n, i64 y_h, i64 y_w, i64 y_c, i64 OH, i64 OW,
                    void *dx, i64 x_n, i64 x_h, i64 x_w, i64 x_c, i64 N, i64 H, i64 W,
                    i64 G, i64 cig, i64 cog, i64 KH, i64 KW, i64 sh, i64 sw, i64 dh, i64 dw,
                    i64 pt, i64 pl, const float *wpk, i64 rows, i64 cchunk, i64 dtype,
                    i64 nthreads)
{
    const int ok = conv_args(G, cig, cog, KH, KW, sh, sw, dh, dw, OH, OW, N, H, W, dtype);
    if (ok <= 0)
        return ok;
    if (sh > (1 << 20) || sw > (1 << 20))
        return -1; /* (a table of sh*sw phases) */
    const i64 P = sh * sw;
    i64 *ptab = malloc(sizeof(i64) * (size_t)(3 * P + 2 * P * (KH + KW) + 1));
    if (!ptab)
        return -2;
    i64 *taps = ptab + 3 * P, ntaps = 0, maxT = 1, maxtw = 1, maxth = 1, off_lo = 0, off_hi = 0;
    int any_tap = 0;
    for (i64 ph = 0; ph < sh; ph++)
        for (i64 pw = 0; pw < sw; pw++) {
            i64 *e = ptab + 3 * (ph * sw + pw);
            e[2] = ntaps;
            /* taps in ascending dy offset: a from KH-1 down (offsets fall as a grows) */
            i64 th = 0, tw = 0, *oh = taps + ntaps;
            for (i64 a = KH - 1; a >= 0; a--)
                if ((ph + pt - a * dh) % sh == 0)
                    oh[th++] = (ph + pt - a * dh) / sh;
            i64 *wi = oh + th, k = 0;
            for (i64 a = KH - 1; a >= 0; a--)
                if ((ph + pt - a * dh) % sh == 0)
                    wi[k++] = a;
            i64 *ow = wi + th;
            for (i64 b = KW - 1; b >= 0; b--)
                if ((pw + pl - b * dw) % sw == 0)
                    ow[tw++] = (pw + pl - b * dw) / sw;
            i64 *wj = ow + tw;
            k = 0;
            for (i64 b = KW - 1; b >= 0; b--)
                if ((pw + pl - b * dw) % sw == 0)
                    wj[k++] = b;
            e[0] = th;
            e[1] = tw;
            if (th > 0 && tw > 0) {
                if (!any_tap || oh[0] < off_lo)
                    off_lo = oh[0];
                if (!any_tap || oh[th - 1] > off_hi)
                    off_hi = oh[th - 1];
                any_tap = 1;
            }
            ntaps += 2 * (th + tw);
            maxT = th * tw > maxT ? th * tw : maxT;
            maxtw = tw > maxtw ? tw : maxtw;
            maxth = th > maxth ? th : maxth;
        }
    conv_job J = {dy, y_n, y_h, y_w, y_c, OH, OW, dx, x_n, x_h, x_w, x_c, N, H, W, G, cog, cig,
                  KH, KW, sh, sw, 1, 1, wpk, 0, 0, cchunk, ptab, taps, maxth, 0, off_lo,
                  off_hi, (int)dtype, 0, 0};
    const int rc = run_conv_job(&J, maxT, maxtw, rows, nthreads);
    free(ptab);
    return rc;
}

/* A forward convolution in one call, on the same threads and staging:
 *   y[n, q, r, g*cog + o] = sum over taps (a, b) and i < cig of
 *       x[n, q*sh + a*dh - pt, r*sw + b*dw - pl, g*cig + i] * w[a, b, i, g*cog + o]
 * over the positions inside x; x [N, H, W, G*cig] and y [N, OH, OW, G*cog] views of any layout
 * (element strides) of type dtype, wpk = opgraph_pack_f32 of w as [a][b][i][o] per group. */
int opgraph_conv_f32(const void *x, i64 x_n, i64 x_h, i64 x_w, i64 x_c, i64 H, i64 W,
                     void *y, i64 y_n, i64 y_h, i64 y_w, i64 y_c, i64 N, i64 OH, i64 OW,
                     i64 G, i64 cig, i64 cog, i64 KH, i64 KW, i64 sh, i64 sw, i64 dh, i64 dw,
                     i64 pt, i64 pl, const float *wpk, i64 rows, i64 cchunk, i64 dtype,
                     i64 nthreads)
{
    const int ok = conv_args(G, cig, cog, KH, KW, sh, sw, dh, dw, H, W, N, OH, OW, dtype);
    if (ok <= 0)
        return ok;
    i64 *ptab = malloc(sizeof(i64) * (size_t)(3 + 2 * (KH + KW)));
    if (!ptab)
        return -2;
    i64 *taps = ptab + 3;
    for (i64 a = 0; a < KH; a++) {
        taps[a] = a * dh - pt;
        taps[KH + a] = a;
    }
    for (i64 b = 0; b < KW; b++) {
        taps[2 * KH + b] = b * dw - pl;
        taps[2 * KH + KW + b] = b;
    }
    ptab[0] = KH;
    ptab[1] = KW;
    ptab[2] = 0;
    conv_job J = {x, x_n, x_h, x_w, x_c, H, W, y, y_n, y_h, y_w, y_c, N, OH, OW, G, cig, cog,
                  KH, KW, 1, 1, sh, sw, wpk, 0, 0, cchunk, ptab, taps, KH, 0, -pt,
                  (KH - 1) * dh - pt, (int)dtype, 0, 0};
    const int rc = run_conv_job(&J, KH * KW, KW, rows, nthreads);
    free(ptab);
    return rc;
}

/* The pixel shuffle of a sub-pixel decomposition: dx[n, i*sh + a + oh0, j*sw + b + ow0, c] =
 * t[n, i, j, (a*sw + b)*cin + c] for the dx positions inside [0, H) x [0, W) (oh0, ow0 <= 0:
 * the first phases of row/column 0 may fall before dx), t a view of any strides
 * [N, TH, TW, sh*sw*cin] (a convolution's or a GEMM's result). Channels contiguous in dx
 * and t: one copy per dy pixel and row phase of the columns inside dx; dx columns contiguous
 * (NCHW) with t channels contiguous, column stride 1 or 2: blocks of 8 channels by 8x8
 * transposes (shuffle_planes); dx and t columns contiguous (a GEMM's channel-major result
 * into NCHW), column stride 1 or 2: row interleaves (shuffle_plane_rows); else per (image,
 * dx row, channel) one pass writing that dx row in column order. Work split over the pool by
 * (image, t row). */
typedef struct {
    const float *t;
    float *dx;
    i64 N, TH, TW, sh, sw, cin, oh0, ow0, H, W, tn, ti, tj, tk, xn, xh, xw, xc, next;
} shuffle_job;

/* o[2e] = s0[e], o[2e + 1] = s1[e] for e < n (two column phases into a contiguous row),
 * 8 pairs at a time where the vectors exist. */
static inline void interleave2(float *o, const float *s0, const float *s1, i64 n)
{
    i64 e = 0;
#if defined(__AVX__)
    for (; e + 8 <= n; e += 8)
        store_pairs16(o + 2 * e, _mm256_loadu_ps(s0 + e), _mm256_loadu_ps(s1 + e), 16);
#endif
    for (; e < n; e++) {
        o[2 * e] = s0[e];
        o[2 * e + 1] = s1[e];
    }
}

#if defined(__AVX__)
/* One dx row of the shuffle into channel planes (dx columns contiguous, t channels contiguous,
 * column stride SW of 1 or 2, no column offset): the 8-channel blocks c < cin rounded down
 * to 8, by 8 t columns, read as 8x8 transposes of t (tj apart, from lane offset k0 + b*cin
 * for phase b) and written as 8 * SW contiguous columns of each channel's row (the phases
 * interleaved). The t columns whose dx columns pass W (at most the last 8) are written from
 * the tile one by one. Returns the channels done. */
static i64 shuffle_planes(const float *trow, i64 tj, i64 k0, i64 cin, i64 SW, i64 TW, i64 W,
                          float *orow, i64 xc)
{
    float tile[2][64];
    const i64 cb = cin / 8 * 8;
    for (i64 c0 = 0; c0 < cb; c0 += 8)
        for (i64 j = 0; j < TW; j += 8) {
            const i64 nj = TW - j < 8 ? TW - j : 8;
            for (i64 b = 0; b < SW; b++) {
                const float *src = trow + j * tj + k0 + b * cin + c0;
                if (nj == 8) {
                    transpose8(src, tj, tile[b], 8);
                } else { /* tile[b][q*8 + jj] = t column j + jj, channel c0 + q */
                    for (i64 jj = 0; jj < nj; jj++)
                        for (int q = 0; q < 8; q++) tile[b][q * 8 + jj] = src[jj * tj + q];
                }
            }
            const int whole = (j + 8) * SW <= W;
            for (int q = 0; q < 8; q++) {
                float *o = orow + (c0 + q) * xc + j * SW;
                if (whole && SW == 2) {
                    store_pairs16(o, _mm256_loadu_ps(tile[0] + q * 8),
                                  _mm256_loadu_ps(tile[1] + q * 8), 16);
                } else if (whole) {
                    _mm256_storeu_ps(o, _mm256_loadu_ps(tile[0] + q * 8));
                } else {
                    for (i64 jj = 0; jj < nj; jj++)
                        for (i64 b = 0; b < SW; b++)
                            if ((j + jj) * SW + b < W) o[jj * SW + b] = tile[b][q * 8 + jj];
                }
            }
        }
    return cb;
}

/* One dx row of the shuffle from channel planes into channel planes (t and dx columns
 * contiguous: a GEMM's [channel][pixel] result into NCHW), column stride SW of 1 or 2, no
 * column offset: each channel's dx row is its SW phase rows of t (cin * tk apart) interleaved,
 * 8 t columns at a time (the last W - 8*SW*floor(.) columns masked). */
static void shuffle_plane_rows(const float *trow, i64 k0, i64 cin, i64 tk, i64 SW, i64 TW,
                               i64 W, float *orow, i64 xc)
{
    for (i64 c = 0; c < cin; c++) {
        const float *s0 = trow + (k0 + c) * tk, *s1 = s0 + cin * tk;
        float *o = orow + c * xc;
        if (SW == 1) {
            memcpy(o, s0, sizeof(float) * (size_t)(TW < W ? TW : W));
            continue;
        }
        const i64 pairs = TW < W / 2 ? TW : W / 2; /* (an odd W ends on a phase-0 column) */
        interleave2(o, s0, s1, pairs);
        if (pairs < TW && 2 * pairs < W)
            o[2 * pairs] = s0[pairs];
    }
}
#endif

static void shuffle_worker(void *arg, int index)
{
    (void)index;
    shuffle_job *J = arg;
    const i64 SW = J->sw, cin = J->cin, xw = J->xw, tj = J->tj, tk = J->tk, W = J->W;
    const i64 ow0 = J->ow0;
    for (;;) {
        const i64 k = __atomic_fetch_add(&J->next, 1, __ATOMIC_RELAXED);
        if (k >= J->N * J->TH)
            break;
        const i64 n = k / J->TH, i = k % J->TH;
        const float *trow = J->t + n * J->tn + i * J->ti;
        for (i64 a = 0; a < J->sh; a++) {
            const i64 h = i * J->sh + a + J->oh0;
            if (h < 0 || h >= J->H)
                continue;
            float *orow = J->dx + n * J->xn + h * J->xh;
            if (J->xc == 1 && xw == cin && tk == 1) {
                for (i64 j = 0; j < J->TW; j++) {
                    i64 x0 = j * SW + ow0, x1 = x0 + SW;
                    const i64 b0 = x0 < 0 ? -x0 : 0;
                    if (x1 > W) x1 = W;
                    if (x0 + b0 >= x1) continue;
                    memcpy(orow + (x0 + b0) * cin, trow + j * tj + (a * SW + b0) * cin,
                           sizeof(float) * (size_t)((x1 - x0 - b0) * cin));
                }
                continue;
            }
            i64 c = 0;
#if defined(__AVX__)
            if (xw == 1 && tk == 1 && ow0 == 0 && SW <= 2)
                c = shuffle_planes(trow, tj, a * SW * cin, cin, SW, J->TW, W, orow, J->xc);
            if (xw == 1 && tj == 1 && ow0 == 0 && SW <= 2 && c == 0) {
                shuffle_plane_rows(trow, a * SW * cin, cin, tk, SW, J->TW, W, orow, J->xc);
                continue;
            }
#endif
            for (; c < cin; c++) {
                float *o = orow + c * J->xc;
                const float *s = trow + (a * SW * cin + c) * tk;
                for (i64 j = 0; j < J->TW; j++, s += tj)
                    for (i64 b = 0; b < SW; b++) {
                        const i64 x = j * SW + b + ow0;
                        if (x >= 0 && x < W) o[x * xw] = s[b * cin * tk];
                    }
            }
        }
    }
}

int opgraph_shuffle_store_f32(const float *t, float *dx, i64 N, i64 TH, i64 TW, i64 sh,
                              i64 sw, i64 cin, i64 oh0, i64 ow0, i64 H, i64 W, i64 tn, i64 ti,
                              i64 tj, i64 tk, i64 xn, i64 xh, i64 xw, i64 xc, i64 nthreads)
{
    if (N < 0 || TH < 0 || TW < 0 || sh < 1 || sw < 1 || cin < 1 || nthreads < 1 || oh0 > 0
        || ow0 > 0 || oh0 <= -sh || ow0 <= -sw || H < 0 || W < 0)
        return -1;
    if (N * TH == 0 || TW == 0) return 0;
    shuffle_job J = {t, dx, N, TH, TW, sh, sw, cin, oh0, ow0, H, W, tn, ti, tj, tk,
                     xn, xh, xw, xc, 0};
    opgraph_run_threads(shuffle_worker, &J, nthreads < N * TH ? nthreads : N * TH);
    return 0;
}

/* The input gradient of a kernel that tiles dx exactly (kernel = stride, kw of 1 or 2, no
 * padding or dilation: U-Net's 2x2 up-convolutions) on channel planes (NCHW dy and dx):
 * dx[n, c, i*kh + a, j*kw + b] = sum_k w[a, b, c, k] * dy[n, k, i, j]. Per image it is the
 * GEMM [(a, c, b), k] x [k, pixel] whose rows, taken in pairs (b = 0, 1), interleave into dx
 * rows: dy panels of NV vectors of pixels (flat over the plane) are copied once per work
 * item, the microkernel runs RB filter rows x a panel's pixels over every k (the rows
 * broadcast, the panel the vector operand), and each tile goes straight from registers'
 * buffer into dx, so dx is written once and nothing is staged. An item takes up to 4 panels
 * (each filter row tile runs over all of them while it is in L1) or, where the filter
 * outweighs an image's dy, up to 16 panels and a share of the filter rows. wr: the filter
 * rearranged as [(a, c, b)][k] (ws its row stride). dy [N][Cout][OH][OW] with pixels
 * contiguous in a plane (element strides yn, yc), dx [N][Cin][kh*OH][kw*OW] with columns
 * contiguous (xn, xc, xh).
 * Returns 0, -1 for arguments it does not take, -2 when out of memory. */
typedef struct {
    const float *dy, *wr;
    float *dx;
    i64 N, Cout, OH, OW, Cin, kh, kw, yn, yc, xn, xc, xh, ws;
    i64 pp, ngroup; /* dy panels per work item, groups of them per image */
    i64 rchunk, nrc; /* filter rows per work item (whole tiles), chunks of them */
    i64 next;
    int failed;
} tiling_job;

/* A tile's rows (filter rows r0 .. r0 + rb of one dy panel, pixels p0 .. p0 + np of the
 * image's plane) into dx rows: pairs of rows (b = 0, 1) interleaved, one dy row at a time. */
static void tiling_store(const tiling_job *J, const float *tile, i64 r0, int rb, i64 p0,
                         i64 np, float *dxn)
{
    const i64 P = NV * VL, OW = J->OW, kw = J->kw;
    for (int m = 0; m < rb; m += (int)kw) { /* filter row (a, c, b = 0) */
        const i64 ac = (r0 + m) / kw, a = ac / J->Cin, c = ac % J->Cin;
        const float *t0 = tile + m * P, *t1 = t0 + (kw == 2 ? P : 0);
        for (i64 q = 0; q < np;) { /* pixels of one dy row at a time */
            const i64 p = p0 + q, i = p / OW, j = p % OW;
            const i64 len = OW - j < np - q ? OW - j : np - q;
            float *o = dxn + c * J->xc + (i * J->kh + a) * J->xh + j * kw;
            if (kw == 1)
                memcpy(o, t0 + q, sizeof(float) * (size_t)len);
            else
                interleave2(o, t0 + q, t1 + q, len);
            q += len;
        }
    }
}

static void tiling_worker(void *arg, int index)
{
    (void)index;
    tiling_job *J = arg;
    const i64 P = NV * VL, Cout = J->Cout, npix = J->OH * J->OW, PP = J->pp;
    const i64 rows = J->kh * J->Cin * J->kw, zero = 0;
    float *panels = malloc(sizeof(float) * (size_t)(PP * Cout * P));
    float tile[RB * NV * VL];
    if (!panels) {
        __atomic_store_n(&J->failed, 1, __ATOMIC_RELAXED);
        return;
    }
    for (;;) {
        const i64 item = __atomic_fetch_add(&J->next, 1, __ATOMIC_RELAXED);
        if (item >= J->N * J->ngroup * J->nrc || __atomic_load_n(&J->failed, __ATOMIC_RELAXED))
            break;
        /* an item: PP panels of one image, each of its filter row tiles over each of them
         * (the tile's filter rows stay in L1 across the panels) */
        const i64 rc = item % J->nrc, gi = item / J->nrc;
        const i64 n = gi / J->ngroup, g0 = gi % J->ngroup * PP * P;
        const i64 ra = rc * J->rchunk, rz = ra + J->rchunk < rows ? ra + J->rchunk : rows;
        const i64 npan = (npix - g0 + P - 1) / P < PP ? (npix - g0 + P - 1) / P : PP;
        const float *dyn = J->dy + n * J->yn;
        for (i64 u = 0; u < npan; u++) {
            const i64 p0 = g0 + u * P, np = npix - p0 < P ? npix - p0 : P;
            float *pan = panels + u * Cout * P;
            for (i64 k = 0; k < Cout; k++) {
                memcpy(pan + k * P, dyn + p0 + k * J->yc, sizeof(float) * (size_t)np);
                if (np < P) memset(pan + k * P + np, 0, sizeof(float) * (size_t)(P - np));
            }
        }
        float *dxn = J->dx + n * J->xn;
        for (i64 r0 = ra; r0 < rz; r0 += RB) {
            const int rb = (int)(rz - r0 < RB ? rz - r0 : RB);
            for (i64 u = 0; u < npan; u++) {
                const i64 p0 = g0 + u * P, np = npix - p0 < P ? npix - p0 : P;
                MICRO_TABLE[NV - 1][rb - 1](J->wr + r0 * J->ws, J->ws, 1, &zero, &zero, 1, Cout,
                                            panels + u * Cout * P, tile, P, 1, 0, (int)P);
                tiling_store(J, tile, r0, rb, p0, np, dxn);
            }
        }
    }
    free(panels);
}

int opgraph_tiling_planes_f32(const float *dy, const float *wr, float *dx, i64 N, i64 Cout,
                              i64 OH, i64 OW, i64 Cin, i64 kh, i64 kw, i64 yn, i64 yc, i64 xn,
                              i64 xc, i64 xh, i64 ws, i64 nthreads)
{
    if (N < 0 || Cout < 1 || OH < 1 || OW < 1 || Cin < 1 || kh < 1 || kw < 1 || kw > 2
        || ws < Cout || nthreads < 1 || (kw == 2 && RB % 2))
        return -1;
    const i64 P = NV * VL, npanel = (OH * OW + P - 1) / P;
    /* panels per item: up to 4 (the filter streamed once per 4 panels, not per panel; their
     * Cout x 4P floats stay in L2), fewer while that leaves fewer than 4 items per thread */
    const i64 rows = kh * Cin * kw, tiles = (rows + RB - 1) / RB;
    i64 pp = 4, nrc = 1;
    if (rows > OH * OW) {
        /* a filter larger than an image's dy (batch-1 decoder layers): up to 16 panels per
         * item and the items split the filter rows, so the filter is read once per 16 panels
         * rather than once per panel */
        pp = npanel < 16 ? npanel : 16;
        const i64 groups = N * ((npanel + pp - 1) / pp);
        nrc = groups >= 4 * nthreads ? 1 : (4 * nthreads + groups - 1) / groups;
        nrc = nrc > tiles ? tiles : nrc;
    } else {
        while (pp > 1 && N * ((npanel + pp - 1) / pp) < 4 * nthreads)
            pp--;
    }
    const i64 rchunk = (tiles + nrc - 1) / nrc * RB;
    tiling_job J = {dy, wr, dx, N, Cout, OH, OW, Cin, kh, kw, yn, yc, xn, xc, xh, ws, pp,
                    (npanel + pp - 1) / pp, rchunk, (rows + rchunk - 1) / rchunk, 0, 0};
    const i64 items = N * J.ngroup * J.nrc;
    if (items == 0) return 0;
    opgraph_run_threads(tiling_worker, &J, nthreads < items ? nthreads : items);
    return J.failed ? -2 : 0;
}

/* The same exactly tiling input gradient on channels-contiguous operands (NHWC dy and dx):
 * per kernel tap (a, b), dx[n, i*kh + a, j*kw + b, :] = dy[n, i, j, :] @ w[a, b]^T, one GEMM
 * over every dy pixel. The microkernel's rows are dy pixels taken flat over the batch (dy
 * contiguous), so a register tile is RB pixels even where dy rows are shorter (U-Net's 16
 * pixels: tiles of 14 rather than 8 + 8); a tile inside one dy row is written straight into
 * dx, one that spans rows through a small buffer, row by row. wpk: the filter packed by
 * opgraph_pack_f32 for the input gradient (lanes dx channels, reduced dy channels, taps
 * a*kw + b). Work items: blocks of at most 8 tiles of pixels with every tap and channel
 * block, or, where the filter outweighs dy, every pixel with a share of the (tap, block)
 * pairs. dx [N][kh*OH][kw*OW][Cin] with channels contiguous (element strides xn, xh, xw).
 * Returns 0, -1 for arguments it does not take. */
typedef struct {
    const float *dy, *wpk;
    float *dx;
    i64 N, OH, OW, Cout, Cin, kh, kw, xn, xh, xw;
    i64 pb, nblk;   /* pixels per item, pixel blocks */
    i64 wchunk, nwc; /* (tap, channel block) pairs per item, chunks of them */
    i64 next;
} tiling_px_job;

/* One register tile of tiling_px_worker: pixels [r0, r0 + rb) of tap (a, b), dx channels
 * [c0, c0 + width) (wr of them real). */
static void tiling_px_tile(const tiling_px_job *J, i64 r0, int rb, i64 a, i64 b, i64 c0,
                           int nv, int wr, const float *panel, float *tile)
{
    const i64 K = J->Cout, plane = J->OH * J->OW, zero = 0, width = (i64)nv * VL;
    const i64 n = r0 / plane, i = r0 % plane / J->OW, j = r0 % J->OW;
    const float *s = J->dy + r0 * K;
    if (j + rb <= J->OW) { /* one dy row: straight into dx */
        MICRO_TABLE[nv - 1][rb - 1](s, K, 1, &zero, &zero, 1, K, panel,
                                    J->dx + n * J->xn + (i * J->kh + a) * J->xh
                                        + (j * J->kw + b) * J->xw + c0,
                                    J->kw * J->xw, 1, 0, wr);
        return;
    }
    MICRO_TABLE[nv - 1][rb - 1](s, K, 1, &zero, &zero, 1, K, panel, tile, width, 1, 0,
                                (int)width);
    for (int r = 0; r < rb; r++) {
        const i64 p = r0 + r, pn = p / plane, pi = p % plane / J->OW, pj = p % J->OW;
        copy_run(J->dx + pn * J->xn + (pi * J->kh + a) * J->xh + (pj * J->kw + b) * J->xw + c0,
                 tile + r * width, wr);
    }
}

static void tiling_px_worker(void *arg, int index)
{
    (void)index;
    tiling_px_job *J = arg;
    const i64 K = J->Cout, T = J->kh * J->kw, cop = (J->Cin + VL - 1) / VL * VL;
    const i64 npix = J->N * J->OH * J->OW, nb = (cop + BW - 1) / BW;
    /* the packed weights within PIXEL_MAJOR_WEIGHT_BYTES: per tile every tap and channel
     * block, so the tile's dy rows stay in L1 and its dx pixels are written whole; else per
     * tap and block all the item's tiles, each panel streamed from L2 (as the one-call
     * kernel orders its loops) */
    const int pixel_major = T * K * cop * 4 <= PIXEL_MAJOR_WEIGHT_BYTES;
    float tile[RB * NV * VL];
    for (;;) {
        const i64 item = __atomic_fetch_add(&J->next, 1, __ATOMIC_RELAXED);
        if (item >= J->nblk * J->nwc)
            break;
        const i64 p0 = item / J->nwc * J->pb, p1 = p0 + J->pb < npix ? p0 + J->pb : npix;
        const i64 w0 = item % J->nwc * J->wchunk; /* (tap, block) pairs [w0, w0 + nw) */
        const i64 nw = T * nb - w0 < J->wchunk ? T * nb - w0 : J->wchunk;
        const i64 nr = (p1 - p0 + RB - 1) / RB;
        for (i64 x = 0; x < nr * nw; x++) {
            const i64 ri = pixel_major ? x / nw : x % nr;
            const i64 tb = w0 + (pixel_major ? x % nw : x / nr);
            const i64 t = tb / nb, c0 = tb % nb * BW, r0 = p0 + ri * RB;
            const int nv = cop - c0 >= BW ? NV : (int)((cop - c0) / VL);
            const i64 width = (i64)nv * VL;
            const int wr = (int)(J->Cin - c0 < width ? J->Cin - c0 : width);
            tiling_px_tile(J, r0, (int)(p1 - r0 < RB ? p1 - r0 : RB), t / J->kw, t % J->kw,
                           c0, nv, wr, J->wpk + c0 * T * K + t * K * width, tile);
        }
    }
}

int opgraph_tiling_pixels_f32(const float *dy, const float *wpk, float *dx, i64 N, i64 OH,
                              i64 OW, i64 Cout, i64 Cin, i64 kh, i64 kw, i64 xn, i64 xh, i64 xw,
                              i64 nthreads)
{
    if (N < 0 || OH < 1 || OW < 1 || Cout < 1 || Cin < 1 || kh < 1 || kw < 1 || nthreads < 1)
        return -1;
    const i64 npix = N * OH * OW, cop = (Cin + VL - 1) / VL * VL;
    const i64 nw = kh * kw * ((cop + BW - 1) / BW); /* (tap, channel block) pairs */
    i64 pb = 8 * RB, wchunk = nw;
    if (kh * kw * cop > npix) {
        /* a filter larger than dy (batch-1 decoder layers): every pixel per item, the items
         * splitting the (tap, block) pairs, so the filter is read once, not once per block of
         * pixels */
        pb = npix;
        wchunk = (nw + 4 * nthreads - 1) / (4 * nthreads);
    } else {
        while (pb > RB && (npix + pb - 1) / pb < 4 * nthreads)
            pb -= RB;
    }
    tiling_px_job J = {dy, wpk, dx, N, OH, OW, Cout, Cin, kh, kw, xn, xh, xw, pb,
                       (npix + pb - 1) / pb, wchunk, (nw + wchunk - 1) / wchunk, 0};
    const i64 items = J.nblk * J.nwc;
    if (items == 0) return 0;
    opgraph_run_threads(tiling_px_worker, &J, nthreads < items ? nthreads : items);
    return 0;
}
