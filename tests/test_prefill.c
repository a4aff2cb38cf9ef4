/* test_prefill.c — prefill with eviction against first principles.
 *
 * The reference is tests/naive_llama.c: a double-precision forward pass
 * with whole attention matrices and explicit masks. It checks that
 *  - observer scores computed inside the prefill pass (Judge Q soft rows,
 *    SnapKV's window, H2O's rows) equal the softmax probabilities of the
 *    full attention matrix;
 *  - decoding over a compacted store (uniform and per-head budgets) equals
 *    decoding over the full cache with the evicted entries masked out;
 *  - with B >= L every policy generates what the full cache generates;
 *  - the resident bytes are those of the budget.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#include "evict.h"
#include "gen_model.h"
#include "kernels.h"
#include "model.h"
#include "naive_llama.h"
#include "prefill.h"
#include "thread_pool.h"

#define L_PROMPT 48
#define N_SOFT 5

static jq_model *tiny_model(void)
{
    static char *path;
    if (!path) {
        jq_gen_model_params p = jq_gen_model_defaults();
        p.n_embd = 64;
        p.n_layer = 3;
        p.n_head = 4;
        p.n_head_kv = 2;
        p.n_ff = 96;
        p.n_vocab = 400;
        p.seed = 21;
        path = jqt_fmt("%s/prefill-tiny.gguf", jqt_tmpdir());
        char err[256];
        if (jq_gen_model_write(&p, path, err, sizeof err) != 0)
            fail_msg("%s", err);
    }
    char err[512];
    jq_model *m = jq_model_load(path, err, sizeof err);
    if (!m)
        fail_msg("%s", err);
    return m;
}

static void prompt_tokens(int32_t *t, int n, uint64_t seed)
{
    jqt_rng r;
    jqt_rng_seed(&r, seed);
    t[0] = 1;
    for (int i = 1; i < n; i++)
        t[i] = 3 + (int32_t)(jqt_rng_u64(&r) % 390);
}

static float *soft_rows(int n, int E)
{
    jqt_rng r;
    jqt_rng_seed(&r, 77);
    float *s = malloc(sizeof(float) * (size_t)n * E);
    jqt_fill_uniform(&r, s, (size_t)n * E, -1.5f, 1.5f);
    return s;
}

static jq_prefill_params params_for(jq_evict_policy p, int32_t budget,
                                    const float *soft, int32_t reserve)
{
    jq_prefill_params pp = {
        .spec = jq_evict_spec_default(p, budget),
        .soft_embd = soft,
        .n_soft = soft ? N_SOFT : 0,
        .kv_type = JQ_TYPE_F32,
        .reserve = reserve,
    };
    if (p == JQ_EVICT_JUDGEQ || p == JQ_EVICT_SNAPKV || p == JQ_EVICT_H2O ||
        p == JQ_EVICT_PYRAMIDKV || p == JQ_EVICT_ADAKV)
        pp.spec.window = 4;
    return pp;
}

/* Scores of the policy's observers: engine (inside the prefill pass) vs
 * the naive full attention matrix. */
