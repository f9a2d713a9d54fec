// What a client holds, and what it draws, under 3D Tiles REPLACE refinement (docs/protocol.md):
//
// - a received chunk is Loading until the engine has built its mesh (asynchronously), then Ready;
// - draw rule (as the web viewer): a Ready chunk is shown unless its area is covered by Ready
//   descendants (all four children Ready or covered, recursively) or a shown ancestor hides it;
//   so levels never overlap, and a parent is drawn until every child covering it is Ready;
// - the server's `unload` follows the same rule but counts chunks as there once *sent*; the engine
//   may still be building them. So an unloaded Ready chunk is released (its actor destroyed) only
//   when no Loading chunk overlaps it (nothing is on its way to replace it) or when its whole area
//   is covered by Ready chunks that stay. An unloaded Loading chunk is dropped at once.
//
// Sans-I/O: the engine feeds events and polls take_released() / shown(); keys are ChunkKeys.
#pragma once

#include <cstdint>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "worldstream/keys.hpp"

namespace ws {

class Residency {
public:
    enum class State { Loading, Ready };
    struct Entry {
        State state = State::Loading;
        bool unload_requested = false;
        uint64_t ticket = 0;  // the load in flight for this key
    };

    // A chunk frame arrived. Returns a ticket (> 0) when the engine must build the mesh, 0 when the
    // key is already Ready or Loading (a resend: same bytes; any pending unload is cancelled).
    uint64_t on_received(const ChunkKey& key);
    // The mesh of `ticket` is built. Returns false when the key was dropped or re-requested meanwhile:
    // the engine destroys that mesh instead of showing it.
    bool on_ready(const ChunkKey& key, uint64_t ticket);
    // The mesh could not be built: forget the key (what waited for it is re-evaluated).
    void on_failed(const ChunkKey& key, uint64_t ticket);
    // The server's unload message.
    void on_unload(const std::vector<ChunkKey>& keys);
    // Forget everything (disconnect); returns the Ready keys to destroy.
    std::vector<ChunkKey> clear();

    // Ready chunks to destroy now (each returned once).
    std::vector<ChunkKey> take_released();
    // Ready chunks to draw (REPLACE rule), sorted.
    std::vector<ChunkKey> shown() const;
    bool is_shown(const ChunkKey& key) const;
    // Is `area` drawn without a hole: covered by shown chunks (disjoint by construction)?
    bool covered_without_hole(const ChunkKey& area) const;

    const Entry* find(const ChunkKey& key) const;
    size_t size() const { return entries_.size(); }
    size_t count(State s) const;
    std::vector<ChunkKey> keys() const;  // sorted

private:
    std::unordered_map<ChunkKey, Entry, ChunkKeyHash> entries_;
    std::vector<ChunkKey> released_;
    uint64_t next_ticket_ = 1;

    bool ready(const ChunkKey& k) const;
    bool ready_keeper(const ChunkKey& k) const;
    // covered by Ready chunks (keepers only if keepers_only), through descendants
    bool covered_below(const ChunkKey& k, bool keepers_only, const std::unordered_set<ChunkKey, ChunkKeyHash>& inner) const;
    std::unordered_set<ChunkKey, ChunkKeyHash> inner_keys(bool keepers_only) const;  // proper ancestors of such entries
    bool overlaps_loading(const ChunkKey& k) const;
    void settle();  // release the unloaded Ready chunks that may go now
};

}  // namespace ws
