/* cmd_gen_model.c — `judgeq gen-model`: write a random-weight llama GGUF. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "gen_model.h"
#include "kernels.h"
#include "recall_lang.h"

static const jq_cmd_info gen_info = {
    "gen-model",
    "usage: judgeq gen-model -o FILE [options]\n"
    "\n"
    "Writes a llama-architecture GGUF with random weights and a small\n"
    "SentencePiece vocabulary (standard llama.cpp key and tensor names).\n"
    "The same options and seed always give the same file.\n"
    "\n"
    "  -o, --output FILE   where to write the model\n"
    "      --n-embd N      embedding length (default 64)\n"
    "      --n-layer N     blocks (default 2)\n"
    "      --n-head N      attention heads (default 4)\n"
    "      --n-head-kv N   key/value heads, divides --n-head (default 2)\n"
    "      --n-ff N        feed-forward length (default 128)\n"
    "      --n-vocab N     vocabulary size, at least 260 (default 512)\n"
    "      --vocab V       pieces (default: generic pieces, --n-vocab of them)\n"
    "                      or recall (the recall language of judgeq\n"
    "                      recall-data and eval --task recall-*; its own size)\n"
    "      --ctx N         context length (default 512)\n"
    "      --type T        weight type: f32, f16, bf16, q8_0, q4_0, q4_k,\n"
    "                      q6_k (default f32; k-quants need multiples of 256)\n"
    "      --rope-base F   RoPE frequency base (default 10000)\n"
    "      --arch A        llama (default) or qwen2 (q/k/v biases, NEOX RoPE)\n"
    "      --rope-freqs    add Llama 3.1-style rope_freqs.weight (RoPE scaling)\n"
    "      --rope-linear F linear RoPE scaling by F (rope.scaling.type linear)\n"
    "      --seed S        random seed (default 1)\n"
    "  -h, --help          this help\n"
    "\n"
    "Llama-3.2-1B shape: --n-embd 2048 --n-layer 16 --n-head 32 --n-head-kv 8\n"
    "                    --n-ff 8192 --n-vocab 32000\n",
};

enum {
    OPT_EMBD = 256, OPT_LAYER, OPT_HEAD, OPT_HEAD_KV, OPT_FF, OPT_VOCAB,
    OPT_CTX, OPT_TYPE, OPT_SEED, OPT_ROPE_BASE, OPT_ARCH, OPT_ROPE_FREQS,
    OPT_ROPE_LINEAR, OPT_VOCAB_KIND
};

int jq_cmd_gen_model(int argc, char **argv)
{
    const jq_cmd_info *I = &gen_info;
    static const struct option longopts[] = {
        {"output", required_argument, 0, 'o'},
        {"n-embd", required_argument, 0, OPT_EMBD},
        {"n-layer", required_argument, 0, OPT_LAYER},
        {"n-head", required_argument, 0, OPT_HEAD},
        {"n-head-kv", required_argument, 0, OPT_HEAD_KV},
        {"n-ff", required_argument, 0, OPT_FF},
        {"n-vocab", required_argument, 0, OPT_VOCAB},
        {"vocab", required_argument, 0, OPT_VOCAB_KIND},
        {"ctx", required_argument, 0, OPT_CTX},
        {"type", required_argument, 0, OPT_TYPE},
        {"seed", required_argument, 0, OPT_SEED},
        {"rope-base", required_argument, 0, OPT_ROPE_BASE},
        {"arch", required_argument, 0, OPT_ARCH},
        {"rope-freqs", no_argument, 0, OPT_ROPE_FREQS},
        {"rope-linear", required_argument, 0, OPT_ROPE_LINEAR},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    jq_gen_model_params p = jq_gen_model_defaults();
    const char *out = NULL;
    bool kv_set = false, n_vocab_set = false;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":o:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case OPT_EMBD: p.n_embd = (int32_t)jq_cli_int(I, "--n-embd", optarg, 2, 1 << 18); break;
        case OPT_LAYER: p.n_layer = (int32_t)jq_cli_int(I, "--n-layer", optarg, 1, 1024); break;
        case OPT_HEAD: p.n_head = (int32_t)jq_cli_int(I, "--n-head", optarg, 1, 4096); break;
        case OPT_HEAD_KV:
            p.n_head_kv = (int32_t)jq_cli_int(I, "--n-head-kv", optarg, 1, 4096);
            kv_set = true;
            break;
        case OPT_FF: p.n_ff = (int32_t)jq_cli_int(I, "--n-ff", optarg, 1, 1 << 18); break;
        case OPT_VOCAB:
            p.n_vocab = (int32_t)jq_cli_int(I, "--n-vocab", optarg,
                                            JQ_GEN_MODEL_MIN_VOCAB, 1 << 21);
            n_vocab_set = true;
            break;
        case OPT_VOCAB_KIND:
            if (strcmp(optarg, "pieces") && strcmp(optarg, "recall"))
                jq_cli_usage_error(I, "--vocab must be pieces or recall, got '%s'",
                                   optarg);
            p.recall_vocab = !strcmp(optarg, "recall");
            break;
        case OPT_CTX: p.n_ctx = (int32_t)jq_cli_int(I, "--ctx", optarg, 1, 1 << 24); break;
        case OPT_TYPE: {
            int t = jq_type_from_name(optarg);
            if (t != JQ_TYPE_F32 && t != JQ_TYPE_F16 && t != JQ_TYPE_BF16 &&
                t != JQ_TYPE_Q8_0 && t != JQ_TYPE_Q4_0 && t != JQ_TYPE_Q4_K &&
                t != JQ_TYPE_Q6_K)
                jq_cli_usage_error(I, "--type must be f32, f16, bf16, q8_0, "
                                      "q4_0, q4_k or q6_k, got '%s'",
                                   optarg);
            p.type = (uint32_t)t;
            break;
        }
        case OPT_SEED: p.seed = jq_cli_u64(I, "--seed", optarg); break;
        case OPT_ROPE_BASE:
            p.rope_base = (float)jq_cli_float(I, "--rope-base", optarg, 1, 1e12);
            break;
        case OPT_ARCH:
            if (strcmp(optarg, "llama") && strcmp(optarg, "qwen2"))
                jq_cli_usage_error(I, "--arch must be llama or qwen2, got '%s'",
                                   optarg);
            p.arch = optarg;
            break;
        case OPT_ROPE_FREQS: p.rope_freqs = true; break;
        case OPT_ROPE_LINEAR:
            p.rope_linear = (float)jq_cli_float(I, "--rope-linear", optarg, 1, 1e6);
            break;
        case 'h': jq_cli_help(I);
        default:
            jq_cli_bad_option(I, c, argv);
        }
    }
    if (optind < argc)
        jq_cli_usage_error(I, "unexpected argument '%s'", argv[optind]);
    if (!out)
        jq_cli_usage_error(I, "an output file is required (-o FILE)");
    /* without --n-head-kv, a head count the default does not divide means
     * plain multi-head attention */
    if (p.recall_vocab && n_vocab_set)
        jq_cli_usage_error(I, "--vocab recall sets the vocabulary size; "
                              "leave out --n-vocab");
    if (p.recall_vocab)
        p.n_vocab = jq_recall_n_vocab();
    if (!kv_set && p.n_head % p.n_head_kv)
        p.n_head_kv = p.n_head;
    char err[512];
    if (jq_gen_model_check(&p, err, sizeof err) != 0)
        jq_cli_usage_error(I, "%s", err);
    if (jq_gen_model_write(&p, out, err, sizeof err) != 0)
        jq_cli_fail(I, "%s: %s", out, err);
    return JQ_EXIT_OK;
}
