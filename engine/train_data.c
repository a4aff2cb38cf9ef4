/* train_data.c — the trainer's examples: prompts, responses and targets.
 *
 * Each example is prepared by one thread with its own single-threaded
 * context (examples are independent, and a prompt of a few hundred tokens
 * on a small model is too little work to split): sample the prompt (self-
 * generated), generate the greedy response with the full cache, then
 * evaluate the prompt once more with the response tokens as teacher-forced
 * extra rows that score the prompt's keys (the oracle policy's observers:
 * jq_prefill_scores). raw = those sums; target = raw / m.
 *
 * Cache files (one per example, CACHE_DIR/<key>.jqex, native little-endian):
 *   "JQTEX001", u64 key, i32 L, m, n_layer, n_head,
 *   i32 tokens[L + m], f32 raw[n_layer * n_head * L], u64 jqh64 of all
 *   the bytes before it.
 * The key is jqh64 of the model key, the example (prompt tokens or the
 * self-generation seed and index) and every setting that changes the
 * result, so a stale file is simply never looked up; a damaged one fails
 * its checksum and is recomputed. Files are written to a unique temporary
 * name and renamed, so concurrent or interrupted runs never see half a
 * file.
 */
#include "selfgen.h"
#include "train.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kernels.h"
#include "prefill.h"
#include "sample.h"

#define CACHE_MAGIC "JQTEX001"
#define KEY_VERSION 1

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static void logf_(const jq_train_data_opts *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void logf_(const jq_train_data_opts *o, const char *fmt, ...)
{
    if (!o->log)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    o->log(o->log_ud, msg);
}

/* ------------------------------------------------------------ keys */

/* A growable byte string that keys are hashed from. */
typedef struct {
    unsigned char *p;
    size_t n, cap;
    bool oom;
} bytes;

static void put(bytes *b, const void *v, size_t n)
{
    if (b->oom)
        return;
    if (b->n + n > b->cap) {
        size_t cap = 2 * b->cap + n + 64;
        unsigned char *np = realloc(b->p, cap);
        if (!np) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->n, v, n);
    b->n += n;
}

static void put_u64(bytes *b, uint64_t v) { put(b, &v, sizeof v); }

static uint64_t hash_bytes(bytes *b)
{
    uint64_t h = jq_hash64(b->p, b->n, 0);
    free(b->p);
    *b = (bytes){0};
    return h;
}

uint64_t jq_train_model_key(const jq_model *m)
{
    const jq_hparams *hp = &m->hp;
    bytes b = {0};
    put_u64(&b, jq_model_embd_hash(m));
    put(&b, hp, sizeof *hp);
    put(&b, m->output_norm, sizeof(float) * (size_t)hp->n_embd);
    for (int32_t l = 0; l < hp->n_layer; l++) {
        const jq_layer *ly = &m->layers[l];
        put(&b, ly->attn_norm, sizeof(float) * (size_t)hp->n_embd);
        put(&b, ly->ffn_norm, sizeof(float) * (size_t)hp->n_embd);
        const jq_matrix *mats[] = {&ly->wq, &ly->wk, &ly->wv, &ly->wo,
                                   &ly->w_gate, &ly->w_up, &ly->w_down};
        for (size_t i = 0; i < sizeof mats / sizeof mats[0]; i++) {
            const jq_matrix *w = mats[i];
            size_t bytes_total = (size_t)w->rows * w->row_bytes;
            size_t edge = bytes_total < 4096 ? bytes_total : 4096;
            put_u64(&b, w->type);
            put_u64(&b, bytes_total);
            put(&b, w->data, edge);
            put(&b, (const char *)w->data + bytes_total - edge, edge);
        }
    }
    const jq_matrix *o = &m->output;
    size_t out_bytes = (size_t)o->rows * o->row_bytes;
    size_t edge = out_bytes < 4096 ? out_bytes : 4096;
    put(&b, o->data, edge);
    put(&b, (const char *)o->data + out_bytes - edge, edge);
    return hash_bytes(&b);
}

/* ------------------------------------------------------------ cache */

static char *cache_path(const char *dir, uint64_t key)
{
    size_t n = strlen(dir) + 32;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%016llx.jqex", dir, (unsigned long long)key);
    return p;
}

/* Creates dir and its parents (like mkdir -p). */
static int make_dirs(const char *dir, char *err, size_t errlen)
{
    char *p = strdup(dir);
    if (!p) {
        set_err(err, errlen, "out of memory");
        return -1;
    }
    for (char *s = p + 1;; s++) {
        if (*s == '/' || *s == 0) {
            char c = *s;
            *s = 0;
            if (mkdir(p, 0777) != 0 && errno != EEXIST) {
                set_err(err, errlen, "cannot create the cache directory "
                        "'%s': %s", p, strerror(errno));
                free(p);
                return -1;
            }
            if (c == 0)
                break;
            *s = c;
        }
    }
    free(p);
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        set_err(err, errlen, "cache directory '%s' is not a directory", dir);
        return -1;
    }
    return 0;
}

