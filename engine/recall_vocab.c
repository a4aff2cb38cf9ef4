/* recall_vocab.c — the recall language's vocabulary and its `llama`
 * SentencePiece tokenizer (layout in recall_vocab.h).
 *
 * Why prefix-only pieces: SentencePiece (llama.cpp's SPM, engine/
 * tokenizer_spm.c) starts from single characters and merges adjacent
 * symbols only when their concatenation is a token. "▁table" is therefore
 * one token only if some chain of in-vocabulary pieces leads to it. The
 * vocabulary holds every prefix of every "▁word": then the only merge
 * available inside a word is "its prefix so far + the next character", and
 * a word always ends as one token, whatever the scores. No other
 * multi-character piece exists (every one starts with "▁" and holds no
 * other "▁"), so no merge can cross a word boundary or cut a word
 * differently. Words were chosen short and with shared beginnings so the
 * prefixes fit the 1024-token budget.
 */
#include "recall_lang.h"
#include "recall_vocab.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "tokenizer.h"

static const char *const function_words[JQ_RL_FN_COUNT_] = {
    [JQ_RL_THE] = "the",           [JQ_RL_A] = "a",
    [JQ_RL_OF] = "of",             [JQ_RL_IS] = "is",
    [JQ_RL_ARE] = "are",           [JQ_RL_AND] = "and",
    [JQ_RL_WAS] = "was",           [JQ_RL_WHAT] = "what",
    [JQ_RL_WHICH] = "which",       [JQ_RL_QUESTION] = "question",
    [JQ_RL_ANSWER] = "answer",     [JQ_RL_NUMBER] = "number",
    [JQ_RL_NUMBERS] = "numbers",   [JQ_RL_VAR] = "var",
    [JQ_RL_VARS] = "vars",         [JQ_RL_MOST] = "most",
    [JQ_RL_COMMON] = "common",     [JQ_RL_WORDS] = "words",
    [JQ_RL_IN] = "in",             [JQ_RL_LIST] = "list",
};

static const char *const key_words[] = {
    "apple",  "banana",  "cherry",  "grape",   "lemon",   "mango",
    "melon",  "olive",   "peach",   "plum",    "berry",   "fig",
    "kiwi",   "lime",    "tiger",   "zebra",   "panda",   "koala",
    "camel",  "horse",   "rabbit",  "mouse",   "otter",   "beaver",
    "badger", "falcon",  "eagle",   "parrot",  "pigeon",  "raven",
    "swan",   "goose",   "duck",    "robin",   "violin",  "guitar",
    "piano",  "drum",    "flute",   "trumpet", "hammer",  "ladder",
    "kettle", "candle",  "lantern", "mirror",  "pillow",  "blanket",
    "basket", "bucket",  "bottle",  "jacket",  "helmet",  "ribbon",
    "button", "anchor",  "rocket",  "magnet",  "compass", "crystal",
    "marble", "pebble",  "feather", "castle",  "bridge",  "tower",
    "tunnel", "temple",  "cobra",   "lizard",  "turtle",  "spider",
    "beetle", "wasp",    "moth",    "jade",    "ruby",    "amber",
    "coral",  "pearl",   "ivory",   "onyx",    "topaz",   "cactus",
    "carrot", "cabin",   "canoe",   "bamboo",  "balloon", "paddle",
    "pepper", "pencil",  "potato",  "tomato",  "tulip",   "turnip",
    "salmon", "saddle",  "shovel",  "sofa",    "spoon",   "statue",
    "sugar",  "walrus",  "wagon",   "window",  "winter",
};

static const char *const noun_words[] = {
    "man",   "woman", "boy",  "girl",  "dog",  "cat",  "bird", "fish",
    "tree",  "house", "road", "boat",  "car",  "ship", "town", "hill",
    "lake",  "sea",   "sun",  "moon",  "star", "rain", "snow", "wind",
    "door",  "box",   "cup",  "bed",   "ball", "book", "hat",  "bag",
    "farm",  "king",  "queen", "child", "cow", "pig",  "hen",  "fox",
    "wolf",  "bear",  "rock", "field", "wall", "gate", "room",
};

static const char *const verb_words[] = {
    "saw",  "took", "found", "made", "kept", "held", "left",
    "met",  "sent", "told",  "gave", "had",  "got",  "put",
    "ran",  "sat",  "ate",   "fed",  "hid",  "led",
};

static const char *const adj_words[] = {
    "old",   "new",   "big",  "small", "red",  "blue",  "green", "black",
    "white", "long",  "short", "hot",  "cold", "tall",  "dark",  "warm",
    "soft",  "hard",  "good", "bad",   "happy", "sad",  "quiet", "loud",
};

