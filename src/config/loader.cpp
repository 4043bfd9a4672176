#include "sluice/config/loader.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <set>
#include <memory>
#include <new>
#include <span>
#include <sstream>
#include <tuple>
#include <sys/stat.h>
#include <utility>

#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include "sluice/config/certificate.hpp"
#include "sluice/core/address.hpp"
#include "sluice/core/cidr.hpp"

namespace sluice::config {

std::string diagnostic::to_string() const {
  std::string out = file;
  if (line > 0) {
    out += ':' + std::to_string(line) + ':' + std::to_string(column);
  }
  out += ": ";
  if (!key_path.empty()) {
    out += key_path;
    out += ": ";
  }
  out += message;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Scalars

namespace {

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c); });
}

// Reads a run of decimal digits at the front of `s` into `value`; false on overflow or no digit.
bool take_number(std::string_view& s, std::uint64_t& value) {
  std::size_t n = 0;
  while (n < s.size() && std::isdigit(static_cast<unsigned char>(s[n]))) ++n;
  if (n == 0) return false;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + n, value);
  if (ec != std::errc{} || ptr != s.data() + n) return false;
  s.remove_prefix(n);
  return true;
}

}  // namespace

std::optional<duration> parse_duration(std::string_view text) {
  struct unit {
    std::string_view name;
    std::uint64_t ms;
  };
  // Longest name first so "ms" is not read as "m" followed by garbage.
  static constexpr unit units[] = {{"ms", 1}, {"h", 3'600'000}, {"m", 60'000}, {"s", 1'000}};
  // Rank of each unit in the required decreasing order h > m > s > ms.
  auto rank = [](std::string_view u) { return u == "h" ? 0 : u == "m" ? 1 : u == "s" ? 2 : 3; };

  if (text.empty()) return std::nullopt;
  std::uint64_t total = 0;
  int last_rank = -1;
  while (!text.empty()) {
    std::uint64_t value = 0;
    if (!take_number(text, value)) return std::nullopt;
    const unit* found = nullptr;
    for (const auto& u : units) {
      if (text.substr(0, u.name.size()) == u.name) {
        found = &u;
        break;
      }
    }
    if (!found) return std::nullopt;  // bare number, or unknown unit
    text.remove_prefix(found->name.size());
    const int r = rank(found->name);
    if (r <= last_rank) return std::nullopt;  // "1s1m", "1s1s"
    last_rank = r;
    std::uint64_t part = 0;
    if (__builtin_mul_overflow(value, found->ms, &part)) return std::nullopt;
    if (__builtin_add_overflow(total, part, &total)) return std::nullopt;
  }
  if (total > static_cast<std::uint64_t>(std::numeric_limits<duration::rep>::max()))
    return std::nullopt;
  return duration{static_cast<duration::rep>(total)};
}

std::optional<std::uint64_t> parse_size(std::string_view text) {
  std::uint64_t value = 0;
  if (!take_number(text, value)) return std::nullopt;
  std::uint64_t scale = 1;
  if (text.size() == 1) {
    switch (text[0]) {
      case 'k': case 'K': scale = 1ull << 10; break;
      case 'm': case 'M': scale = 1ull << 20; break;
      case 'g': case 'G': scale = 1ull << 30; break;
      default: return std::nullopt;
    }
  } else if (!text.empty()) {
    return std::nullopt;
  }
  std::uint64_t out = 0;
  if (__builtin_mul_overflow(value, scale, &out)) return std::nullopt;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Schema walk

namespace {

constexpr std::size_t max_file_bytes = 16u << 20;
// Aliases can make a small file describe a huge tree (listeners: [*a, *a, ...] where *a holds
// many routes). The walk counts the nodes it visits and gives up past this many, so a hostile
// file costs bounded time.
constexpr std::size_t node_budget = 500'000;
constexpr std::size_t max_errors = 1000;

struct budget_exceeded {};

// Optimal string alignment distance (a transposition costs 1): "tiemouts" → "timeouts" is 1.
std::size_t edit_distance(std::string_view a, std::string_view b) {
  const std::size_t n = a.size(), m = b.size();
  std::vector<std::vector<std::size_t>> d(n + 1, std::vector<std::size_t>(m + 1));
  for (std::size_t i = 0; i <= n; ++i) d[i][0] = i;
  for (std::size_t j = 0; j <= m; ++j) d[0][j] = j;
  for (std::size_t i = 1; i <= n; ++i) {
    for (std::size_t j = 1; j <= m; ++j) {
      const std::size_t cost =
          std::tolower(static_cast<unsigned char>(a[i - 1])) ==
                  std::tolower(static_cast<unsigned char>(b[j - 1]))
              ? 0
              : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[n][m];
}

// The closest candidate when it is close enough to be a likely typo, else empty.
std::string_view closest(std::string_view word, std::span<const std::string_view> candidates) {
  if (word.size() > 64) return {};
  std::string_view best;
  std::size_t best_d = std::numeric_limits<std::size_t>::max();
  for (auto c : candidates) {
    const std::size_t d = edit_distance(word, c);
    if (d < best_d) {
      best_d = d;
      best = c;
    }
  }
  const std::size_t limit = best.size() >= 5 ? 2 : 1;
  if (best.empty() || best_d > limit || best_d >= best.size()) return {};
  return best;
}

std::string did_you_mean(std::string_view word, std::span<const std::string_view> candidates) {
  auto c = closest(word, candidates);
  if (c.empty()) return {};
  return " (did you mean '" + std::string(c) + "'?)";
}

std::string join(std::span<const std::string_view> items) {
  std::string out;
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i) out += i + 1 == items.size() ? " or " : ", ";
    out += items[i];
  }
  return out;
}

// Shortens user text quoted back in a message, so one diagnostic stays one readable line.
std::string quote(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 60)) out += (c == '\n' || c == '\r' || c == '\t') ? ' ' : c;
  if (s.size() > 60) out += "...";
  return "'" + out + "'";
}

std::string describe(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Null: return "nothing";
    case YAML::NodeType::Scalar: return quote(n.Scalar());
    case YAML::NodeType::Sequence: return "a list";
    case YAML::NodeType::Map: return "a mapping";
    default: return "nothing";
  }
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string join_path(const std::string& parent, std::string_view key) {
  if (parent.empty()) return std::string(key);
  return parent + "." + std::string(key);
}

std::string index_path(const std::string& parent, std::size_t i) {
  return parent + "[" + std::to_string(i) + "]";
}

// Collects diagnostics for one file.
class context {
 public:
  explicit context(std::string file) : file_(std::move(file)) {}

  void error(const YAML::Mark& mark, std::string path, std::string message) {
    if (errors_.size() >= max_errors) return;
    diagnostic d;
    d.file = file_;
    if (!mark.is_null()) {
      d.line = mark.line + 1;
      d.column = mark.column + 1;
    }
    d.key_path = std::move(path);
    d.message = std::move(message);
    errors_.push_back(std::move(d));
  }

  void visit() {
    if (++visited_ > node_budget) throw budget_exceeded{};
  }

  const std::string& file() const noexcept { return file_; }
  std::vector<diagnostic>& errors() noexcept { return errors_; }

 private:
  std::string file_;
  std::vector<diagnostic> errors_;
  std::size_t visited_ = 0;
};

// A value found in a mapping, with the node of its key (for positions).
struct field {
  YAML::Node key;
  YAML::Node value;
  std::string path;

  // A null value ("key:" with nothing after it) is marked at the next token, often on the next
  // line; the key is a better place to point at.
  YAML::Mark mark() const { return value.IsNull() ? key.Mark() : value.Mark(); }
};

// One mapping of the schema: checks its keys against the allowed set (unknown, duplicated and
// non-string keys are reported here) and hands out the values.
class map_view {
 public:
  map_view(context& ctx, const YAML::Node& node, std::string path,
           std::span<const std::string_view> allowed)
      : ctx_(ctx), node_(node), path_(std::move(path)) {
    ctx_.visit();
    if (node.IsNull()) return;  // "timeouts:" with nothing: every key takes its default
    if (!node.IsMap()) {
      ctx_.error(node.Mark(), path_, "expected a mapping, got " + describe(node));
      valid_ = false;
      return;
    }
    for (auto it = node.begin(); it != node.end(); ++it) {
      ctx_.visit();
      // Copies, not references: yaml-cpp's iterator hands out a temporary proxy.
      const YAML::Node k = it->first;
      const YAML::Node v = it->second;
      if (!k.IsScalar()) {
        ctx_.error(k.Mark(), path_, "keys must be plain strings, got " + describe(k));
        continue;
      }
      const std::string& name = k.Scalar();
      const std::string sub = join_path(path_, name);
      if (std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
        ctx_.error(k.Mark(), sub, "unknown key " + quote(name) + did_you_mean(name, allowed));
        continue;
      }
      if (auto* first = lookup(name)) {
        ctx_.error(k.Mark(), sub,
                   "duplicate key " + quote(name) + " (first at line " +
                       std::to_string(first->key.Mark().line + 1) + ")");
        continue;
      }
      fields_.push_back(field{k, v, sub});
    }
  }

  bool valid() const noexcept { return valid_; }
  const std::string& path() const noexcept { return path_; }
  YAML::Mark mark() const { return node_.Mark(); }

