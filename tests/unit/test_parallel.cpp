// The process-wide thread budget (core/parallel.hpp): leases, parallel_for, and several callers sharing the cores.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <thread>
#include <vector>

#include "vlmamba/core/parallel.hpp"

namespace vm = vlmamba;

TEST_CASE("parallel: leases share the budget and return it") {
    vm::set_num_threads(3);
    {
        const vm::ThreadLease a(2);
        CHECK(a.count() == 2);
        const vm::ThreadLease b(4);  // one left
        CHECK(b.count() == 1);
        const vm::ThreadLease c(4);  // none left: the caller alone
        CHECK(c.count() == 1);
    }
    const vm::ThreadLease d(8);  // all returned; capped by the budget
    CHECK(d.count() == 3);
    vm::set_num_threads(0);
}

TEST_CASE("parallel: parallel_for runs every index once, with any budget") {
    for (int budget : {1, 2, 4}) {
        vm::set_num_threads(budget);
        for (std::int64_t n : {0, 1, 7, 1000, 100003}) {
            std::vector<std::atomic<int>> seen(static_cast<std::size_t>(n));
            vm::parallel_for(n, [&](std::int64_t i) { seen[std::size_t(i)].fetch_add(1); }, 64);
            CHECK_MESSAGE(std::all_of(seen.begin(), seen.end(), [](const auto& s) { return s.load() == 1; }),
                          "budget ", budget, ", n ", n);
        }
    }
    vm::set_num_threads(0);
}

// Each caller always runs its own work (a lease is at least 1): the budget bounds the threads added to the callers'.
TEST_CASE("parallel: 4 callers on a budget of 2 run at most 4 + 1 threads at once, not 4 teams of 2") {
    vm::set_num_threads(2);
    std::atomic<int> active{0}, peak{0};
    const auto work = [&](std::int64_t) {
        const int now = active.fetch_add(1) + 1;
        int p = peak.load();
        while (now > p && !peak.compare_exchange_weak(p, now)) {
        }
        volatile double x = 0;
        for (int k = 0; k < 2000; ++k) x = x + 1.0;
        active.fetch_sub(1);
    };
    std::vector<std::thread> callers;
    for (int c = 0; c < 4; ++c)
        callers.emplace_back([&] {
            for (int r = 0; r < 20; ++r) vm::parallel_for(256, work, 1024);
        });
    for (auto& t : callers) t.join();
    MESSAGE("peak threads inside parallel_for: ", peak.load());
    CHECK(peak.load() <= 5);
    CHECK(vm::ThreadLease(2).count() == 2);  // every lease was returned
    vm::set_num_threads(0);
}
