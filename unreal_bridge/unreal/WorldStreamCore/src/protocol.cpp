// Protocol v1 encode / decode (see protocol.hpp and docs/protocol.md).
#include "worldstream/protocol.hpp"

#include <cmath>
#include <cstring>
#include <set>

namespace ws {

namespace {
const char* kBadMessage = "bad_message";

[[noreturn]] void bad(const std::string& message) { throw ProtocolError(kBadMessage, message); }

Json vec(const double* v, size_t n) {
    Json::Array a;
    for (size_t i = 0; i < n; ++i) {
        if (!std::isfinite(v[i])) bad("camera numbers must be finite");
        a.emplace_back(v[i]);
    }
    return Json(std::move(a));
}

template <typename T>
void put(std::vector<uint8_t>& out, T v) {  // little-endian (every supported target is)
    uint8_t b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));
    out.insert(out.end(), b, b + sizeof(T));
}
template <typename T>
T get(const uint8_t* p) {
    T v;
    std::memcpy(&v, p, sizeof(T));
    return v;
}
}  // namespace

// ------------------------------------------------------------------------------ client messages
std::string encode_hello(const Hello& hello) {
    if (hello.client.size() > 128) bad("\"client\" must be at most 128 characters");
    if (hello.token && hello.token->size() > 1024) bad("\"token\" must be at most 1024 characters");
    Json obj{Json::Object{}};
    obj.set("type", "hello");
    obj.set("protocol", kProtocolVersion);
    obj.set("client", hello.client);
    Json::Array sidecars;
    for (const auto& s : hello.sidecars) sidecars.emplace_back(s);
    obj.set("sidecars", Json(std::move(sidecars)));
    if (hello.token) obj.set("token", *hello.token);
    return obj.dump();
}

std::string encode_view(const View& view) {
    if (view.cameras.empty() || view.cameras.size() > kMaxCameras) bad("a view needs 1..8 cameras");
    std::set<std::string> ids;
    Json::Array cams;
    for (const auto& c : view.cameras) {
        if (c.id.size() > 64) bad("camera \"id\" must be at most 64 characters");
        if (!ids.insert(c.id).second) bad("camera ids must be unique within a view");
        if (c.frame != "enu" && c.frame != "airsim") bad("camera \"frame\" must be enu or airsim");
        double norm = std::sqrt(c.orientation[0] * c.orientation[0] + c.orientation[1] * c.orientation[1] +
                                c.orientation[2] * c.orientation[2] + c.orientation[3] * c.orientation[3]);
        if (!(norm > 0.5 && norm < 2.0)) bad("camera \"orientation\" must be a unit quaternion [w, x, y, z]");
        if (!(c.fov_deg >= 1.0 && c.fov_deg <= 170.0)) bad("camera \"fov_deg\" must be in [1, 170]");
        if (!(c.max_sse >= 0.5 && c.max_sse <= 1000.0)) bad("camera \"max_sse\" must be in [0.5, 1000]");
        for (int v : c.viewport)
            if (v < 1 || v > 16384) bad("camera \"viewport\" must be [width, height] in 1..16384 pixels");
        Json cam{Json::Object{}};
        cam.set("id", c.id);
        cam.set("frame", c.frame);
        cam.set("position", vec(c.position.data(), 3));
        cam.set("orientation", vec(c.orientation.data(), 4));
        cam.set("fov_deg", c.fov_deg);
        cam.set("viewport", Json(Json::Array{Json(c.viewport[0]), Json(c.viewport[1])}));
        cam.set("max_sse", c.max_sse);
        cam.set("player_start", vec(c.player_start.data(), 3));
        cams.push_back(std::move(cam));
    }
    Json obj{Json::Object{}};
    obj.set("type", "view");
    obj.set("seq", static_cast<int64_t>(view.seq));
    obj.set("cameras", Json(std::move(cams)));
    return obj.dump();
}

std::string encode_credit(int chunks) {
    if (chunks < 0 || chunks > kMaxCreditPerMessage) bad("\"chunks\" must be in [0, 4096]");
    return "{\"type\":\"credit\",\"chunks\":" + std::to_string(chunks) + "}";
}

