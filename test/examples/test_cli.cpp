// SPDX-License-Identifier: MIT
// The flag parser of the example programs (examples/cli.hpp): accepted forms, and the error that
// each kind of bad command line gives.
#include <doctest/doctest.h>

#include <cstdint>
#include <initializer_list>
#include <iostream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "cli.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using hseq::Error;

namespace {

/// The flags of a small program: numbers, strings and one switch.
cli::Args make_args() {
  cli::Args a("prog", "A test program.");
  a.flag("dim", "256", "model width")
      .flag("lr", "2e-3", "learning rate")
      .flag("data", "", "input file")
      .flag("prompt", "\n", "prompt")
      .toggle("untied", "separate output projection");
  return a;
}

/// Parses `args` (argv[0] is the program name) into `a`; returns parse()'s result.
bool parse(cli::Args& a, std::initializer_list<char const*> args) {
  std::vector<char const*> argv{"prog"};
  argv.insert(argv.end(), args.begin(), args.end());
  return a.parse(int(argv.size()), argv.data());
}

/// The error message of parsing `args`, or "(no error)".
std::string parse_error(std::initializer_list<char const*> args) {
  cli::Args a = make_args();
  try {
    parse(a, args);
  } catch (Error const& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("cli: defaults, --flag value and --flag=value") {
  cli::Args a = make_args();
  REQUIRE(parse(a, {}));
  CHECK(a.integer("dim") == 256);
  CHECK(a.real("lr") == doctest::Approx(2e-3));
  CHECK(a.str("data").empty());
  CHECK(a.str("prompt") == "\n");
  CHECK_FALSE(a.on("untied"));
  CHECK_FALSE(a.given("dim"));
  CHECK_FALSE(a.given("untied"));

  cli::Args b = make_args();
  REQUIRE(parse(b, {"--dim", "64", "--lr=0.5", "--data=a=b.txt", "--prompt", "-x"}));
  CHECK(b.integer("dim") == 64);
  CHECK(b.real("lr") == 0.5);
  CHECK(b.str("data") == "a=b.txt");  // only the first '=' separates name and value
  CHECK(b.str("prompt") == "-x");     // a single dash is a value, not a flag
  CHECK(b.given("dim"));
  CHECK(b.given("lr"));
  CHECK_FALSE(b.given("untied"));

  // A value that looks like a flag is possible with '='.
  cli::Args c = make_args();
  REQUIRE(parse(c, {"--prompt=--not-a-flag", "--dim=-3"}));
  CHECK(c.str("prompt") == "--not-a-flag");
  CHECK(c.integer("dim") == -3);
}

TEST_CASE("cli: integers are whole decimal values within int64") {
  auto value_of = [](char const* v) {
    cli::Args a = make_args();
    char const* argv[] = {"prog", "--dim", v};
    a.parse(3, argv);
    return a.integer("dim");
  };
  CHECK(value_of("9223372036854775807") == std::numeric_limits<std::int64_t>::max());
  CHECK(value_of("-9223372036854775808") == std::numeric_limits<std::int64_t>::min());
  CHECK(value_of("+12") == 12);
  CHECK(value_of("007") == 7);

  for (char const* big : {"9223372036854775808", "-9223372036854775809", "99999999999999999999999"}) {
    CAPTURE(big);
    CHECK_THROWS_WITH_AS(value_of(big), doctest::Contains(("prog: --dim value " + std::string(big) +
                                                           " is out of the range of a 64-bit integer")
                                                              .c_str()),
                         Error);
  }
  for (char const* junk : {"12abc", "1.5", "1e3", " 12", "0x10", "-", "abc"}) {
    CAPTURE(junk);
    CHECK_THROWS_WITH_AS(value_of(junk),
                         doctest::Contains(("prog: --dim expects an integer, got '" + std::string(junk) + "'").c_str()),
                         Error);
  }
}

TEST_CASE("cli: reals are finite doubles") {
  auto value_of = [](char const* v) {
    cli::Args a = make_args();
    char const* argv[] = {"prog", "--lr", v};
    a.parse(3, argv);
    return a.real("lr");
  };
  CHECK(value_of("1e-3") == 1e-3);
  CHECK(value_of(".5") == 0.5);
  CHECK(value_of("-2") == -2.0);
  CHECK(value_of("1.7e308") == 1.7e308);

  // strtod would return HUGE_VAL, an infinity, a NaN or a flushed zero for these.
  for (char const* bad : {"1e999", "-1e999", "-inf", "+nan", "1e-999"}) {
    CAPTURE(bad);
    CHECK_THROWS_WITH_AS(value_of(bad), doctest::Contains(("prog: --lr value " + std::string(bad) +
                                                           " is not a finite number in the range of a double")
                                                              .c_str()),
                         Error);
  }
  for (char const* junk : {"inf", "nan", "0.1x", "1,5", " 1", "e5"}) {
    CAPTURE(junk);
    CHECK_THROWS_WITH_AS(value_of(junk),
                         doctest::Contains(("prog: --lr expects a number, got '" + std::string(junk) + "'").c_str()),
                         Error);
  }
}

TEST_CASE("cli: unknown flags, positional arguments and missing or empty values") {
  CHECK(parse_error({"--dims", "4"}).find("prog: unknown flag --dims (see --help)") != std::string::npos);
  CHECK(parse_error({"--dims=4"}).find("prog: unknown flag --dims (see --help)") != std::string::npos);
  CHECK(parse_error({"--"}).find("prog: unknown flag -- ") != std::string::npos);
  CHECK(parse_error({"input.txt"}).find("prog: unexpected argument 'input.txt' (flags start with --") !=
        std::string::npos);
  CHECK(parse_error({"-d", "4"}).find("unexpected argument '-d'") != std::string::npos);

  CHECK(parse_error({"--dim"}).find("prog: flag --dim needs a value") != std::string::npos);
  // The next flag is not swallowed as the value.
  std::string const msg = parse_error({"--dim", "--lr", "0.1"});
  CAPTURE(msg);
  CHECK(msg.find("prog: flag --dim needs a value, but is followed by --lr (write --dim=--lr if that is the value)") !=
        std::string::npos);

  for (auto const& args : {std::vector<char const*>{"--data="}, std::vector<char const*>{"--data", ""},
                           std::vector<char const*>{"--dim="}}) {
    cli::Args a = make_args();
    std::vector<char const*> argv{"prog"};
    argv.insert(argv.end(), args.begin(), args.end());
    CHECK_THROWS_WITH_AS(a.parse(int(argv.size()), argv.data()), doctest::Contains("got an empty one"), Error);
  }
  CHECK(parse_error({"--data="}).find("prog: flag --data needs a value, got an empty one") != std::string::npos);
}

TEST_CASE("cli: a switch takes no value or one of 1, 0, true, false") {
  for (auto [arg, expected] : {std::pair<char const*, bool>{"--untied", true},
                               {"--untied=1", true},
                               {"--untied=true", true},
                               {"--untied=0", false},
                               {"--untied=false", false}}) {
    CAPTURE(arg);
    cli::Args a = make_args();
    REQUIRE(parse(a, {arg}));
    CHECK(a.on("untied") == expected);
    CHECK(a.given("untied"));
  }
  for (char const* bad : {"--untied=yes", "--untied=", "--untied=TRUE", "--untied=2"}) {
    CAPTURE(bad);
    std::string const msg = parse_error({bad});
    CHECK(msg.find("prog: flag --untied is a switch: give it as --untied or --untied=true/false/1/0, not " +
                   std::string(bad)) != std::string::npos);
  }
  // A switch does not consume the next argument: "false" here is a stray positional argument.
  CHECK(parse_error({"--untied", "false"}).find("unexpected argument 'false'") != std::string::npos);
}

TEST_CASE("cli: a repeated flag is an error, not 'last wins'") {
  CHECK(parse_error({"--dim", "4", "--dim", "8"}).find("prog: flag --dim is given more than once") !=
        std::string::npos);
  CHECK(parse_error({"--dim=4", "--lr", "1", "--dim=4"}).find("flag --dim is given more than once") !=
        std::string::npos);
  CHECK(parse_error({"--untied", "--untied=0"}).find("flag --untied is given more than once") != std::string::npos);
}

TEST_CASE("cli: --help prints the usage and stops; undeclared names are internal errors") {
  cli::Args a = make_args();
  std::ostringstream out;
  std::streambuf* old = std::cout.rdbuf(out.rdbuf());
  bool const go_on = parse(a, {"--dim", "8", "--help", "--bogus"});  // flags after --help are not read
  std::cout.rdbuf(old);
  CHECK_FALSE(go_on);
  std::string const usage = out.str();
  CHECK(usage.find("usage: prog [flags]") != std::string::npos);
  CHECK(usage.find("A test program.") != std::string::npos);
  CHECK(usage.find("--dim VALUE") != std::string::npos);
  CHECK(usage.find("(default: 256)") != std::string::npos);
  CHECK(usage.find("--untied ") != std::string::npos);
  CHECK(usage.find("--help") != std::string::npos);

  cli::Args b = make_args();
  REQUIRE(parse(b, {}));
  CHECK_THROWS_WITH_AS(b.str("nope"), doctest::Contains("prog: internal error: flag --nope was not declared"), Error);
  CHECK_THROWS_WITH_AS(b.on("dim"), doctest::Contains("prog: internal error: --dim is not a switch"), Error);
}

TEST_CASE("cli: a flag declared again (families share --dim) keeps its first declaration if the defaults agree") {
  cli::Args a = make_args();
  a.flag("dim", "256", "another family's help").toggle("untied", "again");
  std::ostringstream usage;
  a.usage(usage);
  CHECK(usage.str().find("model width") != std::string::npos);  // the first help line stays
  CHECK(usage.str().find("another family's help") == std::string::npos);
  std::size_t first = usage.str().find("--dim"), again = usage.str().find("--dim", first + 1);
  CHECK(again == std::string::npos);  // listed once
  REQUIRE(parse(a, {"--dim", "8", "--untied"}));
  CHECK(a.integer("dim") == 8);
  CHECK(a.on("untied"));

  cli::Args b = make_args();
  CHECK_THROWS_WITH_AS(b.flag("dim", "128", "x"),
                       doctest::Contains("prog: internal error: flag --dim is declared twice with different defaults "
                                         "('256' and '128')"),
                       Error);
  CHECK_THROWS_WITH_AS(b.toggle("lr", "x"), doctest::Contains("flag --lr is declared twice"), Error);
}

}  // namespace HSEQ_TEST_UNIT
