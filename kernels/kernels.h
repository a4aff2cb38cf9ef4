/* kernels.h — judgeq's numeric primitives.
 *
 * Every kernel here has a portable scalar reference (jq_ref_*) that is the
 * specification, and an AVX-512 path (jq_avx512_*) that must agree with it.
 * The public entry points (jq_*) dispatch to one or the other according to
 * the ISA chosen once by jq_kernels_init(): AVX-512 when the CPU and the OS
 * support it (CPUID + XGETBV), unless JUDGEQ_ISA=scalar forces the reference
 * everywhere.
 *
 * Nothing in kernels/ does I/O or creates threads. Work that callers split
 * across threads is expressed as row ranges [r0, r1).
 *
 * Layout conventions (the same as ggml/GGUF):
 *   a weight matrix with GGUF shape [ne0 = cols, ne1 = rows] is stored row
 *   major, each row holding `cols` elements of its type (quantized types in
 *   blocks along the row). A matrix-vector product is y[r] = dot(W[r,:], x).
 *   Activations are F32 and row major: X (M x K) has row i at X + i*K.
 */
#ifndef JQ_KERNELS_H
#define JQ_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------------ ISA */

typedef enum {
    JQ_ISA_SCALAR = 0,
    JQ_ISA_AVX512 = 1, /* F, BW, VL, DQ (+ BF16 and VNNI where they help) */
} jq_isa;

/* Detects the ISA once (thread-safe, idempotent) and returns the one in use.
 * JUDGEQ_ISA=scalar forces the reference; JUDGEQ_ISA=avx512 on a CPU without
 * it falls back to scalar (jq_kernels_isa() tells). */
jq_isa jq_kernels_init(void);
jq_isa jq_kernels_isa(void);
/* True when this CPU + OS can run the AVX-512 paths (tests use it to decide
 * whether the jq_avx512_* functions may be called directly). */
bool jq_cpu_has_avx512(void);
/* Forces an ISA (tests only; AVX-512 is refused when unsupported). Returns
 * the ISA now in effect. */
jq_isa jq_kernels_force_isa(jq_isa isa);
const char *jq_isa_name(jq_isa isa);

/* ---------------------------------------------------------------- types */

/* ggml type ids, as stored in GGUF tensor infos. */
enum jq_type {
    JQ_TYPE_F32 = 0,
    JQ_TYPE_F16 = 1,
    JQ_TYPE_Q4_0 = 2,
    JQ_TYPE_Q4_1 = 3,
    JQ_TYPE_Q5_0 = 6,
    JQ_TYPE_Q5_1 = 7,
    JQ_TYPE_Q8_0 = 8,
    JQ_TYPE_Q8_1 = 9,
    JQ_TYPE_Q2_K = 10,
    JQ_TYPE_Q3_K = 11,
    JQ_TYPE_Q4_K = 12,
    JQ_TYPE_Q5_K = 13,
    JQ_TYPE_Q6_K = 14,
    JQ_TYPE_Q8_K = 15,
    JQ_TYPE_IQ2_XXS = 16,
    JQ_TYPE_IQ2_XS = 17,
    JQ_TYPE_IQ3_XXS = 18,
    JQ_TYPE_IQ1_S = 19,
    JQ_TYPE_IQ4_NL = 20,
    JQ_TYPE_IQ3_S = 21,
    JQ_TYPE_IQ2_S = 22,
    JQ_TYPE_IQ4_XS = 23,
    JQ_TYPE_I8 = 24,
    JQ_TYPE_I16 = 25,
    JQ_TYPE_I32 = 26,
    JQ_TYPE_I64 = 27,
    JQ_TYPE_F64 = 28,
    JQ_TYPE_IQ1_M = 29,
    JQ_TYPE_BF16 = 30,
    JQ_TYPE_TQ1_0 = 34,
    JQ_TYPE_TQ2_0 = 35,
    JQ_TYPE_COUNT_ = 40 /* upper bound for tables, not a type */
};

typedef struct {
    const char *name;   /* "f32", "q8_0", ... */
    uint32_t block_size; /* elements per block (1 for plain types) */
    uint32_t type_size;  /* bytes per block */
    bool compute;        /* judgeq's kernels can compute with it */
} jq_type_traits;

/* NULL for an id that is not a known ggml type. Known-but-not-computable
 * types (e.g. Q4_K before its kernels exist) have compute == false, so a
 * GGUF reader can still size their tensors and a model loader can name them
 * in its error. */
