// CudaMambaLm: the Mamba LM of models/mamba_lm.hpp run on the GPU through the closed box vlmamba::cuda, with the
// same op order (mamba_ssm models/mixer_seq_simple.py: MambaLMHeadModel; modules/mamba_simple.py: Mamba.forward
// and Mamba.step). The residual stream, the states and every activation are f32; the big matrices (embedding,
// in_proj, x_proj, dt_proj, out_proj, lm_head) are f32 or bf16 on the device, the small parameters f32.
//
// Prefill goes through cuBLAS (tf32 optional for f32 weights; bf16 weights multiply bf16-rounded activations)
// and the chunked selective scan. Decode of B sequences runs one step per token: B <= 8 uses the weight-read
// bound gemv with f32 activations (the RMSNorm and the residual add fused into it), larger B cuBLAS; dt_proj is
// fused into the state update. Each CudaMambaState owns its decode workspace and the CUDA graph of its step: the
// first step of a state runs eagerly and captures the graph, later steps replay it.
#pragma once
#include <span>
#include <utility>
#include <vector>

#include "vlmamba/cuda/api.hpp"
#include "vlmamba/cuda/device_buffer.hpp"
#include "vlmamba/cuda/decode.hpp"
#include "vlmamba/models/mamba_lm.hpp"

namespace vlmamba {

// Decode state of B sequences on the device, for the model that made it (move-only; clone() snapshots).
struct CudaMambaState {
    int batch = 0;
    DeviceBuffer conv;  // (n_layer, B, E, K) f32
    DeviceBuffer ssm;   // (n_layer, B, E, N) f32
    DeviceBuffer work;  // decode workspace of the step
    cuda::Graph graph;  // the captured step; empty until the first step
    const void* owner = nullptr;

    CudaMambaState() = default;
    ~CudaMambaState() { drop_graph(); }
    CudaMambaState(CudaMambaState&& o) noexcept { *this = std::move(o); }
    CudaMambaState& operator=(CudaMambaState&& o) noexcept {
        if (this != &o) {
            drop_graph();
            batch = o.batch;
            conv = std::move(o.conv);
            ssm = std::move(o.ssm);
            work = std::move(o.work);
            graph = std::exchange(o.graph, cuda::Graph{});
            owner = o.owner;
        }
        return *this;
    }
    // A deep copy of the states (the copy captures its own graph at its first step).
    CudaMambaState clone() const;

private:
    void drop_graph() noexcept {
        if (graph.exec) try { cuda::graph_destroy(graph); } catch (...) {}
        graph = {};
    }
};

class CudaMambaLm {
public:
    struct Layer {
        DeviceBuffer norm_weight;      // (D) f32
        DeviceBuffer in_proj_weight;   // (2E, D)
        DeviceBuffer conv1d_weight;    // (E, K) f32
        DeviceBuffer conv1d_bias;      // (E) f32, empty without conv bias
        DeviceBuffer x_proj_weight;    // (R + 2N, E)
        DeviceBuffer dt_proj_weight;   // (E, R)
        DeviceBuffer dt_proj_bias;     // (E) f32
        DeviceBuffer A;                // (E, N) f32 = −exp(A_log)
        DeviceBuffer D;                // (E) f32
        DeviceBuffer out_proj_weight;  // (D, E)
    };
    MambaConfig cfg;
    DType weight_dtype = DType::F32;  // of the big matrices
    bool tf32 = false;                // f32 weights: prefill products on tf32 tensor cores
    // Decode with B <= 8: each block's RMSNorm and conv update ride in its in_proj gemv and the residual add in its
    // out_proj gemv (three kernels fewer per layer). Takes effect when a state captures its step graph.
    bool fuse_norm = true;
    DeviceBuffer embedding;           // (V, D)
    std::vector<Layer> layers;
    DeviceBuffer norm_f_weight;       // (D) f32
    DeviceBuffer lm_head;             // (V, D); empty when tied to the embedding

    // Device buffers of the right sizes, uninitialised (benchmarks fill them; upload() copies a MambaLm in).
    static CudaMambaLm allocate(const MambaConfig& cfg, DType weights = DType::F32, bool tied = true);
    static CudaMambaLm upload(const MambaLm& lm, DType weights = DType::F32, bool tf32 = false);

