// SPDX-License-Identifier: MIT
/// @file
/// @brief `CompressiveTransformer`: Transformer-XL whose oldest memories are compressed instead of
/// discarded (Rae et al. 2020). The compression function is a template parameter
/// (hier/memory_compressors.hpp: `MeanPool<c>`, `MaxPool<c>`, `Conv<c>`, `DilatedConv<c>`,
/// `MostUsed<c>`, the rate c compile-time); the loss that trains a learned compressor is chosen at
/// run time (`CompressionLoss`).
///
/// Per layer l, three memories of that layer's inputs, oldest first (all held fixed, except what
/// the compression loss says below):
///   cmem_l [B, Nc, d]   compressed memories, at most cmem_len
///   mem_l  [B, Nm, d]   memories, at most mem_len (Transformer-XL's)
///   pend_l [B, Np, d]   memories evicted by the last segment, compressed at the next one
/// A segment x [B, T, d]:
///   1. the first Pc = floor(Np / c) c pending rows become Pc / c compressed rows cm_l = f(old_l)
///      (old_l: those rows); a remainder (< c rows, only when the evictions are not multiples of c)
///      stays pending;
///   2. block l attends over [cmem_l; cm_l; mem_l; x] with relative positions
///      (`nn::RelativeBlock`, memory = the first three, which are contiguous positions in time);
///   3. cmem_l' = the last cmem_len rows of [cmem_l; cm_l]; mem_l' = the last mem_len rows of
///      [mem_l; h_l]; the rows of [mem_l; h_l] that fall off are appended to the pending rows.
/// Compressing at the next segment rather than at eviction gives the same values and lets the
/// language-model loss reach the compressor (`kBptt`).
///
/// Compression losses (weight `loss_weight`, averaged over the layers that compressed):
///   kBptt            no auxiliary loss; the LM loss's gradient flows through cm_l into f (one
///                    segment of backpropagation through time). The only choice for the functions
///                    without parameters (mean, max, most-used), where it trains nothing.
///   kAutoEncoding    mean squared error of g(cm_l) against old_l, g a learned linear decoder
///                    (d -> c d, parameters "compress_dec.<l>."); f and g train on it alone (the
///                    LM loss does not reach f).
///   kAttentionReconstruction  mean squared error between block l's content attention (its own
///                    query and key/value projections, no positions, before the output
///                    projection; `RelativeBlock::content_forward`) of the segment's LN1(x) over
///                    LN1(old_l) and over LN1(cm_l), every parameter and the queries held fixed:
///                    only f trains on it (the paper's best loss; the LM loss does not reach f).
///
/// `MostUsed` ranks the pending rows by their usage: the average over the segments they were
/// attended in of the attention mass they received (summed over queries, averaged over heads and
/// divided by the segment's queries), tracked per row from the attention core's key mass.
///
/// Memory, training on consecutive segments, checkpoints and generation work as for
/// `TransformerXl` (models/transformer_xl.hpp; `MemoryModel`). The generation cache keeps every
/// position up to its capacity (mem_len = capacity, nothing evicted), so cached logits equal a full
/// forward; compression happens in training and segment-by-segment evaluation.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "hseq/backend/backend.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/state.hpp"
#include "hseq/core/tensor.hpp"
#include "hseq/core/workspace.hpp"
#include "hseq/hier/compression_policy.hpp"
#include "hseq/hier/memory_compressors.hpp"
#include "hseq/models/config_json.hpp"
#include "hseq/models/flops.hpp"
#include "hseq/nn/embedding.hpp"
#include "hseq/nn/linear.hpp"
#include "hseq/nn/lm_head.hpp"
#include "hseq/nn/relative_block.hpp"
#include "hseq/ops/elementwise.hpp"
#include "hseq/ops/mat.hpp"

namespace hseq::models {

/// What trains a learned compressor (see the file comment).
enum class CompressionLoss { kBptt, kAutoEncoding, kAttentionReconstruction };
inline char const* compression_loss_name(CompressionLoss l) {
  return l == CompressionLoss::kBptt ? "bptt" : l == CompressionLoss::kAutoEncoding ? "ae" : "attn";
}
inline CompressionLoss compression_loss_from_name(std::string const& s, char const* who = "CompressionLoss") {
  if (s == "bptt") return CompressionLoss::kBptt;
  if (s == "ae") return CompressionLoss::kAutoEncoding;
  if (s == "attn") return CompressionLoss::kAttentionReconstruction;
  HSEQ_FAIL(who << ": unknown compression loss '" << s << "' (known: bptt, ae, attn)");
}
template <class Json>
void to_json(Json& j, CompressionLoss l) {
  j = compression_loss_name(l);
}
template <class Json>
void from_json(Json const& j, CompressionLoss& l) {
  l = compression_loss_from_name(j.template get<std::string>());
}

template <Backend B, class T, class Compress = hier::MeanPool<3>>
  requires hier::CompressionPolicy<Compress, B, T>
class CompressiveTransformer {
 public:
  using Space = typename B::Space;
  using Ctx = typename B::Context;
  using CView = View<T const, Space>;
  using MView = View<T, Space>;
  using Ids = View<std::int32_t const, Space>;
  using Block = nn::RelativeBlock<B, T>;
  using Head = nn::LmHead<B, T>;
  using Compressor = hier::CompressionModule<Compress, B, T>;
  static constexpr std::int64_t kRate = Compress::kRate;
  static constexpr bool kLearned = Compress::kLearned;
  static constexpr bool kUsesUsage = Compress::kUsesUsage;