const jq_type_traits *jq_type_traits_get(uint32_t type);
/* Bytes of a row of n elements; 0 when n is not a multiple of the block size
 * or the type is unknown (callers treat 0 as an error). */
size_t jq_row_bytes(uint32_t type, int64_t n);
/* Type id by name ("f32", "f16", "bf16", "q8_0", ...); -1 when unknown. */
int jq_type_from_name(const char *name);

/* Q8_0: 32 int8 weights sharing one f16 scale (GGUF block layout). */
#define JQ_QK8_0 32
typedef struct {
    uint16_t d;          /* f16 scale */
    int8_t qs[JQ_QK8_0]; /* quants */
} jq_block_q8_0;
_Static_assert(sizeof(jq_block_q8_0) == 34, "q8_0 block is 34 bytes in GGUF");

/* Q4_0: 32 weights (q - 8) * d with 4-bit q. qs[j] holds element j in its
 * low nibble and element j + 16 in its high nibble. */
#define JQ_QK4_0 32
typedef struct {
    uint16_t d;              /* f16 scale */
    uint8_t qs[JQ_QK4_0 / 2]; /* nibbles */
} jq_block_q4_0;
_Static_assert(sizeof(jq_block_q4_0) == 18, "q4_0 block is 18 bytes in GGUF");

/* K-quants: super-blocks of 256 weights. */
#define JQ_QK_K 256

/* Q4_K: 8 sub-blocks of 32; weight = d * sc[j] * q - dmin * m[j], q 4-bit,
 * sc and m 6-bit, packed in `scales` (sub-blocks 0-3: low 6 bits of bytes
 * 0-3 / 4-7; sub-blocks 4-7: a nibble of bytes 8-11 plus the top 2 bits of
 * bytes 0-3 / 4-7). qs[32 c + l]: low nibble = element 64 c + l, high
 * nibble = element 64 c + 32 + l. */
typedef struct {
    uint16_t d;                /* f16 scale of the scales */
    uint16_t dmin;             /* f16 scale of the mins */
    uint8_t scales[12];        /* 6-bit scales and mins */
    uint8_t qs[JQ_QK_K / 2];   /* nibbles */
} jq_block_q4_K;
_Static_assert(sizeof(jq_block_q4_K) == 144, "q4_K block is 144 bytes in GGUF");

/* Q6_K: 16 sub-blocks of 16; weight = d * scales[j] * (q - 32), q 6-bit:
 * the low 4 bits in ql, the high 2 in qh. Per half h (128 elements,
 * ql + 64 h, qh + 32 h), for l < 32: element l = ql[l] & 15 | (qh[l] & 3)
 * << 4; 32 + l = ql[32 + l] & 15 | (qh[l] >> 2 & 3) << 4; 64 + l = ql[l] >>
 * 4 | (qh[l] >> 4 & 3) << 4; 96 + l = ql[32 + l] >> 4 | (qh[l] >> 6) << 4. */
typedef struct {
    uint8_t ql[JQ_QK_K / 2];     /* low 4 bits */
    uint8_t qh[JQ_QK_K / 4];     /* high 2 bits */
    int8_t scales[JQ_QK_K / 16]; /* 8-bit sub-block scales */
    uint16_t d;                  /* f16 super-block scale */
} jq_block_q6_K;
_Static_assert(sizeof(jq_block_q6_K) == 210, "q6_K block is 210 bytes in GGUF");

/* Half precision conversions (round to nearest even, as ggml). */
float jq_f16_to_f32(uint16_t h);
uint16_t jq_f32_to_f16(float f);
float jq_bf16_to_f32(uint16_t h);
uint16_t jq_f32_to_bf16(float f); /* round to nearest even; NaN stays NaN */

/* Converts n elements of a row of `type` to F32 (n a multiple of the block
 * size). Supported for every type with compute == true. */
void jq_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n);
/* F32 -> type, for F32, F16, BF16, Q8_0 (Q8_0 as ggml: d = amax/127,
 * q = round(x/d)), Q4_0 (as ggml's quantize_row_q4_0_ref) and the
 * K-quants Q4_K and Q6_K (kernels/quant.c: simpler than ggml's searched
 * scales, so a little less accurate; the error is documented there). */
