/* Winograd F(2x2, 2x2) input gradient of a 4x4 stride-2 convolution (DCGAN's, pix2pix's and
 * FCN's 2x upsampling layers), in float32 arithmetic, channels contiguous. Built with
 * conv_gather.c, whose microkernel runs the transformed products; called from conv_impl.py's
 * "winograd" path.
 *
 * A 4x4 kernel at stride 2 gives every stride phase (ph, pw) of dx two taps per axis, reading
 * two adjacent dy rows and columns: phase output (q, r) = sum over u, v < 2 of
 * dy[q + oh + u, r + ow + v, :] @ g[u][v] with g[u][v] = w[amax - 2u, bmax - 2v] (amax, bmax
 * the phase's largest tap). That is a stride-1 2x2 correlation, which F(2x2, 2x2) computes per
 * 2x2 tile of outputs from the tile's 3x3 patch of dy with 9 products instead of 16:
 *
 *   V = Bt d B    Bt = [[1, -1, 0], [0, 1, 0], [0, -1, 1]]   (per dy channel)
 *   U = G g Gt    G  = [[1, 0], [1, 1], [0, 1]]               (per channel pair; conv_impl.py)
 *   M[s][u] = sum over dy channels of V[s][u] * U[s][u]       (9 GEMMs: tiles x Cout x Cin)
 *   Y = At M A    At = [[1, 1, 0], [0, 1, 1]]
 *
 * Every coefficient is 0 or +-1, so the transforms are additions and the result differs from
 * the direct sum by rounding only (each output is the same terms, regrouped). dy positions
 * outside dy read zero, which is exact only for finite values: the caller runs this path only
 * when dy and the filter are finite (an inf would otherwise leak into its tile's neighbours).
 *
 * Work items are blocks of tb tiles of one phase (tiles numbered over images, tile rows and
 * tile columns); each thread transforms its block's patches into V [9][tb][Cout], runs the 9
 * products into M [9][tb][cop] (cop = Cin rounded up to whole vectors) one weight block at a
 * time (its panel stays in L1 across the tiles), and adds nothing: it writes each dx element
 * once. Temporaries: V and M per thread, 36 * tb * (Cout + cop) bytes.
 *
 * Channel-strided operands (NCHW) are staged, as conv_gather.c stages them: an item is then one
 * tile row of one image and row phase (several where a row has fewer tiles than tb, so small
 * maps still feed the microkernel whole register tiles), a chunk of up to tb / 2 tile columns,
 * both column phases; its dy rows (those columns) are copied into [row][pixel][channel] rows,
 * and its dx rows (both column phases interleaved, so whole rows) are computed into such rows
 * and written back once, by 8 x 8 transposes for NCHW. Float16 and bfloat16 operands (P_DT)
 * take the staged path in any layout: the staging converts an item's dy rows to float32 and
 * rounds its dx rows once on the way back, so the temporaries stay those of one item.
 */
#include "conv_common.h"
#include <string.h>

/* Parameter block (i64): */
enum {
    P_N, P_OH, P_OW, P_COUT, P_YN, P_YH, P_YW, P_YC, /* dy [N, OH, OW, Cout], element strides */
    P_H, P_W, P_CIN, P_XN, P_XH, P_XW, P_XC,         /* dx [N, H, W, Cin] */
    P_PT, P_PL,                               /* the forward conv's top/left padding */
    P_TB,                                     /* tiles per work item (0: automatic) */
    P_DT,                                     /* dy's and dx's element type (DT_*) */
    P_COUNT
};

/* Tiles per item unless the caller says: about 48 (8 microkernel tiles of 6 on AVX2) keeps
 * one product's V slice and output in L2 while the weights are read once per block. */
#define WG_TILES 48
/* Staged items take at most this many tile rows, and images (wg_rows_per_item). */
#define WG_ROWS 16
#define WG_IMAGES 16

typedef struct {
    const float *dy;
    float *dx;
    const float *upk; /* per phase: opgraph_pack_f32 of U as [3][3][Cout][Cin] (9 * Cout * cop) */
    const i64 *p;
    i64 cop, tb;
    i64 oh[2], ow[2];       /* per row / column phase: dy offset of its first tap */
    i64 qp[2], rp[2];       /* phase rows / columns of dx */
    i64 tq[2], tr[2];       /* tile rows / columns of a phase */
    i64 start[5];           /* first item of each phase (ph * 2 + pw), items in all */
    i64 chunk, nchunk;      /* staged: tile columns per item, chunks per tile row */
    i64 rt, nrb[2];         /* staged: tile rows per item, blocks of them per row phase */
    i64 ni, nib;            /* staged: images per item (several for tiny maps), blocks of them */
    int dt;                 /* dy's and dx's element type; not float32: both staged */
    i64 es;                 /* its size in bytes */
    int stage_src, stage_dst;
    i64 next;
    int failed;
} wg_job;

/* Where an item reads dy: pixel (h, w) of the current image at base + h*s_h + w*s_w (channels
 * contiguous) for h in [h0, h1), w in [w0, w1); zeros elsewhere. */
typedef struct {
    const float *base;
    i64 s_h, s_w, h0, h1, w0, w1;
} wg_src;

/* The 3x3 patch of dy whose top-left is (h0, w0) of image n, transformed: V[(s*3 + u)*ts] =
 * (Bt d B)[s][u] per channel (ts: V's stride between the 9 products). */
/* The K x K patch of dy from (h0, w0): src[k*K + l] = pixel (h0 + k, w0 + l), NULL outside
 * the source (read as zeros). */
static inline void wg_patch(const wg_src *S, i64 h0, i64 w0, int K, const float **src)
{
    for (int k = 0; k < K; k++)
        for (int l = 0; l < K; l++) {
            const i64 h = h0 + k, w = w0 + l;
            src[k * K + l] = h >= S->h0 && h < S->h1 && w >= S->w0 && w < S->w1
                                 ? S->base + h * S->s_h + w * S->s_w
                                 : NULL;
        }
}