  const field* get(std::string_view key) const { return lookup(key); }

  // The field, or an error "missing required key" at this mapping's position.
  const field* require(std::string_view key) const {
    if (auto* f = lookup(key)) return f;
    if (valid_) {
      ctx_.error(mark(), join_path(path_, key), "missing required key " + quote(key));
    }
    return nullptr;
  }

 private:
  const field* lookup(std::string_view key) const {
    for (const auto& f : fields_)
      if (f.key.Scalar() == key) return &f;
    return nullptr;
  }

  context& ctx_;
  YAML::Node node_;
  std::string path_;
  bool valid_ = true;
  std::vector<field> fields_;
};

// Calls fn(item, path) for each element of a list field. A null value is an empty list.
template <class Fn>
void for_each_item(context& ctx, const field& f, Fn&& fn) {
  if (f.value.IsNull()) return;
  if (!f.value.IsSequence()) {
    ctx.error(f.mark(), f.path, "expected a list, got " + describe(f.value));
    return;
  }
  std::size_t i = 0;
  for (const auto& item : f.value) {
    ctx.visit();
    fn(item, index_path(f.path, i));
    ++i;
  }
}

// ---- typed readers: each reports its own error and returns nullopt on a bad value ----------

std::optional<std::string> read_scalar(context& ctx, const field& f, std::string_view what) {
  if (!f.value.IsScalar()) {
    ctx.error(f.mark(), f.path, "expected " + std::string(what) + ", got " + describe(f.value));
    return std::nullopt;
  }
  return f.value.Scalar();
}

std::optional<std::string> read_string(context& ctx, const field& f, bool allow_empty = false) {
  auto s = read_scalar(ctx, f, "a string");
  if (s && !allow_empty && s->empty()) {
    ctx.error(f.mark(), f.path, "must not be empty");
    return std::nullopt;
  }
  return s;
}

std::optional<std::uint64_t> read_uint(context& ctx, const field& f, std::uint64_t lo,
                                       std::uint64_t hi) {
  const std::string range = std::to_string(lo) + " and " + std::to_string(hi);
  auto s = read_scalar(ctx, f, "an integer between " + range);
  if (!s) return std::nullopt;
  std::uint64_t v = 0;
  std::string_view rest = *s;
  if (!take_number(rest, v) || !rest.empty()) {
    if (!s->empty() && s->front() == '-' && all_digits(std::string_view(*s).substr(1)))
      ctx.error(f.mark(), f.path, "must be between " + range + ", got " + *s);
    else if (all_digits(*s))
      ctx.error(f.mark(), f.path, "must be between " + range + ", got " + quote(*s));
    else
      ctx.error(f.mark(), f.path, "expected an integer between " + range + ", got " + quote(*s));
    return std::nullopt;
  }
  if (v < lo || v > hi) {
    ctx.error(f.mark(), f.path, "must be between " + range + ", got " + *s);
    return std::nullopt;
  }
  return v;
}

std::optional<std::uint64_t> read_size(context& ctx, const field& f, std::uint64_t lo,
                                       std::uint64_t hi) {
  constexpr std::string_view hint = "a size in bytes like 8192, 512k, 1m or 2g";
  auto s = read_scalar(ctx, f, hint);
  if (!s) return std::nullopt;
  auto v = parse_size(*s);
  if (!v) {
    ctx.error(f.mark(), f.path, "expected " + std::string(hint) + ", got " + quote(*s));
    return std::nullopt;
  }
  if (*v < lo || *v > hi) {
    ctx.error(f.mark(), f.path,
              "must be between " + std::to_string(lo) + " and " + std::to_string(hi) +
                  " bytes, got " + *s);
    return std::nullopt;
  }
  return v;
}

std::optional<duration> read_duration(context& ctx, const field& f, bool allow_zero) {
  constexpr std::string_view hint = "a duration like 500ms, 2s, 1m";
  auto s = read_scalar(ctx, f, hint);
  if (!s) return std::nullopt;
  auto d = parse_duration(*s);
  if (!d) {
    if (all_digits(*s))
      ctx.error(f.mark(), f.path,
                "expected " + std::string(hint) + ", got " + quote(*s) +
                    " (a bare number is ambiguous: add a unit, e.g. " + *s + "s or " + *s + "ms)");
    else
      ctx.error(f.mark(), f.path, "expected " + std::string(hint) + ", got " + quote(*s));
    return std::nullopt;
  }
  if (!allow_zero && d->count() == 0) {
    ctx.error(f.mark(), f.path, "must be greater than 0s");
    return std::nullopt;
  }
  return d;
}

std::optional<bool> read_bool(context& ctx, const field& f) {
  auto s = read_scalar(ctx, f, "true or false");
  if (!s) return std::nullopt;
  const std::string l = lower(*s);
  if (l == "true" || l == "yes" || l == "on") return true;
  if (l == "false" || l == "no" || l == "off") return false;
  ctx.error(f.mark(), f.path, "expected true or false, got " + quote(*s));
  return std::nullopt;
}

template <class E>
struct choice {
  std::string_view name;
  E value;
};

template <class E, std::size_t N>
std::optional<E> read_enum(context& ctx, const field& f, const choice<E> (&choices)[N]) {
  std::string_view names[N];
  for (std::size_t i = 0; i < N; ++i) names[i] = choices[i].name;
  const std::string expected = "one of " + join(names);
  auto s = read_scalar(ctx, f, expected);
  if (!s) return std::nullopt;
  for (const auto& c : choices)
    if (c.name == *s) return c.value;
  ctx.error(f.mark(), f.path, "expected " + expected + ", got " + quote(*s) + did_you_mean(*s, names));
  return std::nullopt;
}

// Names of listeners and clusters end up in metric labels and log lines.
bool valid_name(std::string_view s) {
  return !s.empty() && s.size() <= 128 && std::all_of(s.begin(), s.end(), [](unsigned char c) {
           return std::isalnum(c) || c == '_' || c == '-' || c == '.';
         });
}

std::optional<std::string> read_name(context& ctx, const field& f) {
  auto s = read_string(ctx, f);
  if (!s) return std::nullopt;
  if (!valid_name(*s)) {
    ctx.error(f.mark(), f.path,
              "invalid name " + quote(*s) + ": use letters, digits, '_', '-' and '.' (at most 128)");
    return std::nullopt;
  }
  return s;
}

// host:port, checked for shape only: names are resolved later, never by the loader.
std::optional<std::string> read_address(context& ctx, const field& f, bool allow_zero_port,
                                        core::host_port* out = nullptr) {
  auto s = read_scalar(ctx, f, "host:port");
  if (!s) return std::nullopt;
  auto hp = core::split_host_port(*s, allow_zero_port);
  if (!hp) {
    std::string msg = "expected host:port like 127.0.0.1:8080 or [::1]:8080 (port " +
                      std::string(allow_zero_port ? "0" : "1") + "-65535), got " + quote(*s);
    if (all_digits(*s))
      msg += "; to listen on every address write 0.0.0.0:" + *s;
    else if (s->find("://") != std::string::npos)
      msg += "; leave out the scheme";
    ctx.error(f.mark(), f.path, msg);
    return std::nullopt;
  }
  if (out) *out = *hp;
  return s;
}

// ---- the sections ---------------------------------------------------------------------------

// A name used somewhere that must match a cluster defined elsewhere in the file.
struct cluster_ref {
  std::string name;
  YAML::Mark mark;
  std::string path;
};

class reader {
 public:
  explicit reader(context& ctx) : ctx_(ctx) {}

  void read(const YAML::Node& root, config& out) {
    static constexpr std::string_view keys[] = {"workers",   "drain_timeout", "upgrade_socket",
                                                "admin",     "metrics",       "log",
                                                "listeners", "clusters"};
    map_view m(ctx_, root, "", keys);
    if (!m.valid()) return;

    if (auto* f = m.get("workers")) {
      if (f->value.IsScalar() && f->value.Scalar() == "auto") {
        out.workers = 0;
      } else if (f->value.IsScalar() && !all_digits(f->value.Scalar())) {
        ctx_.error(f->mark(), f->path,
                   "expected an integer between 1 and 256 or 'auto', got " + describe(f->value));
      } else if (auto v = read_uint(ctx_, *f, 1, 256)) {
        out.workers = static_cast<std::uint32_t>(*v);
      }
    }
    if (auto* f = m.get("drain_timeout"))
      if (auto d = read_duration(ctx_, *f, true)) out.drain_timeout = *d;
    const field* upgrade = m.get("upgrade_socket");
    if (upgrade) {
      if (auto s = read_string(ctx_, *upgrade, true)) {
        // sockaddr_un's sun_path holds 108 bytes with the terminating NUL.
        if (!s->empty() && (s->front() != '/' || s->size() > 107 ||
                            s->find('\0') != std::string::npos))
          ctx_.error(upgrade->mark(), upgrade->path,
                     "must be an absolute path of at most 107 bytes, got " + quote(*s));
        else
          out.upgrade_socket = *s;
      }
    }
    if (auto* f = m.get("admin")) read_admin(*f, out.admin);
    if (auto* f = m.get("metrics")) read_metrics(*f, out.metrics);
    if (auto* f = m.get("log")) read_log(*f, out.log);
    if (auto* f = m.get("clusters")) {
      for_each_item(ctx_, *f, [&](const YAML::Node& item, const std::string& path) {
        out.clusters.push_back(read_cluster(item, path));
      });
    }
    if (auto* f = m.require("listeners")) {
      for_each_item(ctx_, *f, [&](const YAML::Node& item, const std::string& path) {
        out.listeners.push_back(read_listener(item, path));
      });
      if (out.listeners.empty() && (f->value.IsNull() || f->value.IsSequence()))
        ctx_.error(f->mark(), f->path, "at least one listener is required");
    }
    check_references();
    check_addresses();
    if (upgrade && !out.upgrade_socket.empty()) {
      for (const auto& l : out.listeners)
        if (l.name == "admin")
          ctx_.error(upgrade->mark(), upgrade->path,
                     "a listener named 'admin' cannot be handed over on upgrade (the name stands "
                     "for the admin listener there); rename the listener");
    }
  }

