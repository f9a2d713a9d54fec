// Minimal websocket client (see ws_socket.hpp).
#include "ws_socket.hpp"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <random>
#include <vector>

namespace wsnet {

namespace {
std::string base64(const uint8_t* d, size_t n) {
    static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = uint32_t(d[i]) << 16 | (i + 1 < n ? uint32_t(d[i + 1]) << 8 : 0) | (i + 2 < n ? d[i + 2] : 0);
        out += t[(v >> 18) & 63];
        out += t[(v >> 12) & 63];
        out += i + 1 < n ? t[(v >> 6) & 63] : '=';
        out += i + 2 < n ? t[v & 63] : '=';
    }
    return out;
}
std::mt19937& rng() {
    static std::mt19937 r{std::random_device{}()};
    return r;
}
}  // namespace

WebSocket::WebSocket(const std::string& host, int port, const std::string& path) {
    addrinfo hints{}, *res = nullptr;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res) != 0 || !res)
        throw SocketError("cannot resolve " + host);
    for (addrinfo* a = res; a && fd_ < 0; a = a->ai_next) {
        int fd = ::socket(a->ai_family, a->ai_socktype, a->ai_protocol);
        if (fd >= 0 && ::connect(fd, a->ai_addr, a->ai_addrlen) == 0) fd_ = fd;
        else if (fd >= 0) ::close(fd);
    }
    freeaddrinfo(res);
    if (fd_ < 0) throw SocketError("cannot connect to " + host + ":" + std::to_string(port) + ": " + std::strerror(errno));
    timeval tv{30, 0};  // a frame that started must finish within this
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    uint8_t key[16];
    for (auto& b : key) b = static_cast<uint8_t>(rng()());
    std::string req = "GET " + path + " HTTP/1.1\r\nHost: " + host + ":" + std::to_string(port) +
                      "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + base64(key, 16) +
                      "\r\nSec-WebSocket-Version: 13\r\n\r\n";
    if (::send(fd_, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size()))
        throw SocketError("handshake send failed");
    std::string head;
    while (head.find("\r\n\r\n") == std::string::npos) {  // byte by byte: nothing after the headers is lost
        uint8_t c;
        read_exact(&c, 1);
        head += static_cast<char>(c);
        if (head.size() > 16384) throw SocketError("handshake response too long");
    }
    if (head.compare(0, 12, "HTTP/1.1 101") != 0) throw SocketError("handshake refused: " + head.substr(0, head.find('\r')));
}

WebSocket::~WebSocket() {
    if (fd_ >= 0) ::close(fd_);
}

void WebSocket::read_exact(uint8_t* out, size_t n) {
    while (n) {
        ssize_t r = ::recv(fd_, out, n, 0);
        if (r <= 0) throw SocketError(r == 0 ? "connection closed" : std::string("recv: ") + std::strerror(errno));
        out += r;
        n -= static_cast<size_t>(r);
    }
}

void WebSocket::send_frame(uint8_t opcode, const uint8_t* data, size_t size) {
    std::vector<uint8_t> f{static_cast<uint8_t>(0x80 | opcode)};
    if (size < 126) f.push_back(static_cast<uint8_t>(0x80 | size));
    else if (size < 65536) {
        f.push_back(0x80 | 126);
        f.push_back(static_cast<uint8_t>(size >> 8));
        f.push_back(static_cast<uint8_t>(size));
    } else {
        f.push_back(0x80 | 127);
        for (int s = 56; s >= 0; s -= 8) f.push_back(static_cast<uint8_t>(uint64_t(size) >> s));
    }
    uint8_t mask[4];
    for (auto& b : mask) b = static_cast<uint8_t>(rng()());
    f.insert(f.end(), mask, mask + 4);
    for (size_t i = 0; i < size; ++i) f.push_back(data[i] ^ mask[i % 4]);
    size_t off = 0;
    while (off < f.size()) {
        ssize_t w = ::send(fd_, f.data() + off, f.size() - off, MSG_NOSIGNAL);
        if (w <= 0) throw SocketError(std::string("send: ") + std::strerror(errno));
        off += static_cast<size_t>(w);
    }
}

void WebSocket::send_text(const std::string& text) {
    send_frame(0x1, reinterpret_cast<const uint8_t*>(text.data()), text.size());
}

void WebSocket::close(uint16_t code) {
    if (closed_ || fd_ < 0) return;
    uint8_t b[2] = {static_cast<uint8_t>(code >> 8), static_cast<uint8_t>(code)};
    try {
        send_frame(0x8, b, 2);
    } catch (const SocketError&) {
    }
    closed_ = true;
}

bool WebSocket::read_frame(const OnData& on_data) {
    uint8_t h[2];
    read_exact(h, 2);
    bool fin = h[0] & 0x80;
    uint8_t op = h[0] & 0x0F;
    if (h[1] & 0x80) throw SocketError("the server masked a frame");
    uint64_t len = h[1] & 0x7F;
    if (len == 126) {
        uint8_t e[2];
        read_exact(e, 2);
        len = uint64_t(e[0]) << 8 | e[1];
    } else if (len == 127) {
        uint8_t e[8];
        read_exact(e, 8);
        len = 0;
        for (uint8_t b : e) len = len << 8 | b;
    }
    if (len > (uint64_t(1) << 30)) throw SocketError("frame too large");
    std::vector<uint8_t> payload(static_cast<size_t>(len));
    if (len) read_exact(payload.data(), payload.size());
    switch (op) {
        case 0x0: on_data(payload.data(), payload.size(), text_message_, fin); break;
        case 0x1:
        case 0x2:
            text_message_ = op == 0x1;
            on_data(payload.data(), payload.size(), text_message_, fin);
            break;
        case 0x8:
            close_code_ = payload.size() >= 2 ? static_cast<uint16_t>(payload[0] << 8 | payload[1]) : 1005;
            close(close_code_ == 1005 ? 1000 : close_code_);
            return false;
        case 0x9: send_frame(0xA, payload.data(), payload.size()); break;
        default: break;  // pong
    }
    return true;
}

bool WebSocket::poll(int timeout_ms, const OnData& on_data) {
    if (closed_) return false;
    pollfd p{fd_, POLLIN, 0};
    int n = ::poll(&p, 1, timeout_ms);
    if (n < 0) throw SocketError(std::string("poll: ") + std::strerror(errno));
    while (n > 0) {
        if (!read_frame(on_data)) return false;
        n = ::poll(&p, 1, 0);
    }
    return true;
}

}  // namespace wsnet
