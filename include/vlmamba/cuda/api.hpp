// The closed box of the optional CUDA library vlmamba::cuda (STYLE 9): non-template entry points taking POD
// arguments. No CUDA header is included here. All pointers in the argument structs are device pointers.
// Built without CUDA, every entry point except available() throws "vlmamba was built without CUDA".
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>

#include "vlmamba/core/device.hpp"
#include "vlmamba/core/dtype.hpp"
#include "vlmamba/core/scan_args.hpp"

// Link-time guard: a TU that disagrees with the linked library on VLMAMBA_WITH_CUDA references a symbol that
// library does not define, so the program fails to link instead of misbehaving.
#ifdef VLMAMBA_WITH_CUDA
extern "C" int vlmamba_link_guard_built_with_cuda;
[[maybe_unused]] static volatile int vlmamba_cuda_link_guard_ = vlmamba_link_guard_built_with_cuda;
#else
extern "C" int vlmamba_link_guard_built_without_cuda;
[[maybe_unused]] static volatile int vlmamba_cuda_link_guard_ = vlmamba_link_guard_built_without_cuda;
#endif

namespace vlmamba::cuda {

// ---- device (the memory entry points are declared in core/device.hpp) --------------------------------------------
const char* device_name();
int sm_count();
Stream stream_create();
void stream_destroy(Stream s);

// Mean time of one call of fn in µs over iters calls on stream s, measured with CUDA events after warmup calls.
double time_us(const std::function<void()>& fn, int iters, int warmup = 3, Stream s = nullptr);

// CUDA graphs: capture everything fn enqueues on s (not the default stream), then replay it.
struct Graph {
    void* exec = nullptr;  // cudaGraphExec_t
};
Graph graph_capture(Stream s, const std::function<void()>& fn);
void graph_launch(const Graph& g, Stream s);
void graph_destroy(Graph& g);

// ---- selective scan and decode step (SPEC §4.3, §4.4) ------------------------------------------------------------
// io = F32: every pointer of ScanArgs holds f32. io = BF16: u, delta, z, Bm, Cm and y hold bf16 (reinterpreted),
// while A, D, delta_bias and h stay f32; the state and the arithmetic are f32. B sequences in one launch (the VSS
// directions go through the batch dim).
void selective_scan(const ScanArgs& a, DType io = DType::F32, Stream s = nullptr);

// One decode step for a batch, all f32 (mamba_ssm selective_state_update): softplus, state, D and gate fused.
void selective_state_update(const StateUpdateArgs& a, Stream s = nullptr);

// ---- causal depthwise conv1d (SPEC §4.2 step 2) -------------------------------------------------------------------
struct Conv1dArgs {
    int batch, length, d_inner, k;  // B, L, E, K (1 <= K <= 8)
    const float* x;                 // (B, L, E), row stride ld_x (0: E), batch stride L * ld_x
    const float* w;                 // (E, K)
    const float* bias = nullptr;    // (E) or null
    bool silu = true;
    float* y;                       // (B, L, E) contiguous
    float* state = nullptr;         // (B, E, K) or null: receives the last K pre-conv x (zero-padded), oldest first
    int ld_x = 0;
    const float* state_in = nullptr;  // (B, E, K) or null (zeros): the inputs before x, oldest first; not `state`
};
void causal_conv1d(const Conv1dArgs& a, Stream s = nullptr);

// One step: shifts x (B, E) into state (B, E, K) and writes the conv output y (B, E).
struct ConvUpdateArgs {
    int batch, d_inner, k;
    float* state;                 // (B, E, K)
    const float* x;               // (B, E), row stride ld_x (0: E)
    const float* w;               // (E, K)
    const float* bias = nullptr;  // (E) or null
    bool silu = true;
    float* y;                     // (B, E) contiguous
    int ld_x = 0;
};
void causal_conv1d_update(const ConvUpdateArgs& a, Stream s = nullptr);

// ---- elementwise and norm ops -------------------------------------------------------------------------------------
// If residual: residual += x (f32, in place; x may be null to only normalise residual); the normalised rows of
// residual (or of x when residual is null) times w go to out. w and out are f32 or bf16 (w_dtype, out_dtype).
struct RmsNormArgs {
    int rows, dim;
    const float* x;         // (rows, dim) or null when residual is given
    float* residual = nullptr;
    const void* w;          // (dim)
    DType w_dtype = DType::F32;
    void* out;              // (rows, dim)
    DType out_dtype = DType::F32;
    float eps = 1e-5f;
};
void rms_norm(const RmsNormArgs& a, Stream s = nullptr);

// out (n, dim) f32 = table[ids[i]] with table (vocab, dim) in f32 or bf16.
void embedding(float* out, const void* table, DType table_dtype, const std::int32_t* ids, int n, int dim, int vocab,
               Stream s = nullptr);

void add(float* y, const float* a, const float* b, std::int64_t n, Stream s = nullptr);  // y = a + b
// Index of the largest value of each row of x (rows, cols) f32; ties go to the lowest index.
void argmax_rows(std::int32_t* out, const float* x, int rows, int cols, Stream s = nullptr);

// ---- ViT ops (vision towers) ---------------------------------------------------------------------------------------
// y (rows, dim) = LayerNorm(x) · w + b, f32; y may be x.
struct LayerNormArgs {
    int rows, dim;
    const float* x;
    const float* w;
    const float* b;
    float* y;
    float eps = 1e-5f;
};
void layer_norm(const LayerNormArgs& a, Stream s = nullptr);

enum class Activation { None, QuickGelu, Gelu, GeluTanh };  // GeluTanh: gelu_pytorch_tanh
void bias_act(float* y, const float* b, std::int64_t rows, int cols, Activation act, Stream s = nullptr);  // y = act(y + b)
void softmax_rows(float* x, std::int64_t rows, int cols, float scale, Stream s = nullptr);     // softmax(scale · x)
// x (rows, cols) += y (rows, cols) · g (cols): timm's LayerScale on the residual.
void add_scaled(float* x, const float* y, const float* g, std::int64_t rows, int cols, Stream s = nullptr);

// x (cls + patches, dim) = [cls; emb + bias] + pos: the embeddings of a ViT (cls and bias may be null).
struct VitEmbedArgs {
    int patches, dim;
    const float* emb;    // (patches, dim): the patch conv as a GEMM
    const float* bias;   // (dim) or null
    const float* cls;    // (dim) or null
    const float* pos;    // (cls + patches, dim)
    float* x;            // (cls + patches, dim)
};
void vit_embed(const VitEmbedArgs& a, Stream s = nullptr);

// ---- VSS ops (the connector's SS2D) --------------------------------------------------------------------------------
// y (H·W, C) = depthwise k×k conv of x over the row-major grid, zero padding k/2, bias, SiLU if asked. All f32.
struct DwConv2dArgs {
    int height, width, channels, k;
    const float* x;        // (H·W, C), row stride ld_x (0: C)
    const float* taps;     // (k·k, C): tap (r, q) of channel c at (r·k + q)·C + c
    const float* bias;     // (C) or null
    bool silu;
    float* y;              // (H·W, C) contiguous
    std::int64_t ld_x = 0;
};
void depthwise_conv2d(const DwConv2dArgs& a, Stream s = nullptr);
// dst[r, :cols] = src[idx[r], :cols] for r < rows (idx on the device); row strides in elements.
void gather_rows(float* dst, std::int64_t ld_dst, const float* src, std::int64_t ld_src, const std::int64_t* idx,
                 std::int64_t rows, int cols, Stream s = nullptr);
// dst (L, C) = Σ_k ys[k, seq[k, p]] for each grid position p: the K directions back in grid order, summed.
void merge_rows(float* dst, const float* ys, const std::int64_t* seq, int K, std::int64_t L, int C,
                Stream s = nullptr);
// y (rows, cols) contiguous *= silu(z), z with row stride ld_z.
void mul_silu(float* y, const float* z, std::int64_t ld_z, std::int64_t rows, int cols, Stream s = nullptr);

// ---- GEMM (cuBLAS) -------------------------------------------------------------------------------------------------
// c (m, n) = alpha * a (m, k) · bᵀ + beta * c with b (n, k): row-major, the layout of y = x Wᵀ.
// ab_dtype F32 runs on tf32 tensor cores when tf32 is set (fp32 otherwise); BF16 on bf16 tensor cores with fp32
// accumulation. c is f32 or bf16 (c_dtype). Leading dimensions 0 mean contiguous.
struct GemmArgs {
    int m, n, k;
    const void* a;
    const void* b;
    void* c;
    DType ab_dtype = DType::F32;
    DType c_dtype = DType::F32;
    bool tf32 = true;
    float alpha = 1.0f, beta = 0.0f;
    int lda = 0, ldb = 0, ldc = 0;
};
void gemm(const GemmArgs& a, Stream s = nullptr);
// count products at once, operand i at a + i · stride_a (elements) and so on; b_trans false: c = a · b with b (k, n).
struct GemmBatch {
    int count;
    std::int64_t stride_a, stride_b, stride_c;
    bool b_trans = true;
};
void gemm_batched(const GemmArgs& a, const GemmBatch& batch, Stream s = nullptr);

}  // namespace vlmamba::cuda
