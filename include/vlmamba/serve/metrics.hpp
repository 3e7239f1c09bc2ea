// The server's counters and gauges, updated by the engine and the HTTP threads, read as Prometheus text.
#pragma once
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <string>

namespace vlmamba::serve {

struct Metrics {
    std::atomic<std::uint64_t> requests{0}, request_errors{0}, cancelled{0};
    std::atomic<std::uint64_t> prompt_tokens{0};     // positions of the requests' prompts (images included)
    std::atomic<std::uint64_t> prefill_tokens{0};    // positions prefilled
    std::atomic<std::uint64_t> cached_tokens{0};     // positions resumed from the prefix cache instead
    std::atomic<std::uint64_t> generated_tokens{0};
    std::atomic<std::uint64_t> images{0};            // images through the vision tower
    std::atomic<std::uint64_t> cache_hits{0}, cache_misses{0};
    std::atomic<std::uint64_t> cache_entries{0}, cache_bytes{0};
    std::atomic<std::uint64_t> queue_length{0}, busy_slots{0}, slots{0};
    std::atomic<std::uint64_t> decode_steps{0};
    std::atomic<std::uint64_t> busy_us{0};           // engine time spent in prefills and steps
    std::atomic<std::uint64_t> ttft_us{0}, ttft_count{0};

    std::string prometheus() const {
        std::string s;
        auto metric = [&](const char* name, const char* type, const char* help, double v) {
            s += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n" + name + " " +
                 num(v) + "\n";
        };
        metric("vlmamba_requests_total", "counter", "Chat completion requests answered.", double(requests));
        metric("vlmamba_request_errors_total", "counter", "Requests answered with an error.", double(request_errors));
        metric("vlmamba_requests_cancelled_total", "counter", "Requests whose client went away.", double(cancelled));
        metric("vlmamba_prompt_tokens_total", "counter", "Prompt positions (image tokens included).",
               double(prompt_tokens));
        metric("vlmamba_prefill_tokens_total", "counter", "Prompt positions prefilled.", double(prefill_tokens));
        metric("vlmamba_prefix_cache_tokens_total", "counter", "Prompt positions resumed from the prefix cache.",
               double(cached_tokens));
        metric("vlmamba_generated_tokens_total", "counter", "Tokens generated.", double(generated_tokens));
        metric("vlmamba_images_total", "counter", "Images through the vision tower.", double(images));
        metric("vlmamba_prefix_cache_hits_total", "counter", "Requests resumed from a cached prefix state.",
               double(cache_hits));
        metric("vlmamba_prefix_cache_misses_total", "counter", "Requests with no cached prefix.",
               double(cache_misses));
        metric("vlmamba_prefix_cache_entries", "gauge", "States in the prefix cache.", double(cache_entries));
        metric("vlmamba_prefix_cache_bytes", "gauge", "Bytes in the prefix cache.", double(cache_bytes));
        metric("vlmamba_queue_length", "gauge", "Requests waiting for a slot.", double(queue_length));
        metric("vlmamba_busy_slots", "gauge", "Sequences being generated.", double(busy_slots));
        metric("vlmamba_slots", "gauge", "Sequences that decode together (--parallel).", double(slots));
        metric("vlmamba_decode_steps_total", "counter", "Batched decode steps.", double(decode_steps));
        const double busy = double(busy_us) * 1e-6;
        metric("vlmamba_busy_seconds_total", "counter", "Engine time in prefills and decode steps.", busy);
        metric("vlmamba_tokens_per_second", "gauge", "Generated tokens per busy second of the engine.",
               busy > 0 ? double(generated_tokens) / busy : 0.0);
        s += "# HELP vlmamba_time_to_first_token_seconds Time from a request's arrival to its first token.\n"
             "# TYPE vlmamba_time_to_first_token_seconds summary\n"
             "vlmamba_time_to_first_token_seconds_sum " + num(double(ttft_us) * 1e-6) +
             "\nvlmamba_time_to_first_token_seconds_count " + num(double(ttft_count)) + "\n";
        return s;
    }

private:
    static std::string num(double v) {
        char b[64];
        std::snprintf(b, sizeof b, "%.17g", v);
        return b;
    }
};

}  // namespace vlmamba::serve
