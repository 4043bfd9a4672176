// The single Catch2 main linked into every unit test binary.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