void jq_quantize_row(uint32_t type, const float *src, void *dst, int64_t n);

/* ------------------------------------------------------ dot and matvec */

float jq_dot_f32(const float *a, const float *b, int64_t n);

/* y[r] = dot(W row r, x) for r in [r0, r1) (y indexed by absolute row). W has rows of
 * `cols` elements of `type` (F32, F16, BF16, Q8_0); accumulation in F32.
 * For Q8_0, x is used in F32 (the reference dequantizes W on the fly). */
void jq_matvec(uint32_t type, const void *W, int64_t cols, const float *x,
               float *y, int64_t r0, int64_t r1);

/* ------------------------------------- products with a quantized activation
 *
 * Decode and prefill for the integer weight types (Q8_0, Q4_0, Q4_K, Q6_K)
 * do not convert weights to F32: the activation is quantized to int8 once
 * and the kernels multiply int8 by int8 with VNNI (vpdpbusd), 64 products
 * per instruction, so decode streams the weights at memory bandwidth
 * instead of being bound by int->float conversions.
 *
 * The activation format depends only on the weight type's activation kind:
 *   JQ_ACT_F32  (F32, F16, BF16): the F32 row itself (4 K bytes); the
 *               products are jq_matvec / jq_gemm.
 *   JQ_ACT_Q8   (Q8_0, Q4_0, Q4_K, Q6_K): K a multiple of 32; per 32-block
 *               b of x: d[b] = amax/127 (float), q = round(x/d) (ties away
 *               from zero, |q| <= 127), plus the block sums the kernels
 *               need for the weights' offsets and mins. Opaque layout of
 *               jq_act_row_bytes(type, K) bytes (a multiple of 64).
 * Matrices whose types have the same kind can share one quantized row (the
 * q/k/v projections of a Q4_K_M layer are Q4_K and Q6_K: both JQ_ACT_Q8).
 *
 * How the engine calls it, per linear layer group with input x (M rows):
 *   size_t rb = jq_act_row_bytes(W->type, K);       // once per shape
 *   buffer xq of M * rb bytes, 64-byte aligned (aligned_alloc(64, ...))
 *   for each row i (may be split across threads by rows):
 *       jq_quantize_act(W->type, X + i * K, K, xq + i * rb);
 *   then (after a barrier), per thread, as today:
 *       M == 1: jq_matvec_q(W->type, W->data, K, xq, y, r0, r1);
 *       M > 1:  jq_gemm_q(W->type, W->data, K, xq, M, Y, ldy, n0, n1,
 *                         thread_scratch);  // jq_gemm_q_scratch_bytes(K)
 * For JQ_ACT_F32 types the same calls work (they copy x and forward to
 * jq_matvec / jq_gemm), so the engine needs no per-type branch. */
typedef enum { JQ_ACT_F32 = 0, JQ_ACT_Q8 = 1 } jq_act_kind;

jq_act_kind jq_act_kind_of(uint32_t type);
/* Bytes of one quantized activation row of K elements for weights of
 * `type` (0 when K does not suit the type: not a multiple of 32 for Q8). */
size_t jq_act_row_bytes(uint32_t type, int64_t K);
/* x (K floats) -> xq (jq_act_row_bytes bytes, at least 4-byte aligned;
 * 64-byte alignment keeps every 64-byte load in one cache line). Both ISA
 * paths produce identical bytes. */
void jq_quantize_act(uint32_t type, const float *x, int64_t K, void *xq);
/* y[r] = dot(W row r, x) for r in [r0, r1), x given as jq_quantize_act
 * made it for this type. For JQ_ACT_Q8 the result is the exact integer dot
 * product of each block scaled in F32 (reference: kernels/quant.c); it
 * differs from jq_matvec on the F32 x by the activation's quantization
 * error: NMSE about 3e-5 (RMS 0.6%) on Gaussian data, the same as Q8_0
 * weights add (tests/test_kernels_quant.c). */
void jq_matvec_q(uint32_t type, const void *W, int64_t cols, const void *xq,
                 float *y, int64_t r0, int64_t r1);
/* Y[i][n] = jq_matvec_q's dot of W row n with Xq row i, for i < M and n in
 * [n0, n1); Xq rows are jq_act_row_bytes apart. scratch: at least
 * jq_gemm_q_scratch_bytes(type, K) bytes, 64-byte aligned, per thread
 * (never more than JQ_GEMM_PANEL * K floats, the engine's jq_gemm
 * scratch). Threads may call it at once on disjoint [n0, n1). */
