// Continuous batching of recurrent states. One engine thread owns a B-row state, B <= --parallel sequences that
// decode together in one batched step. Between steps it admits queued requests: each resumes from the longest cached
// prefix state (or from nothing), prefills the rest of its prompt (the vision tower for its new images, then the
// text), samples its first token and joins the batch. A finished or cancelled sequence leaves the batch at once;
// its state is kept in the prefix cache. HTTP threads submit jobs and read their replies as they stream.
#pragma once
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>

#include "vlmamba/serve/metrics.hpp"
#include "vlmamba/serve/prefix_cache.hpp"
#include "vlmamba/serve/prompt.hpp"
#include "vlmamba/session/reply.hpp"

namespace vlmamba::serve {

struct EngineOptions {
    int parallel = 4;                                 // sequences that decode together
    std::size_t queue = 64;                           // requests that may wait for a slot
    std::size_t cache_bytes = std::size_t{256} << 20; // prefix-state cache budget; 0: off
};

// One request's life: filled by the HTTP thread, advanced by the engine, read back by the HTTP thread.
class Job {
public:
    using clock = std::chrono::steady_clock;
    Job(Prompt p, Request r) : prompt(std::move(p)), request(std::move(r)) {}

    const Prompt prompt;
    const Request request;  // sampling, max_tokens, stop

    // Waits for more reply text or the end. Returns false once the reply is complete and all its text was taken.
    bool next_piece(std::string& out) {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return !text_.empty() || done_; });
        out = std::move(text_);
        text_.clear();
        return !out.empty() || !done_;
    }
    // Waits for the end; the result (or the error it ended with).
    const Result& wait() {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return done_; });
        if (error_) throw *error_;
        return result_;
    }
    void cancel() { cancelled_ = true; }
    bool cancelled() const { return cancelled_; }

    // Filled by the engine before the job ends.
    std::int64_t cached_positions = 0;  // resumed from the prefix cache
    double ttft = 0, total = 0;         // seconds from submission

private:
    friend class Engine;
    void emit(std::string_view piece) {
        {
            std::lock_guard lock(mu_);
            text_ += piece;
        }
        cv_.notify_all();
    }
    void finish(Result r, std::optional<ApiError> error = std::nullopt) {
        {
            std::lock_guard lock(mu_);
            result_ = std::move(r);
            error_ = std::move(error);
            done_ = true;
        }
        cv_.notify_all();
    }

    std::mutex mu_;
    std::condition_variable cv_;
    std::string text_;
    bool done_ = false;
    Result result_;
    std::optional<ApiError> error_;
    std::atomic<bool> cancelled_{false};
    clock::time_point submitted_ = clock::now();
};

class Engine {
public:
    Engine(const Model& m, EngineOptions o) : m_(m), o_(o), cache_(o.cache_bytes), state_(m.lm().new_state(0)) {
        VLM_CHECK(o.parallel >= 1 && o.parallel <= 1024, "serve", "expected --parallel in [1, 1024], got ",
                  o.parallel);
        VLM_CHECK(m.device() == Device::Cpu, "serve",
                  "continuous batching runs on the cpu for now (--device cuda: the devices issue)");
        metrics.slots = std::uint64_t(o.parallel);
        worker_ = std::thread([this] { run(); });
    }
    ~Engine() {
        {
            std::lock_guard lock(mu_);
            stop_ = true;
        }
        cv_.notify_all();
        worker_.join();
    }
    Engine(const Engine&) = delete;
    Engine& operator=(const Engine&) = delete;

    // Queues a job; false when the queue is full (the caller answers 503). A free slot takes a job without a wait.
    bool submit(std::shared_ptr<Job> job) {
        {
            std::lock_guard lock(mu_);
            const std::size_t free = std::size_t(o_.parallel) - std::min<std::size_t>(busy_, std::size_t(o_.parallel));
            if (queue_.size() >= o_.queue + free) return false;
            queue_.push_back(std::move(job));
            metrics.queue_length = queue_.size();
        }
        cv_.notify_all();
        return true;
    }

    Metrics metrics;

private:
    struct Slot {
        std::shared_ptr<Job> job;
        vlmamba::detail::Reply reply;
        std::vector<std::uint64_t> key;  // the history the slot's state holds
        std::int32_t next = 0;           // sampled, consumed by the next step
    };
    using clock = std::chrono::steady_clock;

    const Model& m_;
    EngineOptions o_;
    PrefixCache cache_;
    MambaState state_;          // row i: slots_[i]
    std::vector<Slot> slots_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<std::shared_ptr<Job>> queue_;
    bool stop_ = false;
    std::size_t busy_ = 0;  // slots in use (guarded by mu_)
    std::thread worker_;