static void input_tile(const wg_job *J, const wg_src *S, i64 h0, i64 w0, float *V, i64 ts)
{
    const i64 C = J->p[P_COUT];
    const float *src[3][3]; /* patch pixels, NULL outside dy (read as zeros) */
    wg_patch(S, h0, w0, 3, &src[0][0]);
    i64 c = 0;
    for (; c + VL <= C; c += VL) {
        vf t[3][3]; /* Bt along rows, per column */
        for (int l = 0; l < 3; l++) {
            vf d[3];
            for (int k = 0; k < 3; k++)
                d[k] = src[k][l] ? *(const vfu *)(src[k][l] + c) : (vf){0};
            t[0][l] = d[0] - d[1];
            t[1][l] = d[1];
            t[2][l] = d[2] - d[1];
        }
        for (int s = 0; s < 3; s++) {
            *(vfu *)(V + (s * 3 + 0) * ts + c) = t[s][0] - t[s][1];
            *(vfu *)(V + (s * 3 + 1) * ts + c) = t[s][1];
            *(vfu *)(V + (s * 3 + 2) * ts + c) = t[s][2] - t[s][1];
        }
    }
    for (; c < C; c++) { /* channel tails */
        float t[3][3];
        for (int l = 0; l < 3; l++) {
            float d[3];
            for (int k = 0; k < 3; k++)
                d[k] = src[k][l] ? src[k][l][c] : 0.0f;
            t[0][l] = d[0] - d[1];
            t[1][l] = d[1];
            t[2][l] = d[2] - d[1];
        }
        for (int s = 0; s < 3; s++) {
            V[(s * 3 + 0) * ts + c] = t[s][0] - t[s][1];
            V[(s * 3 + 1) * ts + c] = t[s][1];
            V[(s * 3 + 2) * ts + c] = t[s][2] - t[s][1];
        }
    }
}

/* dx pixels (q, r) .. (q + 1, r + 1) of phase (ph, pw), inside the phase's qp x rp, pixel
 * (q, r) at o00, (q + 1, r) at o00 + s_q and (q, r + 1) at o00 + s_r (channels contiguous):
 * (At M A) from M[(s*3 + u)*ms] per channel. */
static void output_tile(const wg_job *J, i64 ph, i64 pw, i64 q, i64 r, float *o00, i64 s_q,
                        i64 s_r, const float *M, i64 ms)
{
    const i64 C = J->p[P_CIN];
    const int two_r = q + 1 < J->qp[ph], two_c = r + 1 < J->rp[pw];
    float *o[2][2];
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++)
            o[i][j] = o00 + i * s_q + j * s_r;
    i64 c = 0;
    for (; c + VL <= C; c += VL) {
        vf m[9], a[3][2];
        for (int x = 0; x < 9; x++)
            m[x] = *(const vfu *)(M + x * ms + c);
        for (int s = 0; s < 3; s++) { /* At along columns */
            a[s][0] = m[s * 3] + m[s * 3 + 1];
            a[s][1] = m[s * 3 + 1] + m[s * 3 + 2];
        }
        *(vfu *)(o[0][0] + c) = a[0][0] + a[1][0];
        if (two_c)
            *(vfu *)(o[0][1] + c) = a[0][1] + a[1][1];
        if (two_r) {
            *(vfu *)(o[1][0] + c) = a[1][0] + a[2][0];
            if (two_c)
                *(vfu *)(o[1][1] + c) = a[1][1] + a[2][1];
        }
    }
    for (; c < C; c++) {
        float a[3][2];
        for (int s = 0; s < 3; s++) {
            a[s][0] = M[(s * 3) * ms + c] + M[(s * 3 + 1) * ms + c];
            a[s][1] = M[(s * 3 + 1) * ms + c] + M[(s * 3 + 2) * ms + c];
        }
        o[0][0][c] = a[0][0] + a[1][0];
        if (two_c)
            o[0][1][c] = a[0][1] + a[1][1];
        if (two_r) {
            o[1][0][c] = a[1][0] + a[2][0];
            if (two_c)
                o[1][1][c] = a[1][1] + a[2][1];
        }
    }
}

/* A thread's V [np][tb][Cout] and M [np][tb][cop]; nonzero (the job failed, nothing held)
 * when out of memory. */
static int wg_buffers(wg_job *J, int np, float **V, float **M)
{
    *V = malloc(sizeof(float) * (size_t)(np * J->tb * J->p[P_COUT]));
    *M = malloc(sizeof(float) * (size_t)(np * J->tb * J->cop));
    if (*V && *M)
        return 0;
    __atomic_store_n(&J->failed, 1, __ATOMIC_RELAXED);
    free(*V);
    free(*M);
    return 1;
}

/* A staged worker's buffers: V and M (wg_buffers) and, where dy / dx are staged, sb (srows dy
 * rows of scols pixels) and ob (orows dx rows of ocols pixels); nonzero (the job failed,
 * nothing held) when out of memory. */
static int wg_staged_buffers(wg_job *J, int np, i64 srows, i64 scols, i64 orows, i64 ocols,
                             float **V, float **M, float **sb, float **ob)
{
    if (wg_buffers(J, np, V, M))
        return 1;
    *sb = J->stage_src ? malloc(sizeof(float) * (size_t)(srows * scols * J->p[P_COUT])) : NULL;
    *ob = J->stage_dst ? malloc(sizeof(float) * (size_t)(orows * ocols * J->cop)) : NULL;
    if ((!J->stage_src || *sb) && (!J->stage_dst || *ob))
        return 0;
    __atomic_store_n(&J->failed, 1, __ATOMIC_RELAXED);
    free(*V); free(*M); free(*sb); free(*ob);
    return 1;
}

/* An item's staged dx rows written back: rows row0 + rstep*i (i < nrows) of image n, columns
 * [x0, x1), from ob [nrows][x1 - x0][cop]. */
static void wg_write_back(const wg_job *J, const float *ob, i64 n, i64 row0, i64 rstep,
                          i64 nrows, i64 x0, i64 x1)
{
    const i64 *p = J->p;
    for (i64 i = 0; i < nrows && x0 < x1; i++)
        opgraph_stage_out(ob + i * (x1 - x0) * J->cop, J->cop,
                          (char *)J->dx + J->es * (n * p[P_XN] + (row0 + rstep * i) * p[P_XH]
                                                   + x0 * p[P_XW]),
                          J->dt, p[P_XW], p[P_XC], x1 - x0, p[P_CIN]);
}

/* Where a staged worker's output tile goes: its top-left dx pixel is row xrow, column x of
 * image n, its second row and column `step` dx rows / columns further (2 for a stride phase,
 * 1 at stride 1). Staged (dx channel-strided), that is ob row orow (whole dx rows of columns
 * [x0, x1), phase rows only) of the image's rows at ob + ob_off; else dx itself. Sets the
 * row and column strides output_tile takes. */
static float *wg_tile_out(const wg_job *J, float *ob, i64 ob_off, i64 orow, i64 n, i64 xrow,
                          i64 x, i64 x0, i64 x1, i64 step, i64 *s_q, i64 *s_r)
{
    const i64 *p = J->p;
    if (J->stage_dst) { /* per image ob [rows][x1 - x0][cop] */
        *s_q = (x1 - x0) * J->cop;
        *s_r = step * J->cop;
        return ob + ob_off + (orow * (x1 - x0) + x - x0) * J->cop;
    }
    *s_q = step * p[P_XH];
    *s_r = step * p[P_XW];
    return J->dx + n * p[P_XN] + xrow * p[P_XH] + x * p[P_XW];
}