  struct Config {
    std::int64_t vocab = 256;
    std::int64_t dim = 256, heads = 4, layers = 4;
    std::int64_t context = 256;   ///< longest segment and generation capacity
    std::int64_t mem_len = 256;   ///< memory rows per layer
    std::int64_t cmem_len = 256;  ///< compressed memory rows per layer
    std::int64_t clamp_len = 0;   ///< relative distances past it share R[clamp_len] (0: no clamping)
    std::int64_t mlp_hidden = 0;  ///< 0 means 4 * dim
    bool tied = true;
    double eps = 1e-5;
    double init_std = 0.02;
    CompressionLoss loss = CompressionLoss::kBptt;
    double loss_weight = 1.0;  ///< weight of the compression loss in the total
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(Config, vocab, dim, heads, layers, context, mem_len, cmem_len, clamp_len,
                                   mlp_hidden, tied, eps, init_std, loss, loss_weight)
  };

  /// Per-layer compressed memory, memory and pending rows of one stream of batches.
  class Memory {
   public:
    Memory() = default;
    Memory(std::int64_t layers, std::int64_t batch, std::int64_t ccap, std::int64_t mcap, std::int64_t pcap,
           std::int64_t dim)
        : batch_(batch), ccap_(ccap), mcap_(mcap), pcap_(pcap), dim_(dim) {
      for (auto* s : {&cur_, &next_}) {
        s->resize(std::size_t(layers));
        for (auto& L : *s) {
          L.cmem = Tensor<T, B>(Shape{batch, std::max<std::int64_t>(ccap, 1), dim});
          L.mem = Tensor<T, B>(Shape{batch, std::max<std::int64_t>(mcap, 1), dim});
          L.pend = Tensor<T, B>(Shape{batch, std::max<std::int64_t>(pcap, 1), dim});
          if constexpr (kUsesUsage) {
            L.use = Tensor<T, B>(Shape{batch, std::max<std::int64_t>(mcap, 1)});
            L.cnt = Tensor<T, B>(Shape{batch, std::max<std::int64_t>(mcap, 1)});
            L.pend_use = Tensor<T, B>(Shape{batch, std::max<std::int64_t>(pcap, 1)});
          }
        }
      }
    }
    std::int64_t batch() const { return batch_; }
    std::int64_t fill() const { return pending_ ? next_fill_.m : fill_.m; }  ///< memory rows (Nm)
    std::int64_t compressed_fill() const { return pending_ ? next_fill_.c : fill_.c; }  ///< Nc
    std::int64_t pending_fill() const { return pending_ ? next_fill_.p : fill_.p; }     ///< Np
    void reset() { fill_ = next_fill_ = {}, pending_ = false; }
    /// Layer l's memories as the next forward reads them: [B, Nc, d], [B, Nm, d], [B, Np, d].
    CView compressed(std::int64_t l) { return view(l, &LayerState::cmem, fills().c); }
    CView memory(std::int64_t l) { return view(l, &LayerState::mem, fills().m); }
    CView pending(std::int64_t l) { return view(l, &LayerState::pend, fills().p); }

    /// StatefulPart: "fill_c", "fill_m", "fill_p", then per layer "cmem<l>", "mem<l>", "pend<l>"
    /// (and "use<l>", "cnt<l>", "pend_use<l>" for most-used compression), whole buffers.
    template <class F>
    void visit_state(F&& f) {
      commit();
      f(std::string("fill_c"), fill_.c);
      f(std::string("fill_m"), fill_.m);
      f(std::string("fill_p"), fill_.p);
      HSEQ_CHECK(fill_.c >= 0 && fill_.c <= ccap_ && fill_.m >= 0 && fill_.m <= mcap_ && fill_.p >= 0 && fill_.p <= pcap_,
                 "CompressiveTransformer::Memory: fills " << fill_.c << ", " << fill_.m << ", " << fill_.p
                                                          << " exceed the capacities " << ccap_ << ", " << mcap_ << ", "
                                                          << pcap_);
      for (std::size_t l = 0; l < cur_.size(); ++l) {
        std::string const n = std::to_string(l);
        f("cmem" + n, cur_[l].cmem.view());
        f("mem" + n, cur_[l].mem.view());
        f("pend" + n, cur_[l].pend.view());
        if constexpr (kUsesUsage) {
          f("use" + n, cur_[l].use.view());
          f("cnt" + n, cur_[l].cnt.view());
          f("pend_use" + n, cur_[l].pend_use.view());
        }
      }
    }

   private:
    friend class CompressiveTransformer;
    struct Fill {
      std::int64_t c = 0, m = 0, p = 0;
    };
    struct LayerState {
      Tensor<T, B> cmem, mem, pend;     // [B, cap, d], the first fill rows of each batch row contiguous as [B, fill, d]
      Tensor<T, B> use, cnt, pend_use;  // most-used only: [B, mcap] usage sums and segment counts, [B, pcap] averages
    };
    Fill fills() {
      commit();
      return fill_;
    }
    CView view(std::int64_t l, Tensor<T, B> LayerState::*t, std::int64_t rows) {
      return CView((cur_.at(std::size_t(l)).*t).data(), Shape{batch_, rows, dim_});
    }
    void commit() {
      if (!pending_) return;
      std::swap(cur_, next_);
      fill_ = next_fill_;
      pending_ = false;
    }
    std::int64_t batch_ = 0, ccap_ = 0, mcap_ = 0, pcap_ = 0, dim_ = 0;
    Fill fill_, next_fill_;
    bool pending_ = false;
    std::vector<LayerState> cur_, next_;
  };

  struct Term {
    char const* name;
    double value;
  };
  /// The loss terms every step reports: the byte cross-entropy and the compression loss (0 with kBptt).
  static constexpr std::array<char const*, 2> kLossTerms{"ce", "compress"};

