/* tasks.c — see tasks.h. Templates and parameters follow
 * ../shared/EVICTION.md (RULER's niah_single_1 with the repeated haystack,
 * niah_multikey_1, vt with 4 hops, cwe with 10 words x 30 against x 3).
 *
 * How a sample is made: every random choice that does not depend on the
 * context size (keys, values, names, words, the relative depth of each
 * insertion) is drawn first from the sample's own generator; the context
 * is then built for h haystack units with those choices, and h is the
 * largest whose prompt fits the length target (doubling, then bisection on
 * the caller's token counter). cwe reshuffles its list for each h from a
 * generator seeded by (sample, h), so a given h is always the same text.
 */
#include "tasks.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "soft_tokens.h"

static const char *const task_names[JQ_TASK_COUNT_] = {"niah", "multikey",
                                                       "vt", "cwe"};

const char *jq_task_name(jq_task_kind k)
{
    return k >= 0 && k < JQ_TASK_COUNT_ ? task_names[k] : "?";
}

int jq_task_from_name(const char *name)
{
    for (int k = 0; k < JQ_TASK_COUNT_; k++)
        if (!strcmp(name, task_names[k]))
            return k;
    return -1;
}

/* ---- word lists (keys are adjective-noun pairs, as RULER draws them
 * from wonderwords; cwe draws from all of them) */

static const char *const adjectives[] = {
    "abundant", "agreeable", "ancient", "bitter",   "brave",    "bright",
    "broad",    "calm",      "careful", "cheerful", "clever",   "cloudy",
    "crooked",  "curious",   "damp",    "delicate", "eager",    "elegant",
    "faint",    "fancy",     "fierce",  "fragile",  "gentle",   "gigantic",
    "glossy",   "graceful",  "grumpy",  "handsome", "hollow",   "humble",
    "icy",      "jolly",     "lively",  "lucky",    "massive",  "mellow",
    "mighty",   "modern",    "narrow",  "nervous",  "noisy",    "obedient",
    "pleasant", "proud",     "quaint",  "quiet",    "rapid",    "rustic",
    "scary",    "shallow",   "shiny",   "silent",   "sleepy",   "smooth",
    "sparkling", "steep",    "sturdy",  "tender",   "thirsty",  "tiny",
    "vast",     "wandering", "witty",   "zealous",
};
static const char *const nouns[] = {
    "anchor",  "apple",    "badge",   "balloon", "basket",  "beacon",
    "blanket", "bottle",   "bridge",  "bucket",  "cabin",   "candle",
    "canyon",  "carpet",   "castle",  "cherry",  "compass", "cottage",
    "crystal", "dolphin",  "dragon",  "engine",  "falcon",  "feather",
    "fountain", "garden",  "glacier", "hammer",  "harbor",  "helmet",
    "island",  "jacket",   "kettle",  "ladder",  "lantern", "lemon",
    "magnet",  "meadow",   "mirror",  "needle",  "orchard", "paddle",
    "parrot",  "pebble",   "pepper",  "pillow",  "planet",  "puzzle",
    "rabbit",  "ribbon",   "saddle",  "shovel",  "spider",  "statue",
    "teapot",  "thimble",  "tiger",   "trumpet", "tunnel",  "violin",
    "walrus",  "whistle",  "window",  "zipper",
};
#define N_ADJ (int32_t)(sizeof adjectives / sizeof adjectives[0])
#define N_NOUN (int32_t)(sizeof nouns / sizeof nouns[0])
#define N_REAL (N_ADJ + N_NOUN)

static const char *real_word(int32_t i)
{
    return i < N_ADJ ? adjectives[i] : nouns[i - N_ADJ];
}

/* ---- generator: splitmix64, seeded from the hash of (seed, index, kind,
 * stream) so every sample (and every cwe shuffle) has its own sequence */

typedef struct { uint64_t s; } rng_t;

static rng_t rng_for(uint64_t seed, uint64_t index, uint64_t kind,
                     uint64_t stream)
{
    uint8_t b[32];
    uint64_t v[4] = {seed, index, kind, stream};
    for (int j = 0; j < 4; j++)
        for (int i = 0; i < 8; i++)
            b[8 * j + i] = (uint8_t)(v[j] >> (8 * i));
    return (rng_t){jq_hash64(b, sizeof b, 0x7461736b)};
}

