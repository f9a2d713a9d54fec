// JSON parser and Python-compatible writer (see json.hpp).
#include "worldstream/json.hpp"

#include <charconv>
#include <cmath>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace ws {

// ------------------------------------------------------------------------------ accessors
bool Json::as_bool() const {
    if (type_ != Type::Bool) throw JsonError("expected a boolean");
    return bool_;
}
double Json::as_double() const {
    if (type_ != Type::Number) throw JsonError("expected a number");
    return num_;
}
int64_t Json::as_int() const {
    if (type_ != Type::Number || !integer_) throw JsonError("expected an integer");
    return int_;
}
const std::string& Json::as_string() const {
    if (type_ != Type::String) throw JsonError("expected a string");
    return str_;
}
const Json::Array& Json::as_array() const {
    if (type_ != Type::Array) throw JsonError("expected an array");
    return arr_;
}
const Json::Object& Json::as_object() const {
    if (type_ != Type::Object) throw JsonError("expected an object");
    return obj_;
}
const Json* Json::find(std::string_view key) const {
    if (type_ != Type::Object) return nullptr;
    for (const auto& kv : obj_)
        if (kv.first == key) return &kv.second;
    return nullptr;
}
const Json& Json::at(std::string_view key) const {
    const Json* v = find(key);
    if (!v) throw JsonError("missing field \"" + std::string(key) + "\"");
    return *v;
}
Json& Json::set(std::string key, Json value) {
    if (type_ == Type::Null) type_ = Type::Object;
    if (type_ != Type::Object) throw JsonError("set() on a non-object");
    for (auto& kv : obj_)
        if (kv.first == key) return kv.second = std::move(value);
    obj_.emplace_back(std::move(key), std::move(value));
    return obj_.back().second;
}

// ------------------------------------------------------------------------------ parser
class JsonParser {
public:
    JsonParser(std::string_view s, int max_depth, int max_digits) : s_(s), max_depth_(max_depth), max_digits_(max_digits) {}

    Json run() {
        Json v = value(0);
        ws();
        if (i_ != s_.size()) fail("trailing characters");
        return v;
    }

private:
    std::string_view s_;
    size_t i_ = 0;
    int max_depth_, max_digits_;

    [[noreturn]] void fail(const std::string& what) const {
        throw JsonError("invalid JSON at offset " + std::to_string(i_) + ": " + what);
    }
    void ws() {
        while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
    }
    bool eat(char c) {
        ws();
        if (i_ < s_.size() && s_[i_] == c) { ++i_; return true; }
        return false;
    }
    void expect(char c) {
        if (!eat(c)) fail(std::string("expected '") + c + "'");
    }
    bool literal(std::string_view word) {
        if (s_.substr(i_, word.size()) == word) { i_ += word.size(); return true; }
        return false;
    }

    Json value(int depth) {
        if (depth > max_depth_) fail("nested too deeply");
        ws();
        if (i_ >= s_.size()) fail("unexpected end");
        char c = s_[i_];
        if (c == '{') {
            ++i_;
            Json out{Json::Object{}};
            if (eat('}')) return out;
            do {
                ws();
                if (i_ >= s_.size() || s_[i_] != '"') fail("expected a string key");
                std::string key = string();
                expect(':');
                out.set(std::move(key), value(depth + 1));  // a repeated key keeps the last value, as Python
            } while (eat(','));
            expect('}');
            return out;
        }
        if (c == '[') {
            ++i_;
            Json::Array arr;
            if (eat(']')) return Json(std::move(arr));
            do arr.push_back(value(depth + 1));
            while (eat(','));
            expect(']');
            return Json(std::move(arr));
        }
        if (c == '"') return Json(string());
        if (literal("true")) return Json(true);
        if (literal("false")) return Json(false);
        if (literal("null")) return Json(nullptr);
        return number();
    }