 private:
  void read_admin(const field& f, admin& out) {
    static constexpr std::string_view keys[] = {"address", "token"};
    map_view m(ctx_, f.value, f.path, keys);
    if (!m.valid()) return;
    if (auto* t = m.get("token")) {
      if (auto s = read_string(ctx_, *t)) {
        // Sent as `Authorization: Bearer TOKEN`: visible ASCII only, and long enough to matter.
        const bool printable = std::all_of(s->begin(), s->end(), [](unsigned char c) {
          return c > 0x20 && c < 0x7f;
        });
        if (!printable || s->size() < 16 || s->size() > 256)
          ctx_.error(t->mark(), t->path,
                     "the token must be 16 to 256 visible ASCII characters (no spaces)");
        else
          out.token = *s;
      }
    }
    if (auto* a = m.require("address")) {
      core::host_port hp;
      if (auto s = read_address(ctx_, *a, true, &hp)) {
        out.address = *s;
        claim_address(hp, *a, "the admin listener");
        // The admin API can drain backends: off loopback it must be authenticated.
        if (!is_loopback_host(hp.host) && !m.get("token"))
          ctx_.error(a->mark(), a->path,
                     "the admin listener on a non-loopback address " + quote(*s) +
                         " needs admin.token (or listen on 127.0.0.1 / [::1])");
      }
    }
  }

  static bool is_loopback_host(const std::string& host) {
    if (lower(host) == "localhost") return true;
    auto net = core::parse_cidr(host);
    if (!net) return false;
    static const auto v4 = core::parse_cidr("127.0.0.0/8");
    static const auto v6 = core::parse_cidr("::1");
    return net->prefix == (net->v6 ? 128 : 32) &&
           (v4->contains(net->net.data(), net->v6) || v6->contains(net->net.data(), net->v6));
  }

  void read_metrics(const field& f, ::sluice::config::metrics& out) {
    static constexpr std::string_view keys[] = {"enabled"};
    map_view m(ctx_, f.value, f.path, keys);
    if (!m.valid()) return;
    if (auto* e = m.get("enabled"))
      if (auto b = read_bool(ctx_, *e)) out.enabled = *b;
  }

  void read_log(const field& f, logging& out) {
    static constexpr std::string_view keys[] = {"error_log", "level", "access"};
    map_view m(ctx_, f.value, f.path, keys);
    if (!m.valid()) return;
    if (auto* e = m.get("error_log"))
      if (auto s = read_string(ctx_, *e)) out.error_log = *s;
    if (auto* e = m.get("level")) {
      static constexpr choice<std::string_view> choices[] = {
          {"debug", "debug"}, {"info", "info"}, {"warn", "warn"}, {"error", "error"}};
      if (auto v = read_enum(ctx_, *e, choices)) out.level = std::string(*v);
    }
    if (auto* a = m.get("access")) {
      static constexpr std::string_view akeys[] = {"path", "format"};
      map_view am(ctx_, a->value, a->path, akeys);
      if (!am.valid()) return;
      if (auto* p = am.get("path"))
        if (auto s = read_string(ctx_, *p)) out.access.path = *s;
      if (auto* p = am.get("format")) {
        static constexpr choice<std::string_view> choices[] = {{"combined", "combined"},
                                                               {"json", "json"}};
        if (auto v = read_enum(ctx_, *p, choices)) out.access.format = std::string(*v);
      }
    }
  }

  // Two listeners (or a listener and the admin listener) on the same host:port would fail at
  // bind time; port 0 asks the kernel for a fresh port, so it never clashes.
  void claim_address(const core::host_port& hp, const field& f, std::string who) {
    if (hp.port == 0) return;
    claims_.push_back({lower(hp.host) + ":" + std::to_string(hp.port), f, std::move(who)});
  }

  // Checked once everything is read, in file order, so the later of two clashing addresses is
  // the one reported.
  void check_addresses() {
    std::stable_sort(claims_.begin(), claims_.end(), [](const claim& a, const claim& b) {
      const auto ma = a.f.mark(), mb = b.f.mark();
      return std::tie(ma.line, ma.column) < std::tie(mb.line, mb.column);
    });
    std::map<std::string, const claim*> seen;
    for (const auto& c : claims_) {
      auto [it, inserted] = seen.emplace(c.key, &c);
      if (inserted) continue;
      ctx_.error(c.f.mark(), c.f.path,
                 "address " + quote(c.f.value.Scalar()) + " is already used by " + it->second->who +
                     " (line " + std::to_string(it->second->f.mark().line + 1) + ")");
    }
  }

  listener read_listener(const YAML::Node& node, const std::string& path) {
    static constexpr std::string_view keys[] = {"name",    "address",  "protocol", "routes",
                                                "cluster", "timeouts", "limits",   "forwarded",
                                                "tcp",     "http2",    "tls",
                                                "headers_with_underscores"};
    listener out;
    map_view m(ctx_, node, path, keys);
    if (!m.valid()) return out;

    if (auto* f = m.require("name")) {
      if (auto s = read_name(ctx_, *f)) {
        out.name = *s;
        unique(listener_names_, *s, *f, "listener");
      }
    }
    if (auto* f = m.require("address")) {
      core::host_port hp;
      if (auto s = read_address(ctx_, *f, true, &hp)) {
        out.address = *s;
        claim_address(hp, *f, "listener " + quote(out.name.empty() ? path : out.name));
      }
    }
    bool protocol_ok = true;
    if (auto* f = m.get("protocol")) {
      static constexpr choice<listener::protocol_kind> choices[] = {
          {"http", listener::protocol_kind::http}, {"tcp", listener::protocol_kind::tcp}};
      if (auto v = read_enum(ctx_, *f, choices))
        out.protocol = *v;
      else
        protocol_ok = false;
    }

    const field* routes = m.get("routes");
    const field* cluster_f = m.get("cluster");
    const field* tcp_f = m.get("tcp");
    if (protocol_ok && out.protocol == listener::protocol_kind::http && tcp_f)
      ctx_.error(tcp_f->key.Mark(), tcp_f->path, "'tcp' options are for listeners with protocol: tcp");
    if (protocol_ok && out.protocol == listener::protocol_kind::tcp && tcp_f)
      read_tcp_options(*tcp_f, out.tcp);
    if (protocol_ok && out.protocol == listener::protocol_kind::http) {
      if (cluster_f)
        ctx_.error(cluster_f->key.Mark(), cluster_f->path,
                   "'cluster' is for tcp listeners; an http listener picks clusters in its routes "
                   "(or set protocol: tcp)");
      if (!routes) {
        m.require("routes");
      } else {
        route_names_.clear();  // route names are unique per listener
        for_each_item(ctx_, *routes, [&](const YAML::Node& item, const std::string& p) {
          out.routes.push_back(read_route(item, p));
        });
        if (out.routes.empty() && (routes->value.IsNull() || routes->value.IsSequence()))
          ctx_.error(routes->mark(), routes->path, "an http listener needs at least one route");
      }
    } else if (protocol_ok) {
      if (routes)
        ctx_.error(routes->key.Mark(), routes->path,
                   "'routes' are for http listeners; a tcp listener forwards to its 'cluster'");
      if (!cluster_f) {
        // With SNI routes the cluster is only the fallback: without one, unmatched names close.
        if (out.tcp.sni_routes.empty()) m.require("cluster");
      } else if (auto s = read_string(ctx_, *cluster_f)) {
        out.cluster = *s;
        refs_.push_back({*s, cluster_f->mark(), cluster_f->path});
      }
    }

    if (auto* f = m.get("timeouts")) {
      static constexpr std::string_view tkeys[] = {"header", "idle", "body", "send"};
      map_view t(ctx_, f->value, f->path, tkeys);
      if (t.valid()) {
        set_duration(t, "header", out.timeouts.header);
        set_duration(t, "idle", out.timeouts.idle);
        set_duration(t, "body", out.timeouts.body);
        set_duration(t, "send", out.timeouts.send);
      }
    }
    if (auto* f = m.get("limits")) {
      static constexpr std::string_view lkeys[] = {"max_request_line", "max_header_bytes",
                                                   "max_headers", "max_body",
                                                   "max_keepalive_requests"};
      map_view l(ctx_, f->value, f->path, lkeys);
      if (l.valid()) {
        constexpr std::uint64_t u32 = std::numeric_limits<std::uint32_t>::max();
        if (auto* x = l.get("max_request_line"))
          if (auto v = read_size(ctx_, *x, 16, u32)) out.limits.max_request_line = *v;
        if (auto* x = l.get("max_header_bytes"))
          if (auto v = read_size(ctx_, *x, 64, u32)) out.limits.max_header_bytes = *v;
        if (auto* x = l.get("max_headers"))
          if (auto v = read_uint(ctx_, *x, 1, 100000)) out.limits.max_headers = *v;
        if (auto* x = l.get("max_body"))
          if (auto v = read_size(ctx_, *x, 0, std::numeric_limits<std::int64_t>::max()))
            out.limits.max_body = *v;
        if (auto* x = l.get("max_keepalive_requests"))
          if (auto v = read_uint(ctx_, *x, 1, u32)) out.limits.max_keepalive_requests = *v;
      }
    }
    if (auto* f = m.get("forwarded"))
      if (auto b = read_bool(ctx_, *f)) out.forwarded = *b;
    if (auto* f = m.get("headers_with_underscores")) {
      using action = listener_limits::underscore_action;
      if (protocol_ok && out.protocol != listener::protocol_kind::http)
        ctx_.error(f->key.Mark(), f->path,
                   "'headers_with_underscores' is for listeners with protocol: http");
      static constexpr choice<action> actions[] = {
          {"drop", action::drop}, {"allow", action::allow}, {"reject", action::reject}};
      if (auto v = read_enum(ctx_, *f, actions)) out.limits.underscores = *v;
    }
    if (auto* f = m.get("http2")) {
      if (protocol_ok && out.protocol != listener::protocol_kind::http)
        ctx_.error(f->key.Mark(), f->path, "'http2' options are for listeners with protocol: http");
      else
        read_http2_options(*f, out.http2);
    }
    if (auto* f = m.get("tls")) {
      if (protocol_ok && out.protocol != listener::protocol_kind::http)
        ctx_.error(f->key.Mark(), f->path,
                   "'tls' terminates TLS on listeners with protocol: http (a tcp listener passes "
                   "TLS through: see tcp.sni_routes)");
      else
        read_tls(*f, out);
    }
    return out;
  }

