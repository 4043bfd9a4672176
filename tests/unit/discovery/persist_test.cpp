#include "sluice/discovery/persist.hpp"

#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include <unistd.h>

#include "sluice/core/address.hpp"

namespace d = sluice::discovery;

namespace {
struct temp_dir {
  std::string path;
  temp_dir() {
    char tmpl[] = "/tmp/sluice-persist-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~temp_dir() { std::system(("rm -rf '" + path + "'").c_str()); }
};
}  // namespace

TEST_CASE("the endpoint set survives a save and a load", "[etcd][persist]") {
  temp_dir dir;
  const std::string file = dir.path + "/web.json";
  std::vector<sluice::pool::endpoint> eps{{*sluice::core::resolve("127.0.0.1:8001"), 1},
                                          {*sluice::core::resolve("[::1]:8002"), 4}};
  std::string err;
  REQUIRE(d::save_endpoints(file, eps, &err));
  auto back = d::load_endpoints(file, &err);
  REQUIRE(back);
  REQUIRE(back->size() == 2);
  CHECK((*back)[0].address.text == "127.0.0.1:8001");
  CHECK((*back)[1].address.text == "[::1]:8002");
  CHECK((*back)[1].weight == 4);
  // Overwrite: no temporary file is left behind.
  REQUIRE(d::save_endpoints(file, {}, &err));
  CHECK(d::load_endpoints(file, &err)->empty());
  CHECK(std::system(("test $(ls '" + dir.path + "' | wc -l) -eq 1").c_str()) == 0);
}

TEST_CASE("bad persisted files are refused or filtered", "[etcd][persist]") {
  temp_dir dir;
  std::string err;
  CHECK_FALSE(d::load_endpoints(dir.path + "/missing.json", &err));
  CHECK(err.find("cannot open") != std::string::npos);
  const std::string file = dir.path + "/bad.json";
  std::ofstream(file) << "{not json";
  CHECK_FALSE(d::load_endpoints(file, &err));
  std::ofstream(file, std::ios::trunc)
      << R"([{"address":"127.0.0.1:1","weight":1},{"address":"127.0.0.1:0"},"127.0.0.1:2",7])";
  std::size_t skipped = 0;
  auto eps = d::load_endpoints(file, &err, &skipped);
  REQUIRE(eps);
  CHECK(eps->size() == 2);
  CHECK(skipped == 2);
  CHECK_FALSE(d::save_endpoints(dir.path + "/no/such/dir/x.json", {}, &err));
  CHECK(err.find("cannot create") != std::string::npos);
}
