#include "sluice/discovery/persist.hpp"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include <fcntl.h>
#include <unistd.h>

#include <boost/json.hpp>

#include "sluice/core/address.hpp"
#include "sluice/discovery/registration.hpp"

namespace sluice::discovery {

namespace json = boost::json;

bool save_endpoints(const std::string& path, const std::vector<pool::endpoint>& endpoints,
                    std::string* error) {
  json::array list;
  for (const auto& e : endpoints) {
    json::object o;
    o["address"] = e.address.text;
    o["weight"] = e.weight;
    list.push_back(std::move(o));
  }
  const std::string text = json::serialize(list) + "\n";
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  auto fail = [&](const std::string& what) {
    if (error) *error = what + " '" + tmp + "': " + std::strerror(errno);
    ::unlink(tmp.c_str());
    return false;
  };
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return fail("cannot create");
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ::close(fd);
      return fail("cannot write");
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) {
    ::close(fd);
    return fail("cannot fsync");
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) return fail("cannot rename over '" + path + "'");
  return true;
}

std::optional<std::vector<pool::endpoint>> load_endpoints(const std::string& path,
                                                          std::string* error,
                                                          std::size_t* skipped) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (error) *error = "cannot open '" + path + "': " + std::strerror(errno);
    return std::nullopt;
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  boost::system::error_code ec;
  json::value v = json::parse(ss.str(), ec);
  if (ec || !v.is_array()) {
    if (error) *error = "'" + path + "' is not a JSON list of endpoints";
    return std::nullopt;
  }
  std::vector<pool::endpoint> out;
  std::size_t bad = 0;
  for (const auto& item : v.as_array()) {
    std::string err;
    auto r = parse_registration(json::serialize(item), &err);
    std::optional<core::address> addr;
    if (r) addr = core::resolve(r->address, &err);
    if (!r || !addr) {
      ++bad;
      continue;
    }
    out.push_back({std::move(*addr), r->weight});
  }
  if (skipped) *skipped = bad;
  return out;
}

}  // namespace sluice::discovery