static size_t raw_cells(const jq_model *m, int32_t L)
{
    return (size_t)m->hp.n_layer * (size_t)m->hp.n_head * (size_t)L;
}

/* Loads ex (tokens, raw) from its cache file; false when absent or not
 * exactly what this key describes. */
static bool cache_load(const char *dir, const jq_model *m,
                       jq_train_example *ex)
{
    char *path = cache_path(dir, ex->key);
    if (!path)
        return false;
    FILE *f = fopen(path, "rb");
    free(path);
    if (!f)
        return false;
    bool ok = false;
    unsigned char *buf = NULL;
    if (fseek(f, 0, SEEK_END) != 0)
        goto done;
    long size = ftell(f);
    if (size < 40 || fseek(f, 0, SEEK_SET) != 0)
        goto done;
    buf = malloc((size_t)size);
    if (!buf || fread(buf, 1, (size_t)size, f) != (size_t)size)
        goto done;
    uint64_t key, sum;
    int32_t hdr[4];
    memcpy(&key, buf + 8, 8);
    memcpy(hdr, buf + 16, 16);
    memcpy(&sum, buf + size - 8, 8);
    if (memcmp(buf, CACHE_MAGIC, 8) != 0 || key != ex->key ||
        hdr[0] < 1 || hdr[1] < 1 || hdr[2] != m->hp.n_layer ||
        hdr[3] != m->hp.n_head ||
        jq_hash64(buf, (size_t)size - 8, 0) != sum)
        goto done;
    int32_t L = hdr[0], mm = hdr[1];
    size_t cells = raw_cells(m, L);
    size_t want = 32 + sizeof(int32_t) * ((size_t)L + mm) +
                  sizeof(float) * cells + 8;
    if ((size_t)size != want || (ex->L && ex->L != L))
        goto done;
    int32_t *tokens = malloc(sizeof(int32_t) * ((size_t)L + mm));
    float *raw = malloc(sizeof(float) * cells);
    if (!tokens || !raw) {
        free(tokens);
        free(raw);
        goto done;
    }
    memcpy(tokens, buf + 32, sizeof(int32_t) * ((size_t)L + mm));
    memcpy(raw, buf + 32 + sizeof(int32_t) * ((size_t)L + mm),
           sizeof(float) * cells);
    free(ex->tokens);
    ex->tokens = tokens;
    ex->raw = raw;
    ex->L = L;
    ex->m = mm;
    ok = true;
done:
    free(buf);
    fclose(f);
    return ok;
}

