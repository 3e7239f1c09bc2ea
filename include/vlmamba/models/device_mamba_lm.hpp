// A Mamba LM on a chosen device behind one interface: load(dir, {.device = Device::Cuda}) or on the CPU, then
// prefill one sequence and decode it recurrently. The CPU path is MambaLm + MambaState; the CUDA path uploads the
// same weights into a CudaMambaLm (graph-replayed decode). Needs vlmamba::cuda linked; built without CUDA, asking
// for Device::Cuda throws "vlmamba was built without CUDA".
#pragma once
#include <filesystem>
#include <memory>
#include <optional>
#include <span>

#include "vlmamba/core/device.hpp"
#include "vlmamba/models/load_mamba.hpp"
#include "vlmamba/models/mamba_lm.hpp"
#include "vlmamba/models/mamba_lm_cuda.hpp"

namespace vlmamba {

struct LoadOptions {
    Device device = Device::Cpu;
    DType weights = DType::F32;  // on CUDA: the big matrices in F32 or BF16 (f32 activations and state)
    bool tf32 = false;           // on CUDA with F32 weights: prefill products on tf32 tensor cores
};

class DeviceMambaLm {
public:
    // config.json + safetensors of a Mamba checkpoint (load_mamba_lm), placed on o.device.
    static DeviceMambaLm load(const std::filesystem::path& dir, const LoadOptions& o = {}) {
        return from(load_mamba_lm(dir), o);
    }
    // Takes a CPU model; on CUDA its weights are uploaded and the host copy is released.
    static DeviceMambaLm from(MambaLm lm, const LoadOptions& o = {}) {
        DeviceMambaLm m;
        m.device_ = o.device;
        m.cfg_ = lm.cfg;
        if (o.device == Device::Cuda) {
#ifdef VLMAMBA_WITH_CUDA
            VLM_CHECK(cuda::available(), "device_mamba_lm", "expected a CUDA device for Device::Cuda, got none");
#else
            fail("device_mamba_lm", "Device::Cuda: vlmamba was built without CUDA (configure with -DVLMAMBA_CUDA=ON "
                 "where nvcc is found)");
#endif
            m.gpu_ = std::make_unique<CudaMambaLm>(CudaMambaLm::upload(lm, o.weights, o.tf32));
            m.gpu_state_.emplace(m.gpu_->new_state(1));
        } else {
            m.cpu_ = std::make_unique<MambaLm>(std::move(lm));
            m.cpu_state_.emplace(m.cpu_->new_state(1));
        }
        return m;
    }

    Device device() const { return device_; }
    const MambaConfig& config() const { return cfg_; }
    const MambaLm* cpu_model() const { return cpu_.get(); }  // null on CUDA
    const CudaMambaLm* cuda_model() const { return gpu_.get(); }  // null on the CPU

    // Prefill of one sequence from a fresh state: (L, D) input embeddings -> logits of the last position (1, V).
    Tensor prefill(const Tensor& embeds) {
        reset();
        if (gpu_) return gpu_->prefill_embeds(embeds, *gpu_state_);
        const Tensor h = cpu_->forward_hidden(embeds, &*cpu_state_);  // (L, D)
        return cpu_->logits(h.slice(0, h.size(0) - 1, h.size(0)));    // (1, V)
    }
    Tensor prefill(std::span<const std::int32_t> ids) {
        reset();
        if (gpu_) return gpu_->prefill(ids, *gpu_state_);
        return prefill(cpu_->embed(ids));
    }
    // One recurrent step after the prefill: the next token -> its logits (1, V).
    Tensor step(std::int32_t id) {
        const std::span<const std::int32_t> one(&id, 1);
        return gpu_ ? gpu_->step(one, *gpu_state_) : cpu_->step(one, *cpu_state_);
    }
    void reset() {
        if (gpu_) gpu_state_.emplace(gpu_->new_state(1));
        else cpu_state_.emplace(cpu_->new_state(1));
    }

private:
    Device device_ = Device::Cpu;
    MambaConfig cfg_;
    std::unique_ptr<MambaLm> cpu_;
    std::optional<MambaState> cpu_state_;
    std::unique_ptr<CudaMambaLm> gpu_;
    std::optional<CudaMambaState> gpu_state_;
};

}  // namespace vlmamba
