// SPDX-License-Identifier: MIT
/// @file
/// @brief `Embedding`: rows of a [vocab, dim] table gathered by integer ids.
#pragma once

#include <cstdint>
#include <string>

#include "hseq/backend/backend.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/workspace.hpp"
#include "hseq/nn/module.hpp"
#include "hseq/nn/parameter.hpp"
#include "hseq/ops/embedding.hpp"

namespace hseq::nn {

template <Backend B, class T>
class Embedding {
 public:
  using Space = typename B::Space;
  using Ctx = typename B::Context;
  using CView = View<T const, Space>;
  using MView = View<T, Space>;
  using Ids = View<std::int32_t const, Space>;

  struct Config {
    std::int64_t vocab = 0, dim = 0;
    double init_std = 0.02;
  };
  struct Saved {
    Ids ids;  // [N]
  };

  explicit Embedding(Config c) : cfg_(c) {
    HSEQ_CHECK(c.vocab > 0 && c.dim > 0, "Embedding: sizes must be positive, got vocab " << c.vocab << ", dim " << c.dim);
    table_ = Param<T, Space>(Shape{c.vocab, c.dim}, InitSpec::normal(c.init_std), false);
  }
  Config const& config() const { return cfg_; }

  template <class F>
  void visit_params(F&& f, std::string const& prefix = "") {
    f(prefix + "weight", table_);
  }
  Param<T, Space> const& table() const { return table_; }

  std::size_t forward_workspace(std::int64_t /*rows*/) const { return 0; }
  std::size_t backward_workspace(std::int64_t /*rows*/) const { return 0; }

  /// out[n, :] = table[ids[n], :]; ids: [N] (any shape), out: [N, dim].
  Saved forward(Ctx& ctx, Ids ids, MView out, Arena<Space>& /*ws*/) const {
    HSEQ_CHECK(out.cols() == cfg_.dim && out.rows() == ids.numel(),
               "Embedding(" << cfg_.vocab << ", " << cfg_.dim << "): ids " << ids.shape << ", out " << out.shape);
    ops::embedding_forward<T>(ctx, table_.value, ids, out);
    return Saved{ids};
  }

  /// table.grad[ids[n]] += dout[n] (ids have no gradient); nothing when the table is frozen.
  void backward(Ctx& ctx, Saved const& s, CView dout, Arena<Space>& /*ws*/) const {
    if (!table_.frozen) ops::embedding_backward<T>(ctx, s.ids, dout, table_.grad);
  }

 private:
  Config cfg_;
  Param<T, Space> table_;
};

}  // namespace hseq::nn
