// GLB checks (see glb.hpp).
#include "worldstream/glb.hpp"

#include <cmath>
#include <cstring>

namespace ws {

namespace {
uint32_t u32(const uint8_t* p) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
}
constexpr uint32_t kJson = 0x4E4F534A;  // "JSON"
constexpr uint32_t kBin = 0x004E4942;   // "BIN\0"

Vec3 vec3(const Json& j, const char* what) {
    const auto& a = j.as_array();
    if (a.size() != 3) throw GlbError(std::string(what) + " must have 3 numbers");
    return {a[0].as_double(), a[1].as_double(), a[2].as_double()};
}
bool near(double a, double b, double tol) { return std::fabs(a - b) <= tol; }
bool near(const Vec3& a, const Vec3& b, double tol) { return near(a.x, b.x, tol) && near(a.y, b.y, tol) && near(a.z, b.z, tol); }
}  // namespace

Glb parse_glb(const uint8_t* data, size_t size) {
    if (size < 20) throw GlbError("GLB of " + std::to_string(size) + " bytes is shorter than its headers");
    if (std::memcmp(data, "glTF", 4) != 0) throw GlbError("not a GLB (magic is not 'glTF')");
    Glb g;
    g.version = u32(data + 4);
    g.length = u32(data + 8);
    if (g.version != 2) throw GlbError("GLB version " + std::to_string(g.version) + ", expected 2");
    if (g.length != size)
        throw GlbError("GLB header says " + std::to_string(g.length) + " bytes, the data has " + std::to_string(size));
    if (g.length % 4) throw GlbError("GLB length is not a multiple of 4");
    uint32_t jlen = u32(data + 12), jtype = u32(data + 16);
    if (jtype != kJson) throw GlbError("the first GLB chunk is not JSON");
    if (jlen % 4 || jlen > size - 20) throw GlbError("the JSON chunk's length is out of bounds or unaligned");
    try {
        g.json = Json::parse(std::string_view(reinterpret_cast<const char*>(data + 20), jlen), 128, 40);
    } catch (const JsonError& e) {
        throw GlbError(std::string("the JSON chunk: ") + e.what());
    }
    size_t off = 20 + size_t(jlen);
    if (off < size) {
        if (size - off < 8) throw GlbError("truncated BIN chunk header");
        uint32_t blen = u32(data + off), btype = u32(data + off + 4);
        if (btype != kBin) throw GlbError("the second GLB chunk is not BIN");
        if (blen % 4 || blen > size - off - 8) throw GlbError("the BIN chunk's length is out of bounds or unaligned");
        g.bin_offset = off + 8;
        g.bin_size = blen;
        off += 8 + size_t(blen);
    }
    if (off != size) throw GlbError("bytes after the GLB chunks");
    try {
        const Json& asset = g.json.at("asset");
        if (asset.at("version").as_string() != "2.0") throw GlbError("asset.version is not 2.0");
        size_t buffer0 = 0;
        if (const Json* buffers = g.json.find("buffers")) {
            const auto& b = buffers->as_array();
            if (!b.empty()) {
                if (b[0].find("uri")) throw GlbError("buffers[0] of a GLB must not have a uri");
                buffer0 = static_cast<size_t>(b[0].at("byteLength").as_int());
                if (buffer0 > g.bin_size) throw GlbError("buffers[0].byteLength exceeds the BIN chunk");
            }
            for (size_t i = 1; i < b.size(); ++i)
                if (!b[i].find("uri")) throw GlbError("only buffers[0] may live in the BIN chunk");
        }
        if (const Json* views = g.json.find("bufferViews")) {
            for (const Json& v : views->as_array()) {
                if (v.at("buffer").as_int() != 0) continue;
                int64_t o = v.find("byteOffset") ? v.at("byteOffset").as_int() : 0;
                int64_t n = v.at("byteLength").as_int();
                if (o < 0 || n < 0 || static_cast<size_t>(o + n) > buffer0) throw GlbError("a bufferView lies outside buffers[0]");
            }
        }
    } catch (const JsonError& e) {
        throw GlbError(std::string("glTF JSON: ") + e.what());
    }
    return g;
}

TileMeta read_tile_meta(const Glb& glb) {
    try {
        const Json& node = glb.json.at("nodes").as_array().at(0);
        const Json& m = node.at("extras").at("worldstream");
        if (m.at("format").as_string() != "worldstream.chunk/1") throw GlbError("extras.worldstream.format is not worldstream.chunk/1");
        TileMeta t;
        const Json& k = m.at("key");
        t.key = ChunkKey{static_cast<int>(k.at("level").as_int()), k.at("x").as_int(), k.at("y").as_int()};
        const Json& b = m.at("bounds");
        t.bounds = Bounds{b.at("west").as_double(), b.at("south").as_double(), b.at("east").as_double(), b.at("north").as_double()};
        t.origin_enu = vec3(m.at("origin_enu"), "origin_enu");
        t.origin_unreal_cm = vec3(m.at("origin_unreal_cm"), "origin_unreal_cm");
        t.enu_min = vec3(m.at("enu_min"), "enu_min");
        t.enu_max = vec3(m.at("enu_max"), "enu_max");
        t.geometric_error = m.at("geometric_error").as_double();
        t.resolution_m = m.at("resolution_m").as_double();
        t.node_translation = node.find("translation") ? vec3(node.at("translation"), "translation") : Vec3{};
        return t;
    } catch (const JsonError& e) {
        throw GlbError(std::string("chunk metadata (nodes[0].extras.worldstream): ") + e.what());
    } catch (const std::out_of_range&) {
        throw GlbError("the GLB has no nodes");
    }
}

void check_tile_against_frame(const TileMeta& t, const ChunkFrame& f) {
    auto fail = [&](const std::string& what) { throw GlbError("chunk " + f.key.path() + ": " + what); };
    if (t.key != f.key) fail("GLB key " + t.key.path() + " differs from the frame's");
    if (!(t.bounds == f.bounds)) fail("GLB bounds differ from the frame's");
    Vec3 origin{f.bounds.west, f.bounds.south, 0.0};
    if (!near(t.origin_enu, origin, 1e-9)) fail("origin_enu is not the chunk's south-west corner");
    if (!near(t.origin_unreal_cm, enu_to_unreal_cm(origin), 1e-6)) fail("origin_unreal_cm disagrees with origin_enu");
    if (!near(t.node_translation, enu_to_gltf(origin), 1e-9)) fail("the node translation is not the origin in glTF axes");
    if (t.enu_min.z != f.z_min || t.enu_max.z != f.z_max) fail("z range differs from enu_min/enu_max");
    if (!near(f.geometric_error, t.geometric_error + 0.5 * t.resolution_m, 1e-9)) fail("geometric error disagrees");
    if (!(t.enu_min.z <= t.enu_max.z)) fail("enu_min.z > enu_max.z");
}

}  // namespace ws