void jq_gemm_q(uint32_t type, const void *W, int64_t K, const void *Xq,
               int64_t M, float *Y, int64_t ldy, int64_t n0, int64_t n1,
               void *scratch);
size_t jq_gemm_q_scratch_bytes(uint32_t type, int64_t K);

/* --------------------------------------------------------------- GEMM */

/* Y[M x N] (row stride ldy) gets X[M x K] . W^T for the output columns
 * (= weight rows) [n0, n1): Y[i][n] = dot(X[i,:], W[n,:]). W as in
 * jq_matvec (rows of K elements of `type`). scratch: at least
 * JQ_GEMM_PANEL * K floats (64-byte alignment helps). On the AVX-512 path F16 and
 * BF16 weights use jq_avx512_gemm_half (exact weights, F32 FMAs: differs
 * from jq_ref_gemm by summation order only; the result of an element does
 * not depend on M or on [n0, n1)). Otherwise F32 weights go straight to
 * cblas_sgemm and other types are dequantized JQ_GEMM_PANEL rows at a time
 * into `scratch` and multiplied by sgemm. OpenBLAS is used single-threaded
 * per call; callers parallelise over disjoint [n0, n1) ranges, and several
 * threads may call at once. */
#define JQ_GEMM_PANEL 64
void jq_gemm(uint32_t type, const void *W, int64_t K, const float *X,
             int64_t M, float *Y, int64_t ldy, int64_t n0, int64_t n1,
             float *scratch);
/* jq_gemm's OpenBLAS path for every type (what it does for all but F16
 * and BF16 on AVX-512): kept callable for bench/kernel_bench.c. */
void jq_gemm_blas(uint32_t type, const void *W, int64_t K, const float *X,
                  int64_t M, float *Y, int64_t ldy, int64_t n0, int64_t n1,
                  float *scratch);

/* ------------------------------------------------ element-wise and norms */

/* out[i] = x[i] / sqrt(mean(x^2) + eps) * w[i]; out may alias x. */
void jq_rmsnorm(float *out, const float *x, const float *w, int64_t n,
                float eps);
/* In place softmax over n (max subtracted first); n == 0 is a no-op. */
void jq_softmax(float *x, int64_t n);
/* out[i] = silu(gate[i]) * up[i]; out may alias gate or up. */
void jq_silu_mul(float *out, const float *gate, const float *up, int64_t n);
/* y[i] += x[i] */
void jq_add(float *y, const float *x, int64_t n);

/* RoPE on one vector of n_heads heads of head_dim floats each (contiguous),
 * at position pos. The first rope_dim dims of each head rotate (rope_dim
 * even, <= head_dim), the rest pass through. theta_i = pos * base^(-2i/rope_dim).
 * neox == false: pairs (x[2i], x[2i+1]) (llama.cpp rope type NORM, llama).
 * neox == true: pairs (x[i], x[i + rope_dim/2]) (NEOX: qwen2, gpt-neox).
 * freq_factors (NULL or rope_dim/2 floats) divide theta_i (Llama 3 scaling). */
void jq_rope(float *x, int n_heads, int head_dim, int rope_dim, int32_t pos,
             float freq_base, const float *freq_factors, bool neox);

/* ------------------------------------------------------------ attention */

/* Attention of n_q query vectors (rows of q, stride ldq) over n_kv keys and
 * values (rows of K and V, stride ldk / ldv, each head_dim floats). Query row
 * i sees keys [0, kv_visible(i)) where kv_visible(i) = min(n_kv, causal_base
 * + i + 1), causal_base = the number of keys the first row sees minus one;
 * pass causal_base = n_kv - 1 with n_q = 1 for decode (sees everything).
 * out row i (stride ldo, head_dim floats) = softmax(q_i . K^T * scale) V.
 * scratch: at least n_kv floats. */
void jq_attention(const float *q, int64_t ldq, int64_t n_q, const float *K,
                  int64_t ldk, const float *V, int64_t ldv, int64_t n_kv,
                  int head_dim, float scale, int64_t causal_base, float *out,
                  int64_t ldo, float *scratch);

