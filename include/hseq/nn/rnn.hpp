// SPDX-License-Identifier: MIT
/// @file
/// @brief `Rnn`: one recurrent layer whose cell (GRU or LSTM) is chosen at run time, so that a
/// model's configuration (and its checkpoint) can name the cell: `RnnKind` serialises as "gru" /
/// "lstm". It forwards to `nn::Gru` or `nn::Lstm` (parameter names, gate orders and gradients are
/// theirs) behind one interface with an LSTM-shaped state: `State{h, c}`, where a GRU has no cell
/// state (c must be empty).
///
///   y[B, T, H], (h_T, c_T) = Cell(x[B, T, input]) from (h_0, c_0)      (empty views: zeros)
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "hseq/backend/backend.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/workspace.hpp"
#include "hseq/nn/gru.hpp"
#include "hseq/nn/lstm.hpp"
#include "hseq/nn/module.hpp"
#include "hseq/nn/parameter.hpp"

namespace hseq::nn {

/// Which recurrent cell a layer uses.
enum class RnnKind { kGru, kLstm };

/// The name of a cell in configurations ("gru", "lstm").
inline char const* rnn_kind_name(RnnKind k) { return k == RnnKind::kGru ? "gru" : "lstm"; }
/// Inverse of rnn_kind_name; `who` prefixes the error for an unknown name.
inline RnnKind rnn_kind_from_name(std::string const& s, char const* who = "RnnKind") {
  if (s == "gru") return RnnKind::kGru;
  if (s == "lstm") return RnnKind::kLstm;
  HSEQ_FAIL(who << ": unknown recurrent cell '" << s << "' (known: gru, lstm)");
}
/// nlohmann::json serialisation (found by ADL) as the name; an unknown name is an error (as for
/// PositionKind, and unlike NLOHMANN_JSON_SERIALIZE_ENUM, which would take the first value).
template <class Json>
void to_json(Json& j, RnnKind k) {
  j = rnn_kind_name(k);
}
template <class Json>
void from_json(Json const& j, RnnKind& k) {
  k = rnn_kind_from_name(j.template get<std::string>());
}

template <Backend B, class T>
class Rnn {
 public:
  using Space = typename B::Space;
  using Ctx = typename B::Context;
  using CView = View<T const, Space>;
  using MView = View<T, Space>;
  using GruT = Gru<B, T>;
  using LstmT = Lstm<B, T>;

  struct Config {
    RnnKind cell = RnnKind::kGru;
    std::int64_t input = 0, hidden = 0;
    bool bias = true;
  };
  /// Recurrent state, each [B, H]; c is the LSTM's cell state and must be empty for a GRU.
  struct State {
    CView h, c;
  };
  struct MutState {
    MView h, c;
  };
  struct Saved {
    typename GruT::Saved gru;    // used when the cell is a GRU
    typename LstmT::Saved lstm;  // used when the cell is an LSTM
  };

  explicit Rnn(Config c) : cfg_(c) {
    if (c.cell == RnnKind::kGru) gru_.emplace(typename GruT::Config{c.input, c.hidden, c.bias});
    else lstm_.emplace(typename LstmT::Config{c.input, c.hidden, c.bias});
  }
  Config const& config() const { return cfg_; }
  bool is_lstm() const { return cfg_.cell == RnnKind::kLstm; }

  /// Parameters under the cell's own names ("weight_ih", "weight_hh", "bias_ih", "bias_hh").
  template <class F>
  void visit_params(F&& f, std::string const& prefix = "") {
    if (gru_) gru_->visit_params(f, prefix);
    else lstm_->visit_params(f, prefix);
  }

  std::size_t forward_workspace(std::int64_t batch, std::int64_t t) const {
    return gru_ ? gru_->forward_workspace(batch, t) : lstm_->forward_workspace(batch, t);
  }
  std::size_t backward_workspace(std::int64_t batch, std::int64_t t) const {
    return gru_ ? gru_->backward_workspace(batch, t) : lstm_->backward_workspace(batch, t);
  }

  /// y[B, T, H] from x[B, T, input] and `init` (empty views: zeros); writes `final_state` where its
  /// views are non-empty. `init` may alias `final_state` (the cells copy the initial state before
  /// they write the final one), which is how a cached step carries its state in place.
  Saved forward(Ctx& ctx, CView x, State init, MView y, MutState final_state, Arena<Space>& ws) const {
    Saved s;
    if (gru_) {
      no_cell_state(init.c, final_state.c, "Rnn(gru)::forward");
      s.gru = gru_->forward(ctx, x, init.h, y, final_state.h, ws);
    } else {
      s.lstm = lstm_->forward(ctx, x, {init.h, init.c}, y, {final_state.h, final_state.c}, ws);
    }
    return s;
  }

  /// Gradients from dy [B, T, H] and the final-state gradients (any may be empty); overwrites dx and
  /// the initial-state gradients (any may be empty); accumulates parameter gradients.
  void backward(Ctx& ctx, Saved const& s, CView dy, State dfinal, MView dx, MutState dinit, Arena<Space>& ws) const {
    if (gru_) {
      no_cell_state(dfinal.c, dinit.c, "Rnn(gru)::backward");
      gru_->backward(ctx, s.gru, dy, dfinal.h, dx, dinit.h, ws);
    } else {
      lstm_->backward(ctx, s.lstm, dy, {dfinal.h, dfinal.c}, dx, {dinit.h, dinit.c}, ws);
    }
  }

 private:
  static void no_cell_state(CView a, CView b, char const* who) {
    HSEQ_CHECK(a.empty() && b.empty(), who << ": a GRU has no cell state, but one was given");
  }
  Config cfg_;
  std::optional<GruT> gru_;
  std::optional<LstmT> lstm_;
};

}  // namespace hseq::nn
