// SPDX-License-Identifier: MIT
/// @file
/// @brief `TextDataset`: the bytes of files (or of a string) split into train and validation parts,
/// with random crops for training and deterministic non-overlapping windows for evaluation, for
/// byte-level language modelling (vocabulary 0..255).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <initializer_list>
#include <limits>
#include <memory>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "hseq/core/error.hpp"
#include "hseq/core/rng.hpp"
#include "hseq/io/mapped_corpus.hpp"

namespace hseq::io {

/// The bytes of one text, split once into a train part (the leading bytes) and a validation part
/// (the trailing bytes). Every byte is a token id in 0..255.
///
/// The text is a string held in memory, or one or more files (a file, a directory: every
/// non-empty regular file below it, hidden ones aside) concatenated in the byte order of their
/// paths and read through a `MappedCorpus`: memory-mapped windows, never the whole text at once,
/// so a corpus larger than memory trains as well as a small one.
///
/// Split rule: with n bytes and validation fraction f in [0, 0.5], the train part is the first
/// floor((1 - f) * n) bytes and the validation part the rest (a product within 16 rounding units of
/// an integer, 16 * 2^-52 relative, counts as that integer, so 0.9 * 10 gives 9 whatever the
/// rounding of 0.9; the bound is that of the rounding error, so that a 3 GiB corpus's 0.8 of a
/// byte is not mistaken for one). With f > 0 both parts
/// must be non-empty; with f == 0 the validation part is empty. With several files the validation
/// part is the tail of the concatenation: the last files in path order.
class TextDataset {
 public:
  enum class Split { kTrain, kValidation };

  /// Tag that selects the in-memory constructor.
  struct FromMemory {};
  static constexpr FromMemory kFromMemory{};

  /// The file or directory at `path` (see the class comment), mapped.
  explicit TextDataset(std::string const& path, double val_fraction = 0.1, MapOptions map = {})
      : TextDataset(std::vector<std::string>{path}, val_fraction, map) {}

  /// The files and directories `paths`, concatenated in path order and mapped; `name()` is the
  /// paths joined by commas.
  explicit TextDataset(std::vector<std::string> const& paths, double val_fraction = 0.1, MapOptions map = {})
      : name_(MappedCorpus::describe(paths)) {
    check_fraction(val_fraction);
    corpus_ = std::make_unique<MappedCorpus>(paths, map);  // its errors name the file
    total_ = corpus_->size();
    split(val_fraction);
  }

  /// `TextDataset({"a.txt", "dir"})`: a braced list of paths is this overload (without it, a list
  /// of two string literals would also fit std::string's iterator-pair constructor: ambiguous).
  TextDataset(std::initializer_list<std::string> paths, double val_fraction = 0.1, MapOptions map = {})
      : TextDataset(std::vector<std::string>(paths), val_fraction, map) {}

  /// Uses the bytes of `text`; `name` stands for it in error messages.
  TextDataset(FromMemory, std::string text, std::string name = "<memory>", double val_fraction = 0.1)
      : name_(std::move(name)), data_(std::move(text)) {
    check_fraction(val_fraction);
    HSEQ_CHECK(!data_.empty(), "TextDataset: " << name_ << " is empty");
    total_ = static_cast<std::int64_t>(data_.size());
    split(val_fraction);
  }

  /// Same as the `FromMemory` constructor.
  static TextDataset from_string(std::string text, std::string name = "<memory>", double val_fraction = 0.1) {
    return TextDataset(kFromMemory, std::move(text), std::move(name), val_fraction);
  }

  /// The paths of a program's `--data` value: the value itself when it names an existing file or
  /// directory (so a path with a comma in it still works), otherwise its comma-separated parts.
  static std::vector<std::string> path_list(std::string const& value) {
    std::error_code ec;
    if (value.empty() || std::filesystem::exists(value, ec)) return {value};
    std::vector<std::string> out;
    std::size_t at = 0;
    for (;;) {
      std::size_t comma = value.find(',', at);
      out.push_back(value.substr(at, comma == std::string::npos ? std::string::npos : comma - at));
      if (comma == std::string::npos) break;
      at = comma + 1;
    }
    return out;
  }

  /// The file path(s) or the name given to the in-memory constructor.
  std::string const& name() const { return name_; }
  /// The files read, in the order of the text (empty for an in-memory text).
  std::vector<std::string> files() const { return corpus_ ? corpus_->paths() : std::vector<std::string>{}; }
  /// Bytes of the whole text.
  std::int64_t total_size() const { return total_; }
  /// Bytes of one split.
  std::int64_t size(Split s) const { return s == Split::kTrain ? train_size_ : total_ - train_size_; }

  /// Copies bytes [offset, offset + n) of split `s` to `dst`.
  void read(Split s, std::int64_t offset, std::int64_t n, char* dst) const {
    for_each_piece(s, offset, n, [&](unsigned char const* p, std::int64_t len) {
      std::memcpy(dst, p, static_cast<std::size_t>(len));
      dst += len;
    });
  }
  /// Bytes [offset, offset + n) of split `s` as a string (n < 0: to the end of the split).
  std::string text(Split s, std::int64_t offset = 0, std::int64_t n = -1) const {
    if (n < 0) n = size(s) - offset;
    std::string out(static_cast<std::size_t>(std::max<std::int64_t>(n, 0)), '\0');
    read(s, offset, n, out.data());
    return out;
  }
  /// Token ids of bytes [offset, offset + n) of split `s` (dst[i] = byte offset + i, 0..255).
  void read_ids(Split s, std::int64_t offset, std::int64_t n, std::int32_t* dst) const {
    for_each_piece(s, offset, n, [&](unsigned char const* p, std::int64_t len) {
      for (std::int64_t i = 0; i < len; ++i) dst[i] = static_cast<std::int32_t>(p[i]);
      dst += len;
    });
  }