  // A file named in the configuration: relative to the configuration file's directory.
  std::string resolve_path(const std::string& p) const {
    std::filesystem::path path(p);
    if (path.is_absolute()) return p;
    auto dir = std::filesystem::path(ctx_.file()).parent_path();
    return dir.empty() ? p : (dir / path).string();
  }

  void read_tls(const field& f, listener& l) {
    static constexpr std::string_view keys[] = {"certificates", "alpn", "min_version", "ciphers",
                                                "handshake_timeout"};
    map_view m(ctx_, f.value, f.path, keys);
    if (!m.valid()) return;
    tls_options out;
    if (auto* c = m.require("certificates")) {
      std::map<std::string, std::string> names;  // server name -> path of the certificate
      for_each_item(ctx_, *c, [&](const YAML::Node& item, const std::string& p) {
        read_tls_certificate(item, p, names, out);
      });
      if (c->value.IsNull() || (c->value.IsSequence() && c->value.size() == 0))
        ctx_.error(c->mark(), c->path, "needs at least one certificate");
    }
    if (auto* a = m.get("alpn")) {
      static constexpr choice<std::string_view> choices[] = {{"h2", "h2"},
                                                             {"http/1.1", "http/1.1"}};
      std::vector<std::string> protos;
      bool ok = true;
      for_each_item(ctx_, *a, [&](const YAML::Node& item, const std::string& p) {
        field af{item, item, p};
        auto v = read_enum(ctx_, af, choices);
        if (!v) {
          ok = false;
        } else if (std::find(protos.begin(), protos.end(), *v) != protos.end()) {
          ctx_.error(af.mark(), p, "duplicate protocol " + quote(*v));
          ok = false;
        } else {
          protos.emplace_back(*v);
        }
      });
      if (ok && protos.empty() && (a->value.IsNull() || a->value.IsSequence()))
        ctx_.error(a->mark(), a->path, "needs at least one of h2, http/1.1");
      else if (ok && !protos.empty())
        out.alpn = std::move(protos);
    }
    if (auto* v = m.get("min_version")) {
      static constexpr choice<tls_options::version> choices[] = {
          {"1.2", tls_options::version::tls1_2}, {"1.3", tls_options::version::tls1_3}};
      if (auto x = read_enum(ctx_, *v, choices)) out.min_version = *x;
    }
    if (auto* x = m.get("ciphers")) {
      if (auto s = read_string(ctx_, *x)) {
        if (auto why = check_cipher_list(*s); !why.empty())
          ctx_.error(x->mark(), x->path, why);
        else
          out.ciphers = *s;
      }
    }
    set_duration(m, "handshake_timeout", out.handshake_timeout);
    l.tls = std::move(out);
  }

  void read_tls_certificate(const YAML::Node& node, const std::string& path,
                            std::map<std::string, std::string>& names, tls_options& out) {
    static constexpr std::string_view keys[] = {"cert", "key", "server_names"};
    map_view m(ctx_, node, path, keys);
    if (!m.valid()) return;
    tls_certificate c;
    const field* cert = m.require("cert");
    const field* key = m.require("key");
    std::optional<std::string> cert_path, key_path;
    if (cert) cert_path = read_string(ctx_, *cert);
    if (key) key_path = read_string(ctx_, *key);
    if (cert_path) c.cert = resolve_path(*cert_path);
    if (key_path) c.key = resolve_path(*key_path);
    std::vector<std::string> cert_names;
    bool files_ok = false;
    if (cert_path && key_path) {
      auto r = check_certificate(c.cert, c.key);
      if (r.what == certificate_check::problem::cert)
        ctx_.error(cert->mark(), cert->path, r.message);
      else if (r.what == certificate_check::problem::key)
        ctx_.error(key->mark(), key->path, r.message);
      else
        files_ok = true;
      cert_names = std::move(r.names);
    }
    const field* sn = m.get("server_names");
    if (sn) {
      for_each_item(ctx_, *sn, [&](const YAML::Node& item, const std::string& p) {
        field nf{item, item, p};
        auto s = read_string(ctx_, nf);
        if (!s) return;
        if (auto why = check_host_pattern(*s); !why.empty()) {
          ctx_.error(nf.mark(), p, why);
          return;
        }
        const std::string name = lower(*s);
        auto [it, inserted] = names.emplace(name, c.cert);
        if (!inserted) {
          ctx_.error(nf.mark(), p,
                     "server name " + quote(name) + " is already served by '" + it->second + "'");
          return;
        }
        c.server_names.push_back(name);
      });
      if (sn->value.IsNull() || (sn->value.IsSequence() && sn->value.size() == 0))
        ctx_.error(sn->mark(), sn->path,
                   "needs at least one name (leave 'server_names' out to use the certificate's)");
    } else if (!out.certificates.empty() && files_ok && cert_names.empty()) {
      // Not the default certificate and no name to choose it by: it would never be served.
      ctx_.error(m.mark(), join_path(path, "server_names"),
                 "the certificate names no host (no DNS subjectAltName or CN): give its "
                 "'server_names'");
    }
    out.certificates.push_back(std::move(c));
  }

  void read_http2_options(const field& f, http2_options& out) {
    static constexpr std::string_view keys[] = {"max_concurrent_streams", "max_header_list_size",
                                                "stream_window",          "reset_burst",
                                                "reset_rate",             "max_connection_age"};
    map_view m(ctx_, f.value, f.path, keys);
    if (!m.valid()) return;
    if (auto* x = m.get("max_concurrent_streams"))
      if (auto v = read_uint(ctx_, *x, 1, 100000)) out.max_concurrent_streams = *v;
    if (auto* x = m.get("max_header_list_size"))
      if (auto v = read_size(ctx_, *x, 1024, 16 * 1024 * 1024)) out.max_header_list_size = *v;
    // RFC 9113 section 6.5.2: a window is at least 65535 and at most 2^31-1.
    if (auto* x = m.get("stream_window"))
      if (auto v = read_size(ctx_, *x, 65535, 2147483647)) out.stream_window = *v;
    if (auto* x = m.get("reset_burst"))
      if (auto v = read_uint(ctx_, *x, 1, 1000000)) out.reset_burst = *v;
    if (auto* x = m.get("reset_rate"))
      if (auto v = read_uint(ctx_, *x, 1, 1000000)) out.reset_rate = *v;
    if (auto* x = m.get("max_connection_age"))
      if (auto d = read_duration(ctx_, *x, true)) out.max_connection_age = *d;
  }