    CudaMambaLm() = default;
    ~CudaMambaLm();
    CudaMambaLm(CudaMambaLm&& o) noexcept;
    CudaMambaLm& operator=(CudaMambaLm&& o) noexcept;

    // Full-sequence logits (L, V) on the host.
    Tensor forward(std::span<const std::int32_t> ids) const;
    CudaMambaState new_state(int batch) const;
    // Prefill of one sequence into state slot `slot` -> logits of the last position (1, V).
    Tensor prefill(std::span<const std::int32_t> ids, CudaMambaState& state, int slot = 0) const;
    Tensor prefill_embeds(const Tensor& embeds, CudaMambaState& state, int slot = 0) const;  // (L, D) host
    // One token for each of the B sequences -> logits (B, V) on the host.
    Tensor step(std::span<const std::int32_t> tokens, CudaMambaState& state) const;
    // The same step, returning only each row's argmax (greedy ids), so that no logits cross the bus.
    std::vector<std::int32_t> step_greedy(std::span<const std::int32_t> tokens, CudaMambaState& state) const;
    // The states as a host MambaState (for tests and hand-over to the CPU model).
    MambaState download(const CudaMambaState& state) const;

    const void* head() const { return lm_head.get() ? lm_head.get() : embedding.get(); }
    // Bytes of weights read by one decode step (all matrices and vectors but the embedding table).
    std::size_t step_weight_bytes() const;

private:
    struct Prefill;
    struct StepBuffers;
    cuda::Stream stream_ = nullptr;

    void check_ids(std::span<const std::int32_t> ids, const char* op) const;
    void check_slot(const CudaMambaState& st, int slot) const;
    // y (m, n) = x (m, k) · Wᵀ, x f32 with row stride ldx; scratch holds bf16 x for cuBLAS when weights are bf16.
    void linear(int m, int n, int k, const float* x, int ldx, void* scratch, const void* w, float* y, int ldy) const;
    // The blocks over the residual stream in w (L rows); fills the states of `slot` when st is given.
    void run_blocks(Prefill& w, CudaMambaState* st, int slot) const;
    Tensor prefill_device(Prefill& w, CudaMambaState& st, int slot) const;
    StepBuffers step_buffers(const CudaMambaState& st) const;
    void step_body(const StepBuffers& b, CudaMambaState& st) const;
    void run_step(std::span<const std::int32_t> tokens, CudaMambaState& st) const;
};

// ---------------------------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------------------------

namespace detail {

// Carves 256-byte aligned pieces out of one device allocation: a first pass sizes, a second hands out pointers.
struct DeviceCarver {
    char* base = nullptr;
    std::size_t offset = 0;
    template <class T>
    T* take(std::size_t n) {
        T* p = reinterpret_cast<T*>(base + offset);
        offset += (n * sizeof(T) + 255) / 256 * 256;
        return p;
    }
};

// Copies host tensor t, converted to dt, into b, whose size must match.
inline void fill_device(DeviceBuffer& b, const Tensor& t, DType dt, const char* name) {
    const Tensor c = t.to(dt);  // contiguous, converted
    VLM_CHECK(c.nbytes() == b.bytes(), "cuda_mamba_lm.upload", name, " has shape ", shape_str(t.shape()), " (",
              c.nbytes(), " bytes as ", dtype_name(dt), "), expected ", b.bytes(), " bytes");
    cuda::copy_h2d(b.get(), c.raw(), c.nbytes());
}

}  // namespace detail

// Per-call prefill workspace for L rows.
struct CudaMambaLm::Prefill {
    int L = 0;
    DeviceBuffer mem;
    std::int32_t* ids = nullptr;
    float *res = nullptr, *h = nullptr, *xn = nullptr, *xz = nullptr, *xc = nullptr, *xdbl = nullptr, *dt = nullptr,
          *y = nullptr, *logits = nullptr;
    void* scratch = nullptr;  // bf16 copies of activations for cuBLAS

