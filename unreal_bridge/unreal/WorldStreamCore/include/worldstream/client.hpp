// A streaming client's state, sans-I/O: the Unreal subsystem and the live test feed it what the
// socket received and send what it returns. It speaks protocol v1 (hello, views with seq counting
// from 1, one credit returned per chunk frame), accumulates binary fragments, checks every chunk
// frame and its GLB, and keeps the Residency (REPLACE swaps, unloads).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "worldstream/glb.hpp"
#include "worldstream/protocol.hpp"
#include "worldstream/residency.hpp"

namespace ws {

struct ChunkArrival {
    ChunkFrame frame;
    std::shared_ptr<const std::vector<uint8_t>> bytes;  // the whole frame; frame.parts index into it
    TileMeta meta;
    uint64_t ticket = 0;  // > 0: build this mesh, then residency().on_ready(key, ticket); 0: already held
};

struct ClientStats {
    uint64_t frames = 0, frame_bytes = 0, unload_messages = 0, unloaded_keys = 0, errors = 0, views = 0;
};

class ClientSession {
public:
    explicit ClientSession(Hello hello, size_t max_message_bytes = size_t(256) << 20);

    std::string hello_text() const;
    std::string view_text(std::vector<CameraView> cameras);  // next seq (1, 2, ...)
    std::string stats_request_text() const { return encode_stats_request(); }

    // Feed what the socket received. Errors (malformed frames, server `error` messages) are
    // collected, not thrown: a bad frame costs that chunk only, and its credit is still returned.
    void on_text(std::string_view text);
    void on_binary_fragment(const void* data, size_t size, bool last);

    // What happened since the last call.
    std::vector<std::string> take_outgoing();      // text frames to send (credit)
    std::vector<ChunkArrival> take_chunks();
    std::vector<ProtocolError> take_errors();       // local decode errors and server errors
    std::optional<Stats> take_stats();

    bool welcomed() const { return welcome_.has_value(); }
    const std::optional<Welcome>& welcome() const { return welcome_; }
    Residency& residency() { return residency_; }
    const Residency& residency() const { return residency_; }
    const ClientStats& stats() const { return stats_; }
    uint32_t last_seq() const { return seq_; }

private:
    Hello hello_;
    FragmentAssembler binary_;
    Residency residency_;
    std::optional<Welcome> welcome_;
    uint32_t seq_ = 0;
    ClientStats stats_;
    std::vector<std::string> outgoing_;
    std::vector<ChunkArrival> chunks_;
    std::vector<ProtocolError> errors_;
    std::optional<Stats> last_stats_;
    void on_frame(std::vector<uint8_t> bytes);
};

}  // namespace ws
