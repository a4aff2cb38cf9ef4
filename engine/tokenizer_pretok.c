/* tokenizer_pretok.c — the pre-tokenizers of byte-level BPE: splitting
 * text (as code points) into the words that BPE merges within.
 *
 * llama.cpp (src/unicode.cpp, unicode_regex_split) runs a list of regexes
 * per pre-tokenizer type, each one re-splitting every piece the previous
 * one produced: matches and the unmatched gaps between them both become
 * pieces. Two of its regexes (GPT-2's and Llama 3's) have hand-written
 * splitters there and every other one goes through std::regex (ECMAScript:
 * leftmost match, first alternative that succeeds, greedy quantifiers with
 * backtracking). We reproduce the hand-written ones step by step and
 * replace each std::regex by a matcher written for that one expression;
 * the comment on each matcher argues why it gives what the regex gives.
 *
 * Two details of how llama.cpp feeds std::regex matter for exactness:
 *   - a regex using \p{..} runs on a "collapsed" text where every code
 *     point >= 128 is one byte naming its class (white space becomes \v),
 *     so \p{L} means "class LETTER" and \s means ASCII white space or any
 *     White_Space code point;
 *   - any other regex runs on the code points themselves (std::wregex),
 *     except that non-ASCII white space is replaced by \v first, so such a
 *     code point matches \s and nothing else (not even a literal range that
 *     contains it, e.g. U+3000 in deepseek-llm's "　-。").
 * Both come down to the same rule, used below: a White_Space code point is
 * \s and nothing else.
 */
#include "tokenizer_internal.h"
#include "tokenizer_unicode.h"

#include <stdlib.h>
#include <string.h>

/* ---- Unicode classes */

int jq_ucat(uint32_t cp)
{
    if (cp < 128)
        return jq_ucat_ascii[cp];
    if (cp >= 0x110000)
        return JQ_UCAT_UNDEFINED; /* llama.cpp: out of its table */
    size_t lo = 0, hi = jq_ucat_n; /* invariant: start[lo] <= cp */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (jq_ucat_start[mid] <= cp)
            lo = mid;
        else
            hi = mid;
    }
    return jq_ucat_class[lo];
}

bool jq_uspace_has(uint32_t cp)
{
    if (cp < 128)
        return (cp >= 9 && cp <= 13) || cp == ' ';
    size_t lo = 0, hi = jq_uspace_n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (jq_uspace[mid] == cp)
            return true;
        if (jq_uspace[mid] < cp)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

int jq_sizevec_push(jq_sizevec *s, size_t x)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        size_t *p = realloc(s->v, cap * sizeof *p);
        if (!p)
            return -1;
        s->v = p;
        s->cap = cap;
    }
    s->v[s->n++] = x;
    return 0;
}

/* ---- per-code-point flags, computed once per text */

enum {
    F_L = 1,   /* \p{L} */
    F_N = 2,   /* \p{N} */
    F_S = 4,   /* \s (White_Space) */
    F_P = 8,   /* \p{P} */
    F_IN = 16, /* inside the piece: llama.cpp's non-zero flags */
};

typedef struct {
    const uint32_t *cp;
    const uint8_t *fl; /* F_* of each code point, F_IN always set */
    size_t end;        /* end of the current piece */
} text_view;

/* Flags at pos, 0 past the end of the piece (llama.cpp's _get_flags). */
static inline unsigned fl_at(const text_view *t, size_t pos)
{
    return pos < t->end ? t->fl[pos] : 0;
}

/* Code point at pos, or none past the end (llama.cpp's OUT_OF_RANGE). */
#define CP_NONE 0xFFFFFFFFu
static inline uint32_t cp_at(const text_view *t, size_t pos)
{
    return pos < t->end ? t->cp[pos] : CP_NONE;
}

/* The code point as std::wregex sees it (see the top of the file). */
static inline uint32_t wide_at(const text_view *t, size_t pos)
{
    uint32_t c = t->cp[pos];
    return (c > 0x7f && (t->fl[pos] & F_S)) ? 0x0b : c;
}

static bool is_rn(uint32_t c) { return c == '\r' || c == '\n'; }

/* ASCII lower case: the only code points whose lower case is one of the
 * contraction letters (the generator checks this). */
