#include "sluice/h2/session.hpp"

#include <algorithm>
#include <cstring>

#include <nghttp2/nghttp2.h>

#include "sluice/core/clock.hpp"

namespace sluice::h2 {

std::string_view find_header(const header_list& h, std::string_view name) noexcept {
  for (const auto& f : h)
    if (f.name == name) return f.value;
  return {};
}

namespace {

std::vector<nghttp2_nv> to_nv(const header_list& h) {
  std::vector<nghttp2_nv> nv;
  nv.reserve(h.size());
  for (const auto& f : h)
    nv.push_back(nghttp2_nv{reinterpret_cast<std::uint8_t*>(const_cast<char*>(f.name.data())),
                            reinterpret_cast<std::uint8_t*>(const_cast<char*>(f.value.data())),
                            f.name.size(), f.value.size(), NGHTTP2_NV_FLAG_NONE});
  return nv;
}

}  // namespace

// C trampolines: user_data is the session.
struct session::callbacks {
  static session& self(void* p) { return *static_cast<session*>(p); }

  static int on_begin_headers(nghttp2_session*, const nghttp2_frame* f, void* p) {
    auto& s = self(p);
    s.block_.clear();
    s.block_bytes_ = 0;
    if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST) ++s.open_;
    return 0;
  }

  static int on_header(nghttp2_session*, const nghttp2_frame* f, const std::uint8_t* name,
                       std::size_t namelen, const std::uint8_t* value, std::size_t valuelen,
                       std::uint8_t, void* p) {
    auto& s = self(p);
    // RFC 9113 section 6.5.2 counts 32 bytes of overhead per field.
    s.block_bytes_ += namelen + valuelen + 32;
    if (s.block_bytes_ > s.max_header_list_) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    s.block_.push_back(header{std::string(reinterpret_cast<const char*>(name), namelen),
                              std::string(reinterpret_cast<const char*>(value), valuelen)});
    return 0;
  }

  static int on_frame_recv(nghttp2_session*, const nghttp2_frame* f, void* p) {
    auto& s = self(p);
    std::int32_t id = f->hd.stream_id;
    switch (f->hd.type) {
      case NGHTTP2_HEADERS: {
        bool end = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
        bool trailers = f->headers.cat == NGHTTP2_HCAT_HEADERS;
        header_list h = std::move(s.block_);
        s.block_.clear();
        s.handler_.on_headers(id, h, trailers, end);
        if (end) s.handler_.on_end_stream(id);
        break;
      }
      case NGHTTP2_DATA:
        if (f->hd.flags & NGHTTP2_FLAG_END_STREAM) s.handler_.on_end_stream(id);
        break;
      case NGHTTP2_GOAWAY:
        s.goaway_received_ = true;
        s.handler_.on_goaway(f->goaway.last_stream_id, f->goaway.error_code);
        break;
      case NGHTTP2_RST_STREAM:
        if (s.role_ == role::server && !s.take_reset_token()) {
          // Rapid reset (CVE-2023-44487): streams opened and cancelled faster than the budget.
          s.terminate(NGHTTP2_ENHANCE_YOUR_CALM);
          return NGHTTP2_ERR_CALLBACK_FAILURE;
        }
        break;
      case NGHTTP2_SETTINGS:
        if (!(f->hd.flags & NGHTTP2_FLAG_ACK)) s.handler_.on_remote_settings();
        break;
      default: break;
    }
    return 0;
  }

  static int on_data_chunk(nghttp2_session*, std::uint8_t, std::int32_t id,
                           const std::uint8_t* data, std::size_t len, void* p) {
    self(p).handler_.on_data(id, {data, len});
    return 0;
  }

  static int on_stream_close(nghttp2_session*, std::int32_t id, std::uint32_t code, void* p) {
    auto& s = self(p);
    s.out_.erase(id);
    if (s.open_ > 0) --s.open_;
    s.handler_.on_stream_close(id, code);
    return 0;
  }