  static char const* split_name(Split s) { return s == Split::kTrain ? "train" : "validation"; }

  /// `batch` random crops of t + 1 bytes from split `s`: row b starts at `rng.below(size(s) - t)`
  /// (one draw per row, rows in order), ids[b*t + i] = byte s_b + i and targets[b*t + i] = byte
  /// s_b + i + 1, for i in [0, t). `ids` and `targets` hold batch * t values each.
  void sample(Split s, Rng& rng, std::int64_t batch, std::int64_t t, std::int32_t* ids, std::int32_t* targets) const {
    HSEQ_CHECK(batch >= 0, "TextDataset::sample: negative batch " << batch);
    check_length(s, t);
    if (batch == 0) return;
    HSEQ_CHECK(ids != nullptr && targets != nullptr, "TextDataset::sample: null ids or targets");
    std::uint64_t starts = static_cast<std::uint64_t>(size(s) - t);
    for (std::int64_t row = 0; row < batch; ++row) {
      std::int64_t start = static_cast<std::int64_t>(rng.below(starts));
      copy_crop(s, start, t, ids + row * t, targets + row * t);
    }
  }

  /// Number of evaluation windows of t + 1 bytes in split `s`: they start at 0, t, 2t, ... while
  /// start + t + 1 <= size(s), so consecutive windows share one byte and every target byte from byte 1
  /// up to byte num_windows * t is predicted exactly once (a tail of fewer than t bytes is left out).
  std::int64_t num_windows(Split s, std::int64_t t) const {
    HSEQ_CHECK(t >= 1, "TextDataset::num_windows: sequence length " << t << " must be at least 1");
    std::int64_t n = size(s);
    return n < t + 1 ? 0 : (n - 1) / t;
  }

  /// Window `index` of split `s` (see num_windows): ids = bytes [index*t, index*t + t), targets =
  /// bytes [index*t + 1, index*t + t + 1); t values each.
  void window(Split s, std::int64_t index, std::int64_t t, std::int32_t* ids, std::int32_t* targets) const {
    std::int64_t count = num_windows(s, t);
    HSEQ_CHECK(index >= 0 && index < count, "TextDataset::window: index "
                                                << index << " out of range: the " << split_name(s) << " split of "
                                                << name_ << " (" << size(s) << " bytes) has " << count << " windows of "
                                                << t << " + 1 bytes");
    HSEQ_CHECK(ids != nullptr && targets != nullptr, "TextDataset::window: null ids or targets");
    copy_crop(s, index * t, t, ids, targets);
  }

 private:
  static void check_fraction(double f) {
    HSEQ_CHECK(f >= 0.0 && f <= 0.5, "TextDataset: val_fraction " << f << " outside [0, 0.5]");
  }

  void split(double f) {
    std::int64_t n = total_;
    double exact = (1.0 - f) * static_cast<double>(n);
    double nearest = std::round(exact);
    double const tolerance = 16 * std::numeric_limits<double>::epsilon() * std::fmax(1.0, exact);
    double train = std::fabs(exact - nearest) <= tolerance ? nearest : std::floor(exact);
    train_size_ = static_cast<std::int64_t>(train);
    if (train_size_ > n) train_size_ = n;
    if (f > 0.0) {
      HSEQ_CHECK(train_size_ > 0 && train_size_ < n,
                 "TextDataset: " << name_ << " (" << n << " bytes) is too short to split with val_fraction " << f
                                 << ": the train split would have " << train_size_ << " bytes and the validation split "
                                 << n - train_size_);
    }
  }

  void check_length(Split s, std::int64_t t) const {
    HSEQ_CHECK(t >= 1, "TextDataset: sequence length " << t << " must be at least 1");
    HSEQ_CHECK(size(s) >= t + 1, split_name(s) << " split of " << name_ << " has " << size(s)
                                               << " bytes, too short for sequences of " << t << " + 1");
  }

  /// ids = bytes [start, start + t), targets = bytes [start + 1, start + t + 1) of split `s`.
  void copy_crop(Split s, std::int64_t start, std::int64_t t, std::int32_t* ids, std::int32_t* targets) const {
    read_ids(s, start, t, ids);
    read_ids(s, start + 1, t, targets);
  }

  template <class F>
  void for_each_piece(Split s, std::int64_t offset, std::int64_t n, F&& fn) const {
    std::int64_t size_s = size(s);
    HSEQ_CHECK(offset >= 0 && n >= 0 && offset <= size_s - n,
               "TextDataset: bytes [" << offset << ", " << offset + n << ") are outside the " << split_name(s)
                                      << " split of " << name_ << " (" << size_s << " bytes)");
    std::int64_t at = (s == Split::kTrain ? 0 : train_size_) + offset;
    if (corpus_) {
      corpus_->for_each_piece(at, n, fn);
    } else if (n > 0) {
      fn(reinterpret_cast<unsigned char const*>(data_.data()) + at, n);
    }
  }

  std::string name_;
  std::string data_;                      // the in-memory text, or
  std::unique_ptr<MappedCorpus> corpus_;  // the files
  std::int64_t total_ = 0;
  std::int64_t train_size_ = 0;
};

}  // namespace hseq::io
