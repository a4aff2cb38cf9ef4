/* recall_gen.c — examples of the recall language (recall_lang.h).
 *
 * An example is made as token ids, then rendered as text (every emitted id
 * is a whole word or a punctuation or digit piece, recall_vocab.h), so no
 * tokenizer runs here: the pretraining loop calls this for every sequence.
 *
 * How the choices are made: the plan (keys, values, which are asked, the
 * relative depth of every insert) comes from a generator seeded by
 * (seed, index, task, difficulty, digits) and does not depend on the length
 * or the question position; the filler sentences come from a second
 * generator and fill what the length leaves after the fixed parts (needles,
 * question, answer), so example i at two lengths has the same needles.
 *
 * Forms (question last; question first moves "question: ... ?" before the
 * context, and "answer:" always ends the prompt):
 *   niah, multikey, mqar needle   the number of apple is 472.
 *   niah, multikey question       question: what is the number of apple?
 *   mqar question                 question: what are the numbers of apple,
 *                                 tiger, drum?
 *   vt statements                 var apple = 472.  var tiger = apple.
 *   vt question                   question: which vars are 472?
 *   cwe context                   list: drum apple drum ... tiger.
 *   cwe question                  question: what are the 3 most common
 *                                 words in the list?
 *   answers (then </s>)           472 | apple 472, tiger 815 |
 *                                 apple, tiger, drum
 */
#include "recall_lang.h"
#include "recall_vocab.h"

#include <stdlib.h>
#include <string.h>

#include "errors.h"

static const char *const task_names[JQ_RECALL_COUNT_] = {
    "niah", "multikey", "mqar", "vt", "cwe"};

const char *jq_recall_task_name(jq_recall_task t)
{
    return t >= 0 && t < JQ_RECALL_COUNT_ ? task_names[t] : "?";
}

int jq_recall_task_from_name(const char *name)
{
    for (int t = 0; t < JQ_RECALL_COUNT_; t++)
        if (!strcmp(name, task_names[t]))
            return t;
    return -1;
}

static const int32_t default_difficulty[JQ_RECALL_COUNT_] = {1, 4, 8, 4, 3};
static const int32_t min_difficulty[JQ_RECALL_COUNT_] = {1, 2, 2, 1, 1};
static const int32_t max_difficulty[JQ_RECALL_COUNT_] = {1, 32, 64, 16, 10};

int32_t jq_recall_default_difficulty(jq_recall_task t)
{
    return t >= 0 && t < JQ_RECALL_COUNT_ ? default_difficulty[t] : 0;
}

int32_t jq_recall_max_difficulty(jq_recall_task t)
{
    return t >= 0 && t < JQ_RECALL_COUNT_ ? max_difficulty[t] : 0;
}

#define DEFAULT_DIGITS 3
#define MAX_DIGITS 6
/* far beyond any context this language is trained at; keeps every count
 * in int32 */
#define MAX_LENGTH (1 << 22)
/* vt: two chains of at most 17 variables */
#define MAX_ITEMS 64
/* cwe: common words are this many times as frequent as the others */
#define CWE_RATIO 4

/* ---- generator: splitmix64 */

typedef struct {
    uint64_t s;
} rl_rng;

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rng_next(rl_rng *r)
{
    return mix64(r->s += 0x9e3779b97f4a7c15ull);
}

/* uniform in [0, n), n >= 1 (the modulo bias is below n / 2^64) */
static int32_t rng_below(rl_rng *r, int32_t n)
{
    return (int32_t)(rng_next(r) % (uint64_t)n);
}

/* uniform in [0, 1) with 53 bits */
static double rng_unit(rl_rng *r)
{
    return (double)(rng_next(r) >> 11) * 0x1p-53;
}

/* stream 0: the plan; 1: the filler; 2: the cwe shuffle */
static rl_rng rng_for(const jq_recall_opts *o, int32_t difficulty,
                      int32_t digits, uint64_t index, uint64_t stream)
{
    uint64_t h = mix64(o->seed + 0x7265636c6c6c616eull);
    h = mix64(h ^ index);
    h = mix64(h ^ ((uint64_t)o->task | (uint64_t)difficulty << 8 |
                   (uint64_t)digits << 16 | stream << 32));
    return (rl_rng){h};
}

