// Entry points of the decode kernels in cuda/gemv.cu and cuda/decode.cu (closed box, STYLE 9: POD
// arguments, no CUDA headers): the small-batch product, the state update with dt_proj fused, and the fused step of
// a whole stack. All pointers are device pointers. Built without CUDA, they throw (cuda/no_cuda_decode.cpp).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "vlmamba/cuda/api.hpp"

namespace vlmamba::cuda {

// y (m, n) f32 = x (m, k) f32 · Wᵀ with W (n, k) row-major in f32 or bf16, f32 accumulation; 1 <= m <= 8.
// Leading dimensions 0 mean contiguous. 16-byte loads are used when k, ldx and the pointers allow.
// With norm_w (k) f32, x is RMS-normalised first: x · rsqrt(mean(x²) + norm_eps) · norm_w per row (the pre-norm of
// a block). With accumulate, y += x · Wᵀ (the residual add).
struct GemvArgs {
    int m, n, k;
    const float* x;
    const void* w;
    DType w_dtype = DType::F32;
    float* y;
    int ldx = 0, ldy = 0;
    const float* norm_w = nullptr;
    float norm_eps = 1e-5f;
    bool accumulate = false;
    // The causal conv update of decode, fused as an epilogue (in_proj: its first conv_e rows are x): with conv_state,
    // each output y[m][c] of a row c < conv_e also shifts into conv_state (m, conv_e, conv_k), and
    // conv_y[m][c] = silu(conv_bias[c] + Σ_j state[j] · conv_w[c][j]) after the shift. All f32.
    float* conv_state = nullptr;
    const float* conv_w = nullptr;     // (conv_e, conv_k)
    const float* conv_bias = nullptr;  // (conv_e) or null
    float* conv_y = nullptr;           // (m, conv_e)
    int conv_e = 0, conv_k = 0;
};
void gemv(const GemvArgs& a, Stream s = nullptr);

// One decode step of the SSM with dt_proj fused in (mamba_simple.py: Mamba.step, from dt = F.linear(dt, W_dt) on):
// Δ (B, E) = dt_x (B, R) · dt_wᵀ, then exactly selective_state_update with that Δ (s.delta is not read).
struct DtStateUpdateArgs {
    StateUpdateArgs s;
    const float* dt_x;  // (B, R), row stride ld_dt_x (0: R); e.g. the first R columns of x_dbl
    const void* dt_w;   // (E, R) f32 or bf16
    DType dt_w_dtype = DType::F32;
    int dt_rank = 0;
    int ld_dt_x = 0;
};
void selective_state_update_dt(const DtStateUpdateArgs& a, Stream s = nullptr);

// ---- the fused decode step of a whole Mamba stack (mamba_simple.py: Mamba.step per layer) ----------------------------
// One object per (model, state): it owns the step's workspace, its stream and the CUDA graph of the step, captured at
// the first run and replayed after. B <= 8 goes through the gemv with the RMSNorm, the conv update and the residual
// add fused in; larger B through cuBLAS. dt_proj is fused into the state update. The big matrices are f32 or bf16
// (w_dtype), everything else f32.
struct MambaStepLayer {
    const float* norm_w;     // (D)
    const void* in_proj;     // (2E, D)
    const float* conv_w;     // (E, K)
    const float* conv_b;     // (E) or null
    const void* x_proj;      // (R + 2N, E)
    const void* dt_w;        // (E, R)
    const float* dt_b;       // (E)
    const float* A;          // (E, N)
    const float* D;          // (E)
    const void* out_proj;    // (D, E)
    float* conv_state;       // (B, E, K), updated in place
    float* ssm_state;        // (B, E, N), updated in place
};
struct MambaStepArgs {
    int batch, d_model, d_inner, d_state, d_conv, dt_rank, vocab;
    float eps;
    DType w_dtype;
    const void* embedding;   // (V, D)
    const float* norm_f;     // (D)
    const void* head;        // (V, D)
    std::vector<MambaStepLayer> layers;
};
class MambaStep {
public:
    explicit MambaStep(const MambaStepArgs& a);
    ~MambaStep();
    MambaStep(const MambaStep&) = delete;
    MambaStep& operator=(const MambaStep&) = delete;
    // tokens (B) on the host -> logits (B, V) into `logits` and the greedy ids (B) into `next`, each when non-null
    // (host memory).
    void run(const std::int32_t* tokens, float* logits, std::int32_t* next);
    const MambaStepArgs& args() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace vlmamba::cuda