/* The np products (9, or 16 for wg3) of nt tiles of phase phi: M [np][tb][cop] from
 * V [np][tb][Cout]. */
static void wg_products_n(const wg_job *J, int np, int phi, i64 nt, const float *V, float *M)
{
    const i64 Cout = J->p[P_COUT], cop = J->cop, tb = J->tb;
    const i64 zero = 0;
    const float *U = J->upk + phi * np * Cout * cop;
    for (int x = 0; x < np; x++)
        for (i64 c0 = 0; c0 < cop; c0 += BW) {
            const int nv = cop - c0 >= BW ? NV : (int)((cop - c0) / VL);
            const i64 width = (i64)nv * VL;
            const float *wblk = U + c0 * np * Cout + x * Cout * width;
            for (i64 i0 = 0; i0 < nt; i0 += RB) {
                const int rb = (int)(nt - i0 < RB ? nt - i0 : RB);
                opgraph_micro_f32(rb, nv, V + x * tb * Cout + i0 * Cout, Cout, 1, &zero, &zero, 1,
                                  Cout, wblk, M + x * tb * cop + i0 * cop + c0, cop, 1, 0,
                                  (int)width);
            }
        }
}

static void wg_products(const wg_job *J, int phi, i64 nt, const float *V, float *M)
{
    wg_products_n(J, 9, phi, nt, V, M);
}

/* Channels contiguous in dy and dx: items are blocks of tb tiles of one phase. */
static void wg_worker(void *arg, int index)
{
    (void)index;
    wg_job *J = arg;
    const i64 *p = J->p;
    const i64 Cout = p[P_COUT], cop = J->cop, tb = J->tb;
    float *V, *M;
    if (wg_buffers(J, 9, &V, &M))
        return;
    for (;;) {
        const i64 item = __atomic_fetch_add(&J->next, 1, __ATOMIC_RELAXED);
        if (item >= J->start[4] || __atomic_load_n(&J->failed, __ATOMIC_RELAXED))
            break;
        int phi = 0;
        while (item >= J->start[phi + 1])
            phi++;
        const i64 ph = phi / 2, pw = phi % 2;
        const i64 TQ = J->tq[ph], TR = J->tr[pw], per_n = TQ * TR;
        const i64 t0 = (item - J->start[phi]) * tb;
        const i64 nt = p[P_N] * per_n - t0 < tb ? p[P_N] * per_n - t0 : tb;
        for (i64 t = 0; t < nt; t++) {
            const i64 g = t0 + t, n = g / per_n, tq = g % per_n / TR, tr = g % TR;
            const wg_src S = {J->dy + n * p[P_YN], p[P_YH], p[P_YW], 0, p[P_OH], 0, p[P_OW]};
            input_tile(J, &S, 2 * tq + J->oh[ph], 2 * tr + J->ow[pw], V + t * Cout, tb * Cout);
        }
        wg_products(J, phi, nt, V, M);
        for (i64 t = 0; t < nt; t++) {
            const i64 g = t0 + t, n = g / per_n, tq = g % per_n / TR, tr = g % TR;
            float *o00 = J->dx + n * p[P_XN] + (ph + 4 * tq) * p[P_XH] + (pw + 4 * tr) * p[P_XW];
            output_tile(J, ph, pw, 2 * tq, 2 * tr, o00, 2 * p[P_XH], 2 * p[P_XW], M + t * cop,
                        tb * cop);
        }
    }
    free(V);
    free(M);
}

/* The dy an item reads: rows [r0, r0 + nrows) and columns [c0, c1) of image n (clipped to
 * dy), staged into sb as [row][pixel][channel] when dy's channels are strided, else in place. */
static wg_src wg_window(const wg_job *J, i64 n, i64 r0, i64 nrows, i64 c0, i64 c1, float *sb)
{
    const i64 *p = J->p;
    const i64 Cout = p[P_COUT];
    i64 r1 = r0 + nrows;
    r0 = r0 < 0 ? 0 : r0;
    r1 = r1 > p[P_OH] ? p[P_OH] : r1;
    c0 = c0 < 0 ? 0 : c0;
    c1 = c1 > p[P_OW] ? p[P_OW] : c1;
    const char *dyn = (const char *)J->dy + J->es * n * p[P_YN];
    wg_src S = {(const float *)dyn, p[P_YH], p[P_YW], r0, r1, c0, c1}; /* (float32 in place) */
    if (J->stage_src && r0 < r1 && c0 < c1) {
        for (i64 r = r0; r < r1; r++)
            opgraph_stage_in(dyn + J->es * (r * p[P_YH] + c0 * p[P_YW]), J->dt, p[P_YW],
                             p[P_YC], c1 - c0, Cout, sb + (r - r0) * (c1 - c0) * Cout);
        /* (h, w) at sb + ((h - r0)*(c1 - c0) + w - c0)*Cout */
        S.base = sb - (r0 * (c1 - c0) + c0) * Cout;
        S.s_h = (c1 - c0) * Cout;
        S.s_w = Cout;
    }
    return S;
}

/* Staged (channel-strided dy or dx): an item is (row phase ph, block of J->ni images, block
 * of J->rt tile rows, chunk of J->chunk tile columns) with both column phases; dy rows and dx
 * rows staged as above (several tile rows, and for tiny maps several images, per item, so the
 * products see whole microkernel tiles). */