  static int on_frame_send(nghttp2_session* ng, const nghttp2_frame* f, void* p) {
    auto& s = self(p);
    if (f->hd.type == NGHTTP2_GOAWAY) s.goaway_sent_ = true;
    // A complete response sent while the request is still open: ask the client to stop sending
    // with RST_STREAM(NO_ERROR) (RFC 9113 section 8.1). Without it a client that has not sent
    // its whole body goes on waiting to, and the stream stays open on both sides.
    if (s.role_ == role::server && (f->hd.flags & NGHTTP2_FLAG_END_STREAM) &&
        (f->hd.type == NGHTTP2_HEADERS || f->hd.type == NGHTTP2_DATA) &&
        nghttp2_session_get_stream_remote_close(ng, f->hd.stream_id) == 0)
      nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_NO_ERROR);
    return 0;
  }

  static ssize_t read_data(nghttp2_session* ng, std::int32_t id, std::uint8_t* buf,
                           std::size_t length, std::uint32_t* flags, nghttp2_data_source*,
                           void* p) {
    auto& s = self(p);
    auto it = s.out_.find(id);
    if (it == s.out_.end()) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    auto& o = it->second;
    std::size_t avail = o.buf.size() - o.off;
    std::size_t n = std::min(avail, length);
    if (n > 0) {
      std::memcpy(buf, o.buf.data() + o.off, n);
      o.off += n;
      if (o.off == o.buf.size()) {
        o.buf.clear();
        o.off = 0;
      }
    }
    if (o.off == o.buf.size() && o.buf.empty()) {
      if (o.eof) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (o.has_trailers) {
          *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
          auto nv = to_nv(o.trailers);
          if (nghttp2_submit_trailer(ng, id, nv.data(), nv.size()) != 0)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        }
      } else if (n == 0) {
        o.deferred = true;
        return NGHTTP2_ERR_DEFERRED;
      }
    }
    if (n > 0) s.handler_.on_data_sent(id, n);
    return static_cast<ssize_t>(n);
  }
};

session::session(role r, session_handler& handler, const settings& st)
    : role_(r), handler_(handler), max_header_list_(st.max_header_list_size),
      reset_burst_(static_cast<double>(st.reset_burst)),
      reset_rate_(static_cast<double>(st.reset_rate)), reset_tokens_(reset_burst_),
      reset_refill_(std::chrono::steady_clock::now()) {
  nghttp2_session_callbacks* cb = nullptr;
  nghttp2_session_callbacks_new(&cb);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cb, callbacks::on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(cb, callbacks::on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cb, callbacks::on_frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, callbacks::on_data_chunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cb, callbacks::on_stream_close);
  nghttp2_session_callbacks_set_on_frame_send_callback(cb, callbacks::on_frame_send);
  nghttp2_option* opt = nullptr;
  nghttp2_option_new(&opt);
  nghttp2_option_set_no_auto_window_update(opt, 1);
  nghttp2_option_set_max_continuations(opt, st.max_continuations);
  if (r == role::server) {
    // Our own budget (take_reset_token) answers ENHANCE_YOUR_CALM; nghttp2's, set wider, is
    // only a backstop.
    nghttp2_option_set_stream_reset_rate_limit(opt, st.reset_burst * 2 + 1, st.reset_rate * 2 + 1);
    nghttp2_session_server_new2(&s_, cb, this, opt);
  } else {
    nghttp2_session_client_new2(&s_, cb, this, opt);
  }
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cb);

  std::vector<nghttp2_settings_entry> iv{
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, st.initial_window_size},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, st.max_header_list_size}};
  if (r == role::server)
    iv.push_back({NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, st.max_concurrent_streams});
  else
    iv.push_back({NGHTTP2_SETTINGS_ENABLE_PUSH, 0});
  nghttp2_submit_settings(s_, NGHTTP2_FLAG_NONE, iv.data(), iv.size());
  if (st.connection_window_size > 65535)
    nghttp2_session_set_local_window_size(s_, NGHTTP2_FLAG_NONE, 0,
                                          static_cast<std::int32_t>(st.connection_window_size));
}

session::~session() { nghttp2_session_del(s_); }

bool session::receive(std::span<const std::uint8_t> bytes) {
  if (failed_) return false;
  auto n = nghttp2_session_mem_recv(s_, bytes.data(), bytes.size());
  if (n < 0) {
    // Most fatal errors have queued their GOAWAY already; make sure one goes out.
    terminate(n == NGHTTP2_ERR_FLOODED ? NGHTTP2_ENHANCE_YOUR_CALM : NGHTTP2_PROTOCOL_ERROR);
    failed_ = true;
    return false;
  }
  return true;
}

std::size_t session::send(std::string& out, std::size_t limit) {
  std::size_t before = out.size();
  while (out.size() < limit) {
    const std::uint8_t* p = nullptr;
    auto n = nghttp2_session_mem_send(s_, &p);
    if (n < 0) {
      failed_ = true;
      break;
    }
    if (n == 0) break;
    out.append(reinterpret_cast<const char*>(p), static_cast<std::size_t>(n));
  }
  return out.size() - before;
}