static const char *const prep_words[] = {
    "near", "under", "over", "behind", "with", "from", "on", "at", "by", "to",
};

#define COUNT(a) ((int32_t)(sizeof(a) / sizeof((a)[0])))

static const struct {
    const char *const *words;
    int32_t n;
} classes[JQ_RL_CLASS_COUNT_] = {
    [JQ_RL_FUNCTION] = {function_words, COUNT(function_words)},
    [JQ_RL_KEY] = {key_words, COUNT(key_words)},
    [JQ_RL_NOUN] = {noun_words, COUNT(noun_words)},
    [JQ_RL_VERB] = {verb_words, COUNT(verb_words)},
    [JQ_RL_ADJ] = {adj_words, COUNT(adj_words)},
    [JQ_RL_PREP] = {prep_words, COUNT(prep_words)},
};

/* the fixed pieces JQ_RL_SPACE .. JQ_RL_SDIGIT0 + 9, as the vocabulary
 * spells them */
static const char *const fixed_pieces[JQ_RL_FIRST_WORD - JQ_RL_SPACE] = {
    "\xE2\x96\x81", ".", ",", ":", "?", "\xE2\x96\x81=",
    "0", "1", "2", "3", "4", "5", "6", "7", "8", "9",
    "\xE2\x96\x81" "0", "\xE2\x96\x81" "1", "\xE2\x96\x81" "2",
    "\xE2\x96\x81" "3", "\xE2\x96\x81" "4", "\xE2\x96\x81" "5",
    "\xE2\x96\x81" "6", "\xE2\x96\x81" "7", "\xE2\x96\x81" "8",
    "\xE2\x96\x81" "9",
};

int32_t jq_rl_class_size(jq_rl_class c)
{
    return c >= 0 && c < JQ_RL_CLASS_COUNT_ ? classes[c].n : 0;
}

int32_t jq_rl_word(jq_rl_class c, int32_t i)
{
    int32_t id = JQ_RL_FIRST_WORD;
    for (int k = 0; k < (int)c; k++)
        id += classes[k].n;
    return id + i;
}

int32_t jq_rl_n_emitted(void)
{
    int32_t n = JQ_RL_FIRST_WORD;
    for (int k = 0; k < JQ_RL_CLASS_COUNT_; k++)
        n += classes[k].n;
    return n;
}

const char *jq_rl_piece_text(int32_t id, bool *space)
{
    if (id >= JQ_RL_SPACE && id < JQ_RL_FIRST_WORD) {
        *space = id == JQ_RL_SPACE || id == JQ_RL_EQUALS ||
                 id >= JQ_RL_SDIGIT0;
        const char *p = fixed_pieces[id - JQ_RL_SPACE];
        return *space ? p + 3 : p;
    }
    int32_t i = id - JQ_RL_FIRST_WORD;
    if (i < 0)
        return NULL;
    for (int k = 0; k < JQ_RL_CLASS_COUNT_; k++) {
        if (i < classes[k].n) {
            *space = true;
            return classes[k].words[i];
        }
        i -= classes[k].n;
    }
    return NULL;
}

/* ---- prefix-only pieces */

/* "▁" + word[0, len): a word itself (full) or one of its prefixes */
typedef struct {
    const char *word;
    int32_t len;
    bool full;
} prefix_ref;

static int prefix_cmp(const void *pa, const void *pb)
{
    const prefix_ref *a = pa, *b = pb;
    int32_t n = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->word, b->word, (size_t)n);
    if (c)
        return c;
    if (a->len != b->len)
        return a->len < b->len ? -1 : 1;
    return (int)b->full - (int)a->full; /* a full word first in its group */
}

static bool same_piece(const prefix_ref *a, const prefix_ref *b)
{
    return a->len == b->len && !memcmp(a->word, b->word, (size_t)a->len);
}

/* All words and all their prefixes of at least one letter, sorted, so that
 * equal strings are adjacent with a full word (if any) first. Returns the
 * count, or -1 when out of memory; *out is malloc'd. */
static int32_t sorted_prefixes(prefix_ref **out)
{
    size_t n = 0;
    for (int k = 0; k < JQ_RL_CLASS_COUNT_; k++)
        for (int32_t i = 0; i < classes[k].n; i++)
            n += strlen(classes[k].words[i]);
    prefix_ref *r = malloc((n ? n : 1) * sizeof *r);
    if (!r)
        return -1;
    size_t m = 0;
    for (int k = 0; k < JQ_RL_CLASS_COUNT_; k++)
        for (int32_t i = 0; i < classes[k].n; i++) {
            const char *w = classes[k].words[i];
            int32_t len = (int32_t)strlen(w);
            for (int32_t l = 1; l <= len; l++)
                r[m++] = (prefix_ref){w, l, l == len};
        }
    qsort(r, m, sizeof *r, prefix_cmp);
    *out = r;
    return (int32_t)m;
}

