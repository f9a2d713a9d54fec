// live_flight HOST PORT [SECONDS]: a 30 s flight against a live `worldstream serve`, through
// ClientSession (protocol, credit, GLB checks, residency) and websocketpp (tools/ws_client.hpp). Mesh
// builds are simulated as asynchronous (each chunk becomes Ready 30 ms after it arrived, in
// arrival order), as glTFRuntime's LoadStaticMeshAsync would. Phases: hover until the first full
// coverage, fly east for SECONDS, hover until full coverage again. Full coverage: the server has
// nothing pending for us, we hold exactly what it delivered, nothing is still loading, and the
// horizon square around the camera is drawn with no hole. Exit 0 when the flight ends covered.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <deque>
#include <iostream>
#include <map>

#include "worldstream/client.hpp"
#include "worldstream/frames.hpp"
#include "ws_client.hpp"

using namespace ws;
using Clock = std::chrono::steady_clock;

namespace {
constexpr double kHorizonM = 20000.0;  // the server's selection horizon (lod.select)

struct Pending {
    ChunkKey key;
    uint64_t ticket;
    Clock::time_point ready_at;
};

CameraView camera_at(const Vec3& p, double yaw_deg, double pitch_deg) {
    double y = yaw_deg * M_PI / 180, pt = pitch_deg * M_PI / 180;
    Vec3 fwd_enu{std::cos(pt) * std::cos(y), std::cos(pt) * std::sin(y), std::sin(pt)};
    Vec3 up_enu{-std::sin(pt) * std::cos(y), -std::sin(pt) * std::sin(y), std::cos(pt)};
    EnuPose pose = enu_pose_from_unreal_axes(p, enu_dir_to_unreal(fwd_enu), enu_dir_to_unreal(up_enu));
    CameraView c;
    c.id = "main";
    c.position = {p.x, p.y, p.z};
    c.orientation = {pose.orientation.w, pose.orientation.x, pose.orientation.y, pose.orientation.z};
    c.viewport = {960, 540};
    return c;
}
}  // namespace