    Json number() {
        size_t start = i_;
        if (i_ < s_.size() && s_[i_] == '-') ++i_;
        size_t digits0 = i_;
        if (i_ < s_.size() && s_[i_] == '0') ++i_;
        else if (i_ < s_.size() && s_[i_] >= '1' && s_[i_] <= '9')
            while (i_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[i_]))) ++i_;
        else fail("expected a value");
        size_t int_digits = i_ - digits0;
        bool integer = true;
        if (i_ < s_.size() && s_[i_] == '.') {
            integer = false;
            ++i_;
            size_t f = i_;
            while (i_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[i_]))) ++i_;
            if (i_ == f) fail("expected digits after '.'");
        }
        if (i_ < s_.size() && (s_[i_] == 'e' || s_[i_] == 'E')) {
            integer = false;
            ++i_;
            if (i_ < s_.size() && (s_[i_] == '+' || s_[i_] == '-')) ++i_;
            size_t f = i_;
            while (i_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[i_]))) ++i_;
            if (i_ == f) fail("expected exponent digits");
        }
        std::string text(s_.substr(start, i_ - start));
        if (integer) {
            if (static_cast<int>(int_digits) > max_digits_)
                fail("integer of " + std::to_string(int_digits) + " digits; at most " + std::to_string(max_digits_) +
                     " are accepted");
            int64_t v = 0;
            auto r = std::from_chars(text.data(), text.data() + text.size(), v);
            if (r.ec == std::errc()) return Json(v);
            Json big(std::strtod(text.c_str(), nullptr));  // beyond int64: kept as a (non-integer) double
            return big;
        }
        double d = std::strtod(text.c_str(), nullptr);  // overflow gives inf: callers check finiteness
        return Json(d);
    }

    static void utf8(std::string& out, uint32_t cp) {
        if (cp < 0x80) out += static_cast<char>(cp);
        else if (cp < 0x800) {
            out += static_cast<char>(0xC0 | (cp >> 6));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            out += static_cast<char>(0xE0 | (cp >> 12));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        } else {
            out += static_cast<char>(0xF0 | (cp >> 18));
            out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        }
    }
    uint32_t hex4() {
        if (i_ + 4 > s_.size()) fail("truncated \\u escape");
        uint32_t v = 0;
        for (int k = 0; k < 4; ++k) {
            char c = s_[i_++];
            v <<= 4;
            if (c >= '0' && c <= '9') v |= c - '0';
            else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
            else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
            else fail("bad \\u escape");
        }
        return v;
    }
    std::string string() {
        ++i_;  // opening quote
        std::string out;
        while (true) {
            if (i_ >= s_.size()) fail("unterminated string");
            char c = s_[i_++];
            if (c == '"') return out;
            if (static_cast<unsigned char>(c) < 0x20) fail("control character in string");
            if (c != '\\') { out += c; continue; }
            if (i_ >= s_.size()) fail("unterminated escape");
            char e = s_[i_++];
            switch (e) {
                case '"': out += '"'; break;
                case '\\': out += '\\'; break;
                case '/': out += '/'; break;
                case 'b': out += '\b'; break;
                case 'f': out += '\f'; break;
                case 'n': out += '\n'; break;
                case 'r': out += '\r'; break;
                case 't': out += '\t'; break;
                case 'u': {
                    uint32_t cp = hex4();
                    if (cp >= 0xD800 && cp < 0xDC00 && s_.substr(i_, 2) == "\\u") {
                        size_t save = i_;
                        i_ += 2;
                        uint32_t lo = hex4();
                        if (lo >= 0xDC00 && lo < 0xE000) cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                        else i_ = save;
                    }
                    utf8(out, cp);
                    break;
                }
                default: fail("bad escape");
            }
        }
    }
};

Json Json::parse(std::string_view text, int max_depth, int max_int_digits) {
    return JsonParser(text, max_depth, max_int_digits).run();
}