static void wg_worker_staged(void *arg, int index)
{
    (void)index;
    wg_job *J = arg;
    const i64 *p = J->p;
    const i64 Cout = p[P_COUT], cop = J->cop, tb = J->tb, CH = J->chunk, RT = J->rt;
    const i64 SB = (2 * RT + 1) * (2 * CH + 3) * Cout, OB = 2 * RT * 4 * CH * cop; /* per image */
    float *V, *M, *sb, *ob;
    if (wg_staged_buffers(J, 9, J->ni * (2 * RT + 1), 2 * CH + 3, J->ni * 2 * RT, 4 * CH, &V, &M,
                          &sb, &ob))
        return;
    wg_src S[WG_IMAGES];
    for (;;) {
        const i64 item = __atomic_fetch_add(&J->next, 1, __ATOMIC_RELAXED);
        if (item >= J->start[2] || __atomic_load_n(&J->failed, __ATOMIC_RELAXED))
            break;
        const i64 ph = item >= J->start[1];
        const i64 rest = item - J->start[ph], per_n = J->nrb[ph] * J->nchunk;
        const i64 n0 = rest / per_n * J->ni, b = rest % per_n / J->nchunk, k = rest % J->nchunk;
        const i64 n1 = n0 + J->ni < p[P_N] ? n0 + J->ni : p[P_N]; /* images [n0, n1) */
        const i64 q0 = b * RT, q1 = q0 + RT < J->tq[ph] ? q0 + RT : J->tq[ph]; /* tile rows */
        const i64 t0 = k * CH, t1 = t0 + CH; /* tile columns [t0, t1) of both column phases */
        /* dy: rows [r0, r1) and columns [c0, c1) of this item, staged or in place */
        const i64 omin = J->ow[0] < J->ow[1] ? J->ow[0] : J->ow[1];
        const i64 omax = J->ow[0] > J->ow[1] ? J->ow[0] : J->ow[1];
        for (i64 n = n0; n < n1; n++)
            S[n - n0] = wg_window(J, n, 2 * q0 + J->oh[ph], 2 * (q1 - q0) + 1, 2 * t0 + omin,
                                  2 * (t1 - 1) + omax + 3, sb ? sb + (n - n0) * SB : NULL);
        /* dx: rows ph + 4*tq + 2*i (q0 <= tq < q1, i < 2) and columns [4*t0, x1), staged
         * (phase row 2*tq + i at ob row 2*(tq - q0) + i of the image's rows) or in place */
        const i64 x0 = 4 * t0, x1 = 4 * t1 < p[P_W] ? 4 * t1 : p[P_W];
        for (i64 pw = 0; pw < 2; pw++) {
            const i64 ta = t0, tz = t1 < J->tr[pw] ? t1 : J->tr[pw];
            if (ta >= tz)
                continue;
            i64 nt = 0;
            for (i64 n = n0; n < n1; n++)
                for (i64 tq = q0; tq < q1; tq++)
                    for (i64 t = ta; t < tz; t++)
                        input_tile(J, &S[n - n0], 2 * tq + J->oh[ph], 2 * t + J->ow[pw],
                                   V + nt++ * Cout, tb * Cout);
            wg_products(J, (int)(ph * 2 + pw), nt, V, M);
            i64 m = 0;
            for (i64 n = n0; n < n1; n++)
                for (i64 tq = q0; tq < q1; tq++)
                    for (i64 t = ta; t < tz; t++) {
                        i64 s_q, s_r;
                        float *o00 = wg_tile_out(J, ob, (n - n0) * OB, 2 * (tq - q0), n,
                                                 ph + 4 * tq, pw + 4 * t, x0, x1, 2, &s_q, &s_r);
                        output_tile(J, ph, pw, 2 * tq, 2 * t, o00, s_q, s_r, M + m++ * cop,
                                    tb * cop);
                    }
        }
        if (J->stage_dst) {
            const i64 rows = J->qp[ph] - 2 * q0;
            for (i64 n = n0; n < n1; n++)
                wg_write_back(J, ob + (n - n0) * OB, n, ph + 4 * q0, 2,
                              rows < 2 * (q1 - q0) ? rows : 2 * (q1 - q0), x0, x1);
        }
    }
    free(V); free(M); free(sb); free(ob);
}

/* Tile rows per staged item: 1 unless a tile row (ncols tiles) is a single chunk of fewer
 * tiles than tb, then as many rows as fill tb (at most WG_ROWS), fewer while that leaves
 * fewer than 4 items per thread (items: blocks of images * (blocks of rows of every row
 * phase) * chunks); where an image's rows all fit, as many images (at most WG_IMAGES) as
 * fill tb too. So ni * rt * chunk <= tb when ni * rt > 1, which bounds the
 * staging (conv_impl.py's workspace bounds count on it). */
static void wg_rows_per_item(wg_job *J, i64 ncols, const i64 *tq, int nph, i64 nthreads)
{
    const i64 *p = J->p;
    i64 rt = 1, tqm = 0, ni = 1;
    for (int f = 0; f < nph; f++)
        tqm = tq[f] > tqm ? tq[f] : tqm;
    if (J->nchunk == 1 && ncols > 0 && ncols < J->tb) {
        J->chunk = ncols < J->chunk ? ncols : J->chunk; /* (the whole row: staging sized to it) */
        rt = J->tb / ncols;
        rt = rt > WG_ROWS ? WG_ROWS : rt;
        rt = rt > tqm ? tqm : rt;
        rt = rt < 1 ? 1 : rt;
        if (rt == tqm && tqm > 0) {
            ni = J->tb / (ncols * tqm);
            ni = ni > WG_IMAGES ? WG_IMAGES : ni > p[P_N] ? p[P_N] : ni;
            ni = ni < 1 ? 1 : ni;
        }
    }
    for (;;) {
        i64 items = 0;
        for (int f = 0; f < nph; f++) {
            J->nrb[f] = (tq[f] + rt - 1) / rt;
            items += (p[P_N] + ni - 1) / ni * J->nrb[f] * J->nchunk;
        }
        if ((rt <= 1 && ni <= 1) || items >= 4 * nthreads)
            break;
        if (ni > 1)
            ni = (ni + 1) / 2;
        else
            rt = (rt + 1) / 2;
    }
    J->rt = rt;
    J->ni = ni;
    J->nib = (p[P_N] + ni - 1) / ni;
}

/* Version of this entry point's parameter block (native.py checks it). */
int opgraph_winograd_version(void) { return 3; }

/* Whether p is a parameter block both entry points take (np = P_COUNT entries, sizes in
 * range). */
static int wg_params_ok(const i64 *p, i64 np)
{
    return np == P_COUNT && p[P_N] >= 0 && p[P_OH] > 0 && p[P_OW] > 0 && p[P_COUT] > 0
        && p[P_H] >= 0 && p[P_W] >= 0 && p[P_CIN] > 0 && p[P_TB] >= 0
        && (p[P_DT] == DT_F32 || p[P_DT] == DT_F16 || p[P_DT] == DT_BF16);
}

static wg_job wg_job_of(const float *dy, float *dx, const float *upk, const i64 *p)
{
    const int dt = (int)p[P_DT], f32 = dt == DT_F32;
    wg_job J = {.dy = dy, .dx = dx, .upk = upk, .p = p, .cop = (p[P_CIN] + VL - 1) / VL * VL,
                .dt = dt, .es = f32 ? 4 : 2, .stage_src = p[P_YC] != 1 || !f32,
                .stage_dst = p[P_XC] != 1 || !f32};
    return J;
}

/* dx = the input gradient of a 4x4 stride-2 undilated ungrouped convolution (see the file
 * comment); dy and dx views of P_DT's type, any element strides (channel-strided and half
 * precision ones staged), upk the 4 phases' packed transformed filters, p the parameter block
 * above (np = P_COUNT entries). Returns 0, -1 for arguments it does not take, -2 when out of
 * memory. */