static void cache_store(const char *dir, const jq_model *m,
                        const jq_train_example *ex, int worker)
{
    size_t cells = raw_cells(m, ex->L);
    bytes b = {0};
    put(&b, CACHE_MAGIC, 8);
    put_u64(&b, ex->key);
    int32_t hdr[4] = {ex->L, ex->m, m->hp.n_layer, m->hp.n_head};
    put(&b, hdr, sizeof hdr);
    put(&b, ex->tokens, sizeof(int32_t) * ((size_t)ex->L + ex->m));
    put(&b, ex->raw, sizeof(float) * cells);
    if (b.oom) {
        free(b.p);
        return;
    }
    put_u64(&b, jq_hash64(b.p, b.n, 0));
    char *path = cache_path(dir, ex->key);
    size_t tn = path ? strlen(path) + 48 : 0;
    char *tmp = path ? malloc(tn) : NULL;
    if (tmp) {
        /* unique per process and worker: runs sharing a cache never write
         * the same temporary file */
        snprintf(tmp, tn, "%s.%ld.%d.tmp", path, (long)getpid(), worker);
        FILE *f = fopen(tmp, "wb");
        bool ok = f && fwrite(b.p, 1, b.n, f) == b.n;
        if (f && fclose(f) != 0)
            ok = false;
        /* a cache that cannot be written only costs recomputation */
        if (!ok || rename(tmp, path) != 0)
            unlink(tmp);
    }
    free(tmp);
    free(path);
    free(b.p);
}

/* ------------------------------------------------------------ JSONL */

typedef struct {
    int32_t *prompt;
    size_t L;
    int32_t *resp; /* dataset response kept, or NULL */
    size_t m;
    int64_t line;
} parsed_line;

/* Parses the JSONL file into prompts (tokenized). Bad lines are an error
 * (-1) or, with skip_bad_lines, logged and counted. */
static int parse_jsonl(const jq_model *m, const jq_train_data_opts *o,
                       parsed_line **out, int32_t *n_out, int32_t *n_bad,
                       char *err, size_t errlen)
{
    FILE *f = fopen(o->data_path, "rb");
    if (!f) {
        set_err(err, errlen, "cannot open '%s': %s", o->data_path,
                strerror(errno));
        return -1;
    }
    parsed_line *lines = NULL;
    int32_t n = 0, cap = 0;
    char *line = NULL;
    size_t line_cap = 0;
    ssize_t len;
    int64_t lineno = 0;
    int rc = 0;
    bool bos = !o->no_bos && jq_vocab_add_bos(m->vocab);
    char why[768];
    while ((len = getline(&line, &line_cap, f)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = 0;
        size_t sp = strspn(line, " \t");
        if ((ssize_t)sp == len)
            continue; /* blank lines separate nothing; allowed */
        why[0] = 0;
        json_error_t jerr;
        json_t *j = json_loadb(line, (size_t)len, 0, &jerr);
        json_t *jp = j ? json_object_get(j, "prompt") : NULL;
        json_t *jr = j ? json_object_get(j, "response") : NULL;
        parsed_line pl = {.line = lineno};
        char terr[256];
        if (!j)
            snprintf(why, sizeof why, "not valid JSON (%s at column %d)",
                     jerr.text, jerr.column);
        else if (!json_is_object(j))
            snprintf(why, sizeof why, "not a JSON object");
        else if (!json_is_string(jp))
            snprintf(why, sizeof why, "no string field \"prompt\"");
        else if (jr && !json_is_string(jr) && !json_is_null(jr))
            snprintf(why, sizeof why, "\"response\" is not a string");
        else if (jq_tokenize(m->vocab, json_string_value(jp),
                             json_string_length(jp), bos, &pl.prompt, &pl.L,
                             terr, sizeof terr) != 0)
            snprintf(why, sizeof why, "cannot tokenize the prompt: %s", terr);
        else if (pl.L == 0)
            snprintf(why, sizeof why, "the prompt is empty");
        else if ((int64_t)pl.L + o->n_soft > o->n_ctx)
            snprintf(why, sizeof why,
                     "the prompt (%zu tokens) + %d soft tokens exceed the "
                     "model context of %d",
                     pl.L, o->n_soft, o->n_ctx);
        else if (o->use_dataset_responses && json_is_string(jr) &&
                 json_string_length(jr) > 0 &&
                 jq_tokenize(m->vocab, json_string_value(jr),
                             json_string_length(jr), false, &pl.resp, &pl.m,
                             terr, sizeof terr) != 0)
            snprintf(why, sizeof why, "cannot tokenize the response: %s",
                     terr);
        json_decref(j);
        if (why[0]) {
            free(pl.prompt);
            free(pl.resp);
            if (!o->skip_bad_lines) {
                set_err(err, errlen, "%s:%lld: %s (--skip-bad-lines skips "
                        "such lines)", o->data_path, (long long)lineno, why);
                rc = -1;
                break;
            }
            logf_(o, "%s:%lld: skipped: %s", o->data_path, (long long)lineno,
                  why);
            (*n_bad)++;
            continue;
        }
        if (pl.m == 0) {
            free(pl.resp);
            pl.resp = NULL;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            parsed_line *nl = realloc(lines, sizeof *nl * (size_t)cap);
            if (!nl) {
                free(pl.prompt);
                free(pl.resp);
                set_err(err, errlen, "out of memory");
                rc = -1;
                break;
            }
            lines = nl;
        }
        lines[n++] = pl;
    }
    if (rc == 0 && ferror(f)) {
        set_err(err, errlen, "reading '%s': %s", o->data_path,
                strerror(errno));
        rc = -1;
    }
    free(line);
    fclose(f);
    if (rc != 0) {
        for (int32_t i = 0; i < n; i++) {
            free(lines[i].prompt);
            free(lines[i].resp);
        }
        free(lines);
        return -1;
    }
    *out = lines;
    *n_out = n;
    return 0;
}

/* ------------------------------------------------------- preparation */

typedef struct {
    const jq_model *m;
    const jq_train_data_opts *o;
    jq_train_set *set;
    parsed_line *lines;     /* data file, or NULL (self-generated) */
    _Atomic int32_t next;
    _Atomic int32_t cached;
    _Atomic int32_t done;   /* examples finished (computed or cached) */
    double last_log;        /* when the calling thread last reported */
    _Atomic bool failed;
    char **errors;          /* per example */
    int32_t ctx_len;        /* positions a worker context needs */
} prep_job;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}


