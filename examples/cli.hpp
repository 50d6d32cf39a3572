// SPDX-License-Identifier: MIT
/// @file
/// @brief A small command-line flag parser shared by the example programs (not part of the library).
/// Flags are `--name value` or `--name=value`; boolean flags take no value. Unknown flags, missing
/// values and malformed numbers are errors that name the flag.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "hseq/core/error.hpp"

namespace cli {

class Args {
 public:
  Args(std::string program, std::string summary) : program_(std::move(program)), summary_(std::move(summary)) {}

  /// Declares a flag with a default value ("" for none) and a help line.
  Args& flag(std::string const& name, std::string const& def, std::string const& help) {
    order_.push_back(name);
    specs_[name] = {def, help, false};
    values_[name] = def;
    return *this;
  }
  /// Declares a boolean switch (false unless given).
  Args& toggle(std::string const& name, std::string const& help) {
    order_.push_back(name);
    specs_[name] = {"", help, true};
    values_[name] = "0";
    return *this;
  }

  /// Parses argv; returns false when --help was given (the usage has been printed).
  bool parse(int argc, char** argv) {
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      if (a == "--help" || a == "-h") {
        usage(std::cout);
        return false;
      }
      HSEQ_CHECK(a.rfind("--", 0) == 0, program_ << ": unexpected argument '" << a << "' (flags start with --; see --help)");
      std::string name = a.substr(2), value;
      bool has_value = false;
      if (auto eq = name.find('='); eq != std::string::npos) {
        value = name.substr(eq + 1);
        name = name.substr(0, eq);
        has_value = true;
      }
      auto it = specs_.find(name);
      HSEQ_CHECK(it != specs_.end(), program_ << ": unknown flag --" << name << " (see --help)");
      if (it->second.boolean) {
        values_[name] = has_value ? value : "1";
        given_[name] = true;
        continue;
      }
      if (!has_value) {
        HSEQ_CHECK(i + 1 < argc, program_ << ": flag --" << name << " needs a value");
        value = argv[++i];
      }
      values_[name] = value;
      given_[name] = true;
    }
    return true;
  }

  bool given(std::string const& name) const { return given_.count(name) > 0; }
  std::string str(std::string const& name) const { return values_.at(known(name)); }
  bool on(std::string const& name) const { return values_.at(known(name)) == "1"; }
  std::int64_t integer(std::string const& name) const {
    std::string v = str(name);
    char* end = nullptr;
    long long x = std::strtoll(v.c_str(), &end, 10);
    HSEQ_CHECK(!v.empty() && end && *end == '\0', program_ << ": --" << name << " expects an integer, got '" << v << "'");
    return x;
  }
  double real(std::string const& name) const {
    std::string v = str(name);
    char* end = nullptr;
    double x = std::strtod(v.c_str(), &end);
    HSEQ_CHECK(!v.empty() && end && *end == '\0', program_ << ": --" << name << " expects a number, got '" << v << "'");
    return x;
  }

  void usage(std::ostream& os) const {
    os << "usage: " << program_ << " [flags]\n\n" << summary_ << "\n\nflags:\n";
    for (auto const& n : order_) {
      auto const& s = specs_.at(n);
      std::string left = "  --" + n + (s.boolean ? "" : " VALUE");
      os << left << std::string(left.size() < 28 ? 28 - left.size() : 1, ' ') << s.help;
      if (!s.boolean && !s.def.empty()) os << " (default: " << s.def << ")";
      os << "\n";
    }
    os << "  --help                    print this help and exit\n";
  }

 private:
  std::string const& known(std::string const& name) const {
    HSEQ_CHECK(specs_.count(name), program_ << ": internal error: flag --" << name << " was not declared");
    return name;
  }
  struct Spec {
    std::string def, help;
    bool boolean;
  };
  std::string program_, summary_;
  std::vector<std::string> order_;
  std::map<std::string, Spec> specs_;
  std::map<std::string, std::string> values_;
  std::map<std::string, bool> given_;
};

}  // namespace cli