int opgraph_winograd_bpi_f32(const float *dy, float *dx, const float *upk, const i64 *p,
                             i64 np, i64 nthreads)
{
    if (!wg_params_ok(p, np))
        return -1;
    wg_job J = wg_job_of(dy, dx, upk, p);
    for (int f = 0; f < 2; f++) {
        const i64 pad = f == 0 ? p[P_PT] : p[P_PL], size = f == 0 ? p[P_H] : p[P_W];
        i64 *off = f == 0 ? J.oh : J.ow, *out = f == 0 ? J.qp : J.rp;
        i64 *nt = f == 0 ? J.tq : J.tr;
        for (i64 ph = 0; ph < 2; ph++) {
            const i64 amax = ((ph + pad) % 2 + 2) % 2 == 0 ? 2 : 3;
            off[ph] = (ph + pad - amax) / 2; /* (exact: ph + pad - amax is even) */
            out[ph] = size > ph ? (size - ph + 1) / 2 : 0;
            nt[ph] = (out[ph] + 1) / 2;
        }
    }
    if (nthreads < 1)
        nthreads = 1;
    /* automatic: WG_TILES rounded to whole microkernel tiles, fewer while that leaves
     * fewer than 4 items per thread */
    const int auto_tb = p[P_TB] == 0;
    i64 tb = auto_tb ? (WG_TILES / RB > 0 ? WG_TILES / RB * RB : RB) : p[P_TB];
    for (;;) {
        J.start[0] = 0;
        for (int f = 0; f < 4; f++)
            J.start[f + 1] = J.start[f] + (p[P_N] * J.tq[f / 2] * J.tr[f % 2] + tb - 1) / tb;
        if (!auto_tb || tb <= RB || J.start[4] >= 4 * nthreads)
            break;
        tb -= RB;
    }
    J.tb = tb;
    if (J.stage_src || J.stage_dst) {
        /* items: (row phase, image, block of tile rows, chunk of tb / 2 tile columns), fewer
         * columns while that leaves fewer than 4 items per thread; rows: wg_rows_per_item */
        const i64 trm = J.tr[0] > J.tr[1] ? J.tr[0] : J.tr[1];
        J.chunk = tb / 2 > 0 ? tb / 2 : 1;
        for (;;) {
            J.nchunk = trm > 0 ? (trm + J.chunk - 1) / J.chunk : 0;
            J.start[0] = 0;
            J.start[1] = p[P_N] * J.tq[0] * J.nchunk;
            J.start[2] = J.start[1] + p[P_N] * J.tq[1] * J.nchunk;
            if (J.chunk <= 4 || J.start[2] >= 4 * nthreads)
                break;
            J.chunk = (J.chunk + 1) / 2;
        }
        wg_rows_per_item(&J, trm, J.tq, 2, nthreads);
        J.start[1] = J.nib * J.nrb[0] * J.nchunk;
        J.start[2] = J.start[1] + J.nib * J.nrb[1] * J.nchunk;
        if (J.start[2] == 0)
            return 0;
        opgraph_run_threads(wg_worker_staged, &J, nthreads < J.start[2] ? nthreads : J.start[2]);
        return J.failed ? -2 : 0;
    }
    if (J.start[4] == 0)
        return 0;
    opgraph_run_threads(wg_worker, &J, nthreads < J.start[4] ? nthreads : J.start[4]);
    return J.failed ? -2 : 0;
}

/* The transformed filters of the 4 phases, packed as conv_impl.py's pack(U, 3) would pack
 * U = G g Gt ([3, 3, Cin, Cout], reduced over Cout, Cin the lanes), laid end to end in upk
 * (4 * 9 * Cout * cop floats): one pass over w [4, 4, Cin, Cout] (element strides s_a, s_b,
 * s_i, s_o; Cout contiguous, s_o == 1, for the fast transposes), work items (phase, block of
 * BW lanes) on nthreads threads. G's rows (1, 0), (1, 1), (0, 1): U's entries are g's, sums of
 * two and of four, added in the order of the numpy transform this replaces. */
typedef struct {
    const float *w;
    float *upk;
    i64 s_a, s_b, s_i, s_o, cin, cout, cop, nblk, pt, pl;
    i64 next;
    int failed;
} wgf_job;

/* A thread's buffer of `taps` transposed filter taps of one lane block (NULL, and the job
 * failed, when out of memory). */
static float *wgf_buffer(wgf_job *J, int taps)
{
    float *g = malloc(sizeof(float) * (size_t)(taps * J->cout * BW));
    if (!g)
        __atomic_store_n(&J->failed, 1, __ATOMIC_RELAXED);
    return g;
}

/* The next of `per_block` * nblk items: its lane block's first lane c0, the block's packed
 * width and the real lanes wr in it; 0 when none is left. */
static int wgf_next(wgf_job *J, i64 per_block, i64 *item, i64 *c0, i64 *width, i64 *wr)
{
    *item = __atomic_fetch_add(&J->next, 1, __ATOMIC_RELAXED);
    if (*item >= per_block * J->nblk)
        return 0;
    *c0 = (*item % J->nblk) * BW;
    *width = J->cop - *c0 < BW ? J->cop - *c0 : BW;
    *wr = J->cin - *c0 < *width ? J->cin - *c0 : *width;
    return 1;
}

/* Runs `worker` over `items` items of J (its counter at 0) on nthreads threads. */
static int wgf_launch(thread_fn worker, wgf_job *J, i64 items, i64 nthreads)
{
    if (nthreads < 1)
        nthreads = 1;
    opgraph_run_threads(worker, J, nthreads < items ? nthreads : items);
    return J->failed ? -2 : 0;
}

static void wgf_worker(void *arg, int index)
{
    (void)index;
    wgf_job *J = arg;
    const i64 C = J->cout, cop = J->cop;
    float *g = wgf_buffer(J, 4);
    i64 item, c0, width, wr;
    while (g && wgf_next(J, 4, &item, &c0, &width, &wr)) {
        const i64 phi = item / J->nblk, ph = phi / 2, pw = phi % 2;
        const i64 amax = ((ph + J->pt) % 2 + 2) % 2 == 0 ? 2 : 3;
        const i64 bmax = ((pw + J->pl) % 2 + 2) % 2 == 0 ? 2 : 3;
        /* g[(i*2 + j)][c*wr + l] = w[amax - 2i, bmax - 2j, c0 + l, c] */
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 2; j++)
                opgraph_stage_in_f32(J->w + (amax - 2 * i) * J->s_a + (bmax - 2 * j) * J->s_b +
                                         c0 * J->s_i,
                                     J->s_o, J->s_i, C, wr, g + (i * 2 + j) * C * wr);
        const float *g00 = g, *g01 = g + C * wr, *g10 = g + 2 * C * wr, *g11 = g + 3 * C * wr;
        float *d = J->upk + phi * 9 * C * cop + c0 * 9 * C;
        for (i64 c = 0; c < C; c++) {
            float *t[9];
            for (int k = 0; k < 9; k++) t[k] = d + k * C * width + c * width;
            const i64 o = c * wr;
            i64 l = 0;
            for (; l + VL <= wr; l += VL) { /* (the same sums as below, a vector at a time) */
                const vf a = *(const vfu *)(g00 + o + l), b = *(const vfu *)(g01 + o + l);
                const vf e = *(const vfu *)(g10 + o + l), f = *(const vfu *)(g11 + o + l);
                const vf r0 = a + e, r2 = b + f;
                *(vfu *)(t[0] + l) = a;  *(vfu *)(t[2] + l) = b;  *(vfu *)(t[1] + l) = a + b;
                *(vfu *)(t[3] + l) = r0; *(vfu *)(t[5] + l) = r2; *(vfu *)(t[4] + l) = r0 + r2;
                *(vfu *)(t[6] + l) = e;  *(vfu *)(t[8] + l) = f;  *(vfu *)(t[7] + l) = e + f;
            }
            for (; l < wr; l++) {
                const float a = g00[o + l], b = g01[o + l], e = g10[o + l], f = g11[o + l];
                const float r0 = a + e, r2 = b + f; /* u[1, 0], u[1, 2] */
                t[0][l] = a;     t[2][l] = b;     t[1][l] = a + b;
                t[3][l] = r0;    t[5][l] = r2;    t[4][l] = r0 + r2;
                t[6][l] = e;     t[8][l] = f;     t[7][l] = e + f;
            }
            for (i64 l = wr; l < width; l++)
                for (int k = 0; k < 9; k++) t[k][l] = 0.0f;
        }
    }
    free(g);
}