/* The prompt (self-generated: sampled from BOS at temperature 1 with a
 * per-example seed) and the greedy response; raw scores by the response
 * tokens teacher-forced after the prompt. */
static int prepare_one(prep_job *j, jq_ctx *ctx, float *logits,
                       jq_train_example *ex, const parsed_line *pl,
                       char *err, size_t errlen)
{
    const jq_model *m = j->m;
    const jq_train_data_opts *o = j->o;
    int32_t L = ex->L;
    int32_t n_resp = pl && pl->resp ? (int32_t)pl->m : o->response_len;
    if (n_resp > o->n_ctx - L)
        n_resp = o->n_ctx - L; /* the response ends at the context */
    int32_t *t = malloc(sizeof(int32_t) * ((size_t)L + n_resp));
    if (!t) {
        set_err(err, errlen, "out of memory");
        return -1;
    }
    free(ex->tokens);
    ex->tokens = t;
    ex->m = n_resp;
    jq_ctx_reset(ctx);
    if (pl) {
        memcpy(t, pl->prompt, sizeof(int32_t) * (size_t)L);
        if (!pl->resp && jq_ctx_eval(ctx, t, L, logits, err, errlen) != 0)
            return -1;
    } else {
        /* the prompt as `judgeq eval --self-generate` draws it (same seed
         * derivation), then its last token for the response's logits */
        if (jq_selfgen_prompt(ctx, o->seed, (uint64_t)ex->source, L, t, err,
                              errlen) != 0 ||
            jq_ctx_eval(ctx, &t[L - 1], 1, logits, err, errlen) != 0)
            return -1;
    }
    /* the response: the dataset's, or greedy with the full cache */
    if (pl && pl->resp) {
        memcpy(t + L, pl->resp, sizeof(int32_t) * (size_t)n_resp);
    } else {
        for (int32_t k = 0; k < n_resp; k++) {
            t[L + k] = jq_argmax(logits, m->hp.n_vocab);
            if (k + 1 < n_resp &&
                jq_ctx_eval(ctx, &t[L + k], 1, logits, err, errlen) != 0)
                return -1;
        }
    }
    ex->raw = malloc(sizeof(float) * raw_cells(m, L));
    if (!ex->raw) {
        set_err(err, errlen, "out of memory");
        return -1;
    }
    jq_prefill_params pp = {
        .spec = jq_evict_spec_default(JQ_EVICT_ORACLE, L),
        .oracle_tokens = t + L,
        .n_oracle = n_resp,
        .kv_type = JQ_TYPE_F32,
    };
    return jq_prefill_scores(ctx, t, L, &pp, ex->raw, NULL, err, errlen);
}

