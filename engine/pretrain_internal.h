/* pretrain_internal.h — the pretrainer's pieces below the trainer: the
 * forward/backward pass over a group of sequences and the blockwise causal
 * attention (engine-internal; tests use them directly). */
#ifndef JQ_PRETRAIN_INTERNAL_H
#define JQ_PRETRAIN_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pretrain.h"

/* ------------------------------------------------ attention (attn.c) */

/* Query rows per block: a block's scores are BLOCK x (keys seen) floats,
 * at most BLOCK x L, never L x L. */
/* Measured at 1024 tokens, head_dim 32: 64 rows per block is as fast as
 * 128 and 5-10% faster than 256 (more masked work per block). */
#define JQ_PT_ATTN_BLOCK 64

typedef struct {
    int n_head, n_head_kv, head_dim;
} jq_pt_attn_shape;

/* Causal attention of one sequence of L tokens: q rows (n_head * head_dim
 * floats, RoPE applied), k and v rows (n_head_kv * head_dim), query head h
 * reading KV head h / (n_head / n_head_kv), scale 1/sqrt(head_dim). out
 * rows as q; lse[t * n_head + h] = the log-sum-exp of row t's scaled
 * scores in head h. S: JQ_PT_ATTN_BLOCK * L floats of scratch. */
void jq_pt_attn_forward(const jq_pt_attn_shape *a, int64_t L,
                        const float *q, const float *k, const float *v,
                        float *out, float *lse, float *S);
/* Its backward from the saved out and lse and the output gradient dout:
 * dq written, dk and dv written (not accumulated). Scratch: S and dP of
 * JQ_PT_ATTN_BLOCK * L floats, D of L floats. */
void jq_pt_attn_backward(const jq_pt_attn_shape *a, int64_t L,
                         const float *q, const float *k, const float *v,
                         const float *out, const float *lse,
                         const float *dout, float *dq, float *dk, float *dv,
                         float *S, float *dP, float *D);

/* --------------------------------------- group passes (pretrain_model.c) */

/* Activations of one group of sequences (at most cap_tokens positions in
 * all, cap_seq in one), saved by the forward pass for the backward. */
typedef struct jq_pt_work jq_pt_work;

jq_pt_work *jq_pt_work_new(const jq_pt_model *m, int64_t cap_tokens,
                           int64_t cap_seq);
void jq_pt_work_free(jq_pt_work *w);
int64_t jq_pt_work_cap_tokens(const jq_pt_work *w);

/* Whether s can be trained on by m: tokens in the vocabulary, 1 <=
 * n_prompt < n_tokens <= n_ctx + 1. 0, or -1 naming the fault. */
int jq_pt_seq_check(const jq_pt_model *m, const jq_pt_seq *s, char *err,
                    size_t errlen);
/* Positions a sequence occupies (tokens read): n_tokens - 1. */
static inline int64_t jq_pt_seq_positions(const jq_pt_seq *s)
{
    return (int64_t)s->n_tokens - 1;
}

/* Forward over seqs[0, n) (checked by the caller; positions summing to at
 * most the work's cap_tokens), then the loss on their scored tokens added
 * to st. With grad != NULL, the backward of loss_scale * (sum of the
 * losses), added into grad (m->n_params floats). With ctx_scale > 0 the
 * prompt's tokens are predicted too and ctx_scale * (sum of their losses)
 * joins the backward (their loss goes to st's ctx_ fields; the answer
 * statistics stay the answer's). With all_logits != NULL
 * (no grad), every position is scored instead, with the next token as its
 * target, and the logits are copied out (positions x n_vocab, in order). */
void jq_pt_group_pass(const jq_pt_model *m, jq_pt_work *w,
                      const jq_pt_seq *seqs, int n, float loss_scale,
                      float ctx_scale, float *grad, jq_pt_stats *st,
                      float *all_logits);

/* The trainer's state (pretrain.c) for pretrain_ckpt.c: its model, AdamW
 * moments (n_params each) and completed steps. */
void jq_pt_trainer_state(jq_pt_trainer *t, jq_pt_model **m, float **adam_m,
                         float **adam_v, int64_t **step);

#endif
