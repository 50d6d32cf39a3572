// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#if !defined(_WIN32)
#include <unistd.h>
#endif

#include "hseq/core/error.hpp"
#include "hseq/core/rng.hpp"
#include "hseq/io/text_dataset.hpp"
#include "support/errors.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using hseq::test::contains;
using hseq::test::error_of;

using hseq::Rng;
using hseq::io::TextDataset;
using Split = TextDataset::Split;

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
    path = fs::temp_directory_path() / ("hseq_test_text_dataset_" + stem + "_" + std::to_string(pid));
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  ~TempPath() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string str() const { return path.string(); }
};

void write_file(std::string const& path, std::string const& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(content.data(), static_cast<std::streamsize>(content.size()));
  REQUIRE(out.good());
}

/// Bytes 0..255 repeated: every value occurs and each byte's value is its position mod 256.
std::string counting_bytes(std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>(static_cast<unsigned char>(i % 256));
  return s;
}

}  // namespace

TEST_CASE("text_dataset: split sizes follow the validation fraction") {
  std::string text = counting_bytes(1000);
  auto d = TextDataset::from_string(text, "mem");
  CHECK(d.total_size() == 1000);
  CHECK(d.size(Split::kTrain) == 900);
  CHECK(d.size(Split::kValidation) == 100);
  CHECK(d.text(Split::kTrain) == std::string_view(text).substr(0, 900));
  CHECK(d.text(Split::kValidation) == std::string_view(text).substr(900));

  // Rounded down: 0.85 * 10 = 8.5 -> 8 train bytes, 2 validation.
  auto r = TextDataset::from_string(counting_bytes(10), "mem", 0.15);
  CHECK(r.size(Split::kTrain) == 8);
  CHECK(r.size(Split::kValidation) == 2);

  // Products that are integers in exact arithmetic are not lost to floating-point rounding.
  for (int n = 1; n <= 40; ++n) {
    auto e = TextDataset::from_string(counting_bytes(static_cast<std::size_t>(100 * n)), "mem", 0.29);
    CHECK(e.size(Split::kTrain) == 71 * n);
  }

  auto half = TextDataset::from_string("abcd", "mem", 0.5);
  CHECK(half.text(Split::kTrain) == "ab");
  CHECK(half.text(Split::kValidation) == "cd");

  auto none = TextDataset::from_string("abc", "mem", 0.0);
  CHECK(none.size(Split::kTrain) == 3);
  CHECK(none.size(Split::kValidation) == 0);
  CHECK(none.text(Split::kValidation).empty());
  CHECK(none.num_windows(Split::kValidation, 1) == 0);

  // The tag constructor is the same as from_string.
  TextDataset tagged(TextDataset::kFromMemory, "abcdefghij", "tagged", 0.2);
  CHECK(tagged.name() == "tagged");
  CHECK(tagged.text(Split::kValidation) == "ij");
}

TEST_CASE("text_dataset: reads any file as bytes") {
  TempPath tmp("bytes");
  std::string content = counting_bytes(600);  // includes NUL, '\r', '\n', 0x1a and bytes >= 128
  write_file(tmp.str(), content);
  TextDataset d(tmp.str(), 0.25);
  CHECK(d.name() == tmp.str());
  CHECK(d.total_size() == 600);
  CHECK(d.size(Split::kTrain) == 450);
  CHECK(d.size(Split::kValidation) == 150);
  CHECK(d.text(Split::kTrain) == std::string_view(content).substr(0, 450));
  CHECK(d.text(Split::kValidation) == std::string_view(content).substr(450));

  // Ids are unsigned byte values 0..255.
  std::vector<std::int32_t> ids(255), targets(255);
  d.window(Split::kTrain, 0, 255, ids.data(), targets.data());
  for (int i = 0; i < 255; ++i) {
    CHECK(ids[static_cast<std::size_t>(i)] == i);
    CHECK(targets[static_cast<std::size_t>(i)] == i + 1);
  }
}

TEST_CASE("text_dataset: targets are the ids shifted by one") {
  std::string text;
  for (int i = 0; i < 3000; ++i) text += static_cast<char>(static_cast<unsigned char>((i * 7919 + i / 13) % 256));
  auto d = TextDataset::from_string(text, "mem");
  std::int64_t const batch = 6, t = 17;
  std::vector<std::int32_t> ids(batch * t), targets(batch * t);
  Rng rng(5);
  for (Split s : {Split::kTrain, Split::kValidation}) {
    d.sample(s, rng, batch, t, ids.data(), targets.data());
    std::string b = d.text(s);
    for (std::int64_t row = 0; row < batch; ++row) {
      std::int32_t const* r_ids = ids.data() + row * t;
      std::int32_t const* r_tg = targets.data() + row * t;
      for (std::int64_t i = 0; i + 1 < t; ++i) CHECK(r_tg[i] == r_ids[i + 1]);
      // The row is a crop of the split: find where it starts.
      bool found = false;
      for (std::size_t start = 0; start + static_cast<std::size_t>(t) < b.size() && !found; ++start) {
        bool match = true;
        for (std::int64_t i = 0; i < t && match; ++i) {
          match = static_cast<unsigned char>(b[start + static_cast<std::size_t>(i)]) == r_ids[i] &&
                  static_cast<unsigned char>(b[start + static_cast<std::size_t>(i) + 1]) == r_tg[i];
        }
        found = match;
      }
      CHECK(found);
    }
  }
}

