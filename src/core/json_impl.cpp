// Boost.JSON compiled once for the whole program (header-only library, one TU includes its src).
// Every module that uses Boost.JSON (admin, discovery) links sluice_core and gets it from here.
#include <boost/json/src.hpp>