int opgraph_winograd_filter_f32(const float *w, i64 s_a, i64 s_b, i64 s_i, i64 s_o, i64 cin,
                                i64 cout, i64 pt, i64 pl, float *upk, i64 nthreads)
{
    if (cin <= 0 || cout <= 0)
        return -1;
    const i64 cop = (cin + VL - 1) / VL * VL;
    wgf_job J = {.w = w, .upk = upk, .s_a = s_a, .s_b = s_b, .s_i = s_i, .s_o = s_o,
                 .cin = cin, .cout = cout, .cop = cop, .nblk = (cop + BW - 1) / BW, .pt = pt,
                 .pl = pl};
    return wgf_launch(wgf_worker, &J, 4 * J.nblk, nthreads);
}


/* ---- F(2x2, 3x3) for 3x3 stride-1 layers (wg3) -------------------------------------------
 * At stride 1 the input gradient of a 3x3 convolution is the correlation of dy with the filter
 * turned by 180 degrees (and its channel axes swapped): dx[h, x] = sum over a, b < 3 of
 * dy[h + oh + a, x + ow + b] @ w[2 - a, 2 - b]^T, oh = pt - 2, ow = pl - 2. F(2x2, 3x3) computes
 * a 2x2 tile of dx from the tile's 4x4 dy patch with 16 products instead of 36:
 *   V = Bt d B   Bt = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]
 *   U = G g Gt   G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]  (conv_impl.py)
 *   Y = At M A   At = [[1, 1, 1, 0], [0, 1, -1, -1]]
 * U's halves make this rounding-different from the direct sum (not only regrouped); the
 * caller runs it for finite values only, as the 4x4 path. Channels contiguous in dy and dx;
 * items are blocks of tb tiles over (image, tile row, tile column). */

/* The 4x4 dy patch from (h0, w0), transformed: V[(s*4 + u)*ts] per channel. */
static void input_tile4(const wg_src *S, i64 h0, i64 w0, float *V, i64 ts, i64 C)
{
    const float *src[4][4];
    wg_patch(S, h0, w0, 4, &src[0][0]);
    i64 c = 0;
    for (; c + VL <= C; c += VL) {
        vf t[4][4]; /* Bt along the patch's columns */
        for (int l = 0; l < 4; l++) {
            vf d[4];
            for (int k = 0; k < 4; k++)
                d[k] = src[k][l] ? *(const vfu *)(src[k][l] + c) : (vf){0};
            t[0][l] = d[0] - d[2];
            t[1][l] = d[1] + d[2];
            t[2][l] = d[2] - d[1];
            t[3][l] = d[1] - d[3];
        }
        for (int s = 0; s < 4; s++) {
            *(vfu *)(V + (s * 4 + 0) * ts + c) = t[s][0] - t[s][2];
            *(vfu *)(V + (s * 4 + 1) * ts + c) = t[s][1] + t[s][2];
            *(vfu *)(V + (s * 4 + 2) * ts + c) = t[s][2] - t[s][1];
            *(vfu *)(V + (s * 4 + 3) * ts + c) = t[s][1] - t[s][3];
        }
    }
    for (; c < C; c++) {
        float t[4][4];
        for (int l = 0; l < 4; l++) {
            float d[4];
            for (int k = 0; k < 4; k++)
                d[k] = src[k][l] ? src[k][l][c] : 0.0f;
            t[0][l] = d[0] - d[2];
            t[1][l] = d[1] + d[2];
            t[2][l] = d[2] - d[1];
            t[3][l] = d[1] - d[3];
        }
        for (int s = 0; s < 4; s++) {
            V[(s * 4 + 0) * ts + c] = t[s][0] - t[s][2];
            V[(s * 4 + 1) * ts + c] = t[s][1] + t[s][2];
            V[(s * 4 + 2) * ts + c] = t[s][2] - t[s][1];
            V[(s * 4 + 3) * ts + c] = t[s][1] - t[s][3];
        }
    }
}

/* dx pixels (q, r) .. (q + 1, r + 1) at o00 (rows s_q, columns s_r apart), the second row /
 * column only where two_r / two_c: (At M A) from M[(s*4 + u)*ms] per channel. */
static void output_tile4(float *o00, i64 s_q, i64 s_r, int two_r, int two_c, const float *M,
                         i64 ms, i64 C)
{
    i64 c = 0;
    for (; c + VL <= C; c += VL) {
        vf a[2][4];
        for (int u = 0; u < 4; u++) { /* At along the rows */
            const vf m0 = *(const vfu *)(M + u * ms + c), m1 = *(const vfu *)(M + (4 + u) * ms + c);
            const vf m2 = *(const vfu *)(M + (8 + u) * ms + c);
            const vf m3 = *(const vfu *)(M + (12 + u) * ms + c);
            a[0][u] = m0 + m1 + m2;
            a[1][u] = m1 - m2 - m3;
        }
        for (int i = 0; i < 1 + two_r; i++) {
            *(vfu *)(o00 + i * s_q + c) = a[i][0] + a[i][1] + a[i][2];
            if (two_c)
                *(vfu *)(o00 + i * s_q + s_r + c) = a[i][1] - a[i][2] - a[i][3];
        }
    }
    for (; c < C; c++) {
        float a[2][4];
        for (int u = 0; u < 4; u++) {
            const float m0 = M[u * ms + c], m1 = M[(4 + u) * ms + c];
            const float m2 = M[(8 + u) * ms + c], m3 = M[(12 + u) * ms + c];
            a[0][u] = m0 + m1 + m2;
            a[1][u] = m1 - m2 - m3;
        }
        for (int i = 0; i < 1 + two_r; i++) {
            o00[i * s_q + c] = a[i][0] + a[i][1] + a[i][2];
            if (two_c)
                o00[i * s_q + s_r + c] = a[i][1] - a[i][2] - a[i][3];
        }
    }
}

