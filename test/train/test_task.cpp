// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "hseq/core/rng.hpp"
#include "hseq/core/state.hpp"
#include "hseq/io/text_dataset.hpp"
#include "hseq/train/task.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using Split = io::TextDataset::Split;

namespace {
std::string corpus() {
  std::string s;
  for (int i = 0; i < 40; ++i) s += "line " + std::to_string(i) + ": the quick brown fox.\n";
  return s;
}
struct Batch {
  std::vector<std::int32_t> ids, targets;
  Batch(std::int64_t b, std::int64_t t) : ids(std::size_t(b * t)), targets(std::size_t(b * t)) {}
};
// A task without continues(): not a Task.
struct NoContinues {
  std::int64_t batch() const { return 1; }
  std::int64_t seq_len() const { return 1; }
  void next(std::int32_t*, std::int32_t*) {}
  std::uint64_t position() const { return 0; }
  void set_position(std::uint64_t) {}
  template <class F>
  void visit_state(F&&) {}
};
}  // namespace

static_assert(train::Task<train::RandomCrops>);
static_assert(train::Task<train::SequentialSegments>);
static_assert(!train::Task<NoContinues>);
static_assert(!train::Task<int>);

TEST_CASE("task: RandomCrops draws exactly TextDataset::sample's stream (seed, stream 0xDA7A), and resumes from its position") {
  auto data = io::TextDataset::from_string(corpus(), "corpus", 0.1);
  std::int64_t const b = 3, t = 7;
  train::RandomCrops task(data, b, t, 1234);
  CHECK(task.batch() == b);
  CHECK(task.seq_len() == t);
  CHECK(task.seed() == 1234);
  Rng rng(1234, 0xDA7A);
  Batch got(b, t), want(b, t);
  std::uint64_t pos_after_2 = 0;
  std::vector<std::int32_t> third;
  for (int k = 0; k < 4; ++k) {
    task.next(got.ids.data(), got.targets.data());
    data.sample(Split::kTrain, rng, b, t, want.ids.data(), want.targets.data());
    CHECK_FALSE(task.continues());
    CHECK(got.ids == want.ids);
    CHECK(got.targets == want.targets);
    CHECK(task.position() == rng.position());
    if (k == 1) pos_after_2 = task.position();
    if (k == 2) third = got.ids;
  }
  CHECK(pos_after_2 == std::uint64_t(2 * b));  // one draw per row
  // Another object set to the position after two batches draws the third batch next.
  train::RandomCrops resumed(data, b, t, 1234);
  resumed.set_position(pos_after_2);
  resumed.next(got.ids.data(), got.targets.data());
  CHECK(got.ids == third);
  // Another seed is another stream.
  train::RandomCrops other(data, b, t, 99);
  other.next(got.ids.data(), got.targets.data());
  train::RandomCrops first(data, b, t, 1234);
  first.next(want.ids.data(), want.targets.data());
  CHECK(got.ids != want.ids);
}

TEST_CASE("task: the position is named state that a loader can read and write") {
  auto data = io::TextDataset::from_string(corpus(), "corpus", 0.1);
  train::RandomCrops crops(data, 2, 5, 7);
  train::SequentialSegments seq(data, 2, 5);
  Batch batch(2, 5);
  crops.next(batch.ids.data(), batch.targets.data());
  seq.next(batch.ids.data(), batch.targets.data());
  seq.next(batch.ids.data(), batch.targets.data());
  auto read_then_write = [](auto& task, std::int64_t value) {
    std::vector<std::string> names;
    std::int64_t seen = -1;
    task.visit_state([&](std::string const& name, auto& x) {
      if constexpr (std::is_same_v<std::decay_t<decltype(x)>, std::int64_t>) {
        names.push_back(name);
        seen = x;
        x = value;
      }
    });
    CHECK(names == std::vector<std::string>{"position"});
    return seen;
  };
  CHECK(read_then_write(crops, 40) == 2);  // two rows drawn
  CHECK(crops.position() == 40);
  CHECK(read_then_write(seq, 5) == 2);  // two micro-batches drawn
  CHECK(seq.position() == 5);
}

