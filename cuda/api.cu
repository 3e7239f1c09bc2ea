// Device, memory, timing and graph entry points, the scan dispatch, and the link guard symbol.
#include <atomic>
#include <vector>

#include "common.cuh"
#include "tuning.hpp"
#include "vlmamba/cuda/api.hpp"

extern "C" int vlmamba_link_guard_built_with_cuda = 1;

namespace vlmamba::cuda {
namespace detail {
template <class IO>
void launch_scan(const ScanArgs& a, cudaStream_t s, int sms);

std::atomic<int> scan_spt{0};

int scan_states_per_thread(const ScanArgs& a, int sms, int io_bytes) {
    const int forced = scan_spt.load(std::memory_order_relaxed);
    auto warps = [&](int spt) {
        int g = 1;
        while (g * spt < a.d_state) g *= 2;
        return std::int64_t(a.batch) * a.d_inner * g / 32;
    };
    if (forced && (forced > 1 || a.d_state <= 16) && (forced < 4 || a.d_state <= 64)) return forced;
    // measured at L 600, E 5120, N 16 (µs, SPT 2 / 4): bf16 B 1 38.6 / 79.2, B 8 277.7 / 338.9; f32 B 1 44.4 / 61.2,
    // B 8 308.9 / 292.4
    if (io_bytes == 4 && warps(4) >= 8 * sms) return 4;
    if (a.d_state > 16 || warps(2) >= 8 * sms) return 2;
    return 1;
}
std::atomic<bool> pdl_on{true};
thread_local bool pdl_thread = true;  // ProgrammaticLaunchScope
bool programmatic_launch() { return pdl_thread && pdl_on.load(std::memory_order_relaxed); }
}  // namespace detail

void set_scan_states_per_thread(int spt) {
    VLM_CHECK(spt == 0 || spt == 1 || spt == 2 || spt == 4, "set_scan_states_per_thread",
              "expected 0 (automatic), 1, 2 or 4, got ", spt);
    detail::scan_spt.store(spt, std::memory_order_relaxed);
}
detail::ProgrammaticLaunchScope::ProgrammaticLaunchScope(bool on) : prev_(pdl_thread) { pdl_thread = on; }
detail::ProgrammaticLaunchScope::~ProgrammaticLaunchScope() { pdl_thread = prev_; }

void set_programmatic_launch(bool on) { detail::pdl_on.store(on, std::memory_order_relaxed); }

bool available() {
    int n = 0;
    return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

const char* device_name() {
    thread_local cudaDeviceProp p;
    VLM_CUDA_CHECK(cudaGetDeviceProperties(&p, 0), "device_name");
    return p.name;
}

int sm_count() {
    static const int n = [] {
        int dev = 0, v = 0;
        VLM_CUDA_CHECK(cudaGetDevice(&dev), "sm_count");
        VLM_CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev), "sm_count");
        return v;
    }();
    return n;
}

void* malloc(std::size_t bytes) {
    void* p = nullptr;
    VLM_CUDA_CHECK(cudaMalloc(&p, bytes ? bytes : 1), "malloc");
    return p;
}
void free(void* p) { VLM_CUDA_CHECK(cudaFree(p), "free"); }

void* tensor_malloc(std::size_t bytes) {
    static const bool pool_keeps = [] {  // the pool keeps freed memory for reuse instead of returning it at syncs
        int dev = 0;
        cudaMemPool_t pool = nullptr;
        VLM_CUDA_CHECK(cudaGetDevice(&dev), "tensor_malloc");
        VLM_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, dev), "tensor_malloc");
        std::uint64_t keep = UINT64_MAX;
        VLM_CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep), "tensor_malloc");
        return true;
    }();
    (void)pool_keeps;
    void* p = nullptr;
    VLM_CUDA_CHECK(cudaMallocAsync(&p, bytes ? bytes : 1, nullptr), "tensor_malloc");
    return p;
}
void tensor_free(void* p) { VLM_CUDA_CHECK(cudaFreeAsync(p, nullptr), "tensor_free"); }