  struct LayerTrace {
    MView old;    // [B, Pc, d] the pending rows compressed in this segment
    MView cm;     // [B, Pc / c, d] their compression
    MView kmem;   // [B, Nc + Pc / c + Nm, d] the block's memory: [cmem; cm; mem]
    MView mass;   // [B, H, Nc + Pc / c + Nm + T] key mass (most-used, or record_key_mass)
    MView recon;  // [B, Pc / c, c d] auto-encoding: the decoder's reconstruction g(cm)
    MView diff;   // auto-encoding [B, Pc / c, c d]: g(cm) - old; attention reconstruction [B, T, d]: A(cm) - A(old)
    MView a_cm;   // attention reconstruction [B, T, d]: the content attention over LN1(cm)
    typename Block::ContentSaved content;  // attention reconstruction: of a_cm
    typename Compressor::Saved comp;
    typename nn::Linear<B, T>::Saved dec;
    typename Block::Saved block;
  };
  struct Trace {
    std::int64_t batch = 0, t = 0, counted = 0;
    std::int64_t nc = 0, nm = 0, pc = 0;  // the fills this forward read, and the rows it compressed
    double loss = std::numeric_limits<double>::quiet_NaN();
    std::array<Term, 2> terms{{{"ce", 0.0}, {"compress", 0.0}}};
    Ids ids, targets;
    typename nn::Embedding<B, T>::Saved emb;
    std::vector<MView> h;  // h[l] [B, T, d] input of block l; h[L] the last output
    std::vector<LayerTrace> layers;
    typename Head::Saved head;
    MView logits;
  };
  struct Cache {
    Memory memory;
    Trace trace;  // forward_step's bookkeeping (no allocation per step)
  };

  static constexpr char const* kKind = "compressive_transformer";

  explicit CompressiveTransformer(Config c)
      : cfg_(check(c)),
        tok_({c.vocab, c.dim, c.init_std}),
        head_({c.dim, c.vocab, c.tied, c.eps, c.init_std}, c.tied ? &tok_.table() : nullptr) {
    typename Block::Config bc{c.dim, c.heads, c.mlp_hidden, true, c.eps, c.init_std,
                              c.init_std / std::sqrt(2.0 * double(c.layers)), c.clamp_len};
    blocks_.reserve(std::size_t(c.layers));
    comp_.reserve(std::size_t(c.layers));
    for (std::int64_t l = 0; l < c.layers; ++l) {
      blocks_.emplace_back(bc);
      comp_.emplace_back(hier::ResampleConfig{.dim = c.dim, .factor = kRate, .init_std = c.init_std});
      if (c.loss == CompressionLoss::kAutoEncoding)
        dec_.emplace_back(typename nn::Linear<B, T>::Config{c.dim, kRate * c.dim, true, c.init_std});
    }
  }
  CompressiveTransformer(CompressiveTransformer const&) = delete;
  CompressiveTransformer& operator=(CompressiveTransformer const&) = delete;

  Config const& config() const { return cfg_; }
  /// The configuration as JSON, with the compile-time compression as "compress" (its name) and
  /// "rate" (a string, as the programs' --rate): checkpoints store it and compare it on load.
  std::string config_json() const {
    nlohmann::json j = cfg_;
    j["compress"] = Compress::kName;
    j["rate"] = std::to_string(kRate);
    return j.dump();
  }
  /// Inverse of config_json; also checks that the file's compression is this type's.
  static Config config_from_json(std::string const& text) {
    return parse_config_json<Config>(text, "CompressiveTransformer", [](nlohmann::json const& j, Config&) {
      auto fn = j.at("compress").get<std::string>(), rate = j.at("rate").get<std::string>();
      HSEQ_CHECK(fn == Compress::kName && rate == std::to_string(kRate),
                 "CompressiveTransformer: the configuration compresses by '" << fn << "' at rate " << rate
                                                                             << ", this model type by '" << Compress::kName
                                                                             << "' at rate " << kRate);
    });
  }

  template <class F>
  void visit_params(F&& f, std::string const& prefix = "") {
    tok_.visit_params(f, prefix + "tok_emb.");
    for (std::size_t l = 0; l < blocks_.size(); ++l) blocks_[l].visit_params(f, prefix + "blocks." + std::to_string(l) + ".");
    for (std::size_t l = 0; l < comp_.size(); ++l) comp_[l].visit_params(f, prefix + "compress." + std::to_string(l) + ".");
    for (std::size_t l = 0; l < dec_.size(); ++l) dec_[l].visit_params(f, prefix + "compress_dec." + std::to_string(l) + ".");
    head_.visit_params(f, prefix);
  }

  // ------------------------------------------------------------------------------------------
  // Memory (models::MemoryModel)

  Memory make_memory(std::int64_t batch) const { return make_memory(batch, cfg_.mem_len); }
  /// A memory of `rows` memory rows per layer (and cmem_len compressed ones): evaluation with a
  /// longer memory than in training.
  Memory make_memory(std::int64_t batch, std::int64_t rows) const {
    HSEQ_CHECK(batch > 0 && rows >= 0, "CompressiveTransformer::make_memory: batch " << batch << ", rows " << rows);
    return Memory(cfg_.layers, batch, cfg_.cmem_len, rows, cfg_.context + kRate, cfg_.dim);
  }
  void bind_memory(Memory* m) { mem_ = m; }
  /// Diagnostics (the paper's attention by age, bench/attention_by_age.cpp): with `on`, every
  /// forward over a memory writes each layer's key mass into `Trace::layers[l].mass` [B, H, Nc +
  /// Pc / c + Nm + T] (keys oldest first: compressed memory, the rows compressed at this segment,
  /// memory, segment; the attention weight each key receives, summed over the queries). The plans
  /// (`forward_workspace`) include it from then on; most-used compression records it always.
  void record_key_mass(bool on) { record_mass_ = on; }
  Memory* bound_memory() const { return mem_; }
  void reset_state(Ctx&) {
    if (mem_) mem_->reset();
  }

  // ------------------------------------------------------------------------------------------
  // Training

