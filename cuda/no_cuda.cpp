// Stubs of vlmamba::cuda for builds without a CUDA compiler: available() is false, the rest throws.
#include "tuning.hpp"
#include "vlmamba/cuda/api.hpp"

extern "C" int vlmamba_link_guard_built_without_cuda = 1;

namespace vlmamba::cuda {
namespace {
[[noreturn]] void no_cuda(const char* op) { fail(op, "vlmamba was built without CUDA"); }
}  // namespace

bool available() { return false; }
const char* device_name() { no_cuda("device_name"); }
int sm_count() { no_cuda("sm_count"); }
void* malloc(std::size_t) { no_cuda("malloc"); }
void free(void*) { no_cuda("free"); }
void* tensor_malloc(std::size_t) { no_cuda("tensor_malloc"); }
void tensor_free(void*) {}
void copy_2d(void*, std::size_t, bool, const void*, std::size_t, bool, std::size_t, std::size_t) { no_cuda("copy_2d"); }
void copy_h2d(void*, const void*, std::size_t) { no_cuda("copy_h2d"); }
void copy_d2h(void*, const void*, std::size_t) { no_cuda("copy_d2h"); }
void copy_d2d(void*, const void*, std::size_t, Stream) { no_cuda("copy_d2d"); }
void memset0(void*, std::size_t, Stream) { no_cuda("memset0"); }
void synchronize() { no_cuda("synchronize"); }
Stream stream_create() { no_cuda("stream_create"); }
void stream_destroy(Stream) { no_cuda("stream_destroy"); }
double time_us(const std::function<void()>&, int, int, Stream) { no_cuda("time_us"); }
Graph graph_capture(Stream, const std::function<void()>&) { no_cuda("graph_capture"); }
void graph_launch(const Graph&, Stream) { no_cuda("graph_launch"); }
void graph_destroy(Graph&) { no_cuda("graph_destroy"); }
void set_programmatic_launch(bool) { no_cuda("set_programmatic_launch"); }
void set_scan_states_per_thread(int) { no_cuda("set_scan_states_per_thread"); }
void selective_scan(const ScanArgs&, DType, Stream) { no_cuda("selective_scan"); }
void selective_state_update(const StateUpdateArgs&, Stream) { no_cuda("selective_state_update"); }
void causal_conv1d(const Conv1dArgs&, Stream) { no_cuda("causal_conv1d"); }
void causal_conv1d_update(const ConvUpdateArgs&, Stream) { no_cuda("causal_conv1d_update"); }
void rms_norm(const RmsNormArgs&, Stream) { no_cuda("rms_norm"); }
void embedding(float*, const void*, DType, const std::int32_t*, int, int, int, Stream) { no_cuda("embedding"); }
void add(float*, const float*, const float*, std::int64_t, Stream) { no_cuda("add"); }
void convert(void*, DType, const void*, DType, std::int64_t, Stream) { no_cuda("convert"); }
void argmax_rows(std::int32_t*, const float*, int, int, Stream) { no_cuda("argmax_rows"); }
void gemm(const GemmArgs&, Stream) { no_cuda("gemm"); }
void gemm_batched(const GemmArgs&, const GemmBatch&, Stream) { no_cuda("gemm_batched"); }
void layer_norm(const LayerNormArgs&, Stream) { no_cuda("layer_norm"); }
void bias_act(float*, const float*, std::int64_t, int, Activation, Stream) { no_cuda("bias_act"); }
void softmax_rows(float*, std::int64_t, int, float, Stream) { no_cuda("softmax_rows"); }
void add_scaled(float*, const float*, const float*, std::int64_t, int, Stream) { no_cuda("add_scaled"); }
void vit_embed(const VitEmbedArgs&, Stream) { no_cuda("vit_embed"); }
void depthwise_conv2d(const DwConv2dArgs&, Stream) { no_cuda("depthwise_conv2d"); }
void gather_rows(float*, std::int64_t, const float*, std::int64_t, const std::int64_t*, std::int64_t, int, Stream) {
    no_cuda("gather_rows");
}
void merge_rows(float*, const float*, const std::int64_t*, int, std::int64_t, int, Stream) { no_cuda("merge_rows"); }
void mul_silu(float*, const float*, std::int64_t, std::int64_t, int, Stream) { no_cuda("mul_silu"); }
}  // namespace vlmamba::cuda
