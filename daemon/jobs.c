/* jobs.c — what a worker does with a job: the only daemon code that calls
 * the engine's compute functions. Runs on a pool's leader thread; see
 * daemon.h for what it may touch.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"
#include "kv_export.h"
#include "log.h"
#include "sample.h"

/* Tokens a generation produces before it goes to the back of its pool's
 * queue, so eight clients on one node all make progress. */
#define TURN_TOKENS 16

static bool finish(jq_job *job, Judgeq__ErrorCode code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static bool finish(jq_job *job, Judgeq__ErrorCode code, const char *fmt, ...)
{
    job->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(job->message, sizeof job->message, fmt, ap);
    va_end(ap);
    return true;
}

void jq_job_free(jq_job *job)
{
    if (!job)
        return;
    free(job->tokens);
    free(job->text);
    free(job->stop_tokens);
    free(job->out_text);
    if (job->sampler)
        jq_sampler_free(job->sampler);
    jq_prefill_result_free(&job->result);
    if (job->store)
        jq_kv_store_free(job->store);
    jq_kv_mem_release(&job->mem);
    if (job->export_fd >= 0)
        close(job->export_fd);
    if (job->soft_fd >= 0)
        close(job->soft_fd);
    jq_kv_export_layout_free(job->export_layout);
    jq_soft_ref_put(job->soft);
    free(job);
}

/* The pool's scratch context for KV type t, made (or remade larger) on
 * first use: the prefill scratch must hold the prompt plus the soft
 * tokens, in the session's type, as `judgeq run` does, so results match
 * the offline command bit for bit. */
static jq_ctx *pool_ctx(jq_node_pool *p, uint32_t t, int32_t need, char *err,
                        size_t errlen)
{
    jq_ctx **slot = &p->ctx[t == JQ_TYPE_F16 ? 1 : 0];
    if (*slot && jq_ctx_n_ctx(*slot) >= need &&
        jq_ctx_max_batch(*slot) >= need)
        return *slot;
    jq_ctx_free(*slot);
    int32_t n = p->d->max_context;
    if (n < need)
        n = need;
    *slot = jq_ctx_new_typed(p->d->model, n, n, t, &p->base, err, errlen);
    return *slot;
}

/* jq_kv_alloc_fn for prefill: the session's compacted store goes into a
 * memfd bound to the pool's node before anything touches it. */
static jq_kv_store *alloc_in_memfd(void *ud, int32_t n_layer,
                                   int32_t n_head_kv, int32_t head_dim,
                                   uint32_t type, const int32_t *caps)
{
    jq_job *job = ud;
    if (job->mem.fd >= 0)
        return NULL; /* one store per prefill */
    jq_kv_mem_layout L = jq_kv_store_mem_layout(n_layer, n_head_kv, head_dim,
                                                type, caps);
    if (L.total_bytes == 0)
        return NULL;
    char name[64], err[256];
    snprintf(name, sizeof name, "judgeq-kv:session-%llu",
             (unsigned long long)job->session->id);
    if (jq_kv_mem_create(&job->mem, L.total_bytes, name, err, sizeof err)) {
        jq_log(JQ_LOG_ERR, "%s", err);
        return NULL;
    }
    jq_daemon *d = job->pool->d;
    if (jq_plan_bind_memory(d->topo, d->plan, job->pool->index,
                            job->mem.addr, job->mem.size, err, sizeof err))
        jq_log(JQ_LOG_WARNING, "%s", err);
    jq_kv_store *s = jq_kv_store_new_in(job->mem.addr, job->mem.size, n_layer,
                                        n_head_kv, head_dim, type, caps);
    if (!s)
        jq_kv_mem_release(&job->mem);
    return s;
}

/* Reads the soft tokens a client named (prefill.eviction.soft_path),
 * through the descriptor the loop thread opened after --allow-path
 * allowed it, into job->soft for this prefill alone. True when the job is
 * finished with an error. */
static bool load_client_soft(jq_node_pool *p, jq_job *job)
{
    char path[64], err[512];
    snprintf(path, sizeof path, "/proc/self/fd/%d", job->soft_fd);
    jq_soft_tokens *st = jq_soft_tokens_load(path, p->d->model, err,
                                             sizeof err);
    close(job->soft_fd);
    job->soft_fd = -1;
    if (!st)
        return finish(job, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                      "prefill.eviction.soft_path: %s", err);
    jq_soft_ref *ref = calloc(1, sizeof *ref);
    if (!ref) {
        jq_soft_tokens_free(st);
        return finish(job, JUDGEQ__ERROR_CODE__RESOURCE_EXHAUSTED,
                      "out of memory for soft tokens");
    }
    atomic_store(&ref->refs, 1);
    ref->soft = st;
    jq_soft_ref_put(job->soft);
    job->soft = ref;
    return false;
}

static bool run_prefill(jq_node_pool *p, jq_job *job)
{
    jq_session *s = job->session;
    const jq_model *m = p->d->model;
    char err[512];
    if (job->text) {
        int32_t *ids;
        size_t n;
        if (jq_tokenize(m->vocab, job->text, strlen(job->text),
                    job->add_bos && jq_vocab_add_bos(m->vocab),
                        &ids, &n, err, sizeof err) != 0)
            return finish(job, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                          "prefill.text: %s", err);
        job->tokens = ids;
        if (n > (size_t)INT32_MAX)
            n = INT32_MAX;
        job->n_tokens = (int32_t)n;
    }
    int32_t L = job->n_tokens;
    if (L < 1)
        return finish(job, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                      "prefill.text is empty after tokenization");
    if (L > s->max_context)
        return finish(job, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                      "the prompt has %d tokens, more than session %llu's "
                      "max_context %d",
                      L, (unsigned long long)s->id, s->max_context);
    int32_t reserve = job->reserve >= 0 ? job->reserve : s->max_context - L;
    if ((int64_t)L + reserve > s->max_context)
        return finish(job, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                      "prefill.reserve %d + the prompt's %d tokens exceed "
                      "session %llu's max_context %d",
                      reserve, L, (unsigned long long)s->id, s->max_context);
    if (job->soft_fd >= 0 && load_client_soft(p, job))
        return true;
    const jq_soft_tokens *soft =
        job->spec.policy == JQ_EVICT_JUDGEQ && job->soft ? job->soft->soft
                                                          : NULL;
    if (job->spec.policy == JQ_EVICT_JUDGEQ && !soft)
        return finish(job, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                      "prefill.eviction.policy judgeq needs soft tokens "
                      "(--soft)");
    int32_t n_soft = soft ? soft->n : 0;
    jq_ctx *ctx = pool_ctx(p, s->kv_type, L + n_soft, err, sizeof err);
    if (!ctx)
        return finish(job, JUDGEQ__ERROR_CODE__RESOURCE_EXHAUSTED,
                      "no scratch for a prompt of %d tokens: %s", L, err);
    jq_prefill_params params = {
        .spec = job->spec,
        .soft_embd = soft ? soft->emb : NULL,
        .n_soft = n_soft,
        .kv_type = s->kv_type,
        .reserve = reserve,
        .detach = true,
        .alloc = alloc_in_memfd,
        .alloc_ud = job,
    };
    int rc = jq_prefill(ctx, job->tokens, L, &params, p->logits,
                        &job->result, err, sizeof err);
    jq_kv_store *store = jq_ctx_detach_kv(ctx);
    jq_ctx_reset(ctx);
    if (rc != 0 || !store) {
        if (store)
            jq_kv_store_free(store);
        jq_kv_mem_release(&job->mem);
        return finish(job, JUDGEQ__ERROR_CODE__INTERNAL, "prefill: %s",
                      rc != 0 ? err : "the engine kept no store");
    }
    job->store = store;
    job->store_bytes = job->mem.fd >= 0 ? job->mem.size
                                        : jq_kv_store_bytes_allocated(store);
    memcpy(s->logits, p->logits, sizeof(float) * (size_t)m->hp.n_vocab);
    return true;
}

/* log p(tok) under the model's distribution (temperature 1), in double so
 * a 100k vocabulary does not lose the tail. */
static float logprob_of(const float *logits, int32_t n, int32_t tok)
{
    float mx = logits[0];
    for (int32_t i = 1; i < n; i++)
        if (logits[i] > mx)
            mx = logits[i];
    double sum = 0;
    for (int32_t i = 0; i < n; i++)
        sum += exp((double)(logits[i] - mx));
    double lp = (double)(logits[tok] - mx) - log(sum);
    return lp < 0 ? (float)lp : 0.0f; /* rounding may give +1e-7 at p = 1 */
}

static bool is_stop(const jq_job *job, int32_t tok)
{
    for (int32_t i = 0; i < job->n_stop; i++)
        if (job->stop_tokens[i] == tok)
            return true;
    return false;
}

/* One turn of a generation: up to TURN_TOKENS tokens. The last sampled
 * token stays unevaluated (session->pending) until the next one is needed,
 * as `judgeq run` does, so a generation of n tokens costs n - 1 decode
 * steps and a later Generate continues exactly where this one stopped. */
static bool run_generate(jq_node_pool *p, jq_job *job)
{
    jq_session *s = job->session;
    const jq_model *m = p->d->model;
    char err[512];
    if (!s->store || !s->has_logits)
        return finish(job, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                      "session %llu has no prompt yet: send Prefill first",
                      (unsigned long long)s->id);
    if (!job->sampler) {
        job->sampler = jq_sampler_new(&job->sampling, m->hp.n_vocab);
        if (!job->sampler)
            return finish(job, JUDGEQ__ERROR_CODE__RESOURCE_EXHAUSTED,
                          "out of memory for a sampler");
    }
    jq_ctx *ctx = pool_ctx(p, s->kv_type, 1, err, sizeof err);
    if (!ctx)
        return finish(job, JUDGEQ__ERROR_CODE__RESOURCE_EXHAUSTED,
                      "no decode context: %s", err);
    int32_t eos = jq_vocab_eos(m->vocab);
    jq_ctx_set_kv(ctx, s->store, false);
    bool done = false;
    char piece[256];
    for (int turn = 0; turn < TURN_TOKENS && !done; turn++) {
        if (atomic_load(&job->cancel)) {
            job->stop_reason = "cancelled";
            done = true;
            break;
        }
        if (s->pending >= 0) {
            if (jq_kv_store_room(s->store) < 1 ||
                s->store->next_pos >= s->max_context) {
                job->stop_reason = "context_full";
                done = true;
                break;
            }
            double t0 = jq_now_s();
            int rc = jq_ctx_eval(ctx, &s->pending, 1, s->logits, err,
                                 sizeof err);
            job->decode_s += jq_now_s() - t0;
            if (rc != 0) {
                jq_ctx_reset(ctx);
                return finish(job, JUDGEQ__ERROR_CODE__INTERNAL,
                              "decode step: %s", err);
            }
            s->pending = -1;
            job->n_evals++;
        }
        int32_t tok = jq_sampler_sample(job->sampler, s->logits);
        float lp = logprob_of(s->logits, m->hp.n_vocab, tok);
        int len = jq_token_to_piece(m->vocab, tok, piece, sizeof piece);
        if (len < 0)
            len = 0;
        if (len > (int)sizeof piece)
            len = (int)sizeof piece;
        jq_post_chunk(p->d, job, tok, lp, (uint32_t)job->produced, piece,
                      (size_t)len);
        job->produced++;
        s->pending = tok;
        if (tok == eos && !job->ignore_eos) {
            job->stop_reason = "eos";
            done = true;
        } else if (is_stop(job, tok)) {
            job->stop_reason = "stop_token";
            done = true;
        } else if (job->produced >= job->max_tokens) {
            job->stop_reason = "length";
            done = true;
        }
    }
    jq_ctx_reset(ctx);
    return done;
}

static bool run_export(jq_job *job)
{
    jq_session *s = job->session;
    char name[64], err[256];
    if (!s->store)
        return finish(job, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                      "session %llu has no KV yet: send Prefill first",
                      (unsigned long long)s->id);
    snprintf(name, sizeof name, "judgeq-kv-export:session-%llu",
             (unsigned long long)s->id);
    Judgeq__KvLayout *layout = NULL;
    int fd = jq_kv_export(s->store, name, s->id, &layout, err, sizeof err);
    if (fd < 0)
        return finish(job, JUDGEQ__ERROR_CODE__RESOURCE_EXHAUSTED,
                      "export_kv: %s", err);
    job->export_fd = fd;
    job->export_layout = layout;
    return true;
}

static bool run_tokenize(jq_node_pool *p, jq_job *job)
{
    char err[512];
    int32_t *ids;
    size_t n;
    const jq_vocab *v = p->d->model->vocab;
    if (jq_tokenize(v, job->text, strlen(job->text),
                    job->add_bos && jq_vocab_add_bos(v), &ids, &n, err,
                    sizeof err) != 0)
        return finish(job, JUDGEQ__ERROR_CODE__INVALID_ARGUMENT,
                      "tokenize.text: %s", err);
    job->tokens = ids;
    job->n_tokens = (int32_t)n;
    return true;
}

/* Concatenates the pieces itself rather than jq_detokenize, whose
 * NUL-terminated result would cut a <0x00> byte token short. */
static bool run_detokenize(jq_node_pool *p, jq_job *job)
{
    const jq_vocab *v = p->d->model->vocab;
    size_t cap = 64, len = 0;
    char *out = malloc(cap);
    if (!out)
        return finish(job, JUDGEQ__ERROR_CODE__RESOURCE_EXHAUSTED,
                      "out of memory");
    for (int32_t i = 0; i < job->n_tokens; i++) {
        int n = jq_token_to_piece(v, job->tokens[i], NULL, 0);
        if (n < 0)
            n = 0;
        if (len + (size_t)n > cap) {
            cap = 2 * (len + (size_t)n);
            char *o = realloc(out, cap);
            if (!o) {
                free(out);
                return finish(job, JUDGEQ__ERROR_CODE__RESOURCE_EXHAUSTED,
                              "out of memory");
            }
            out = o;
        }
        if (n > 0)
            jq_token_to_piece(v, job->tokens[i], out + len, (size_t)n);
        len += (size_t)n;
    }
    job->out_text = out;
    job->out_len = len;
    return true;
}

bool jq_job_run(jq_node_pool *p, jq_job *job)
{
    if (job->t_start == 0)
        job->t_start = jq_now_s();
    if (atomic_load(&job->cancel) && job->kind != JQ_JOB_GENERATE)
        return finish(job, JUDGEQ__ERROR_CODE__UNAVAILABLE,
                      "cancelled before it ran");
    switch (job->kind) {
    case JQ_JOB_PREFILL: return run_prefill(p, job);
    case JQ_JOB_GENERATE: return run_generate(p, job);
    case JQ_JOB_EXPORT: return run_export(job);
    case JQ_JOB_TOKENIZE: return run_tokenize(p, job);
    case JQ_JOB_DETOKENIZE: return run_detokenize(p, job);
    default:
        return finish(job, JUDGEQ__ERROR_CODE__INTERNAL,
                      "job kind %d does not run on a worker", (int)job->kind);
    }
}
