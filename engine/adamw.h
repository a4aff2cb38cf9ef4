/* adamw.h — AdamW on a range of parameters (the pretrainer's optimizer). */
#ifndef JQ_ADAMW_H
#define JQ_ADAMW_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    float lr;           /* this step's learning rate */
    float weight_decay; /* decoupled: p -= lr * wd * p, 0 for no decay */
    float beta1, beta2, eps;
    float grad_scale;   /* multiplies every gradient (clipping) */
    int64_t t;          /* 1-based step, for the bias corrections */
} jq_adamw_step;

/* One AdamW step (Loshchilov & Hutter; PyTorch's AdamW) on p[0, n) with
 * gradients g and moments m, v updated in place:
 *   g' = grad_scale g;  m = b1 m + (1 - b1) g';  v = b2 v + (1 - b2) g'^2
 *   p = p - lr wd p - lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
 * (the decay applied to p before the Adam term, as PyTorch does).
 * Element-wise, so any split of a tensor over threads gives the same
 * bits. */
void jq_adamw_update(float *p, const float *g, float *m, float *v, size_t n,
                     const jq_adamw_step *s);

#endif