TEST_CASE("task: SequentialSegments reads consecutive windows per stream and wraps all streams together") {
  // Train split of 1000 bytes with distinct-enough content: byte i = i % 251.
  std::string text;
  for (int i = 0; i < 1000; ++i) text.push_back(char(i % 251));
  auto data = io::TextDataset::from_string(text, "bytes", 0.0);
  REQUIRE(data.size(Split::kTrain) == 1000);
  std::int64_t const b = 4, t = 30;
  train::SequentialSegments task(data, b, t);
  // Segments of 250 bytes; (250 - 1) / 30 = 8 windows each.
  REQUIRE(task.windows_per_stream() == 8);
  auto train_bytes = data.text(Split::kTrain);
  Batch batch(b, t);
  for (std::uint64_t k = 0; k < 20; ++k) {
    CAPTURE(k);
    CHECK(task.position() == k);
    task.next(batch.ids.data(), batch.targets.data());
    CHECK(task.continues() == (k % 8 != 0));  // false at the start and after each wrap
    for (std::int64_t r = 0; r < b; ++r) {
      std::int64_t start = r * 250 + std::int64_t(k % 8) * t;
      CHECK(task.offset(k, r) == start);
      for (std::int64_t i = 0; i < t; ++i) {
        REQUIRE(batch.ids[std::size_t(r * t + i)] == std::int32_t(static_cast<unsigned char>(train_bytes[std::size_t(start + i)])));
        REQUIRE(batch.targets[std::size_t(r * t + i)] ==
                std::int32_t(static_cast<unsigned char>(train_bytes[std::size_t(start + i + 1)])));
      }
      // Row r of batch k + 1 starts where row r of batch k ended (unless it wraps).
      if ((k + 1) % 8 != 0) CHECK(task.offset(k + 1, r) == start + t);
    }
  }
  // The last window of a segment stays inside it (targets included).
  CHECK(task.offset(7, 3) + t + 1 <= 1000);
  CHECK(task.offset(7, 0) + t + 1 <= 250);

  // Resuming at a position continues the stream, and continues() is right before the next batch.
  train::SequentialSegments resumed(data, b, t);
  resumed.set_position(9);
  CHECK(resumed.continues() == false);  // batch 8 was a wrap
  resumed.next(batch.ids.data(), batch.targets.data());
  CHECK(resumed.continues() == true);
  CHECK(batch.ids[0] == std::int32_t(static_cast<unsigned char>(train_bytes[std::size_t(t)])));  // window 1 of row 0
}

TEST_CASE("task: SequentialSegments refuses a split too short for its streams, naming the sizes") {
  std::string text(100, 'a');
  auto data = io::TextDataset::from_string(text, "short", 0.0);
  CHECK_THROWS_WITH_AS(train::SequentialSegments(data, 4, 30), doctest::Contains("segments of 25 bytes"), Error);
  CHECK_THROWS_AS(train::SequentialSegments(data, 0, 30), Error);
  CHECK_NOTHROW(train::SequentialSegments(data, 4, 24));
}

TEST_CASE("task: sharded over P processes, RandomCrops and SequentialSegments draw together what one process with "
          "P times the batch draws, and keep one global position") {
  auto data = io::TextDataset::from_string(corpus(), "lines", 0.1);
  std::int64_t const b = 2, t = 8;
  for (int p : {2, 3}) {
    CAPTURE(p);
    // RandomCrops: micro-batch m of process r is rows [r b, (r + 1) b) of micro-batch m of one
    // process with batch P b; the position counts all processes' rows.
    train::RandomCrops wide(data, p * b, t, 5);
    std::vector<train::RandomCrops> shards;
    for (int r = 0; r < p; ++r) {
      shards.emplace_back(data, b, t, 5);
      shards.back().shard(r, p);
    }
    for (int m = 0; m < 3; ++m) {
      Batch all(p * b, t);
      wide.next(all.ids.data(), all.targets.data());
      for (int r = 0; r < p; ++r) {
        Batch mine(b, t);
        shards[std::size_t(r)].next(mine.ids.data(), mine.targets.data());
        auto const from = std::size_t(r * b * t);
        CHECK(std::equal(mine.ids.begin(), mine.ids.end(), all.ids.begin() + std::ptrdiff_t(from)));
        CHECK(std::equal(mine.targets.begin(), mine.targets.end(), all.targets.begin() + std::ptrdiff_t(from)));
        CHECK(shards[std::size_t(r)].position() == wide.position());
      }
    }
    // A shard resumed at the global position continues its own rows.
    train::RandomCrops again(data, b, t, 5);
    again.shard(1, p);
    again.set_position(shards[1].position());
    Batch x(b, t), y(b, t);
    again.next(x.ids.data(), x.targets.data());
    shards[1].next(y.ids.data(), y.targets.data());
    CHECK(x.ids == y.ids);
    // SequentialSegments: process r reads streams [r b, (r + 1) b) of P b streams.
    train::SequentialSegments seq_wide(data, p * b, t);
    std::vector<train::SequentialSegments> seq;
    for (int r = 0; r < p; ++r) {
      seq.emplace_back(data, b, t);
      seq.back().shard(r, p);
      CHECK(seq.back().windows_per_stream() == seq_wide.windows_per_stream());
    }
    for (int m = 0; m < 4; ++m) {
      Batch all(p * b, t);
      seq_wide.next(all.ids.data(), all.targets.data());
      for (int r = 0; r < p; ++r) {
        Batch mine(b, t);
        seq[std::size_t(r)].next(mine.ids.data(), mine.targets.data());
        CHECK(std::equal(mine.ids.begin(), mine.ids.end(), all.ids.begin() + std::ptrdiff_t(r * b * t)));
        CHECK(seq[std::size_t(r)].continues() == seq_wide.continues());
        CHECK(seq[std::size_t(r)].position() == seq_wide.position());
      }
    }
  }
  train::RandomCrops bad(data, b, t, 5);
  CHECK_THROWS_WITH_AS(bad.shard(2, 2), doctest::Contains("rank 2 of 2 processes"), std::exception);
  train::SequentialSegments too_many(data, b, t);
  CHECK_THROWS_WITH_AS(too_many.shard(0, 1000), doctest::Contains("too short"), std::exception);
}

}  // namespace HSEQ_TEST_UNIT
