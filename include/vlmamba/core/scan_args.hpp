// The POD argument structs of the selective scan and its decode update, and the variant tags. Light on purpose:
// the CUDA entry points (cuda/api.hpp) include this and nothing of the CPU kernels.
#pragma once
#include <cstdint>

#include "vlmamba/core/error.hpp"

namespace vlmamba {

// Arguments of one scan over B sequences of L steps, E channels and N states; all fp32, row-major.
// Row strides (ld_*) are in elements between consecutive time steps; 0 means contiguous (E for
// u, delta, z, y and N for Bm, Cm). The batch stride is L * row stride.
struct ScanArgs {
    int batch, length, d_inner, d_state;  // B, L, E, N (1 <= N <= 64)
    const float* u;                       // (B, L, E)  input x
    const float* delta;                   // (B, L, E)  dt before softplus (if delta_softplus)
    const float* A;                       // (E, N)     already negative: A = -exp(A_log)
    const float* Bm;                      // (B, L, N)
    const float* Cm;                      // (B, L, N)
    const float* D = nullptr;             // (E)        or null: y += D * u
    const float* z = nullptr;             // (B, L, E)  or null: y *= silu(z)
    const float* delta_bias = nullptr;    // (E)        or null: added before softplus
    bool delta_softplus = true;
    float* h = nullptr;                   // (B, E, N)  initial state (if h_in), final state (if non-null)
    bool h_in = false;
    float* y;                             // (B, L, E)  output
    int ld_u = 0, ld_delta = 0, ld_z = 0, ld_y = 0, ld_bc = 0;
    // Elements between the A, D and delta_bias of consecutive sequences; 0: all share one (e.g. the K directions
    // of a VSS scan, one launch with their own parameters: stride_A = E·N, stride_D = stride_bias = E).
    std::int64_t stride_A = 0, stride_D = 0, stride_bias = 0;
};

// Arguments of one recurrent decode step for B sequences (mamba_ssm selective_state_update).
// Row strides (ld_*) are in elements between consecutive sequences; 0 means contiguous.
struct StateUpdateArgs {
    int batch, d_inner, d_state;         // B, E, N (1 <= N <= 64)
    float* h;                            // (B, E, N)  state, updated in place
    const float* x;                      // (B, E)
    const float* delta;                  // (B, E)  dt before softplus (if delta_softplus)
    const float* A;                      // (E, N)  already negative
    const float* Bm;                     // (B, N)
    const float* Cm;                     // (B, N)
    const float* D = nullptr;            // (E)     or null
    const float* z = nullptr;            // (B, E)  or null: y *= silu(z)
    const float* delta_bias = nullptr;   // (E)     or null: added before softplus
    bool delta_softplus = true;
    float* y;                            // (B, E)  output
    int ld_x = 0, ld_delta = 0, ld_z = 0, ld_y = 0, ld_bc = 0;
};

// Scan variants: the scalar reference; vectorised across d_state (a horizontal sum per step);
// vectorised across channels (states in registers, time loop innermost, threads over channels).
struct ScanRef {};
struct ScanStates {};
struct ScanChannels {};

inline constexpr int scan_max_state = 64;

// Validation; throws vlmamba::Error "[selective_scan] expected ..., got ...".
inline void check(const ScanArgs& a) {
    constexpr const char* op = "selective_scan";
    VLM_CHECK(a.batch >= 1 && a.length >= 1 && a.d_inner >= 1, op,
              "expected batch, length, d_inner >= 1, got (B, L, E) = (", a.batch, ", ", a.length, ", ",
              a.d_inner, ")");
    VLM_CHECK(a.d_state >= 1 && a.d_state <= scan_max_state, op, "expected d_state in [1, ",
              scan_max_state, "], got ", a.d_state);
    VLM_CHECK(a.u && a.delta && a.A && a.Bm && a.Cm && a.y, op,
              "expected non-null u, delta, A, Bm, Cm and y, got null ",
              !a.u ? "u" : !a.delta ? "delta" : !a.A ? "A" : !a.Bm ? "Bm" : !a.Cm ? "Cm" : "y");
    VLM_CHECK(!a.h_in || a.h, op, "expected a state pointer h with h_in = true, got null");
    const int lds[4] = {a.ld_u, a.ld_delta, a.ld_z, a.ld_y};
    const char* names[4] = {"ld_u", "ld_delta", "ld_z", "ld_y"};
    for (int i = 0; i < 4; ++i)
        VLM_CHECK(lds[i] == 0 || lds[i] >= a.d_inner, op, "expected ", names[i], " = 0 or >= d_inner = ",
                  a.d_inner, ", got ", lds[i]);
    VLM_CHECK(a.ld_bc == 0 || a.ld_bc >= a.d_state, op, "expected ld_bc = 0 or >= d_state = ", a.d_state,
              ", got ", a.ld_bc);
    VLM_CHECK(a.stride_A >= 0 && a.stride_D >= 0 && a.stride_bias >= 0, op,
              "expected non-negative parameter strides, got (", a.stride_A, ", ", a.stride_D, ", ", a.stride_bias, ")");
}

inline void check(const StateUpdateArgs& a) {
    constexpr const char* op = "selective_state_update";
    VLM_CHECK(a.batch >= 1 && a.d_inner >= 1, op, "expected batch, d_inner >= 1, got (B, E) = (", a.batch,
              ", ", a.d_inner, ")");
    VLM_CHECK(a.d_state >= 1 && a.d_state <= scan_max_state, op, "expected d_state in [1, ",
              scan_max_state, "], got ", a.d_state);
    VLM_CHECK(a.h && a.x && a.delta && a.A && a.Bm && a.Cm && a.y, op,
              "expected non-null h, x, delta, A, Bm, Cm and y, got null ",
              !a.h    ? "h"
              : !a.x  ? "x"
              : !a.delta ? "delta"
              : !a.A  ? "A"
              : !a.Bm ? "Bm"
              : !a.Cm ? "Cm"
                      : "y");
    const int lds[4] = {a.ld_x, a.ld_delta, a.ld_z, a.ld_y};
    const char* names[4] = {"ld_x", "ld_delta", "ld_z", "ld_y"};
    for (int i = 0; i < 4; ++i)
        VLM_CHECK(lds[i] == 0 || lds[i] >= a.d_inner, op, "expected ", names[i], " = 0 or >= d_inner = ",
                  a.d_inner, ", got ", lds[i]);
    VLM_CHECK(a.ld_bc == 0 || a.ld_bc >= a.d_state, op, "expected ld_bc = 0 or >= d_state = ", a.d_state,
              ", got ", a.ld_bc);
}

}  // namespace vlmamba
