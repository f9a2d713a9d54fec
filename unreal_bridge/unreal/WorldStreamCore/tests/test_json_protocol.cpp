// Groups json, protocol, fixtures: the JSON codec, protocol v1 messages, chunk frames and
// fragments, and byte-for-byte agreement with worldstream.unreal_bridge.protocol.
#include <cmath>
#include <cstring>

#include "check.hpp"
#include "util.hpp"
#include "worldstream/client.hpp"
#include "worldstream/json.hpp"
#include "worldstream/protocol.hpp"

using namespace ws;

TEST_GROUP(json) {
    Json v = Json::parse(R"( {"a": [1, -2, 3.5, true, false, null, "x\u00e9\ud83d\ude00\n"], "b": {"c": -0.0}} )");
    CHECK_EQ(v.at("a").as_array().size(), size_t(7));
    CHECK_EQ(v.at("a").as_array()[1].as_int(), int64_t(-2));
    CHECK(v.at("a").as_array()[2].as_double() == 3.5);
    CHECK_EQ(v.at("a").as_array()[6].as_string(), std::string("x\xc3\xa9\xf0\x9f\x98\x80\n"));
    CHECK_EQ(v.dump(), std::string(R"({"a":[1,-2,3.5,true,false,null,"x\u00e9\ud83d\ude00\n"],"b":{"c":-0.0}})"));
    CHECK_EQ(Json::parse("[1e400]").as_array()[0].as_double(), HUGE_VAL);  // callers check finiteness
    // hostile inputs
    for (const char* bad : {"", "{", "[1,]", "{\"a\":}", "01", "1.", "-", "\"\\x\"", "\"abc", "[1 2]", "nul", "{} x",
                            "\"\x01\"", "{\"a\" 1}", "[\"\\ud800\"", "1e", "+1"})
        CHECK_THROWS(Json::parse(bad), JsonError);
    CHECK_THROWS(Json::parse(std::string(100, '[') + std::string(100, ']')), JsonError);  // depth
    CHECK_THROWS(Json::parse(std::string(21, '9')), JsonError);                         // > 20 digits
    CHECK(Json::parse(std::string(20, '9')).is_number());
    CHECK_EQ(Json::parse("[9223372036854775807]").as_array()[0].as_int(), INT64_MAX);
    CHECK_THROWS(Json::parse("\"x\"").as_int(), JsonError);
    CHECK_THROWS(Json(std::string("\xff")).dump(), JsonError);  // not UTF-8
    CHECK_THROWS(Json(NAN).dump(), JsonError);
    Json dup = Json::parse(R"({"a":1,"a":2})");
    CHECK_EQ(dup.at("a").as_int(), int64_t(2));
    CHECK_EQ(python_float_repr(1e16), std::string("1e+16"));
    CHECK_EQ(python_float_repr(1e-5), std::string("1e-05"));
    CHECK_EQ(python_float_repr(0.0001), std::string("0.0001"));
    CHECK_EQ(python_float_repr(123.0), std::string("123.0"));
    CHECK_EQ(python_float_repr(-1.5e-300), std::string("-1.5e-300"));
}

static std::vector<uint8_t> frame_bytes(const ChunkFrame& h, std::vector<std::pair<std::string, std::vector<uint8_t>>> parts) {
    return encode_chunk_frame(h, parts);
}

