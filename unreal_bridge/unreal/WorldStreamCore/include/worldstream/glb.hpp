// GLB container checks and the chunk metadata the exporter writes (docs/frames.md): magic,
// version 2, declared length, JSON and BIN chunk types and bounds, buffer views inside the BIN
// chunk, and nodes[0].extras.worldstream (key, bounds, origin_enu, origin_unreal_cm, ...).
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "worldstream/frames.hpp"
#include "worldstream/json.hpp"
#include "worldstream/keys.hpp"
#include "worldstream/protocol.hpp"

namespace ws {

class GlbError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

struct Glb {
    uint32_t version = 0;
    uint32_t length = 0;
    Json json;
    size_t bin_offset = 0;  // into the GLB bytes
    size_t bin_size = 0;
};

// Parse and check a GLB; throws GlbError saying what is wrong.
Glb parse_glb(const uint8_t* data, size_t size);

struct TileMeta {
    ChunkKey key;
    Bounds bounds;
    Vec3 origin_enu;
    Vec3 origin_unreal_cm;
    Vec3 enu_min, enu_max;
    double geometric_error = 0;
    double resolution_m = 0;
    Vec3 node_translation;  // glTF frame
};

// nodes[0].extras.worldstream of a chunk GLB (format "worldstream.chunk/1"); throws GlbError.
TileMeta read_tile_meta(const Glb& glb);
// The frame and its GLB agree: key, bounds, origin = (west, south, 0), origin_unreal_cm =
// enu_to_unreal_cm(origin), node translation = enu_to_gltf(origin), z range and error as the
// server derives them. Throws GlbError naming the first mismatch.
void check_tile_against_frame(const TileMeta& meta, const ChunkFrame& frame);

}  // namespace ws
