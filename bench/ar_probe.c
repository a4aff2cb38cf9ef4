/* ar_probe.c — can `judgeq pretrain`'s trainer learn a skill from random
 * initialisation, on sequences small enough to answer in minutes?
 *
 * Issue 9's recall model never learnt to bind a key to its value (multikey
 * at chance). This probe separates the skills involved, each a tiny
 * synthetic task over raw token ids with the loss on the last token only
 * (the recall language's situation: one answer after a long prompt):
 *
 *   prev     x1 .. xn            -> x(n-1)   a positional head (the token
 *                                            before the last)
 *   copy     x1 .. xn x1 .. xn   -> (loss on the whole second half) copying
 *                                            at a fixed offset
 *   ar       k1 v1 .. kn vn SEP kq -> vq     associative recall: find kq,
 *                                            answer the token after it
 *   ar-all   k1 v1 .. kn vn SEP, then every pair again in a random order
 *                                            (loss from the first asked
 *                                            key's value on): n binding
 *                                            targets per sequence instead
 *                                            of one; its accuracy is that
 *                                            of the asked values, on a
 *                                            held-out batch
 *   ar-echo  k1 v1 k1 .. kn vn kn SEP kq -> vq   the same, each pair
 *                                            followed by its key again,
 *                                            so that with --context-loss
 *                                            the previous-token head at
 *                                            every value is trained
 *                                            directly
 *
 * Tokens and keys are drawn from 100 ids (keys distinct within a
 * sequence), values from --values ids. It prints the training batches'
 * answer accuracy and loss (means over --log-every steps), then one JSON
 * line. Same trainer, AdamW and
 * schedule as `judgeq pretrain` (engine/pretrain.c). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pretrain.h"
#include "thread_pool.h"

enum { TASK_PREV, TASK_COPY, TASK_AR, TASK_AR_ECHO, TASK_AR_ALL };
enum { MAX_N = 64, MAX_LEN = 4 * MAX_N + 8, KEYS = 100, SEP = 5 };

typedef struct {
    uint64_t s;
} rng;

static uint32_t next(rng *r)
{
    r->s ^= r->s << 13;
    r->s ^= r->s >> 7;
    r->s ^= r->s << 17;
    return (uint32_t)(r->s >> 11);
}

/* One example of `task` with n items into tok; its jq_pt_seq. */
static jq_pt_seq make(int task, int n, int values, rng *r, int32_t *tok)
{
    int L = 0;
    tok[L++] = 1; /* BOS */
    if (task == TASK_PREV || task == TASK_COPY) {
        for (int i = 0; i < n; i++)
            tok[L++] = 10 + (int32_t)(next(r) % KEYS);
        if (task == TASK_PREV) {
            tok[L] = tok[L - 2];
            L++;
            return (jq_pt_seq){tok, L, L - 1};
        }
        const int prompt = L + 1; /* the second half's first is a guess */
        for (int i = 0; i < n; i++)
            tok[L++] = tok[1 + i];
        return (jq_pt_seq){tok, L, prompt};
    }
    int32_t k[MAX_N], v[MAX_N];
    for (int i = 0; i < n; i++) {
        bool again;
        do {
            k[i] = 10 + (int32_t)(next(r) % KEYS);
            again = false;
            for (int j = 0; j < i; j++)
                again |= k[j] == k[i];
        } while (again);
        v[i] = 200 + (int32_t)(next(r) % (uint32_t)values);
    }
    for (int i = 0; i < n; i++) {
        tok[L++] = k[i];
        tok[L++] = v[i];
        if (task == TASK_AR_ECHO)
            tok[L++] = k[i];
    }
    if (task == TASK_AR_ALL) {
        int order[MAX_N];
        for (int i = 0; i < n; i++)
            order[i] = i;
        for (int i = n - 1; i > 0; i--) {
            const int j = (int)(next(r) % (uint32_t)(i + 1)), t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
        tok[L++] = SEP;
        const int prompt = L + 1;
        for (int i = 0; i < n; i++) {
            tok[L++] = k[order[i]];
            tok[L++] = v[order[i]];
        }
        return (jq_pt_seq){tok, L, prompt};
    }
    const int q = (int)(next(r) % (uint32_t)n);
    tok[L++] = SEP;
    tok[L++] = k[q];
    tok[L++] = v[q];
    return (jq_pt_seq){tok, L, L - 1};
}

/* ar-all: the share of asked values (every second token after the
 * prompt's last) that the model predicts, over 64 held-out sequences */
static double asked_value_accuracy(const jq_pt_model *m, int n, int values,
                                   int32_t *tok, float *logits)
{
    rng r = {0x5eedULL};
    int ok = 0, total = 0;
    for (int e = 0; e < 64; e++) {
        const jq_pt_seq s = make(TASK_AR_ALL, n, values, &r, tok);
        char err[256];
        if (jq_pt_logits(m, tok, s.n_tokens - 1, logits, err, sizeof err) != 0)
            return -1;
        for (int p = s.n_prompt; p < s.n_tokens; p += 2) {
            const float *z = logits + (size_t)(p - 1) * (size_t)m->hp.n_vocab;
            int best = 0;
            for (int j = 1; j < m->hp.n_vocab; j++)
                if (z[j] > z[best])
                    best = j;
            ok += best == tok[p];
            total++;
        }
    }
    return (double)ok / total;
}

static void usage(FILE *f)
{
    fputs("usage: ar_probe [--task prev|copy|ar|ar-echo|ar-all] [--items N] "
          "[--values N]\n"
          "       [--steps N] [--batch N] [--lr X] [--weight-decay X]\n"
          "       [--context-loss W] [--n-embd N] [--n-layer N] "
          "[--n-head N]\n"
          "       [--threads N] [--seed S] [--log-every N] [--init-scale X]\n"
          "       [--rope-base X]\n"
          "Trains a llama model from random initialisation on a tiny\n"
          "synthetic task with judgeq's pretraining trainer and prints the\n"
          "answer accuracy as it goes (see the top of bench/ar_probe.c).\n"
          "Defaults: ar, 4 items, 10 values, 2000 steps, batch 32, lr 1e-3,\n"
          "decay 0.1, n-embd 128, 2 layers, 4 heads (2 KV), 2 threads.\n",
          f);
}

int main(int argc, char **argv)
{
    int task = TASK_AR, n = 4, values = 10, batch = 32, threads = 2, every = 100;
    jq_pt_hparams hp = {.n_vocab = 512, .n_embd = 128, .n_layer = 2,
                        .n_head = 4, .n_head_kv = 2, .n_ff = 384,
                        .n_ctx = MAX_LEN, .rope_base = 10000.0f,
                        .rms_eps = 1e-5f};
    jq_pt_opts o = jq_pt_opts_defaults();
    o.steps = 2000;
    o.warmup = 50;
    uint64_t seed = 1;
    double init_scale = 1.0;
    static const struct option opts[] = {
        {"task", 1, 0, 't'},     {"items", 1, 0, 'n'},
        {"values", 1, 0, 'v'},   {"steps", 1, 0, 's'},
        {"batch", 1, 0, 'b'},    {"lr", 1, 0, 'l'},
        {"weight-decay", 1, 0, 'w'}, {"context-loss", 1, 0, 'c'},
        {"n-embd", 1, 0, 'e'},   {"n-layer", 1, 0, 'L'},
        {"n-head", 1, 0, 'H'},   {"threads", 1, 0, 'j'},
        {"seed", 1, 0, 'S'},     {"log-every", 1, 0, 'g'},
        {"init-scale", 1, 0, 'i'}, {"rope-base", 1, 0, 'R'},
        {"help", 0, 0, 'h'},     {0, 0, 0, 0}};
    for (int c; (c = getopt_long(argc, argv, "h", opts, NULL)) != -1;) {
        switch (c) {
        case 't':
            task = !strcmp(optarg, "prev")      ? TASK_PREV
                   : !strcmp(optarg, "copy")    ? TASK_COPY
                   : !strcmp(optarg, "ar")      ? TASK_AR
                   : !strcmp(optarg, "ar-echo") ? TASK_AR_ECHO
                   : !strcmp(optarg, "ar-all")  ? TASK_AR_ALL
                                                : -1;
            break;
        case 'n': n = atoi(optarg); break;
        case 'v': values = atoi(optarg); break;
        case 's': o.steps = atoll(optarg); break;
        case 'b': batch = atoi(optarg); break;
        case 'l': o.lr = (float)atof(optarg); o.min_lr = o.lr / 10; break;
        case 'w': o.weight_decay = (float)atof(optarg); break;
        case 'c': o.context_loss = (float)atof(optarg); break;
        case 'e': hp.n_embd = atoi(optarg); hp.n_ff = 3 * hp.n_embd; break;
        case 'L': hp.n_layer = atoi(optarg); break;
        case 'H': hp.n_head = atoi(optarg); hp.n_head_kv = hp.n_head / 2; break;
        case 'j': threads = atoi(optarg); break;
        case 'S': seed = strtoull(optarg, NULL, 10); break;
        case 'g': every = atoi(optarg); break;
        case 'i': init_scale = atof(optarg); break;
        case 'R': hp.rope_base = (float)atof(optarg); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (task < 0 || n < 2 || n > MAX_N || values < 2 || values > 300 ||
        batch < 1 || batch > 4096 || threads < 1 || every < 1 ||
        o.steps < 1 || optind != argc) {
        fprintf(stderr, "ar_probe: an option is out of range (task name, "
                        "2 <= items <= %d, 2 <= values <= 300, batch "
                        "1-4096)\n", MAX_N);
        usage(stderr);
        return 2;
    }
    char err[256];
    jq_pt_model *m = jq_pt_model_new(&hp, err, sizeof err);
    if (!m) {
        fprintf(stderr, "ar_probe: %s\n", err);
        return 2;
    }
    jq_pt_model_init(m, seed);
    /* --init-scale: every matrix times X (the trainer's initialisation is
     * N(0, 0.02), GPT-2's, whatever the width) */
    for (int i = 0; i < m->n_tensors; i++)
        if (m->tensors[i].rows > 1)
            for (int64_t j = 0; j < m->tensors[i].rows * m->tensors[i].cols; j++)
                m->params[m->tensors[i].offset + (size_t)j] *= (float)init_scale;
    jq_pool *pool = jq_thread_pool_new(threads);
    jq_pt_trainer *t = pool ? jq_pt_trainer_new(m, &o, pool, err, sizeof err)
                            : NULL;
    int32_t *tok = malloc((size_t)batch * MAX_LEN * sizeof *tok);
    int32_t *heldout = malloc(MAX_LEN * sizeof *heldout);
    float *logits = malloc((size_t)MAX_LEN * (size_t)hp.n_vocab * sizeof *logits);
    jq_pt_seq *seqs = malloc((size_t)batch * sizeof *seqs);
    if (!t || !tok || !seqs || !heldout || !logits) {
        fprintf(stderr, "ar_probe: %s\n", t ? "out of memory" : err);
        return 1;
    }
    rng r = {seed * 0x9e3779b97f4a7c15ull + 1};
    double acc_window = 0, loss_window = 0, ctx_window = 0, last_acc = 0;
    int in_window = 0;
    for (int64_t step = 0; step < o.steps; step++) {
        for (int i = 0; i < batch; i++)
            seqs[i] = make(task, n, values, &r, tok + (size_t)i * MAX_LEN);
        jq_pt_step_info info;
        if (jq_pt_trainer_step(t, seqs, batch, &info, err, sizeof err) != 0) {
            fprintf(stderr, "ar_probe: %s\n", err);
            return 1;
        }
        acc_window += (double)info.stats.n_seq_correct / (double)info.stats.n_seq;
        loss_window += info.stats.loss_sum / (double)info.stats.n_tokens;
        if (info.stats.n_ctx_tokens > 0)
            ctx_window += info.stats.ctx_loss_sum / (double)info.stats.n_ctx_tokens;
        if (++in_window == every || step + 1 == o.steps) {
            last_acc = task == TASK_AR_ALL
                           ? asked_value_accuracy(m, n, values, heldout, logits)
                           : acc_window / in_window;
            fprintf(stderr, "step %lld  answer accuracy %.3f  loss %.4f",
                    (long long)step + 1, last_acc, loss_window / in_window);
            if (o.context_loss > 0)
                fprintf(stderr, "  prompt loss %.4f", ctx_window / in_window);
            fputc('\n', stderr);
            acc_window = loss_window = ctx_window = 0;
            in_window = 0;
        }
    }
    printf("{\"task\": \"%s\", \"items\": %d, \"steps\": %lld, \"batch\": %d, "
           "\"final_accuracy\": %.4f}\n",
           (const char *[]){"prev", "copy", "ar", "ar-echo", "ar-all"}[task], n,
           (long long)o.steps, batch, last_acc);
    jq_pt_trainer_free(t);
    jq_thread_pool_free(pool);
    jq_pt_model_free(m);
    free(tok);
    free(seqs);
    free(heldout);
    free(logits);
    return 0;
}
