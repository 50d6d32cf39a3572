// SPDX-License-Identifier: MIT
// test::ScopedEnv: sets (or, with nullptr, unsets) an environment variable for its lifetime and
// restores the previous value, for tests of settings read from the environment.
#pragma once

#include <cstdlib>
#include <string>

namespace hseq::test {

class ScopedEnv {
 public:
  ScopedEnv(char const* name, char const* value) : name_(name) {
    if (char const* old = std::getenv(name)) old_ = old, had_ = true;
    if (value) ::setenv(name, value, 1);
    else ::unsetenv(name);
  }
  ~ScopedEnv() {
    if (had_) ::setenv(name_.c_str(), old_.c_str(), 1);
    else ::unsetenv(name_.c_str());
  }
  ScopedEnv(ScopedEnv const&) = delete;
  ScopedEnv& operator=(ScopedEnv const&) = delete;

 private:
  std::string name_, old_;
  bool had_ = false;
};

}  // namespace hseq::test
