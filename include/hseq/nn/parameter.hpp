// SPDX-License-Identifier: MIT
/// @file
/// @brief Named parameters and the store that owns them in one flat value buffer and one flat
/// gradient buffer (so optimisers, clipping and checkpoints run over contiguous memory).
///
/// A module declares its parameters (shape, init, whether weight decay applies) at construction and
/// exposes them through `visit_params(f, prefix)`, calling `f(name, Param&)` for each. Binding a
/// `ParamStore` to the module points every `Param`'s `value` and `grad` views into the store.
///
/// Parameter groups: each `Param` also carries `frozen` and `lr_scale`, set by name pattern through
/// `ParamStore::set_frozen` / `set_lr_scale` (the trainer's phases do this). A frozen parameter gets
/// no gradient (the modules skip its weight-gradient work, so its gradient stays zero and clipping
/// and the gradient norm ignore it) and no update (AdamW skips it: no step, no decay, moments
/// untouched); gradients still flow through it to the module's inputs. The defaults (not frozen,
/// scale 1) leave every result bit-identical to a store without groups.
#pragma once

#include <cmath>
#include <concepts>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "hseq/core/backend.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/memory_space.hpp"
#include "hseq/core/shape.hpp"
#include "hseq/core/tensor.hpp"
#include "hseq/core/tensor_view.hpp"
#include "hseq/ops/init.hpp"

namespace hseq::nn {

using ops::InitSpec;

/// One parameter tensor of a module. `value` and `grad` are empty until a `ParamStore` binds them.
template <class T, class Space>
struct Param {
  Shape shape{};
  InitSpec init{};
  bool decay = true;  ///< AdamW weight decay applies (false for biases, norms, embeddings' by choice)
  bool frozen = false;    ///< no gradient, no update (see the file comment)
  double lr_scale = 1.0;  ///< AdamW uses lr * lr_scale for this parameter
  View<T, Space> value{};
  View<T, Space> grad{};

