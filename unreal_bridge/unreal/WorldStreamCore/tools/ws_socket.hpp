// A minimal blocking RFC 6455 websocket client over POSIX sockets, for the live test only (the
// plugin uses Unreal's WebSockets module): ws:// only, client frames masked, fragments delivered as
// they come (so ClientSession's fragment assembly is exercised), pings answered, no extensions.
#pragma once

#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>

namespace wsnet {

class SocketError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

class WebSocket {
public:
    // Called per received data frame: (data, size, is_text, is_last_fragment).
    using OnData = std::function<void(const uint8_t*, size_t, bool, bool)>;

    WebSocket(const std::string& host, int port, const std::string& path = "/");
    ~WebSocket();
    WebSocket(const WebSocket&) = delete;
    WebSocket& operator=(const WebSocket&) = delete;

    void send_text(const std::string& text);
    // Wait up to timeout_ms for data; handle every frame that arrives. False once the server closed.
    bool poll(int timeout_ms, const OnData& on_data);
    void close(uint16_t code = 1000);
    uint16_t close_code() const { return close_code_; }

private:
    int fd_ = -1;
    bool closed_ = false;
    uint16_t close_code_ = 0;
    bool text_message_ = false;  // the opcode of the message being fragmented
    void send_frame(uint8_t opcode, const uint8_t* data, size_t size);
    void read_exact(uint8_t* out, size_t n);
    bool read_frame(const OnData& on_data);
};

}  // namespace wsnet
