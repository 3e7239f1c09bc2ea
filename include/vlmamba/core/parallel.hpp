// Thread count (OpenMP and Eigen share it) and a parallel loop over [0, n).
#pragma once
#include <algorithm>
#include <cstdint>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <Eigen/Core>

namespace vlmamba {

// Sets the threads used by every parallel op; n <= 0 restores the default (all cores).
inline void set_num_threads(int n) {
#ifdef _OPENMP
    if (n <= 0) n = omp_get_num_procs();
    omp_set_num_threads(n);
#endif
    Eigen::setNbThreads(std::max(n, 1));
}

inline int num_threads() {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

// Runs f(i) for i in [0, n), split across threads when n * cost_per_item is worth it.
template <class F>
void parallel_for(std::int64_t n, F&& f, std::int64_t cost_per_item = 1) {
#ifdef _OPENMP
    if (n > 1 && n * cost_per_item >= 32768 && !omp_in_parallel()) {
#pragma omp parallel for schedule(static)
        for (std::int64_t i = 0; i < n; ++i) f(i);
        return;
    }
#endif
    (void)cost_per_item;
    for (std::int64_t i = 0; i < n; ++i) f(i);
}

}  // namespace vlmamba
