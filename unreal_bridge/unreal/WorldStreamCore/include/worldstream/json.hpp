// A small JSON value, parser and writer (no dependencies), enough for protocol v1 messages and
// glTF JSON chunks. The writer matches Python's json.dumps(obj, separators=(",", ":")) byte for
// byte (ensure_ascii, floats as repr, integers as integers), so the C++ client sends exactly what
// worldstream.unreal_bridge.protocol.encode_client sends.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ws {

class JsonError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

class Json {
public:
    enum class Type { Null, Bool, Number, String, Array, Object };
    using Array = std::vector<Json>;
    using Object = std::vector<std::pair<std::string, Json>>;  // insertion order is kept

    Json() = default;
    Json(std::nullptr_t) {}
    Json(bool b) : type_(Type::Bool), bool_(b) {}
    Json(int v) : Json(static_cast<int64_t>(v)) {}
    Json(int64_t v) : type_(Type::Number), integer_(true), int_(v), num_(static_cast<double>(v)) {}
    Json(uint32_t v) : Json(static_cast<int64_t>(v)) {}
    Json(double v) : type_(Type::Number), num_(v) {}
    Json(const char* s) : type_(Type::String), str_(s) {}
    Json(std::string s) : type_(Type::String), str_(std::move(s)) {}
    Json(Array a) : type_(Type::Array), arr_(std::move(a)) {}
    Json(Object o) : type_(Type::Object), obj_(std::move(o)) {}

    // Parse one JSON text; throws JsonError. Integers of more than max_int_digits digits are refused
    // (as the Python server does), nesting deeper than max_depth too.
    static Json parse(std::string_view text, int max_depth = 64, int max_int_digits = 20);
    std::string dump() const;

    Type type() const { return type_; }
    bool is_null() const { return type_ == Type::Null; }
    bool is_bool() const { return type_ == Type::Bool; }
    bool is_number() const { return type_ == Type::Number; }
    bool is_integer() const { return type_ == Type::Number && integer_; }
    bool is_string() const { return type_ == Type::String; }
    bool is_array() const { return type_ == Type::Array; }
    bool is_object() const { return type_ == Type::Object; }

    bool as_bool() const;
    double as_double() const;
    int64_t as_int() const;  // integers only
    const std::string& as_string() const;
    const Array& as_array() const;
    const Object& as_object() const;

    const Json* find(std::string_view key) const;  // nullptr when absent or not an object
    const Json& at(std::string_view key) const;    // throws JsonError naming the key
    Json& set(std::string key, Json value);        // object: append or replace

private:
    Type type_ = Type::Null;
    bool bool_ = false;
    bool integer_ = false;
    int64_t int_ = 0;
    double num_ = 0.0;
    std::string str_;
    Array arr_;
    Object obj_;
    void dump_to(std::string& out) const;
    friend class JsonParser;
};

// Python's repr(float): shortest round-trip digits, exponent form below 1e-4 and from 1e16.
std::string python_float_repr(double v);

}  // namespace ws