void session::terminate(std::uint32_t code) {
  if (terminated_) return;
  terminated_ = true;
  nghttp2_session_terminate_session(s_, code);
}

bool session::take_reset_token() {
  auto now = std::chrono::steady_clock::now();
  double secs = std::chrono::duration<double>(now - reset_refill_).count();
  reset_refill_ = now;
  reset_tokens_ = std::min(reset_burst_, reset_tokens_ + secs * reset_rate_);
  if (reset_tokens_ < 1.0) return false;
  reset_tokens_ -= 1.0;
  return true;
}

bool session::want_read() const noexcept { return !failed_ && nghttp2_session_want_read(s_); }
bool session::want_write() const noexcept { return nghttp2_session_want_write(s_); }

std::int32_t session::submit_request(const header_list& headers, bool end_stream) {
  auto nv = to_nv(headers);
  nghttp2_data_provider prd{};
  prd.read_callback = callbacks::read_data;
  auto id = nghttp2_submit_request(s_, nullptr, nv.data(), nv.size(), end_stream ? nullptr : &prd,
                                   nullptr);
  if (id < 0) return -1;
  ++open_;
  if (!end_stream) out_[id];
  return id;
}

bool session::submit_response(std::int32_t id, const header_list& headers, bool end_stream) {
  auto nv = to_nv(headers);
  // RFC 9110 section 6.6.1: every answer carries a Date, whoever wrote it (an HTTP/2 or
  // HTTP/1.1 upstream, or the proxy itself). nghttp2 copies the pairs, so a view will do.
  auto is_date = [](const header& f) { return f.name == "date"; };
  if (std::none_of(headers.begin(), headers.end(), is_date)) {
    std::string_view date = core::http_date();
    nv.push_back(nghttp2_nv{reinterpret_cast<std::uint8_t*>(const_cast<char*>("date")),
                            reinterpret_cast<std::uint8_t*>(const_cast<char*>(date.data())), 4,
                            date.size(), NGHTTP2_NV_FLAG_NONE});
  }
  nghttp2_data_provider prd{};
  prd.read_callback = callbacks::read_data;
  if (!end_stream) out_[id];
  if (nghttp2_submit_response(s_, id, nv.data(), nv.size(), end_stream ? nullptr : &prd) != 0) {
    out_.erase(id);
    return false;
  }
  return true;
}

bool session::send_data(std::int32_t id, std::span<const std::uint8_t> data) {
  auto it = out_.find(id);
  if (it == out_.end() || it->second.eof) return false;
  auto& o = it->second;
  o.buf.append(reinterpret_cast<const char*>(data.data()), data.size());
  if (o.deferred && !data.empty()) {
    o.deferred = false;
    nghttp2_session_resume_data(s_, id);
  }
  return true;
}

bool session::end_stream(std::int32_t id, const header_list* trailers) {
  auto it = out_.find(id);
  if (it == out_.end() || it->second.eof) return false;
  auto& o = it->second;
  o.eof = true;
  if (trailers && !trailers->empty()) {
    o.has_trailers = true;
    o.trailers = *trailers;
  }
  if (o.deferred) {
    o.deferred = false;
    nghttp2_session_resume_data(s_, id);
  }
  return true;
}

std::size_t session::outbound_size(std::int32_t id) const noexcept {
  auto it = out_.find(id);
  return it == out_.end() ? 0 : it->second.buf.size() - it->second.off;
}

void session::consume(std::int32_t id, std::size_t n) {
  if (n == 0) return;
  if (id == 0 || nghttp2_session_consume(s_, id, n) != 0)
    nghttp2_session_consume_connection(s_, n);
}

void session::reset(std::int32_t id, std::uint32_t code) {
  nghttp2_submit_rst_stream(s_, NGHTTP2_FLAG_NONE, id, code);
}

void session::goaway(std::uint32_t code) {
  if (goaway_sent_) return;
  nghttp2_submit_goaway(s_, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(s_), code,
                        nullptr, 0);
}

std::uint32_t session::peer_max_concurrent_streams() const noexcept {
  return nghttp2_session_get_remote_settings(s_, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
}

bool session::can_open_stream() const noexcept {
  if (goaway_received_ || goaway_sent_ || failed_) return false;
  if (nghttp2_session_check_request_allowed(s_) == 0) return false;
  std::uint32_t max = peer_max_concurrent_streams();
  return open_ < std::min<std::uint32_t>(max, 100000);
}

}  // namespace sluice::h2
