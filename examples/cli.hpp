// SPDX-License-Identifier: MIT
/// @file
/// @brief A small command-line flag parser shared by the example programs (not part of the library).
///
/// Rules (every violation is an hseq::Error whose message names the program and the flag):
///   - Flags are `--name value` or `--name=value`. The value may not be empty (`--name=` or
///     `--name ""`): an omitted flag already means "the default", so an empty one is a mistake.
///     In the two-argument form the value may not start with `--` either (`--dim --layers 4` is a
///     missing value, not the value "--layers"); write `--name=--text` for such a value.
///   - Switches (declared with `toggle`) are `--name`, or `--name=VALUE` with VALUE one of
///     1, 0, true, false; anything else (`--untied=yes`) is an error, never a silent "off".
///   - A flag may be given once: a repeated flag is an error rather than "last wins", because in a
///     long command line the repetition is usually a typo that would silently drop a setting.
///   - Unknown flags and positional arguments are errors.
///   - integer() and real() accept the whole value only: trailing text, leading blanks, values
///     outside the 64-bit integer range and (for real) values outside the finite double range,
///     inf and nan are errors, instead of being clamped or truncated.
#pragma once

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <exception>
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

  /// Declares a flag with a default value ("" for none) and a help line. Declaring a name again
  /// (model families share --dim) keeps the first declaration; the default and kind must agree,
  /// since one flag cannot have two defaults.
  Args& flag(std::string const& name, std::string const& def, std::string const& help) {
    if (redeclared(name, def, false)) return *this;
    order_.push_back(name);
    specs_[name] = {def, help, false};
    values_[name] = def;
    return *this;
  }
  /// Declares a boolean switch (false unless given).
  Args& toggle(std::string const& name, std::string const& help) {
    if (redeclared(name, "", true)) return *this;
    order_.push_back(name);
    specs_[name] = {"", help, true};
    values_[name] = "0";
    return *this;
  }

  /// Parses argv; returns false when --help was given (the usage has been printed).
  bool parse(int argc, char const* const* argv) {
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
      HSEQ_CHECK(!given(name), program_ << ": flag --" << name << " is given more than once");
      if (it->second.boolean) {
        if (!has_value || value == "1" || value == "true") {
          values_[name] = "1";
        } else if (value == "0" || value == "false") {
          values_[name] = "0";
        } else {
          HSEQ_FAIL(program_ << ": flag --" << name << " is a switch: give it as --" << name << " or --" << name
                             << "=true/false/1/0, not --" << name << "=" << value);
        }
        given_[name] = true;
        continue;
      }
      if (!has_value) {
        HSEQ_CHECK(i + 1 < argc, program_ << ": flag --" << name << " needs a value");
        value = argv[++i];
        HSEQ_CHECK(value.rfind("--", 0) != 0, program_ << ": flag --" << name << " needs a value, but is followed by "
                                                        << value << " (write --" << name << "=" << value
                                                        << " if that is the value)");
      }
      HSEQ_CHECK(!value.empty(), program_ << ": flag --" << name
                                          << " needs a value, got an empty one (leave the flag out for its default)");
      values_[name] = value;
      given_[name] = true;
    }
    return true;
  }

  bool given(std::string const& name) const { return given_.count(name) > 0; }
  std::string str(std::string const& name) const { return values_.at(known(name)); }
  /// The state of a switch (declared with `toggle`).
  bool on(std::string const& name) const {
    HSEQ_CHECK(specs_.at(known(name)).boolean, program_ << ": internal error: --" << name << " is not a switch");
    return values_.at(name) == "1";
  }
  std::int64_t integer(std::string const& name) const {
    std::string v = str(name);
    // strtoll would skip leading blanks and accept hexadecimal-looking prefixes like "0x" as "0"
    // followed by junk; requiring a digit or sign first keeps the accepted syntax plain decimal.
    bool const starts_ok = !v.empty() && (std::isdigit(static_cast<unsigned char>(v[0])) || v[0] == '-' || v[0] == '+');
    char* end = nullptr;
    errno = 0;
    long long x = starts_ok ? std::strtoll(v.c_str(), &end, 10) : 0;
    int const err = errno;
    HSEQ_CHECK(starts_ok && end && *end == '\0',
               program_ << ": --" << name << " expects an integer, got '" << v << "'");
    // strtoll clamps to LLONG_MIN/MAX and sets ERANGE: without this check 1e30-sized inputs would
    // silently become another number.
    HSEQ_CHECK(err != ERANGE, program_ << ": --" << name << " value " << v
                                       << " is out of the range of a 64-bit integer");
    return x;
  }
  double real(std::string const& name) const {
    std::string v = str(name);
    bool const starts_ok = !v.empty() && (std::isdigit(static_cast<unsigned char>(v[0])) || v[0] == '-' ||
                                          v[0] == '+' || v[0] == '.');
    char* end = nullptr;
    errno = 0;
    double x = starts_ok ? std::strtod(v.c_str(), &end) : 0.0;
    int const err = errno;
    HSEQ_CHECK(starts_ok && end && *end == '\0', program_ << ": --" << name << " expects a number, got '" << v << "'");
    // strtod reads "inf", "nan" and "1e999" (as HUGE_VAL, with ERANGE), and 1e-999 underflows to 0
    // (ERANGE as well): none of them is a usable setting, so each is an error, not a clamp.
    HSEQ_CHECK(std::isfinite(x) && err != ERANGE,
               program_ << ": --" << name << " value " << v << " is not a finite number in the range of a double");
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
  bool redeclared(std::string const& name, std::string const& def, bool boolean) const {
    auto it = specs_.find(name);
    if (it == specs_.end()) return false;
    HSEQ_CHECK(it->second.def == def && it->second.boolean == boolean,
               program_ << ": internal error: flag --" << name << " is declared twice with different defaults ('"
                        << it->second.def << "' and '" << def << "') or kinds");
    return true;
  }
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

/// What a program prints for the exception that ends it: an hseq::Error's message without the
/// check expression and source location (they mean nothing to a user of the programs), unless the
/// environment sets HSEQ_DEBUG to a value other than "" and "0" (then the whole what()); any other
/// exception's what().
inline std::string error_text(std::exception const& e) {
  if (auto const* he = dynamic_cast<hseq::Error const*>(&e)) {
    char const* debug = std::getenv("HSEQ_DEBUG");
    bool const full = debug != nullptr && *debug != '\0' && std::string(debug) != "0";
    return full ? std::string(he->what()) : he->message();
  }
  return e.what();
}

}  // namespace cli
