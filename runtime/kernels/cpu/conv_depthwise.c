/* The depthwise input gradient (groups = channels) of the compiled core. Built with
 * conv_gather.c by native.py. */
#include "conv_common.h"

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
