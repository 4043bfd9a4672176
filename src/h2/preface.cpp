#include "sluice/h2/preface.hpp"

namespace sluice::h2 {

bool looks_like_preface(std::string_view first_bytes) noexcept {
  return first_bytes.substr(0, client_preface.size()) == client_preface;
}

bool could_be_preface(std::string_view first_bytes) noexcept {
  return first_bytes.size() < client_preface.size() &&
         client_preface.substr(0, first_bytes.size()) == first_bytes;
}

}  // namespace sluice::h2