// ------------------------------------------------------------------------------ writer
std::string python_float_repr(double v) {
    if (!std::isfinite(v)) throw JsonError("JSON cannot carry a non-finite number");
    if (v == 0.0) return std::signbit(v) ? "-0.0" : "0.0";
    char buf[64];
    auto r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);  // shortest round trip
    std::string sci(buf, r.ptr);
    bool neg = sci[0] == '-';
    if (neg) sci.erase(0, 1);
    size_t e = sci.find('e');
    int exp = std::atoi(sci.c_str() + e + 1);
    std::string digits;
    for (size_t k = 0; k < e; ++k)
        if (sci[k] != '.') digits += sci[k];
    std::string out = neg ? "-" : "";
    if (exp >= -4 && exp < 16) {
        if (exp < 0) {
            out += "0." + std::string(static_cast<size_t>(-exp - 1), '0') + digits;
        } else if (static_cast<int>(digits.size()) <= exp + 1) {
            out += digits + std::string(static_cast<size_t>(exp + 1) - digits.size(), '0') + ".0";
        } else {
            out += digits.substr(0, static_cast<size_t>(exp + 1)) + "." + digits.substr(static_cast<size_t>(exp + 1));
        }
    } else {
        out += digits.substr(0, 1);
        if (digits.size() > 1) out += "." + digits.substr(1);
        char eb[16];
        std::snprintf(eb, sizeof eb, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
        out += eb;
    }
    return out;
}

static void dump_string(std::string& out, const std::string& s) {
    static const char* hex = "0123456789abcdef";
    out += '"';
    for (size_t i = 0; i < s.size();) {
        unsigned char c = static_cast<unsigned char>(s[i]);
        uint32_t cp = c;
        size_t n = 1;
        if (c >= 0x80) {  // decode UTF-8 (ensure_ascii: everything non-ASCII becomes \uXXXX)
            if ((c & 0xE0) == 0xC0) { cp = c & 0x1F; n = 2; }
            else if ((c & 0xF0) == 0xE0) { cp = c & 0x0F; n = 3; }
            else if ((c & 0xF8) == 0xF0) { cp = c & 0x07; n = 4; }
            else throw JsonError("string is not valid UTF-8");
            if (i + n > s.size()) throw JsonError("string is not valid UTF-8");
            for (size_t k = 1; k < n; ++k) {
                unsigned char cc = static_cast<unsigned char>(s[i + k]);
                if ((cc & 0xC0) != 0x80) throw JsonError("string is not valid UTF-8");
                cp = (cp << 6) | (cc & 0x3F);
            }
        }
        i += n;
        auto u = [&](uint32_t x) {
            out += "\\u";
            for (int sh = 12; sh >= 0; sh -= 4) out += hex[(x >> sh) & 0xF];
        };
        switch (cp) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            case '\b': out += "\\b"; break;
            case '\f': out += "\\f"; break;
            default:
                if (cp < 0x20 || (cp >= 0x7F && cp < 0x10000)) u(cp);
                else if (cp >= 0x10000) {
                    cp -= 0x10000;
                    u(0xD800 + (cp >> 10));
                    u(0xDC00 + (cp & 0x3FF));
                } else out += static_cast<char>(cp);
        }
    }
    out += '"';
}

void Json::dump_to(std::string& out) const {
    switch (type_) {
        case Type::Null: out += "null"; break;
        case Type::Bool: out += bool_ ? "true" : "false"; break;
        case Type::Number: out += integer_ ? std::to_string(int_) : python_float_repr(num_); break;
        case Type::String: dump_string(out, str_); break;
        case Type::Array:
            out += '[';
            for (size_t k = 0; k < arr_.size(); ++k) {
                if (k) out += ',';
                arr_[k].dump_to(out);
            }
            out += ']';
            break;
        case Type::Object:
            out += '{';
            for (size_t k = 0; k < obj_.size(); ++k) {
                if (k) out += ',';
                dump_string(out, obj_[k].first);
                out += ':';
                obj_[k].second.dump_to(out);
            }
            out += '}';
            break;
    }
}

std::string Json::dump() const {
    std::string out;
    dump_to(out);
    return out;
}

}  // namespace ws
