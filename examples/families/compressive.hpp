// SPDX-License-Identifier: MIT
/// @file
/// @brief The Compressive Transformer as a family of the programs (--model compressive): Transformer-XL
/// whose evicted memories are compressed (--compress max|mean|conv|dilated|most-used at --rate
/// 2|3|4, compile-time policies) and the loss that trains a learned compressor (--compress-loss
/// bptt|ae|attn), trained on consecutive segments.
#pragma once

#include <cstdint>
#include <vector>

#include "hseq/hier/memory_compressors.hpp"
#include "hseq/models/compressive_transformer.hpp"
#include "hseq/train/task.hpp"
#include "programs.hpp"
#include "transformer_xl.hpp"

namespace cli {

/// The compression functions as slot choices; the rate is the other slot.
struct CompressMean {
  static constexpr char const* kName = "mean";
  template <std::int64_t C>
  using At = hseq::hier::MeanPool<C>;
};
struct CompressMax {
  static constexpr char const* kName = "max";
  template <std::int64_t C>
  using At = hseq::hier::MaxPool<C>;
};
struct CompressConv {
  static constexpr char const* kName = "conv";
  template <std::int64_t C>
  using At = hseq::hier::Conv<C>;
};
struct CompressDilated {
  static constexpr char const* kName = "dilated";
  template <std::int64_t C>
  using At = hseq::hier::DilatedConv<C>;
};
struct CompressMostUsed {
  static constexpr char const* kName = "most-used";
  template <std::int64_t C>
  using At = hseq::hier::MostUsed<C>;
};
template <std::int64_t C, char... Name>
struct CompressionRate {
  static constexpr char kText[] = {Name..., '\0'};
  static constexpr char const* kName = kText;
  static constexpr std::int64_t kRate = C;
};

template <class Function, class Rate>
struct CompressiveModel {
  using type = hseq::models::CompressiveTransformer<Backend, Real, typename Function::template At<Rate::kRate>>;
};

struct CompressiveFamily {
  static constexpr char const* kModel = "compressive";
  static constexpr char const* kHelp = "Compressive Transformer: Transformer-XL with compressed memories";
  using Policies = cli::Policies<
      Slot<"compress", "compression function of the evicted memories", CompressConv, CompressMean, CompressMax,
           CompressDilated, CompressMostUsed>,
      Slot<"rate", "compression rate c (memories per compressed memory)", CompressionRate<3, '3'>,
           CompressionRate<2, '2'>, CompressionRate<4, '4'>>>;
  template <class... FunctionRate>
  using Model = typename CompressiveModel<FunctionRate...>::type;
  /// Consecutive windows per stream (the memories continue the previous batch's rows).
  using Task = hseq::train::SequentialSegments;

  /// Transformer-XL's flags (the same model underneath), then the compression's.
  static void add_flags(Args& a) {
    TransformerXlFamily::add_flags(a);
    a.flag("cmem-len", "256", "compressive: compressed memory rows per layer")
        .flag("compress-loss", "auto",
              "compressive: what trains a learned compressor: bptt (the LM loss), ae (auto-encoding), attn "
              "(attention reconstruction); auto: attn for conv and dilated (the paper's best), bptt for the others")
        .flag("compress-weight", "1", "compressive: weight of the compression loss in the total");
  }
  template <class M>
  static void apply_flags(FlagReader const& r, typename M::Config& c) {
    TransformerXlFamily::apply_flags<M>(r, c);
    r.integer("cmem-len", c.cmem_len);
    r.parsed("compress-loss", c.loss, [](std::string const& s) {
      if (s == "auto") return M::kLearned ? hseq::models::CompressionLoss::kAttentionReconstruction : hseq::models::CompressionLoss::kBptt;
      return hseq::models::compression_loss_from_name(s, "--compress-loss");
    });
    r.real("compress-weight", c.loss_weight);
  }
  static std::vector<BenchCase> bench_cases() {
    return {{"d256_L8_conv", {"--dim", "256", "--heads", "4", "--layers", "8", "--mem-len", "256", "--cmem-len", "256",
                              "--compress", "conv", "--rate", "4"}, {{4, 512}}},
            {"small", {"--dim", "32", "--heads", "2", "--layers", "2", "--mem-len", "16", "--cmem-len", "16"}, {{1, 64}}}};
  }
};

}  // namespace cli
