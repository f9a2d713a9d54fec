// The live test's websocket client: websocketpp 0.8 (Debian libwebsocketpp-dev) over standalone
// Asio (libasio-dev), ws:// only, driven on the caller's thread (poll runs the Asio loop for a
// bounded time), so ClientSession is never touched by another thread. The plugin uses Unreal's
// WebSockets module instead; the core itself depends on neither.
#pragma once

#ifndef ASIO_STANDALONE
#define ASIO_STANDALONE
#endif
#include <websocketpp/client.hpp>
#include <websocketpp/config/asio_no_tls_client.hpp>

#include <chrono>
#include <deque>
#include <functional>
#include <stdexcept>
#include <string>

namespace wsclient {

class WebSocket {
public:
    // Called per received message: (data, size, is_text).
    using OnMessage = std::function<void(const uint8_t*, size_t, bool)>;

    WebSocket(const std::string& host, int port, size_t max_message_bytes, std::chrono::milliseconds timeout) {
        client_.clear_access_channels(websocketpp::log::alevel::all);
        client_.clear_error_channels(websocketpp::log::elevel::all);
        client_.init_asio();
        client_.set_max_message_size(max_message_bytes);
        client_.set_open_handler([this](Handle) { open_ = true; });
        client_.set_fail_handler([this](Handle h) { fail(h); });
        client_.set_close_handler([this](Handle h) { fail(h); });
        client_.set_message_handler([this](Handle, Client::message_ptr m) {
            inbox_.push_back({m->get_opcode() == websocketpp::frame::opcode::text, std::move(m->get_raw_payload())});
        });
        websocketpp::lib::error_code ec;
        auto con = client_.get_connection("ws://" + host + ":" + std::to_string(port) + "/", ec);
        if (ec) throw std::runtime_error("websocket: " + ec.message());
        handle_ = con->get_handle();
        client_.connect(con);
        auto deadline = std::chrono::steady_clock::now() + timeout;
        while (!open_ && closed_.empty() && std::chrono::steady_clock::now() < deadline)
            client_.get_io_service().run_for(std::chrono::milliseconds(10));
        if (!open_) throw std::runtime_error("websocket: cannot connect to " + host + ":" + std::to_string(port) +
                                             (closed_.empty() ? ": timed out" : ": " + closed_));
    }
    WebSocket(const WebSocket&) = delete;
    WebSocket& operator=(const WebSocket&) = delete;

    void send_text(const std::string& text) {
        websocketpp::lib::error_code ec;
        client_.send(handle_, text, websocketpp::frame::opcode::text, ec);
        if (ec) throw std::runtime_error("websocket send: " + ec.message());
    }

    // Run the socket for up to wait_ms, then hand over every message received. False once closed.
    bool poll(int wait_ms, const OnMessage& on_message) {
        if (closed_.empty()) client_.get_io_service().run_for(std::chrono::milliseconds(wait_ms));
        while (!inbox_.empty()) {
            Message m = std::move(inbox_.front());
            inbox_.pop_front();
            on_message(reinterpret_cast<const uint8_t*>(m.payload.data()), m.payload.size(), m.text);
        }
        return closed_.empty();
    }

    void close() {
        if (!closed_.empty()) return;
        websocketpp::lib::error_code ec;
        client_.close(handle_, websocketpp::close::status::normal, "", ec);
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        while (!ec && closed_.empty() && std::chrono::steady_clock::now() < deadline)
            client_.get_io_service().run_for(std::chrono::milliseconds(10));
    }

    const std::string& close_reason() const { return closed_; }

private:
    using Client = websocketpp::client<websocketpp::config::asio_client>;
    using Handle = websocketpp::connection_hdl;
    struct Message {
        bool text;
        std::string payload;
    };
    Client client_;
    Handle handle_;
    bool open_ = false;
    std::string closed_;  // why the connection ended; empty while open
    std::deque<Message> inbox_;

    void fail(Handle h) {
        auto con = client_.get_con_from_hdl(h);
        closed_ = con->get_ec() ? con->get_ec().message()
                                : "closed (remote code " + std::to_string(con->get_remote_close_code()) + ")";
    }
};

}  // namespace wsclient
