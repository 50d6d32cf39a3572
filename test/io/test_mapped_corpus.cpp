// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "hseq/core/error.hpp"
#include "hseq/io/mapped_corpus.hpp"
#include "support/temp_dir.hpp"
#include "support/errors.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using hseq::test::contains;
using hseq::test::error_of;

using hseq::io::MapOptions;
using hseq::io::MappedCorpus;
namespace fs = std::filesystem;

namespace {

void write_file(std::string const& path, std::string const& content) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(content.data(), static_cast<std::streamsize>(content.size()));
  REQUIRE(out.good());
}

/// n bytes of a pseudo-random text that differs from file to file (seed), every byte value present.
std::string noise(std::size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(gen() & 0xff);
  return s;
}

std::string read_all(MappedCorpus const& c, std::int64_t offset, std::int64_t n) {
  std::string out(static_cast<std::size_t>(n), '\0');
  c.read(offset, n, reinterpret_cast<unsigned char*>(out.data()));
  return out;
}

std::int64_t page() { return static_cast<std::int64_t>(::sysconf(_SC_PAGESIZE)); }

}  // namespace

TEST_CASE("mapped_corpus: reads equal the concatenated files through few small windows") {
  hseq::test::TempDir tmp("hseq_mapped");
  std::int64_t const pg = page();
  // Sizes around window boundaries: smaller than a window, exactly one, one byte more, several.
  std::vector<std::int64_t> sizes = {1, pg - 1, pg, pg + 1, 3 * pg + 17, 5};
  std::vector<std::string> paths;
  std::string all;
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    std::string text = noise(static_cast<std::size_t>(sizes[i]), 100 + static_cast<unsigned>(i));
    std::string path = tmp.file("f" + std::to_string(i) + ".txt");
    write_file(path, text);
    paths.push_back(path);
    all += text;
  }
  // Windows of one page (window_bytes 1 rounds up to it), two of them mapped at most.
  MappedCorpus c(paths, MapOptions{1, 2});
  REQUIRE(c.size() == static_cast<std::int64_t>(all.size()));
  CHECK(c.paths() == paths);
  CHECK(read_all(c, 0, c.size()) == all);
  std::mt19937 gen(7);
  for (int k = 0; k < 2000; ++k) {
    std::int64_t n = static_cast<std::int64_t>(gen() % (2 * static_cast<unsigned>(pg) + 3));
    if (n > c.size()) n = c.size();
    std::int64_t off = static_cast<std::int64_t>(gen() % static_cast<unsigned>(c.size() - n + 1));
    REQUIRE(read_all(c, off, n) == all.substr(static_cast<std::size_t>(off), static_cast<std::size_t>(n)));
    REQUIRE(c.mapped_windows() <= 2);
  }
  CHECK(c.mapped_windows() == 2);
  // Pieces never cross a window or a file, and come in order.
  std::int64_t expect = 0;
  c.for_each_piece(0, c.size(), [&](unsigned char const* p, std::int64_t len) {
    CHECK(len >= 1);
    CHECK(len <= pg);
    CHECK(std::string(reinterpret_cast<char const*>(p), static_cast<std::size_t>(len)) ==
          all.substr(static_cast<std::size_t>(expect), static_cast<std::size_t>(len)));
    expect += len;
  });
  CHECK(expect == c.size());
  // An empty read at the very end is fine.
  CHECK(read_all(c, c.size(), 0).empty());
}

TEST_CASE("mapped_corpus: a directory is its non-empty, non-hidden files in path order") {
  hseq::test::TempDir tmp("hseq_mapped_dir");
  // Created in an order unlike the path order, so a listing's order cannot pass for the sorted one.
  write_file(tmp.file("c/z.txt"), "ZZ");
  write_file(tmp.file("b.txt"), "BB");
  write_file(tmp.file("a/y.txt"), "YY");
  write_file(tmp.file("a/x.txt"), "XX");
  write_file(tmp.file("empty.txt"), "");
  write_file(tmp.file(".hidden"), "hidden");
  write_file(tmp.file(".git/objects/o"), "object");
  write_file(tmp.file("a/.swap.swp"), "swap");
  MappedCorpus c({tmp.dir.string()});
  CHECK(read_all(c, 0, c.size()) == "XXYYBBZZ");
  CHECK(c.paths() == std::vector<std::string>{tmp.file("a/x.txt"), tmp.file("a/y.txt"), tmp.file("b.txt"), tmp.file("c/z.txt")});

  // The order of the paths given does not matter either, and a file named twice is read once.
  MappedCorpus d({tmp.file("c/z.txt"), tmp.file("b.txt"), tmp.dir.string() + "/a", tmp.file("b.txt")});
  CHECK(read_all(d, 0, d.size()) == "XXYYBBZZ");
}