static void wg3_worker(void *arg, int index)
{
    (void)index;
    wg_job *J = arg;
    const i64 *p = J->p;
    const i64 Cout = p[P_COUT], Cin = p[P_CIN], cop = J->cop, tb = J->tb;
    const i64 TQ = (p[P_H] + 1) / 2, TR = (p[P_W] + 1) / 2, per_n = TQ * TR;
    const i64 oh = p[P_PT] - 2, ow = p[P_PL] - 2;
    float *V, *M;
    if (wg_buffers(J, 16, &V, &M))
        return;
    for (;;) {
        const i64 item = __atomic_fetch_add(&J->next, 1, __ATOMIC_RELAXED);
        if (item >= J->start[1] || __atomic_load_n(&J->failed, __ATOMIC_RELAXED))
            break;
        const i64 t0 = item * tb, nt = p[P_N] * per_n - t0 < tb ? p[P_N] * per_n - t0 : tb;
        for (i64 t = 0; t < nt; t++) {
            const i64 g = t0 + t, n = g / per_n, tq = g % per_n / TR, tr = g % TR;
            const wg_src S = {J->dy + n * p[P_YN], p[P_YH], p[P_YW], 0, p[P_OH], 0, p[P_OW]};
            input_tile4(&S, 2 * tq + oh, 2 * tr + ow, V + t * Cout, tb * Cout, Cout);
        }
        wg_products_n(J, 16, 0, nt, V, M);
        for (i64 t = 0; t < nt; t++) {
            const i64 g = t0 + t, n = g / per_n, tq = g % per_n / TR, tr = g % TR;
            float *o00 = J->dx + n * p[P_XN] + 2 * tq * p[P_XH] + 2 * tr * p[P_XW];
            output_tile4(o00, p[P_XH], p[P_XW], 2 * tq + 1 < p[P_H], 2 * tr + 1 < p[P_W],
                         M + t * cop, tb * cop, Cin);
        }
    }
    free(V);
    free(M);
}

/* Staged (channel-strided dy or dx, e.g. NCHW): an item is (block of J->ni images, block of
 * J->rt tile rows, chunk of J->chunk tile columns); its dy rows (those columns) are staged into
 * [pixel][channel] rows, its dx rows computed into such rows and written back once, as
 * wg_worker_staged does. */
static void wg3_worker_staged(void *arg, int index)
{
    (void)index;
    wg_job *J = arg;
    const i64 *p = J->p;
    const i64 Cout = p[P_COUT], Cin = p[P_CIN], cop = J->cop, tb = J->tb, CH = J->chunk;
    const i64 RT = J->rt, NRB = J->nrb[0];
    const i64 TQ = (p[P_H] + 1) / 2, oh = p[P_PT] - 2, ow = p[P_PL] - 2;
    const i64 TR = (p[P_W] + 1) / 2;
    const i64 SB = (2 * RT + 2) * (2 * CH + 2) * Cout, OB = 2 * RT * 2 * CH * cop; /* per image */
    float *V, *M, *sb, *ob;
    if (wg_staged_buffers(J, 16, J->ni * (2 * RT + 2), 2 * CH + 2, J->ni * 2 * RT, 2 * CH, &V,
                          &M, &sb, &ob))
        return;
    wg_src S[WG_IMAGES];
    for (;;) {
        const i64 item = __atomic_fetch_add(&J->next, 1, __ATOMIC_RELAXED);
        if (item >= J->start[1] || __atomic_load_n(&J->failed, __ATOMIC_RELAXED))
            break;
        const i64 n0 = item / (NRB * J->nchunk) * J->ni, b = item / J->nchunk % NRB;
        const i64 n1 = n0 + J->ni < p[P_N] ? n0 + J->ni : p[P_N]; /* images [n0, n1) */
        const i64 k = item % J->nchunk;
        const i64 q0 = b * RT, q1 = q0 + RT < TQ ? q0 + RT : TQ; /* tile rows [q0, q1) */
        const i64 t0 = k * CH, t1 = t0 + CH < TR ? t0 + CH : TR;
        for (i64 n = n0; n < n1; n++)
            S[n - n0] = wg_window(J, n, 2 * q0 + oh, 2 * (q1 - q0) + 2, 2 * t0 + ow,
                                  2 * (t1 - 1) + ow + 4, sb ? sb + (n - n0) * SB : NULL);
        i64 nt = 0;
        for (i64 n = n0; n < n1; n++)
            for (i64 tq = q0; tq < q1; tq++)
                for (i64 t = t0; t < t1; t++)
                    input_tile4(&S[n - n0], 2 * tq + oh, 2 * t + ow, V + nt++ * Cout, tb * Cout,
                                Cout);
        wg_products_n(J, 16, 0, nt, V, M);
        const i64 x0 = 2 * t0, x1 = 2 * t1 < p[P_W] ? 2 * t1 : p[P_W];
        i64 m = 0;
        for (i64 n = n0; n < n1; n++)
            for (i64 tq = q0; tq < q1; tq++)
                for (i64 t = t0; t < t1; t++) {
                    i64 s_q, s_r;
                    float *o00 = wg_tile_out(J, ob, (n - n0) * OB, 2 * (tq - q0), n, 2 * tq,
                                             2 * t, x0, x1, 1, &s_q, &s_r);
                    output_tile4(o00, s_q, s_r, 2 * tq + 1 < p[P_H], 2 * t + 1 < p[P_W],
                                 M + m++ * cop, tb * cop, Cin);
                }
        if (J->stage_dst) {
            const i64 rows = p[P_H] - 2 * q0;
            for (i64 n = n0; n < n1; n++)
                wg_write_back(J, ob + (n - n0) * OB, n, 2 * q0, 1,
                              rows < 2 * (q1 - q0) ? rows : 2 * (q1 - q0), x0, x1);
        }
    }
    free(V); free(M); free(sb); free(ob);
}

/* dx = the input gradient of a 3x3 stride-1 undilated ungrouped convolution (see above); dy
 * and dx views of P_DT's type (channel-strided and half precision ones staged), upk =
 * pack(U, 3) of U [4, 4, Cin, Cout], p the parameter block of opgraph_winograd_bpi_f32 (P_PT,
 * P_PL: the forward conv's top / left padding). Returns 0, -1 for arguments it does not take,
 * -2 when out of memory. */
