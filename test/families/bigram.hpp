// SPDX-License-Identifier: MIT
/// @file
/// @brief A toy model family in one file: the acceptance test of the model protocol (issue 9).
///
/// `toy::Bigram` predicts the next byte from the current one alone: logits[b, t] = W[ids[b, t]],
/// one [vocab, vocab] table, trained with the mean next-token cross-entropy. It satisfies
/// `hseq::models::CachedModel` (its cache holds nothing: a bigram needs no history), and
/// `cli::BigramFamily` makes it a family of the programs. The test build adds it through one line
/// in test/families/list.def (test programs hseq-train-toy, hseq-eval-toy, hseq-generate-toy) and
/// test/examples/test_toy_family.cpp drives it through the library; nothing else names it.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "hseq/backend/backend.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/workspace.hpp"
#include "hseq/models/flops.hpp"
#include "hseq/nn/embedding.hpp"
#include "hseq/ops/cross_entropy.hpp"
#include "hseq/ops/elementwise.hpp"
#include "programs.hpp"

namespace toy {

template <hseq::Backend B, class T>
class Bigram {
 public:
  using Space = typename B::Space;
  using Ctx = typename B::Context;
  using MView = hseq::View<T, Space>;
  using Ids = hseq::View<std::int32_t const, Space>;
  using Table = hseq::nn::Embedding<B, T>;

  static constexpr char const* kKind = "bigram";

  struct Config {
    std::int64_t vocab = 256;
    std::int64_t context = 128;  ///< longest sequence (a bigram has no limit; the programs use it)
    double init_std = 0.02;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(Config, vocab, context, init_std)
  };
  struct Trace {
    std::int64_t counted = 0;
    double loss = std::numeric_limits<double>::quiet_NaN();
    Ids targets;
    typename Table::Saved table;
    MView logits;  // [B, T, vocab]; dlogits after backward
  };
  struct Cache {
    std::int64_t batch = 0, capacity = 0;
  };

  explicit Bigram(Config c) : cfg_(check(c)), table_({c.vocab, c.vocab, c.init_std}) {}
  Bigram(Bigram const&) = delete;
  Bigram& operator=(Bigram const&) = delete;

  Config const& config() const { return cfg_; }
  std::string config_json() const { return nlohmann::json(cfg_).dump(); }
  static Config config_from_json(std::string const& text) {
    try {
      return nlohmann::json::parse(text).get<Config>();
    } catch (nlohmann::json::exception const& e) {
      HSEQ_FAIL("Bigram: invalid config JSON '" << text << "': " << e.what());
    }
  }
  template <class F>
  void visit_params(F&& f, std::string const& prefix = "") {
    table_.visit_params(f, prefix + "next.");
  }

  std::size_t forward_workspace(std::int64_t batch, std::int64_t t) const {
    return hseq::aligned_bytes<T>(batch * t * cfg_.vocab) + hseq::aligned_bytes<T>(batch * t);
  }
  std::size_t backward_workspace(std::int64_t, std::int64_t) const { return 0; }

  /// logits = W[ids] [B, T, vocab]; with targets, the mean cross-entropy in nats.
  double forward(Ctx& ctx, Ids ids, Ids targets, hseq::Arena<Space>& ws, Trace& tr) const {
    HSEQ_CHECK(ids.rank() == 2 && ids.numel() > 0, "Bigram: ids " << ids.shape << " must be [B, T]");
    std::int64_t n = ids.numel();
    tr.logits = ws.template take<T>(hseq::Shape{ids.size(0), ids.size(1), cfg_.vocab}, "bigram.logits");
    tr.table = table_.forward(ctx, ids, tr.logits, ws);
    tr.targets = targets;
    tr.counted = 0;
    tr.loss = std::numeric_limits<double>::quiet_NaN();
    if (!targets.empty()) {
      MView losses = ws.template take<T>(hseq::Shape{n}, "bigram.losses");
      tr.counted = hseq::ops::cross_entropy_forward<T>(ctx, tr.logits, targets, losses);
      HSEQ_CHECK(tr.counted > 0, "Bigram: every target is ignored");
      tr.loss = hseq::ops::sum<T>(ctx, losses) / double(tr.counted);
    }
    return tr.loss;
  }
  void backward(Ctx& ctx, Trace& tr, hseq::Arena<Space>& ws) const {
    HSEQ_CHECK(tr.counted > 0, "Bigram::backward: the forward had no targets");
    hseq::ops::cross_entropy_backward<T>(ctx, tr.logits, tr.targets, T(1.0 / double(tr.counted)), tr.logits);
    table_.backward(ctx, tr.table, tr.logits, ws);
  }

  Cache make_cache(std::int64_t batch, std::int64_t capacity) const {
    HSEQ_CHECK(batch > 0 && capacity > 0 && capacity <= cfg_.context,
               "Bigram::make_cache: batch " << batch << ", capacity " << capacity << " (context " << cfg_.context << ")");
    return {batch, capacity};
  }
  void reset_cache(Cache&) const {}
  std::size_t step_workspace(std::int64_t, std::int64_t, std::int64_t) const { return 0; }
  void forward_step(Ctx& ctx, Ids ids, Cache& cache, std::int64_t pos, MView logits, hseq::Arena<Space>& ws) const {
    HSEQ_CHECK(ids.rank() == 2 && ids.size(0) == cache.batch && pos + ids.size(1) <= cache.capacity,
               "Bigram::forward_step: ids " << ids.shape << " at " << pos << " for a cache of batch " << cache.batch
                                            << ", capacity " << cache.capacity);
    table_.forward(ctx, ids, logits, ws);
  }

  /// Model FLOPs per token (models/flops.hpp): none. The table is read by lookup, an embedding by
  /// that count's rules; the cross-entropy over the vocab logits is outside it, as every model's
  /// loss is.
  hseq::models::FlopCount flops(std::int64_t /*t*/) const { return hseq::models::FlopCount{}.add_embedding(table_); }

 private:
  static Config check(Config c) {
    HSEQ_CHECK(c.vocab > 0 && c.context > 0, "Bigram: vocab " << c.vocab << ", context " << c.context
                                                               << " must be positive");
    return c;
  }
  Config cfg_;
  Table table_;
};

}  // namespace toy

namespace cli {

struct BigramFamily {
  static constexpr char const* kModel = "bigram";
  static constexpr char const* kHelp = "toy next-byte table (tests the family protocol)";
  using Policies = cli::Policies<>;
  template <class...>
  using Model = toy::Bigram<Backend, Real>;

  static void add_flags(Args& a) {
    a.flag("context", "128", "longest sequence the model sees (learned position table length)");
  }
  template <class M>
  static void apply_flags(FlagReader const& r, typename M::Config& c) {
    r.integer("context", c.context);
  }
  /// One tiny benchmark row (a new family reaches the benchmark table through this list alone).
  static std::vector<BenchCase> bench_cases() { return {{"small", {}, {{1, 64}}}}; }
};

}  // namespace cli