std::string encode_stats_request() { return "{\"type\":\"stats\"}"; }

// ------------------------------------------------------------------------------ server messages
double WorldSpec::chunk_extent(int level) const { return std::ldexp(base_resolution, -level) * chunk_size; }

Bounds WorldSpec::bounds(const ChunkKey& k) const {
    double e = chunk_extent(k.level);
    return Bounds{static_cast<double>(k.x) * e, static_cast<double>(k.y) * e, static_cast<double>(k.x + 1) * e,
                  static_cast<double>(k.y + 1) * e};
}

WorldSpec WorldSpec::from_json(const Json& w) {
    try {
        WorldSpec s;
        s.seed = w.at("seed").as_int();
        s.base_resolution = w.at("base_resolution").as_double();
        s.chunk_size = static_cast<int>(w.at("chunk_size").as_int());
        s.levels = static_cast<int>(w.at("levels").as_int());
        const Json& o = w.at("origin");
        s.lat = o.at("lat").as_double();
        s.lon = o.at("lon").as_double();
        s.alt = o.at("alt").as_double();
        if (!(s.base_resolution > 0) || s.chunk_size < 1 || s.levels < 1 || s.levels > ChunkKey::kMaxLevel + 1)
            bad("world spec out of range");
        return s;
    } catch (const JsonError& e) {
        bad(std::string("welcome.world: ") + e.what());
    }
}

ServerMessage decode_server(std::string_view text) {
    if (text.size() > kMaxTextBytes)
        throw ProtocolError("too_large", "message of " + std::to_string(text.size()) + " bytes; the limit is 65536");
    Json obj;
    try {
        obj = Json::parse(text);
    } catch (const JsonError& e) {
        throw ProtocolError("bad_json", std::string("message is not JSON: ") + e.what());
    }
    const Json* type = obj.find("type");
    if (!type || !type->is_string()) bad("expected a JSON object with a string \"type\"");
    const std::string& t = type->as_string();
    try {
        if (t == "welcome") {
            Welcome w;
            w.protocol = static_cast<int>(obj.at("protocol").as_int());
            if (w.protocol != kProtocolVersion)
                throw ProtocolError("unsupported_version", "server speaks protocol " + std::to_string(w.protocol));
            w.world_json = obj.at("world");
            w.world = WorldSpec::from_json(w.world_json);
            w.tileset = obj.at("tileset").as_string();
            w.credit = static_cast<int>(obj.at("credit").as_int());
            w.max_message_bytes = obj.at("max_message_bytes").as_int();
            return w;
        }
        if (t == "unload") {
            Unload u;
            for (const Json& k : obj.at("keys").as_array()) {
                try {
                    u.keys.push_back(ChunkKey::parse(k.as_string()));
                } catch (const std::invalid_argument& e) {
                    bad(std::string("unload: ") + e.what());
                }
            }
            return u;
        }
        if (t == "error") {
            ServerError e;
            e.code = obj.at("code").as_string();
            e.message = obj.at("message").as_string();
            if (const Json* s = obj.find("seq")) {
                int64_t v = s->as_int();
                if (v < 0 || v > kMaxSeq) bad("error.seq out of the u32 range");
                e.seq = static_cast<uint32_t>(v);
            }
            return e;
        }
        if (t == "stats") return Stats{obj};
    } catch (const JsonError& e) {
        bad("a " + t + " message: " + e.what());
    }
    throw ProtocolError("unknown_type", "unknown message type '" + t.substr(0, 64) + "'");
}

// ------------------------------------------------------------------------------ chunk frames
const PartRef* ChunkFrame::find(std::string_view name) const {
    for (const auto& p : parts)
        if (p.name == name) return &p;
    return nullptr;
}