    Prefill(const MambaConfig& c, int L_, std::int64_t logit_rows) : L(L_) {
        const std::size_t D = c.d_model, E = c.d_inner, NB = c.dt_rank + 2 * c.d_state, Ls = std::size_t(L);
        auto carve = [&](detail::DeviceCarver& k) {
            ids = k.take<std::int32_t>(Ls);
            res = k.take<float>(Ls * D);
            h = k.take<float>(Ls * D);
            xn = k.take<float>(Ls * D);
            xz = k.take<float>(Ls * 2 * E);
            xc = k.take<float>(Ls * E);
            xdbl = k.take<float>(Ls * NB);
            dt = k.take<float>(Ls * E);
            y = k.take<float>(Ls * E);
            logits = k.take<float>(std::size_t(logit_rows) * c.vocab_size);
            scratch = k.take<std::uint16_t>(Ls * std::max({D, E, NB}));
        };
        detail::DeviceCarver sizing;
        carve(sizing);
        mem = DeviceBuffer(sizing.offset);
        detail::DeviceCarver real{mem.as<char>()};
        carve(real);
    }
};

// Decode workspace of a state for B sequences, carved out of CudaMambaState::work.
struct CudaMambaLm::StepBuffers {
    std::int32_t *tokens = nullptr, *next = nullptr;
    float *res = nullptr, *h = nullptr, *xn = nullptr, *xz = nullptr, *xc = nullptr, *xdbl = nullptr, *y = nullptr,
          *logits = nullptr;
    void* scratch = nullptr;