  std::size_t forward_workspace(std::int64_t batch, std::int64_t t) const { return forward_workspace(batch, t, cfg_.mem_len); }
  /// The forward's plan over a memory of `rows` memory rows (make_memory(batch, rows)).
  std::size_t forward_workspace(std::int64_t batch, std::int64_t t, std::int64_t rows) const {
    return plan_forward(batch, t, cfg_.cmem_len, rows, cfg_.context + kRate);
  }
  std::size_t backward_workspace(std::int64_t batch, std::int64_t t) const {
    std::int64_t const d = cfg_.dim, pc = (cfg_.context + kRate) / kRate * kRate,
                       nk = cfg_.cmem_len + pc / kRate + cfg_.mem_len;
    std::size_t inner = head_.backward_workspace(batch, t);
    for (std::size_t l = 0; l < blocks_.size(); ++l) {
      std::size_t const bptt = cfg_.loss == CompressionLoss::kBptt && kLearned
                                   ? aligned_bytes<T>(batch * nk * d) + aligned_bytes<T>(batch * (pc / kRate) * d) +
                                         aligned_bytes<T>(batch * pc * d) + comp_[l].backward_workspace(batch, pc)
                                   : 0;
      inner = std::max(inner, bptt + blocks_[l].backward_workspace(batch, t, nk));
    }
    std::size_t aux = 0;
    if (cfg_.loss == CompressionLoss::kAutoEncoding)
      aux = 2 * aligned_bytes<T>(batch * pc * d) + aligned_bytes<T>(batch * (pc / kRate) * d) +
            comp_[0].backward_workspace(batch, pc);
    if (cfg_.loss == CompressionLoss::kAttentionReconstruction)
      aux = aligned_bytes<T>(batch * t * d) + aligned_bytes<T>(batch * (pc / kRate) * d) +
            aligned_bytes<T>(batch * pc * d) +
            std::max(blocks_[0].content_backward_workspace(batch, t, pc / kRate), comp_[0].backward_workspace(batch, pc));
    return 2 * aligned_bytes<T>(batch * t * d) + std::max(inner, aux);
  }

  double forward(Ctx& ctx, Ids ids, Ids targets, Arena<Space>& ws, Trace& tr) const {
    HSEQ_CHECK(ids.rank() == 2 && ids.size(0) > 0 && ids.size(1) > 0,
               "CompressiveTransformer: ids " << ids.shape << " must be [B, T] with B, T >= 1");
    HSEQ_CHECK(ids.size(1) <= cfg_.context,
               "CompressiveTransformer: segment length " << ids.size(1) << " exceeds the context " << cfg_.context);
    HSEQ_CHECK(targets.empty() || targets.shape == ids.shape,
               "CompressiveTransformer: targets " << targets.shape << " differ from ids " << ids.shape);
    HSEQ_CHECK(mem_ == nullptr || mem_->batch() == ids.size(0),
               "CompressiveTransformer: the bound memory is for batches of " << mem_->batch() << " rows, ids "
                                                                             << ids.shape);
    run(ctx, ids, mem_, ws, tr, /*train=*/true);
    tr.head = head_.forward(ctx, tr.h.back(), targets, ws);
    tr.targets = targets;
    tr.logits = tr.head.logits;
    tr.counted = tr.head.counted;
    double const aux = aux_loss(ctx, tr);
    tr.terms[0].value = tr.head.loss;
    tr.terms[1].value = aux;
    tr.loss = tr.head.loss + cfg_.loss_weight * aux;
    return tr.loss;
  }

  void backward(Ctx& ctx, Trace& tr, Arena<Space>& ws) const {
    HSEQ_CHECK(!tr.targets.empty() && tr.counted > 0, "CompressiveTransformer::backward: the forward had no targets");
    ArenaScope<Space> scope(ws);
    std::int64_t const d = cfg_.dim, mn = tr.pc / kRate, nk = tr.nc + mn + tr.nm;
    Shape hs{tr.batch, tr.t, d};
    MView da = ws.template take<T>(hs, "ct.da"), db = ws.template take<T>(hs, "ct.db");
    head_.backward(ctx, tr.head, db, da, ws);
    bool const bptt = cfg_.loss == CompressionLoss::kBptt && kLearned && mn > 0;
    for (std::size_t l = blocks_.size(); l-- > 0;) {
      ArenaScope<Space> layer_scope(ws);
      LayerTrace const& L = tr.layers[l];
      MView dk = bptt ? ws.template take<T>(Shape{tr.batch, nk, d}, "ct.dkmem") : MView{};
      blocks_[l].backward(ctx, L.block, db, da, ws, dk);
      std::swap(da, db);
      if (bptt) {  // the compressed rows' part of the memory gradient goes into the compressor
        MView dcm = ws.template take<T>(Shape{tr.batch, mn, d}, "ct.dcm");
        ops::copy_mat<T>(ctx, ops::Mat<T const, Space>(dk.data + tr.nc * d, tr.batch, mn * d, nk * d),
                         ops::Mat<T, Space>(dcm.data, tr.batch, mn * d, mn * d));
        MView dold = ws.template take<T>(Shape{tr.batch, tr.pc, d}, "ct.dold");  // discarded: old rows are fixed
        comp_[l].backward(ctx, L.comp, CView(dcm), dold, ws);
      }
    }
    tok_.backward(ctx, tr.emb, db, ws);
    if (cfg_.loss == CompressionLoss::kAutoEncoding && mn > 0) backward_auto_encoding(ctx, tr, ws);
    if (cfg_.loss == CompressionLoss::kAttentionReconstruction && mn > 0) backward_attention_reconstruction(ctx, tr, ws);
  }

  // ------------------------------------------------------------------------------------------
  // Cached generation

