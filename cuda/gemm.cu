// GEMM through cuBLAS: tf32 tensor cores for f32 inputs, bf16 tensor cores for bf16, fp32 accumulation.
// cuBLAS is opened on the first GEMM, not linked: loading it costs ~200 MB of resident memory (its relocated pages
// and static data), which every process would otherwise pay at start, CPU-only runs included.
#include <cublas_v2.h>
#include <dlfcn.h>

#include <string>

#include "common.cuh"
#include "vlmamba/cuda/api.hpp"

namespace vlmamba::cuda {
namespace {

// The four cuBLAS entry points we use, resolved from libcublas.so.<major> once per process.
struct Cublas {
    decltype(&cublasCreate_v2) create;
    decltype(&cublasSetStream_v2) set_stream;
    cublasStatus_t (*gemm_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int, const void*,
                              const void*, cudaDataType, int, const void*, cudaDataType, int, const void*, void*,
                              cudaDataType, int, cublasComputeType_t, cublasGemmAlgo_t);
    cublasStatus_t (*gemm_strided_batched_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int,
                                              const void*, const void*, cudaDataType, int, long long, const void*,
                                              cudaDataType, int, long long, const void*, void*, cudaDataType, int,
                                              long long, int, cublasComputeType_t, cublasGemmAlgo_t);
};

template <class F>
void resolve(void* lib, const char* name, F& f) {
    f = reinterpret_cast<F>(dlsym(lib, name));
    if (!f) fail("gemm", "expected cuBLAS to export ", name, ", got none");
}

const Cublas& cublas() {
    static const Cublas c = [] {
        const std::string so = "libcublas.so." + std::to_string(CUBLAS_VER_MAJOR);
        void* lib = dlopen(so.c_str(), RTLD_NOW | RTLD_LOCAL);  // the loader's search path first
        if (!lib) lib = dlopen((std::string(VLMAMBA_CUDA_LIBRARY_DIR) + "/" + so).c_str(), RTLD_NOW | RTLD_LOCAL);
        if (!lib) fail("gemm", "expected ", so, " to load (searched the library path and ", VLMAMBA_CUDA_LIBRARY_DIR,
                       "), got: ", dlerror());
        Cublas x{};
        resolve(lib, "cublasCreate_v2", x.create);
        resolve(lib, "cublasSetStream_v2", x.set_stream);
        resolve(lib, "cublasGemmEx", x.gemm_ex);
        resolve(lib, "cublasGemmStridedBatchedEx", x.gemm_strided_batched_ex);
        return x;
    }();
    return c;
}

cublasHandle_t handle() {
    thread_local cublasHandle_t h = [] {
        cublasHandle_t x = nullptr;
        if (cublas().create(&x) != CUBLAS_STATUS_SUCCESS) fail("gemm", "expected cublasCreate to succeed, got failure");
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
    cublas().set_stream(h, detail::stream(s));
    const cublasComputeType_t ct = a.ab_dtype == DType::F32 && a.tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    // Row-major c = a bᵀ is column-major cᵀ = b aᵀ: b (n, k) row-major is (k, n) column-major, used transposed.
    const cublasStatus_t st =
        cublas().gemm_ex(h, CUBLAS_OP_T, CUBLAS_OP_N, a.n, a.m, a.k, &a.alpha, a.b, cuda_type(a.ab_dtype), ldb, a.a,
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
    cublas().set_stream(h, detail::stream(s));
    const cublasComputeType_t ct = a.tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    // row-major c = a · op(b) is column-major cᵀ = op(b)ᵀ aᵀ
    const cublasStatus_t st = cublas().gemm_strided_batched_ex(
        h, b.b_trans ? CUBLAS_OP_T : CUBLAS_OP_N, CUBLAS_OP_N, a.n, a.m, a.k, &a.alpha, a.b, CUDA_R_32F, ldb,
        b.stride_b, a.a, CUDA_R_32F, lda, b.stride_a, &a.beta, a.c, CUDA_R_32F, ldc, b.stride_c, b.count, ct,
        CUBLAS_GEMM_DEFAULT);
    VLM_CHECK(st == CUBLAS_STATUS_SUCCESS, "gemm_batched", "expected cublasGemmStridedBatchedEx to succeed, got status ",
              int(st));
}

}  // namespace vlmamba::cuda