int opgraph_winograd3_bpi_f32(const float *dy, float *dx, const float *upk, const i64 *p,
                              i64 np, i64 nthreads)
{
    if (!wg_params_ok(p, np))
        return -1;
    wg_job J = wg_job_of(dy, dx, upk, p);
    if (nthreads < 1)
        nthreads = 1;
    if (J.stage_src || J.stage_dst) {
        /* items: (image, block of tile rows, chunk of tile columns), fewer columns while that
         * leaves fewer than 4 items per thread; rows: wg_rows_per_item */
        const i64 TQ = (p[P_H] + 1) / 2, TR = (p[P_W] + 1) / 2;
        J.tb = p[P_TB] > 0 ? p[P_TB] : WG_TILES;
        J.chunk = J.tb;
        for (;;) {
            J.nchunk = TR > 0 ? (TR + J.chunk - 1) / J.chunk : 0;
            J.start[0] = 0;
            J.start[1] = p[P_N] * TQ * J.nchunk;
            if (J.chunk <= 4 || J.start[1] >= 4 * nthreads)
                break;
            J.chunk = (J.chunk + 1) / 2;
        }
        wg_rows_per_item(&J, TR, &TQ, 1, nthreads);
        J.start[1] = J.nib * J.nrb[0] * J.nchunk;
        if (J.start[1] == 0)
            return 0;
        opgraph_run_threads(wg3_worker_staged, &J,
                            nthreads < J.start[1] ? nthreads : J.start[1]);
        return J.failed ? -2 : 0;
    }
    const i64 tiles = p[P_N] * ((p[P_H] + 1) / 2) * ((p[P_W] + 1) / 2);
    const int auto_tb = p[P_TB] == 0;
    i64 tb = auto_tb ? (WG_TILES / RB > 0 ? WG_TILES / RB * RB : RB) : p[P_TB];
    while (auto_tb && tb > RB && (tiles + tb - 1) / tb < 4 * nthreads)
        tb -= RB;
    J.tb = tb;
    J.start[0] = 0;
    J.start[1] = (tiles + tb - 1) / tb;
    if (J.start[1] == 0)
        return 0;
    opgraph_run_threads(wg3_worker, &J, nthreads < J.start[1] ? nthreads : J.start[1]);
    return J.failed ? -2 : 0;
}

/* F(2x2, 3x3)'s transformed filter, packed as pack(U, 3) of U [4, 4, Cin, Cout] would be
 * (16 * Cout * cop floats): U = G g Gt of g[a][b] = w[2 - a, 2 - b], one pass over w
 * [3, 3, Cin, Cout] (element strides s_a, s_b, s_i, s_o; s_o == 1 for the fast transposes),
 * work items of BW lanes on nthreads threads. The sums are conv_impl.py's numpy ones (within
 * rounding: the compiler may fuse a product into an add). */
/* (its job is a wgf_job; pt and pl unused) */

static void wgf3_worker(void *arg, int index)
{
    (void)index;
    wgf_job *J = arg;
    const i64 C = J->cout;
    float *g = wgf_buffer(J, 9);
    i64 item, c0, width, wr;
    while (g && wgf_next(J, 1, &item, &c0, &width, &wr)) {
        /* g[(a*3 + b)][c*wr + l] = w[2 - a, 2 - b, c0 + l, c] */
        for (int a = 0; a < 3; a++)
            for (int b = 0; b < 3; b++)
                opgraph_stage_in_f32(J->w + (2 - a) * J->s_a + (2 - b) * J->s_b + c0 * J->s_i,
                                     J->s_o, J->s_i, C, wr, g + (a * 3 + b) * C * wr);
        float *d = J->upk + c0 * 16 * C;
        for (i64 c = 0; c < C; c++) {
            const i64 o = c * wr;
            i64 l0 = 0;
            for (; l0 + VL <= wr; l0 += VL) { /* the sums below, a vector at a time */
                vf t[4][3];
                for (int b = 0; b < 3; b++) {
                    const vf g0 = *(const vfu *)(g + (0 * 3 + b) * C * wr + o + l0);
                    const vf g1 = *(const vfu *)(g + (1 * 3 + b) * C * wr + o + l0);
                    const vf g2 = *(const vfu *)(g + (2 * 3 + b) * C * wr + o + l0);
                    const vf h = 0.5f * (g0 + g2), q = 0.5f * g1;
                    t[0][b] = g0;
                    t[1][b] = h + q;
                    t[2][b] = h - q;
                    t[3][b] = g2;
                }
                for (int s = 0; s < 4; s++) {
                    const vf h = 0.5f * (t[s][0] + t[s][2]), q = 0.5f * t[s][1];
                    float *r = d + (s * 4) * C * width + c * width + l0;
                    *(vfu *)(r) = t[s][0];
                    *(vfu *)(r + C * width) = h + q;
                    *(vfu *)(r + 2 * C * width) = h - q;
                    *(vfu *)(r + 3 * C * width) = t[s][2];
                }
            }
            for (i64 l = l0; l < width; l++) {
                float u[4][4];
                if (l < wr) {
                    float t[4][3]; /* G g along the rows, per column b */
                    for (int b = 0; b < 3; b++) {
                        const float g0 = g[(0 * 3 + b) * C * wr + o + l];
                        const float g1 = g[(1 * 3 + b) * C * wr + o + l];
                        const float g2 = g[(2 * 3 + b) * C * wr + o + l];
                        const float h = 0.5f * (g0 + g2), q = 0.5f * g1;
                        t[0][b] = g0;
                        t[1][b] = h + q;
                        t[2][b] = h - q;
                        t[3][b] = g2;
                    }
                    for (int s = 0; s < 4; s++) { /* (G g) Gt along the columns */
                        const float h = 0.5f * (t[s][0] + t[s][2]), q = 0.5f * t[s][1];
                        u[s][0] = t[s][0];
                        u[s][1] = h + q;
                        u[s][2] = h - q;
                        u[s][3] = t[s][2];
                    }
                } else {
                    for (int s = 0; s < 4; s++)
                        for (int v = 0; v < 4; v++) u[s][v] = 0.0f;
                }
                for (int s = 0; s < 4; s++)
                    for (int v = 0; v < 4; v++)
                        d[(s * 4 + v) * C * width + c * width + l] = u[s][v];
            }
        }
    }
    free(g);
}

int opgraph_winograd3_filter_f32(const float *w, i64 s_a, i64 s_b, i64 s_i, i64 s_o, i64 cin,
                                 i64 cout, float *upk, i64 nthreads)
{
    if (cin <= 0 || cout <= 0)
        return -1;
    const i64 cop = (cin + VL - 1) / VL * VL;
    wgf_job J = {.w = w, .upk = upk, .s_a = s_a, .s_b = s_b, .s_i = s_i, .s_o = s_o,
                 .cin = cin, .cout = cout, .cop = cop, .nblk = (cop + BW - 1) / BW};
    return wgf_launch(wgf3_worker, &J, J.nblk, nthreads);
}
