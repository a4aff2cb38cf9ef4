/* naive_llama.c — see naive_llama.h. Written for clarity, not speed. */
#include "naive_llama.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

static double *weights(const jq_matrix *w)
{
    /* The plain float types: F32, and F16 / BF16 converted exactly (the
     * scalar reference conversion, so a kernel's own is not trusted). */
    if (w->type != JQ_TYPE_F32 && w->type != JQ_TYPE_F16 &&
        w->type != JQ_TYPE_BF16)
        return NULL;
    size_t n = (size_t)(w->rows * w->cols);
    double *d = malloc(n * sizeof(double));
    float *row = malloc((size_t)w->cols * sizeof(float));
    for (int64_t r = 0; r < w->rows; r++) {
        jq_ref_dequantize_row(w->type, (const char *)w->data + r * w->row_bytes,
                              row, w->cols);
        for (int64_t c = 0; c < w->cols; c++)
            d[r * w->cols + c] = row[c];
    }
    free(row);
    return d;
}

/* y (rows) = W x */
static void matvec(const double *W, int64_t rows, int64_t cols,
                   const double *x, double *y)
{
    for (int64_t r = 0; r < rows; r++) {
        double s = 0;
        for (int64_t c = 0; c < cols; c++)
            s += W[r * cols + c] * x[c];
        y[r] = s;
    }
}

static void rmsnorm(const double *x, const float *w, int n, double eps,
                    double *out)
{
    double ss = 0;
    for (int i = 0; i < n; i++)
        ss += x[i] * x[i];
    double inv = 1.0 / sqrt(ss / n + eps);
    for (int i = 0; i < n; i++)
        out[i] = x[i] * inv * w[i];
}

static void rope(double *x, int n_heads, int hd, int rope_dim, int pos,
                 double base, const float *factors, bool neox)
{
    for (int h = 0; h < n_heads; h++) {
        double *v = x + (size_t)h * hd;
        for (int i = 0; i < rope_dim / 2; i++) {
            double theta = pos * pow(base, -2.0 * i / rope_dim);
            if (factors)
                theta /= factors[i];
            double c = cos(theta), s = sin(theta);
            int a = neox ? i : 2 * i, b = neox ? i + rope_dim / 2 : 2 * i + 1;
            double x0 = v[a], x1 = v[b];
            v[a] = x0 * c - x1 * s;
            v[b] = x0 * s + x1 * c;
        }
    }
}