/* The general form: K/V rows of F32 or F16 (kv_type), and optional
 * scoring of attention probabilities for KV eviction. jq_attention is this
 * with F32 K/V and score == NULL.
 *
 * Row i of q (i in [0, n_q), counted within this call) sees keys
 * [0, min(n_kv, causal_base + i + 1)) as above. When score != NULL, every
 * row i in [score_row0, score_row1) (clipped to [0, n_q); an empty or
 * inverted range scores nothing) adds its softmax probabilities of keys
 * [0, n_score) into score[0..n_score): the probabilities over all the keys
 * the row sees, not renormalised over the scored ones, so a row that sees
 * only scored keys adds 1 in total. score[j] for a key j the row does not
 * see is left unchanged (adds 0); so is all of score[] for a row that sees
 * no key. This is how observer queries (SnapKV's window, H2O's whole
 * prompt, Judge Q's soft tokens appended after the prompt) measure the
 * prompt's keys without an L x L matrix. Rows are processed in ascending
 * order and each score[j] is a plain float sum over them in that order, so
 * the sums are reproducible run to run (the two paths' probabilities agree
 * to ~1e-7 relative, not bit for bit). Scoring does not change out.
 *
 * Strides are in elements of the array's type (ldk, ldv of kv_type; ldq,
 * ldo of float). out row i may alias q row i (all of a row's scores are
 * computed before its output is written); score must not alias anything
 * else. Any kv_type other than F32 or F16 aborts. */
typedef struct {
    const float *q;      /* n_q rows, stride ldq floats */
    int64_t ldq, n_q;
    uint32_t kv_type;    /* JQ_TYPE_F32 or JQ_TYPE_F16 */
    const void *k;       /* n_kv rows, stride ldk elements of kv_type */
    const void *v;       /* n_kv rows, stride ldv elements */
    int64_t ldk, ldv, n_kv;
    int head_dim;
    float scale;
    int64_t causal_base;
    float *out;          /* n_q rows, stride ldo floats */
    int64_t ldo;
    float *scratch;      /* at least n_kv floats */
    float *score;        /* NULL, or n_score floats accumulated into */
    int64_t score_row0, score_row1, n_score;
    /* Optional first segment (a prefix shared between sessions): keys and
     * values [0, n_kv0) are rows of k0/v0 (strides ldk/ldv, kv_type), and
     * keys [n_kv0, n_kv) are rows 0 .. n_kv - n_kv0 - 1 of k/v. Key indices
     * (causal rule, scoring) count over both segments. k0 = NULL or
     * n_kv0 = 0: a single segment. Results (out and score) are
     * bit-identical, on each path, to the same keys in one array; with k0
     * set, n_kv0 outside [0, n_kv] aborts. */
    const void *k0, *v0;
    int64_t n_kv0;
} jq_attn_args;

void jq_attention_ex(const jq_attn_args *a);
void jq_ref_attention_ex(const jq_attn_args *a);
void jq_avx512_attention_ex(const jq_attn_args *a);

/* out[j] = max of x over [j - r, j + r] clipped to [0, n), r = (k-1)/2 (a
 * 1-D max-pool with stride 1 whose padding never wins); k == 1 copies
 * (NaNs aside, see below), and k >= 2n - 1 gives every out[j] the maximum
 * of all of x. k must be odd and >= 1 (asserted). The order is the float
 * order with +0 above -0 and NaN below everything: NaNs are ignored, and a
 * window holding only NaNs gives the default quiet NaN (bits 0x7fc00000).
 * Both paths return bit-identical results. out must not alias x; n == 0 is
 * a no-op. */
void jq_maxpool1d(const float *x, float *out, int64_t n, int k);
void jq_ref_maxpool1d(const float *x, float *out, int64_t n, int k);
void jq_avx512_maxpool1d(const float *x, float *out, int64_t n, int k);

/* ------------------------------------------------------------- top-k */

/* Writes the indices of the k largest of scores[0..n) to idx, ordered by
 * descending score, ties broken by the lower index. k is clamped to n;
 * returns the number written. NaN scores rank below everything. */
int64_t jq_topk(const float *scores, int64_t n, int64_t k, int32_t *idx);

/* ------------------------------------------------------------ backward
 * Gradients with respect to inputs only (the soft-token trainer keeps the
 * model frozen: no weight gradients). Each has a scalar reference jq_ref_*
 * and an AVX-512 twin jq_avx512_*, dispatched like the forward kernels.
 * Each differentiates the forward kernel as implemented (e.g. RMSNorm's
 * float scale, the RoPE angle table, jq_attention_ex's causal rule);
 * tests/test_kernels_backward.c checks them against finite differences. */