  Cache make_cache(std::int64_t batch, std::int64_t capacity) const {
    HSEQ_CHECK(batch > 0 && capacity > 0 && capacity <= cfg_.context,
               "CompressiveTransformer::make_cache: batch " << batch << ", capacity " << capacity << " (context "
                                                            << cfg_.context << ")");
    // Every position up to the capacity stays a memory: nothing is evicted or compressed.
    return Cache{Memory(cfg_.layers, batch, 0, capacity, kRate, cfg_.dim), Trace{}};
  }
  void reset_cache(Cache& c) const { c.memory.reset(); }
  std::size_t step_workspace(std::int64_t batch, std::int64_t n, std::int64_t capacity) const {
    return plan_forward(batch, n, 0, capacity, kRate) + head_.predict_workspace(batch * n);
  }
  void forward_step(Ctx& ctx, Ids ids, Cache& cache, std::int64_t pos, MView logits, Arena<Space>& ws) const {
    Memory& m = cache.memory;
    std::int64_t const bsz = ids.size(0), n = ids.size(1);
    HSEQ_CHECK(ids.rank() == 2 && bsz == m.batch(),
               "CompressiveTransformer::forward_step: ids " << ids.shape << " for a cache of batch " << m.batch());
    HSEQ_CHECK(pos == m.fill() && pos + n <= m.mcap_,
               "CompressiveTransformer::forward_step: positions [" << pos << ", " << pos + n << ") after the "
                                                                   << m.fill() << " the cache holds (capacity "
                                                                   << m.mcap_ << ")");
    check_shape(logits, Shape{bsz, n, cfg_.vocab}, "CompressiveTransformer::forward_step: logits");
    ArenaScope<Space> scope(ws);
    run(ctx, ids, &m, ws, cache.trace, /*train=*/false);
    head_.predict(ctx, cache.trace.h.back(), ops::as_mat(logits), ws);
  }

  FlopCount flops(std::int64_t t) const {
    FlopCount f;
    double const tt = double(t), mm = double(cfg_.mem_len + cfg_.cmem_len);
    f.add_embedding(tok_).add(head_, 1.0);
    for (auto const& blk : blocks_)
      f.add(blk, [&](std::string const& name) {
        return name.rfind("ln1.", 0) == 0 || name.rfind("attn.kv.", 0) == 0 ? 1.0 + mm / tt : 1.0;
      });
    for (auto const& c : comp_) f.add(c, 1.0 / double(kRate));  // t evicted rows per segment, c per output
    for (auto const& g : dec_) f.add(g, 1.0 / double(kRate));
    return f.add_attention(double(cfg_.layers), double(cfg_.dim), tt, mm + tt, tt);
  }

 private:
  /// Bytes of one forward over [B, t] with memories of at most (ccap, mcap) rows and pcap pending.
  std::size_t plan_forward(std::int64_t batch, std::int64_t t, std::int64_t ccap, std::int64_t mcap,
                           std::int64_t pcap) const {
    return nn::measure_workspace<Space>([&](Arena<Space>& a) {
      std::int64_t const d = cfg_.dim, pc = pcap / kRate * kRate, mn = pc / kRate, nk = ccap + mn + mcap;
      for (std::int64_t l = 0; l <= cfg_.layers; ++l) a.template take<T>(Shape{batch, t, d}, "ct.h");
      for (std::size_t l = 0; l < blocks_.size(); ++l) {
        a.template take<T>(Shape{batch, pc, d}, "ct.old");
        a.template take<T>(Shape{batch, mn, d}, "ct.cm");
        a.template take<T>(Shape{batch, nk, d}, "ct.kmem");
        if (kUsesUsage || record_mass_) a.template take<T>(Shape{batch, cfg_.heads, nk + t}, "ct.mass");
        a.template take<std::byte>(Shape{std::int64_t(comp_[l].forward_workspace(batch, pc))}, "ct.comp");
        if (cfg_.loss == CompressionLoss::kAutoEncoding) {
          a.template take<T>(Shape{batch, mn, kRate * d}, "ct.recon");
          a.template take<T>(Shape{batch, mn, kRate * d}, "ct.diff");
        }
        a.template take<std::byte>(Shape{std::int64_t(blocks_[l].forward_workspace(batch, t, nk))}, "ct.block");
        if (cfg_.loss == CompressionLoss::kAttentionReconstruction) {
          for (int k = 0; k < 3; ++k) a.template take<T>(Shape{batch, t, d}, "ct.attn_rec");
          a.template take<std::byte>(
              Shape{std::int64_t(blocks_[l].content_workspace(batch, t, pc) + blocks_[l].content_workspace(batch, t, mn))},
              "ct.content");
        }
      }
      a.template take<std::byte>(Shape{std::int64_t(head_.forward_workspace(batch, t))}, "ct.head");
    });
  }

