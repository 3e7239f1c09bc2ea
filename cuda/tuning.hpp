// Knobs and probes of the CUDA box for its benchmark and tests only (not installed, not part of the API): the
// scan kernel's states per thread, programmatic dependent launch, and a device read probe.
#pragma once
#include <cstddef>
#include <cstdint>

#include "vlmamba/cuda/api.hpp"

namespace vlmamba::cuda {

// States per thread of the scan kernel, 1, 2 or 4 (1 only while d_state <= 16), or 0 for the automatic choice (2;
// 4 for f32 on large grids). Fewer states per thread mean more warps and more instructions per state.
void set_scan_states_per_thread(int spt);

// Decode kernels start while their predecessor finishes (programmatic dependent launch, also inside graphs); on by
// default. Off: each kernel waits for the previous one to end, as plain launches do (for comparison).
void set_programmatic_launch(bool on);

// Reads `bytes` (a multiple of 16, 16-byte aligned) once with streaming loads; `sink` (one u32) is written only
// in a case that never happens, so the loads stay. Timed, it gives the device read bandwidth.
void read_probe(const void* p, std::size_t bytes, std::uint32_t* sink, Stream s = nullptr);

}  // namespace vlmamba::cuda