  Param() = default;
  Param(Shape s, InitSpec i, bool d = true) : shape(s), init(i), decay(d) {}
};

/// Whether `name` matches the glob `pattern`: `*` matches any run of characters (dots included, so
/// "blocks.0.*" is everything under blocks.0. and "*.bias" every bias), `?` any one character,
/// everything else itself. A pattern without wildcards matches only the exact name.
inline bool glob_match(std::string_view pattern, std::string_view name) {
  std::size_t p = 0, n = 0, star = std::string_view::npos, resume = 0;
  while (n < name.size()) {
    if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == name[n])) {
      ++p, ++n;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++;  // try the empty run first; widen it on a later mismatch
      resume = n;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      n = ++resume;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

/// The parameters of a module tree (anything with `visit_params`). Owns two flat buffers (values and
/// gradients); each parameter starts on a 64-element boundary. The views live in the module's
/// `Param`s and point into the store, so the store must outlive the module's use, and the module
/// must not be moved after binding (the store keeps pointers to its `Param`s).
template <Backend B, class T>
class ParamStore {
 public:
  using Space = typename B::Space;
  using Ctx = typename B::Context;
  static constexpr std::int64_t kAlign = 64;

  struct Entry {
    std::string name;
    Param<T, Space>* param;
    std::int64_t offset;  ///< element offset in the flat buffers
  };

  ParamStore() = default;
  /// Binds `root` (see `bind`); the buffers are zeroed on `ctx`.
  template <class ModuleT>
  ParamStore(Ctx& ctx, ModuleT& root, std::string const& prefix = "") {
    bind(ctx, root, prefix);
  }
  /// Host stores only: binds `root` with the buffers zeroed in place (host memory needs no context;
  /// a device store must say which stream does the work, so it has no such constructor).
  template <class ModuleT>
    requires std::same_as<typename B::Space, HostSpace>
  explicit ParamStore(ModuleT& root, std::string const& prefix = "") {
    bind(root, prefix);
  }
  ParamStore(ParamStore const&) = delete;
  ParamStore& operator=(ParamStore const&) = delete;
  ParamStore(ParamStore&&) = default;
  ParamStore& operator=(ParamStore&&) = default;

  /// Collects the module's parameters, allocates the flat buffers (zeroed on `ctx`, padding
  /// included), points the views into them.
  template <class ModuleT>
  void bind(Ctx& ctx, ModuleT& root, std::string const& prefix = "") {
    std::int64_t const total = collect(root, prefix);
    B::zero_bytes(ctx, values_.data(), sizeof(T) * std::size_t(total));
    B::zero_bytes(ctx, grads_.data(), sizeof(T) * std::size_t(total));
  }
  /// Host stores only: as above, zeroing the buffers in place.
  template <class ModuleT>
    requires std::same_as<typename B::Space, HostSpace>
  void bind(ModuleT& root, std::string const& prefix = "") {
    std::int64_t const total = collect(root, prefix);
    if (total > 0) {
      std::memset(values_.data(), 0, sizeof(T) * std::size_t(total));
      std::memset(grads_.data(), 0, sizeof(T) * std::size_t(total));
    }
  }

  /// Initialises every parameter from Philox: parameter k (in visiting order) draws stream k.
  void init(Ctx& ctx, std::uint64_t seed) {
    for (std::size_t k = 0; k < entries_.size(); ++k)
      ops::init_param(ctx, entries_[k].param->value, entries_[k].param->init, seed, k);
  }
  /// Sets every gradient to zero (the accumulate-into-gradients rule needs this once per step).
  void zero_grad(Ctx& ctx) { B::zero_bytes(ctx, grads_.data(), sizeof(T) * std::size_t(grads_.numel())); }

  std::vector<Entry> const& entries() const { return entries_; }
  /// Number of parameter elements (without alignment padding).
  std::int64_t count() const {
    std::int64_t n = 0;
    for (auto const& e : entries_) n += e.param->shape.numel();
    return n;
  }
  /// The flat buffers, padding included (padding is zero in values and gradients).
  View<T, Space> values() { return values_.view(); }
  View<T, Space> grads() { return grads_.view(); }
  View<T const, Space> values() const { return values_.cview(); }
  View<T const, Space> grads() const { return grads_.cview(); }

  /// The parameter called `name`; throws naming the known parameters when there is none.
  Param<T, Space>& find(std::string const& name) const {
    for (auto const& e : entries_)
      if (e.name == name) return *e.param;
    std::string known;
    for (auto const& e : entries_) known += (known.empty() ? "" : ", ") + e.name;
    HSEQ_FAIL("ParamStore: no parameter named '" << name << "' (known: " << known << ")");
  }

  /// Number of parameters whose name matches the glob `pattern` (see `glob_match`).
  std::int64_t count_matching(std::string_view pattern) const {
    std::int64_t k = 0;
    for (auto const& e : entries_) k += glob_match(pattern, e.name) ? 1 : 0;
    return k;
  }
  /// Throws naming the known parameters unless some parameter matches `pattern` (a typo in a group
  /// pattern would otherwise silently train everything).
  void check_matches(std::string_view pattern, char const* what) const {
    if (count_matching(pattern) > 0) return;
    std::string known;
    for (auto const& e : entries_) known += (known.empty() ? "" : ", ") + e.name;
    HSEQ_FAIL("ParamStore::" << what << ": pattern '" << pattern << "' matches no parameter (known: " << known << ")");
  }
  /// Freezes (or unfreezes) every parameter matching the glob `pattern`; returns how many. Throws
  /// when none matches.
  std::int64_t set_frozen(std::string_view pattern, bool frozen) {
    check_matches(pattern, "set_frozen");
    std::int64_t k = 0;
    for (auto& e : entries_)
      if (glob_match(pattern, e.name)) e.param->frozen = frozen, ++k;
    return k;
  }
  /// Sets the learning-rate scale of every parameter matching `pattern`; returns how many. Throws
  /// when none matches or the scale is negative or not finite.
  std::int64_t set_lr_scale(std::string_view pattern, double scale) {
    HSEQ_CHECK(std::isfinite(scale) && scale >= 0, "ParamStore::set_lr_scale: scale " << scale << " for '" << pattern
                                                                              << "' must be finite and >= 0");
    check_matches(pattern, "set_lr_scale");
    std::int64_t k = 0;
    for (auto& e : entries_)
      if (glob_match(pattern, e.name)) e.param->lr_scale = scale, ++k;
    return k;
  }

 private:
  /// Lists the parameters, allocates both buffers (not yet zeroed) and points the views into them;
  /// returns the buffers' length.
  template <class ModuleT>
  std::int64_t collect(ModuleT& root, std::string const& prefix) {
    entries_.clear();
    std::int64_t total = 0;
    std::map<std::string, int> seen;
    root.visit_params(
        [&](std::string const& name, Param<T, Space>& p) {
          HSEQ_CHECK(seen.emplace(name, 0).second, "ParamStore: duplicate parameter name '" << name << "'");
          entries_.push_back({name, &p, total});
          total += (p.shape.numel() + kAlign - 1) / kAlign * kAlign;
        },
        prefix);
    values_ = Tensor<T, B>(Shape{total});
    grads_ = Tensor<T, B>(Shape{total});
    for (auto& e : entries_) {
      e.param->value = View<T, Space>(values_.data() + e.offset, e.param->shape);
      e.param->grad = View<T, Space>(grads_.data() + e.offset, e.param->shape);
    }
    return total;
  }

  std::vector<Entry> entries_;
  Tensor<T, B> values_, grads_;
};

}  // namespace hseq::nn
