// Runs a fuzz target's entry point once on every file of its corpus, so the plain (GCC, and
// ASan+UBSan) builds check the committed inputs under ctest without libFuzzer.
//
//   fuzz_replay_<target> DIR|FILE...
//
// Exits non-zero when no input was found (a missing corpus must not pass as an empty one); a
// violated invariant aborts.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <system_error>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {

bool run_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "cannot read %s\n", p.c_str());
    return false;
  }
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // A copy of exactly the input's size: ASan sees any read past its end.
  std::vector<std::uint8_t> data(bytes.begin(), bytes.end());
  LLVMFuzzerTestOneInput(data.empty() ? nullptr : data.data(), data.size());
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  std::size_t ran = 0;
  bool ok = true;
  for (int i = 1; i < argc; ++i) {
    std::filesystem::path arg(argv[i]);
    std::error_code ec;
    if (std::filesystem::is_directory(arg, ec)) {
      std::vector<std::filesystem::path> files;
      for (const auto& e : std::filesystem::directory_iterator(arg, ec))
        if (e.is_regular_file()) files.push_back(e.path());
      std::sort(files.begin(), files.end());  // the same order every run
      for (const auto& f : files) {
        ok = run_file(f) && ok;
        ++ran;
      }
    } else {
      ok = run_file(arg) && ok;
      ++ran;
    }
  }
  std::printf("%zu inputs replayed\n", ran);
  return ok && ran > 0 ? 0 : 1;
}