/* y = x / sqrt(mean(x^2) + eps) * w  ->  dx (written, not accumulated).
 * dx may alias x or dy. */
void jq_rmsnorm_backward(float *dx, const float *x, const float *w,
                         const float *dy, int64_t n, float eps);
/* The transpose of jq_rope (a rotation by -theta), in place on dx, same
 * arguments as jq_rope. */
void jq_rope_backward(float *dx, int n_heads, int head_dim, int rope_dim,
                      int32_t pos, float freq_base, const float *freq_factors,
                      bool neox);
/* p = softmax(s): ds = p * (dp - sum_j p_j dp_j) (written; the sum in
 * double). ds may alias p or dp. */
void jq_softmax_backward(float *ds, const float *p, const float *dp,
                         int64_t n);
/* out = silu(gate) * up: dgate, dup (written). Element i of every input is
 * read before element i of either output is written, so dgate and dup may
 * each alias gate, up or dout (but not each other). */
void jq_silu_mul_backward(float *dgate, float *dup, const float *gate,
                          const float *up, const float *dout, int64_t n);
/* The input gradient of Y = X W^T: dX[i][c] += sum over weight rows r in
 * [r0, r1) of dY[i][r] * W[r][c], for i < M. W as in jq_matvec (rows of K
 * = cols elements of type F32, F16, BF16 or Q8_0; K a multiple of the
 * block size); dY rows have stride ldy (dY[i][r] at dY + i*ldy + r, r the
 * absolute weight row), dX rows stride ldx (K floats used). Each dX
 * element is a float sum over r in ascending order. Threads split
 * [r0, r1) and reduce their private dX. scratch: K floats (the reference
 * dequantizes a row into it; the AVX-512 path does not use it). */
void jq_matmul_backward_x(uint32_t type, const void *W, int64_t K,
                          const float *dY, int64_t ldy, int64_t M, float *dX,
                          int64_t ldx, int64_t r0, int64_t r1, float *scratch);

/* Backward of jq_attention_ex for F32 K/V (one head, n_q query rows, one
 * segment: prompt and soft keys in the same k/v arrays): given the saved
 * probabilities p (n_q rows of stride ldp: row i holds the softmax over its
 * visible keys, zero elsewhere; only its visible keys are read) and the
 * gradient of the output rows dout, plus an optional direct gradient on
 * the probabilities dp_extra (NULL, or row i at dp_extra + i*ldpe, keys
 * [0, n_pe): the trainer's loss acts on attention probabilities
 * themselves), computes for each row i with keys [0, nv_i) visible
 * (jq_attention_ex's causal rule):
 *   dp_ij = dout_i . v_j + dp_extra_ij,  ds_i = softmax_backward(p_i, dp_i),
 *   dq_i  = scale * sum_j ds_ij k_j            (written, stride ldq_out;
 *                                               zeros for a row seeing no key)
 *   dk_j += scale * sum_i ds_ij q_i  for keys j >= kgrad0 (dk row j-kgrad0)
 *   dv_j += sum_i p_ij dout_i        for keys j >= kgrad0 (dv row j-kgrad0)
 * Keys a row does not see (p = 0) get nothing from it; dp_extra for them is
 * ignored. dk/dv (n_kv - kgrad0 rows, strides lddk / lddv) are accumulated,
 * so several heads sharing a KV head (GQA) add into the same rows; NULL
 * skips them (the prompt's keys are constants to the trainer). dq must not
 * alias any input. scratch: at least n_kv floats. */
typedef struct {
    const float *q;
    int64_t ldq, n_q;
    const float *k, *v;
    int64_t ldk, ldv, n_kv;
    int head_dim;
    float scale;
    int64_t causal_base;
    const float *p;
    int64_t ldp;
    const float *dout;
    int64_t lddo;
    const float *dp_extra;
    int64_t ldpe, n_pe;
    float *dq;
    int64_t ldq_out;
    float *dk, *dv;
    int64_t lddk, lddv, kgrad0;
    float *scratch;
} jq_attn_bwd_args;
void jq_attention_backward(const jq_attn_bwd_args *a);