TEST_CASE("text_dataset: sample draws one start per row with rng.below(size - t)") {
  std::string text = counting_bytes(5000);
  auto d = TextDataset::from_string(text, "mem");
  std::int64_t const batch = 4, t = 8;
  std::vector<std::int32_t> ids(batch * t), targets(batch * t);
  Rng rng(123, 7), ref(123, 7);
  d.sample(Split::kTrain, rng, batch, t, ids.data(), targets.data());
  CHECK(rng.position() == static_cast<std::uint64_t>(batch));
  for (std::int64_t row = 0; row < batch; ++row) {
    auto start = static_cast<std::int64_t>(ref.below(static_cast<std::uint64_t>(d.size(Split::kTrain) - t)));
    for (std::int64_t i = 0; i < t; ++i) {
      CHECK(ids[static_cast<std::size_t>(row * t + i)] == static_cast<std::int32_t>((start + i) % 256));
      CHECK(targets[static_cast<std::size_t>(row * t + i)] == static_cast<std::int32_t>((start + i + 1) % 256));
    }
  }

  // The last possible crop ends at the last byte: size t + 1 has exactly one start.
  auto tiny = TextDataset::from_string("abcdefghij", "tiny", 0.2);  // train "abcdefgh"
  std::vector<std::int32_t> ti(7), tt(7);
  Rng r(1);
  tiny.sample(Split::kTrain, r, 1, 7, ti.data(), tt.data());
  CHECK(ti.front() == 'a');
  CHECK(tt.back() == 'h');
}

TEST_CASE("text_dataset: same seed gives the same batches, another seed other batches") {
  auto d = TextDataset::from_string(counting_bytes(100000), "mem");
  std::int64_t const batch = 8, t = 32;
  auto draw = [&](std::uint64_t seed, int rounds) {
    Rng rng(seed);
    std::vector<std::int32_t> all, ids(batch * t), targets(batch * t);
    for (int k = 0; k < rounds; ++k) {
      d.sample(Split::kTrain, rng, batch, t, ids.data(), targets.data());
      all.insert(all.end(), ids.begin(), ids.end());
      all.insert(all.end(), targets.begin(), targets.end());
    }
    return all;
  };
  CHECK(draw(42, 3) == draw(42, 3));
  CHECK(draw(42, 3) != draw(43, 3));

  // Restoring the rng position reproduces the stream from there (checkpoint/resume).
  Rng a(9);
  std::vector<std::int32_t> i1(batch * t), t1(batch * t), i2(batch * t), t2(batch * t);
  d.sample(Split::kTrain, a, batch, t, i1.data(), t1.data());
  std::uint64_t pos = a.position();
  d.sample(Split::kTrain, a, batch, t, i1.data(), t1.data());
  Rng b(9);
  b.set_position(pos);
  d.sample(Split::kTrain, b, batch, t, i2.data(), t2.data());
  CHECK(i1 == i2);
  CHECK(t1 == t2);
}