  /// Embedding, the blocks over the memories, and the memories' update (see the file comment).
  void run(Ctx& ctx, Ids ids, Memory* mem, Arena<Space>& ws, Trace& tr, bool train) const {
    std::int64_t const bsz = ids.size(0), t = ids.size(1), d = cfg_.dim, c = kRate;
    tr.batch = bsz, tr.t = t, tr.ids = ids, tr.counted = 0;
    tr.loss = std::numeric_limits<double>::quiet_NaN();
    tr.h.resize(blocks_.size() + 1);
    tr.layers.resize(blocks_.size());
    typename Memory::Fill f{};
    if (mem) f = mem->fills();
    std::int64_t const pc = f.p / c * c, mn = pc / c, nk = f.c + mn + f.m;
    tr.nc = f.c, tr.nm = f.m, tr.pc = pc;
    for (auto& h : tr.h) h = ws.template take<T>(Shape{bsz, t, d}, "ct.h");
    tr.emb = tok_.forward(ctx, ids, tr.h[0], ws);
    for (std::size_t l = 0; l < blocks_.size(); ++l) {
      LayerTrace& L = tr.layers[l];
      L.old = L.cm = L.kmem = L.mass = L.recon = L.diff = L.a_cm = MView{};  // (not L = {}: keeps the saved vectors' storage)
      if (mem != nullptr) {
        auto& S = mem->cur_[l];
        // 1. compress the first pc pending rows
        L.old = ws.template take<T>(Shape{bsz, pc, d}, "ct.old");
        L.cm = ws.template take<T>(Shape{bsz, mn, d}, "ct.cm");
        if (mn > 0) {
          ops::copy_mat<T>(ctx, ops::Mat<T const, Space>(S.pend.data(), bsz, pc * d, f.p * d),
                           ops::Mat<T, Space>(L.old.data, bsz, pc * d, pc * d));
          if constexpr (kUsesUsage) {
            pending_usage(ctx, S, bsz, f.p, pc);
            L.comp = comp_[l].forward(ctx, CView(L.old), std::span<double const>(usage_), L.cm, ws);
          } else {
            L.comp = comp_[l].forward(ctx, CView(L.old), L.cm, ws);
          }
        }
        // 2. the block's memory [cmem; cm; mem]
        L.kmem = ws.template take<T>(Shape{bsz, nk, d}, "ct.kmem");
        put_rows(ctx, CView(S.cmem.data(), Shape{bsz, f.c, d}), L.kmem, 0);
        put_rows(ctx, CView(L.cm), L.kmem, f.c);
        put_rows(ctx, CView(S.mem.data(), Shape{bsz, f.m, d}), L.kmem, f.c + mn);
        if (kUsesUsage || record_mass_) L.mass = ws.template take<T>(Shape{bsz, cfg_.heads, nk + t}, "ct.mass");
      }
      if (cfg_.loss == CompressionLoss::kAutoEncoding && train && mem != nullptr) {
        // g(cm) and its difference from the rows it compresses (the auto-encoding loss's residual).
        L.recon = ws.template take<T>(Shape{bsz, mn, c * d}, "ct.recon");
        L.diff = ws.template take<T>(Shape{bsz, mn, c * d}, "ct.diff");
        if (mn > 0) {
          L.dec = dec_[l].forward(ctx, CView(L.cm), L.recon, ws);
          ops::copy<T>(ctx, CView(L.recon), L.diff);
          ops::axpy<T>(ctx, T(-1), CView(L.old.data, L.diff.shape), L.diff);
        }
      }
      L.block = blocks_[l].forward(ctx, tr.h[l], nk > 0 ? CView(L.kmem) : CView{}, tr.h[l + 1], ws, L.mass);
      if (cfg_.loss == CompressionLoss::kAttentionReconstruction && train && mem != nullptr && mn > 0) {
        // A(old) and A(cm) with the block's fixed projections, queries the segment's LN1(x).
        MView a_old = ws.template take<T>(Shape{bsz, t, d}, "ct.a_old");
        L.a_cm = ws.template take<T>(Shape{bsz, t, d}, "ct.a_cm");
        L.diff = ws.template take<T>(Shape{bsz, t, d}, "ct.diff");
        blocks_[l].content_forward(ctx, L.block, CView(L.old), a_old, ws);
        L.content = blocks_[l].content_forward(ctx, L.block, CView(L.cm), L.a_cm, ws);
        ops::copy<T>(ctx, CView(L.a_cm), L.diff);
        ops::axpy<T>(ctx, T(-1), CView(a_old), L.diff);
      }
      if (mem != nullptr) update_layer(ctx, *mem, l, f, L, tr.h[l], t);
    }
    if (mem != nullptr) finish_update(*mem, f, t);
  }

  /// [B, rows, d] into rows [at, at + rows) of dst [B, R, d].
  void put_rows(Ctx& ctx, CView src, MView dst, std::int64_t at) const {
    std::int64_t const bsz = dst.size(0), rows = src.size(1), r = dst.size(1), d = cfg_.dim;
    if (rows == 0) return;
    ops::copy_mat<T>(ctx, ops::Mat<T const, Space>(src.data, bsz, rows * d, rows * d),
                     ops::Mat<T, Space>(dst.data + at * d, bsz, rows * d, r * d));
  }
  /// Rows [from, from + n) of src [B, R, width] into rows [at, at + n) of dst [B, R', width].
  void move_rows(Ctx& ctx, T const* src, std::int64_t src_rows, std::int64_t from, T* dst, std::int64_t dst_rows,
                 std::int64_t at, std::int64_t n, std::int64_t bsz, std::int64_t width) const {
    if (n <= 0) return;
    ops::copy_mat<T>(ctx, ops::Mat<T const, Space>(src + from * width, bsz, n * width, src_rows * width),
                     ops::Mat<T, Space>(dst + at * width, bsz, n * width, dst_rows * width));
  }

  /// Writes layer l's next memories beside the current ones (see the file comment, step 3).
  void update_layer(Ctx& ctx, Memory& m, std::size_t l, typename Memory::Fill f, LayerTrace const& L, CView h,
                    std::int64_t t) const {
    std::int64_t const bsz = m.batch_, d = cfg_.dim, mn = L.cm.size(1), pc = mn * kRate;
    auto& S = m.cur_[l];
    auto& N = m.next_[l];
    // cmem' = the last ccap rows of [cmem; cm]
    std::int64_t const nc2 = std::min(m.ccap_, f.c + mn), keep_c = std::min(f.c, nc2 - std::min(nc2, mn));
    std::int64_t const take_cm = nc2 - keep_c;
    move_rows(ctx, S.cmem.data(), f.c, f.c - keep_c, N.cmem.data(), nc2, 0, keep_c, bsz, d);
    move_rows(ctx, L.cm.data, mn, mn - take_cm, N.cmem.data(), nc2, keep_c, take_cm, bsz, d);
    // [mem; h]: the last nm2 rows stay, the first e are evicted to the pending rows
    std::int64_t const nm2 = std::min(m.mcap_, f.m + t), e = f.m + t - nm2, rem = f.p - pc, np2 = rem + e;
    HSEQ_CHECK(np2 <= m.pcap_, "CompressiveTransformer: " << np2 << " pending rows exceed their capacity " << m.pcap_);
    std::int64_t const from_mem = std::max<std::int64_t>(f.m - e, 0);  // old memory rows that stay
    move_rows(ctx, S.mem.data(), f.m, f.m - from_mem, N.mem.data(), nm2, 0, from_mem, bsz, d);
    move_rows(ctx, h.data, t, t - (nm2 - from_mem), N.mem.data(), nm2, from_mem, nm2 - from_mem, bsz, d);
    // pending' = [the remainder; the evicted rows of mem; the evicted rows of h]
    std::int64_t const ev_mem = std::min(e, f.m), ev_h = e - ev_mem;
    move_rows(ctx, S.pend.data(), f.p, pc, N.pend.data(), np2, 0, rem, bsz, d);
    move_rows(ctx, S.mem.data(), f.m, 0, N.pend.data(), np2, rem, ev_mem, bsz, d);
    move_rows(ctx, h.data, t, 0, N.pend.data(), np2, rem + ev_mem, ev_h, bsz, d);
    if constexpr (kUsesUsage) update_usage(ctx, m, l, f, L, t, nm2, e, rem, pc);
  }
  static void finish_update(Memory& m, typename Memory::Fill f, std::int64_t t) {
    std::int64_t const mn = f.p / kRate, pc = mn * kRate, nm2 = std::min(m.mcap_, f.m + t), e = f.m + t - nm2;
    m.next_fill_ = {std::min(m.ccap_, f.c + mn), nm2, f.p - pc + e};
    m.pending_ = true;
  }

