#!/usr/bin/env python3
"""Cross-checks judgeq's hand-written pre-tokenizers (engine/tokenizer_pretok.c)
against the original expressions run by Python's `regex` module, on random
strings drawn from a pool of tricky characters (contractions, white space of
every kind, CJK, marks, digits of other scripts, emoji, unassigned and
format characters).

    cc -O2 -std=c17 -D_GNU_SOURCE -Iengine -o build/pretok_dump \
       tools/pretok_dump.c build/lib/libjudgeq-engine.a -lm
    python3 tools/check_pretokenizers.py [SEED] [ROUNDS] [MAXLEN]

Each list of expressions is applied the way llama.cpp's unicode_regex_split
applies it (every expression re-splits each piece, gaps kept), and an
expression without \p{..} sees non-ASCII white space as \v, as llama.cpp's
std::wregex input does. The pool avoids characters whose category changed
after Unicode 15.1, since `regex` may use a newer Unicode. Prints the
mismatches and their count (0 expected).
"""
import regex, random, subprocess, sys
P = subprocess.Popen([sys.argv[4] if len(sys.argv) > 4 else 'build/pretok_dump'], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
def mine(kind, s):
    P.stdin.write("%d %d %s\n" % (kind, len(s), " ".join("%x" % ord(c) for c in s))); P.stdin.flush()
    return [int(x) for x in P.stdout.readline().split()]
WS=set(chr(c) for c in [9,10,11,12,13,32,0x85,0xa0,0x1680]+list(range(0x2000,0x200b))+[0x2028,0x2029,0x202f,0x205f,0x3000])
def split(regs, s):
    wide="".join('\v' if (ord(c)>0x7f and c in WS) else c for c in s)
    pieces=[(0,len(s))]
    for r in regs:
        t = s if "\\p{" in r else wide
        out=[]
        for a,b in pieces:
            last=a
            for m in regex.compile(r).finditer(t, a, b):
                if m.start()>last: out.append((last,m.start()))
                out.append((m.start(),m.end())); last=m.end()
            if last<b: out.append((last,b))
        pieces=out
    return [b-a for a,b in pieces]
GPT2=r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
LL3=r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
QW=LL3.replace(r"\p{N}{1,3}", r"\p{N}")
DS=["[\r\n]", "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-\u1f7dᾀ-ᾴᾶ-ᾼ\u1fbeῂ-ῄῆ-ῌῐ-\u1fd3ῖ-\u1fdbῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤ\u2126ℨ\u212a-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+", "\\s?[!-/:-~！-／：-～‘-‟　-。]+", "\\s+$", "[一-龥ࠀ-一가-퟿]+", "\\p{N}+"]
# jq_pre_kind numbers (tokenizer_internal.h)
KINDS={2:[GPT2],3:[LL3],4:[QW],5:DS,7:[r"[\p{P}\$\+<=>\^~\|`]+",GPT2,"[0-9][0-9][0-9]"],1:[r"[\p{P}\$\+<=>\^~\|]+",GPT2,r"\p{N}+","[0-9][0-9][0-9]"],8:[r"\p{N}",GPT2],6:["[\r\n]",r"\s?\p{L}+",r"\s?\p{P}+","[一-龥ࠀ-一가-퟿]+",r"\p{N}"],9:[r" ?[^(\s|.,!?…。，、।۔،)]+"]}
pool = list("aAbZzsStTdDmMlLrReEvV'' '  \t\n\r\n\r09.,!?()$+<=>^~|`_-/\\\"#@[]{}") + list("éßÄµΩΩKK中文한국어日本ーの。、，！（）…　\u00a0\u2003\u2028\u0085\u0301\u0660١٢€£©®™←→★😀🦙\u200b\u200d\ufeff\u0e01\u0e48ıİſ\u1fbe\u1f7d\u2126\u212a\u00b2\u2160\u3007\x00\x01\x7f\u0378\U000e0001\U0010ffff")
random.seed(int(sys.argv[1]) if len(sys.argv)>1 else 1)
bad=0
for it in range(int(sys.argv[2]) if len(sys.argv)>2 else 20000):
    s="".join(random.choice(pool) for _ in range(random.randint(1,int(sys.argv[3]) if len(sys.argv)>3 else 14)))
    for k,regs in KINDS.items():
        a=mine(k,s); b=split(regs,s)
        if a!=b:
            bad+=1
            if bad<15: print(k, repr(s), a, b)
print("mismatches", bad)