/* Rows of blockwise causal attention for training (kernels/
 * attention_train.c): the pretrainer's attention is GEMMs over blocks of
 * query rows, with these in between, so no L x L matrix exists at once.
 * jq_softmax_lse: s[0..n) <- softmax(scale * s) in place; returns the
 * row's log-sum-exp log(sum_j exp(scale * s_j)) (-inf for n == 0), which
 * is all backward needs to recompute the probabilities.
 * jq_softmax_lse_backward: from the raw scores s, that lse, dp_j = dout .
 * v_j and d = dout . out of the row: s <- p = exp(scale * s - lse) and
 * dp <- ds = p * (dp - d) (the softmax backward; scale is left to the
 * caller's GEMMs). */
float jq_softmax_lse(float *s, int64_t n, float scale);
void jq_softmax_lse_backward(float *s, float *dp, int64_t n, float scale,
                             float lse, float d);
float jq_ref_softmax_lse(float *s, int64_t n, float scale);
float jq_avx512_softmax_lse(float *s, int64_t n, float scale);
void jq_ref_softmax_lse_backward(float *s, float *dp, int64_t n, float scale,
                                 float lse, float d);
void jq_avx512_softmax_lse_backward(float *s, float *dp, int64_t n,
                                    float scale, float lse, float d);

/* C = alpha op(A) op(B) + beta C for row-major F32 matrices (op = the
 * transpose when trans_a / trans_b; op(A) is m x k, op(B) k x n), through
 * OpenBLAS on the calling thread (several threads may call at once). The
 * pretrainer's weight gradients (dW += dY^T X) and its attention blocks
 * need the transposed forms jq_gemm does not offer. */
void jq_sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
              float alpha, const float *A, int64_t lda, const float *B,
              int64_t ldb, float beta, float *C, int64_t ldc);

/* The two implementations of each backward kernel (for tests; jq_avx512_*
 * only when jq_cpu_has_avx512()). */
void jq_ref_rmsnorm_backward(float *dx, const float *x, const float *w,
                             const float *dy, int64_t n, float eps);
void jq_avx512_rmsnorm_backward(float *dx, const float *x, const float *w,
                                const float *dy, int64_t n, float eps);
void jq_ref_rope_backward(float *dx, int n_heads, int head_dim, int rope_dim,
                          int32_t pos, float freq_base,
                          const float *freq_factors, bool neox);
void jq_avx512_rope_backward(float *dx, int n_heads, int head_dim,
                             int rope_dim, int32_t pos, float freq_base,
                             const float *freq_factors, bool neox);
void jq_ref_softmax_backward(float *ds, const float *p, const float *dp,
                             int64_t n);
void jq_avx512_softmax_backward(float *ds, const float *p, const float *dp,
                                int64_t n);
void jq_ref_silu_mul_backward(float *dgate, float *dup, const float *gate,
                              const float *up, const float *dout, int64_t n);
void jq_avx512_silu_mul_backward(float *dgate, float *dup, const float *gate,
                                 const float *up, const float *dout,
                                 int64_t n);
void jq_ref_matmul_backward_x(uint32_t type, const void *W, int64_t K,
                              const float *dY, int64_t ldy, int64_t M,
                              float *dX, int64_t ldx, int64_t r0, int64_t r1,
                              float *scratch);
void jq_avx512_matmul_backward_x(uint32_t type, const void *W, int64_t K,
                                 const float *dY, int64_t ldy, int64_t M,
                                 float *dX, int64_t ldx, int64_t r0,
                                 int64_t r1, float *scratch);
void jq_ref_attention_backward(const jq_attn_bwd_args *a);
void jq_avx512_attention_backward(const jq_attn_bwd_args *a);

/* ------------------------------------------- reference and fast paths */
/* The two implementations of each dispatched kernel, for tests. The
 * jq_avx512_* functions may only be called when jq_cpu_has_avx512(). */

float jq_ref_dot_f32(const float *a, const float *b, int64_t n);
float jq_avx512_dot_f32(const float *a, const float *b, int64_t n);
void jq_ref_matvec(uint32_t type, const void *W, int64_t cols, const float *x,
                   float *y, int64_t r0, int64_t r1);
void jq_avx512_matvec(uint32_t type, const void *W, int64_t cols,
                      const float *x, float *y, int64_t r0, int64_t r1);
void jq_ref_dequantize_row(uint32_t type, const void *src, float *dst,
                           int64_t n);
