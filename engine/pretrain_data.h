/* pretrain_data.h — what `judgeq pretrain` trains on: recall-language
 * examples (recall_lang.h) chosen by a curriculum, as a pure function of
 * (seed, step, index), so a resumed run sees exactly the batches the
 * uninterrupted run would have.
 *
 * A step's sequence i is one example: its task drawn by the weights of the
 * step's task stage,
 * its length uniform in [min_frac L, L] with L the length stage of the
 * step, its difficulty uniform between the task's easiest and the current
 * level's hardest (level 0: the easiest, level 1: the task's default), the
 * question first with probability question_first. The held-out batch uses
 * another seed, the stage's full length and the level's hardest
 * difficulty, the tasks in turn.
 */
#ifndef JQ_PRETRAIN_DATA_H
#define JQ_PRETRAIN_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pretrain.h"
#include "recall_lang.h"

#define JQ_PT_MAX_POINTS 16

typedef struct {
    double at;    /* step fraction in [0, 1) where this point starts */
    double value; /* length (tokens) or level */
} jq_pt_point;

typedef struct {
    uint64_t seed;
    int64_t steps;      /* the run's length, for the step fractions */
    int32_t n_ctx;      /* longest example (the model's context) */
    /* lengths: piecewise constant; levels: piecewise linear */
    jq_pt_point length[JQ_PT_MAX_POINTS], level[JQ_PT_MAX_POINTS];
    int n_length, n_level;
    /* task mixes: piecewise constant, stage k from step fraction
     * task_at[k] */
    double task_weight[JQ_PT_MAX_POINTS][JQ_RECALL_COUNT_];
    double task_at[JQ_PT_MAX_POINTS];
    int n_task_stages;
    double question_first; /* share of examples with the question first */
    double min_frac;       /* shortest example as a share of the stage */
    int32_t digits;        /* digits of number values (0: the default) */
} jq_pt_data_plan;

/* Defaults (measured, see jq_pt_data_defaults): lengths
 * 0:48,0.08:96,0.2:128,0.35:256,0.55:512,0.8:1024 (clipped to n_ctx),
 * levels 0:0,0.7:1, tasks niah alone for the first 8% of the steps, niah
 * and multikey to 20%, then niah 1, multikey 2, mqar 2, vt 2, cwe 1;
 * question first 0.3, min_frac 0.5. */
void jq_pt_data_defaults(jq_pt_data_plan *p, uint64_t seed, int64_t steps,
                         int32_t n_ctx);

/* Parsers of the command-line forms: "FRAC:LEN,..." (fractions ascending
 * from 0, lengths in [16, n_ctx]), "FRAC:LEVEL,..." (levels in [0, 1]),
 * "TASK:WEIGHT,..." (tasks not named get 0; one weight must be > 0; a
 * task without ":WEIGHT" weighs 1), or stages of those separated by '/',
 * each but the first prefixed by its starting fraction:
 * "niah/0.05:niah,multikey:2". 0, or -1 with a message naming the bad
 * part. */
int jq_pt_parse_lengths(jq_pt_data_plan *p, const char *s, char *err,
                        size_t errlen);
int jq_pt_parse_levels(jq_pt_data_plan *p, const char *s, char *err,
                       size_t errlen);
int jq_pt_parse_tasks(jq_pt_data_plan *p, const char *s, char *err,
                      size_t errlen);
/* Checks that every active task fits the shortest length at its easiest
 * difficulty. */
int jq_pt_data_check(const jq_pt_data_plan *p, char *err, size_t errlen);

/* The stage length and the level at a step. */
int32_t jq_pt_data_length(const jq_pt_data_plan *p, int64_t step);
double jq_pt_data_level(const jq_pt_data_plan *p, int64_t step);
/* The hardest difficulty of task t at level x (the task's easiest at 0,
 * its default at 1). */
int32_t jq_pt_data_max_difficulty(jq_recall_task t, double level);

/* n examples and their sequences. */
typedef struct {
    jq_recall_example *ex;
    jq_recall_task *task;
    jq_pt_seq *seqs;
    int n;
} jq_pt_batch;

/* The training batch of `step` (heldout false) or the held-out batch at
 * step's stage and level (heldout true). 0, or -1 with a message. */
int jq_pt_data_batch(const jq_pt_data_plan *p, int64_t step, int n,
                     bool heldout, jq_pt_batch *b, char *err, size_t errlen);
void jq_pt_batch_free(jq_pt_batch *b);

/* The plan as text (one "key=value" line each), for checkpoints: a resumed
 * run must describe the same data. */
char *jq_pt_data_describe(const jq_pt_data_plan *p);

#endif
