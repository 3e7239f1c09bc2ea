// The prefix-state cache: a recurrent state is a summary of everything before it, so the state after a request's
// image prefix, after its prompt and after its reply can resume any later request whose key begins with that history.
// Entries hold the state (one sequence), the logits of the next position and the key; the least recently used go
// first once the bytes pass the budget. One model per cache (the server's). Not thread-safe: the engine owns it.
#pragma once
#include <cstdint>
#include <list>
#include <span>
#include <unordered_map>
#include <vector>

#include "vlmamba/models/mamba_lm.hpp"

namespace vlmamba::serve {

class PrefixCache {
public:
    struct Entry {
        std::vector<std::uint64_t> key;
        MambaState state;            // one sequence, after the key's history
        std::vector<float> logits;   // (V) the next position's
        std::size_t bytes() const {
            std::size_t b = key.size() * 8 + logits.size() * 4;
            for (const auto& t : state.conv) b += std::size_t(t.numel()) * 4;
            for (const auto& t : state.ssm) b += std::size_t(t.numel()) * 4;
            return b;
        }
    };

    explicit PrefixCache(std::size_t max_bytes) : max_(max_bytes) {}

    // The entry with the longest key that `key` begins with, or null; it becomes the most recently used.
    const Entry* longest_prefix(std::span<const std::uint64_t> key) {
        if (entries_.empty()) return nullptr;
        std::uint64_t h = kSeed;
        const Entry* best = nullptr;
        for (std::size_t i = 0; i < key.size(); ++i) {
            h = mix(h, key[i]);
            const auto it = index_.find(h);
            if (it == index_.end()) continue;
            const Entry& e = *it->second;
            if (e.key.size() == i + 1 && std::equal(e.key.begin(), e.key.end(), key.begin())) best = &e;
        }
        if (best) touch(index_.at(hash(best->key)));
        return best;
    }

    // Stores (or refreshes) an entry; one larger than the whole budget is dropped.
    void put(Entry e) {
        const std::size_t b = e.bytes();
        if (b > max_ || e.key.empty()) return;
        const std::uint64_t h = hash(e.key);
        if (const auto it = index_.find(h); it != index_.end()) {
            bytes_ -= it->second->bytes();
            entries_.erase(it->second);
            index_.erase(it);
        }
        entries_.push_front(std::move(e));
        index_[h] = entries_.begin();
        bytes_ += b;
        while (bytes_ > max_) {
            const Entry& old = entries_.back();
            bytes_ -= old.bytes();
            index_.erase(hash(old.key));
            entries_.pop_back();
        }
    }

    std::size_t bytes() const { return bytes_; }
    std::size_t size() const { return entries_.size(); }

private:
    using List = std::list<Entry>;
    static constexpr std::uint64_t kSeed = 0xcbf29ce484222325ull;
    static std::uint64_t mix(std::uint64_t h, std::uint64_t w) {
        for (int b = 0; b < 8; ++b) h = (h ^ ((w >> (8 * b)) & 0xff)) * 0x100000001b3ull;
        return h;
    }
    static std::uint64_t hash(std::span<const std::uint64_t> key) {
        std::uint64_t h = kSeed;
        for (const std::uint64_t w : key) h = mix(h, w);
        return h;
    }
    void touch(List::iterator it) { entries_.splice(entries_.begin(), entries_, it); }

    std::size_t max_, bytes_ = 0;
    List entries_;  // most recently used first
    std::unordered_map<std::uint64_t, List::iterator> index_;  // hash of the whole key -> entry
};

}  // namespace vlmamba::serve