static uint32_t lower_ascii(uint32_t c)
{
    return (c >= 'A' && c <= 'Z') ? c + 32 : c;
}

/* Length of an English contraction ('s 't 'm 'd 're 've 'll) at pos, 0 if
 * none; fold: whether the letters match in either case. */
static size_t contraction(const text_view *t, size_t pos, bool fold)
{
    if (t->cp[pos] != '\'' || pos + 1 >= t->end)
        return 0;
    uint32_t a = t->cp[pos + 1];
    if (fold)
        a = lower_ascii(a);
    if (a == 's' || a == 't' || a == 'm' || a == 'd')
        return 2;
    if (pos + 2 >= t->end)
        return 0;
    uint32_t b = t->cp[pos + 2];
    if (fold)
        b = lower_ascii(b);
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') ||
        (a == 'l' && b == 'l'))
        return 3;
    return 0;
}

/* Length of the run of white space starting at pos. */
static size_t ws_run(const text_view *t, size_t pos)
{
    size_t k = 0;
    while (fl_at(t, pos + k) & F_S)
        k++;
    return k;
}

/* ---- GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)
 * llama.cpp's unicode_regex_split_custom_gpt2, step for step. Where the
 * regex matches nothing (one white space code point before a non-space)
 * it emits that code point alone, which is also what the regex's gap
 * would be. */
static int split_gpt2(const text_view *t, size_t a, jq_sizevec *out)
{
    size_t pos = a;
    while (pos < t->end) {
        size_t start = pos;
        uint32_t c = t->cp[pos];
        unsigned f = t->fl[pos];
        size_t k = contraction(t, pos, false);
        if (k) {
            pos += k;
            goto emit;
        }
        unsigned f2 = c == ' ' ? fl_at(t, pos + 1) : f;
        if (f2 & F_L) {
            pos += c == ' ';
            while (fl_at(t, pos) & F_L)
                pos++;
            goto emit;
        }
        if (f2 & F_N) {
            pos += c == ' ';
            while (fl_at(t, pos) & F_N)
                pos++;
            goto emit;
        }
        if (!(f2 & (F_S | F_L | F_N)) && f2) {
            pos += c == ' ';
            for (unsigned g = fl_at(t, pos); !(g & (F_S | F_L | F_N)) && g;
                 g = fl_at(t, pos))
                pos++;
            goto emit;
        }
        size_t nws = ws_run(t, pos);
        if (nws > 1 && pos + nws < t->end)
            pos += nws - 1; /* \s+(?!\S): leave one for the next word */
        else if (nws > 0)
            pos += nws;
        else
            pos++;
    emit:
        if (jq_sizevec_push(out, pos - start))
            return -1;
    }
    return 0;
}

/* ---- Llama 3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 * and Qwen2, the same with \p{N} instead of \p{N}{1,3}.
 *
 * Llama 3 is llama.cpp's unicode_regex_split_custom_llama3, step for step.
 * Qwen2 goes through std::regex in llama.cpp; the same steps reproduce it
 * because every branch below is what ECMAScript's first succeeding
 * alternative gives at that position:
 *   - [^\r\n\p{L}\p{N}]?\p{L}+ matches exactly when the first code point is
 *     a letter, or is none of \r \n letter number and is followed by a
 *     letter (backtracking the optional part cannot help otherwise);
 *   - ` ?[^\s\p{L}\p{N}]+[\r\n]*` differs from the step below only for a
 *     lone space at the end of the piece, which \s+(?!\S) takes whole
 *     anyway;
 *   - \s*[\r\n]+ backtracks to end just after the last \r or \n of the
 *     white-space run; \s+(?!\S) gives back one code point unless the run
 *     ends the piece; then \s+;
 *   - every code point is matched by some alternative, so there are no
 *     gaps. */