int main(int argc, char** argv) {
    if (argc < 3) {
        std::cerr << "usage: live_flight HOST PORT [SECONDS]" << std::endl;
        return 2;
    }
    const double flight_s = argc > 3 ? std::atof(argv[3]) : 30.0;
    const double speed = 60.0, altitude = 700.0;
    try {
        // the server sends every chunk as one message; websocketpp hands over whole messages
        wsclient::WebSocket sock(argv[1], std::atoi(argv[2]), size_t(256) << 20, std::chrono::seconds(30));
        ClientSession session(Hello{"worldstream.cpp.live_flight", std::nullopt, {}});
        sock.send_text(session.hello_text());
        std::deque<Pending> building;
        uint64_t released = 0, built = 0;
        size_t max_resident = 0;
        std::map<int, uint64_t> per_level;
        Json last_stats;
        auto on_message = [&](const uint8_t* d, size_t n, bool text) {
            if (text) session.on_text(std::string_view(reinterpret_cast<const char*>(d), n));
            else session.on_binary_fragment(d, n, true);
        };
        auto pump = [&](int wait_ms) {
            if (!sock.poll(wait_ms, on_message)) throw std::runtime_error("connection ended: " + sock.close_reason());
            for (auto& a : session.take_chunks()) {
                ++per_level[a.frame.key.level];
                if (a.ticket) building.push_back({a.frame.key, a.ticket, Clock::now() + std::chrono::milliseconds(30)});
            }
            while (!building.empty() && building.front().ready_at <= Clock::now()) {
                built += session.residency().on_ready(building.front().key, building.front().ticket);
                building.pop_front();
            }
            released += session.residency().take_released().size();
            max_resident = std::max(max_resident, session.residency().size());
            for (auto& t : session.take_outgoing()) sock.send_text(t);
            for (auto& e : session.take_errors()) std::cerr << "error " << e.code() << ": " << e.what() << std::endl;
            if (auto s = session.take_stats()) last_stats = s->body;
        };
        auto start = Clock::now();
        auto secs = [&](Clock::time_point t) { return std::chrono::duration<double>(t - start).count(); };
        while (!session.welcomed()) {
            pump(100);
            if (secs(Clock::now()) > 30) throw std::runtime_error("no welcome within 30 s");
        }
        const double e0 = session.welcome()->world.chunk_extent(0);
        Vec3 pos{0, 0, altitude};
        auto covered = [&]() {
            const Json* c = last_stats.find("client");
            if (!c || c->at("pending").as_int() != 0 || c->at("required").as_int() == 0) return false;
            if (c->at("delivered").as_int() != static_cast<int64_t>(session.residency().size())) return false;
            if (!building.empty() || session.residency().count(Residency::State::Loading)) return false;
            for (auto i = int64_t(std::floor((pos.x - kHorizonM) / e0)); i <= int64_t(std::floor((pos.x + kHorizonM) / e0)); ++i)
                for (auto j = int64_t(std::floor((pos.y - kHorizonM) / e0)); j <= int64_t(std::floor((pos.y + kHorizonM) / e0)); ++j)
                    if (!session.residency().covered_without_hole(ChunkKey{0, i, j})) return false;
            return true;
        };
        double first_cover = -1, fly_start = -1, fly_end = -1, final_cover = -1;
        auto last_view = Clock::time_point{}, last_stats_req = Clock::time_point{};
        int phase = 0;  // 0 hover, 1 fly, 2 hover
        while (true) {
            auto now = Clock::now();
            double t = secs(now);
            if (phase == 1) {
                pos.x = speed * (t - fly_start);
                if (t - fly_start >= flight_s) {
                    phase = 2;
                    fly_end = t;
                }
            }
            if (now - last_view >= std::chrono::milliseconds(100)) {
                sock.send_text(session.view_text({camera_at(pos, 0.0, -25.0)}));
                last_view = now;
            }
            if (now - last_stats_req >= std::chrono::milliseconds(250)) {
                sock.send_text(session.stats_request_text());
                last_stats_req = now;
            }
            pump(10);
            if (phase != 1 && covered()) {
                if (phase == 0) {
                    first_cover = secs(Clock::now());
                    phase = 1;
                    fly_start = first_cover;
                } else {
                    final_cover = secs(Clock::now());
                    break;
                }
            }
            if (phase == 0 && t > 60) throw std::runtime_error("no full coverage within 60 s of the start");
            if (phase == 2 && t - fly_end > 60) break;
        }
        const auto& st = session.stats();
        auto shown = session.residency().shown();
        std::printf("live flight: %.0f s at %.0f m/s, %.0f m, %.1f km east\n", flight_s, speed, altitude, speed * flight_s / 1000);
        std::printf("  chunks received %llu (%.2f MB), views %llu, unload messages %llu (%llu keys), errors %llu\n",
                    (unsigned long long)st.frames, st.frame_bytes / 1e6, (unsigned long long)st.views,
                    (unsigned long long)st.unload_messages, (unsigned long long)st.unloaded_keys, (unsigned long long)st.errors);
        std::printf("  per level:");
        for (auto& kv : per_level) std::printf(" L%d %llu", kv.first, (unsigned long long)kv.second);
        std::printf("\n  meshes built %llu, destroyed %llu, max resident %zu, resident at the end %zu, drawn %zu\n",
                    (unsigned long long)built, (unsigned long long)released, max_resident, session.residency().size(), shown.size());
        std::printf("  time to first full coverage %.2f s; coverage after the flight %s (%.2f s after it ended)\n", first_cover,
                    final_cover >= 0 ? "complete, no hole" : "INCOMPLETE", final_cover >= 0 ? final_cover - fly_end : -1.0);
        if (const Json* c = last_stats.find("client"))
            std::printf("  server: delivered %lld, required %lld, pending %lld, latency p50 %s ms p95 %s ms\n",
                        (long long)c->at("delivered").as_int(), (long long)c->at("required").as_int(),
                        (long long)c->at("pending").as_int(), c->at("latency_ms_p50").dump().c_str(),
                        c->at("latency_ms_p95").dump().c_str());
        sock.close();
        return final_cover >= 0 && st.errors == 0 ? 0 : 1;
    } catch (const std::exception& e) {
        std::cerr << "live_flight: " << e.what() << std::endl;
        return 1;
    }
}
