// Groups frames (conversions, round trips, rebasing) and glb (a real exported chunk, and broken ones).
#include <cmath>
#include <cstring>
#include <random>

#include "check.hpp"
#include "util.hpp"
#include "worldstream/client.hpp"
#include "worldstream/frames.hpp"
#include "worldstream/glb.hpp"

using namespace ws;

namespace {
bool near(const Vec3& a, const Vec3& b, double tol) {
    return std::fabs(a.x - b.x) <= tol && std::fabs(a.y - b.y) <= tol && std::fabs(a.z - b.z) <= tol;
}
}  // namespace

TEST_GROUP(frames) {
    // docs/frames.md: P = (E, N, U) -> glTF (E, U, -N), Unreal (100 N, 100 E, 100 U), AirSim (N, E, -U)
    Vec3 p{10, 20, 30};
    CHECK(enu_to_gltf(p) == (Vec3{10, 30, -20}));
    CHECK(enu_to_unreal_cm(p) == (Vec3{2000, 1000, 3000}));
    CHECK(enu_to_airsim(p) == (Vec3{20, 10, -30}));
    CHECK(gltf_to_unreal_cm(enu_to_gltf(p)) == enu_to_unreal_cm(p));  // glTFRuntime lands where frames say
    CHECK(enu_to_airsim(p, {1, 2, 3}) == (Vec3{18, 9, -27}));
    std::mt19937_64 rng(5);
    std::uniform_real_distribution<double> u(-2e7, 2e7);
    for (int i = 0; i < 1000; ++i) {
        Vec3 q{u(rng), u(rng), u(rng) / 1000}, o{u(rng), u(rng), 0};
        CHECK(near(unreal_cm_to_enu(enu_to_unreal_cm(q, o), o), q, 1e-8));
        CHECK(near(airsim_to_enu(enu_to_airsim(q, o), o), q, 1e-8));
        CHECK(gltf_to_enu(enu_to_gltf(q)) == q);
    }
    // camera orientation: Unreal looking north (X) level -> ENU forward north; quaternion rotates FLU
    EnuPose north = enu_pose_from_unreal_axes({0, 0, 100}, {1, 0, 0}, {0, 0, 1});
    CHECK(near(north.orientation.rotate({1, 0, 0}), {0, 1, 0}, 1e-12));
    CHECK(near(north.orientation.rotate({0, 0, 1}), {0, 0, 1}, 1e-12));
    CHECK(near(north.orientation.rotate({0, 1, 0}), {-1, 0, 0}, 1e-12));  // left of north is west
    EnuPose east = enu_pose_from_unreal_axes({}, {0, 1, 0}, {0, 0, 1});
    CHECK(std::fabs(east.orientation.w - 1) < 1e-12);  // identity looks east (docs/protocol.md)
    for (int i = 0; i < 200; ++i) {  // random orientations: forward and up come back
        Vec3 f = normalized({u(rng), u(rng), u(rng)});
        Vec3 up = normalized(cross(cross(f, {0, 0, 1}), f));
        if (std::fabs(f.z) > 0.99) continue;
        EnuPose e = enu_pose_from_unreal_axes({}, f, up);
        CHECK(near(e.orientation.rotate({1, 0, 0}), unreal_dir_to_enu(f), 1e-9));
        CHECK(near(e.orientation.rotate({0, 0, 1}), unreal_dir_to_enu(up), 1e-9));
    }
    // the PlayerStart convention: PlayerStart at Unreal L is the world origin (AirSim's NED origin)
    FrameMapper m({12345, -678, 90}, {});
    CHECK(m.to_unreal({0, 0, 0}) == (Vec3{12345, -678, 90}));
    CHECK(m.to_unreal({1, 2, 3}) == (Vec3{12545, -578, 390}));
    CHECK(m.to_airsim({1, 2, 3}) == (Vec3{2, 1, -3}));
    // rebasing: whole steps, positions keep their world meaning, exact in cm
    Vec3 far = m.to_unreal({150000.5, -90000.25, 300});
    CHECK(!m.rebase_if_far(m.to_unreal({100, 100, 0}), 10000, 1024));
    auto origin = m.rebase_if_far(far, 10000, 1024);
    CHECK(origin.has_value());
    CHECK((*origin)[0] % 102400 == 0 && (*origin)[1] % 102400 == 0 && (*origin)[2] == 0);
    Vec3 after = m.to_unreal({150000.5, -90000.25, 300});
    CHECK(std::hypot(after.x, after.y) < 1024 * 100);
    CHECK(near(m.to_enu(after), {150000.5, -90000.25, 300}, 1e-9));
    Vec3 shift{far.x - after.x, far.y - after.y, far.z - after.z};
    CHECK(shift.x == static_cast<double>((*origin)[0]) && shift.y == static_cast<double>((*origin)[1]));
    CHECK_THROWS(m.rebase_if_far(far, 0, 1024), std::invalid_argument);
}