static void check_scores(jq_evict_policy policy)
{
    jq_model *m = tiny_model();
    const jq_hparams *hp = &m->hp;
    int32_t toks[L_PROMPT];
    prompt_tokens(toks, L_PROMPT, 5);
    float *soft = policy == JQ_EVICT_JUDGEQ ? soft_rows(N_SOFT, hp->n_embd) : NULL;
    jq_prefill_params pp = params_for(policy, 16, soft, 0);
    char err[256];
    jq_ctx *c = jq_ctx_new(m, L_PROMPT + N_SOFT, L_PROMPT + N_SOFT, NULL, err,
                           sizeof err);
    assert_non_null(c);
    size_t n = (size_t)hp->n_layer * hp->n_head * L_PROMPT;
    float *raw = malloc(sizeof(float) * n);
    float *logits = malloc(sizeof(float) * (size_t)hp->n_vocab);
    assert_int_equal(jq_prefill_scores(c, toks, L_PROMPT, &pp, raw, logits,
                                       err, sizeof err),
                     0);

    double *ref = calloc(n, sizeof(double));
    double *ref_logits = malloc(sizeof(double) * (size_t)hp->n_vocab);
    int32_t r0, r1;
    jq_evict_observer_rows(&pp.spec, L_PROMPT, &r0, &r1);
    if (policy == JQ_EVICT_JUDGEQ) {
        r0 = L_PROMPT;
        r1 = L_PROMPT + N_SOFT;
    }
    naive_run nr = {.tokens = toks, .n_tokens = L_PROMPT,
                    .extra_embd = soft, .n_extra = soft ? N_SOFT : 0,
                    .scores = ref, .score_row0 = r0, .score_row1 = r1,
                    .n_score = L_PROMPT, .logits_row = L_PROMPT - 1,
                    .logits = ref_logits};
    assert_int_equal(naive_forward(m, &nr), 0);
    double worst = 0, mass = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs(raw[i] - ref[i]);
        if (!(d <= worst))
            worst = d;
        mass += raw[i];
    }
    if (!(worst < 1e-5))
        fail_msg("%s scores differ from the full attention matrix by %g",
                 jq_evict_policy_name(policy), worst);
    assert_true(mass > 0.5); /* the observers did score something */
    /* observers never change the last prompt position's logits */
    for (int i = 0; i < hp->n_vocab; i++)
        assert_true(fabs(logits[i] - ref_logits[i]) < 1e-4);
    free(ref);
    free(ref_logits);
    free(raw);
    free(logits);
    free(soft);
    jq_ctx_free(c);
    jq_model_free(m);
}

static void test_judgeq_scores(void **state)
{
    (void)state;
    check_scores(JQ_EVICT_JUDGEQ);
}

static void test_snapkv_and_h2o_scores(void **state)
{
    (void)state;
    check_scores(JQ_EVICT_SNAPKV);
    check_scores(JQ_EVICT_H2O);
}

/* Decode after eviction vs the full cache with evicted entries masked. */
static void check_compacted_decode(jq_evict_policy policy, uint32_t kv_type,
                                   double tol)
{
    jq_model *m = tiny_model();
    const jq_hparams *hp = &m->hp;
    enum { N_DEC = 6 };
    int32_t toks[L_PROMPT + N_DEC];
    prompt_tokens(toks, L_PROMPT + N_DEC, 9);
    float *soft = policy == JQ_EVICT_JUDGEQ ? soft_rows(N_SOFT, hp->n_embd) : NULL;
    jq_prefill_params pp = params_for(policy, 12, soft, N_DEC);
    pp.kv_type = kv_type;
    char err[256];
    jq_pool *pool = jq_thread_pool_new(2);
    jq_ctx *c = jq_ctx_new_typed(m, L_PROMPT + N_SOFT + N_DEC, L_PROMPT + N_SOFT,
                                 kv_type, pool, err, sizeof err);
    assert_non_null(c);
    float *logits = malloc(sizeof(float) * (size_t)hp->n_vocab);
    jq_prefill_result r;
    assert_int_equal(jq_prefill(c, toks, L_PROMPT, &pp, logits, &r, err,
                                sizeof err),
                     0);
    /* resident bytes are those of the kept entries */
    jq_kv_store *kv = jq_ctx_kv(c);
    assert_true(kv != jq_ctx_own_kv(c));
    assert_int_equal(jq_kv_store_bytes_held(kv), r.kv_bytes_kept);
    bool uniform = true;
    for (int h = 1; h < hp->n_layer * hp->n_head_kv; h++)
        uniform &= r.kept->counts[h] == r.kept->counts[0];
    if (policy == JQ_EVICT_SNAPKV || policy == JQ_EVICT_JUDGEQ ||
        policy == JQ_EVICT_STREAMING || policy == JQ_EVICT_H2O) {
        assert_true(uniform);
        assert_int_equal(r.kept->counts[0], 12);
        assert_int_equal(r.kv_bytes_kept,
                         2ull * hp->n_layer * hp->n_head_kv * 12 * hp->head_dim *
                             (kv_type == JQ_TYPE_F32 ? 4 : 2));
    }
    for (int i = 0; i < N_DEC; i++)
        assert_int_equal(jq_ctx_eval(c, &toks[L_PROMPT + i], 1, logits, err,
                                     sizeof err),
                         0);
    assert_int_equal(jq_ctx_n_past(c), L_PROMPT + N_DEC);

    bool *keep = calloc((size_t)hp->n_layer * hp->n_head_kv * L_PROMPT, 1);
    for (int h = 0; h < hp->n_layer * hp->n_head_kv; h++)
        for (int i = 0; i < r.kept->counts[h]; i++)
            keep[(size_t)h * L_PROMPT + r.kept->positions[(size_t)h * L_PROMPT + i]] = true;
    double *ref = malloc(sizeof(double) * (size_t)hp->n_vocab);
    naive_run nr = {.tokens = toks, .n_tokens = L_PROMPT + N_DEC,
                    .keep = keep, .mask_from = L_PROMPT, .mask_len = L_PROMPT,
                    .logits_row = L_PROMPT + N_DEC - 1, .logits = ref};
    assert_int_equal(naive_forward(m, &nr), 0);
    double worst = 0;
    for (int i = 0; i < hp->n_vocab; i++) {
        double d = fabs(logits[i] - ref[i]);
        if (!(d <= worst))
            worst = d;
    }
    if (!(worst < tol))
        fail_msg("%s (%s KV): compacted decode differs from masked full "
                 "decode by %g",
                 jq_evict_policy_name(policy),
                 kv_type == JQ_TYPE_F32 ? "f32" : "f16", worst);
    free(keep);
    free(ref);
    free(logits);
    free(soft);
    jq_prefill_result_free(&r);
    jq_ctx_free(c);
    jq_thread_pool_free(pool);
    jq_model_free(m);
}

