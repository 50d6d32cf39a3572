// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#if !defined(_WIN32)
#include <unistd.h>
#endif

#include "hseq/core/error.hpp"
#include "hseq/io/csv_log.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using hseq::io::CsvLog;

namespace {

namespace fs = std::filesystem;

/// A fresh path in the temp directory, removed (if created) when the object goes away.
struct TempPath {
  fs::path path;
  explicit TempPath(std::string const& stem) {
#if defined(_WIN32)
    long pid = 0;
#else
    long pid = static_cast<long>(getpid());
#endif
    path = fs::temp_directory_path() / ("hseq_test_csv_log_" + stem + "_" + std::to_string(pid));
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  ~TempPath() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string str() const { return path.string(); }
};

std::string read_all(std::string const& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_file(std::string const& path, std::string const& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
  REQUIRE(out.good());
}

std::vector<std::string> split(std::string const& s, char sep) {
  std::vector<std::string> parts;
  std::string cur;
  for (char c : s) {
    if (c == sep) {
      parts.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  parts.push_back(cur);
  return parts;
}

std::string error_of(auto&& f) {
  try {
    f();
  } catch (hseq::Error const& e) {
    return e.what();
  }
  return "";
}

bool contains(std::string const& s, std::string const& part) { return s.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("csv_log: header and rows, flushed as they are written") {
  TempPath tmp("basic");
  CsvLog log(tmp.str(), {"step", "loss", "bpc"});
  CHECK(log.path() == tmp.str());
  CHECK(read_all(tmp.str()) == "step,loss,bpc\n");
  log.row({1, 0.5, 0.25});
  CHECK(read_all(tmp.str()) == "step,loss,bpc\n1,0.5,0.25\n");  // visible before the log closes
  log.row({2, 1.0 / 3.0, -1e-12});
  CHECK(read_all(tmp.str()) == "step,loss,bpc\n1,0.5,0.25\n2,0.333333333,-1e-12\n");
}

TEST_CASE("csv_log: values round-trip") {
  CHECK(CsvLog::format_value(0.1) == "0.1");
  CHECK(CsvLog::format_value(3.0) == "3");
  CHECK(CsvLog::format_value(-7.0) == "-7");
  CHECK(CsvLog::format_value(1234567891.0) == "1234567891");  // integers print exactly
  CHECK(CsvLog::format_value(9007199254740992.0) == "9007199254740992");
  CHECK(CsvLog::format_value(1e300) == "1e+300");
  CHECK(CsvLog::format_value(6.02214076e23) == "6.02214076e+23");
  CHECK(CsvLog::format_value(std::numeric_limits<double>::quiet_NaN()) == "nan");
  CHECK(CsvLog::format_value(std::numeric_limits<double>::infinity()) == "inf");
  CHECK(CsvLog::format_value(-std::numeric_limits<double>::infinity()) == "-inf");

  TempPath tmp("roundtrip");
  std::vector<std::vector<double>> rows;
  std::vector<std::vector<float>> floats;
  {
    CsvLog log(tmp.str(), {"step", "tokens", "loss", "lr"});
    float x = 0.7316f;
    for (int i = 0; i < 200; ++i) {
      x = x * 3.9f * (1.0f - x);  // a chaotic sequence of floats with all their bits in use
      float lr = 3e-4f * std::pow(0.97f, static_cast<float>(i));
      std::vector<double> r{static_cast<double>(i), 1234567.0 * i * i, static_cast<double>(x) * 8.0,
                            static_cast<double>(lr)};
      log.row(r);
      rows.push_back(r);
      floats.push_back({x * 8.0f, lr});
    }
  }
  std::vector<std::string> lines = split(read_all(tmp.str()), '\n');
  REQUIRE(lines.size() == rows.size() + 2);  // header, rows, empty string after the final newline
  CHECK(lines.front() == "step,tokens,loss,lr");
  CHECK(lines.back().empty());
  for (std::size_t i = 0; i < rows.size(); ++i) {
    std::vector<std::string> cells = split(lines[i + 1], ',');
    REQUIRE(cells.size() == 4);
    CHECK(std::strtod(cells[0].c_str(), nullptr) == rows[i][0]);  // integers: exact
    CHECK(std::strtod(cells[1].c_str(), nullptr) == rows[i][1]);
    // Floats (what a training loop computes): back to the same float.
    CHECK(static_cast<float>(std::strtod(cells[2].c_str(), nullptr)) == floats[i][0]);
    CHECK(static_cast<float>(std::strtod(cells[3].c_str(), nullptr)) == floats[i][1]);
  }
}

TEST_CASE("csv_log: append mode continues a file with the same header") {
  TempPath tmp("append");
  {
    CsvLog log(tmp.str(), {"step", "loss"});
    log.row({1, 2.5});
    log.row({2, 2.25});
  }
  {
    CsvLog log(tmp.str(), {"step", "loss"}, true);
    log.row({3, 2.125});
  }
  CHECK(read_all(tmp.str()) == "step,loss\n1,2.5\n2,2.25\n3,2.125\n");

  // Without append the file starts over.
  {
    CsvLog log(tmp.str(), {"step", "loss"});
    log.row({1, 9});
  }
  CHECK(read_all(tmp.str()) == "step,loss\n1,9\n");

  // Another header: an error that names the file, and the file is left alone.
  std::string e = error_of([&] { CsvLog log(tmp.str(), {"step", "loss", "bpc"}, true); });
  CHECK(contains(e, tmp.str()));
  CHECK(contains(e, "step,loss"));
  CHECK(contains(e, "step,loss,bpc"));
  CHECK(read_all(tmp.str()) == "step,loss\n1,9\n");

  // A row cut off by a crash gets its line ended; CRLF headers match.
  write_file(tmp.str(), "step,loss\r\n1,9\r\n2,8.");
  {
    CsvLog log(tmp.str(), {"step", "loss"}, true);
    log.row({3, 7});
  }
  CHECK(read_all(tmp.str()) == "step,loss\r\n1,9\r\n2,8.\n3,7\n");
}

TEST_CASE("csv_log: append mode starts a missing or empty file with the header") {
  TempPath missing("missing");
  {
    CsvLog log(missing.str(), {"a"}, true);
    log.row({1});
  }
  CHECK(read_all(missing.str()) == "a\n1\n");

  TempPath empty("empty");
  write_file(empty.str(), "");
  {
    CsvLog log(empty.str(), {"a", "b"}, true);
    log.row({1, 2});
  }
  CHECK(read_all(empty.str()) == "a,b\n1,2\n");
}

TEST_CASE("csv_log: errors") {
  TempPath tmp("errors");
  std::string bad_path = (tmp.path / "no_such_dir" / "log.csv").string();
  std::string e = error_of([&] { CsvLog log(bad_path, {"a"}); });
  CHECK(contains(e, "cannot open"));
  CHECK(contains(e, bad_path));

  CsvLog log(tmp.str(), {"a", "b"});
  e = error_of([&] { log.row({1.0}); });
  CHECK(contains(e, "1 values for 2 columns"));
  CHECK(contains(e, tmp.str()));
  CHECK_THROWS_AS(log.row({1, 2, 3}), hseq::Error);
  log.row({1, 2});
  CHECK(read_all(tmp.str()) == "a,b\n1,2\n");

  TempPath other("columns");
  CHECK_THROWS_AS(CsvLog(other.str(), {}), hseq::Error);
  CHECK_THROWS_AS(CsvLog(other.str(), {"a,b"}), hseq::Error);
  CHECK_THROWS_AS(CsvLog(other.str(), {"a", ""}), hseq::Error);
  CHECK_THROWS_AS(CsvLog(other.str(), {"x\ny"}), hseq::Error);
}

}  // namespace HSEQ_TEST_UNIT
