// Group residency: REPLACE swaps without holes under hostile event orders.
#include <algorithm>
#include <random>
#include <set>

#include "check.hpp"
#include "worldstream/residency.hpp"

using namespace ws;

namespace {
ChunkKey K(int l, int64_t x, int64_t y) { return ChunkKey{l, x, y}; }

// Every point of `area` drawn by exactly one shown chunk: shown chunks are disjoint and cover it.
bool tiles_exactly(const Residency& r, const ChunkKey& area) {
    auto shown = r.shown();
    for (size_t i = 0; i < shown.size(); ++i)
        for (size_t j = 0; j < shown.size(); ++j)
            if (i != j && shown[i].contains(shown[j])) return false;  // overlap
    return r.covered_without_hole(area);
}
// The server's view: `k` covered by chunks of `held` (an ancestor-or-self, or all children covered).
bool set_covers(const std::set<ChunkKey>& held, const ChunkKey& k, int max_level = 3) {
    for (ChunkKey a = k;;) {
        if (held.count(a)) return true;
        if (a.level == 0) break;
        a = a.parent();
    }
    if (k.level >= max_level) return false;
    for (const auto& c : k.children())
        if (!set_covers(held, c, max_level)) return false;
    return true;
}
}  // namespace

TEST_GROUP(residency) {
    ChunkKey key = ChunkKey::parse("3/-5/7");
    CHECK_EQ(key.parent().path(), std::string("2/-3/3"));
    CHECK_EQ(K(0, -1, -1).child(3).path(), std::string("1/-1/-1"));
    CHECK(K(1, -1, -1).contains(K(3, -1, -4)));
    CHECK(!K(1, -1, -1).contains(K(3, 0, -4)));
    CHECK_THROWS(ChunkKey::parse("1/2"), std::invalid_argument);
    CHECK_THROWS(ChunkKey::parse("1/2/3/4"), std::invalid_argument);
    CHECK_THROWS(ChunkKey::parse("a/2/3"), std::invalid_argument);
    CHECK_THROWS(ChunkKey::parse("1/2/ 3"), std::invalid_argument);
    CHECK_THROWS(ChunkKey::parse("-1/2/3"), std::invalid_argument);
    CHECK_THROWS(ChunkKey::parse("0/1099511627777/3"), std::invalid_argument);

    // 1. refine: the parent stays shown until all four children are Ready, even after the server's unload
    {
        Residency r;
        ChunkKey p = K(0, 0, 0);
        auto tp = r.on_received(p);
        CHECK(tp > 0);
        CHECK(r.shown().empty());
        CHECK(!r.covered_without_hole(p));
        CHECK(r.on_ready(p, tp));
        CHECK(tiles_exactly(r, p));
        std::vector<uint64_t> t;
        for (const auto& c : p.children()) t.push_back(r.on_received(c));
        r.on_unload({p});  // the server counts the children as sent: they are still loading here
        CHECK(r.take_released().empty());
        CHECK(r.is_shown(p));
        for (int i = 0; i < 3; ++i) {
            CHECK(r.on_ready(p.child(i), t[i]));
            CHECK(r.take_released().empty());
            CHECK(r.is_shown(p));  // three children are not enough: no mixed levels, no hole
            CHECK(!r.is_shown(p.child(i)));
            CHECK(tiles_exactly(r, p));
        }
        CHECK(r.on_ready(p.child(3), t[3]));
        CHECK(r.take_released() == std::vector<ChunkKey>{p});
        CHECK_EQ(r.shown().size(), size_t(4));
        CHECK(tiles_exactly(r, p));
    }
    // 2. coarsen: children stay until the parent is Ready
    {
        Residency r;
        ChunkKey p = K(2, 1, -1);
        for (const auto& c : p.children()) CHECK(r.on_ready(c, r.on_received(c)));
        auto tp = r.on_received(p);
        auto children = p.children();
        std::vector<ChunkKey> kids(children.begin(), children.end());
        r.on_unload(kids);
        CHECK(r.take_released().empty());
        CHECK(tiles_exactly(r, p));
        CHECK(r.on_ready(p, tp));
        auto gone = r.take_released();
        std::sort(gone.begin(), gone.end());
        std::sort(kids.begin(), kids.end());
        CHECK(gone == kids);
        CHECK(r.shown() == std::vector<ChunkKey>{p});
    }
    // 3. far away: an unload with nothing loading over it goes at once; unloading a Loading chunk drops it
    {
        Residency r;
        auto t = r.on_received(K(0, 5, 5));
        r.on_ready(K(0, 5, 5), t);
        auto t2 = r.on_received(K(0, 9, 9));
        r.on_unload({K(0, 5, 5), K(0, 9, 9), K(0, 1, 1)});  // 0/1/1 unknown: ignored
        CHECK(r.take_released() == std::vector<ChunkKey>{K(0, 5, 5)});
        CHECK(!r.on_ready(K(0, 9, 9), t2));  // built after its unload: the engine destroys it
        CHECK_EQ(r.size(), size_t(0));
    }
    // 4. resend of a held chunk revives it; a stale load ticket is refused; failed loads release waiters
    {
        Residency r;
        ChunkKey p = K(1, 0, 0);
        auto t = r.on_received(p);
        r.on_ready(p, t);
        auto tc = r.on_received(p.child(0));
        r.on_unload({p});
        CHECK(r.take_released().empty());  // waits for the child
        CHECK_EQ(r.on_received(p), uint64_t(0));  // resent: kept, unload cancelled
        CHECK(!r.find(p)->unload_requested);
        r.on_unload({p});
        r.on_failed(p.child(0), tc + 99);  // wrong ticket: ignored
        CHECK(r.take_released().empty());
        r.on_failed(p.child(0), tc);        // nothing on its way any more: the parent goes
        CHECK(r.take_released() == std::vector<ChunkKey>{p});
        auto a = r.on_received(p);
        r.on_unload({p});
        auto b = r.on_received(p);  // dropped while loading, then sent again: the first build is stale
        CHECK(!r.on_ready(p, a));
        CHECK(r.on_ready(p, b));
        CHECK(r.clear() == std::vector<ChunkKey>{p});
    }
    // 5. deep mixed levels: grandchildren on one side, children elsewhere, no hole, no overlap
    {
        Residency r;
        ChunkKey root = K(0, -1, 0);
        auto ready = [&](const ChunkKey& k) { return r.on_ready(k, r.on_received(k)); };
        ready(root);
        for (int i = 1; i < 4; ++i) ready(root.child(i));
        for (const auto& g : root.child(0).children()) ready(g);
        CHECK(tiles_exactly(r, root));
        CHECK_EQ(r.shown().size(), size_t(7));
        r.on_unload({root});
        CHECK(r.take_released() == std::vector<ChunkKey>{root});
        CHECK(tiles_exactly(r, root));
    }
    // 6. random hostile sequences against a model server that follows docs/protocol.md: after every
    //    event, the area the client drew before is still drawn (no hole) and shown chunks never overlap
    std::mt19937_64 rng(21);
    int trials = 0;
    for (int trial = 0; trial < 60; ++trial) {
        Residency r;
        ChunkKey root = K(0, static_cast<int64_t>(rng() % 3) - 1, 0);
        std::vector<std::pair<ChunkKey, uint64_t>> loading;
        std::set<ChunkKey> sent;  // what the model server thinks the client holds
        auto all_keys = [&]() {
            std::vector<ChunkKey> ks{root};
            for (size_t i = 0; i < ks.size() && ks[i].level < 3; ++i)
                for (const auto& c : ks[i].children()) ks.push_back(c);
            return ks;
        }();
        bool drawn = false, failed = false;
        for (int step = 0; step < 150; ++step) {
            int what = static_cast<int>(rng() % 5);
            if (what == 0 || sent.empty()) {  // send a chunk
                ChunkKey k = all_keys[rng() % all_keys.size()];
                if (!sent.insert(k).second) continue;
                if (auto t = r.on_received(k)) loading.emplace_back(k, t);
            } else if (what <= 2 && !loading.empty()) {  // a mesh finishes (any order), sometimes fails
                size_t i = rng() % loading.size();
                if (rng() % 10 == 0) {
                    r.on_failed(loading[i].first, loading[i].second);
                    failed = true;  // a mesh that never comes may leave a hole: not checked after that
                }
                else r.on_ready(loading[i].first, loading[i].second);
                loading.erase(loading.begin() + static_cast<long>(i));
            } else {  // the server unloads a chunk whose area its other sent chunks cover (REPLACE rule)
                std::vector<ChunkKey> cand;
                std::vector<ChunkKey> held(sent.begin(), sent.end());
                for (const auto& k : held) {  // "covered by the others" as the server sees it
                    sent.erase(k);
                    if (set_covers(sent, k)) cand.push_back(k);
                    sent.insert(k);
                }
                if (cand.empty()) continue;
                ChunkKey k = cand[rng() % cand.size()];
                sent.erase(k);
                r.on_unload({k});
            }
            r.take_released();
            auto shown = r.shown();
            for (size_t i = 0; i < shown.size(); ++i)
                for (size_t j = 0; j < shown.size(); ++j)
                    if (i != j) CHECK(!shown[i].contains(shown[j]));
            bool now = r.covered_without_hole(root);
            if (drawn && !failed) CHECK(now);  // once drawn, never a hole again
            drawn = drawn || now;
        }
        ++trials;
    }
    CHECK_EQ(trials, 60);
}