  void read_tcp_options(const field& f, tcp_options& out) {
    static constexpr std::string_view keys[] = {
        "idle_timeout", "max_lifetime", "header_timeout", "max_connections", "on_limit",
        "queue_timeout", "relay", "buffer_size", "pipe_size", "proxy_protocol", "sni_routes"};
    map_view m(ctx_, f.value, f.path, keys);
    if (!m.valid()) return;
    set_duration(m, "idle_timeout", out.idle_timeout);
    if (auto* x = m.get("max_lifetime"))
      if (auto d = read_duration(ctx_, *x, true)) out.max_lifetime = *d;
    set_duration(m, "header_timeout", out.header_timeout);
    if (auto* x = m.get("max_connections"))
      if (auto v = read_uint(ctx_, *x, 0, 10'000'000)) out.max_connections = *v;
    if (auto* x = m.get("on_limit")) {
      static constexpr choice<tcp_options::limit_action> choices[] = {
          {"refuse", tcp_options::limit_action::refuse}, {"queue", tcp_options::limit_action::queue}};
      if (auto v = read_enum(ctx_, *x, choices)) out.on_limit = *v;
    }
    set_duration(m, "queue_timeout", out.queue_timeout);
    if (auto* x = m.get("relay")) {
      static constexpr choice<tcp_options::relay_mode> choices[] = {
          {"auto", tcp_options::relay_mode::automatic},
          {"splice", tcp_options::relay_mode::splice},
          {"buffer", tcp_options::relay_mode::buffer}};
      if (auto v = read_enum(ctx_, *x, choices)) out.relay = *v;
    }
    if (auto* x = m.get("buffer_size"))
      if (auto v = read_size(ctx_, *x, 4096, 1u << 20)) out.buffer_size = static_cast<std::uint32_t>(*v);
    if (auto* x = m.get("pipe_size"))
      if (auto v = read_size(ctx_, *x, 4096, 1u << 20)) out.pipe_size = static_cast<std::uint32_t>(*v);
    if (auto* p = m.get("proxy_protocol")) read_proxy_protocol(*p, out.proxy);
    if (auto* r = m.get("sni_routes")) {
      std::map<std::string, int> seen;
      for_each_item(ctx_, *r, [&](const YAML::Node& item, const std::string& path) {
        static constexpr std::string_view rkeys[] = {"server_name", "cluster"};
        map_view rm(ctx_, item, path, rkeys);
        if (!rm.valid()) return;
        sni_route route;
        bool ok = true;
        if (auto* n = rm.require("server_name")) {
          if (auto s = read_string(ctx_, *n)) {
            if (auto why = check_host_pattern(*s); !why.empty()) {
              ctx_.error(n->mark(), n->path, why);
              ok = false;
            } else {
              route.server_name = lower(*s);
              auto [it, inserted] = seen.emplace(route.server_name, n->value.Mark().line + 1);
              if (!inserted) {
                ctx_.error(n->mark(), n->path,
                           "duplicate server_name " + quote(*s) + " (first at line " +
                               std::to_string(it->second) + ")");
                ok = false;
              }
            }
          } else {
            ok = false;
          }
        } else {
          ok = false;
        }
        if (auto* c = rm.require("cluster")) {
          if (auto s = read_string(ctx_, *c)) {
            route.cluster = *s;
            refs_.push_back({*s, c->mark(), c->path});
          } else {
            ok = false;
          }
        } else {
          ok = false;
        }
        if (ok) out.sni_routes.push_back(std::move(route));
      });
      if (r->value.IsSequence() && r->value.size() == 0)
        ctx_.error(r->mark(), r->path, "needs at least one route (or leave 'sni_routes' out)");
    }
  }

  void read_proxy_protocol(const field& f, proxy_protocol& out) {
    static constexpr std::string_view keys[] = {"send", "accept", "trusted"};
    map_view m(ctx_, f.value, f.path, keys);
    if (!m.valid()) return;
    if (auto* x = m.get("send")) {
      static constexpr choice<proxy_protocol::version> choices[] = {
          {"none", proxy_protocol::version::none},
          {"v1", proxy_protocol::version::v1},
          {"v2", proxy_protocol::version::v2}};
      if (auto v = read_enum(ctx_, *x, choices)) out.send = *v;
    }
    bool accept_ok = true;
    if (auto* x = m.get("accept")) {
      if (auto b = read_bool(ctx_, *x))
        out.accept = *b;
      else
        accept_ok = false;
    }
    const field* t = m.get("trusted");
    if (t) {
      for_each_item(ctx_, *t, [&](const YAML::Node& item, const std::string& path) {
        field tf{item, item, path};
        auto s = read_scalar(ctx_, tf, "an address or prefix like 10.0.0.0/8");
        if (!s) return;
        std::string why;
        if (auto c = core::parse_cidr(*s, &why))
          out.trusted.push_back(*c);
        else
          ctx_.error(tf.mark(), path, "invalid address or prefix " + quote(*s) + ": " + why);
      });
      if (accept_ok && !out.accept)
        ctx_.error(t->key.Mark(), t->path, "'trusted' is only used with accept: true");
    }
    if (accept_ok && out.accept && (!t || t->value.IsNull() ||
                                    (t->value.IsSequence() && t->value.size() == 0)))
      ctx_.error(t ? t->mark() : m.mark(), t ? t->path : join_path(f.path, "trusted"),
                 "accept: true needs the 'trusted' sources allowed to send a PROXY header "
                 "(e.g. [10.0.0.0/8])");
  }

  route read_route(const YAML::Node& node, const std::string& path) {
    static constexpr std::string_view keys[] = {"match", "cluster", "direct", "name"};
    route out;
    map_view m(ctx_, node, path, keys);
    if (!m.valid()) return out;

    if (auto* f = m.get("name")) {
      if (auto s = read_name(ctx_, *f)) {
        out.name = *s;
        unique(route_names_, *s, *f, "route");
      }
    }

    if (auto* f = m.get("match")) {
      static constexpr std::string_view mkeys[] = {"host", "path_prefix"};
      map_view mm(ctx_, f->value, f->path, mkeys);
      if (mm.valid()) {
        if (auto* h = mm.get("host"))
          if (auto s = read_string(ctx_, *h)) {
            if (auto why = check_host_pattern(*s); !why.empty())
              ctx_.error(h->mark(), h->path, why);
            else
              out.match.host = lower(*s);
          }
        if (auto* p = mm.get("path_prefix"))
          if (auto s = read_string(ctx_, *p)) {
            if (s->front() != '/')
              ctx_.error(p->mark(), p->path, "must start with '/', got " + quote(*s));
            else
              out.match.path_prefix = *s;
          }
      }
    }

    const field* c = m.get("cluster");
    const field* d = m.get("direct");
    if (c && d) {
      ctx_.error(d->key.Mark(), d->path, "a route has either 'cluster' or 'direct', not both");
    } else if (!c && !d) {
      ctx_.error(m.mark(), path, "a route needs 'cluster' or 'direct'");
    }
    if (c) {
      if (auto s = read_string(ctx_, *c)) {
        out.cluster = *s;
        refs_.push_back({*s, c->mark(), c->path});
      }
    }
    if (d) {
      static constexpr std::string_view dkeys[] = {"status", "body", "content_type"};
      map_view dm(ctx_, d->value, d->path, dkeys);
      direct_response r;
      if (dm.valid()) {
        if (auto* f = dm.get("status"))
          if (auto v = read_uint(ctx_, *f, 100, 599)) r.status = *v;
        if (auto* f = dm.get("body"))
          if (auto s = read_string(ctx_, *f, true)) r.body = *s;
        if (auto* f = dm.get("content_type"))
          if (auto s = read_string(ctx_, *f)) r.content_type = *s;
        if (!r.body.empty() && (r.status < 200 || r.status == 204 || r.status == 304))
          ctx_.error(dm.get("body")->mark(), join_path(d->path, "body"),
                     "a " + std::to_string(r.status) + " response cannot have a body");
      }
      if (!c) out.direct = r;
    }
    return out;
  }

  // Empty when `host` is a valid match.host, else why not.
  static std::string check_host_pattern(const std::string& host) {
    std::string_view rest = host;
    if (rest.starts_with("*.")) rest.remove_prefix(2);
    const std::string hint = "expected a host name like example.com or *.example.com, got " + quote(host);
    if (rest.empty()) return hint;
    for (unsigned char ch : rest) {
      if (ch == '*') return hint + " ('*' is only allowed as a leading '*.')";
      if (ch == ':') return hint + " (leave out the port)";
      if (!(std::isalnum(ch) || ch == '-' || ch == '.' || ch == '_')) return hint;
    }
    return {};
  }

