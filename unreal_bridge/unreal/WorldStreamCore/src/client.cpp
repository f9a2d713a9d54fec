// Sans-I/O client session (see client.hpp).
#include "worldstream/client.hpp"

namespace ws {

ClientSession::ClientSession(Hello hello, size_t max_message_bytes) : hello_(std::move(hello)), binary_(max_message_bytes) {}

std::string ClientSession::hello_text() const { return encode_hello(hello_); }

std::string ClientSession::view_text(std::vector<CameraView> cameras) {
    View v;
    v.seq = seq_ == kMaxSeq ? 0 : seq_ + 1;  // the u32 range of the protocol
    v.cameras = std::move(cameras);
    std::string text = encode_view(v);  // throws before seq advances
    seq_ = v.seq;
    ++stats_.views;
    return text;
}

void ClientSession::on_text(std::string_view text) {
    ServerMessage m;
    try {
        m = decode_server(text);
    } catch (const ProtocolError& e) {
        errors_.push_back(e);
        ++stats_.errors;
        return;
    }
    if (auto* w = std::get_if<Welcome>(&m)) {
        welcome_ = *w;
    } else if (auto* u = std::get_if<Unload>(&m)) {
        ++stats_.unload_messages;
        stats_.unloaded_keys += u->keys.size();
        residency_.on_unload(u->keys);
    } else if (auto* e = std::get_if<ServerError>(&m)) {
        errors_.emplace_back(e->code, "server: " + e->message);
        ++stats_.errors;
    } else if (auto* s = std::get_if<Stats>(&m)) {
        last_stats_ = *s;
    }
}

void ClientSession::on_binary_fragment(const void* data, size_t size, bool last) {
    try {
        if (binary_.append(data, size, last)) on_frame(binary_.take());
    } catch (const ProtocolError& e) {  // over the size limit: that message is lost, its credit too
        errors_.push_back(e);
        ++stats_.errors;
    }
}

void ClientSession::on_frame(std::vector<uint8_t> bytes) {
    ++stats_.frames;
    stats_.frame_bytes += bytes.size();
    outgoing_.push_back(encode_credit(1));  // the server spent one credit on this frame, good or bad
    try {
        auto shared = std::make_shared<const std::vector<uint8_t>>(std::move(bytes));
        ChunkFrame f = decode_chunk_frame(shared->data(), shared->size());
        if (welcome_ && f.key.level >= welcome_->world.levels)
            throw ProtocolError("bad_message", "chunk " + f.key.path() + " is below the world's finest level");
        const PartRef* glb = f.find("mesh.glb");
        if (!glb) throw ProtocolError("bad_message", "chunk " + f.key.path() + " has no mesh.glb part");
        TileMeta meta;
        try {
            meta = read_tile_meta(parse_glb(shared->data() + glb->offset, glb->size));
            check_tile_against_frame(meta, f);
        } catch (const GlbError& e) {
            throw ProtocolError("bad_message", e.what());
        }
        ChunkArrival a{std::move(f), shared, meta, 0};
        a.ticket = residency_.on_received(a.frame.key);
        chunks_.push_back(std::move(a));
    } catch (const ProtocolError& e) {
        errors_.push_back(e);
        ++stats_.errors;
    }
}

std::vector<std::string> ClientSession::take_outgoing() {
    std::vector<std::string> out;
    out.swap(outgoing_);
    return out;
}
std::vector<ChunkArrival> ClientSession::take_chunks() {
    std::vector<ChunkArrival> out;
    out.swap(chunks_);
    return out;
}
std::vector<ProtocolError> ClientSession::take_errors() {
    std::vector<ProtocolError> out;
    out.swap(errors_);
    return out;
}
std::optional<Stats> ClientSession::take_stats() {
    auto out = std::move(last_stats_);
    last_stats_.reset();
    return out;
}

}  // namespace ws
