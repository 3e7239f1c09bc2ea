// GEMM through cuBLAS: tf32 tensor cores for f32 inputs, bf16 tensor cores for bf16, fp32 accumulation.
#include <cublas_v2.h>

#include "common.cuh"
#include "vlmamba/cuda/api.hpp"

namespace vlmamba::cuda {
namespace {

cublasHandle_t handle() {
    thread_local cublasHandle_t h = [] {
        cublasHandle_t x = nullptr;
        if (cublasCreate(&x) != CUBLAS_STATUS_SUCCESS) fail("gemm", "expected cublasCreate to succeed, got failure");
        return x;
    }();
    return h;
}

cudaDataType_t cuda_type(DType t) { return t == DType::BF16 ? CUDA_R_16BF : CUDA_R_32F; }

}  // namespace

void gemm(const GemmArgs& a, Stream s) {
    VLM_CHECK(a.m >= 1 && a.n >= 1 && a.k >= 1 && a.a && a.b && a.c, "gemm",
              "expected m, n, k >= 1 and non-null operands, got (m, n, k) = (", a.m, ", ", a.n, ", ", a.k, ")");
    VLM_CHECK(a.ab_dtype == DType::F32 || a.ab_dtype == DType::BF16, "gemm", "expected F32 or BF16 inputs, got ",
              dtype_name(a.ab_dtype));
    VLM_CHECK(a.c_dtype == DType::F32 || a.c_dtype == DType::BF16, "gemm", "expected F32 or BF16 output, got ",
              dtype_name(a.c_dtype));
    const int lda = a.lda ? a.lda : a.k, ldb = a.ldb ? a.ldb : a.k, ldc = a.ldc ? a.ldc : a.n;
    cublasHandle_t h = handle();
    cublasSetStream(h, detail::stream(s));
    const cublasComputeType_t ct = a.ab_dtype == DType::F32 && a.tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    // Row-major c = a bᵀ is column-major cᵀ = b aᵀ: b (n, k) row-major is (k, n) column-major, used transposed.
    const cublasStatus_t st =
        cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, a.n, a.m, a.k, &a.alpha, a.b, cuda_type(a.ab_dtype), ldb, a.a,
                     cuda_type(a.ab_dtype), lda, &a.beta, a.c, cuda_type(a.c_dtype), ldc, ct, CUBLAS_GEMM_DEFAULT);
    VLM_CHECK(st == CUBLAS_STATUS_SUCCESS, "gemm", "expected cublasGemmEx to succeed, got status ", int(st));
}

void gemm_batched(const GemmArgs& a, const GemmBatch& b, Stream s) {
    VLM_CHECK(a.m >= 1 && a.n >= 1 && a.k >= 1 && a.a && a.b && a.c && b.count >= 1, "gemm_batched",
              "expected m, n, k, count >= 1 and non-null operands, got (m, n, k, count) = (", a.m, ", ", a.n, ", ",
              a.k, ", ", b.count, ")");
    VLM_CHECK(a.ab_dtype == DType::F32 && a.c_dtype == DType::F32, "gemm_batched", "expected F32 operands, got ",
              dtype_name(a.ab_dtype), " and ", dtype_name(a.c_dtype));
    const int lda = a.lda ? a.lda : a.k, ldb = a.ldb ? a.ldb : (b.b_trans ? a.k : a.n), ldc = a.ldc ? a.ldc : a.n;
    cublasHandle_t h = handle();
    cublasSetStream(h, detail::stream(s));
    const cublasComputeType_t ct = a.tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    // row-major c = a · op(b) is column-major cᵀ = op(b)ᵀ aᵀ
    const cublasStatus_t st = cublasGemmStridedBatchedEx(
        h, b.b_trans ? CUBLAS_OP_T : CUBLAS_OP_N, CUBLAS_OP_N, a.n, a.m, a.k, &a.alpha, a.b, CUDA_R_32F, ldb,
        b.stride_b, a.a, CUDA_R_32F, lda, b.stride_a, &a.beta, a.c, CUDA_R_32F, ldc, b.stride_c, b.count, ct,
        CUBLAS_GEMM_DEFAULT);
    VLM_CHECK(st == CUBLAS_STATUS_SUCCESS, "gemm_batched", "expected cublasGemmStridedBatchedEx to succeed, got status ",
              int(st));
}

}  // namespace vlmamba::cuda
