// SPDX-License-Identifier: MIT
/// @file
/// @brief `CsvLog`: a CSV file of numeric rows under a fixed header, flushed row by row, that a
/// resumed run can append to.
#pragma once

#include <cmath>
#include <cstdio>
#include <fstream>
#include <ios>
#include <string>
#include <utility>
#include <vector>

#include "hseq/core/error.hpp"

namespace hseq::io {

/// One header line of column names, then one line of numbers per `row` call, each flushed at once so
/// that the file can be read while the run goes on and survives a crash.
///
/// Values print as "%.9g" (which round-trips every float); a double that holds an integer of up to 2^53
/// in magnitude (steps, token counts) prints exactly, as an integer. NaN and infinities print as "nan",
/// "inf" and "-inf".
class CsvLog {
 public:
  /// Creates the file at `path` (truncating it) and writes the header; with `append`, an existing file
  /// that already has exactly this header is kept and new rows go after its rows (a resumed run), an
  /// existing file with another header is an error, and a missing or empty file is started as
  /// without `append`. Column names must be non-empty and hold no comma, quote or line break.
  CsvLog(std::string const& path, std::vector<std::string> columns, bool append = false)
      : path_(path), columns_(std::move(columns)) {
    HSEQ_CHECK(!columns_.empty(), "CsvLog " << path_ << ": no columns");
    for (std::string const& c : columns_) {
      HSEQ_CHECK(
          !c.empty() && c.find_first_of(",\"\r\n") == std::string::npos,
          "CsvLog " << path_ << ": invalid column name \"" << c << "\" (empty, or holds a comma, quote or line break)");
    }
    std::string header = header_line();
    bool write_header = true;
    bool need_newline = false;
    if (append) {
      std::ifstream in(path_, std::ios::in | std::ios::binary);
      if (in.is_open()) {
        std::string first;
        if (std::getline(in, first)) {
          if (!first.empty() && first.back() == '\r') first.pop_back();
          HSEQ_CHECK(first == header, "CsvLog: cannot append to " << path_ << ": its header \"" << first
                                                                  << "\" differs from \"" << header << "\"");
          write_header = false;
          // A file cut off in the middle of a row (a crash) gets its line ended before new rows.
          in.clear();
          in.seekg(-1, std::ios::end);
          char last = '\n';
          if (in.get(last) && last != '\n') need_newline = true;
        }
      }
    }
    std::ios::openmode mode = std::ios::out | std::ios::binary | (write_header ? std::ios::trunc : std::ios::app);
    out_.open(path_, mode);
    HSEQ_CHECK(out_.is_open(), "CsvLog: cannot open " << path_ << " for writing");
    if (need_newline) out_ << '\n';
    if (write_header) out_ << header << '\n';
    flush_checked();
  }

  CsvLog(CsvLog&&) = default;
  CsvLog& operator=(CsvLog&&) = default;

  std::string const& path() const { return path_; }
  std::vector<std::string> const& columns() const { return columns_; }

  /// Appends one row: exactly one value per column.
  void row(std::vector<double> const& values) {
    HSEQ_CHECK(values.size() == columns_.size(),
               "CsvLog " << path_ << ": row of " << values.size() << " values for " << columns_.size() << " columns");
    std::string line;
    for (std::size_t i = 0; i < values.size(); ++i) {
      if (i > 0) line += ',';
      line += format_value(values[i]);
    }
    line += '\n';
    out_ << line;
    flush_checked();
  }

  /// The text of one value as `row` writes it.
  static std::string format_value(double v) {
    if (std::isnan(v)) return "nan";
    if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
    char buf[64];
    if (v == std::trunc(v) && std::fabs(v) <= 9007199254740992.0)
      std::snprintf(buf, sizeof buf, "%.0f", v);
    else
      std::snprintf(buf, sizeof buf, "%.9g", v);
    return buf;
  }

 private:
  std::string header_line() const {
    std::string h;
    for (std::size_t i = 0; i < columns_.size(); ++i) {
      if (i > 0) h += ',';
      h += columns_[i];
    }
    return h;
  }

  void flush_checked() {
    out_.flush();
    HSEQ_CHECK(out_.good(), "CsvLog: error writing to " << path_);
  }

  std::string path_;
  std::vector<std::string> columns_;
  std::ofstream out_;
};

}  // namespace hseq::io