static void prep_task(void *arg, int ith, int nth)
{
    (void)nth;
    prep_job *j = arg;
    const jq_train_data_opts *o = j->o;
    char err[512];
    jq_ctx *ctx = NULL;
    float *logits = malloc(sizeof(float) * (size_t)j->m->hp.n_vocab);
    for (;;) {
        int32_t i = atomic_fetch_add(&j->next, 1);
        if (i >= j->set->n || atomic_load(&j->failed) || (o->stop && *o->stop))
            break;
        jq_train_example *ex = &j->set->ex[i];
        if (o->cache_dir && cache_load(o->cache_dir, j->m, ex)) {
            atomic_fetch_add(&j->cached, 1);
            atomic_fetch_add(&j->done, 1);
            continue;
        }
        if (!ctx && logits)
            ctx = jq_ctx_new(j->m, j->ctx_len, j->ctx_len, NULL, err,
                             sizeof err);
        int rc = -1;
        if (!logits)
            snprintf(err, sizeof err, "out of memory");
        else if (ctx)
            rc = prepare_one(j, ctx, logits, ex,
                             j->lines ? &j->lines[i] : NULL, err, sizeof err);
        if (rc != 0) {
            j->errors[i] = strdup(err);
            atomic_store(&j->failed, true);
            break;
        }
        if (o->cache_dir)
            cache_store(o->cache_dir, j->m, ex, ith);
        int32_t done = atomic_fetch_add(&j->done, 1) + 1;
        /* a long preparation says how far it is (share 0 is the caller's
         * thread, so only it touches last_log) */
        if (ith == 0 && now_s() - j->last_log >= 10.0) {
            j->last_log = now_s();
            logf_(o, "prepared %d of %d examples", done, j->set->n);
        }
    }
    jq_ctx_free(ctx);
    free(logits);
}

void jq_train_set_free(jq_train_set *set)
{
    if (!set)
        return;
    for (int32_t i = 0; i < set->n; i++) {
        free(set->ex[i].tokens);
        free(set->ex[i].raw);
        free(set->ex[i].target);
    }
    free(set->ex);
    *set = (jq_train_set){0};
}

