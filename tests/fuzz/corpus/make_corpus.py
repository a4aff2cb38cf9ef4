#!/usr/bin/env python3
"""Writes the committed seed files of tests/fuzz/corpus/ (run from anywhere;
the output is deterministic, so rerunning it changes nothing).

Seed files end in .seed, not .gguf, so the repository's rule "the only
.gguf files are judgeq's own trained ones, in models/" holds.
The seeds are small and synthetic: GGUF files that use every value type, a
nested array, an alignment key and tensors of several types; a vocabulary
of each tokenizer family; a soft-token file; texts for the tokenizers.
Files made from ../shared (real vocabularies, stories260K) are made at build
time by `make fuzz-seeds` instead, since ../shared is never committed.
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))

# GGUF value types
U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
PACK = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i",
        F32: "<f", BOOL: "<B", U64: "<Q", I64: "<q", F64: "<d"}
# ggml tensor types used here: id -> (block size, bytes per block)
T_F32, T_F16, T_Q8_0, T_BF16 = 0, 1, 8, 30
TTRAITS = {T_F32: (1, 4), T_F16: (1, 2), T_Q8_0: (32, 34), T_BF16: (1, 2)}


def gstr(s):
    b = s if isinstance(s, bytes) else s.encode()
    return struct.pack("<Q", len(b)) + b


def value(t, v):
    if t == STR:
        return gstr(v)
    if t == ARR:
        et, items = v
        out = struct.pack("<IQ", et, len(items))
        return out + b"".join(value(et, x) for x in items)
    return struct.pack(PACK[t], v)


def gguf(kvs, tensors=(), version=3, alignment=32):
    """kvs: [(key, type, value)]; tensors: [(name, type, dims, data)]."""
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs))
    for k, t, v in kvs:
        out += gstr(k) + struct.pack("<I", t) + value(t, v)
    offs, off = [], 0
    for name, tt, dims, data in tensors:
        off = (off + alignment - 1) // alignment * alignment
        offs.append(off)
        off += len(data)
    for (name, tt, dims, data), o in zip(tensors, offs):
        out += gstr(name) + struct.pack("<I", len(dims))
        out += b"".join(struct.pack("<q", d) for d in dims)
        out += struct.pack("<IQ", tt, o)
    if tensors:
        out += b"\0" * (-len(out) % alignment)
        base = len(out)
        for (name, tt, dims, data), o in zip(tensors, offs):
            out += b"\0" * (base + o - len(out)) + data
    return out


def write(target, name, data):
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def f32s(xs):
    return b"".join(struct.pack("<f", x) for x in xs)


# ---- fuzz_gguf: the reader

write("fuzz_gguf", "empty-v3.seed", gguf([]))
write("fuzz_gguf", "empty-v2.seed", gguf([], version=2))

all_kvs = [
    ("general.architecture", STR, "llama"),
    ("general.alignment", U32, 64),
    ("t.u8", U8, 200), ("t.i8", I8, -100), ("t.u16", U16, 60000),
    ("t.i16", I16, -30000), ("t.u32", U32, 4000000000),
    ("t.i32", I32, -2000000000), ("t.f32", F32, 1.5), ("t.bool", BOOL, 1),
    ("t.str", STR, "value"), ("t.u64", U64, 2**64 - 1),
    ("t.i64", I64, -2**63), ("t.f64", F64, 1e300),
    ("t.arr.u8", ARR, (U8, [0, 1, 255])),
    ("t.arr.i32", ARR, (I32, [-1, 0, 2**31 - 1])),
    ("t.arr.f32", ARR, (F32, [0.5, -2.0, 3e38])),
    ("t.arr.f64", ARR, (F64, [1.0, 2.5])),
    ("t.arr.bool", ARR, (BOOL, [0, 1, 1])),
    ("t.arr.i64", ARR, (I64, [-5, 2**40])),
    ("t.arr.str", ARR, (STR, ["a", "", "bc"])),
    ("t.arr.empty", ARR, (U32, [])),
    ("t.arr.nested", ARR, (ARR, [(I16, [1, 2]), (STR, ["x"])])),
]
tensors = [
    ("w.f32", T_F32, [2, 3], f32s(range(6))),
    ("w.f16", T_F16, [4], struct.pack("<4e", 1, 2, 3, 4)),
    ("w.q8_0", T_Q8_0, [32, 1], struct.pack("<e", 0.1) + bytes(range(32))),
    ("w.empty", T_F32, [0, 5], b""),
    ("w.bf16.4d", T_BF16, [1, 1, 1, 2], b"\x80\x3f\x00\x40"),
]
write("fuzz_gguf", "all-types.seed", gguf(all_kvs, tensors, alignment=64))

# Vocabularies: SentencePiece with byte fallback, and byte-level BPE.
spm_tokens = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % b for b in range(256)]
spm_tokens += ["\u2581", "\u2581a", "ab", "\u2581ab", "b", "a", "<x>"]
spm_types = [2, 3, 3] + [6] * 256 + [1] * 6 + [4]
spm_scores = [0.0] * 259 + [-1.0, -2.0, -3.0, -1.5, -4.0, -4.5, 0.0]
spm = [
    ("tokenizer.ggml.model", STR, "llama"),
    ("tokenizer.ggml.tokens", ARR, (STR, spm_tokens)),
    ("tokenizer.ggml.scores", ARR, (F32, spm_scores)),
    ("tokenizer.ggml.token_type", ARR, (I32, spm_types)),
    ("tokenizer.ggml.bos_token_id", U32, 1),
    ("tokenizer.ggml.eos_token_id", U32, 2),
    ("tokenizer.ggml.unknown_token_id", U32, 0),
    ("tokenizer.ggml.add_bos_token", BOOL, 1),
    ("tokenizer.ggml.add_space_prefix", BOOL, 1),
]
write("fuzz_gguf", "vocab-spm.seed", gguf(spm))


def byte_alphabet():
    """GPT-2's printable stand-ins for the 256 bytes."""
    self_ = [c for c in range(256)
             if 0x21 <= c <= 0x7e or 0xa1 <= c <= 0xac or 0xae <= c <= 0xff]
    out, n = {}, 0
    for c in range(256):
        if c in self_:
            out[c] = chr(c)
        else:
            out[c] = chr(256 + n)
            n += 1
    return out