    template <class Carver>
    void carve(Carver& k, const MambaConfig& c, int B) {
        const std::size_t D = c.d_model, E = c.d_inner, NB = c.dt_rank + 2 * c.d_state, Bs = std::size_t(B);
        tokens = k.template take<std::int32_t>(Bs);
        next = k.template take<std::int32_t>(Bs);
        res = k.template take<float>(Bs * D);
        h = k.template take<float>(Bs * D);
        xn = k.template take<float>(Bs * D);
        xz = k.template take<float>(Bs * 2 * E);
        xc = k.template take<float>(Bs * E);
        xdbl = k.template take<float>(Bs * NB);
        y = k.template take<float>(Bs * E);
        logits = k.template take<float>(Bs * c.vocab_size);
        scratch = k.template take<std::uint16_t>(Bs * std::max({D, E, NB}));
    }
};

inline CudaMambaState CudaMambaState::clone() const {
    CudaMambaState s;
    s.batch = batch;
    s.owner = owner;
    s.conv = DeviceBuffer(conv.bytes());
    s.ssm = DeviceBuffer(ssm.bytes());
    s.work = DeviceBuffer(work.bytes());
    cuda::synchronize();
    cuda::copy_d2d(s.conv.get(), conv.get(), conv.bytes());
    cuda::copy_d2d(s.ssm.get(), ssm.get(), ssm.bytes());
    cuda::synchronize();
    return s;
}

inline CudaMambaLm::~CudaMambaLm() {
    if (stream_) try { cuda::stream_destroy(stream_); } catch (...) {}
}

inline CudaMambaLm::CudaMambaLm(CudaMambaLm&& o) noexcept { *this = std::move(o); }

inline CudaMambaLm& CudaMambaLm::operator=(CudaMambaLm&& o) noexcept {
    if (this != &o) {
        if (stream_) try { cuda::stream_destroy(stream_); } catch (...) {}
        cfg = o.cfg;
        weight_dtype = o.weight_dtype;
        tf32 = o.tf32;
        fuse_norm = o.fuse_norm;
        embedding = std::move(o.embedding);
        layers = std::move(o.layers);
        norm_f_weight = std::move(o.norm_f_weight);
        lm_head = std::move(o.lm_head);
        stream_ = std::exchange(o.stream_, nullptr);
    }
    return *this;
}

inline CudaMambaLm CudaMambaLm::allocate(const MambaConfig& c, DType weights, bool tied) {
    constexpr const char* op = "cuda_mamba_lm";
    VLM_CHECK(weights == DType::F32 || weights == DType::BF16, op, "expected F32 or BF16 weights, got ",
              dtype_name(weights));
    VLM_CHECK(c.d_model >= 1 && c.d_inner >= 1 && c.vocab_size >= 1 && c.dt_rank >= 1 && c.n_layer >= 1, op,
              "expected a complete config, got d_model ", c.d_model, ", d_inner ", c.d_inner, ", vocab ",
              c.vocab_size, ", dt_rank ", c.dt_rank, ", n_layer ", c.n_layer);
    VLM_CHECK(c.d_state >= 1 && c.d_state <= scan_max_state && c.d_conv >= 1 && c.d_conv <= 8, op,
              "expected 1 <= d_state <= ", scan_max_state, " and 1 <= d_conv <= 8, got ", c.d_state, " and ",
              c.d_conv);
    VLM_CHECK(!c.proj_bias, op, "expected in_proj/out_proj without bias, got proj_bias true");
    VLM_CHECK(cuda::available(), op, "expected a CUDA device, got none");
    const std::size_t ws = dtype_size(weights), D = c.d_model, E = c.d_inner, N = c.d_state, K = c.d_conv,
                      R = c.dt_rank, V = c.vocab_size;
    CudaMambaLm m;
    m.cfg = c;
    m.weight_dtype = weights;
    m.embedding = DeviceBuffer(V * D * ws);
    for (int i = 0; i < c.n_layer; ++i) {
        Layer l;
        l.norm_weight = DeviceBuffer(D * 4);
        l.in_proj_weight = DeviceBuffer(2 * E * D * ws);
        l.conv1d_weight = DeviceBuffer(E * K * 4);
        if (c.conv_bias) l.conv1d_bias = DeviceBuffer(E * 4);
        l.x_proj_weight = DeviceBuffer((R + 2 * N) * E * ws);
        l.dt_proj_weight = DeviceBuffer(E * R * ws);
        l.dt_proj_bias = DeviceBuffer(E * 4);
        l.A = DeviceBuffer(E * N * 4);
        l.D = DeviceBuffer(E * 4);
        l.out_proj_weight = DeviceBuffer(D * E * ws);
        m.layers.push_back(std::move(l));
    }
    m.norm_f_weight = DeviceBuffer(D * 4);
    if (!tied) m.lm_head = DeviceBuffer(V * D * ws);
    m.stream_ = cuda::stream_create();
    (void)cuda::sm_count();  // cached before any graph capture
    return m;
}

inline CudaMambaLm CudaMambaLm::upload(const MambaLm& lm, DType weights, bool tf32) {
    const bool tied = lm.lm_head.raw() == lm.embedding.raw();
    CudaMambaLm m = allocate(lm.cfg, weights, tied);
    m.tf32 = tf32;
    auto put = [](DeviceBuffer& b, const Tensor& t, DType dt, const char* name) { detail::fill_device(b, t, dt, name); };
    put(m.embedding, lm.embedding, weights, "embedding");
    for (int i = 0; i < lm.cfg.n_layer; ++i) {
        const MambaBlock& b = lm.layers[i];
        const MambaMixer& x = b.mixer;
        Layer& l = m.layers[i];
        put(l.norm_weight, b.norm_weight, DType::F32, "norm.weight");
        put(l.in_proj_weight, x.in_proj_weight, weights, "in_proj.weight");
        put(l.conv1d_weight, x.conv1d_weight, DType::F32, "conv1d.weight");
        if (lm.cfg.conv_bias) put(l.conv1d_bias, x.conv1d_bias, DType::F32, "conv1d.bias");
        put(l.x_proj_weight, x.x_proj_weight, weights, "x_proj.weight");
        put(l.dt_proj_weight, x.dt_proj_weight, weights, "dt_proj.weight");
        put(l.dt_proj_bias, x.dt_proj_bias, DType::F32, "dt_proj.bias");
        put(l.A, x.A, DType::F32, "A");
        put(l.D, x.D, DType::F32, "D");
        put(l.out_proj_weight, x.out_proj_weight, weights, "out_proj.weight");
    }
    put(m.norm_f_weight, lm.norm_f_weight, DType::F32, "norm_f.weight");
    if (!tied) put(m.lm_head, lm.lm_head, weights, "lm_head.weight");
    return m;
}

inline std::size_t CudaMambaLm::step_weight_bytes() const {
    std::size_t n = norm_f_weight.bytes() + std::size_t(cfg.vocab_size) * cfg.d_model * dtype_size(weight_dtype);
    for (const Layer& l : layers)
        n += l.norm_weight.bytes() + l.in_proj_weight.bytes() + l.conv1d_weight.bytes() + l.conv1d_bias.bytes() +
             l.x_proj_weight.bytes() + l.dt_proj_weight.bytes() + l.dt_proj_bias.bytes() + l.A.bytes() +
             l.D.bytes() + l.out_proj_weight.bytes();
    return n;
}

inline void CudaMambaLm::check_ids(std::span<const std::int32_t> ids, const char* op) const {
    for (std::size_t t = 0; t < ids.size(); ++t)
        VLM_CHECK(ids[t] >= 0 && ids[t] < cfg.vocab_size, op, "token id ", ids[t], " at position ", t,
                  " is outside the embedding: expected 0 <= id < ", cfg.vocab_size);
}

inline void CudaMambaLm::linear(int m, int n, int k, const float* x, int ldx, void* scratch, const void* w, float* y,
                                int ldy) const {
    if (m <= 8) {
        cuda::gemv({m, n, k, x, w, weight_dtype, y, ldx, ldy}, stream_);
    } else if (weight_dtype == DType::BF16) {
        cuda::convert(scratch, DType::BF16, x, DType::F32, std::int64_t(m) * ldx, stream_);
        cuda::gemm({m, n, k, scratch, w, y, DType::BF16, DType::F32, false, 1.0f, 0.0f, ldx, 0, ldy}, stream_);
    } else {
        cuda::gemm({m, n, k, x, w, y, DType::F32, DType::F32, tf32, 1.0f, 0.0f, ldx, 0, ldy}, stream_);
    }
}

// mixer_seq_simple.py: Block (fused add + RMSNorm) then mamba_simple.py: Mamba.forward per layer.
inline void CudaMambaLm::run_blocks(Prefill& w, CudaMambaState* st, int slot) const {
    const int L = w.L, D = cfg.d_model, E = cfg.d_inner, N = cfg.d_state, K = cfg.d_conv, R = cfg.dt_rank;
    const int NB = R + 2 * N;
    for (int i = 0; i < cfg.n_layer; ++i) {
        const Layer& l = layers[i];
        // residual += h (from the previous block), xn = rms_norm(residual) · w
        cuda::rms_norm({L, D, i ? w.h : nullptr, w.res, l.norm_weight.get(), DType::F32, w.xn, DType::F32,
                        cfg.norm_eps}, stream_);
        linear(L, 2 * E, D, w.xn, D, w.scratch, l.in_proj_weight.get(), w.xz, 2 * E);  // (L, 2E)
        float* conv_state = st ? st->conv.as<float>() + (std::size_t(i) * st->batch + slot) * E * K : nullptr;
        cuda::causal_conv1d({1, L, E, K, w.xz, l.conv1d_weight.as<float>(), l.conv1d_bias.as<float>(), true, w.xc,
                             conv_state, 2 * E}, stream_);                                 // (L, E)
        linear(L, NB, E, w.xc, E, w.scratch, l.x_proj_weight.get(), w.xdbl, NB);          // (L, R + 2N)
        linear(L, E, R, w.xdbl, NB, w.scratch, l.dt_proj_weight.get(), w.dt, E);         // (L, E), bias in the scan
        ScanArgs a{};
        a.batch = 1, a.length = L, a.d_inner = E, a.d_state = N;
        a.u = w.xc;
        a.delta = w.dt;
        a.A = l.A.as<float>();
        a.Bm = w.xdbl + R;      // (L, N) columns of x_dbl
        a.Cm = w.xdbl + R + N;  // (L, N)
        a.D = l.D.as<float>();
        a.z = w.xz + E;
        a.ld_z = 2 * E;
        a.delta_bias = l.dt_proj_bias.as<float>();
        a.delta_softplus = true;
        a.h = st ? st->ssm.as<float>() + (std::size_t(i) * st->batch + slot) * E * N : nullptr;
        a.y = w.y;
        a.ld_bc = NB;
        cuda::selective_scan(a, DType::F32, stream_);                                      // (L, E)
        linear(L, D, E, w.y, E, w.scratch, l.out_proj_weight.get(), w.h, D);             // (L, D)
    }
}

inline Tensor CudaMambaLm::forward(std::span<const std::int32_t> ids) const {
    VLM_CHECK(!ids.empty(), "cuda_mamba_lm", "expected a non-empty prompt, got 0 tokens");
    check_ids(ids, "cuda_mamba_lm.embed");
    const int L = int(ids.size()), D = cfg.d_model, V = cfg.vocab_size;
    Prefill w(cfg, L, L);
    cuda::copy_h2d(w.ids, ids.data(), ids.size_bytes());
    cuda::synchronize();
    cuda::embedding(w.res, embedding.get(), weight_dtype, w.ids, L, D, V, stream_);
    run_blocks(w, nullptr, 0);
    cuda::rms_norm({L, D, w.h, w.res, norm_f_weight.get(), DType::F32, w.xn, DType::F32, cfg.norm_eps}, stream_);
    linear(L, V, D, w.xn, D, w.scratch, head(), w.logits, V);  // (L, V)
    Tensor out = Tensor::empty({L, V});
    cuda::synchronize();
    cuda::copy_d2h(out.data<float>(), w.logits, out.nbytes());
    return out;
}

inline CudaMambaState CudaMambaLm::new_state(int batch) const {
    VLM_CHECK(batch >= 1, "cuda_mamba_lm.new_state", "expected batch >= 1, got ", batch);
    CudaMambaState s;
    s.batch = batch;
    s.owner = embedding.get();
    const std::size_t per = std::size_t(cfg.n_layer) * batch * cfg.d_inner;
    s.conv = DeviceBuffer(per * cfg.d_conv * 4);
    s.ssm = DeviceBuffer(per * cfg.d_state * 4);
    StepBuffers sizing;
    detail::DeviceCarver k;
    sizing.carve(k, cfg, batch);
    s.work = DeviceBuffer(k.offset);
    cuda::memset0(s.conv.get(), s.conv.bytes());
    cuda::memset0(s.ssm.get(), s.ssm.bytes());
    cuda::synchronize();
    return s;
}

inline void CudaMambaLm::check_slot(const CudaMambaState& st, int slot) const {
    VLM_CHECK(st.owner == embedding.get(), "cuda_mamba_lm.prefill", "expected a state made by this model, got another");
    VLM_CHECK(slot >= 0 && slot < st.batch, "cuda_mamba_lm.prefill", "expected a state slot in [0, ", st.batch,
              "), got ", slot);
}

inline Tensor CudaMambaLm::prefill_device(Prefill& w, CudaMambaState& st, int slot) const {
    const int L = w.L, D = cfg.d_model, V = cfg.vocab_size;
    run_blocks(w, &st, slot);
    const std::size_t last = std::size_t(L - 1) * D;
    cuda::rms_norm({1, D, w.h + last, w.res + last, norm_f_weight.get(), DType::F32, w.xn, DType::F32, cfg.norm_eps},
                   stream_);
    linear(1, V, D, w.xn, D, w.scratch, head(), w.logits, V);  // (1, V)
    Tensor out = Tensor::empty({1, V});
    cuda::synchronize();
    cuda::copy_d2h(out.data<float>(), w.logits, out.nbytes());
    return out;
}

inline Tensor CudaMambaLm::prefill(std::span<const std::int32_t> ids, CudaMambaState& st, int slot) const {
    VLM_CHECK(!ids.empty(), "cuda_mamba_lm", "expected a non-empty prompt, got 0 tokens");
    check_ids(ids, "cuda_mamba_lm.embed");
    check_slot(st, slot);
    const int L = int(ids.size());
    Prefill w(cfg, L, 1);
    cuda::copy_h2d(w.ids, ids.data(), ids.size_bytes());
    cuda::synchronize();
    cuda::embedding(w.res, embedding.get(), weight_dtype, w.ids, L, cfg.d_model, cfg.vocab_size, stream_);
    return prefill_device(w, st, slot);
}

inline Tensor CudaMambaLm::prefill_embeds(const Tensor& embeds, CudaMambaState& st, int slot) const {
    VLM_CHECK(embeds.ndim() == 2 && embeds.size(1) == cfg.d_model && embeds.size(0) > 0, "cuda_mamba_lm",
              "embeddings have shape ", shape_str(embeds.shape()), ", expected (L, ", cfg.d_model, ") with L > 0");
    check_slot(st, slot);
    const Tensor e = embeds.to(DType::F32);  // (L, D) contiguous
    Prefill w(cfg, int(e.size(0)), 1);
    cuda::copy_h2d(w.res, e.data<float>(), e.nbytes());
    cuda::synchronize();
    return prefill_device(w, st, slot);
}

inline CudaMambaLm::StepBuffers CudaMambaLm::step_buffers(const CudaMambaState& st) const {
    StepBuffers b;
    detail::DeviceCarver k{st.work.as<char>()};
    b.carve(k, cfg, st.batch);
    return b;
}

// Everything one decode step enqueues (mamba_simple.py: Mamba.step per layer), from the token ids in b.tokens to
// the logits and their argmax: the body of the graph.
inline void CudaMambaLm::step_body(const StepBuffers& b, CudaMambaState& st) const {
    const int B = st.batch, D = cfg.d_model, E = cfg.d_inner, N = cfg.d_state, K = cfg.d_conv, R = cfg.dt_rank;
    const int NB = R + 2 * N, V = cfg.vocab_size;
    const bool fused = fuse_norm && B <= 8;
    cuda::embedding(b.res, embedding.get(), weight_dtype, b.tokens, B, D, V, stream_);  // (B, D)
    for (int i = 0; i < cfg.n_layer; ++i) {
        const Layer& l = layers[i];
        float* conv_state = st.conv.as<float>() + std::size_t(i) * B * E * K;
        if (fused) {  // xz = rms_norm(residual) · W_inᵀ in one gemv, the conv update of x in its epilogue
            cuda::GemvArgs g{B, 2 * E, D, b.res, l.in_proj_weight.get(), weight_dtype, b.xz, D, 2 * E};
            g.norm_w = l.norm_weight.as<float>();
            g.norm_eps = cfg.norm_eps;
            g.conv_state = conv_state;
            g.conv_w = l.conv1d_weight.as<float>();
            g.conv_bias = l.conv1d_bias.as<float>();
            g.conv_y = b.xc;
            g.conv_e = E, g.conv_k = K;
            cuda::gemv(g, stream_);                                                            // (B, 2E), (B, E)
        } else {
            cuda::rms_norm({B, D, i ? b.h : nullptr, b.res, l.norm_weight.get(), DType::F32, b.xn, DType::F32,
                            cfg.norm_eps}, stream_);
            linear(B, 2 * E, D, b.xn, D, b.scratch, l.in_proj_weight.get(), b.xz, 2 * E);    // (B, 2E)
            cuda::causal_conv1d_update({B, E, K, conv_state, b.xz, l.conv1d_weight.as<float>(),
                                        l.conv1d_bias.as<float>(), true, b.xc, 2 * E}, stream_);  // (B, E)
        }
        linear(B, NB, E, b.xc, E, b.scratch, l.x_proj_weight.get(), b.xdbl, NB);              // (B, R + 2N)
        // dt_proj fused into the state update: Δ (B, E) = x_dbl[:, :R] · W_dtᵀ inside the kernel
        StateUpdateArgs a{};
        a.batch = B, a.d_inner = E, a.d_state = N;
        a.h = st.ssm.as<float>() + std::size_t(i) * B * E * N;
        a.x = b.xc;
        a.A = l.A.as<float>();
        a.Bm = b.xdbl + R;      // (B, N) columns of x_dbl
        a.Cm = b.xdbl + R + N;  // (B, N)
        a.D = l.D.as<float>();
        a.z = b.xz + E;
        a.ld_z = 2 * E;
        a.delta_bias = l.dt_proj_bias.as<float>();
        a.delta_softplus = true;
        a.y = b.y;
        a.ld_bc = NB;
        cuda::selective_state_update_dt({a, b.xdbl, l.dt_proj_weight.get(), weight_dtype, R, NB}, stream_);  // (B, E)
        if (fused) {  // residual += y · W_outᵀ
            cuda::GemvArgs g{B, D, E, b.y, l.out_proj_weight.get(), weight_dtype, b.res, E, D};
            g.accumulate = true;
            cuda::gemv(g, stream_);                                                            // (B, D)
        } else {
            linear(B, D, E, b.y, E, b.scratch, l.out_proj_weight.get(), b.h, D);             // (B, D)
        }
    }
    if (fused) {  // logits = rms_norm_f(residual) · headᵀ
        cuda::GemvArgs g{B, V, D, b.res, head(), weight_dtype, b.logits, D, V};
        g.norm_w = norm_f_weight.as<float>();
        g.norm_eps = cfg.norm_eps;
        cuda::gemv(g, stream_);                                                                // (B, V)
    } else {
        cuda::rms_norm({B, D, b.h, b.res, norm_f_weight.get(), DType::F32, b.xn, DType::F32, cfg.norm_eps}, stream_);
        linear(B, V, D, b.xn, D, b.scratch, head(), b.logits, V);                            // (B, V)
    }
    cuda::argmax_rows(b.next, b.logits, B, V, stream_);
}

inline void CudaMambaLm::run_step(std::span<const std::int32_t> tokens, CudaMambaState& st) const {
    VLM_CHECK(st.owner == embedding.get(), "cuda_mamba_lm.step", "expected a state made by this model, got another");
    VLM_CHECK(std::int64_t(tokens.size()) == st.batch, "cuda_mamba_lm.step", "expected ", st.batch,
              " tokens (one per sequence), got ", tokens.size());
    check_ids(tokens, "cuda_mamba_lm.embed");
    const StepBuffers b = step_buffers(st);
    cuda::copy_h2d(b.tokens, tokens.data(), tokens.size_bytes());
    cuda::synchronize();
    // PDL measured: +5% at B 1, -6% at B 8 (gemv path), +3% at B 64 (cuBLAS path)
    const cuda::ProgrammaticLaunchScope pdl(st.batch == 1 || st.batch > 8);
    if (st.graph.exec) {
        cuda::graph_launch(st.graph, stream_);
    } else {
        // The first step runs eagerly (it also initialises cuBLAS outside any capture), then the graph is captured
        // for the next ones; capturing enqueues nothing.
        step_body(b, st);
        cuda::synchronize();
        st.graph = cuda::graph_capture(stream_, [&] { step_body(b, st); });
    }
    cuda::synchronize();
}

inline Tensor CudaMambaLm::step(std::span<const std::int32_t> tokens, CudaMambaState& st) const {
    run_step(tokens, st);
    Tensor out = Tensor::empty({st.batch, cfg.vocab_size});
    cuda::copy_d2h(out.data<float>(), step_buffers(st).logits, out.nbytes());
    return out;
}

inline std::vector<std::int32_t> CudaMambaLm::step_greedy(std::span<const std::int32_t> tokens,
                                                          CudaMambaState& st) const {
    run_step(tokens, st);
    std::vector<std::int32_t> ids(std::size_t(st.batch));
    cuda::copy_d2h(ids.data(), step_buffers(st).next, ids.size() * sizeof(std::int32_t));
    return ids;
}

inline MambaState CudaMambaLm::download(const CudaMambaState& st) const {
    const std::int64_t B = st.batch, E = cfg.d_inner, K = cfg.d_conv, N = cfg.d_state;
    MambaState s;
    s.batch = st.batch;
    cuda::synchronize();
    for (int i = 0; i < cfg.n_layer; ++i) {
        Tensor c = Tensor::empty({B, E, K}), h = Tensor::empty({B, E, N});
        cuda::copy_d2h(c.data<float>(), st.conv.as<float>() + i * B * E * K, c.nbytes());
        cuda::copy_d2h(h.data<float>(), st.ssm.as<float>() + i * B * E * N, h.nbytes());
        s.conv.push_back(std::move(c));
        s.ssm.push_back(std::move(h));
    }
    return s;
}

}  // namespace vlmamba