static void shuffle_i32(rl_rng *r, int32_t *a, int32_t n)
{
    for (int32_t i = n - 1; i > 0; i--) {
        int32_t j = rng_below(r, i + 1);
        int32_t t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

/* ---- options */

typedef struct {
    jq_recall_task task;
    int32_t difficulty, digits;
    bool question_first;
} resolved_opts;

static int resolve(const jq_recall_opts *o, resolved_opts *r, char *err,
                   size_t errlen)
{
    if (!o || o->task < 0 || o->task >= JQ_RECALL_COUNT_)
        return jq_fail(err, errlen, "unknown recall task %d",
                       o ? (int)o->task : -1);
    r->task = o->task;
    r->question_first = o->question_first;
    r->difficulty = o->difficulty ? o->difficulty : default_difficulty[o->task];
    if (r->difficulty < min_difficulty[o->task] ||
        r->difficulty > max_difficulty[o->task])
        return jq_fail(err, errlen,
                       "recall task %s: difficulty %d out of range %d-%d",
                       task_names[o->task], (int)o->difficulty,
                       (int)min_difficulty[o->task],
                       (int)max_difficulty[o->task]);
    r->digits = o->digits ? o->digits : DEFAULT_DIGITS;
    if (r->digits < 1 || r->digits > MAX_DIGITS)
        return jq_fail(err, errlen, "recall digits %d out of range 1-%d",
                       (int)o->digits, MAX_DIGITS);
    if (o->length < 1 || o->length > MAX_LENGTH)
        return jq_fail(err, errlen, "recall length %d out of range 1-%d",
                       (int)o->length, MAX_LENGTH);
    return 0;
}

/* ---- the plan of one example */

typedef struct {
    resolved_opts o;
    /* inserts into the filler (niah/multikey/mqar needles, vt
     * statements), in plan order */
    int32_t n_items;
    int32_t key[MAX_ITEMS];   /* key word index */
    int32_t value[MAX_ITEMS]; /* number, or -1: vt "= previous key" */
    double depth[MAX_ITEMS];  /* relative position in the filler, [0, 1) */
    int32_t asked[MAX_ITEMS]; /* items asked, in the asked order */
    int32_t n_asked;
    /* cwe: a permutation of the keys, the first difficulty ones common */
    int32_t perm[256];
} plan_t;

static int32_t number_count(int32_t digits, int32_t *lo)
{
    int32_t p = 1;
    for (int32_t i = 1; i < digits; i++)
        p *= 10;
    *lo = digits == 1 ? 0 : p;
    return digits == 1 ? 10 : 9 * p;
}

/* n numbers of `digits` digits into v; distinct when there are plenty */
static void draw_values(rl_rng *r, int32_t digits, int32_t *v, int32_t n)
{
    int32_t lo, count = number_count(digits, &lo);
    bool distinct = 2 * n <= count;
    for (int32_t i = 0; i < n; i++) {
        bool dup;
        do {
            v[i] = lo + rng_below(r, count);
            dup = false;
            for (int32_t j = 0; distinct && j < i; j++)
                dup |= v[j] == v[i];
        } while (dup);
    }
}

static void sort_doubles(double *a, int32_t n)
{
    for (int32_t i = 1; i < n; i++)
        for (int32_t j = i; j > 0 && a[j] < a[j - 1]; j--) {
            double t = a[j];
            a[j] = a[j - 1];
            a[j - 1] = t;
        }
}

static void make_plan(const jq_recall_opts *opts, const resolved_opts *o,
                      uint64_t index, plan_t *p)
{
    memset(p, 0, sizeof *p);
    p->o = *o;
    rl_rng r = rng_for(opts, o->difficulty, o->digits, index, 0);
    int32_t n_keys = jq_rl_class_size(JQ_RL_KEY);
    for (int32_t i = 0; i < n_keys; i++)
        p->perm[i] = i;
    shuffle_i32(&r, p->perm, n_keys);
    int32_t d = o->difficulty;
    switch (o->task) {
    case JQ_RECALL_NIAH:
    case JQ_RECALL_MULTIKEY:
    case JQ_RECALL_MQAR:
        p->n_items = d;
        for (int32_t i = 0; i < d; i++) {
            p->key[i] = p->perm[i];
            p->depth[i] = rng_unit(&r);
        }
        draw_values(&r, o->digits, p->value, d);
        if (o->task == JQ_RECALL_MQAR) {
            /* a random subset in a random order */
            int32_t order[MAX_ITEMS];
            for (int32_t i = 0; i < d; i++)
                order[i] = i;
            shuffle_i32(&r, order, d);
            p->n_asked = (d + 1) / 2 < 4 ? (d + 1) / 2 : 4;
            memcpy(p->asked, order, sizeof(int32_t) * (size_t)p->n_asked);
        } else {
            p->n_asked = 1;
            p->asked[0] = rng_below(&r, d);
        }
        break;
    case JQ_RECALL_VT: {
        /* chain 0 (asked) is items 0..d, chain 1 items d+1..2d+1; each
         * chain's statements keep their order in the text */
        int32_t vars = d + 1, values[2];
        draw_values(&r, o->digits, values, 2);
        if (values[0] == values[1]) /* only possible with 1 digit... */
            values[1] = (values[0] + 1) % 10; /* ...where 0-9 wraps */
        p->n_items = 2 * vars;
        for (int32_t c = 0; c < 2; c++) {
            for (int32_t s = 0; s < vars; s++) {
                int32_t i = c * vars + s;
                p->key[i] = p->perm[i];
                p->value[i] = s == 0 ? values[c] : -1;
                p->depth[i] = rng_unit(&r);
            }
            sort_doubles(p->depth + c * vars, vars);
        }
        p->n_asked = vars;
        for (int32_t s = 0; s < vars; s++)
            p->asked[s] = s;
        break;
    }
    case JQ_RECALL_CWE:
    default:
        break;
    }
}

/* ---- token vector */

typedef struct {
    int32_t *id;
    int32_t n, cap;
    bool oom;
} tokvec;

static void emit(tokvec *v, int32_t id)
{
    if (v->oom)
        return;
    if (v->n == v->cap) {
        int32_t cap = v->cap ? 2 * v->cap : 256;
        int32_t *p = realloc(v->id, sizeof(int32_t) * (size_t)cap);
        if (!p) {
            v->oom = true;
            return;
        }
        v->id = p;
        v->cap = cap;
    }
    v->id[v->n++] = id;
}

static void emit_fn(tokvec *v, jq_rl_fn w) { emit(v, jq_rl_fn_id(w)); }

static void emit_key(tokvec *v, int32_t k)
{
    emit(v, jq_rl_word(JQ_RL_KEY, k));
}

/* exactly `digits` digits, the first with the space */
static void emit_number(tokvec *v, int32_t x, int32_t digits)
{
    char d[MAX_DIGITS];
    for (int32_t i = digits - 1; i >= 0; i--, x /= 10)
        d[i] = (char)(x % 10);
    for (int32_t i = 0; i < digits; i++)
        emit(v, (i == 0 ? JQ_RL_SDIGIT0 : JQ_RL_DIGIT0) + d[i]);
}

/* ---- filler: simple sentences, e.g. "the old dog saw a cat." */

typedef enum { S_ART, S_ADJ, S_NOUN, S_VERB, S_PREP, S_WAS, S_AND, S_DOT, S_END } slot;

static const slot templates[][11] = {
    {S_ART, S_ADJ, S_NOUN, S_VERB, S_ART, S_NOUN, S_DOT, S_END},
    {S_ART, S_NOUN, S_VERB, S_ART, S_ADJ, S_NOUN, S_PREP, S_ART, S_NOUN, S_DOT, S_END},
    {S_ART, S_NOUN, S_WAS, S_ADJ, S_DOT, S_END},
    {S_ART, S_NOUN, S_AND, S_ART, S_NOUN, S_VERB, S_ART, S_NOUN, S_DOT, S_END},
};
#define N_TEMPLATES ((int32_t)(sizeof templates / sizeof templates[0]))
#define SHORT_TEMPLATE 2 /* the shortest: it ends the filler */

static int32_t template_len(int32_t t)
{
    int32_t n = 0;
    while (templates[t][n] != S_END)
        n++;
    return n;
}

static int32_t random_word(rl_rng *r, jq_rl_class c)
{
    return jq_rl_word(c, rng_below(r, jq_rl_class_size(c)));
}

static void emit_sentence(tokvec *v, rl_rng *r, int32_t t)
{
    for (const slot *s = templates[t]; *s != S_END; s++) {
        switch (*s) {
        case S_ART: emit_fn(v, rng_below(r, 3) ? JQ_RL_THE : JQ_RL_A); break;
        case S_ADJ: emit(v, random_word(r, JQ_RL_ADJ)); break;
        case S_NOUN: emit(v, random_word(r, JQ_RL_NOUN)); break;
        case S_VERB: emit(v, random_word(r, JQ_RL_VERB)); break;
        case S_PREP: emit(v, random_word(r, JQ_RL_PREP)); break;
        case S_WAS: emit_fn(v, JQ_RL_WAS); break;
        case S_AND: emit_fn(v, JQ_RL_AND); break;
        case S_DOT:
        case S_END: emit(v, JQ_RL_DOT); break;
        }
    }
}

/* Sentences totalling at most budget tokens, and within
 * template_len(SHORT_TEMPLATE) - 1 of it: random templates while they fit,
 * then short ones. start[i] is where sentence i begins in words->id
 * (start[n] = words->n). */
typedef struct {
    tokvec words;
    int32_t *start;
    int32_t n;
} filler_t;

static int make_filler(const jq_recall_opts *opts, const plan_t *p,
                       uint64_t index, int32_t budget, filler_t *f)
{
    memset(f, 0, sizeof *f);
    rl_rng r = rng_for(opts, p->o.difficulty, p->o.digits, index, 1);
    int32_t short_len = template_len(SHORT_TEMPLATE);
    int32_t max_sent = budget / short_len + 1;
    f->start = malloc(sizeof(int32_t) * (size_t)(max_sent + 1));
    if (!f->start)
        return -1;
    f->start[0] = 0;
    for (;;) {
        int32_t t = rng_below(&r, N_TEMPLATES);
        int32_t left = budget - f->words.n;
        if (template_len(t) > left) {
            if (short_len > left)
                break;
            t = SHORT_TEMPLATE;
        }
        emit_sentence(&f->words, &r, t);
        f->start[++f->n] = f->words.n;
    }
    return f->words.oom ? -1 : 0;
}

static void filler_free(filler_t *f)
{
    free(f->words.id);
    free(f->start);
    memset(f, 0, sizeof *f);
}

/* ---- the example */

/* Builds the tokens of the example with filler f (NULL: none) or, for
 * cwe, a list of cwe_slots words; *n_prompt gets where the answer starts
 * and ans[2i], ans[2i+1] the token range of answer string i. */
typedef struct {
    tokvec t;
    int32_t n_prompt;
    int32_t ans[2 * MAX_ITEMS];
    int32_t n_ans;
} built_t;

static void emit_item(tokvec *v, const plan_t *p, int32_t i)
{
    if (p->o.task == JQ_RECALL_VT) {
        emit_fn(v, JQ_RL_VAR);
        emit_key(v, p->key[i]);
        emit(v, JQ_RL_EQUALS);
        if (p->value[i] >= 0)
            emit_number(v, p->value[i], p->o.digits);
        else
            emit_key(v, p->key[i - 1]);
    } else {
        emit_fn(v, JQ_RL_THE);
        emit_fn(v, JQ_RL_NUMBER);
        emit_fn(v, JQ_RL_OF);
        emit_key(v, p->key[i]);
        emit_fn(v, JQ_RL_IS);
        emit_number(v, p->value[i], p->o.digits);
    }
    emit(v, JQ_RL_DOT);
}

static void emit_question(tokvec *v, const plan_t *p)
{
    emit_fn(v, JQ_RL_QUESTION);
    emit(v, JQ_RL_COLON);
    switch (p->o.task) {
    case JQ_RECALL_NIAH:
    case JQ_RECALL_MULTIKEY:
        emit_fn(v, JQ_RL_WHAT);
        emit_fn(v, JQ_RL_IS);
        emit_fn(v, JQ_RL_THE);
        emit_fn(v, JQ_RL_NUMBER);
        emit_fn(v, JQ_RL_OF);
        emit_key(v, p->key[p->asked[0]]);
        break;
    case JQ_RECALL_MQAR:
        emit_fn(v, JQ_RL_WHAT);
        emit_fn(v, JQ_RL_ARE);
        emit_fn(v, JQ_RL_THE);
        emit_fn(v, JQ_RL_NUMBERS);
        emit_fn(v, JQ_RL_OF);
        for (int32_t a = 0; a < p->n_asked; a++) {
            if (a > 0)
                emit(v, JQ_RL_COMMA);
            emit_key(v, p->key[p->asked[a]]);
        }
        break;
    case JQ_RECALL_VT:
        emit_fn(v, JQ_RL_WHICH);
        emit_fn(v, JQ_RL_VARS);
        emit_fn(v, JQ_RL_ARE);
        emit_number(v, p->value[0], p->o.digits);
        break;
    case JQ_RECALL_CWE:
    default: {
        emit_fn(v, JQ_RL_WHAT);
        emit_fn(v, JQ_RL_ARE);
        emit_fn(v, JQ_RL_THE);
        int32_t k = p->o.difficulty;
        emit_number(v, k, k < 10 ? 1 : 2);
        emit_fn(v, JQ_RL_MOST);
        emit_fn(v, JQ_RL_COMMON);
        emit_fn(v, JQ_RL_WORDS);
        emit_fn(v, JQ_RL_IN);
        emit_fn(v, JQ_RL_THE);
        emit_fn(v, JQ_RL_LIST);
        break;
    }
    }
    emit(v, JQ_RL_QMARK);
}

static void emit_filler_context(tokvec *v, const plan_t *p,
                                const filler_t *f)
{
    int32_t n_sent = f ? f->n : 0;
    /* items by gap (0: before every sentence .. n_sent: after all), plan
     * order within a gap (so each vt chain stays in order) */
    int32_t gap[MAX_ITEMS], order[MAX_ITEMS];
    for (int32_t i = 0; i < p->n_items; i++) {
        int32_t g = (int32_t)(p->depth[i] * (double)(n_sent + 1));
        gap[i] = g > n_sent ? n_sent : g;
        order[i] = i;
    }
    for (int32_t i = 1; i < p->n_items; i++)
        for (int32_t j = i; j > 0 && gap[order[j]] < gap[order[j - 1]]; j--) {
            int32_t t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    int32_t next = 0;
    for (int32_t s = 0; s <= n_sent; s++) {
        while (next < p->n_items && gap[order[next]] == s)
            emit_item(v, p, order[next++]);
        if (s < n_sent)
            for (int32_t w = f->start[s]; w < f->start[s + 1]; w++)
                emit(v, f->words.id[w]);
    }
}

/* cwe list of `slots` words: difficulty common words CWE_RATIO * fu times
 * each, u others fu or fu + 1 times, where fu is the smallest frequency at
 * which the key pool has enough other words. Returns the number of list
 * words (0 when slots cannot hold the minimum, 5 per common word), the
 * list itself in *out (malloc'd). */
static int32_t cwe_list(const jq_recall_opts *opts, const plan_t *p,
                        uint64_t index, int32_t slots, int32_t **out)
{
    int32_t k = p->o.difficulty, pool = jq_rl_class_size(JQ_RL_KEY) - k;
    *out = NULL;
    if (slots < (CWE_RATIO + 1) * k)
        return 0;
    int32_t fu = 1, u;
    for (;; fu++) {
        u = (slots - k * CWE_RATIO * fu) / fu;
        if (u <= pool)
            break;
    }
    int32_t extra = slots - k * CWE_RATIO * fu - u * fu;
    if (extra > u)
        extra = u;
    int32_t n = k * CWE_RATIO * fu + u * fu + extra;
    int32_t *list = malloc(sizeof(int32_t) * (size_t)n);
    if (!list)
        return -1;
    int32_t m = 0;
    for (int32_t w = 0; w < k; w++)
        for (int32_t c = 0; c < CWE_RATIO * fu; c++)
            list[m++] = p->perm[w];
    for (int32_t w = 0; w < u; w++)
        for (int32_t c = 0; c < fu + (w < extra); c++)
            list[m++] = p->perm[k + w];
    rl_rng r = rng_for(opts, p->o.difficulty, p->o.digits, index, 2);
    shuffle_i32(&r, list, n);
    *out = list;
    return n;
}

static void build(const plan_t *p, const filler_t *f, const int32_t *list,
                  int32_t n_list, built_t *b)
{
    tokvec *v = &b->t;
    v->n = 0;
    b->n_ans = 0;
    emit(v, JQ_RL_BOS);
    if (p->o.question_first)
        emit_question(v, p);
    if (p->o.task == JQ_RECALL_CWE) {
        emit_fn(v, JQ_RL_LIST);
        emit(v, JQ_RL_COLON);
        for (int32_t i = 0; i < n_list; i++)
            emit_key(v, list[i]);
        emit(v, JQ_RL_DOT);
    } else {
        emit_filler_context(v, p, f);
    }
    if (!p->o.question_first)
        emit_question(v, p);
    emit_fn(v, JQ_RL_ANSWER);
    emit(v, JQ_RL_COLON);
    b->n_prompt = v->n;

    /* the answer strings, ", "-separated */
    int32_t common[10], n_common = 0;
    if (p->o.task == JQ_RECALL_CWE) /* by first occurrence */
        for (int32_t i = 0; i < n_list && n_common < p->o.difficulty; i++) {
            bool is_common = false, seen = false;
            for (int32_t w = 0; w < p->o.difficulty; w++)
                is_common |= list[i] == p->perm[w];
            for (int32_t j = 0; j < n_common; j++)
                seen |= common[j] == list[i];
            if (is_common && !seen)
                common[n_common++] = list[i];
        }
    int32_t n_ans = p->o.task == JQ_RECALL_CWE ? n_common : p->n_asked;
    for (int32_t a = 0; a < n_ans; a++) {
        if (a > 0)
            emit(v, JQ_RL_COMMA);
        b->ans[2 * a] = v->n;
        int32_t i = p->asked[a];
        switch (p->o.task) {
        case JQ_RECALL_MQAR:
            emit_key(v, p->key[i]);
            emit_number(v, p->value[i], p->o.digits);
            break;
        case JQ_RECALL_VT: emit_key(v, p->key[i]); break;
        case JQ_RECALL_CWE: emit_key(v, common[a]); break;
        default: emit_number(v, p->value[i], p->o.digits); break;
        }
        b->ans[2 * a + 1] = v->n;
    }
    b->n_ans = n_ans;
    emit(v, JQ_RL_EOS);
}

/* the text of tokens [from, to): words with a space between, punctuation
 * attached; NULL when out of memory */
static char *render(const int32_t *id, int32_t from, int32_t to)
{
    size_t len = 0;
    for (int32_t i = from; i < to; i++) {
        bool space;
        const char *s = jq_rl_piece_text(id[i], &space);
        len += strlen(s) + (space && i > from);
    }
    char *out = malloc(len + 1), *o = out;
    if (!out)
        return NULL;
    for (int32_t i = from; i < to; i++) {
        bool space;
        const char *s = jq_rl_piece_text(id[i], &space);
        if (space && i > from)
            *o++ = ' ';
        size_t n = strlen(s);
        memcpy(o, s, n);
        o += n;
    }
    *o = '\0';
    return out;
}

/* fixed tokens of the example: everything but the filler (or for cwe,
 * everything but the list words) */
static int32_t fixed_len(const plan_t *p, built_t *b)
{
    build(p, NULL, NULL, 0, b);
    return b->t.oom ? -1 : b->t.n;
}

static int32_t min_length(const plan_t *p, built_t *b)
{
    int32_t n = fixed_len(p, b);
    if (n < 0 || p->o.task != JQ_RECALL_CWE)
        return n;
    /* cwe: the list words of the minimal list, and as many answer
     * strings as common words (the empty list has none) */
    int32_t k = p->o.difficulty, ans_len = 2 * k - 1; /* words + commas */
    return n + (CWE_RATIO + 1) * k + ans_len;
}

int32_t jq_recall_min_length(const jq_recall_opts *o, char *err,
                             size_t errlen)
{
    resolved_opts r;
    jq_recall_opts probe = *o;
    probe.length = MAX_LENGTH; /* any valid length: it is not looked at */
    if (resolve(&probe, &r, err, errlen))
        return -1;
    plan_t *p = malloc(sizeof *p);
    built_t b = {0};
    int32_t n = -1;
    if (p) {
        make_plan(o, &r, 0, p);
        n = min_length(p, &b);
    }
    free(b.t.id);
    free(p);
    if (n < 0)
        jq_set_err(err, errlen, "out of memory");
    return n;
}

int jq_recall_generate(const jq_recall_opts *o, uint64_t index,
                       jq_recall_example *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    resolved_opts r;
    if (resolve(o, &r, err, errlen))
        return -1;
    plan_t *p = malloc(sizeof *p);
    built_t b = {0};
    filler_t f = {0};
    int32_t *list = NULL, n_list = 0;
    int rc = -1;
    if (!p)
        goto oom;
    make_plan(o, &r, index, p);
    int32_t need = min_length(p, &b);
    if (need < 0)
        goto oom;
    if (need > o->length) {
        jq_set_err(err, errlen,
                   "recall task %s (difficulty %d) needs a length of at "
                   "least %d tokens, got %d",
                   task_names[r.task], (int)r.difficulty, (int)need,
                   (int)o->length);
        goto done;
    }
    if (r.task == JQ_RECALL_CWE) {
        /* each list word is one token, so is its answer string (plus the
         * commas, counted by min_length) */
        int32_t ans_len = 2 * r.difficulty - 1;
        n_list = cwe_list(o, p, index, o->length - fixed_len(p, &b) - ans_len,
                          &list);
        if (n_list < 0)
            goto oom;
        build(p, NULL, list, n_list, &b);
    } else {
        if (make_filler(o, p, index, o->length - need, &f) != 0)
            goto oom;
        build(p, &f, NULL, 0, &b);
    }
    if (b.t.oom)
        goto oom;

    out->n_tokens = b.t.n;
    out->n_prompt = b.n_prompt;
    out->tokens = b.t.id;
    b.t.id = NULL;
    out->prompt = render(out->tokens, 1, out->n_prompt);
    out->answer = render(out->tokens, out->n_prompt, out->n_tokens - 1);
    out->answers = calloc((size_t)b.n_ans, sizeof(char *));
    if (!out->prompt || !out->answer || (b.n_ans && !out->answers))
        goto oom_out;
    out->n_answers = b.n_ans;
    for (int32_t a = 0; a < b.n_ans; a++)
        if (!(out->answers[a] = render(out->tokens, b.ans[2 * a],
                                       b.ans[2 * a + 1])))
            goto oom_out;
    rc = 0;
    goto done;
oom_out:
    jq_recall_example_free(out);
oom:
    jq_set_err(err, errlen, "out of memory");
done:
    free(list);
    filler_free(&f);
    free(b.t.id);
    free(p);
    return rc;
}

void jq_recall_example_free(jq_recall_example *e)
{
    if (!e)
        return;
    for (int32_t i = 0; i < e->n_answers; i++)
        free(e->answers[i]);
    free(e->answers);
    free(e->tokens);
    free(e->prompt);
    free(e->answer);
    memset(e, 0, sizeof *e);
}