alpha = byte_alphabet()
bpe_tokens = [alpha[b] for b in range(256)]
merges = ["\u0120 t", "h e", "\u0120t he", "i n", "1 2", "\u0120 \u0120"]
bpe_tokens += ["\u0120t", "he", "\u0120the", "in", "12", "\u0120\u0120",
               "<|end|>", "<x>"]
bpe_types = [1] * (len(bpe_tokens) - 2) + [3, 4]
for pre in ("llama-bpe", "qwen2", "gpt-2", "deepseek-llm", "falcon", ""):
    kv = [
        ("tokenizer.ggml.model", STR, "gpt2"),
        ("tokenizer.ggml.tokens", ARR, (STR, bpe_tokens)),
        ("tokenizer.ggml.token_type", ARR, (I32, bpe_types)),
        ("tokenizer.ggml.merges", ARR, (STR, merges)),
        ("tokenizer.ggml.bos_token_id", U32, len(bpe_tokens) - 2),
        ("tokenizer.ggml.eos_token_id", U32, len(bpe_tokens) - 2),
    ]
    if pre:
        kv.insert(1, ("tokenizer.ggml.pre", STR, pre))
    write("fuzz_gguf", "vocab-bpe-%s.seed" % (pre or "nopre"), gguf(kv))

# ---- fuzz_soft_tokens: a soft-token file for a made-up model (loads
# without a model; the seeds made by make fuzz match stories260K)

n, n_embd = 2, 4
soft = [
    ("general.architecture", STR, "judgeq-soft-tokens"),
    ("judgeq.soft.format_version", U32, 1),
    ("judgeq.soft.n_tokens", U32, n),
    ("judgeq.soft.model_architecture", STR, "llama"),
    ("judgeq.soft.model_n_embd", U32, n_embd),
    ("judgeq.soft.model_n_layer", U32, 2),
    ("judgeq.soft.model_token_embd_hash", STR, "0123456789abcdef"),
    ("judgeq.soft.init", STR, "random-tokens"),
    ("judgeq.soft.seed", U64, 7),
    ("judgeq.soft.init_token_ids", ARR, (I32, [5, 9])),
    ("judgeq.soft.trained_steps", U64, 100),
]
soft_t = [("judgeq.soft_tokens", T_F32, [n_embd, n],
           f32s([0.25 * i - 1 for i in range(n * n_embd)]))]
write("fuzz_soft_tokens", "soft-2x4.seed", gguf(soft, soft_t))
write("fuzz_soft_tokens", "soft-2x4-minimal.seed",
      gguf(soft[:7], soft_t))

# ---- fuzz_tokenizer: texts

texts = {
    "ascii.txt": b"Hello world! The quick brown fox, 3.14159 and 2718.",
    "spaces.txt": b"  two  leading\tand\ttabs\n\nnewlines\r\n trailing   ",
    "utf8.txt": "Äpfel Straße naïve café Русский 中文字符 日本語 "
                "\U0001f999\U0001f680 ខ្មែរ".encode(),
    "invalid.txt": b"abc\xff\xfe def \xc3 \xe2\x82 \xed\xa0\x80 \xc0\xaf "
                   b"\xf8\x88\x80\x80\x80 \xf4\x90\x80\x80 \x80\x80",
    "specials.txt": b"<s></s><unk><|endoftext|><|begin_of_text|>"
                    b"<tool_call></tool_call><x>[PAD100016]",
    "contractions.txt": b"I'll you've she's we're they'd IT'S don't 's 'll",
    "digits.txt": b"1 12 123 1234 12345 123456789 3,141,592 \xd9\xa3\xd9\xa4",
    "nul.txt": b"nul\x00byte\x00\x00",
    "escape.txt": "\u2581already\u2581escaped \u2581".encode(),
    "code.txt": b"int main(void) {\n\treturn a->b[i] >> 2 != 0x7f;\n}\n",
}
for name, data in texts.items():
    write("fuzz_tokenizer", name, data)