static void test_compacted_decode_uniform(void **state)
{
    (void)state;
    check_compacted_decode(JQ_EVICT_SNAPKV, JQ_TYPE_F32, 1e-4);
    check_compacted_decode(JQ_EVICT_STREAMING, JQ_TYPE_F32, 1e-4);
    check_compacted_decode(JQ_EVICT_H2O, JQ_TYPE_F32, 1e-4);
    check_compacted_decode(JQ_EVICT_JUDGEQ, JQ_TYPE_F32, 1e-4);
}

static void test_compacted_decode_per_head(void **state)
{
    (void)state;
    check_compacted_decode(JQ_EVICT_ADAKV, JQ_TYPE_F32, 1e-4);
    check_compacted_decode(JQ_EVICT_PYRAMIDKV, JQ_TYPE_F32, 1e-4);
}

/* F16 storage rounds K and V to 11 bits: logits move by ~1e-3 of their
 * scale, far less than any eviction error but more than 1e-4. */
static void test_compacted_decode_f16(void **state)
{
    (void)state;
    check_compacted_decode(JQ_EVICT_SNAPKV, JQ_TYPE_F16, 2e-2);
    check_compacted_decode(JQ_EVICT_ADAKV, JQ_TYPE_F16, 2e-2);
}

/* With B >= L nothing is evicted: every policy generates what full does. */
static void test_budget_covering_prompt_changes_nothing(void **state)
{
    (void)state;
    jq_model *m = tiny_model();
    const jq_hparams *hp = &m->hp;
    enum { N_GEN = 10 };
    int32_t toks[L_PROMPT];
    prompt_tokens(toks, L_PROMPT, 13);
    float *soft = soft_rows(N_SOFT, hp->n_embd);
    char err[256];
    jq_ctx *c = jq_ctx_new(m, L_PROMPT + N_SOFT + N_GEN, L_PROMPT + N_SOFT,
                           NULL, err, sizeof err);
    float *logits = malloc(sizeof(float) * (size_t)hp->n_vocab);
    int32_t want[N_GEN];
    for (int p = 0; p < JQ_EVICT_COUNT_; p++) {
        int32_t gen[N_GEN], oracle_toks[N_GEN];
        for (int i = 0; i < N_GEN; i++)
            oracle_toks[i] = 5 + i;
        jq_prefill_params pp = params_for((jq_evict_policy)p, L_PROMPT,
                                          p == JQ_EVICT_JUDGEQ ? soft : NULL,
                                          N_GEN);
        pp.oracle_tokens = oracle_toks;
        pp.n_oracle = N_GEN;
        jq_prefill_result r;
        assert_int_equal(jq_prefill(c, toks, L_PROMPT, &pp, logits, &r, err,
                                    sizeof err),
                         0);
        for (int h = 0; h < hp->n_layer * hp->n_head_kv; h++)
            assert_int_equal(r.kept->counts[h], L_PROMPT);
        for (int i = 0; i < N_GEN; i++) {
            int32_t best = 0;
            for (int v = 1; v < hp->n_vocab; v++)
                if (logits[v] > logits[best])
                    best = v;
            gen[i] = best;
            assert_int_equal(jq_ctx_eval(c, &best, 1, logits, err, sizeof err), 0);
        }
        if (p == JQ_EVICT_FULL)
            memcpy(want, gen, sizeof want);
        else
            assert_memory_equal(gen, want, sizeof want);
        jq_prefill_result_free(&r);
    }
    free(logits);
    free(soft);
    jq_ctx_free(c);
    jq_model_free(m);
}

