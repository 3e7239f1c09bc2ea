// Threads: one process-wide budget (default: all cores) shared by every caller, and a parallel loop over [0, n).
// Several threads may call the library at once (the session API, the server). Each parallel region leases what is
// left of the budget (at least its own caller thread), so 4 callers on 2 cores run about 2 threads in all instead of
// 4 teams of 2. Work is handed out in shrinking chunks (guided), so a thread that shares its core with another
// process takes less of it instead of holding back the whole region.
#pragma once
#include <algorithm>
#include <atomic>
#include <cstdint>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <thread>

namespace vlmamba {

namespace detail {

// OMP_NUM_THREADS when set, else all cores; read once, before any team size of ours is set.
inline int default_threads() {
#ifdef _OPENMP
    static const int n = std::max(omp_get_max_threads(), 1);
#else
    static const int n = std::max(int(std::thread::hardware_concurrency()), 1);
#endif
    return n;
}
inline std::atomic<int>& thread_budget() {
    static std::atomic<int> budget{default_threads()};
    return budget;
}
inline std::atomic<int>& threads_leased() {
    static std::atomic<int> leased{0};
    return leased;
}

}  // namespace detail

// Sets the threads all parallel work of the process may use at once; n <= 0 restores the default
// (OMP_NUM_THREADS, else all cores).
inline void set_num_threads(int n) { detail::thread_budget().store(n > 0 ? n : detail::default_threads()); }

inline int num_threads() { return detail::thread_budget().load(); }

// Threads for one parallel region: min(want, budget - threads other regions hold now), at least 1 (the caller),
// returned to the budget on destruction. Inside a region the caller is already counted: 1, nothing taken.
class ThreadLease {
public:
    explicit ThreadLease(int want) {
#ifdef _OPENMP
        if (omp_in_parallel()) return;
#endif
        want = std::clamp(want, 1, num_threads());
        int held = detail::threads_leased().load();
        do taken_ = std::clamp(num_threads() - held, 1, want);
        while (!detail::threads_leased().compare_exchange_weak(held, held + taken_));
        count_ = taken_;
    }
    ~ThreadLease() { detail::threads_leased().fetch_sub(taken_); }
    ThreadLease(const ThreadLease&) = delete;
    ThreadLease& operator=(const ThreadLease&) = delete;

    int count() const { return count_; }

private:
    int count_ = 1, taken_ = 0;
};

// For a library that sizes its own OpenMP teams from omp_get_max_threads() (Eigen's GEMM): this thread's team size
// is a lease of up to `want` threads of the budget while the scope lives.
class ScopedOmpThreads {
public:
    explicit ScopedOmpThreads(int want = num_threads()) : lease_(want) {
#ifdef _OPENMP
        prev_ = omp_get_max_threads();
        omp_set_num_threads(lease_.count());
#endif
    }
    ~ScopedOmpThreads() {
#ifdef _OPENMP
        omp_set_num_threads(prev_);
#endif
    }
    ScopedOmpThreads(const ScopedOmpThreads&) = delete;
    ScopedOmpThreads& operator=(const ScopedOmpThreads&) = delete;

    int count() const { return lease_.count(); }

private:
    ThreadLease lease_;
    int prev_ = 1;
};

// Runs f(i) for i in [0, n), split across leased threads when n * cost_per_item is worth it. When the lease gives
// one thread, f runs here with a team size of 1, so a GEMM inside f starts no team of its own either.
template <class F>
void parallel_for(std::int64_t n, F&& f, std::int64_t cost_per_item = 1) {
#ifdef _OPENMP
    if (n > 1 && n * cost_per_item >= 32768 && !omp_in_parallel()) {
        const ScopedOmpThreads team(int(std::min<std::int64_t>(n, num_threads())));
        if (team.count() > 1) {
#pragma omp parallel for num_threads(team.count()) schedule(guided)
            for (std::int64_t i = 0; i < n; ++i) f(i);
        } else {
            for (std::int64_t i = 0; i < n; ++i) f(i);
        }
        return;
    }
#endif
    (void)cost_per_item;
    for (std::int64_t i = 0; i < n; ++i) f(i);
}

}  // namespace vlmamba