static int split_llama3(const text_view *t, size_t a, bool digits3,
                        jq_sizevec *out)
{
    size_t pos = a;
    while (pos < t->end) {
        size_t start = pos;
        uint32_t c = t->cp[pos];
        unsigned f = t->fl[pos];
        size_t k = contraction(t, pos, true);
        if (k) {
            pos += k;
            goto emit;
        }
        if (!is_rn(c) && !(f & F_N) &&
            ((f & F_L) || (fl_at(t, pos + 1) & F_L))) {
            pos++;
            while (fl_at(t, pos) & F_L)
                pos++;
            goto emit;
        }
        if (f & F_N) {
            if (!digits3) {
                pos++;
                goto emit;
            }
            /* \p{N}{1,3}, repeatedly: groups of three from the left. */
            size_t ini = pos;
            while (fl_at(t, pos) & F_N) {
                if (++pos - ini >= 3) {
                    if (jq_sizevec_push(out, pos - ini))
                        return -1;
                    ini = pos;
                }
            }
            start = ini;
            if (pos == start)
                continue;
            goto emit;
        }
        unsigned f2 = c == ' ' ? fl_at(t, pos + 1) : f;
        if (!(f2 & (F_S | F_L | F_N)) && f) {
            pos += c == ' ';
            for (unsigned g = fl_at(t, pos); !(g & (F_S | F_L | F_N)) && g;
                 g = fl_at(t, pos))
                pos++;
            while (is_rn(cp_at(t, pos)))
                pos++;
            goto emit;
        }
        size_t nws = 0, last_rn = 0;
        while (fl_at(t, pos + nws) & F_S) {
            if (is_rn(t->cp[pos + nws]))
                last_rn = pos + nws + 1;
            nws++;
        }
        if (last_rn > 0)
            pos = last_rn;
        else if (nws > 1 && pos + nws < t->end)
            pos += nws - 1;
        else if (nws > 0)
            pos += nws;
        else
            pos++;
    emit:
        if (jq_sizevec_push(out, pos - start))
            return -1;
    }
    return 0;
}

/* ---- the std::regex expressions
 *
 * Each has one alternative, so at a position the regex matches exactly
 * what its single pattern matches there; a std::regex_iterator then takes
 * the leftmost match, continues after it, and llama.cpp keeps the gaps. */

typedef enum {
    RE_PUNCT_DEFAULT, /* [\p{P}\$\+<=>\^~\|]+ */
    RE_PUNCT_FALCON,  /* [\p{P}\$\+<=>\^~\|`]+ */
    RE_NUMBERS,       /* \p{N}+ */
    RE_NUMBER,        /* \p{N} */
    RE_DIGITS3,       /* [0-9][0-9][0-9] */
    RE_CRLF,          /* [\r\n] */
    RE_DS_LETTERS,    /* \s?[A-Za-zµÀ-ÖØ-öø-ƺ...]+ (deepseek-llm) */
    RE_DS_PUNCT,      /* \s?[!-/:-~！-／：-～‘-‟　-。]+ */
    RE_WS_END,        /* \s+$ */
    RE_DS_CJK,        /* [一-龥ࠀ-一가-퟿]+ */
    RE_SP_LETTERS,    /* \s?\p{L}+ */
    RE_SP_PUNCT,      /* \s?\p{P}+ */
    RE_BLOOM,         /*  ?[^(\s|.,!?…。，、।۔،)]+ */
    RE_GPT2,          /* the GPT-2 expression: split_gpt2 */
} regex_id;

typedef struct {
    uint32_t lo, hi;
} urange;

static bool in_ranges(const urange *r, size_t n, uint32_t c)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c < r[mid].lo)
            hi = mid;
        else if (c > r[mid].hi)
            lo = mid + 1;
        else
            return true;
    }
    return false;
}

/* deepseek-llm's cased letters, as code point ranges. The expression in
 * llama.cpp's source holds a few compatibility characters (U+1F7D, U+1FBE,
 * U+1FD3, U+1FDB, U+2126, U+212A) that Unicode normalization would turn
 * into their Greek or Latin equivalents; the ranges only make sense (and
 * are ascending) with the originals, which are what is listed here. */