int jq_train_data_load(const jq_model *m, jq_pool *pool,
                       const jq_train_data_opts *o, jq_train_set *set,
                       char *err, size_t errlen)
{
    *set = (jq_train_set){0};
    const uint64_t model_key = jq_train_model_key(m);
    parsed_line *lines = NULL;
    int32_t n = 0;
    if (o->data_path) {
        if (parse_jsonl(m, o, &lines, &n, &set->n_bad, err, errlen) != 0)
            return -1;
        if (n == 0) {
            set_err(err, errlen, "'%s' holds no usable example", o->data_path);
            free(lines);
            return -1;
        }
    } else {
        if (o->self_generate < 1) {
            set_err(err, errlen, "no data: give --data FILE or "
                    "--self-generate N");
            return -1;
        }
        if (jq_vocab_bos(m->vocab) < 0) {
            set_err(err, errlen, "the model has no BOS token to start "
                    "self-generated prompts from");
            return -1;
        }
        if (o->prompt_len < 2 || (int64_t)o->prompt_len + o->n_soft > o->n_ctx) {
            set_err(err, errlen, "--prompt-len %d + %d soft tokens must fit "
                    "the model context of %d (and the prompt needs at least "
                    "2 tokens)", o->prompt_len, o->n_soft, o->n_ctx);
            return -1;
        }
        n = o->self_generate;
    }
    if (o->cache_dir && make_dirs(o->cache_dir, err, errlen) != 0) {
        free(lines);
        return -1;
    }
    set->ex = calloc((size_t)n, sizeof *set->ex);
    char **errors = calloc((size_t)n, sizeof *errors);
    if (!set->ex || !errors) {
        free(errors);
        free(lines);
        free(set->ex);
        set->ex = NULL;
        set_err(err, errlen, "out of memory");
        return -1;
    }
    set->n = n;
    int32_t ctx_len = 1;
    for (int32_t i = 0; i < n; i++) {
        jq_train_example *ex = &set->ex[i];
        bytes b = {0};
        put_u64(&b, KEY_VERSION);
        put_u64(&b, model_key);
        if (lines) {
            const parsed_line *pl = &lines[i];
            ex->L = (int32_t)pl->L;
            ex->source = pl->line;
            put(&b, "data", 4);
            put_u64(&b, pl->L);
            put(&b, pl->prompt, sizeof(int32_t) * pl->L);
            if (pl->resp) {
                put(&b, "given", 5);
                put_u64(&b, pl->m);
                put(&b, pl->resp, sizeof(int32_t) * pl->m);
            } else {
                put(&b, "greedy", 6);
                put_u64(&b, (uint64_t)o->response_len);
            }
        } else {
            ex->L = o->prompt_len;
            ex->source = i;
            put(&b, "self", 4);
            put_u64(&b, o->seed);
            put_u64(&b, (uint64_t)i);
            put_u64(&b, (uint64_t)o->prompt_len);
            put_u64(&b, (uint64_t)o->response_len);
        }
        if (b.oom) {
            free(b.p);
            set_err(err, errlen, "out of memory");
            goto fail;
        }
        ex->key = hash_bytes(&b);
        int32_t need = ex->L + (lines && lines[i].resp ? (int32_t)lines[i].m
                                                       : o->response_len);
        if (need > o->n_ctx)
            need = o->n_ctx;
        if (need > ctx_len)
            ctx_len = need;
    }

    prep_job j = {.m = m, .o = o, .set = set, .lines = lines,
                  .errors = errors, .ctx_len = ctx_len, .last_log = now_s()};
    jq_pool_run(pool, prep_task, &j);
    set->n_cached = atomic_load(&j.cached);
    for (int32_t i = 0; i < n; i++) {
        if (errors[i]) {
            if (lines)
                set_err(err, errlen, "%s:%lld: %s", o->data_path,
                        (long long)set->ex[i].source, errors[i]);
            else
                set_err(err, errlen, "self-generated prompt %d: %s", i,
                        errors[i]);
            goto fail;
        }
    }
    if (o->stop && *o->stop) {
        for (int32_t i = 0; i < n; i++)
            free(errors[i]);
        free(errors);
        for (int32_t i = 0; i < n; i++) {
            free(lines ? lines[i].prompt : NULL);
            free(lines ? lines[i].resp : NULL);
        }
        free(lines);
        jq_train_set_free(set);
        return 1;
    }
    /* targets, sizes, and the identity of the whole set */
    bytes all = {0};
    for (int32_t i = 0; i < n; i++) {
        jq_train_example *ex = &set->ex[i];
        size_t cells = raw_cells(m, ex->L);
        ex->target = malloc(sizeof(float) * cells);
        if (!ex->target) {
            free(all.p);
            set_err(err, errlen, "out of memory for the targets");
            goto fail;
        }
        float inv = 1.0f / (float)ex->m;
        for (size_t c = 0; c < cells; c++)
            ex->target[c] = ex->raw[c] * inv;
        if (ex->L > set->max_L)
            set->max_L = ex->L;
        if (ex->m > set->max_m)
            set->max_m = ex->m;
        put_u64(&all, ex->key);
    }
    set->key = hash_bytes(&all);
    for (int32_t i = 0; i < n; i++) {
        free(lines ? lines[i].prompt : NULL);
        free(lines ? lines[i].resp : NULL);
    }
    free(lines);
    free(errors);
    return 0;

fail:
    for (int32_t i = 0; i < n; i++) {
        free(errors[i]);
        free(lines ? lines[i].prompt : NULL);
        free(lines ? lines[i].resp : NULL);
    }
    free(errors);
    free(lines);
    jq_train_set_free(set);
    return -1;
}
