// SPDX-License-Identifier: MIT
/// @file
/// @brief Test support: a fresh directory under the system temp directory, removed with everything
/// in it at scope end. The name carries the process id, a counter and a random number, so parallel
/// ctest entries (one process each) and repeated cases never share files.
#pragma once

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <random>
#include <string>
#include <system_error>

namespace hseq::test {

struct TempDir {
  std::filesystem::path dir;
  explicit TempDir(std::string const& prefix) {
    static std::atomic<int> counter{0};
    std::random_device rd;
    dir = std::filesystem::temp_directory_path() /
          (prefix + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter++) + "_" + std::to_string(rd()));
    std::filesystem::create_directories(dir);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  TempDir(TempDir const&) = delete;
  TempDir& operator=(TempDir const&) = delete;
  std::string file(std::string const& name) const { return (dir / name).string(); }
};

}  // namespace hseq::test
