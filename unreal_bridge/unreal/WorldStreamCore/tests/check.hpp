// A minimal test harness (no dependency): CHECK records failures, groups are selected by name.
#pragma once

#include <functional>
#include <iostream>
#include <map>
#include <sstream>
#include <string>

namespace wstest {

struct Registry {
    static std::map<std::string, std::function<void(const std::string&)>>& groups() {
        static std::map<std::string, std::function<void(const std::string&)>> g;
        return g;
    }
    static int& failures() {
        static int n = 0;
        return n;
    }
    static int& checks() {
        static int n = 0;
        return n;
    }
};

struct Register {
    Register(const char* name, std::function<void(const std::string&)> fn) { Registry::groups()[name] = std::move(fn); }
};

}  // namespace wstest

#define WS_CAT2(a, b) a##b
#define WS_CAT(a, b) WS_CAT2(a, b)
#define TEST_GROUP(name)                                                                  \
    static void WS_CAT(group_, name)(const std::string& fixtures);                        \
    static wstest::Register WS_CAT(reg_, name)(#name, WS_CAT(group_, name));              \
    static void WS_CAT(group_, name)([[maybe_unused]] const std::string& fixtures)

#define CHECK(cond)                                                                                   \
    do {                                                                                              \
        ++wstest::Registry::checks();                                                                 \
        if (!(cond)) {                                                                                \
            ++wstest::Registry::failures();                                                           \
            std::cerr << __FILE__ << ":" << __LINE__ << ": CHECK failed: " #cond << std::endl;         \
        }                                                                                             \
    } while (0)

#define CHECK_EQ(a, b)                                                                                \
    do {                                                                                              \
        ++wstest::Registry::checks();                                                                 \
        auto va_ = (a);                                                                               \
        auto vb_ = (b);                                                                               \
        if (!(va_ == vb_)) {                                                                          \
            ++wstest::Registry::failures();                                                           \
            std::ostringstream os_;                                                                   \
            os_ << __FILE__ << ":" << __LINE__ << ": CHECK_EQ failed: " #a " == " #b " (" << va_       \
                << " vs " << vb_ << ")";                                                              \
            std::cerr << os_.str() << std::endl;                                                      \
        }                                                                                             \
    } while (0)

// The expression throws an exception of type T (optionally whose what() contains `text`).
#define CHECK_THROWS(expr, T)                                                                         \
    do {                                                                                              \
        ++wstest::Registry::checks();                                                                 \
        bool thrown_ = false;                                                                         \
        try {                                                                                         \
            (void)(expr);                                                                             \
        } catch (const T&) {                                                                          \
            thrown_ = true;                                                                           \
        } catch (...) {                                                                               \
        }                                                                                             \
        if (!thrown_) {                                                                               \
            ++wstest::Registry::failures();                                                           \
            std::cerr << __FILE__ << ":" << __LINE__ << ": expected " #T " from " #expr << std::endl;  \
        }                                                                                             \
    } while (0)
