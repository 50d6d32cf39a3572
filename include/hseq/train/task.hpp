// SPDX-License-Identifier: MIT
/// @file
/// @brief `Task`: where a `Trainer`'s batches come from, and the two tasks written so far:
/// `RandomCrops` (independent random windows, the trainer's default) and `SequentialSegments`
/// (consecutive windows per stream, for models that carry state from one batch to the next, such as
/// Transformer-XL).
///
/// WHAT A TASK IS: an object with
///   - `batch()`, `seq_len()`: the shape [batch, seq_len] of one micro-batch;
///   - `next(ids, targets)`: fills host buffers of batch * seq_len int32 each with the next
///     micro-batch (targets < 0 are ignored by the loss);
///   - `continues()`: after `next`, whether the micro-batch just filled continues the previous one
///     in every row (row r starts where the previous batch's row r ended). A trainer calls the
///     model's optional `reset_state(ctx)` before a batch that does not continue, so a model with a
///     memory drops it at the start and after a wrap;
///   - `position()` / `set_position(p)`: where the stream is, as one integer, so that a checkpoint
///     can resume it exactly (the trainer keeps it as `data_pos` in its state JSON, where
///     checkpoints have always held it);
///   - `visit_state(f)`: the same position as named state (a `StatefulPart`, core/state.hpp: one
///     int64 scalar "position"), for code that saves parts generically.
/// A task may also have `seed()`: then the trainer records it as the checkpoint's data seed.
/// And `shard(rank, size)`, for data-parallel training (train/trainer.hpp): the task then draws
/// process `rank`'s part of a global batch of `size` * batch rows, so that `size` processes draw
/// together what one process with `size` times the batch would, and its position stays the global
/// stream's (equal on every process, so a checkpoint resumes under another process count).
#pragma once

#include <concepts>
#include <cstdint>
#include <string>

#include "hseq/core/error.hpp"
#include "hseq/core/rng.hpp"
#include "hseq/core/state.hpp"
#include "hseq/io/text_dataset.hpp"

namespace hseq::train {

// Staged like models::Model: the shape first, then the stream, then the position, so a task missing
// a member gets one error naming it.
// clang-format off
template <class X>
concept Task =
    requires(X const& c) {
      { c.batch() } -> std::convertible_to<std::int64_t>;
      { c.seq_len() } -> std::convertible_to<std::int64_t>;
    } &&
    requires(X& t, X const& c, std::int32_t* ids, std::int32_t* targets) {
      t.next(ids, targets);
      { c.continues() } -> std::convertible_to<bool>;
    } &&
    requires(X& t, X const& c, std::uint64_t p) {
      { c.position() } -> std::convertible_to<std::uint64_t>;
      t.set_position(p);
    } &&
    StatefulPart<X>;
// clang-format on

/// Random crops of the train split: micro-batch rows start at independent uniform offsets drawn
/// from a Philox stream (seed, stream 0xDA7A), exactly `TextDataset::sample` as the trainer has
/// always drawn them, so runs and checkpoints from before tasks existed continue unchanged. The
/// position is the stream's index (one draw per row).
/// Sharded over P processes, process r's micro-batch is rows [r * batch, (r + 1) * batch) of the
/// global micro-batch of P * batch rows, and the position counts the global rows: micro-batch m
/// of process r is micro-batch m * P + r of one process with the same batch (hence that process's
/// micro-batch r of a step with grad_accum P).
class RandomCrops {
 public:
  RandomCrops(io::TextDataset const& data, std::int64_t batch, std::int64_t seq_len, std::uint64_t seed)
      : data_(&data), batch_(batch), seq_len_(seq_len), rng_(seed, 0xDA7A) {
    HSEQ_CHECK(batch > 0 && seq_len > 0, "RandomCrops: batch " << batch << " and seq_len " << seq_len
                                                               << " must be positive");
  }

  std::int64_t batch() const { return batch_; }
  std::int64_t seq_len() const { return seq_len_; }
  std::uint64_t seed() const { return rng_.seed(); }
  void next(std::int32_t* ids, std::int32_t* targets) {
    rng_.set_position(pos_ + std::uint64_t(rank_ * batch_));
    data_->sample(io::TextDataset::Split::kTrain, rng_, batch_, seq_len_, ids, targets);
    pos_ += std::uint64_t(processes_ * batch_);
  }
  /// Process `rank` of `processes` (see the class comment).
  void shard(int rank, int processes) {
    HSEQ_CHECK(processes > 0 && rank >= 0 && rank < processes,
               "RandomCrops::shard: rank " << rank << " of " << processes << " processes");
    rank_ = rank;
    processes_ = processes;
  }
  /// Crops are independent: no batch continues another.
  bool continues() const { return false; }
  std::uint64_t position() const { return pos_; }
  void set_position(std::uint64_t p) { pos_ = p; }