  /// Most-used: the usage of this segment's keys from the key mass, added to the memory rows' sums
  /// (one more segment counted), the segment rows starting at theirs; evicted rows carry their
  /// average into the pending rows. Small arrays, kept on the host side in `usage_` scratch.
  void update_usage(Ctx& ctx, Memory& m, std::size_t l, typename Memory::Fill f, LayerTrace const& L, std::int64_t t,
                    std::int64_t nm2, std::int64_t e, std::int64_t rem, std::int64_t pc) const {
    std::int64_t const bsz = m.batch_, h = cfg_.heads, nk = L.mass.size(2), off = nk - t - f.m;
    auto& S = m.cur_[l];
    auto& N = m.next_[l];
    host_.resize(std::size_t(bsz * h * nk));
    download(ctx, L.mass.data, host_.data(), host_.size());
    std::vector<T>& use = scratch_[0];
    std::vector<T>& cnt = scratch_[1];
    std::vector<T>& puse = scratch_[2];
    std::int64_t const rows = f.m + t, np2 = rem + e;
    use.assign(std::size_t(bsz * rows), T(0)), cnt.assign(std::size_t(bsz * rows), T(0));
    puse.assign(std::size_t(bsz * std::max<std::int64_t>(np2, 1)), T(0));
    std::vector<T>& old_use = scratch_[3];
    std::vector<T>& old_cnt = scratch_[4];
    std::vector<T>& old_puse = scratch_[5];
    old_use.resize(std::size_t(bsz * m.mcap_ + 1)), old_cnt.resize(std::size_t(bsz * m.mcap_ + 1));
    old_puse.resize(std::size_t(bsz * m.pcap_ + 1));
    download(ctx, S.use.data(), old_use.data(), std::size_t(bsz * f.m));
    download(ctx, S.cnt.data(), old_cnt.data(), std::size_t(bsz * f.m));
    download(ctx, S.pend_use.data(), old_puse.data(), std::size_t(bsz * f.p));
    T const per = T(1) / T(double(h * t));
    for (std::int64_t b = 0; b < bsz; ++b)
      for (std::int64_t j = 0; j < rows; ++j) {
        T u = 0;
        for (std::int64_t hh = 0; hh < h; ++hh) u += host_[std::size_t((b * h + hh) * nk + off + j)];
        u *= per;
        bool const was_mem = j < f.m;
        use[std::size_t(b * rows + j)] = u + (was_mem ? old_use[std::size_t(b * f.m + j)] : T(0));
        cnt[std::size_t(b * rows + j)] = T(1) + (was_mem ? old_cnt[std::size_t(b * f.m + j)] : T(0));
      }
    // The new memory rows' sums and counts; the evicted rows' averages after the remainder's.
    std::vector<T>& nuse = scratch_[6];
    std::vector<T>& ncnt = scratch_[7];
    nuse.assign(std::size_t(bsz * std::max<std::int64_t>(nm2, 1)), T(0));
    ncnt.assign(std::size_t(bsz * std::max<std::int64_t>(nm2, 1)), T(0));
    for (std::int64_t b = 0; b < bsz; ++b) {
      for (std::int64_t j = 0; j < nm2; ++j) {
        nuse[std::size_t(b * nm2 + j)] = use[std::size_t(b * rows + e + j)];
        ncnt[std::size_t(b * nm2 + j)] = cnt[std::size_t(b * rows + e + j)];
      }
      for (std::int64_t j = 0; j < rem; ++j) puse[std::size_t(b * np2 + j)] = old_puse[std::size_t(b * f.p + pc + j)];
      for (std::int64_t j = 0; j < e; ++j)
        puse[std::size_t(b * np2 + rem + j)] = use[std::size_t(b * rows + j)] / cnt[std::size_t(b * rows + j)];
    }
    upload(ctx, N.use.data(), nuse.data(), std::size_t(bsz * nm2));
    upload(ctx, N.cnt.data(), ncnt.data(), std::size_t(bsz * nm2));
    upload(ctx, N.pend_use.data(), puse.data(), std::size_t(bsz * np2));
  }
  /// The first pc pending rows' usage averages of every batch row, into usage_ [B pc].
  void pending_usage(Ctx& ctx, typename Memory::LayerState const& S, std::int64_t bsz, std::int64_t np,
                     std::int64_t pc) const {
    std::vector<T>& all = scratch_[5];
    all.resize(std::size_t(bsz * np));
    download(ctx, S.pend_use.data(), all.data(), all.size());
    usage_.resize(std::size_t(bsz * pc));
    for (std::int64_t b = 0; b < bsz; ++b)
      for (std::int64_t j = 0; j < pc; ++j) usage_[std::size_t(b * pc + j)] = double(all[std::size_t(b * np + j)]);
  }
  /// n elements between backend memory and host memory (a plain copy on the CPU).
  static void download(Ctx& ctx, T const* src, T* dst, std::size_t n) { transfer(ctx, dst, src, n, true); }
  static void upload(Ctx& ctx, T* dst, T const* src, std::size_t n) { transfer(ctx, dst, src, n, false); }
  static void transfer(Ctx& ctx, T* dst, T const* src, std::size_t n, bool to_host) {
    if (n == 0) return;
    if constexpr (std::is_same_v<Space, HostSpace>) {
      (void)ctx, (void)to_host;
      std::copy(src, src + n, dst);
    } else if (to_host) {
      B::template download<T>(ctx, dst, src, n);
    } else {
      B::template upload<T>(ctx, dst, src, n);
    }
  }