  cluster read_cluster(const YAML::Node& node, const std::string& path) {
    static constexpr std::string_view keys[] = {"name",      "policy",   "hash", "protocol",
                                                "endpoints", "discovery", "timeouts",
                                                "pool",      "health",   "max_tries",
                                                "max_connections_per_backend",
                                                "outlier",   "slow_start", "panic", "tls"};
    cluster out;
    map_view m(ctx_, node, path, keys);
    if (!m.valid()) return out;

    if (auto* f = m.require("name")) {
      if (f->value.IsScalar()) named_clusters_.insert(f->value.Scalar());
      if (auto s = read_name(ctx_, *f)) {
        out.name = *s;
        if (unique(cluster_names_, *s, *f, "cluster")) defined_clusters_.push_back(*s);
      }
    }
    bool policy_ok = true;
    if (auto* f = m.get("policy")) {
      static constexpr choice<policy_kind> choices[] = {{"round_robin", policy_kind::round_robin},
                                                        {"least_conn", policy_kind::least_conn},
                                                        {"random", policy_kind::random},
                                                        {"p2c", policy_kind::p2c},
                                                        {"ring_hash", policy_kind::ring_hash}};
      if (auto v = read_enum(ctx_, *f, choices))
        out.policy = *v;
      else
        policy_ok = false;
    }
    if (auto* f = m.get("hash")) {
      if (policy_ok && out.policy != policy_kind::ring_hash)
        ctx_.error(f->key.Mark(), f->path, "'hash' is only used by policy ring_hash");
      read_hash(*f, out.hash);
    }
    bool protocol_ok = true;
    if (auto* f = m.get("protocol")) {
      static constexpr choice<upstream_protocol> choices[] = {{"http1", upstream_protocol::http1},
                                                              {"h2c", upstream_protocol::h2c},
                                                              {"h2", upstream_protocol::h2}};
      if (auto v = read_enum(ctx_, *f, choices))
        out.protocol = *v;
      else
        protocol_ok = false;
    }

    const field* eps = m.get("endpoints");
    const field* disc = m.get("discovery");
    if (eps) {
      std::map<std::string, int> seen;
      for_each_item(ctx_, *eps, [&](const YAML::Node& item, const std::string& p) {
        if (auto e = read_endpoint(item, p, seen)) out.endpoints.push_back(std::move(*e));
      });
    }
    if (disc) read_discovery(*disc, out);
    // Both together: the static endpoints are merged with the discovered ones.
    if (!eps && !disc) {
      ctx_.error(m.mark(), path, "a cluster needs 'endpoints' or 'discovery'");
    } else if (eps && !disc && (eps->value.IsNull() ||
                                (eps->value.IsSequence() && eps->value.size() == 0))) {
      ctx_.error(eps->mark(), eps->path, "needs at least one endpoint (or use 'discovery')");
    }

    if (auto* f = m.get("timeouts")) {
      static constexpr std::string_view tkeys[] = {"connect", "read", "write"};
      map_view t(ctx_, f->value, f->path, tkeys);
      if (t.valid()) {
        set_duration(t, "connect", out.timeouts.connect);
        set_duration(t, "read", out.timeouts.read);
        set_duration(t, "write", out.timeouts.write);
      }
    }
    if (auto* f = m.get("pool")) {
      static constexpr std::string_view pkeys[] = {"max_idle", "idle_timeout"};
      map_view p(ctx_, f->value, f->path, pkeys);
      if (p.valid()) {
        if (auto* x = p.get("max_idle"))
          if (auto v = read_uint(ctx_, *x, 0, 100000)) out.pool.max_idle = *v;
        set_duration(p, "idle_timeout", out.pool.idle_timeout);
      }
    }
    if (auto* f = m.get("health")) read_health(*f, out, protocol_ok);
    if (auto* f = m.get("max_tries"))
      if (auto v = read_uint(ctx_, *f, 1, 10)) out.max_tries = *v;
    if (auto* f = m.get("max_connections_per_backend"))
      if (auto v = read_uint(ctx_, *f, 0, 10'000'000)) out.max_connections_per_backend = *v;
    if (auto* f = m.get("outlier")) read_outlier(*f, out.outlier);
    // Discovered instances can die without deregistering (their key lives until the lease
    // expires): eject them on failed requests unless the file says otherwise, the way nginx's
    // max_fails is on by default.
    else if (out.discovery) out.outlier.enabled = true;
    if (auto* f = m.get("slow_start"))
      if (auto d = read_duration(ctx_, *f, true)) out.slow_start = *d;
    if (auto* f = m.get("panic")) {
      static constexpr choice<panic_mode> choices[] = {{"fail", panic_mode::fail},
                                                       {"spread", panic_mode::spread}};
      if (auto v = read_enum(ctx_, *f, choices)) out.panic = *v;
    }
    const field* tls = m.get("tls");
    if (tls && protocol_ok && out.protocol != upstream_protocol::h2)
      ctx_.error(tls->key.Mark(), tls->path,
                 "'tls' is only used by protocol: h2 (HTTP/2 over TLS to the backends)");
    else if (out.protocol == upstream_protocol::h2)
      out.tls = tls ? read_upstream_tls(*tls) : upstream_tls{};
    return out;
  }

  // The `tls:` block of a protocol h2 cluster. Files are resolved against the configuration
  // file's directory and must be readable now.
  upstream_tls read_upstream_tls(const field& f) {
    static constexpr std::string_view keys[] = {"ca", "server_name", "verify", "cert", "key"};
    upstream_tls out;
    map_view m(ctx_, f.value, f.path, keys);
    if (!m.valid()) return out;
    if (auto* x = m.get("ca")) {
      if (auto s = read_string(ctx_, *x)) {
        out.ca = resolve_path(*s);
        // A regular file that can be read now (a FIFO would block the check; refused).
        std::string pem, why;
        if (!read_pem_file(out.ca, pem, &why)) ctx_.error(x->mark(), x->path, why);
      }
    }
    if (auto* x = m.get("server_name")) {
      if (auto s = read_string(ctx_, *x)) {
        if (auto why = check_host_pattern(*s); !why.empty() || s->starts_with("*."))
          ctx_.error(x->mark(), x->path, "expected a host name like backend.example.com, got " + quote(*s));
        else
          out.server_name = *s;
      }
    }
    if (auto* x = m.get("verify"))
      if (auto b = read_bool(ctx_, *x)) out.verify = *b;
    const field* cert = m.get("cert");
    const field* key = m.get("key");
    std::optional<std::string> cert_path, key_path;
    if (cert) cert_path = read_string(ctx_, *cert);
    if (key) key_path = read_string(ctx_, *key);
    if (cert && !key)
      ctx_.error(m.mark(), join_path(f.path, "key"),
                 "missing required key 'key' (the private key of 'cert')");
    else if (key && !cert)
      ctx_.error(m.mark(), join_path(f.path, "cert"),
                 "missing required key 'cert' (the certificate of 'key')");
    if (cert_path && key_path) {
      out.cert = resolve_path(*cert_path);
      out.key = resolve_path(*key_path);
      auto r = check_certificate(out.cert, out.key);
      if (r.what == certificate_check::problem::cert)
        ctx_.error(cert->mark(), cert->path, r.message);
      else if (r.what == certificate_check::problem::key)
        ctx_.error(key->mark(), key->path, r.message);
    }
    return out;
  }

  void read_hash(const field& f, hash_on& out) {
    static constexpr std::string_view keys[] = {"on", "name"};
    map_view m(ctx_, f.value, f.path, keys);
    if (!m.valid()) return;
    bool on_ok = false;
    if (auto* o = m.require("on")) {
      static constexpr choice<hash_on::kind> choices[] = {{"client_ip", hash_on::kind::client_ip},
                                                          {"header", hash_on::kind::header},
                                                          {"cookie", hash_on::kind::cookie}};
      if (auto v = read_enum(ctx_, *o, choices)) {
        out.what = *v;
        on_ok = true;
      }
    }
    const field* n = m.get("name");
    if (n) {
      if (auto s = read_string(ctx_, *n)) out.name = *s;
    }
    if (!on_ok) return;
    if (out.what == hash_on::kind::client_ip) {
      if (n) ctx_.error(n->key.Mark(), n->path, "'name' is only used with on: header or on: cookie");
    } else if (!n) {
      ctx_.error(m.mark(), join_path(f.path, "name"),
                 std::string("missing required key 'name' (the ") +
                     (out.what == hash_on::kind::header ? "header" : "cookie") + " to hash on)");
    }
  }

  std::optional<endpoint> read_endpoint(const YAML::Node& node, const std::string& path,
                                        std::map<std::string, int>& seen) {
    endpoint out;
    const field* addr = nullptr;
    field scalar_field;
    std::optional<map_view> m;
    if (node.IsScalar()) {
      scalar_field = field{node, node, path};
      addr = &scalar_field;
    } else if (node.IsMap()) {
      static constexpr std::string_view keys[] = {"address", "weight"};
      m.emplace(ctx_, node, path, keys);
      addr = m->require("address");
      if (auto* w = m->get("weight"))
        if (auto v = read_uint(ctx_, *w, 1, 1000)) out.weight = *v;
    } else {
      ctx_.error(node.Mark(), path,
                 "expected host:port or {address, weight}, got " + describe(node));
      return std::nullopt;
    }
    if (!addr) return std::nullopt;
    core::host_port hp;
    auto s = read_address(ctx_, *addr, false, &hp);
    if (!s) return std::nullopt;
    const std::string key = lower(hp.host) + ":" + std::to_string(hp.port);
    auto [it, inserted] = seen.emplace(key, addr->value.Mark().line + 1);
    if (!inserted) {
      ctx_.error(addr->mark(), addr->path,
                 "duplicate endpoint " + quote(*s) + " (first at line " +
                     std::to_string(it->second) + "); use 'weight' to give it more traffic");
      return std::nullopt;
    }
    out.address = *s;
    return out;
  }