static const urange ds_letters[] = {
    {0x0041, 0x005A}, {0x0061, 0x007A}, {0x00B5, 0x00B5}, {0x00C0, 0x00D6},
    {0x00D8, 0x00F6}, {0x00F8, 0x01BA}, {0x01BC, 0x01BF}, {0x01C4, 0x0293},
    {0x0295, 0x02AF}, {0x0370, 0x0373}, {0x0376, 0x0377}, {0x037B, 0x037D},
    {0x037F, 0x037F}, {0x0386, 0x0386}, {0x0388, 0x038A}, {0x038C, 0x038C},
    {0x038E, 0x03A1}, {0x03A3, 0x03F5}, {0x03F7, 0x0481}, {0x048A, 0x052F},
    {0x0531, 0x0556}, {0x10A0, 0x10C5}, {0x13A0, 0x13F5}, {0x13F8, 0x13FD},
    {0x1C90, 0x1CBA}, {0x1CBD, 0x1CBF}, {0x1D00, 0x1D2B}, {0x1D6B, 0x1D77},
    {0x1D79, 0x1D9A}, {0x1E00, 0x1F15}, {0x1F18, 0x1F1D}, {0x1F20, 0x1F45},
    {0x1F48, 0x1F4D}, {0x1F50, 0x1F57}, {0x1F59, 0x1F59}, {0x1F5B, 0x1F5B},
    {0x1F5D, 0x1F5D}, {0x1F5F, 0x1F7D}, {0x1F80, 0x1FB4}, {0x1FB6, 0x1FBC},
    {0x1FBE, 0x1FBE}, {0x1FC2, 0x1FC4}, {0x1FC6, 0x1FCC}, {0x1FD0, 0x1FD3},
    {0x1FD6, 0x1FDB}, {0x1FE0, 0x1FEC}, {0x1FF2, 0x1FF4}, {0x1FF6, 0x1FFC},
    {0x2102, 0x2102}, {0x2107, 0x2107}, {0x210A, 0x2113}, {0x2115, 0x2115},
    {0x2119, 0x211D}, {0x2124, 0x2124}, {0x2126, 0x2126}, {0x2128, 0x2128},
    {0x212A, 0x212D}, {0x212F, 0x2134}, {0x2139, 0x2139}, {0x213C, 0x213F},
    {0x2145, 0x2149}, {0x214E, 0x214E}, {0x2183, 0x2184}, {0x2C00, 0x2C7B},
    {0x2C7E, 0x2CE4}, {0x2CEB, 0x2CEE}, {0x2CF2, 0x2CF3}, {0xA640, 0xA66D},
    {0xA680, 0xA69B}, {0xA722, 0xA76F}, {0xA771, 0xA787}, {0xA78B, 0xA78E},
    {0xAB70, 0xABBF}, {0xFB00, 0xFB06}, {0xFB13, 0xFB17}, {0xFF21, 0xFF3A},
    {0xFF41, 0xFF5A}, {0x10400, 0x1044F}, {0x104B0, 0x104D3},
    {0x104D8, 0x104FB}, {0x10C80, 0x10CB2}, {0x10CC0, 0x10CF2},
    {0x118A0, 0x118DF}, {0x1E900, 0x1E943},
};

/* !-/ :-~ ！-／ ：-～ ‘-‟ 　-。 (sorted) */
static const urange ds_punct[] = {
    {0x0021, 0x002F}, {0x003A, 0x007E}, {0x2018, 0x201F},
    {0x3000, 0x3002}, {0xFF01, 0xFF0F}, {0xFF1A, 0xFF5E},
};

/* ࠀ-一 一-龥 가-퟿: the first two overlap at U+4E00, hence one range. */
static const urange ds_cjk[] = {
    {0x0800, 0x9FA5}, {0xAC00, 0xD7FF},
};

#define N_OF(a) (sizeof(a) / sizeof *(a))

/* ASCII punctuation that \p{P} covers in llama.cpp's collapsed regex is
 * exactly ASCII class PUNCT, so the class test is enough; the extra
 * symbols are listed. */
static bool punct_default(const text_view *t, size_t pos, bool backtick)
{
    if (t->fl[pos] & F_P)
        return true;
    uint32_t c = t->cp[pos];
    return c == '$' || c == '+' || c == '<' || c == '=' || c == '>' ||
           c == '^' || c == '~' || c == '|' || (backtick && c == '`');
}

/* Set of one character class for the generic run matcher. */
typedef enum {
    CLS_DS_LETTERS,
    CLS_DS_PUNCT,
    CLS_LETTER,
    CLS_PUNCT,
    CLS_BLOOM,
} cls_id;

