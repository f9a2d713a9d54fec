// Chunk keys (see keys.hpp).
#include "worldstream/keys.hpp"

#include <charconv>
#include <stdexcept>

namespace ws {

namespace {
int64_t floor_shift(int64_t v, int d) {  // floor(v / 2^d) for negative v too
    return v >= 0 ? (v >> d) : -(((-v) + (int64_t(1) << d) - 1) >> d);
}
template <typename T>
bool parse_int(std::string_view s, T& out) {
    if (!s.empty() && s[0] == '+') s.remove_prefix(1);
    auto r = std::from_chars(s.data(), s.data() + s.size(), out);
    return !s.empty() && r.ec == std::errc() && r.ptr == s.data() + s.size();
}
}  // namespace

ChunkKey ChunkKey::parse(std::string_view path) {
    auto bad = [&]() {
        return std::invalid_argument("expected a chunk key as 'level/x/y' with integers, got '" + std::string(path) + "'");
    };
    size_t a = path.find('/');
    size_t b = a == std::string_view::npos ? a : path.find('/', a + 1);
    if (b == std::string_view::npos || path.find('/', b + 1) != std::string_view::npos) throw bad();
    ChunkKey k;
    if (!parse_int(path.substr(0, a), k.level) || !parse_int(path.substr(a + 1, b - a - 1), k.x) ||
        !parse_int(path.substr(b + 1), k.y))
        throw bad();
    if (k.level < 0 || k.level > kMaxLevel || k.x > kMaxCoord || k.x < -kMaxCoord || k.y > kMaxCoord || k.y < -kMaxCoord)
        throw std::invalid_argument("chunk key '" + std::string(path) + "' is out of range (level 0.." +
                                    std::to_string(kMaxLevel) + ", |x|, |y| <= 2^40)");
    return k;
}

std::string ChunkKey::path() const {
    return std::to_string(level) + "/" + std::to_string(x) + "/" + std::to_string(y);
}

ChunkKey ChunkKey::parent() const {
    if (level <= 0) throw std::logic_error("a level-0 chunk has no parent");
    return ChunkKey{level - 1, floor_shift(x, 1), floor_shift(y, 1)};
}

ChunkKey ChunkKey::child(int i) const { return ChunkKey{level + 1, 2 * x + (i & 1), 2 * y + (i >> 1)}; }

std::array<ChunkKey, 4> ChunkKey::children() const { return {child(0), child(1), child(2), child(3)}; }

ChunkKey ChunkKey::ancestor(int at_level) const {
    if (at_level > level || at_level < 0) throw std::logic_error("ancestor level out of range");
    int d = level - at_level;
    return ChunkKey{at_level, floor_shift(x, d), floor_shift(y, d)};
}

bool ChunkKey::contains(const ChunkKey& other) const {
    return other.level >= level && other.ancestor(level) == *this;
}

}  // namespace ws