TEST_CASE("text_dataset: evaluation windows cover the split exactly once") {
  for (std::int64_t n_val : {1, 2, 5, 16, 17, 18, 33, 100}) {
    for (std::int64_t t : {1, 4, 16}) {
      // Validation split of exactly n_val bytes: train 4 * n_val, fraction 0.2.
      std::string text = counting_bytes(static_cast<std::size_t>(5 * n_val));
      auto d = TextDataset::from_string(text, "mem", 0.2);
      REQUIRE(d.size(Split::kValidation) == n_val);
      std::int64_t windows = d.num_windows(Split::kValidation, t);
      INFO("n_val ", n_val, " t ", t, " windows ", windows);
      CHECK(windows == (n_val >= t + 1 ? (n_val - 1) / t : 0));
      std::vector<int> predicted(static_cast<std::size_t>(n_val), 0);
      std::vector<std::int32_t> ids(static_cast<std::size_t>(t)), targets(static_cast<std::size_t>(t));
      std::string b = d.text(Split::kValidation);
      for (std::int64_t w = 0; w < windows; ++w) {
        d.window(Split::kValidation, w, t, ids.data(), targets.data());
        for (std::int64_t i = 0; i < t; ++i) {
          auto pos = static_cast<std::size_t>(w * t + i);
          CHECK(ids[static_cast<std::size_t>(i)] == static_cast<unsigned char>(b[pos]));
          CHECK(targets[static_cast<std::size_t>(i)] == static_cast<unsigned char>(b[pos + 1]));
          ++predicted[pos + 1];
        }
      }
      // Bytes 1 .. windows * t are each predicted once; byte 0 and a tail of fewer than t bytes never.
      CHECK(predicted[0] == 0);
      std::int64_t covered = windows * t;
      CHECK(n_val - 1 - covered < t);
      for (std::int64_t p = 1; p < n_val; ++p) CHECK(predicted[static_cast<std::size_t>(p)] == (p <= covered ? 1 : 0));
      if ((n_val - 1) % t == 0) CHECK(covered == n_val - 1);  // then every byte but the first
    }
  }

  auto d = TextDataset::from_string(counting_bytes(100), "mem");
  std::vector<std::int32_t> ids(4), targets(4);
  CHECK(d.num_windows(Split::kTrain, 4) == 22);  // 90 bytes: starts 0, 4, ..., 84 (84 + 5 <= 90)
  CHECK_THROWS_AS(d.window(Split::kTrain, 22, 4, ids.data(), targets.data()), hseq::Error);
  CHECK_THROWS_AS(d.window(Split::kTrain, -1, 4, ids.data(), targets.data()), hseq::Error);
  CHECK(contains(error_of([&] { d.window(Split::kTrain, 22, 4, ids.data(), targets.data()); }), "out of range"));
  CHECK_THROWS_AS(d.num_windows(Split::kTrain, 0), hseq::Error);
}

TEST_CASE("text_dataset: errors name the file") {
  TempPath missing("missing");
  std::string e = error_of([&] { TextDataset d(missing.str()); });
  CHECK(contains(e, missing.str()));
  CHECK(contains(e, "no such file"));

  TempPath empty("empty");
  write_file(empty.str(), "");
  e = error_of([&] { TextDataset d(empty.str()); });
  CHECK(contains(e, empty.str()));
  CHECK(contains(e, "is empty"));
  CHECK(contains(error_of([] { TextDataset::from_string("", "nothing"); }), "nothing is empty"));

  TempPath dir("dir");
  fs::create_directory(dir.path);
  e = error_of([&] { TextDataset d(dir.str()); });
  CHECK(contains(e, dir.str()));
  CHECK(contains(e, "holds no non-empty file"));

  TempPath one("one");
  write_file(one.str(), "x");
  e = error_of([&] { TextDataset d(one.str(), 0.1); });
  CHECK(contains(e, one.str()));
  CHECK(contains(e, "too short to split"));
  TextDataset whole(one.str(), 0.0);  // nothing to split: fine
  CHECK(whole.size(Split::kTrain) == 1);

  for (double f : {-0.1, 0.51, 1.0, std::numeric_limits<double>::quiet_NaN()}) {
    e = error_of([&] { TextDataset::from_string("abcdef", "mem", f); });
    CHECK(contains(e, "val_fraction"));
    CHECK(contains(e, "[0, 0.5]"));
  }
  CHECK(contains(error_of([&] { TextDataset d(one.str(), 0.7); }), "val_fraction"));
}

TEST_CASE("text_dataset: splits too short for the sequence length") {
  auto d = TextDataset::from_string(counting_bytes(100), "short.txt");  // 90 train, 10 validation
  std::vector<std::int32_t> ids(64), targets(64);
  Rng rng(0);
  std::string e = error_of([&] { d.sample(Split::kValidation, rng, 2, 10, ids.data(), targets.data()); });
  CHECK(contains(e, "validation split of short.txt has 10 bytes, too short for sequences of 10 + 1"));
  CHECK(rng.position() == 0);                                           // nothing drawn
  d.sample(Split::kValidation, rng, 2, 9, ids.data(), targets.data());  // exactly t + 1 bytes
  e = error_of([&] { d.sample(Split::kTrain, rng, 1, 90, ids.data(), targets.data()); });
  CHECK(contains(e, "train split of short.txt has 90 bytes, too short for sequences of 90 + 1"));
  CHECK_THROWS_AS(d.sample(Split::kTrain, rng, 1, 0, ids.data(), targets.data()), hseq::Error);
  CHECK_THROWS_AS(d.sample(Split::kTrain, rng, -1, 4, ids.data(), targets.data()), hseq::Error);
  CHECK(d.num_windows(Split::kValidation, 10) == 0);

  auto none = TextDataset::from_string("abcdef", "novalid", 0.0);
  e = error_of([&] { none.sample(Split::kValidation, rng, 1, 1, ids.data(), targets.data()); });
  CHECK(contains(e, "validation split of novalid has 0 bytes"));
}