void jq_ref_quantize_act(uint32_t type, const float *x, int64_t K, void *xq);
void jq_avx512_quantize_act(uint32_t type, const float *x, int64_t K,
                            void *xq);
void jq_ref_matvec_q(uint32_t type, const void *W, int64_t cols,
                     const void *xq, float *y, int64_t r0, int64_t r1);
/* Needs AVX-512 VNNI as well (jq_cpu_has_avx512_vnni()). */
void jq_avx512_matvec_q(uint32_t type, const void *W, int64_t cols,
                        const void *xq, float *y, int64_t r0, int64_t r1);
/* jq_gemm's specification: every output is jq_ref_matvec's dot (exact
 * weight conversion, F32 sum in index order). */
void jq_ref_gemm(uint32_t type, const void *W, int64_t K, const float *X,
                 int64_t M, float *Y, int64_t ldy, int64_t n0, int64_t n1);
void jq_ref_gemm_q(uint32_t type, const void *W, int64_t K, const void *Xq,
                   int64_t M, float *Y, int64_t ldy, int64_t n0, int64_t n1);
void jq_avx512_gemm_q(uint32_t type, const void *W, int64_t K,
                      const void *Xq, int64_t M, float *Y, int64_t ldy,
                      int64_t n0, int64_t n1, void *scratch);
/* jq_gemm's product for F32, F16 and BF16 weights with the F32 FMA
 * micro-kernel of gemm_half_avx512.c (weights converted exactly while
 * packed); same arguments and scratch as jq_gemm. */
void jq_avx512_gemm_half(uint32_t type, const void *W, int64_t K,
                         const float *X, int64_t M, float *Y, int64_t ldy,
                         int64_t n0, int64_t n1, float *scratch);
/* BF16 weights times x rounded to BF16 with vdpbf16ps (needs AVX-512 BF16,
 * jq_cpu_has_avx512_bf16()): measured against the exact path, not used by
 * jq_matvec (kernels/quant_avx512.c says why). */
void jq_avx512_matvec_bf16_dp(const void *W, int64_t cols, const float *x,
                              float *y, int64_t r0, int64_t r1);
void jq_avx512_dequantize_row(uint32_t type, const void *src, float *dst,
                              int64_t n);
void jq_ref_rmsnorm(float *out, const float *x, const float *w, int64_t n,
                    float eps);
void jq_avx512_rmsnorm(float *out, const float *x, const float *w, int64_t n,
                       float eps);
void jq_ref_softmax(float *x, int64_t n);
void jq_avx512_softmax(float *x, int64_t n);
void jq_ref_silu_mul(float *out, const float *gate, const float *up,
                     int64_t n);
void jq_avx512_silu_mul(float *out, const float *gate, const float *up,
                        int64_t n);
void jq_ref_add(float *y, const float *x, int64_t n);
void jq_avx512_add(float *y, const float *x, int64_t n);
void jq_ref_rope(float *x, int n_heads, int head_dim, int rope_dim,
                 int32_t pos, float freq_base, const float *freq_factors,
                 bool neox);
void jq_avx512_rope(float *x, int n_heads, int head_dim, int rope_dim,
                    int32_t pos, float freq_base, const float *freq_factors,
                    bool neox);
void jq_ref_attention(const float *q, int64_t ldq, int64_t n_q,
                      const float *K, int64_t ldk, const float *V,
                      int64_t ldv, int64_t n_kv, int head_dim, float scale,
                      int64_t causal_base, float *out, int64_t ldo,
                      float *scratch);
void jq_avx512_attention(const float *q, int64_t ldq, int64_t n_q,
                         const float *K, int64_t ldk, const float *V,
                         int64_t ldv, int64_t n_kv, int head_dim, float scale,
                         int64_t causal_base, float *out, int64_t ldo,
                         float *scratch);
/* F32 -> F16 of n elements with VCVTPS2PH, round to nearest even: the
 * F16 case of jq_quantize_row, bit-identical to jq_f32_to_f16 for every
 * input (NaNs included). dst needs only 2-byte alignment. */
void jq_avx512_quantize_row_f16(const float *src, void *dst, int64_t n);
int64_t jq_ref_topk(const float *scores, int64_t n, int64_t k, int32_t *idx);
int64_t jq_avx512_topk(const float *scores, int64_t n, int64_t k,
                       int32_t *idx);

#endif