  /// The auto-encoding loss of the last forward: the mean over layers of mean((g(cm) - old)^2)
  /// (the residuals are in the trace). 0 with kBptt or when nothing was compressed.
  double aux_loss(Ctx& ctx, Trace const& tr) const {
    if (cfg_.loss == CompressionLoss::kBptt || tr.pc == 0) return 0.0;
    double sum = 0;
    for (auto const& L : tr.layers) sum += ops::sum_squares<T>(ctx, CView(L.diff));
    return sum / double(aux_elements(tr)) / double(blocks_.size());
  }
  /// Elements each layer's squared residual averages over: the compressed rows (auto-encoding) or
  /// the attention outputs (attention reconstruction).
  std::int64_t aux_elements(Trace const& tr) const {
    return cfg_.loss == CompressionLoss::kAutoEncoding ? tr.batch * tr.pc * cfg_.dim : tr.batch * tr.t * cfg_.dim;
  }
  /// Gradients of loss_weight x the attention-reconstruction loss into the compressors only.
  void backward_attention_reconstruction(Ctx& ctx, Trace const& tr, Arena<Space>& ws) const {
    std::int64_t const d = cfg_.dim, mn = tr.pc / kRate;
    T const k = T(2.0 * cfg_.loss_weight / (double(aux_elements(tr)) * double(blocks_.size())));
    for (std::size_t l = 0; l < blocks_.size(); ++l) {
      ArenaScope<Space> scope(ws);
      LayerTrace const& L = tr.layers[l];
      MView dy = ws.template take<T>(L.diff.shape, "ct.da_cm"), dcm = ws.template take<T>(Shape{tr.batch, mn, d}, "ct.dcm"),
            dold = ws.template take<T>(Shape{tr.batch, tr.pc, d}, "ct.dold");  // discarded: old rows are fixed
      ops::copy<T>(ctx, CView(L.diff), dy);
      ops::scale<T>(ctx, dy, k);
      blocks_[l].content_backward(ctx, L.content, CView(L.a_cm), CView(dy), dcm, ws);
      comp_[l].backward(ctx, L.comp, CView(dcm), dold, ws);
    }
  }
  /// Gradients of loss_weight x the auto-encoding loss into the decoders and compressors only.
  void backward_auto_encoding(Ctx& ctx, Trace const& tr, Arena<Space>& ws) const {
    std::int64_t const d = cfg_.dim, mn = tr.pc / kRate;
    T const k = T(2.0 * cfg_.loss_weight / (double(aux_elements(tr)) * double(blocks_.size())));
    for (std::size_t l = 0; l < blocks_.size(); ++l) {
      ArenaScope<Space> scope(ws);
      LayerTrace const& L = tr.layers[l];
      MView dr = ws.template take<T>(L.diff.shape, "ct.drecon"), dcm = ws.template take<T>(Shape{tr.batch, mn, d}, "ct.dcm"),
            dold = ws.template take<T>(Shape{tr.batch, tr.pc, d}, "ct.dold");  // discarded: old rows are fixed
      ops::copy<T>(ctx, CView(L.diff), dr);
      ops::scale<T>(ctx, dr, k);
      dec_[l].backward(ctx, L.dec, CView(dr), dcm, ws);
      comp_[l].backward(ctx, L.comp, CView(dcm), dold, ws);
    }
  }

  static Config check(Config c) {
    HSEQ_CHECK(c.vocab > 0 && c.dim > 0 && c.heads > 0 && c.layers > 0 && c.context > 0,
               "CompressiveTransformer: vocab " << c.vocab << ", dim " << c.dim << ", heads " << c.heads << ", layers "
                                                << c.layers << ", context " << c.context << " must all be positive");
    HSEQ_CHECK(c.dim % c.heads == 0, "CompressiveTransformer: heads " << c.heads << " do not divide the width " << c.dim);
    HSEQ_CHECK(c.mem_len >= 0 && c.cmem_len >= 0 && c.clamp_len >= 0,
               "CompressiveTransformer: mem_len " << c.mem_len << ", cmem_len " << c.cmem_len << " and clamp_len "
                                                  << c.clamp_len << " must be >= 0");
    HSEQ_CHECK(c.loss == CompressionLoss::kBptt || kLearned,
               "CompressiveTransformer: the " << compression_loss_name(c.loss) << " loss trains a compressor's "
                                              << "parameters, and " << Compress::kName
                                              << " compression has none (use bptt)");
    HSEQ_CHECK(std::isfinite(c.loss_weight) && c.loss_weight >= 0,
               "CompressiveTransformer: loss_weight " << c.loss_weight << " must be finite and >= 0");
    return c;
  }

  Config cfg_;
  nn::Embedding<B, T> tok_;
  std::vector<Block> blocks_;
  std::vector<Compressor> comp_;
  std::vector<nn::Linear<B, T>> dec_;
  Head head_;
  Memory* mem_ = nullptr;
  bool record_mass_ = false;  // record_key_mass
  mutable std::vector<double> usage_;                // most-used: the ranked rows' usage (host)
  mutable std::vector<T> host_;                      // most-used: a key mass downloaded
  mutable std::array<std::vector<T>, 8> scratch_{};  // most-used: usage bookkeeping (host)
};

}  // namespace hseq::models