TEST_GROUP(protocol) {
    // client messages
    CHECK_EQ(encode_credit(1), std::string(R"({"type":"credit","chunks":1})"));
    CHECK_THROWS(encode_credit(4097), ProtocolError);
    CHECK_THROWS(encode_credit(-1), ProtocolError);
    View v;
    CHECK_THROWS(encode_view(v), ProtocolError);  // no camera
    v.cameras.resize(9);
    for (size_t i = 0; i < 9; ++i) v.cameras[i].id = std::to_string(i);
    CHECK_THROWS(encode_view(v), ProtocolError);  // 9 cameras
    v.cameras.resize(2);
    v.cameras[1].id = "0";
    CHECK_THROWS(encode_view(v), ProtocolError);  // duplicate ids
    v.cameras.resize(1);
    v.cameras[0].orientation = {0.1, 0, 0, 0};
    CHECK_THROWS(encode_view(v), ProtocolError);
    v.cameras[0].orientation = {1, 0, 0, 0};
    v.cameras[0].position[0] = NAN;
    CHECK_THROWS(encode_view(v), ProtocolError);
    v.cameras[0].position[0] = 0;
    v.cameras[0].fov_deg = 171;
    CHECK_THROWS(encode_view(v), ProtocolError);
    v.cameras[0].fov_deg = 90;
    v.cameras[0].viewport = {0, 10};
    CHECK_THROWS(encode_view(v), ProtocolError);
    v.cameras[0].viewport = {10, 10};
    v.cameras[0].frame = "ned";
    CHECK_THROWS(encode_view(v), ProtocolError);
    v.cameras[0].frame = "enu";
    v.seq = kMaxSeq;
    CHECK(encode_view(v).find("\"seq\":4294967295") != std::string::npos);

    // server messages: hostile
    for (const char* bad : {"[]", "{}", "{\"type\":1}", "{\"type\":\"unload\"}", "{\"type\":\"unload\",\"keys\":[\"1/2\"]}",
                            "{\"type\":\"unload\",\"keys\":[\"31/0/0\"]}", "{\"type\":\"error\",\"code\":\"x\"}",
                            "{\"type\":\"error\",\"code\":\"x\",\"message\":\"m\",\"seq\":4294967296}",
                            "{\"type\":\"welcome\",\"protocol\":1}", "{\"type\":\"unload\",\"keys\":[\"0/1099511627777/0\"]}"})
        CHECK_THROWS(decode_server(bad), ProtocolError);
    try {
        decode_server("{\"type\":\"surprise\"}");
        CHECK(false);
    } catch (const ProtocolError& e) {
        CHECK_EQ(e.code(), std::string("unknown_type"));
    }
    try {
        decode_server("{nope");
        CHECK(false);
    } catch (const ProtocolError& e) {
        CHECK_EQ(e.code(), std::string("bad_json"));
    }
    CHECK_THROWS(decode_server(std::string(kMaxTextBytes + 1, ' ')), ProtocolError);
    try {
        decode_server(R"({"type":"welcome","protocol":2,"world":{},"tileset":"/t","credit":1,"max_message_bytes":1})");
        CHECK(false);
    } catch (const ProtocolError& e) {
        CHECK_EQ(e.code(), std::string("unsupported_version"));
    }

    // chunk frames: round trip, then every truncation and corruption
    ChunkFrame h;
    h.key = ChunkKey{5, -3, 9};
    h.geometric_error = 1.25;
    h.bounds = Bounds{-1, -2, 3, 4};
    h.z_min = -5;
    h.z_max = 6;
    h.seq = 0xFFFFFFFF;
    auto bytes = frame_bytes(h, {{"mesh.glb", {1, 2, 3}}, {"height.tif", {}}, {"x", {9}}});
    ChunkFrame f = decode_chunk_frame(bytes.data(), bytes.size());
    CHECK(f.key == h.key);
    CHECK(f.bounds == h.bounds);
    CHECK_EQ(f.seq, 0xFFFFFFFFu);
    CHECK_EQ(f.parts.size(), size_t(3));
    CHECK_EQ(f.parts[0].name, std::string("mesh.glb"));
    CHECK_EQ(bytes[f.parts[0].offset + 2], 3);
    CHECK_EQ(f.parts[1].size, size_t(0));
    CHECK_EQ(f.find("x")->size, size_t(1));
    for (size_t n = 0; n < bytes.size(); ++n) CHECK_THROWS(decode_chunk_frame(bytes.data(), n), ProtocolError);
    auto longer = bytes;
    longer.push_back(0);
    CHECK_THROWS(decode_chunk_frame(longer.data(), longer.size()), ProtocolError);
    auto bad_magic = bytes;
    bad_magic[3] = '2';
    CHECK_THROWS(decode_chunk_frame(bad_magic.data(), bad_magic.size()), ProtocolError);
    auto huge_part = bytes;
    std::memset(huge_part.data() + 85, 0xFF, 4);  // first part's size: 4 GiB - 1
    CHECK_THROWS(decode_chunk_frame(huge_part.data(), huge_part.size()), ProtocolError);
    auto many_parts = bytes;
    many_parts[6] = 0xFF;
    many_parts[7] = 0xFF;
    CHECK_THROWS(decode_chunk_frame(many_parts.data(), many_parts.size()), ProtocolError);
    CHECK_THROWS(encode_chunk_frame(h, {{"", {}}}), std::invalid_argument);
    CHECK_THROWS(encode_chunk_frame(h, {{std::string(256, 'n'), {}}}), std::invalid_argument);

    // fragments: any split gives the same message; the size limit holds
    FragmentAssembler fa(bytes.size());
    for (size_t cut = 0; cut <= bytes.size(); cut += 7) {
        CHECK(!fa.append(bytes.data(), cut, false));
        CHECK(fa.append(bytes.data() + cut, bytes.size() - cut, true));
        CHECK(fa.take() == bytes);
    }
    CHECK_THROWS(fa.take(), std::logic_error);
    fa.append(bytes.data(), bytes.size(), false);
    CHECK_THROWS(fa.append("x", 1, true), ProtocolError);  // one byte over
    CHECK_EQ(fa.pending_bytes(), size_t(0));                // dropped, ready for the next message

    // the session: credit per frame (good or bad), bad frames reported, fragments joined
    ClientSession s(Hello{});
    CHECK(s.hello_text().find("\"type\":\"hello\"") == 1);
    s.on_text("{\"type\":\"error\",\"code\":\"not_ready\",\"message\":\"send hello first\"}");
    s.on_binary_fragment(bytes.data(), 10, false);
    CHECK(s.take_outgoing().empty());
    s.on_binary_fragment(bytes.data() + 10, bytes.size() - 10, true);  // mesh.glb is no GLB: rejected
    CHECK_EQ(s.take_outgoing().size(), size_t(1));
    CHECK_EQ(s.take_errors().size(), size_t(2));
    CHECK(s.take_chunks().empty());
    CHECK_EQ(s.view_text({CameraView{}}).find("\"seq\":1,"), size_t(15));
    CHECK_EQ(s.last_seq(), 1u);
}