static bool in_class(const text_view *t, size_t pos, cls_id k)
{
    switch (k) {
    case CLS_DS_LETTERS:
        return in_ranges(ds_letters, N_OF(ds_letters), wide_at(t, pos));
    case CLS_DS_PUNCT:
        return in_ranges(ds_punct, N_OF(ds_punct), wide_at(t, pos));
    case CLS_LETTER:
        return t->fl[pos] & F_L;
    case CLS_PUNCT:
        return t->fl[pos] & F_P;
    case CLS_BLOOM: {
        /* [^(\s|.,!?…。，、।۔،)]: the parentheses and | are literal */
        if (t->fl[pos] & F_S)
            return false;
        uint32_t c = wide_at(t, pos);
        return !(c == '(' || c == '|' || c == '.' || c == ',' || c == '!' ||
                 c == '?' || c == 0x2026 || c == 0x3002 || c == 0xFF0C ||
                 c == 0x3001 || c == 0x0964 || c == 0x06D4 || c == 0x060C ||
                 c == ')');
    }
    }
    return false;
}

static size_t class_run(const text_view *t, size_t pos, cls_id k)
{
    size_t p = pos;
    while (p < t->end && in_class(t, p, k))
        p++;
    return p - pos;
}

/* \s?[class]+ (or " ?[class]+" when only_space): greedy with the optional
 * prefix, and if no class run follows it, the run from pos itself. */
static size_t opt_prefix_run(const text_view *t, size_t pos, cls_id k,
                             bool only_space)
{
    bool pre = only_space ? t->cp[pos] == ' ' : (t->fl[pos] & F_S) != 0;
    if (pre && pos + 1 < t->end) {
        size_t r = class_run(t, pos + 1, k);
        if (r)
            return 1 + r;
    }
    return class_run(t, pos, k);
}

/* Length of the match of re at pos (< end), 0 if none. */
static size_t match_at(const text_view *t, size_t pos, regex_id re)
{
    size_t p = pos;
    switch (re) {
    case RE_PUNCT_DEFAULT:
    case RE_PUNCT_FALCON:
        while (p < t->end && punct_default(t, p, re == RE_PUNCT_FALCON))
            p++;
        return p - pos;
    case RE_NUMBERS:
        while (p < t->end && (t->fl[p] & F_N))
            p++;
        return p - pos;
    case RE_NUMBER:
        return (t->fl[pos] & F_N) ? 1 : 0;
    case RE_DIGITS3:
        for (int i = 0; i < 3; i++, p++)
            if (p >= t->end || t->cp[p] < '0' || t->cp[p] > '9')
                return 0;
        return 3;
    case RE_CRLF:
        return is_rn(t->cp[pos]) ? 1 : 0;
    case RE_DS_LETTERS:
        return opt_prefix_run(t, pos, CLS_DS_LETTERS, false);
    case RE_DS_PUNCT:
        return opt_prefix_run(t, pos, CLS_DS_PUNCT, false);
    case RE_DS_CJK:
        while (p < t->end && !(t->fl[p] & F_S) &&
               in_ranges(ds_cjk, N_OF(ds_cjk), t->cp[p]))
            p++;
        return p - pos;
    case RE_SP_LETTERS:
        return opt_prefix_run(t, pos, CLS_LETTER, false);
    case RE_SP_PUNCT:
        return opt_prefix_run(t, pos, CLS_PUNCT, false);
    case RE_BLOOM:
        return opt_prefix_run(t, pos, CLS_BLOOM, true);
    case RE_WS_END:
    case RE_GPT2:
        break; /* handled by split_piece */
    }
    return 0;
}

