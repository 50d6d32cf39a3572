// SPDX-License-Identifier: MIT
/// @file
/// @brief `PositionEmbedding`: adds a learned table row or a sinusoid to each position of [B, T, C].
#pragma once

#include <cstdint>
#include <string>

#include "hseq/backend/backend.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/workspace.hpp"
#include "hseq/nn/module.hpp"
#include "hseq/nn/parameter.hpp"
#include "hseq/ops/elementwise.hpp"
#include "hseq/ops/position.hpp"

namespace hseq::nn {

/// Which position encoding a model uses.
enum class PositionKind { kLearned, kSinusoidal, kNone };

/// The name of a position encoding in configurations ("learned", "sinusoidal", "none").
inline char const* position_kind_name(PositionKind k) {
  return k == PositionKind::kLearned ? "learned" : k == PositionKind::kSinusoidal ? "sinusoidal" : "none";
}
/// Inverse of position_kind_name; `who` prefixes the error for an unknown name.
inline PositionKind position_kind_from_name(std::string const& s, char const* who = "PositionKind") {
  if (s == "learned") return PositionKind::kLearned;
  if (s == "sinusoidal") return PositionKind::kSinusoidal;
  if (s == "none") return PositionKind::kNone;
  HSEQ_FAIL(who << ": unknown position encoding '" << s << "' (known: learned, sinusoidal, none)");
}
/// nlohmann::json serialisation (found by ADL) as the name string. Templates over the JSON type,
/// as NLOHMANN_JSON_SERIALIZE_ENUM writes them, so this header needs no JSON include; unlike that
/// macro, an unknown name is an error instead of silently the first value.
template <class Json>
void to_json(Json& j, PositionKind k) {
  j = position_kind_name(k);
}
template <class Json>
void from_json(Json const& j, PositionKind& k) {
  k = position_kind_from_name(j.template get<std::string>());
}

template <Backend B, class T>
class PositionEmbedding {
 public:
  using Space = typename B::Space;
  using Ctx = typename B::Context;
  using CView = View<T const, Space>;
  using MView = View<T, Space>;

  struct Config {
    PositionKind kind = PositionKind::kLearned;
    std::int64_t max_len = 0, dim = 0;
    double init_std = 0.02;
  };
  struct Saved {
    std::int64_t offset = 0;
  };

  explicit PositionEmbedding(Config c) : cfg_(c) {
    HSEQ_CHECK(c.dim > 0, "PositionEmbedding: dim must be positive, got " << c.dim);
    HSEQ_CHECK(c.kind != PositionKind::kLearned || c.max_len > 0,
               "PositionEmbedding: a learned table needs max_len > 0, got " << c.max_len);
    HSEQ_CHECK(c.kind != PositionKind::kSinusoidal || c.dim % 2 == 0,
               "PositionEmbedding: sinusoidal encodings need an even dim, got " << c.dim);
    if (c.kind == PositionKind::kLearned)
      table_ = Param<T, Space>(Shape{c.max_len, c.dim}, InitSpec::normal(c.init_std), false);
  }
  Config const& config() const { return cfg_; }

  template <class F>
  void visit_params(F&& f, std::string const& prefix = "") {
    if (cfg_.kind == PositionKind::kLearned) f(prefix + "weight", table_);
  }

  std::size_t forward_workspace(std::int64_t, std::int64_t) const { return 0; }
  std::size_t backward_workspace(std::int64_t, std::int64_t) const { return 0; }

  /// y[b, t] = x[b, t] + P[offset + t]; x, y: [B, T, dim] (y may alias x).
  Saved forward(Ctx& ctx, CView x, MView y, std::int64_t offset, Arena<Space>& /*ws*/) const {
    HSEQ_CHECK(x.rank() == 3 && x.size(2) == cfg_.dim && y.shape == x.shape,
               "PositionEmbedding(dim " << cfg_.dim << "): x " << x.shape << ", y " << y.shape);
    HSEQ_CHECK(offset >= 0, "PositionEmbedding: negative offset " << offset);
    if (x.data != y.data) ops::copy<T>(ctx, x, y);
    if (cfg_.kind == PositionKind::kLearned) ops::add_position_table<T>(ctx, y, table_.value, offset);
    else if (cfg_.kind == PositionKind::kSinusoidal) ops::add_sinusoidal<T>(ctx, y, offset);
    return Saved{offset};
  }

  /// dx = dy (dx may alias dy or be empty); the table's gradient accumulates (unless frozen).
  void backward(Ctx& ctx, Saved const& s, CView dy, MView dx, Arena<Space>& /*ws*/) const {
    if (!dx.empty() && dx.data != dy.data) ops::copy<T>(ctx, dy, dx);
    if (cfg_.kind == PositionKind::kLearned && !table_.frozen) ops::position_table_backward<T>(ctx, dy, table_.grad, s.offset);
  }

 private:
  Config cfg_;
  Param<T, Space> table_;
};

}  // namespace hseq::nn