TEST_GROUP(fixtures) {
    Json doc = Json::parse(read_text(fixtures + "/fixtures.json"), 64, 40);
    for (const Json& c : doc.at("client").as_array()) {
        const std::string& kind = c.at("kind").as_string();
        std::string text;
        if (kind == "hello") {
            Hello h;
            h.client = c.at("client").as_string();
            if (!c.at("token").is_null()) h.token = c.at("token").as_string();
            for (const Json& s : c.at("sidecars").as_array()) h.sidecars.push_back(s.as_string());
            text = encode_hello(h);
        } else if (kind == "view") {
            View v;
            v.seq = static_cast<uint32_t>(c.at("seq").as_int());
            for (const Json& j : c.at("cameras").as_array()) {
                CameraView cam;
                cam.id = j.at("id").as_string();
                cam.frame = j.at("frame").as_string();
                for (int i = 0; i < 3; ++i) cam.position[i] = from_hex(j.at("position").as_array()[i].as_string());
                for (int i = 0; i < 4; ++i) cam.orientation[i] = from_hex(j.at("orientation").as_array()[i].as_string());
                for (int i = 0; i < 3; ++i) cam.player_start[i] = from_hex(j.at("player_start").as_array()[i].as_string());
                cam.fov_deg = from_hex(j.at("fov_deg").as_string());
                cam.max_sse = from_hex(j.at("max_sse").as_string());
                cam.viewport = {static_cast<int>(j.at("viewport").as_array()[0].as_int()),
                                static_cast<int>(j.at("viewport").as_array()[1].as_int())};
                v.cameras.push_back(cam);
            }
            text = encode_view(v);
        } else if (kind == "credit") {
            text = encode_credit(static_cast<int>(c.at("chunks").as_int()));
        } else {
            text = encode_stats_request();
        }
        CHECK_EQ(text, c.at("text").as_string());
    }
    for (const Json& c : doc.at("floats").as_array()) {
        double d = from_hex(c.at("hex").as_string());
        CHECK_EQ(python_float_repr(d), c.at("text").as_string());
        CHECK(Json::parse(c.at("text").as_string()).as_double() == d);
    }
    for (const Json& c : doc.at("server").as_array()) {
        ServerMessage m = decode_server(c.at("text").as_string());
        const std::string& type = c.at("type").as_string();
        if (type == "welcome") {
            auto& w = std::get<Welcome>(m);
            CHECK_EQ(w.credit, 16);
            CHECK_EQ(w.world.seed, int64_t(7));
            CHECK_EQ(w.world.chunk_size, 64);
            CHECK_EQ(w.world.levels, 5);
            CHECK(w.world.chunk_extent(0) == 4096.0);
            CHECK_EQ(w.tileset, std::string("/tileset.json"));
            CHECK_EQ(w.max_message_bytes, int64_t(65536));
        } else if (type == "unload") {
            auto& u = std::get<Unload>(m);
            const auto& keys = c.at("keys").as_array();
            CHECK_EQ(u.keys.size(), keys.size());
            for (size_t i = 0; i < keys.size() && i < u.keys.size(); ++i) CHECK_EQ(u.keys[i].path(), keys[i].as_string());
        } else if (type == "error") {
            auto& e = std::get<ServerError>(m);
            CHECK_EQ(e.code, c.at("code").as_string());
            CHECK_EQ(e.seq.has_value(), c.find("seq") != nullptr);
            CHECK(e.message.size() <= 500);
        } else {
            CHECK_EQ(std::get<Stats>(m).body.at("client").at("pending").as_int(), int64_t(0));
        }
    }
    for (const Json& c : doc.at("frames").as_array()) {
        auto bytes = read_bytes(fixtures + "/" + c.at("file").as_string());
        ChunkFrame f = decode_chunk_frame(bytes.data(), bytes.size());
        CHECK_EQ(f.key.level, static_cast<int>(c.at("level").as_int()));
        CHECK_EQ(f.key.x, c.at("x").as_int());
        CHECK_EQ(f.key.y, c.at("y").as_int());
        CHECK_EQ(int64_t(f.seq), c.at("seq").as_int());
        CHECK(f.geometric_error == from_hex(c.at("geometric_error").as_string()));
        const auto& b = c.at("bounds").as_array();
        CHECK(f.bounds == (Bounds{from_hex(b[0].as_string()), from_hex(b[1].as_string()), from_hex(b[2].as_string()),
                                  from_hex(b[3].as_string())}));
        CHECK(f.z_max == from_hex(c.at("z_range").as_array()[1].as_string()));
        const auto& parts = c.at("parts").as_array();
        CHECK_EQ(f.parts.size(), parts.size());
        std::vector<std::pair<std::string, std::vector<uint8_t>>> payloads;
        for (size_t i = 0; i < parts.size() && i < f.parts.size(); ++i) {
            CHECK_EQ(f.parts[i].name, parts[i].at("name").as_string());
            auto blob = read_bytes(fixtures + "/" + parts[i].at("file").as_string());
            CHECK(std::vector<uint8_t>(bytes.begin() + f.parts[i].offset, bytes.begin() + f.parts[i].offset + f.parts[i].size) == blob);
            payloads.emplace_back(f.parts[i].name, blob);
        }
        CHECK(encode_chunk_frame(f, payloads) == bytes);  // byte-identical to Python's encoder
    }
}