static void test_prefill_rejects(void **state)
{
    (void)state;
    jq_model *m = tiny_model();
    int32_t toks[L_PROMPT];
    prompt_tokens(toks, L_PROMPT, 1);
    char err[256];
    jq_ctx *c = jq_ctx_new(m, L_PROMPT + N_SOFT, L_PROMPT + N_SOFT, NULL, err,
                           sizeof err);
    jq_prefill_result r;
    jq_prefill_params pp = params_for(JQ_EVICT_SNAPKV, 0, NULL, 0);
    assert_int_equal(jq_prefill(c, toks, L_PROMPT, &pp, NULL, &r, err, sizeof err), -1);
    assert_non_null(strstr(err, "budget"));
    pp = params_for(JQ_EVICT_SNAPKV, 4, NULL, 0); /* window 4 = budget */
    assert_int_equal(jq_prefill(c, toks, L_PROMPT, &pp, NULL, &r, err, sizeof err), -1);
    assert_non_null(strstr(err, "window"));
    pp = params_for(JQ_EVICT_JUDGEQ, 16, NULL, 0); /* no soft tokens */
    assert_int_equal(jq_prefill(c, toks, L_PROMPT, &pp, NULL, &r, err, sizeof err), -1);
    assert_non_null(strstr(err, "soft"));
    jq_ctx_free(c);
    jq_model_free(m);
}


/* An allocator placing stores in one caller buffer (as a daemon places
 * them in memfds). */
typedef struct {
    void *mem;
    size_t size;
} arena;

static jq_kv_store *arena_alloc(void *ud, int32_t n_layer, int32_t n_head_kv,
                                int32_t head_dim, uint32_t type,
                                const int32_t *caps)
{
    arena *a = ud;
    jq_kv_mem_layout L = jq_kv_store_mem_layout(n_layer, n_head_kv, head_dim,
                                                type, caps);
    a->size = L.total_bytes;
    a->mem = aligned_alloc(64, a->size);
    return jq_kv_store_new_in(a->mem, a->size, n_layer, n_head_kv, head_dim,
                              type, caps);
}

/* Greedy-free decode of fixed tokens on a store; returns the logits after
 * the last one. */
static float *decode_on(jq_ctx *c, jq_kv_store *kv, const int32_t *toks,
                        int n)
{
    const jq_hparams *hp = &jq_ctx_model(c)->hp;
    float *logits = malloc(sizeof(float) * (size_t)hp->n_vocab);
    char err[256];
    jq_ctx_set_kv(c, kv, false);
    for (int i = 0; i < n; i++)
        assert_int_equal(jq_ctx_eval(c, &toks[i], 1, logits, err, sizeof err), 0);
    assert_ptr_equal(jq_ctx_detach_kv(c), kv); /* back to the caller */
    return logits;
}