  void read_discovery(const field& f, cluster& out) {
    static constexpr std::string_view keys[] = {"etcd"};
    map_view m(ctx_, f.value, f.path, keys);
    if (!m.valid()) return;
    auto* e = m.require("etcd");
    if (!e) return;
    static constexpr std::string_view ekeys[] = {"endpoints", "prefix",   "tls",
                                                 "username",  "password", "persist"};
    map_view em(ctx_, e->value, e->path, ekeys);
    if (!em.valid()) return;
    etcd_discovery d;
    if (auto* eps = em.require("endpoints")) {
      for_each_item(ctx_, *eps, [&](const YAML::Node& item, const std::string& p) {
        field ef{item, item, p};
        if (auto s = read_address(ctx_, ef, false)) d.endpoints.push_back(*s);
      });
      if (eps->value.IsNull() || (eps->value.IsSequence() && eps->value.size() == 0))
        ctx_.error(eps->mark(), eps->path, "needs at least one etcd endpoint");
    }
    if (auto* p = em.get("prefix"))
      if (auto s = read_string(ctx_, *p)) d.prefix = *s;
    if (auto* t = em.get("tls")) {
      static constexpr std::string_view tkeys[] = {"ca", "cert", "key"};
      map_view tm(ctx_, t->value, t->path, tkeys);
      if (tm.valid()) {
        etcd_tls tls;
        if (auto* x = tm.get("ca"))
          if (auto s = read_string(ctx_, *x)) tls.ca = *s;
        const field* cert = tm.get("cert");
        const field* key = tm.get("key");
        if (cert)
          if (auto s = read_string(ctx_, *cert)) tls.cert = *s;
        if (key)
          if (auto s = read_string(ctx_, *key)) tls.key = *s;
        if (cert && !key)
          ctx_.error(tm.mark(), join_path(t->path, "key"),
                     "missing required key 'key' (the private key of 'cert')");
        else if (key && !cert)
          ctx_.error(tm.mark(), join_path(t->path, "cert"),
                     "missing required key 'cert' (the certificate of 'key')");
        d.tls = std::move(tls);
      }
    }
    const field* user = em.get("username");
    const field* pass = em.get("password");
    if (user)
      if (auto s = read_string(ctx_, *user)) d.username = *s;
    if (pass)
      if (auto s = read_string(ctx_, *pass, /*allow_empty=*/true)) d.password = *s;
    if (pass && !user)
      ctx_.error(pass->key.Mark(), pass->path, "'password' needs 'username'");
    if (auto* p = em.get("persist"))
      if (auto s = read_string(ctx_, *p)) d.persist = *s;
    out.discovery = std::move(d);
  }

  void read_health(const field& f, cluster& out, bool protocol_ok) {
    static constexpr std::string_view keys[] = {
        "type",   "interval", "unhealthy_interval", "timeout",       "healthy",    "unhealthy",
        "jitter", "method",   "path",               "host",          "expect_status", "expect_body",
        "service"};
    map_view m(ctx_, f.value, f.path, keys);
    if (!m.valid()) return;
    health_check& h = out.health;
    bool type_ok = true;
    if (auto* t = m.get("type")) {
      static constexpr choice<health_check::kind> choices[] = {
          {"none", health_check::kind::none},
          {"tcp", health_check::kind::tcp},
          {"http", health_check::kind::http},
          {"grpc", health_check::kind::grpc}};
      if (auto v = read_enum(ctx_, *t, choices))
        h.type = *v;
      else
        type_ok = false;
      if (type_ok && protocol_ok && h.type == health_check::kind::grpc &&
          out.protocol == upstream_protocol::http1)
        ctx_.error(t->mark(), t->path,
                   "grpc health checks need an HTTP/2 cluster (protocol: h2c or h2)");
    }
    set_duration(m, "interval", h.interval);
    set_duration(m, "timeout", h.timeout);
    if (auto* x = m.get("healthy"))
      if (auto v = read_uint(ctx_, *x, 1, 1000)) h.healthy = *v;
    if (auto* x = m.get("unhealthy"))
      if (auto v = read_uint(ctx_, *x, 1, 1000)) h.unhealthy = *v;
    if (auto* p = m.get("path")) {
      if (type_ok && h.type != health_check::kind::http)
        ctx_.error(p->key.Mark(), p->path, "'path' is only used by type http");
      if (auto s = read_string(ctx_, *p)) {
        if (s->front() != '/')
          ctx_.error(p->mark(), p->path, "must start with '/', got " + quote(*s));
        else if (std::any_of(s->begin(), s->end(),
                             [](unsigned char c) { return c <= ' ' || c == 0x7f; }))
          ctx_.error(p->mark(), p->path, "must not contain spaces or control characters");
        else
          h.path = *s;
      }
    }
    if (auto* x = m.get("unhealthy_interval"))
      if (auto d = read_duration(ctx_, *x, false)) h.unhealthy_interval = *d;
    if (auto* x = m.get("jitter")) read_jitter(*x, h);
    // The remaining keys describe the HTTP request and the answer it expects.
    for (std::string_view k : {"method", "host", "expect_status", "expect_body"})
      if (auto* x = m.get(k); x && type_ok && h.type != health_check::kind::http)
        ctx_.error(x->key.Mark(), x->path, "'" + std::string(k) + "' is only used by type http");
    if (auto* x = m.get("method")) {
      if (auto s = read_string(ctx_, *x)) {
        if (s->size() > 32 || !std::all_of(s->begin(), s->end(), [](unsigned char c) {
              return std::isupper(c) || c == '-' || c == '_';
            }))
          ctx_.error(x->mark(), x->path, "expected an HTTP method like GET or HEAD, got " + quote(*s));
        else
          h.method = *s;
      }
    }
    if (auto* x = m.get("host")) {
      if (auto s = read_string(ctx_, *x)) {
        if (std::any_of(s->begin(), s->end(), [](unsigned char c) {
              return c <= ' ' || c == 0x7f || c == '/' || c == '@';
            }))
          ctx_.error(x->mark(), x->path, "expected a host name (with an optional :port), got " + quote(*s));
        else
          h.host = *s;
      }
    }
    if (auto* x = m.get("service")) {
      if (type_ok && h.type != health_check::kind::grpc)
        ctx_.error(x->key.Mark(), x->path, "'service' is only used by type grpc");
      if (auto s = read_string(ctx_, *x, true)) h.service = *s;
    }
    if (auto* x = m.get("expect_status")) read_expect_status(*x, h);
    if (auto* x = m.get("expect_body")) {
      if (auto s = read_string(ctx_, *x)) {
        if (h.method == "HEAD")
          ctx_.error(x->key.Mark(), x->path, "a HEAD request has no body to match");
        else
          h.expect_body = *s;
      }
    }
  }