ChunkFrame decode_chunk_frame(const uint8_t* data, size_t size) {
    if (size < kChunkHeaderBytes)
        bad("chunk frame of " + std::to_string(size) + " bytes is shorter than its 84-byte header");
    if (std::memcmp(data, "WSC1", 4) != 0) bad("not a chunk frame (magic is not WSC1)");
    ChunkFrame f;
    f.key.level = data[4];
    f.flags = data[5];
    uint16_t nparts = get<uint16_t>(data + 6);
    f.key.x = get<int64_t>(data + 8);
    f.key.y = get<int64_t>(data + 16);
    f.geometric_error = get<double>(data + 24);
    f.bounds = Bounds{get<double>(data + 32), get<double>(data + 40), get<double>(data + 48), get<double>(data + 56)};
    f.z_min = get<double>(data + 64);
    f.z_max = get<double>(data + 72);
    f.seq = get<uint32_t>(data + 80);
    size_t off = kChunkHeaderBytes;
    for (uint16_t i = 0; i < nparts; ++i) {
        if (off + 5 > size) bad("chunk frame's parts table is truncated");
        uint8_t nlen = data[off];
        uint32_t psize = get<uint32_t>(data + off + 1);
        off += 5;
        if (off + nlen > size) bad("chunk frame's parts table is truncated");
        f.parts.push_back(PartRef{std::string(reinterpret_cast<const char*>(data + off), nlen), 0, psize});
        off += nlen;
    }
    for (auto& p : f.parts) {
        if (p.size > size - off) bad("chunk frame's part '" + p.name + "' is truncated");
        p.offset = off;
        off += p.size;
    }
    if (off != size) bad("chunk frame has " + std::to_string(size - off) + " trailing bytes");
    return f;
}

std::vector<uint8_t> encode_chunk_frame(const ChunkFrame& h,
                                        const std::vector<std::pair<std::string, std::vector<uint8_t>>>& parts) {
    if (h.key.level < 0 || h.key.level > 255) throw std::invalid_argument("level must fit a u8");
    if (parts.size() > 0xFFFF) throw std::invalid_argument("too many parts");
    std::vector<uint8_t> out{'W', 'S', 'C', '1'};
    put<uint8_t>(out, static_cast<uint8_t>(h.key.level));
    put<uint8_t>(out, 0);
    put<uint16_t>(out, static_cast<uint16_t>(parts.size()));
    put<int64_t>(out, h.key.x);
    put<int64_t>(out, h.key.y);
    for (double v : {h.geometric_error, h.bounds.west, h.bounds.south, h.bounds.east, h.bounds.north, h.z_min, h.z_max})
        put<double>(out, v);
    put<uint32_t>(out, h.seq);
    for (const auto& p : parts) {
        if (p.first.empty() || p.first.size() > 255) throw std::invalid_argument("part name must be 1..255 bytes");
        if (p.second.size() > 0xFFFFFFFFu) throw std::invalid_argument("part larger than 4 GiB");
        put<uint8_t>(out, static_cast<uint8_t>(p.first.size()));
        put<uint32_t>(out, static_cast<uint32_t>(p.second.size()));
        out.insert(out.end(), p.first.begin(), p.first.end());
    }
    for (const auto& p : parts) out.insert(out.end(), p.second.begin(), p.second.end());
    return out;
}

// ------------------------------------------------------------------------------ fragments
bool FragmentAssembler::append(const void* data, size_t size, bool last) {
    if (complete_) throw std::logic_error("take() the completed message before appending the next");
    if (size > max_bytes_ - buffer_.size()) {
        size_t total = buffer_.size() + size;
        reset();
        throw ProtocolError("too_large", "websocket message of at least " + std::to_string(total) +
                                             " bytes exceeds the limit of " + std::to_string(max_bytes_));
    }
    const uint8_t* p = static_cast<const uint8_t*>(data);
    buffer_.insert(buffer_.end(), p, p + size);
    complete_ = last;
    return last;
}

std::vector<uint8_t> FragmentAssembler::take() {
    if (!complete_) throw std::logic_error("no complete message to take");
    complete_ = false;
    std::vector<uint8_t> out;
    out.swap(buffer_);
    return out;
}

}  // namespace ws