/* Fork: two tails sharing one compacted prefix decode independently and
 * each equals decoding on a private copy of the prefix; the prefix is not
 * modified. Stores placed in caller memory behave like heap stores. */
static void test_fork_tails_and_external_memory(void **state)
{
    (void)state;
    jq_model *m = tiny_model();
    const jq_hparams *hp = &m->hp;
    int32_t toks[L_PROMPT];
    prompt_tokens(toks, L_PROMPT, 17);
    char err[256];
    jq_ctx *c = jq_ctx_new(m, L_PROMPT + 8, L_PROMPT, NULL, err, sizeof err);
    jq_prefill_params pp = params_for(JQ_EVICT_SNAPKV, 12, NULL, 0);
    pp.detach = true;
    arena ar = {0};
    pp.alloc = arena_alloc;
    pp.alloc_ud = &ar;
    jq_prefill_result r;
    assert_int_equal(jq_prefill(c, toks, L_PROMPT, &pp, NULL, &r, err, sizeof err), 0);
    jq_kv_store *prefix = jq_ctx_detach_kv(c);
    assert_non_null(prefix);
    assert_true(prefix->external);
    assert_int_equal(prefix->next_pos, L_PROMPT);
    assert_int_equal(jq_kv_store_room(prefix), 0);

    /* a private heap copy of the prefix with room to decode: gather every
     * entry (identity indices) */
    size_t heads = (size_t)hp->n_layer * hp->n_head_kv;
    int32_t *idx = malloc(sizeof(int32_t) * heads * 12);
    for (size_t h = 0; h < heads; h++)
        for (int i = 0; i < 12; i++)
            idx[h * 12 + i] = i;
    jq_kv_store *copy = jq_kv_store_gather(prefix, r.kept->counts, idx, 12, 4,
                                           JQ_TYPE_F32);
    assert_non_null(copy);

    size_t kv_bytes = (size_t)prefix->n_entries * hp->head_dim * 4;
    void *before = malloc(kv_bytes);
    memcpy(before, prefix->k, kv_bytes);

    jq_kv_store *t1 = jq_kv_store_new_tail(prefix, 4);
    jq_kv_store *t2 = jq_kv_store_new_tail(prefix, 4);
    assert_int_equal(jq_kv_visible(t1, 0, 0), 12);
    const int32_t a[3] = {10, 11, 12}, b[3] = {200, 201, 202};
    float *la = decode_on(c, t1, a, 3);
    float *lb = decode_on(c, t2, b, 3);
    float *lref = decode_on(c, copy, a, 3);
    assert_int_equal(jq_kv_visible(t1, 0, 0), 15);
    assert_int_equal(t1->next_pos, L_PROMPT + 3);
    double worst = 0, apart = 0;
    for (int i = 0; i < hp->n_vocab; i++) {
        worst = fmax(worst, fabs((double)la[i] - lref[i]));
        apart = fmax(apart, fabs((double)la[i] - lb[i]));
    }
    if (!(worst < 1e-5))
        fail_msg("decode on a shared-prefix tail differs from a private copy "
                 "by %g",
                 worst);
    assert_true(apart > 1e-3); /* different continuations really differ */
    assert_memory_equal(before, prefix->k, kv_bytes);

    free(before);
    free(la);
    free(lb);
    free(lref);
    free(idx);
    jq_kv_store_free(t1);
    jq_kv_store_free(t2);
    jq_kv_store_free(copy);
    jq_kv_store_free(prefix);
    free(ar.mem);
    jq_prefill_result_free(&r);
    jq_ctx_free(c);
    jq_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_judgeq_scores),
        cmocka_unit_test(test_snapkv_and_h2o_scores),
        cmocka_unit_test(test_compacted_decode_uniform),
        cmocka_unit_test(test_compacted_decode_per_head),
        cmocka_unit_test(test_compacted_decode_f16),
        cmocka_unit_test(test_budget_covering_prompt_changes_nothing),
        cmocka_unit_test(test_prefill_rejects),
        cmocka_unit_test(test_fork_tails_and_external_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
