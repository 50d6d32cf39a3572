// SPDX-License-Identifier: MIT
// Fuzz harness: the dataset reader (hseq/io/text_dataset.hpp over hseq/io/mapped_corpus.hpp). The
// input's first two bytes choose the validation fraction and the window size and count; the rest,
// cut at each 0xFF byte, becomes up to six files of a directory, written in an order unlike their
// path order. The dataset over that directory (mapped, through windows of one to four pages)
// must equal the in-memory dataset of the files' concatenation in path order: both refuse the
// input, or both have the same splits, crops for the same seed and evaluation windows.
#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "fuzz_support.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/rng.hpp"
#include "hseq/io/text_dataset.hpp"

namespace {

using hseq::io::TextDataset;
using Split = TextDataset::Split;

void check_same(TextDataset const& m, TextDataset const& r) {
  HSEQ_FUZZ_ASSERT(m.total_size() == r.total_size());
  for (Split s : {Split::kTrain, Split::kValidation}) {
    HSEQ_FUZZ_ASSERT(m.size(s) == r.size(s));
    HSEQ_FUZZ_ASSERT(m.text(s) == r.text(s));
    for (std::int64_t t : {1, 3, 64, 700}) {
      if (r.size(s) < t + 1) continue;
      std::vector<std::int32_t> a(static_cast<std::size_t>(3 * t)), b(a.size()), c(a.size()), d(a.size());
      hseq::Rng x(static_cast<std::uint64_t>(t)), y(static_cast<std::uint64_t>(t));
      m.sample(s, x, 3, t, a.data(), b.data());
      r.sample(s, y, 3, t, c.data(), d.data());
      HSEQ_FUZZ_ASSERT(a == c && b == d);
      std::int64_t n = r.num_windows(s, t);
      HSEQ_FUZZ_ASSERT(m.num_windows(s, t) == n);
      for (std::int64_t w = 0; w < n && w < 50; ++w) {
        m.window(s, w, t, a.data(), b.data());
        r.window(s, w, t, c.data(), d.data());
        HSEQ_FUZZ_ASSERT(std::equal(a.begin(), a.begin() + t, c.begin()) && std::equal(b.begin(), b.begin() + t, d.begin()));
      }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size) {
  namespace fs = std::filesystem;
  if (size < 2) return 0;
  double fraction = static_cast<double>(data[0] % 51) / 100.0;  // 0 .. 0.5
  hseq::io::MapOptions map{static_cast<std::int64_t>(1 + data[1] % 4) * 4096, 1 + (data[1] >> 4) % 3};
  std::vector<std::string> parts(1);
  for (std::size_t i = 2; i < size; ++i) {
    if (data[i] == 0xFF && parts.size() < 6) parts.emplace_back();
    else parts.back() += static_cast<char>(data[i]);
  }
  fs::path dir = hseq::fuzz::scratch() / "corpus";
  std::error_code ec;
  fs::remove_all(dir, ec);
  fs::create_directories(dir);
  // File i is named so that path order reverses writing order; empty files are skipped by both.
  std::string all;
  for (std::size_t i = parts.size(); i-- > 0;) {
    std::string name = std::string(1, static_cast<char>('a' + i)) + ".txt";
    hseq::fuzz::write_bytes((dir / name).string(), reinterpret_cast<std::uint8_t const*>(parts[i].data()), parts[i].size());
  }
  for (auto const& p : parts) all += p;

  std::optional<TextDataset> mapped, memory;
  try {
    mapped.emplace(dir.string(), fraction, map);
  } catch (hseq::Error const&) {
  }
  try {
    memory.emplace(TextDataset::from_string(all, "memory", fraction));
  } catch (hseq::Error const&) {
  }
  HSEQ_FUZZ_ASSERT(mapped.has_value() == memory.has_value());
  if (mapped) check_same(*mapped, *memory);
  return 0;
}