# ---- fuzz_daemon_frame: requests (judgeq.proto), each as a bare payload,
# and all of them as one framed stream (4-byte little-endian lengths)


def varint(v):
    v &= (1 << 64) - 1
    out = b""
    while True:
        b = v & 0x7f
        v >>= 7
        if v:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def fv(num, v):  # varint field
    return varint(num << 3) + varint(v)


def fb(num, b):  # length-delimited field
    b = b if isinstance(b, bytes) else b.encode()
    return varint(num << 3 | 2) + varint(len(b)) + b


def ff(num, x):  # fixed32 float field
    return varint(num << 3 | 5) + struct.pack("<f", x)


def packed(num, xs):
    return fb(num, b"".join(varint(x) for x in xs))


def request(rid, body_field, body):
    return fv(1, rid) + fb(body_field, body)


eviction = (fv(1, 3) + fv(2, 64) + fv(3, 8) + fv(4, 4) + fv(5, 7) + fv(6, 1))
requests = {
    "hello": request(1, 10, fv(1, 1) + fb(2, "fuzz")),
    "create_session": request(2, 11, fv(1, 256) + fv(2, 1) + fv(3, 1)),
    "prefill_tokens": request(3, 12, fv(1, 1) + packed(2, [1, 2, 3, 511]) +
                              fb(5, eviction) + fv(6, 16)),
    "prefill_text_judgeq": request(4, 12, fv(1, 1) + fb(3, "Hello world") +
                                   fv(4, 0) +
                                   fb(5, fv(1, 6) + fv(2, 64) + fv(3, 16))),
    # refused: the daemon opens no client path without --allow-path
    "prefill_soft_path": request(4, 12, fv(1, 1) + packed(2, [1, 2]) +
                                 fb(5, fv(1, 6) + fv(2, 64) + fv(3, 16) +
                                    fb(7, "/tmp/soft.gguf"))),
    "prefill_h2o": request(5, 12, fv(1, 1) + packed(2, [5] * 20) +
                           fb(5, fv(1, 2) + fv(2, 16) + fv(3, 4))),
    "generate": request(6, 13, fv(1, 1) + fv(2, 8) +
                        fb(3, ff(1, 0.5) + fv(2, 10) + ff(3, 0.9) +
                           fv(4, 3)) +
                        packed(4, [2, 7]) + fv(5, 1)),
    "fork": request(7, 14, fv(1, 1)),
    "export_kv": request(8, 15, fv(1, 1)),
    "tokenize": request(9, 16, fb(1, "Hello <s> world") + fv(2, 0)),
    "detokenize": request(10, 17, packed(1, [1, 100, 511])),
    "stats": request(11, 18, b""),
    "close_session": request(12, 19, fv(1, 1)),
    "ping": request(13, 20, fv(1, 0xfeedface)),
    "bad_token": request(14, 17, packed(1, [-1, 512])),
    "no_body": fv(1, 15),
}
stream = b""
for name, payload in requests.items():
    write("fuzz_daemon_frame", name + ".pb", payload)
    stream += struct.pack("<I", len(payload)) + payload
write("fuzz_daemon_frame", "stream.bin", stream)
write("fuzz_daemon_frame", "stream_too_large.bin",
      struct.pack("<I", 1 << 20) + b"\0" * 16)

# ---- fuzz_train_jsonl: data files for `judgeq train --data`

jsonl = {
    "prompts.jsonl": b'{"prompt": "Once upon a time"}\n'
                     b'{"prompt": "The cat sat", "response": " on the mat"}\n'
                     b'\n   \n'
                     b'{"prompt": "Lily had a ball.", "response": null}\r\n',
    "bad_lines.jsonl": b'{"prompt": "ok"}\n'
                       b'not json\n'
                       b'[1, 2]\n'
                       b'{"prompt": 5}\n'
                       b'{"prompt": "x", "response": 7}\n'
                       b'{"prompt": ""}\n'
                       b'{"response": "no prompt"}\n',
    "escapes.jsonl": '{"prompt": "tab\\t nl\\n \\u00e9 \\ud83e\\udd99 '
                     '\\u0000 end", "response": "\u00c4pfel"}\n'
                     '{"prompt": "tab\\t \\u00e9 \\ud83e\\udd99 \\"q\\" \\\\", '
                     '"response": "\u00c4pfel"}\n'.encode(),
    "long_prompt.jsonl": b'{"prompt": "' + b"word " * 60 + b'"}\n',
    "no_newline.jsonl": b'{"prompt": "last line without a newline"}',
}
for name, data in jsonl.items():
    write("fuzz_train_jsonl", name, data)
