// Residency and REPLACE swaps (see residency.hpp).
#include "worldstream/residency.hpp"

#include <algorithm>

namespace ws {

uint64_t Residency::on_received(const ChunkKey& key) {
    auto it = entries_.find(key);
    if (it != entries_.end()) {
        it->second.unload_requested = false;
        return 0;
    }
    Entry e;
    e.ticket = next_ticket_++;
    entries_.emplace(key, e);
    return e.ticket;
}

bool Residency::on_ready(const ChunkKey& key, uint64_t ticket) {
    auto it = entries_.find(key);
    if (it == entries_.end() || it->second.ticket != ticket || it->second.state != State::Loading) return false;
    it->second.state = State::Ready;
    settle();
    return true;
}

void Residency::on_failed(const ChunkKey& key, uint64_t ticket) {
    auto it = entries_.find(key);
    if (it == entries_.end() || it->second.ticket != ticket || it->second.state != State::Loading) return;
    entries_.erase(it);
    settle();
}

void Residency::on_unload(const std::vector<ChunkKey>& keys) {
    for (const auto& k : keys) {
        auto it = entries_.find(k);
        if (it == entries_.end()) continue;
        if (it->second.state == State::Loading) entries_.erase(it);  // its mesh is discarded when built
        else it->second.unload_requested = true;
    }
    settle();
}

std::vector<ChunkKey> Residency::clear() {
    std::vector<ChunkKey> out = take_released();
    for (const auto& kv : entries_)
        if (kv.second.state == State::Ready) out.push_back(kv.first);
    entries_.clear();
    std::sort(out.begin(), out.end());
    return out;
}

std::vector<ChunkKey> Residency::take_released() {
    std::vector<ChunkKey> out;
    out.swap(released_);
    return out;
}

const Residency::Entry* Residency::find(const ChunkKey& key) const {
    auto it = entries_.find(key);
    return it == entries_.end() ? nullptr : &it->second;
}

size_t Residency::count(State s) const {
    size_t n = 0;
    for (const auto& kv : entries_) n += kv.second.state == s;
    return n;
}

std::vector<ChunkKey> Residency::keys() const {
    std::vector<ChunkKey> out;
    out.reserve(entries_.size());
    for (const auto& kv : entries_) out.push_back(kv.first);
    std::sort(out.begin(), out.end());
    return out;
}

bool Residency::ready(const ChunkKey& k) const {
    auto it = entries_.find(k);
    return it != entries_.end() && it->second.state == State::Ready;
}

bool Residency::ready_keeper(const ChunkKey& k) const {
    auto it = entries_.find(k);
    return it != entries_.end() && it->second.state == State::Ready && !it->second.unload_requested;
}

std::unordered_set<ChunkKey, ChunkKeyHash> Residency::inner_keys(bool keepers_only) const {
    std::unordered_set<ChunkKey, ChunkKeyHash> inner;
    for (const auto& kv : entries_) {
        if (kv.second.state != State::Ready || (keepers_only && kv.second.unload_requested)) continue;
        ChunkKey k = kv.first;
        while (k.level > 0) {
            k = k.parent();
            if (!inner.insert(k).second) break;  // its ancestors are in already
        }
    }
    return inner;
}

bool Residency::covered_below(const ChunkKey& k, bool keepers_only,
                              const std::unordered_set<ChunkKey, ChunkKeyHash>& inner) const {
    if (!inner.count(k)) return false;  // no Ready descendant at all
    for (const auto& c : k.children())
        if (!(keepers_only ? ready_keeper(c) : ready(c)) && !covered_below(c, keepers_only, inner)) return false;
    return true;
}

bool Residency::overlaps_loading(const ChunkKey& k) const {
    for (const auto& kv : entries_) {
        if (kv.second.state != State::Loading) continue;
        const ChunkKey& o = kv.first;
        if (k.contains(o) || o.contains(k)) return true;
    }
    return false;
}

void Residency::settle() {
    auto inner = inner_keys(true);
    std::vector<ChunkKey> go;
    for (const auto& kv : entries_) {
        if (kv.second.state != State::Ready || !kv.second.unload_requested) continue;
        const ChunkKey& k = kv.first;
        bool covered = covered_below(k, true, inner);
        for (ChunkKey a = k; !covered && a.level > 0;) {
            a = a.parent();
            covered = ready_keeper(a);
        }
        if (covered || !overlaps_loading(k)) go.push_back(k);
    }
    std::sort(go.begin(), go.end());
    for (const auto& k : go) {
        entries_.erase(k);
        released_.push_back(k);
    }
}

bool Residency::is_shown(const ChunkKey& key) const {
    if (!ready(key)) return false;
    auto inner = inner_keys(false);
    if (covered_below(key, false, inner)) return false;
    for (ChunkKey a = key; a.level > 0;) {  // a shown ancestor hides it
        a = a.parent();
        if (ready(a) && !covered_below(a, false, inner)) return false;
    }
    return true;
}

std::vector<ChunkKey> Residency::shown() const {
    auto inner = inner_keys(false);
    std::unordered_map<ChunkKey, bool, ChunkKeyHash> drawn_here;  // Ready and not covered below (memo)
    auto draws = [&](const ChunkKey& k) {
        auto it = drawn_here.find(k);
        if (it != drawn_here.end()) return it->second;
        bool v = ready(k) && !covered_below(k, false, inner);
        drawn_here.emplace(k, v);
        return v;
    };
    std::vector<ChunkKey> out;
    for (const auto& kv : entries_) {
        if (kv.second.state != State::Ready || !draws(kv.first)) continue;
        bool hidden = false;
        for (ChunkKey a = kv.first; !hidden && a.level > 0;) {
            a = a.parent();
            hidden = draws(a);
        }
        if (!hidden) out.push_back(kv.first);
    }
    std::sort(out.begin(), out.end());
    return out;
}

bool Residency::covered_without_hole(const ChunkKey& area) const {
    // covered by a Ready ancestor-or-self, or all its children covered (recursively)
    for (ChunkKey a = area;;) {
        if (ready(a)) return true;
        if (a.level == 0) break;
        a = a.parent();
    }
    auto inner = inner_keys(false);
    return covered_below(area, false, inner);
}

}  // namespace ws