  // A fraction of the interval (0.1 or 10%) or a duration (200ms).
  void read_jitter(const field& f, health_check& h) {
    constexpr std::string_view hint = "a fraction like 0.1, a percentage like 10% or a duration like 200ms";
    auto s = read_scalar(ctx_, f, hint);
    if (!s) return;
    if (auto d = parse_duration(*s)) {
      h.jitter = *d;
      h.jitter_fraction = 0;
      return;
    }
    std::string_view t = *s;
    double scale = 1.0;
    if (!t.empty() && t.back() == '%') {
      t.remove_suffix(1);
      scale = 0.01;
    }
    double v = 0;
    auto [ptr, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
    if (t.empty() || ec != std::errc{} || ptr != t.data() + t.size() || !(v >= 0)) {
      ctx_.error(f.mark(), f.path, "expected " + std::string(hint) + ", got " + quote(*s));
      return;
    }
    v *= scale;
    if (v > 1.0) {
      ctx_.error(f.mark(), f.path, "a jitter fraction must be between 0 and 1 (0% and 100%), got " + *s);
      return;
    }
    h.jitter_fraction = v;
    h.jitter = duration{0};
  }

  // 200, "200-399", or a list of those.
  void read_expect_status(const field& f, health_check& h) {
    std::vector<status_range> out;
    bool ok = true;
    auto one = [&](const field& item) {
      auto s = read_scalar(ctx_, item, "a status like 200 or a range like 200-399");
      if (!s) {
        ok = false;
        return;
      }
      std::string_view t = *s;
      std::uint64_t lo = 0, hi = 0;
      bool shape = take_number(t, lo);
      if (shape && t.empty()) {
        hi = lo;
      } else if (shape && t.size() > 1 && t.front() == '-') {
        t.remove_prefix(1);
        shape = take_number(t, hi) && t.empty();
      } else {
        shape = false;
      }
      if (!shape) {
        ctx_.error(item.mark(), item.path,
                   "expected a status like 200 or a range like 200-399, got " + quote(*s));
        ok = false;
      } else if (lo < 100 || hi > 599 || lo > hi) {
        ctx_.error(item.mark(), item.path,
                   "a status range must lie within 100-599 with low <= high, got " + *s);
        ok = false;
      } else {
        out.push_back({static_cast<std::uint32_t>(lo), static_cast<std::uint32_t>(hi)});
      }
    };
    if (f.value.IsSequence()) {
      for_each_item(ctx_, f, [&](const YAML::Node& item, const std::string& p) {
        one(field{item, item, p});
      });
      if (f.value.size() == 0) {
        ctx_.error(f.mark(), f.path, "needs at least one status or range");
        ok = false;
      }
    } else {
      one(f);
    }
    if (ok) h.expect_status = std::move(out);
  }

  void read_outlier(const field& f, outlier_detection& o) {
    static constexpr std::string_view keys[] = {"enabled",      "consecutive",  "count",
                                                "base_ejection", "max_ejection", "max_ejection_percent"};
    map_view m(ctx_, f.value, f.path, keys);
    if (!m.valid()) return;
    o.enabled = true;
    if (auto* x = m.get("enabled"))
      if (auto b = read_bool(ctx_, *x)) o.enabled = *b;
    if (auto* x = m.get("consecutive"))
      if (auto v = read_uint(ctx_, *x, 1, 1000)) o.consecutive = static_cast<std::uint32_t>(*v);
    if (auto* x = m.get("count")) {
      // Bits of core::outcome: connect_failure = 1, reset = 2, timeout = 3, http_5xx = 4.
      static constexpr choice<std::uint8_t> choices[] = {{"connect_failure", 1 << 1},
                                                         {"reset", 1 << 2},
                                                         {"timeout", 1 << 3},
                                                         {"http_5xx", 1 << 4}};
      std::uint8_t mask = 0;
      bool ok = true;
      for_each_item(ctx_, *x, [&](const YAML::Node& item, const std::string& p) {
        field itf{item, item, p};
        if (auto v = read_enum(ctx_, itf, choices))
          mask |= *v;
        else
          ok = false;
      });
      if (ok && mask == 0 && (x->value.IsNull() || x->value.IsSequence()))
        ctx_.error(x->mark(), x->path, "needs at least one of connect_failure, reset, timeout, http_5xx");
      else if (ok && mask != 0)
        o.count_mask = mask;
    }
    set_duration(m, "base_ejection", o.base_ejection);
    set_duration(m, "max_ejection", o.max_ejection);
    if (auto* x = m.get("max_ejection_percent"))
      if (auto v = read_uint(ctx_, *x, 1, 100)) o.max_ejection_percent = static_cast<std::uint32_t>(*v);
    if (o.max_ejection < o.base_ejection) {
      const field* x = m.get("max_ejection") ? m.get("max_ejection") : m.get("base_ejection");
      ctx_.error(x->mark(), x->path, "max_ejection must be at least base_ejection");
    }
  }

  void set_duration(const map_view& m, std::string_view key, duration& out) {
    if (auto* f = m.get(key))
      if (auto d = read_duration(ctx_, *f, false)) out = *d;
  }

  // Records a name; reports it when already taken. True when new.
  bool unique(std::map<std::string, int>& seen, const std::string& name, const field& f,
              std::string_view what) {
    auto [it, inserted] = seen.emplace(name, f.value.Mark().line + 1);
    if (!inserted)
      ctx_.error(f.mark(), f.path,
                 "duplicate " + std::string(what) + " name " + quote(name) + " (first at line " +
                     std::to_string(it->second) + ")");
    return inserted;
  }

  // A reference to a cluster whose definition has its own error (a bad name) is not reported
  // again: one mistake, one diagnostic.
  void check_references() {
    std::vector<std::string_view> names(defined_clusters_.begin(), defined_clusters_.end());
    for (const auto& r : refs_) {
      if (named_clusters_.count(r.name)) continue;
      std::string msg = "unknown cluster " + quote(r.name);
      if (auto hint = did_you_mean(r.name, names); !hint.empty())
        msg += hint;
      else if (names.empty())
        msg += " (no clusters are defined)";
      ctx_.error(r.mark, r.path, msg);
    }
  }

  context& ctx_;
  std::vector<cluster_ref> refs_;
  std::map<std::string, int> listener_names_;
  std::map<std::string, int> route_names_;  // of the listener being read
  std::map<std::string, int> cluster_names_;
  std::vector<std::string> defined_clusters_;
  struct claim {
    std::string key;  // normalized host:port
    field f;
    std::string who;
  };
  std::vector<claim> claims_;
  std::set<std::string> named_clusters_;  // every cluster name written, valid or not
};

// Counts parser events. yaml-cpp 0.7 has inputs it never consumes (a lone ',' at document level,
// jbeder/yaml-cpp#1040): its parser then emits empty documents forever and LoadAll grows without
// bound. A well-formed stream has at most a few events per input byte, so more than that means
// the parser is stuck; `stuck` carries where.
class event_guard : public YAML::EventHandler {
 public:
  struct stuck {
    YAML::Mark mark;
  };

  explicit event_guard(std::size_t input_bytes) : budget_(4 * input_bytes + 64) {}

  std::size_t documents() const noexcept { return documents_; }
  const YAML::Mark& second_document() const noexcept { return second_; }

  void OnDocumentStart(const YAML::Mark& mark) override {
    if (++documents_ == 2) second_ = mark;
    event(mark);
  }
  void OnDocumentEnd() override { event(last_); }
  void OnNull(const YAML::Mark& mark, YAML::anchor_t) override { event(mark); }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t) override { event(mark); }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                const std::string&) override {
    event(mark);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {
    event(mark);
  }
  void OnSequenceEnd() override { event(last_); }
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {
    event(mark);
  }
  void OnMapEnd() override { event(last_); }

 private:
  void event(const YAML::Mark& mark) {
    last_ = mark;
    if (++events_ > budget_) throw stuck{mark};
  }

  std::size_t budget_;
  std::size_t events_ = 0;
  std::size_t documents_ = 0;
  YAML::Mark second_ = YAML::Mark::null_mark();
  YAML::Mark last_ = YAML::Mark::null_mark();
};

load_result finish(context& ctx, config cfg) {
  load_result r;
  auto& errors = ctx.errors();
  std::stable_sort(errors.begin(), errors.end(), [](const diagnostic& a, const diagnostic& b) {
    return std::tie(a.line, a.column) < std::tie(b.line, b.column);
  });
  r.errors = std::move(errors);
  if (r.errors.empty()) r.value = std::move(cfg);
  return r;
}

load_result single_error(const std::string& file, std::string message) {
  load_result r;
  r.errors.push_back(diagnostic{file, 0, 0, {}, std::move(message)});
  return r;
}

}  // namespace

load_result load_string(std::string_view yaml, const std::string& name) {
  context ctx(name);
  try {
    const std::string text(yaml);
    // Syntax pass first, events only: it counts the documents and stops yaml-cpp 0.7 from
    // looping forever on input it cannot consume.
    event_guard guard(text.size());
    {
      std::istringstream in(text);
      YAML::Parser parser(in);
      while (parser.HandleNextDocument(guard)) {
      }
    }
    if (guard.documents() == 0)
      return single_error(name, "the configuration is empty (at least one listener is required)");
    if (guard.documents() > 1) {
      ctx.error(guard.second_document(), {}, "expected one YAML document, found " +
                                                 std::to_string(guard.documents()));
      return finish(ctx, {});
    }
    const YAML::Node root = YAML::Load(text);
    config cfg;
    cfg.file = name;
    reader(ctx).read(root, cfg);
    return finish(ctx, std::move(cfg));
  } catch (const event_guard::stuck& e) {
    ctx.errors().clear();
    std::string what = "invalid YAML: unexpected token";
    if (e.mark.pos >= 0 && static_cast<std::size_t>(e.mark.pos) < yaml.size())
      what = "invalid YAML: unexpected " + quote(yaml.substr(e.mark.pos, 1));
    ctx.error(e.mark, {}, what);
    return finish(ctx, {});
  } catch (const YAML::DeepRecursion& e) {
    ctx.errors().clear();
    ctx.error(e.mark, {}, "invalid YAML: nested too deeply");
    return finish(ctx, {});
  } catch (const YAML::Exception& e) {
    ctx.errors().clear();
    ctx.error(e.mark, {}, e.msg.empty() ? std::string("invalid YAML") : "invalid YAML: " + e.msg);
    return finish(ctx, {});
  } catch (const budget_exceeded&) {
    return single_error(name, "the configuration is too large (aliases expand to more than " +
                                  std::to_string(node_budget) + " nodes)");
  } catch (const std::bad_alloc&) {
    return single_error(name, "out of memory while reading the configuration");
  } catch (const std::exception& e) {
    return single_error(name, std::string("cannot read the configuration: ") + e.what());
  }
}

load_result load_file(const std::string& path) {
  try {
    std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
    if (!f) return single_error(path, std::string("cannot open: ") + std::strerror(errno));
    struct stat st {};
    if (::fstat(::fileno(f.get()), &st) != 0)
      return single_error(path, std::string("cannot read: ") + std::strerror(errno));
    if (S_ISDIR(st.st_mode)) return single_error(path, "cannot read: is a directory");
    std::string text;
    char buf[65536];
    std::size_t n = 0;
    while ((n = std::fread(buf, 1, sizeof buf, f.get())) > 0) {
      text.append(buf, n);
      if (text.size() > max_file_bytes)
        return single_error(path, "file is too large (more than " +
                                      std::to_string(max_file_bytes >> 20) + " MiB)");
    }
    if (std::ferror(f.get()))
      return single_error(path, std::string("cannot read: ") + std::strerror(errno));
    return load_string(text, path);
  } catch (const std::exception& e) {
    return single_error(path, std::string("cannot read: ") + e.what());
  }
}

}  // namespace sluice::config
