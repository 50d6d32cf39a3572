// SPDX-License-Identifier: MIT
/// @file
/// @brief What the fuzz harnesses of test/fuzz/ share: a scratch file or directory per process for
/// readers that take paths, and HSEQ_FUZZ_ASSERT, which aborts (a crash libFuzzer records, with
/// the input) when a property every input must keep is broken. An hseq::Error is the expected
/// outcome of a bad input; anything else escaping a harness (another exception type, a crash, a
/// sanitizer report) is a finding.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>

#define HSEQ_FUZZ_ASSERT(cond)                                                              \
  do {                                                                                      \
    if (!(cond)) {                                                                          \
      std::fprintf(stderr, "hseq fuzz: property broken: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
      std::abort();                                                                         \
    }                                                                                       \
  } while (0)

namespace hseq::fuzz {

/// A directory of this process's own under /dev/shm (memory: no disk writes per input) or the
/// temp directory, removed at exit.
inline std::filesystem::path const& scratch() {
  struct Dir {
    std::filesystem::path path;
    Dir() {
      std::error_code ec;
      std::filesystem::path base = std::filesystem::is_directory("/dev/shm", ec) ? std::filesystem::path("/dev/shm")
                                                                                : std::filesystem::temp_directory_path();
      path = base / ("hseq_fuzz_" + std::to_string(::getpid()));
      std::filesystem::create_directories(path);
    }
    ~Dir() {
      std::error_code ec;
      std::filesystem::remove_all(path, ec);
    }
  };
  static Dir dir;
  return dir.path;
}

/// Writes `n` bytes to `path` (replacing it).
inline void write_bytes(std::string const& path, std::uint8_t const* data, std::size_t n) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<char const*>(data), static_cast<std::streamsize>(n));
  HSEQ_FUZZ_ASSERT(out.good());
}

/// The file `name` in the scratch directory holding the input.
inline std::string input_file(std::uint8_t const* data, std::size_t n, std::string const& name = "input") {
  std::string path = (scratch() / name).string();
  write_bytes(path, data, n);
  return path;
}

}  // namespace hseq::fuzz