/* Calls f(ud, ref) once for each prefix-only piece, in id order. -1 when
 * out of memory. */
static int for_each_prefix_only(void (*f)(void *, const prefix_ref *),
                                void *ud)
{
    prefix_ref *r;
    int32_t m = sorted_prefixes(&r);
    if (m < 0)
        return -1;
    for (int32_t i = 0; i < m; i++) {
        /* the first of a group of equal strings is the full word when
         * there is one */
        bool first = i == 0 || !same_piece(&r[i], &r[i - 1]);
        if (first && !r[i].full)
            f(ud, &r[i]);
    }
    free(r);
    return 0;
}

static void count_one(void *ud, const prefix_ref *p)
{
    (void)p;
    (*(int32_t *)ud)++;
}

int32_t jq_recall_n_vocab(void)
{
    int32_t n = 0;
    if (for_each_prefix_only(count_one, &n) != 0)
        return -1;
    return jq_rl_n_emitted() + n;
}

/* ---- the tokenizer metadata */

typedef struct {
    char **tok;
    int32_t n, cap;
    bool oom;
} token_list;

static void add_token(token_list *t, const char *piece, size_t len)
{
    char *s = t->n < t->cap ? malloc(len + 1) : NULL;
    if (!s) {
        t->oom = true;
        return;
    }
    memcpy(s, piece, len);
    s[len] = '\0';
    t->tok[t->n++] = s;
}

static void add_spaced(token_list *t, const char *word, size_t len)
{
    char buf[128];
    if (len + 4 > sizeof buf) { /* words are short; see the vocabulary test */
        t->oom = true;
        return;
    }
    memcpy(buf, "\xE2\x96\x81", 3);
    memcpy(buf + 3, word, len);
    add_token(t, buf, len + 3);
}

static void add_prefix(void *ud, const prefix_ref *p)
{
    add_spaced(ud, p->word, (size_t)p->len);
}

int jq_recall_write_tokenizer(jq_gguf_writer *w, char *err, size_t errlen)
{
    int32_t n = jq_recall_n_vocab();
    if (n < 0)
        return jq_fail(err, errlen, "out of memory");
    token_list t = {calloc((size_t)n, sizeof(char *)), 0, n, false};
    float *scores = calloc((size_t)n, sizeof *scores);
    int32_t *types = calloc((size_t)n, sizeof *types);
    int rc = -1;
    if (!t.tok || !scores || !types) {
        jq_set_err(err, errlen, "out of memory");
        goto done;
    }
    add_token(&t, "<unk>", 5);
    add_token(&t, "<s>", 3);
    add_token(&t, "</s>", 4);
    for (int b = 0; b < 256; b++) {
        char buf[8];
        snprintf(buf, sizeof buf, "<0x%02X>", b);
        add_token(&t, buf, strlen(buf));
    }
    for (int32_t i = 0; i < JQ_RL_FIRST_WORD - JQ_RL_SPACE; i++)
        add_token(&t, fixed_pieces[i], strlen(fixed_pieces[i]));
    for (int k = 0; k < JQ_RL_CLASS_COUNT_; k++)
        for (int32_t i = 0; i < classes[k].n; i++)
            add_spaced(&t, classes[k].words[i], strlen(classes[k].words[i]));
    if (for_each_prefix_only(add_prefix, &t) != 0 || t.oom || t.n != n) {
        jq_set_err(err, errlen, "out of memory");
        goto done;
    }
    /* Scores do not change how this vocabulary tokenizes (the comment at
     * the top); they decrease with the id, SentencePiece's usual order. */
    for (int32_t i = 0; i < n; i++) {
        types[i] = i == JQ_RL_UNK      ? JQ_TOKEN_UNKNOWN
                   : i < JQ_RL_BYTE0   ? JQ_TOKEN_CONTROL
                   : i < JQ_RL_SPACE   ? JQ_TOKEN_BYTE
                                       : JQ_TOKEN_NORMAL;
        scores[i] = types[i] == JQ_TOKEN_NORMAL ? -(float)(i - JQ_RL_SPACE) : 0.0f;
    }
    if (jq_spm_vocab_write(w, (const char *const *)t.tok, scores, types, n,
                           err, errlen) != 0)
        goto done;
    rc = 0;
done:
    if (t.tok)
        for (int32_t i = 0; i < t.n; i++)
            free(t.tok[i]);
    free(t.tok);
    free(scores);
    free(types);
    return rc;
}