TEST_CASE("text_dataset: several files or a directory are one text, split and sampled like it") {
  TempPath dir("several");
  fs::create_directories(dir.path / "sub");
  std::string a = counting_bytes(700), b = "second file\n", c;
  for (int i = 0; i < 2500; ++i) c += static_cast<char>(static_cast<unsigned char>((i * 31 + 7) % 256));
  write_file((dir.path / "sub" / "c.txt").string(), c);
  write_file((dir.path / "b.txt").string(), b);
  write_file((dir.path / "a.txt").string(), a);
  std::string all = a + b + c;  // path order: a.txt, b.txt, sub/c.txt
  auto mem = TextDataset::from_string(all, "mem", 0.2);

  // Small windows, so crops and evaluation windows cross windows and files.
  TextDataset by_dir(dir.str(), 0.2, hseq::io::MapOptions{1, 2});
  TextDataset by_list({(dir.path / "sub" / "c.txt").string(), (dir.path / "b.txt").string(), (dir.path / "a.txt").string()}, 0.2);
  for (TextDataset const* d : {&by_dir, &by_list}) {
    CHECK(d->total_size() == static_cast<std::int64_t>(all.size()));
    CHECK(d->files().size() == 3);
    CHECK(d->files().front() == (dir.path / "a.txt").string());
    for (Split s : {Split::kTrain, Split::kValidation}) {
      CHECK(d->size(s) == mem.size(s));
      CHECK(d->text(s) == mem.text(s));
      std::int64_t n = std::min<std::int64_t>(700, d->size(s) - 5);
      CHECK(d->text(s, 5, n) == mem.text(s, 5, n));
      std::int64_t const batch = 5, t = 64;
      std::vector<std::int32_t> i1(batch * t), t1(batch * t), i2(batch * t), t2(batch * t);
      Rng r1(3), r2(3);
      for (int k = 0; k < 10; ++k) {
        d->sample(s, r1, batch, t, i1.data(), t1.data());
        mem.sample(s, r2, batch, t, i2.data(), t2.data());
        REQUIRE(i1 == i2);
        REQUIRE(t1 == t2);
      }
      REQUIRE(d->num_windows(s, t) == mem.num_windows(s, t));
      for (std::int64_t w = 0; w < d->num_windows(s, t); ++w) {
        d->window(s, w, t, i1.data(), t1.data());
        mem.window(s, w, t, i2.data(), t2.data());
        REQUIRE(i1 == i2);
        REQUIRE(t1 == t2);
      }
    }
  }
  CHECK(mem.files().empty());
  // A braced list of string literals is a list of paths.
  std::string const a_path = (dir.path / "a.txt").string(), b_path = (dir.path / "b.txt").string();
  TextDataset two({a_path.c_str(), b_path.c_str()}, 0.0);
  CHECK(two.text(Split::kTrain) == a + b);
  CHECK(contains(error_of([&] { (void)by_dir.text(Split::kValidation, 0, by_dir.size(Split::kValidation) + 1); }),
                 "outside the validation split"));
}

TEST_CASE("text_dataset: the split of a corpus of gigabytes rounds down") {
  // 0.9 * 3 GiB = 2899102924.8: a relative tolerance of 1e-9 (the rule before) took it for
  // 2899102925. The file is sparse: no disk is used, and the dataset only maps what it reads.
  TempPath big("big");
  { std::ofstream(big.str()).put('x'); }
  fs::resize_file(big.path, std::uintmax_t{3} << 30);
  TextDataset d(big.str(), 0.1);
  CHECK(d.total_size() == std::int64_t{3} << 30);
  CHECK(d.size(Split::kTrain) == 2899102924);
  CHECK(d.size(Split::kValidation) == 322122548);
  CHECK(d.text(Split::kTrain, 0, 2) == std::string("x\0", 2));
  CHECK(d.text(Split::kValidation, d.size(Split::kValidation) - 1, 1) == std::string(1, '\0'));
}

TEST_CASE("text_dataset: path_list reads a --data value") {
  TempPath dir("paths");
  fs::create_directory(dir.path);
  std::string comma = (dir.path / "with,comma.txt").string();
  write_file(comma, "abc");
  CHECK(TextDataset::path_list(comma) == std::vector<std::string>{comma});  // an existing path wins
  CHECK(TextDataset::path_list("x.txt,y/,z") == std::vector<std::string>{"x.txt", "y/", "z"});
  CHECK(TextDataset::path_list("only.txt") == std::vector<std::string>{"only.txt"});
  CHECK(TextDataset::path_list("a,,b") == std::vector<std::string>{"a", "", "b"});  // the empty one is refused later
  CHECK(contains(error_of([] { TextDataset d(TextDataset::path_list("a,,b")); }), "an empty path"));
}

}  // namespace HSEQ_TEST_UNIT
