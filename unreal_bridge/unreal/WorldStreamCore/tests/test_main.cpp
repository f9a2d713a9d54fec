// core_tests GROUP [FIXTURES_DIR]: runs one group of checks; exit 1 on any failure.
#include <exception>

#include "check.hpp"

int main(int argc, char** argv) {
    if (argc < 2) {
        std::cerr << "usage: core_tests GROUP [FIXTURES_DIR]; groups:";
        for (const auto& g : wstest::Registry::groups()) std::cerr << " " << g.first;
        std::cerr << std::endl;
        return 2;
    }
    auto it = wstest::Registry::groups().find(argv[1]);
    if (it == wstest::Registry::groups().end()) {
        std::cerr << "unknown group " << argv[1] << std::endl;
        return 2;
    }
    try {
        it->second(argc > 2 ? argv[2] : ".");
    } catch (const std::exception& e) {
        std::cerr << "group " << argv[1] << " threw: " << e.what() << std::endl;
        return 1;
    }
    std::cout << argv[1] << ": " << wstest::Registry::checks() - wstest::Registry::failures() << " checks passed, "
              << wstest::Registry::failures() << " failed" << std::endl;
    return wstest::Registry::failures() ? 1 : 0;
}