  template <class F>
  void visit_state(F&& f) {
    std::int64_t p = std::int64_t(pos_);
    f(std::string("position"), p);
    pos_ = std::uint64_t(p);  // a loader may have assigned it
  }

 private:
  io::TextDataset const* data_;
  std::int64_t batch_, seq_len_;
  Rng rng_;
  std::uint64_t pos_ = 0;  // global rows drawn
  std::int64_t rank_ = 0, processes_ = 1;
};

/// Consecutive windows in `batch` parallel streams (Transformer-XL's ordered iterator): the train
/// split of n bytes is cut into `batch` segments of L = n / batch bytes; row i reads segment i,
/// starting at byte i * L, in consecutive windows of seq_len (+ 1 for the targets), window j of
/// micro-batch k being j = k mod W with W = (L - 1) / seq_len windows per segment. All rows wrap
/// together, so `continues()` is false for micro-batch 0 and every W-th one after it, true
/// otherwise. The position is the number of micro-batches drawn. Deterministic: no seed.
/// Sharded over P processes, the split is cut into P * batch streams and process r reads streams
/// [r * batch, (r + 1) * batch): together the rows of one process with batch P * batch.
class SequentialSegments {
 public:
  SequentialSegments(io::TextDataset const& data, std::int64_t batch, std::int64_t seq_len)
      : data_(&data), batch_(batch), seq_len_(seq_len) {
    HSEQ_CHECK(batch > 0 && seq_len > 0, "SequentialSegments: batch " << batch << " and seq_len " << seq_len
                                                                      << " must be positive");
    cut(batch);
  }
  /// Process `rank` of `processes` (see the class comment).
  void shard(int rank, int processes) {
    HSEQ_CHECK(processes > 0 && rank >= 0 && rank < processes,
               "SequentialSegments::shard: rank " << rank << " of " << processes << " processes");
    cut(batch_ * processes);
    first_row_ = rank * batch_;
  }

  std::int64_t batch() const { return batch_; }
  std::int64_t seq_len() const { return seq_len_; }
  /// Windows per stream before it wraps.
  std::int64_t windows_per_stream() const { return windows_; }
  /// Byte offset in the train split where row `row` of micro-batch `k` starts.
  std::int64_t offset(std::uint64_t k, std::int64_t row) const {
    return (first_row_ + row) * segment_ + std::int64_t(k % std::uint64_t(windows_)) * seq_len_;
  }

  void next(std::int32_t* ids, std::int32_t* targets) {
    HSEQ_CHECK(ids != nullptr && targets != nullptr, "SequentialSegments::next: null ids or targets");
    auto split = io::TextDataset::Split::kTrain;
    for (std::int64_t r = 0; r < batch_; ++r) {
      std::int64_t at = offset(pos_, r);
      data_->read_ids(split, at, seq_len_, ids + r * seq_len_);
      data_->read_ids(split, at + 1, seq_len_, targets + r * seq_len_);
    }
    continues_ = pos_ % std::uint64_t(windows_) != 0;
    ++pos_;
  }
  bool continues() const { return continues_; }
  std::uint64_t position() const { return pos_; }
  /// Resumes before micro-batch p; `continues()` then describes micro-batch p - 1 until `next`.
  void set_position(std::uint64_t p) {
    pos_ = p;
    continues_ = p > 0 && (p - 1) % std::uint64_t(windows_) != 0;
  }

  template <class F>
  void visit_state(F&& f) {
    std::int64_t p = std::int64_t(pos_);
    f(std::string("position"), p);
    set_position(std::uint64_t(p));
  }

 private:
  /// Cuts the train split into `streams` segments.
  void cut(std::int64_t streams) {
    std::int64_t const n = data_->size(io::TextDataset::Split::kTrain);
    segment_ = n / streams;
    windows_ = segment_ >= 1 ? (segment_ - 1) / seq_len_ : 0;
    HSEQ_CHECK(windows_ >= 1, "SequentialSegments: the train split of "
                                  << data_->name() << " (" << n << " bytes) cut into " << streams
                                  << " streams gives segments of " << segment_ << " bytes, too short for one window of "
                                  << seq_len_ << " + 1");
  }

  io::TextDataset const* data_;
  std::int64_t batch_, seq_len_;
  std::int64_t segment_ = 0, windows_ = 0;
  std::int64_t first_row_ = 0;  // this process's first stream
  std::uint64_t pos_ = 0;
  bool continues_ = false;
};

static_assert(Task<RandomCrops>);
static_assert(Task<SequentialSegments>);

}  // namespace hseq::train
