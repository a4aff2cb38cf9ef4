/* adamw.c — AdamW and the learning-rate schedule (see adamw.h and
 * jq_pt_lr_at in pretrain.h). */
#include "adamw.h"

#include <math.h>

#include "pretrain.h"

void jq_adamw_update(float *p, const float *g, float *m, float *v, size_t n,
                     const jq_adamw_step *s)
{
    /* the bias corrections in double: 1 - b2^t is ~t (1 - b2) early on,
     * where float would lose digits of b2^t */
    const float bc1 = (float)(1.0 - pow((double)s->beta1, (double)s->t));
    const float bc2 = (float)(1.0 - pow((double)s->beta2, (double)s->t));
    const float b1 = s->beta1, b2 = s->beta2;
    const float step = s->lr / bc1, inv_bc2 = 1.0f / bc2;
    const float decay = 1.0f - s->lr * s->weight_decay;
    for (size_t i = 0; i < n; i++) {
        const float gi = g[i] * s->grad_scale;
        m[i] = b1 * m[i] + (1.0f - b1) * gi;
        v[i] = b2 * v[i] + (1.0f - b2) * gi * gi;
        p[i] = p[i] * decay - step * m[i] / (sqrtf(v[i] * inv_bc2) + s->eps);
    }
}

/* Linear warm-up over the first `warmup` steps (step 0 already takes
 * lr / warmup, not 0), then half a cosine from lr down to min_lr at the
 * last step; constant min_lr past the end. */
float jq_pt_lr_at(const jq_pt_opts *o, int64_t step)
{
    if (step < o->warmup)
        return o->lr * (float)(step + 1) / (float)o->warmup;
    const int64_t span = o->steps - o->warmup - 1;
    double f = span > 0 ? (double)(step - o->warmup) / (double)span : 1.0;
    if (f > 1.0)
        f = 1.0;
    return (float)(o->min_lr +
                   0.5 * (o->lr - o->min_lr) * (1.0 + cos(M_PI * f)));
}
