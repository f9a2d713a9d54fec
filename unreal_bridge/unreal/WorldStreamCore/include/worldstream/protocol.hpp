// Streaming protocol v1 (docs/protocol.md), sans-I/O: the client's messages out, the server's in,
// binary chunk frames both ways, and the accumulation of websocket fragments. Mirrors
// worldstream.unreal_bridge.protocol; errors are ProtocolError with the protocol's error codes.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "worldstream/json.hpp"
#include "worldstream/keys.hpp"

namespace ws {

constexpr int kProtocolVersion = 1;
constexpr size_t kMaxTextBytes = 64 * 1024;
constexpr size_t kMaxCameras = 8;
constexpr uint32_t kMaxSeq = 0xFFFFFFFFu;
constexpr size_t kChunkHeaderBytes = 84;
constexpr int kMaxCreditPerMessage = 4096;

class ProtocolError : public std::runtime_error {
public:
    ProtocolError(std::string code, const std::string& message) : std::runtime_error(message), code_(std::move(code)) {}
    const std::string& code() const { return code_; }

private:
    std::string code_;
};

// ------------------------------------------------------------------------------ client -> server
struct Hello {
    std::string client = "worldstream.cpp";
    std::optional<std::string> token;
    std::vector<std::string> sidecars;  // sidecar files wanted besides mesh.glb
};

// One camera: "enu" (world ENU m; body x forward, y left, z up) or "airsim" (NED m from
// player_start; body x forward, y right, z down). Quaternion [w, x, y, z].
struct CameraView {
    std::string id = "0";
    std::string frame = "enu";
    std::array<double, 3> position{0, 0, 0};
    std::array<double, 4> orientation{1, 0, 0, 0};
    double fov_deg = 90.0;
    std::array<int, 2> viewport{1920, 1080};
    double max_sse = 16.0;
    std::array<double, 3> player_start{0, 0, 0};
};

struct View {
    uint32_t seq = 0;
    std::vector<CameraView> cameras;
};

// Text frames, byte-identical to Python's encode_client. encode_view checks what the server
// would reject (1..8 cameras, unique ids, ranges, finite numbers) and throws ProtocolError("bad_message").
std::string encode_hello(const Hello& hello);
std::string encode_view(const View& view);
std::string encode_credit(int chunks);
std::string encode_stats_request();

// ------------------------------------------------------------------------------ server -> client
struct WorldSpec {
    int64_t seed = 0;
    double base_resolution = 64.0;  // m/px at level 0
    int chunk_size = 256;           // px per chunk side
    int levels = 7;
    double lat = 0, lon = 0, alt = 0;  // geodetic anchor of world (0, 0, 0)
    double chunk_extent(int level) const;
    Bounds bounds(const ChunkKey& key) const;
    static WorldSpec from_json(const Json& world);  // throws ProtocolError
};

struct Welcome {
    int protocol = kProtocolVersion;
    WorldSpec world;
    Json world_json;
    std::string tileset;
    int credit = 0;
    int64_t max_message_bytes = 0;
};
struct Unload {
    std::vector<ChunkKey> keys;
};
struct ServerError {
    std::string code, message;
    std::optional<uint32_t> seq;
};
struct Stats {
    Json body;  // the whole message ("client": delivered, pending, required, ...)
};
using ServerMessage = std::variant<Welcome, Unload, ServerError, Stats>;

// One server text frame; throws ProtocolError (bad_json, bad_message, unknown_type, too_large).
ServerMessage decode_server(std::string_view text);

// ------------------------------------------------------------------------------ chunk frames
struct PartRef {
    std::string name;
    size_t offset = 0;  // into the frame's bytes
    size_t size = 0;
};

struct ChunkFrame {
    ChunkKey key;
    uint8_t flags = 0;
    double geometric_error = 0;
    Bounds bounds;
    double z_min = 0, z_max = 0;
    uint32_t seq = 0;
    std::vector<PartRef> parts;  // in table order ("mesh.glb" first from this server)
    const PartRef* find(std::string_view name) const;
};

// Parse a binary chunk frame without copying payloads; the same checks as Python's
// decode_chunk_frame (header length, magic, table and payload bounds, no trailing bytes).
ChunkFrame decode_chunk_frame(const uint8_t* data, size_t size);
// Build a frame (tests, tools): parts as (name, bytes), the frame's own parts list is ignored.
std::vector<uint8_t> encode_chunk_frame(const ChunkFrame& header,
                                        const std::vector<std::pair<std::string, std::vector<uint8_t>>>& parts);

// ------------------------------------------------------------------------------ fragments
// Accumulates the fragments of one websocket message (Unreal's OnBinaryMessage gives
// (data, size, bIsLastFragment)); refuses messages over max_bytes.
class FragmentAssembler {
public:
    explicit FragmentAssembler(size_t max_bytes = size_t(256) << 20) : max_bytes_(max_bytes) {}
    // Returns true when `last` completed a message: take it with take().
    bool append(const void* data, size_t size, bool last);
    std::vector<uint8_t> take();
    size_t pending_bytes() const { return buffer_.size(); }
    void reset() { buffer_.clear(); complete_ = false; }

private:
    size_t max_bytes_;
    std::vector<uint8_t> buffer_;
    bool complete_ = false;
};

}  // namespace ws