static uint64_t rng_next(rng_t *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* uniform in [0, n) (n >= 1; the modulo bias is < n / 2^64) */
static uint64_t rng_below(rng_t *r, uint64_t n) { return rng_next(r) % n; }
/* uniform in [0, 1) with 53 bits */
static double rng_unit(rng_t *r) { return (double)(rng_next(r) >> 11) * 0x1p-53; }

static void shuffle_i32(rng_t *r, int32_t *a, int32_t n)
{
    for (int32_t i = n - 1; i > 0; i--) {
        int32_t j = (int32_t)rng_below(r, (uint64_t)i + 1);
        int32_t t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

/* ---- growable string */

typedef struct {
    char *s;
    size_t len, cap;
    bool oom;
} sbuf;

static void sb_addf(sbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void sb_addf(sbuf *b, const char *fmt, ...)
{
    if (b->oom)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = true;
        return;
    }
    if (b->len + (size_t)n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + (size_t)n + 1)
            cap *= 2;
        char *s = realloc(b->s, cap);
        if (!s) {
            b->oom = true;
            return;
        }
        b->s = s;
        b->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* ---- the choices of one sample that do not depend on the context size */

#define HAYSTACK_LINE                                                        \
    "The grass is green. The sky is blue. The sun is yellow. Here we go. "   \
    "There and back again."
#define MULTIKEY_NEEDLES 4
#define VT_VARS 5 /* 4 hops */
#define CWE_COMMON 10
#define CWE_FREQ_COMMON 30
#define CWE_FREQ_RARE 3

typedef struct {
    jq_task_kind kind;
    uint64_t seed, index;
    bool question_first;
    /* niah / multikey */
    char keys[MULTIKEY_NEEDLES][48];
    int32_t values[MULTIKEY_NEEDLES];
    double depth_u[VT_VARS]; /* relative insertion depth of each insert */
    int32_t n_inserts;
    int32_t asked;
    /* vt */
    char names[VT_VARS][6];
    int32_t vt_value;
    /* cwe: a permutation of the real words; the first CWE_COMMON are the
     * common words, the rest (then made-up words) the rare ones */
    int32_t perm[N_REAL];
} plan_t;

static void make_key(rng_t *r, char *out, size_t n)
{
    snprintf(out, n, "%s-%s", adjectives[rng_below(r, N_ADJ)],
             nouns[rng_below(r, N_NOUN)]);
}

static void make_plan(const jq_task_opts *o, uint64_t index, plan_t *p)
{
    memset(p, 0, sizeof *p);
    p->kind = o->kind;
    p->seed = o->seed;
    p->index = index;
    p->question_first = o->question_first;
    rng_t r = rng_for(o->seed, index, (uint64_t)o->kind, 0);
    switch (o->kind) {
    case JQ_TASK_NIAH:
    case JQ_TASK_MULTIKEY:
        p->n_inserts = o->kind == JQ_TASK_NIAH ? 1 : MULTIKEY_NEEDLES;
        for (int32_t i = 0; i < p->n_inserts; i++) {
            bool dup;
            do { /* keys of one prompt differ */
                make_key(&r, p->keys[i], sizeof p->keys[i]);
                dup = false;
                for (int32_t j = 0; j < i; j++)
                    dup |= !strcmp(p->keys[i], p->keys[j]);
            } while (dup);
            /* a 7-digit number */
            p->values[i] = 1000000 + (int32_t)rng_below(&r, 9000000);
            p->depth_u[i] = rng_unit(&r);
        }
        p->asked = (int32_t)rng_below(&r, (uint64_t)p->n_inserts);
        break;
    case JQ_TASK_VT:
        p->n_inserts = VT_VARS;
        for (int32_t i = 0; i < VT_VARS; i++) {
            bool dup;
            do {
                for (int c = 0; c < 5; c++)
                    p->names[i][c] = (char)('A' + rng_below(&r, 26));
                p->names[i][5] = '\0';
                dup = false;
                for (int32_t j = 0; j < i; j++)
                    dup |= !strcmp(p->names[i], p->names[j]);
            } while (dup);
        }
        p->vt_value = 10000 + (int32_t)rng_below(&r, 90000);
        for (int32_t i = 0; i < VT_VARS; i++)
            p->depth_u[i] = rng_unit(&r);
        /* ascending, so the chain keeps its order in the text */
        for (int32_t i = 1; i < VT_VARS; i++)
            for (int32_t j = i; j > 0 && p->depth_u[j] < p->depth_u[j - 1]; j--) {
                double t = p->depth_u[j];
                p->depth_u[j] = p->depth_u[j - 1];
                p->depth_u[j - 1] = t;
            }
        break;
    case JQ_TASK_CWE:
    default:
        for (int32_t i = 0; i < N_REAL; i++)
            p->perm[i] = i;
        shuffle_i32(&r, p->perm, N_REAL);
        break;
    }
}

/* Rare word i of the cwe list: the real words after the common ones, then
 * made-up words (distinct by construction), so any length can be
 * reached. */
static void cwe_rare_word(const plan_t *p, int64_t i, char *out, size_t n)
{
    if (i < N_REAL - CWE_COMMON) {
        snprintf(out, n, "%s", real_word(p->perm[CWE_COMMON + i]));
        return;
    }
    static const char cons[] = "bdfgklmnprstvz", vow[] = "aeiou";
    const int64_t syl = (int64_t)(sizeof cons - 1) * (int64_t)(sizeof vow - 1);
    /* made-up word k: k in base 70, one consonant-vowel syllable per
     * digit, at least three. No word of the lists above has that strict
     * consonant-vowel form, so made-up words never repeat a real one. */
    int64_t x = i - (N_REAL - CWE_COMMON);
    size_t len = 0;
    for (int s = 0; (s < 3 || x > 0) && len + 3 < n; s++) {
        int64_t d = x % syl;
        x /= syl;
        out[len++] = cons[d / (int64_t)(sizeof vow - 1)];
        out[len++] = vow[d % (int64_t)(sizeof vow - 1)];
    }
    out[len] = '\0';
}

/* gap of insert i among h haystack lines: 0 (before all) .. h (after all) */
static int64_t insert_gap(const plan_t *p, int32_t i, int64_t h)
{
    int64_t g = (int64_t)(p->depth_u[i] * (double)(h + 1));
    return g > h ? h : g;
}

static void add_line(sbuf *b, bool *first, const char *line)
{
    sb_addf(b, "%s%s", *first ? "" : "\n", line);
    *first = false;
}

static void build_context(const plan_t *p, int64_t h, sbuf *ctx)
{
    bool first = true;
    char line[160];
    if (p->kind == JQ_TASK_CWE) {
        int64_t n = CWE_COMMON * CWE_FREQ_COMMON + h * CWE_FREQ_RARE;
        int32_t *ids = malloc(sizeof(int32_t) * (size_t)n);
        if (!ids) {
            ctx->oom = true;
            return;
        }
        /* ids >= 0: common word; < 0: rare word -1 - id */
        int64_t k = 0;
        for (int32_t w = 0; w < CWE_COMMON; w++)
            for (int c = 0; c < CWE_FREQ_COMMON; c++)
                ids[k++] = w;
        for (int64_t w = 0; w < h; w++)
            for (int c = 0; c < CWE_FREQ_RARE; c++)
                ids[k++] = (int32_t)(-1 - w);
        rng_t r = rng_for(p->seed, p->index, JQ_TASK_CWE, 1 + (uint64_t)h);
        shuffle_i32(&r, ids, (int32_t)n);
        for (int64_t i = 0; i < n; i++) {
            char w[48];
            if (ids[i] >= 0)
                snprintf(w, sizeof w, "%s", real_word(p->perm[ids[i]]));
            else
                cwe_rare_word(p, -1 - (int64_t)ids[i], w, sizeof w);
            snprintf(line, sizeof line, "%lld. %s", (long long)i + 1, w);
            add_line(ctx, &first, line);
        }
        free(ids);
        return;
    }
    for (int64_t g = 0; g <= h; g++) {
        for (int32_t i = 0; i < p->n_inserts; i++) {
            if (insert_gap(p, i, h) != g)
                continue;
            if (p->kind == JQ_TASK_VT && i == 0)
                snprintf(line, sizeof line, "VAR %s = %d", p->names[0],
                         p->vt_value);
            else if (p->kind == JQ_TASK_VT)
                snprintf(line, sizeof line, "VAR %s = VAR %s", p->names[i],
                         p->names[i - 1]);
            else
                snprintf(line, sizeof line,
                         "One of the special magic numbers for %s is: %d.",
                         p->keys[i], p->values[i]);
            add_line(ctx, &first, line);
        }
        if (g < h)
            add_line(ctx, &first, HAYSTACK_LINE);
    }
}

/* The whole prompt for h haystack units (malloc'd, NULL when out of
 * memory). Forms: RULER's singular niah template (one value asked), its
 * vt and cwe templates; question-first moves the question after the
 * instructions and says "below" where the context now follows. */
static char *build_prompt(const plan_t *p, int64_t h)
{
    sbuf ctx = {0}, b = {0};
    build_context(p, h, &ctx);
    if (ctx.oom) {
        free(ctx.s);
        return NULL;
    }
    const char *preamble, *q_last, *q_first;
    char q1[256], q2[256], answer[256];
    switch (p->kind) {
    case JQ_TASK_NIAH:
    case JQ_TASK_MULTIKEY:
        preamble = "A special magic number is hidden within the following "
                   "text. Make sure to memorize it. I will quiz you about "
                   "the number afterwards.";
        snprintf(q1, sizeof q1, "What is the special magic number for %s "
                 "mentioned in the provided text?", p->keys[p->asked]);
        snprintf(q2, sizeof q2, "%s", q1);
        snprintf(answer, sizeof answer, "The special magic number for %s "
                 "mentioned in the provided text is", p->keys[p->asked]);
        break;
    case JQ_TASK_VT:
        preamble = "Memorize and track the chain(s) of variable assignment "
                   "hidden in the following text.";
        snprintf(q1, sizeof q1, "Question: Find all variables that are "
                 "assigned the value %d in the text above.", p->vt_value);
        snprintf(q2, sizeof q2, "Question: Find all variables that are "
                 "assigned the value %d in the text below.", p->vt_value);
        snprintf(answer, sizeof answer, "Answer: According to the chain(s) "
                 "of variable assignment in the text above, %d variables are "
                 "assigned the value %d, they are:", VT_VARS, p->vt_value);
        break;
    case JQ_TASK_CWE:
    default:
        preamble = "Below is a numbered list of words. In these words, some "
                   "appear more often than others. Memorize the ones that "
                   "appear most often.";
        snprintf(q1, sizeof q1, "Question: What are the %d most common words "
                 "in the above list?", CWE_COMMON);
        snprintf(q2, sizeof q2, "Question: What are the %d most common words "
                 "in the list below?", CWE_COMMON);
        snprintf(answer, sizeof answer, "Answer: The top %d words that "
                 "appear most often in the list are:", CWE_COMMON);
        break;
    }
    q_last = q1;
    q_first = q2;
    if (p->question_first)
        sb_addf(&b, "%s %s\n%s\n%s", preamble, q_first, ctx.s, answer);
    else
        sb_addf(&b, "%s\n%s\n%s %s", preamble, ctx.s, q_last, answer);
    free(ctx.s);
    if (b.oom) {
        free(b.s);
        return NULL;
    }
    return b.s;
}

static int fill_answers(const plan_t *p, int64_t h, jq_task_sample *s)
{
    int32_t n = p->kind == JQ_TASK_VT    ? VT_VARS
                : p->kind == JQ_TASK_CWE ? CWE_COMMON
                                         : 1;
    s->answers = calloc((size_t)n, sizeof *s->answers);
    if (!s->answers)
        return -1;
    s->n_answers = n;
    s->depth = -1;
    for (int32_t i = 0; i < n; i++) {
        char a[48];
        if (p->kind == JQ_TASK_VT)
            snprintf(a, sizeof a, "%s", p->names[i]);
        else if (p->kind == JQ_TASK_CWE)
            snprintf(a, sizeof a, "%s", real_word(p->perm[i]));
        else
            snprintf(a, sizeof a, "%d", p->values[p->asked]);
        if (!(s->answers[i] = strdup(a)))
            return -1;
    }
    if (p->kind == JQ_TASK_NIAH || p->kind == JQ_TASK_MULTIKEY)
        s->depth = h > 0 ? (double)insert_gap(p, p->asked, h) / (double)h : 0;
    return 0;
}

/* length of the prompt for h units; -2 when out of memory, -1 when the
 * counter failed */
static int64_t prompt_len(const plan_t *p, int64_t h, jq_task_len_fn count,
                          void *ud)
{
    char *s = build_prompt(p, h);
    if (!s)
        return -2;
    int64_t n = count(ud, s);
    free(s);
    return n < 0 ? -1 : n;
}

int jq_task_generate(const jq_task_opts *o, uint64_t index,
                     jq_task_len_fn count, void *count_ud,
                     jq_task_sample *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (o->kind < 0 || o->kind >= JQ_TASK_COUNT_)
        return jq_fail(err, errlen, "unknown task %d", (int)o->kind);
    plan_t *p = malloc(sizeof *p);
    if (!p)
        return jq_fail(err, errlen, "out of memory");
    make_plan(o, index, p);
    int rc = -1;
    int64_t n0 = prompt_len(p, 0, count, count_ud);
    if (n0 < 0) {
        jq_set_err(err, errlen, n0 == -2 ? "out of memory"
                                         : "cannot count the prompt's tokens");
        goto done;
    }
    if (n0 > o->length) {
        jq_set_err(err, errlen, "task %s needs a length of at least %lld "
                   "tokens (--length %lld)", jq_task_name(o->kind),
                   (long long)n0, (long long)o->length);
        goto done;
    }
    /* lo fits, hi does not (or is the cap: 2^26 lines is far beyond any
     * model context) */
    int64_t lo = 0, hi = 1;
    const int64_t cap = (int64_t)1 << 26;
    for (;;) {
        int64_t n = prompt_len(p, hi, count, count_ud);
        if (n < 0) {
            jq_set_err(err, errlen, "out of memory or tokenizer failure");
            goto done;
        }
        if (n > o->length)
            break;
        lo = hi;
        if (hi >= cap)
            break;
        hi *= 2;
    }
    while (hi - lo > 1) {
        int64_t mid = lo + (hi - lo) / 2;
        int64_t n = prompt_len(p, mid, count, count_ud);
        if (n < 0) {
            jq_set_err(err, errlen, "out of memory or tokenizer failure");
            goto done;
        }
        if (n <= o->length)
            lo = mid;
        else
            hi = mid;
    }
    out->prompt = build_prompt(p, lo);
    if (!out->prompt || fill_answers(p, lo, out) != 0) {
        jq_task_sample_free(out);
        jq_set_err(err, errlen, "out of memory");
        goto done;
    }
    out->tokens = count(count_ud, out->prompt);
    rc = 0;
done:
    free(p);
    return rc;
}

void jq_task_sample_free(jq_task_sample *s)
{
    if (!s)
        return;
    for (int32_t i = 0; i < s->n_answers; i++)
        free(s->answers[i]);
    free(s->answers);
    free(s->prompt);
    memset(s, 0, sizeof *s);
}

/* ASCII case-insensitive substring search */
static bool contains_ci(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    if (n == 0)
        return true;
    for (; *hay; hay++)
        if (strncasecmp(hay, needle, n) == 0)
            return true;
    return false;
}

double jq_task_score(const char *output, const char *const *answers,
                     int32_t n)
{
    if (n <= 0)
        return 100.0;
    int32_t found = 0;
    for (int32_t i = 0; i < n; i++)
        found += contains_ci(output ? output : "", answers[i]);
    return 100.0 * found / n;
}