void copy_2d(void* dst, std::size_t dpitch, bool dst_device, const void* src, std::size_t spitch, bool src_device,
             std::size_t width, std::size_t rows) {
    const cudaMemcpyKind kind = dst_device ? (src_device ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice)
                                           : (src_device ? cudaMemcpyDeviceToHost : cudaMemcpyHostToHost);
    if (kind == cudaMemcpyDeviceToDevice)  // in stream order with the ops, no host wait
        VLM_CUDA_CHECK(cudaMemcpy2DAsync(dst, dpitch, src, spitch, width, rows, kind, nullptr), "copy_2d");
    else
        VLM_CUDA_CHECK(cudaMemcpy2D(dst, dpitch, src, spitch, width, rows, kind), "copy_2d");
}
void copy_h2d(void* d, const void* s, std::size_t n) { VLM_CUDA_CHECK(cudaMemcpy(d, s, n, cudaMemcpyHostToDevice), "copy_h2d"); }
void copy_d2h(void* d, const void* s, std::size_t n) { VLM_CUDA_CHECK(cudaMemcpy(d, s, n, cudaMemcpyDeviceToHost), "copy_d2h"); }
void copy_d2d(void* d, const void* s, std::size_t n, Stream st) {
    VLM_CUDA_CHECK(cudaMemcpyAsync(d, s, n, cudaMemcpyDeviceToDevice, detail::stream(st)), "copy_d2d");
}
void memset0(void* p, std::size_t n, Stream st) { VLM_CUDA_CHECK(cudaMemsetAsync(p, 0, n, detail::stream(st)), "memset0"); }
void synchronize() { VLM_CUDA_CHECK(cudaDeviceSynchronize(), "synchronize"); }

Stream stream_create() {
    cudaStream_t s = nullptr;
    VLM_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "stream_create");
    return s;
}
void stream_destroy(Stream s) { VLM_CUDA_CHECK(cudaStreamDestroy(detail::stream(s)), "stream_destroy"); }

double time_us(const std::function<void()>& fn, int iters, int warmup, Stream s) {
    for (int i = 0; i < warmup; ++i) fn();
    cudaEvent_t e0, e1;
    VLM_CUDA_CHECK(cudaEventCreate(&e0), "time_us");
    VLM_CUDA_CHECK(cudaEventCreate(&e1), "time_us");
    VLM_CUDA_CHECK(cudaEventRecord(e0, detail::stream(s)), "time_us");
    for (int i = 0; i < iters; ++i) fn();
    VLM_CUDA_CHECK(cudaEventRecord(e1, detail::stream(s)), "time_us");
    VLM_CUDA_CHECK(cudaEventSynchronize(e1), "time_us");
    float ms = 0.0f;
    VLM_CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1), "time_us");
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    return 1000.0 * ms / iters;
}

Graph graph_capture(Stream s, const std::function<void()>& fn) {
    VLM_CHECK(s != nullptr, "graph_capture", "expected a created stream, got the default stream");
    cudaGraph_t g = nullptr;
    VLM_CUDA_CHECK(cudaStreamBeginCapture(detail::stream(s), cudaStreamCaptureModeThreadLocal), "graph_capture");
    fn();
    VLM_CUDA_CHECK(cudaStreamEndCapture(detail::stream(s), &g), "graph_capture");
    cudaGraphExec_t ex = nullptr;
    VLM_CUDA_CHECK(cudaGraphInstantiate(&ex, g, 0), "graph_capture");
    cudaGraphDestroy(g);
    return Graph{ex};
}
void graph_launch(const Graph& g, Stream s) {
    VLM_CUDA_CHECK(cudaGraphLaunch(static_cast<cudaGraphExec_t>(g.exec), detail::stream(s)), "graph_launch");
}
void graph_destroy(Graph& g) {
    if (g.exec) cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(g.exec));
    g.exec = nullptr;
}

void selective_scan(const ScanArgs& a, DType io, Stream s) {
    check(a);
    VLM_CHECK(!(a.stride_A || a.stride_D || a.stride_bias), "selective_scan",
              "the kernel shares one A, D and delta_bias: per-sequence strides go through vlmamba::selective_scan(a, "
              "Device::Cuda), got (", a.stride_A, ", ", a.stride_D, ", ", a.stride_bias, ")");
    VLM_CHECK(io == DType::F32 || io == DType::BF16, "selective_scan", "expected io dtype F32 or BF16, got ",
              dtype_name(io));
    if (io == DType::F32) detail::launch_scan<float>(a, detail::stream(s), sm_count());
    else detail::launch_scan<__nv_bfloat16>(a, detail::stream(s), sm_count());
    detail::check_launch("selective_scan");
}

}  // namespace vlmamba::cuda