/* Splits the piece [a, t->end) by re, appending piece lengths to out. */
static int split_piece(const text_view *t, size_t a, regex_id re,
                       jq_sizevec *out)
{
    if (re == RE_GPT2)
        return split_gpt2(t, a, out);
    if (re == RE_WS_END) {
        /* \s+$: the white space that ends the piece, if any, is the one
         * match (a run that stops earlier can never reach $). */
        size_t s = t->end;
        while (s > a && (t->fl[s - 1] & F_S))
            s--;
        if (s > a && jq_sizevec_push(out, s - a))
            return -1;
        if (s < t->end && jq_sizevec_push(out, t->end - s))
            return -1;
        return 0;
    }
    size_t gap = a, pos = a;
    while (pos < t->end) {
        size_t m = match_at(t, pos, re);
        if (m == 0) {
            pos++;
            continue;
        }
        if (pos > gap && jq_sizevec_push(out, pos - gap))
            return -1;
        if (jq_sizevec_push(out, m))
            return -1;
        pos += m;
        gap = pos;
    }
    if (pos > gap && jq_sizevec_push(out, pos - gap))
        return -1;
    return 0;
}

/* ---- the expression lists (llama.cpp's llm_tokenizer_bpe constructor) */

typedef struct {
    int n;
    regex_id re[6];
} regex_list;

static const regex_list *regexes_of(jq_pre_kind kind)
{
    static const regex_list def = {4, {RE_PUNCT_DEFAULT, RE_GPT2, RE_NUMBERS,
                                       RE_DIGITS3}};
    static const regex_list gpt2 = {1, {RE_GPT2}};
    static const regex_list ds_llm = {6, {RE_CRLF, RE_DS_LETTERS, RE_DS_PUNCT,
                                          RE_WS_END, RE_DS_CJK, RE_NUMBERS}};
    static const regex_list ds_coder = {5, {RE_CRLF, RE_SP_LETTERS,
                                            RE_SP_PUNCT, RE_DS_CJK,
                                            RE_NUMBER}};
    static const regex_list falcon = {3, {RE_PUNCT_FALCON, RE_GPT2,
                                          RE_DIGITS3}};
    static const regex_list starcoder = {2, {RE_NUMBER, RE_GPT2}};
    static const regex_list bloom = {1, {RE_BLOOM}};
    switch (kind) {
    case JQ_PRE_DEFAULT: return &def;
    case JQ_PRE_GPT2: return &gpt2;
    case JQ_PRE_DEEPSEEK_LLM: return &ds_llm;
    case JQ_PRE_DEEPSEEK_CODER: return &ds_coder;
    case JQ_PRE_FALCON: return &falcon;
    case JQ_PRE_STARCODER: return &starcoder;
    case JQ_PRE_BLOOM: return &bloom;
    default: return NULL;
    }
}

static unsigned flags_of(uint32_t cp)
{
    unsigned f = F_IN;
    if (jq_uspace_has(cp))
        return f | F_S; /* white space is \s and nothing else */
    switch (jq_ucat(cp)) {
    case JQ_UCAT_LETTER: f |= F_L; break;
    case JQ_UCAT_NUMBER: f |= F_N; break;
    case JQ_UCAT_PUNCT: f |= F_P; break;
    default: break;
    }
    return f;
}

int jq_pretokenize(jq_pre_kind kind, const uint32_t *cps, size_t n,
                   jq_sizevec *words, jq_sizevec *tmp)
{
    words->n = 0;
    tmp->n = 0;
    if (n == 0)
        return 0;
    uint8_t *fl = malloc(n);
    if (!fl)
        return -1;
    for (size_t i = 0; i < n; i++)
        fl[i] = (uint8_t)flags_of(cps[i]);

    int rc = -1;
    text_view t = {cps, fl, n};
    if (kind == JQ_PRE_LLAMA3 || kind == JQ_PRE_QWEN2) {
        rc = split_llama3(&t, 0, kind == JQ_PRE_LLAMA3, words);
        goto done;
    }
    const regex_list *rl = regexes_of(kind);
    if (!rl)
        goto done;
    /* Each expression re-splits every piece of the previous one; the
     * first starts from the whole text. */
    if (jq_sizevec_push(tmp, n))
        goto done;
    for (int r = 0; r < rl->n; r++) {
        words->n = 0;
        size_t start = 0;
        for (size_t k = 0; k < tmp->n; k++) {
            t.end = start + tmp->v[k];
            if (split_piece(&t, start, rl->re[r], words))
                goto done;
            start = t.end;
        }
        if (r + 1 < rl->n) {
            jq_sizevec sw = *tmp;
            *tmp = *words;
            *words = sw;
        }
    }
    rc = 0;
done:
    free(fl);
    return rc;
}