TEST_CASE("mapped_corpus: errors name what is wrong") {
  hseq::test::TempDir tmp("hseq_mapped_err");
  std::string e = error_of([&] { MappedCorpus c({tmp.file("missing.txt")}); });
  CHECK(contains(e, tmp.file("missing.txt")));
  CHECK(contains(e, "no such file or directory"));

  write_file(tmp.file("empty.txt"), "");
  e = error_of([&] { MappedCorpus c({tmp.file("empty.txt")}); });
  CHECK(contains(e, tmp.file("empty.txt") + " is empty"));

  fs::create_directories(tmp.file("nothing/.hidden"));
  write_file(tmp.file("nothing/.hidden/x"), "x");
  write_file(tmp.file("nothing/blank"), "");
  e = error_of([&] { MappedCorpus c({tmp.file("nothing")}); });
  CHECK(contains(e, "the directory " + tmp.file("nothing") + " holds no non-empty file"));

  CHECK(contains(error_of([] { MappedCorpus c(std::vector<std::string>{}); }), "no file or directory given"));
  CHECK(contains(error_of([] { MappedCorpus c({""}); }), "an empty path"));
  write_file(tmp.file("ok.txt"), "abcdef");
  CHECK(contains(error_of([&] { MappedCorpus c({tmp.file("ok.txt")}, MapOptions{0, 1}); }), "must be positive"));
  CHECK(contains(error_of([&] { MappedCorpus c({tmp.file("ok.txt")}, MapOptions{4096, 0}); }), "must be positive"));

  MappedCorpus c({tmp.file("ok.txt")});
  unsigned char buf[8];
  CHECK(contains(error_of([&] { c.read(4, 3, buf); }), "bytes [4, 7) are outside the corpus of 6 bytes"));
  CHECK(contains(error_of([&] { c.read(-1, 1, buf); }), "outside the corpus"));
  CHECK(contains(error_of([&] { c.read(0, -1, buf); }), "outside the corpus"));
}

TEST_CASE("mapped_corpus: a file that shrinks while in use is an error, not a crash") {
  hseq::test::TempDir tmp("hseq_mapped_shrink");
  std::int64_t const pg = page();
  std::string text = noise(static_cast<std::size_t>(3 * pg), 5);
  write_file(tmp.file("f.txt"), text);
  MappedCorpus c({tmp.file("f.txt")}, MapOptions{1, 1});
  CHECK(read_all(c, 0, 10) == text.substr(0, 10));
  fs::resize_file(tmp.file("f.txt"), static_cast<std::uintmax_t>(pg));
  // The next window to be mapped finds the file shorter than when the corpus was opened.
  std::string e = error_of([&] { read_all(c, 2 * pg, 10); });
  CHECK(contains(e, tmp.file("f.txt") + " changed while in use"));
}

TEST_CASE("mapped_corpus: concurrent reads from several threads") {
  hseq::test::TempDir tmp("hseq_mapped_threads");
  std::string all = noise(static_cast<std::size_t>(9 * page() + 123), 11);
  write_file(tmp.file("f.txt"), all);
  MappedCorpus c({tmp.file("f.txt")}, MapOptions{1, 3});
  std::vector<int> bad(4, 0);
  std::vector<std::thread> threads;
  for (int w = 0; w < 4; ++w) {
    threads.emplace_back([&, w] {
      std::mt19937 gen(static_cast<unsigned>(w));
      for (int k = 0; k < 500; ++k) {
        std::int64_t n = static_cast<std::int64_t>(gen() % 5000);
        std::int64_t off = static_cast<std::int64_t>(gen() % static_cast<unsigned>(c.size() - n + 1));
        if (read_all(c, off, n) != all.substr(static_cast<std::size_t>(off), static_cast<std::size_t>(n))) ++bad[static_cast<std::size_t>(w)];
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(bad == std::vector<int>(4, 0));
}

}  // namespace HSEQ_TEST_UNIT
