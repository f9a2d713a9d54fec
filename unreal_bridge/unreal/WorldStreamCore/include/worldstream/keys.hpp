// Chunk keys "level/x/y" (docs/protocol.md, "World and keys"): signed, |x|, |y| <= 2^40.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace ws {

struct Bounds {
    double west = 0, south = 0, east = 0, north = 0;
    bool operator==(const Bounds& o) const {
        return west == o.west && south == o.south && east == o.east && north == o.north;
    }
};

struct ChunkKey {
    int level = 0;
    int64_t x = 0, y = 0;

    static constexpr int64_t kMaxCoord = int64_t(1) << 40;
    static constexpr int kMaxLevel = 30;  // core/keys.py MAX_LEVEL

    static ChunkKey parse(std::string_view path);  // "6/12/-13"; throws std::invalid_argument
    std::string path() const;
    ChunkKey parent() const;                     // level > 0
    ChunkKey child(int i) const;                 // i in 0..3: (2x + (i & 1), 2y + (i >> 1))
    std::array<ChunkKey, 4> children() const;
    ChunkKey ancestor(int at_level) const;       // at_level <= level
    bool contains(const ChunkKey& other) const;  // other is this key or one of its descendants

    bool operator==(const ChunkKey& o) const { return level == o.level && x == o.x && y == o.y; }
    bool operator!=(const ChunkKey& o) const { return !(*this == o); }
    bool operator<(const ChunkKey& o) const {
        return level != o.level ? level < o.level : x != o.x ? x < o.x : y < o.y;
    }
};

struct ChunkKeyHash {
    size_t operator()(const ChunkKey& k) const {
        uint64_t h = static_cast<uint64_t>(k.x) * 0x9E3779B97F4A7C15ull ^ static_cast<uint64_t>(k.y) * 0xC2B2AE3D27D4EB4Full;
        return static_cast<size_t>(h ^ (static_cast<uint64_t>(k.level) << 58));
    }
};

}  // namespace ws
