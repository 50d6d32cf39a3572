// SPDX-License-Identifier: MIT
/// @file
/// @brief `TextDataset`: the bytes of a file (or of a string) split into train and validation parts,
/// with random crops for training and deterministic non-overlapping windows for evaluation, for
/// byte-level language modelling (vocabulary 0..255).
#pragma once

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include "hseq/core/error.hpp"
#include "hseq/core/rng.hpp"

namespace hseq::io {

/// The bytes of one text, split once into a train part (the leading bytes) and a validation part
/// (the trailing bytes). Every byte is a token id in 0..255.
///
/// Split rule: with n bytes and validation fraction f in [0, 0.5], the train part is the first
/// floor((1 - f) * n) bytes and the validation part the rest (a product within 1e-9 of an integer
/// counts as that integer, so 0.9 * 10 gives 9 whatever the rounding of 0.9). With f > 0 both parts
/// must be non-empty; with f == 0 the validation part is empty.
class TextDataset {
 public:
  enum class Split { kTrain, kValidation };

  /// Tag that selects the in-memory constructor.
  struct FromMemory {};
  static constexpr FromMemory kFromMemory{};

  /// Reads the whole file at `path` as bytes.
  explicit TextDataset(std::string const& path, double val_fraction = 0.1) : name_(path) {
    check_fraction(val_fraction);
    data_ = read_file(path);
    split(val_fraction);
  }

  /// Uses the bytes of `text`; `name` stands for it in error messages.
  TextDataset(FromMemory, std::string text, std::string name = "<memory>", double val_fraction = 0.1)
      : name_(std::move(name)), data_(std::move(text)) {
    check_fraction(val_fraction);
    HSEQ_CHECK(!data_.empty(), "TextDataset: " << name_ << " is empty");
    split(val_fraction);
  }

  /// Same as the `FromMemory` constructor.
  static TextDataset from_string(std::string text, std::string name = "<memory>", double val_fraction = 0.1) {
    return TextDataset(kFromMemory, std::move(text), std::move(name), val_fraction);
  }

  /// The file path or the name given to the in-memory constructor.
  std::string const& name() const { return name_; }
  /// Bytes of the whole text.
  std::int64_t total_size() const { return static_cast<std::int64_t>(data_.size()); }
  /// Bytes of one split.
  std::int64_t size(Split s) const { return s == Split::kTrain ? train_size_ : total_size() - train_size_; }
  /// The bytes of one split (valid while this dataset lives).
  std::string_view bytes(Split s) const {
    std::string_view all(data_);
    return s == Split::kTrain ? all.substr(0, static_cast<std::size_t>(train_size_))
                              : all.substr(static_cast<std::size_t>(train_size_));
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
    std::string_view b = bytes(s);
    std::uint64_t starts = static_cast<std::uint64_t>(size(s) - t);
    for (std::int64_t row = 0; row < batch; ++row) {
      std::int64_t start = static_cast<std::int64_t>(rng.below(starts));
      copy_crop(b, start, t, ids + row * t, targets + row * t);
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
    copy_crop(bytes(s), index * t, t, ids, targets);
  }

 private:
  static void check_fraction(double f) {
    HSEQ_CHECK(f >= 0.0 && f <= 0.5, "TextDataset: val_fraction " << f << " outside [0, 0.5]");
  }

  static std::string read_file(std::string const& path) {
    namespace fs = std::filesystem;
    std::error_code ec;
    fs::file_status st = fs::status(path, ec);
    if (!fs::exists(st)) {
      bool missing = !ec || ec == std::errc::no_such_file_or_directory;
      HSEQ_FAIL("TextDataset: cannot read " << path << ": " << (missing ? "no such file" : ec.message()));
    }
    HSEQ_CHECK(!fs::is_directory(st), "TextDataset: cannot read " << path << ": it is a directory");
    errno = 0;
    std::ifstream in(path, std::ios::in | std::ios::binary);
    if (!in.is_open()) {
      int err = errno;
      HSEQ_FAIL("TextDataset: cannot open " << path << (err != 0 ? ": " : "") << (err != 0 ? std::strerror(err) : ""));
    }
    std::string data;
    char buf[1 << 16];
    while (in) {
      in.read(buf, sizeof buf);
      data.append(buf, static_cast<std::size_t>(in.gcount()));
    }
    HSEQ_CHECK(!in.bad(), "TextDataset: error while reading " << path);
    HSEQ_CHECK(!data.empty(), "TextDataset: " << path << " is empty");
    return data;
  }

  void split(double f) {
    std::int64_t n = total_size();
    double exact = (1.0 - f) * static_cast<double>(n);
    double nearest = std::round(exact);
    double train = std::fabs(exact - nearest) <= 1e-9 * std::fmax(1.0, exact) ? nearest : std::floor(exact);
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

  static void copy_crop(std::string_view b, std::int64_t start, std::int64_t t, std::int32_t* ids,
                        std::int32_t* targets) {
    auto const* p = reinterpret_cast<unsigned char const*>(b.data()) + start;
    for (std::int64_t i = 0; i < t; ++i) {
      ids[i] = static_cast<std::int32_t>(p[i]);
      targets[i] = static_cast<std::int32_t>(p[i + 1]);
    }
  }

  std::string name_;
  std::string data_;
  std::int64_t train_size_ = 0;
};

}  // namespace hseq::io