TEST_GROUP(glb) {
    Json doc = Json::parse(read_text(fixtures + "/fixtures.json"), 64, 40);
    const Json& real = doc.at("real");
    auto glb_bytes = read_bytes(fixtures + "/real_mesh.glb");
    Glb g = parse_glb(glb_bytes.data(), glb_bytes.size());
    CHECK_EQ(g.version, 2u);
    CHECK(g.bin_size > 0);
    TileMeta t = read_tile_meta(g);
    CHECK_EQ(t.key.path(), real.at("key").as_string());
    const auto& ou = real.at("origin_unreal_cm").as_array();
    CHECK(t.origin_unreal_cm == (Vec3{ou[0].as_double(), ou[1].as_double(), ou[2].as_double()}));
    CHECK(t.origin_unreal_cm == enu_to_unreal_cm(t.origin_enu));
    // the frame the server would send for it passes the session's checks
    auto frame_bytes = read_bytes(fixtures + "/real_frame.bin");
    ChunkFrame f = decode_chunk_frame(frame_bytes.data(), frame_bytes.size());
    check_tile_against_frame(t, f);
    ClientSession s(Hello{});
    s.on_text(R"({"type":"welcome","protocol":1,"world":{"seed":7,"base_resolution":64.0,"chunk_size":64,"levels":5,"origin":{"lat":47.3769,"lon":8.5417,"alt":0.0}},"tileset":"/tileset.json","credit":16,"max_message_bytes":65536})");
    CHECK(s.welcomed());
    for (size_t cut : {size_t(1), size_t(84), frame_bytes.size() / 2}) {  // in fragments
        s.on_binary_fragment(frame_bytes.data(), cut, false);
        s.on_binary_fragment(frame_bytes.data() + cut, frame_bytes.size() - cut, true);
    }
    auto chunks = s.take_chunks();
    CHECK_EQ(chunks.size(), size_t(3));
    CHECK(s.take_errors().empty());
    CHECK(chunks.size() == 3 && chunks[0].ticket > 0 && chunks[1].ticket == 0 && chunks[2].ticket == 0);
    CHECK_EQ(s.take_outgoing().size(), size_t(3));  // one credit per frame

    // broken GLBs: every one refused with a GlbError, none crashes
    auto broken = [&](auto mutate) {
        auto b = glb_bytes;
        mutate(b);
        return b;
    };
    std::vector<std::vector<uint8_t>> bad = {
        broken([](auto& b) { b[0] = 'X'; }),                                     // magic
        broken([](auto& b) { b[4] = 1; }),                                       // version
        broken([](auto& b) { b[8] ^= 4; }),                                      // declared length
        broken([](auto& b) { b.resize(b.size() - 4); }),                         // truncated
        broken([](auto& b) { b[16] = 'X'; }),                                    // JSON chunk type
        broken([](auto& b) { b[12] = 0xFF; b[13] = 0xFF; }),                     // JSON length out of bounds
        broken([](auto& b) { b[20] = '['; }),                                    // JSON not parseable
        broken([](auto& b) { uint32_t jl; std::memcpy(&jl, b.data() + 12, 4); b[20 + jl + 4] = 'X'; }),  // BIN type
    };
    for (auto& b : bad) CHECK_THROWS(parse_glb(b.data(), b.size()), GlbError);
    CHECK_THROWS(parse_glb(glb_bytes.data(), 19), GlbError);
    // metadata that disagrees with the frame
    TileMeta wrong = t;
    wrong.key.x += 1;
    CHECK_THROWS(check_tile_against_frame(wrong, f), GlbError);
    wrong = t;
    wrong.origin_unreal_cm.x += 1;
    CHECK_THROWS(check_tile_against_frame(wrong, f), GlbError);
    wrong = t;
    wrong.node_translation.z -= 1;
    CHECK_THROWS(check_tile_against_frame(wrong, f), GlbError);
    std::cout << "real chunk " << t.key.path() << ": GLB " << glb_bytes.size() << " bytes, JSON "
              << (g.bin_offset - 28) << " bytes, BIN " << g.bin_size << " bytes" << std::endl;
}