    static std::uint64_t micros(clock::time_point t0) {
        return std::uint64_t(std::chrono::duration_cast<std::chrono::microseconds>(clock::now() - t0).count());
    }
    static double seconds(clock::time_point t0) { return std::chrono::duration<double>(clock::now() - t0).count(); }

    void run() {
        for (;;) {
            std::vector<std::shared_ptr<Job>> admit;
            {
                std::unique_lock lock(mu_);
                cv_.wait(lock, [&] { return stop_ || !queue_.empty() || !slots_.empty(); });
                if (stop_) break;
                while (!queue_.empty() && slots_.size() + admit.size() < std::size_t(o_.parallel)) {
                    admit.push_back(std::move(queue_.front()));
                    queue_.pop_front();
                }
                busy_ = slots_.size() + admit.size();
                metrics.queue_length = queue_.size();
            }
            const auto t0 = clock::now();
            for (auto& job : admit) start(std::move(job));
            if (!slots_.empty()) step();
            metrics.busy_us += micros(t0);
            metrics.busy_slots = slots_.size();
            std::lock_guard lock(mu_);
            busy_ = slots_.size();
        }
        for (auto& s : slots_) s.job->finish({}, ApiError(503, "server_error", "the server is shutting down"));
        for (auto& j : queue_) j->finish({}, ApiError(503, "server_error", "the server is shutting down"));
    }

    // The state, logits and history of a sequence resumed from the cache or started, then prefilled to the end of
    // the prompt; the first token sampled; the sequence joins the batch unless it is already done.
    void start(std::shared_ptr<Job> job) {
        try {
            if (job->cancelled()) return end(*job, {}, true);
            const Prompt& p = job->prompt;
            const MambaLm& lm = m_.lm();
            MambaState st = lm.new_state(1);
            std::vector<float> logits;
            std::size_t matched = 0;  // key words the cached state already holds
            if (const PrefixCache::Entry* e = cache_.longest_prefix(p.key)) {
                st = e->state;
                logits = e->logits;
                matched = e->key.size();
                metrics.cache_hits++;
            } else {
                metrics.cache_misses++;
            }
            // The units after the cached history; a text unit may be cut inside (a cached reply ends mid-unit).
            std::vector<PromptUnit> rest;
            std::vector<std::size_t> rest_end;
            std::size_t begin = 0;
            for (std::size_t u = 0; u < p.units.size(); begin = p.key_end[u], ++u) {
                const PromptUnit& unit = p.units[u];
                if (p.key_end[u] <= matched) {
                    job->cached_positions += unit.positions;
                    continue;
                }
                rest_end.push_back(p.key_end[u]);
                if (begin >= matched) {
                    rest.push_back(unit);
                    continue;
                }
                VLM_CHECK(!unit.pixels.defined(), "serve", "a cached history cannot end inside an image");
                PromptUnit cut;
                cut.ids.assign(unit.ids.begin() + std::ptrdiff_t(matched - begin), unit.ids.end());
                cut.positions = std::int64_t(cut.ids.size());
                job->cached_positions += std::int64_t(matched - begin);
                rest.push_back(std::move(cut));
            }
            metrics.cached_tokens += std::uint64_t(job->cached_positions);
            metrics.prompt_tokens += std::uint64_t(p.positions);
            if (!rest.empty()) logits = prefill(p.key, rest, rest_end, st);

            Request req = job->request;
            vlmamba::detail::Reply reply(m_, req, p.stop.empty() ? req.stop : with(req.stop, p.stop), p.text_ids);
            Slot s{job, std::move(reply), p.key, 0};
            if (!sample(s, logits)) return;
            state_.append(st);
            slots_.push_back(std::move(s));
        } catch (const ApiError& e) {
            metrics.request_errors++;
            job->finish({}, e);
        } catch (const std::exception& e) {
            metrics.request_errors++;
            job->finish({}, ApiError(500, "server_error", e.what()));
        }
    }