int naive_forward(const jq_model *m, const naive_run *r)
{
    const jq_hparams *hp = &m->hp;
    int E = hp->n_embd, H = hp->n_head, Hkv = hp->n_head_kv, D = hp->head_dim;
    int G = H / Hkv, F = hp->n_ff;
    int N = r->n_tokens + r->n_extra;
    double *x = calloc((size_t)N * E, sizeof(double));
    double *xb = malloc(sizeof(double) * E);
    double *q = malloc(sizeof(double) * (size_t)N * H * D);
    double *k = malloc(sizeof(double) * (size_t)N * Hkv * D);
    double *v = malloc(sizeof(double) * (size_t)N * Hkv * D);
    double *att = malloc(sizeof(double) * (size_t)N * H * D);
    double *p = malloc(sizeof(double) * N);
    double *hb = malloc(sizeof(double) * F), *hb2 = malloc(sizeof(double) * F);
    double *tmp = malloc(sizeof(double) * E);
    float *row = malloc(sizeof(float) * E);
    int rc = -1;

    for (int i = 0; i < N; i++) {
        if (i < r->n_tokens) {
            jq_dequantize_row(m->tok_embd.type,
                              (const char *)m->tok_embd.data +
                                  (size_t)r->tokens[i] * m->tok_embd.row_bytes,
                              row, E);
            for (int e = 0; e < E; e++)
                x[(size_t)i * E + e] = row[e];
        } else {
            for (int e = 0; e < E; e++)
                x[(size_t)i * E + e] =
                    r->extra_embd[(size_t)(i - r->n_tokens) * E + e];
        }
    }
    for (int l = 0; l < hp->n_layer; l++) {
        const jq_layer *ly = &m->layers[l];
        double *wq = weights(&ly->wq), *wk = weights(&ly->wk),
               *wv = weights(&ly->wv), *wo = weights(&ly->wo),
               *wg = weights(&ly->w_gate), *wu = weights(&ly->w_up),
               *wd = weights(&ly->w_down);
        if (!wq || !wk || !wv || !wo || !wg || !wu || !wd)
            goto done;
        for (int i = 0; i < N; i++) {
            rmsnorm(x + (size_t)i * E, ly->attn_norm, E, hp->rms_eps, xb);
            matvec(wq, H * D, E, xb, q + (size_t)i * H * D);
            matvec(wk, Hkv * D, E, xb, k + (size_t)i * Hkv * D);
            matvec(wv, Hkv * D, E, xb, v + (size_t)i * Hkv * D);
            if (ly->bq) {
                for (int d = 0; d < H * D; d++)
                    q[(size_t)i * H * D + d] += ly->bq[d];
                for (int d = 0; d < Hkv * D; d++) {
                    k[(size_t)i * Hkv * D + d] += ly->bk[d];
                    v[(size_t)i * Hkv * D + d] += ly->bv[d];
                }
            }
            rope(q + (size_t)i * H * D, H, D, hp->rope_dim, i, hp->rope_base,
                 m->rope_factors, hp->rope_neox);
            rope(k + (size_t)i * Hkv * D, Hkv, D, hp->rope_dim, i,
                 hp->rope_base, m->rope_factors, hp->rope_neox);
        }
        for (int i = 0; i < N; i++) {
            for (int h = 0; h < H; h++) {
                int g = h / G;
                double mx = -INFINITY;
                for (int j = 0; j <= i; j++) {
                    bool visible = true;
                    if (r->keep && i >= r->mask_from && j < r->mask_len)
                        visible = r->keep[((size_t)l * Hkv + g) * r->mask_len + j];
                    if (!visible) {
                        p[j] = -INFINITY;
                        continue;
                    }
                    double s = 0;
                    for (int d = 0; d < D; d++)
                        s += q[((size_t)i * H + h) * D + d] *
                             k[((size_t)j * Hkv + g) * D + d];
                    p[j] = s / sqrt((double)D);
                    if (p[j] > mx)
                        mx = p[j];
                }
                double z = 0;
                for (int j = 0; j <= i; j++)
                    z += p[j] = (p[j] == -INFINITY) ? 0 : exp(p[j] - mx);
                for (int j = 0; j <= i; j++)
                    p[j] /= z;
                if (r->scores && i >= r->score_row0 && i < r->score_row1)
                    for (int j = 0; j <= i && j < r->n_score; j++)
                        r->scores[((size_t)l * H + h) * r->n_score + j] += p[j];
                for (int d = 0; d < D; d++) {
                    double s = 0;
                    for (int j = 0; j <= i; j++)
                        s += p[j] * v[((size_t)j * Hkv + g) * D + d];
                    att[((size_t)i * H + h) * D + d] = s;
                }
            }
        }
        for (int i = 0; i < N; i++) {
            matvec(wo, E, H * D, att + (size_t)i * H * D, tmp);
            for (int e = 0; e < E; e++)
                x[(size_t)i * E + e] += tmp[e];
            rmsnorm(x + (size_t)i * E, ly->ffn_norm, E, hp->rms_eps, xb);
            matvec(wg, F, E, xb, hb);
            matvec(wu, F, E, xb, hb2);
            for (int f = 0; f < F; f++)
                hb[f] = hb[f] / (1 + exp(-hb[f])) * hb2[f];
            matvec(wd, E, F, hb, tmp);
            for (int e = 0; e < E; e++)
                x[(size_t)i * E + e] += tmp[e];
        }
        free(wq); free(wk); free(wv); free(wo); free(wg); free(wu); free(wd);
    }
    if (r->logits) {
        double *wout = weights(&m->output);
        if (!wout)
            goto done;
        rmsnorm(x + (size_t)r->logits_row * E, m->output_norm, E, hp->rms_eps, xb);
        matvec(wout, hp->n_vocab, E, xb, r->logits);
        free(wout);
    }
    rc = 0;
done:
    free(x); free(xb); free(q); free(k); free(v); free(att); free(p);
    free(hb); free(hb2); free(tmp); free(row);
    return rc;
}