    // Prefills `units` (the prompt's last ones; key_end[i]: the key's length after unit i) into st (one sequence):
    // through the last image, then the text after it; the state after each part goes into the cache. Returns the
    // last position's logits.
    std::vector<float> prefill(const std::vector<std::uint64_t>& key, const std::vector<PromptUnit>& units,
                               const std::vector<std::size_t>& key_end, MambaState& st) {
        const MambaLm& lm = m_.lm();
        std::vector<Tensor> pixels;
        std::size_t last_image = 0;
        for (std::size_t u = 0; u < units.size(); ++u)
            if (units[u].pixels.defined()) pixels.push_back(units[u].pixels), last_image = u + 1;
        std::vector<Tensor> prefixes;
        if (!pixels.empty()) {
            const std::int64_t C = pixels[0].size(1), S = pixels[0].size(2);  // C: 6 for Cobra's two towers
            Tensor batch = Tensor::empty({std::int64_t(pixels.size()), C, S, S});  // (n, C, S, S)
            for (std::size_t i = 0; i < pixels.size(); ++i) {
                Tensor dst = batch.select(0, std::int64_t(i));
                copy_into(dst, pixels[i].select(0, 0));
            }
            Timings t;
            prefixes = m_.image_prefixes(batch, t);  // n × (L_v, D)
            metrics.images += pixels.size();
        }
        std::vector<float> logits;
        std::size_t next_prefix = 0;
        auto run = [&](std::size_t a, std::size_t b) {
            std::vector<Tensor> parts;
            std::int64_t L = 0;
            for (std::size_t u = a; u < b; ++u) {
                parts.push_back(units[u].pixels.defined() ? prefixes[next_prefix++] : lm.embed(units[u].ids));
                L += parts.back().size(0);
            }
            if (L == 0) return;
            Tensor embeds = Tensor::empty({L, lm.cfg.d_model});  // (L, D)
            std::int64_t row = 0;
            for (const Tensor& t : parts) {
                Tensor dst = embeds.slice(0, row, row + t.size(0));
                copy_into(dst, t);
                row += t.size(0);
            }
            const Tensor h = lm.forward_hidden(embeds, &st, 0);                  // (L, D)
            const Tensor lg = lm.logits(h.slice(0, L - 1, L));                    // (1, V)
            logits.assign(lg.data<float>(), lg.data<float>() + lg.numel());
            metrics.prefill_tokens += std::uint64_t(L);
            remember({key.begin(), key.begin() + std::ptrdiff_t(key_end[b - 1])}, st, logits);
        };
        if (last_image > 0) run(0, last_image);
        run(last_image, units.size());
        return logits;
    }

    void remember(std::vector<std::uint64_t> key, const MambaState& st, const std::vector<float>& logits) {
        if (o_.cache_bytes == 0) return;
        cache_.put({std::move(key), st, logits});
        metrics.cache_entries = cache_.size();
        metrics.cache_bytes = cache_.bytes();
    }

    static std::vector<std::string> with(std::vector<std::string> a, const std::vector<std::string>& b) {
        a.insert(a.end(), b.begin(), b.end());
        return a;
    }

    // Samples the slot's next token from logits (V); false when the reply ended (the job is then finished).
    bool sample(Slot& s, const std::vector<float>& logits) {
        Job& job = *s.job;
        const bool first = s.reply.result.ids.empty();
        const auto id = s.reply.next(logits, [&job](std::string_view piece) { job.emit(piece); });
        if (first) {
            job.ttft = seconds(job.submitted_);
            metrics.ttft_us += std::uint64_t(job.ttft * 1e6);
            metrics.ttft_count++;
        }
        if (id && !s.reply.done()) {
            metrics.generated_tokens++;
            s.next = *id;
            return true;
        }
        if (id) metrics.generated_tokens++;
        Result r = std::move(s.reply.result);
        r.prompt_tokens = job.prompt.positions;
        r.image_tokens = job.prompt.image_positions;
        end(job, std::move(r), false);
        return false;
    }

    void end(Job& job, Result r, bool cancelled) {
        job.total = seconds(job.submitted_);
        metrics.requests++;
        if (cancelled) metrics.cancelled++;
        job.finish(std::move(r));
    }

    // One token for every sequence of the batch; finished and cancelled sequences leave it.
    void step() {
        std::vector<std::int32_t> tokens;
        for (const Slot& s : slots_) tokens.push_back(s.next);
        const Tensor logits = m_.lm().step(tokens, state_);  // (B, V)
        metrics.decode_steps++;
        const std::int64_t V = logits.size(1);
        std::vector<int> keep;
        for (std::size_t i = 0; i < slots_.size(); ++i) {
            Slot& s = slots_[i];
            s.key.push_back(std::uint64_t(std::uint32_t(s.next)));
            const float* row = logits.data<float>() + std::int64_t(i) * V;
            std::vector<float> lg(row, row + V);
            if (s.job->cancelled()) {
                end(*s.job, std::move(s.reply.result), true);
                continue;
            }
            if (sample(s, lg)) {
                keep.push_back(int(i));
                continue;
            }
            const int one = int(i);
            remember(s.key, state_.rows(std::span<const int>(&one, 1)), lg);
        }
        if (keep.size() == slots_.size()) return;
        state_ = state_.rows(keep);
        std::vector<Slot> kept;
        for (const int i : keep) kept.push_back(std::move(slots_[std::size_t(i)]));
        slots_ = std::move(kept);
    }
};

}  // namespace vlmamba::serve
