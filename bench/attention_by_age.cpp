// SPDX-License-Identifier: MIT
// hseq_attention_by_age: the Compressive Transformer paper's attention-by-age diagnostic for a
// checkpoint of `hseq-train --model compressive` (rate 4, any function): the checkpoint reads
// `--streams` stretches of `--bytes` bytes of a text's validation split segment by segment over its
// memories, and once the compressed memory is full, every layer's key mass
// (CompressiveTransformer::record_key_mass) is averaged per key: the attention weight a key
// receives per query that can see it (every query for a memory row; t - i queries for segment row
// i, causal), averaged over heads, batch rows and segments. The keys, oldest first, are grouped into
// `--buckets` age buckets of the compressed memory (the rows compressed at the segment included),
// as many of the memory, and one of the segment itself. One CSV row per layer and bucket, then
// "all" (the layers' mean), on stdout:
//
//   layer,region,bucket,rows,first_age,last_age,attention
//
// ages in bytes before the segment's first byte (a compressed row stands for `rate` bytes; the
// segment's rows have age 0). bench/compressive_claims.sh (`age`) runs it; tools/plot_attention_age.py
// draws the CSV.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#if defined(_OPENMP)
#include <omp.h>
#endif

#include "cli.hpp"
#include "hseq/hseq.hpp"

namespace {

using Backend = hseq::cpu;
using Real = float;
using Split = hseq::io::TextDataset::Split;

struct Options {
  std::string checkpoint, data;
  double val_fraction = 0.1;
  std::int64_t segment = 128, streams = 16, bytes = 8192, buckets = 4;
};

/// Sums of the per-key attention weight of one region bucket.
struct Bucket {
  double sum = 0;
  std::int64_t n = 0, first_age = -1, last_age = -1;
};

template <class Compress>
int run(Options const& o, std::string const& config) {
  using Model = hseq::models::CompressiveTransformer<Backend, Real, Compress>;
  Backend::Context ctx;
  Model model(Model::config_from_json(config));
  hseq::nn::ParamStore<Backend, Real> params(ctx, model);
  hseq::io::load_checkpoint<Backend, Real>(ctx, o.checkpoint, Model::kKind, model.config_json(), params);
  auto const& cfg = model.config();
  std::int64_t const t = o.segment, b = o.streams, k = o.buckets, c = Model::kRate, h = cfg.heads;
  HSEQ_CHECK(t > 0 && t <= cfg.context, "--segment " << t << " must be in [1, the context " << cfg.context << "]");
  HSEQ_CHECK(b > 0 && k > 0 && o.bytes >= t, "--streams, --buckets must be positive and --bytes >= --segment");
  hseq::io::TextDataset data(o.data, o.val_fraction);
  std::int64_t const len = o.bytes / t * t, total = data.num_windows(Split::kValidation, len);
  HSEQ_CHECK(total >= b, "the validation split of " << o.data << " (" << data.size(Split::kValidation)
                                                     << " bytes) holds fewer than " << b << " stretches of " << len
                                                     << " bytes");
  std::vector<std::int32_t> ids(std::size_t(b * len)), tg(std::size_t(b * len));
  for (std::int64_t s = 0; s < b; ++s)
    data.window(Split::kValidation, s * total / b, len, ids.data() + s * len, tg.data() + s * len);

  model.record_key_mass(true);
  auto memory = model.make_memory(b);
  model.bind_memory(&memory);
  model.reset_state(ctx);
  hseq::Workspace<Backend> ws(model.forward_workspace(b, t));
  typename Model::Trace tr;
  std::vector<std::int32_t> seg_ids(std::size_t(b * t)), seg_tg(std::size_t(b * t));
  // [layer][region 0 compressed, 1 memory, 2 segment][bucket]
  std::vector<std::vector<std::vector<Bucket>>> acc(std::size_t(cfg.layers),
                                                    {std::vector<Bucket>(std::size_t(k)),
                                                     std::vector<Bucket>(std::size_t(k)), std::vector<Bucket>(1)});
  std::int64_t used = 0;
  for (std::int64_t piece = 0; piece < len / t; ++piece) {
    for (std::int64_t s = 0; s < b; ++s) {
      std::copy_n(ids.data() + s * len + piece * t, t, seg_ids.data() + s * t);
      std::copy_n(tg.data() + s * len + piece * t, t, seg_tg.data() + s * t);
    }
    using Ids = hseq::View<std::int32_t const, hseq::HostSpace>;
    auto arena = ws.arena();
    model.forward(ctx, Ids(seg_ids.data(), hseq::Shape{b, t}), Ids(seg_tg.data(), hseq::Shape{b, t}), arena, tr);
    std::int64_t const nc = tr.nc + tr.pc / c, nm = tr.nm, nk = nc + nm;
    if (tr.nc < cfg.cmem_len || nm < cfg.mem_len) continue;  // memories not yet full: ages would shift
    ++used;
    for (std::int64_t l = 0; l < cfg.layers; ++l) {
      Real const* mass = tr.layers[std::size_t(l)].mass.data;  // [B, H, nk + t]
      for (std::int64_t j = 0; j < nk + t; ++j) {
        double w = 0;
        for (std::int64_t bh = 0; bh < b * h; ++bh) w += double(mass[bh * (nk + t) + j]);
        double const queries = j < nk ? double(t) : double(t - (j - nk));
        w /= double(b * h) * queries;
        std::int64_t region, bucket, age;
        if (j < nc) {
          region = 0, bucket = j * k / nc, age = nm + (nc - j) * c;
        } else if (j < nk) {
          region = 1, bucket = (j - nc) * k / nm, age = nk - j;
        } else {
          region = 2, bucket = 0, age = 0;
        }
        Bucket& e = acc[std::size_t(l)][std::size_t(region)][std::size_t(bucket)];
        e.sum += w, ++e.n;
        e.first_age = std::max(e.first_age, age);
        e.last_age = e.last_age < 0 ? age : std::min(e.last_age, age);
      }
    }
  }
  HSEQ_CHECK(used > 0, "no segment ran with full memories: give more --bytes (the memories fill after about "
                           << (cfg.mem_len + cfg.cmem_len * c) / t + 2 << " segments of " << t << ")");
  char const* names[] = {"compressed", "memory", "segment"};
  std::cout << "layer,region,bucket,rows,first_age,last_age,attention\n";
  auto row = [&](std::string const& layer, std::size_t r, std::size_t q, Bucket const& e, double attention) {
    std::cout << layer << "," << names[r] << "," << q << "," << e.n / used << "," << e.first_age << "," << e.last_age
              << "," << attention << "\n";
  };
  for (std::size_t r = 0; r < 3; ++r)
    for (std::size_t q = 0; q < acc[0][r].size(); ++q) {
      double all = 0;
      for (std::int64_t l = 0; l < cfg.layers; ++l) {
        Bucket const& e = acc[std::size_t(l)][r][q];
        row(std::to_string(l), r, q, e, e.n > 0 ? e.sum / double(e.n) : 0.0);
        all += e.n > 0 ? e.sum / double(e.n) : 0.0;
      }
      row("all", r, q, acc[0][r][q], all / double(cfg.layers));
    }
  std::cerr << "attention by age: " << used << " segments of " << t << " bytes x " << b << " streams with full memories ("
            << cfg.cmem_len << " compressed rows at rate " << c << ", " << cfg.mem_len << " memory rows), "
            << cfg.layers << " layers\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) try {
  cli::Args a("hseq_attention_by_age",
              "The attention-by-age diagnostic of a Compressive Transformer checkpoint (rate 4), as CSV on stdout.");
  a.flag("checkpoint", "", "checkpoint of hseq-train --model compressive --rate 4. Required")
      .flag("data", "", "text whose validation split is read. Required")
      .flag("val-fraction", "0.1", "the validation split: the file's last fraction")
      .flag("segment", "128", "segment length in bytes")
      .flag("streams", "16", "stretches of the validation split read side by side (the batch)")
      .flag("bytes", "8192", "bytes of each stretch")
      .flag("buckets", "4", "age buckets of the compressed memory and of the memory");
  a.flag("threads", "0", "OpenMP threads (0: OMP_NUM_THREADS or all cores)");
  if (!a.parse(argc, argv)) return 0;
#if defined(_OPENMP)
  if (a.integer("threads") > 0) omp_set_num_threads(int(a.integer("threads")));
#endif
  Options o{a.str("checkpoint"), a.str("data"), a.real("val-fraction"), a.integer("segment"), a.integer("streams"),
            a.integer("bytes"), a.integer("buckets")};
  HSEQ_CHECK(!o.checkpoint.empty() && !o.data.empty(), "hseq_attention_by_age: --checkpoint and --data are required");
  auto info = hseq::io::read_checkpoint_info(o.checkpoint);
  HSEQ_CHECK(info.model_kind == "compressive_transformer",
             o.checkpoint << " holds a '" << info.model_kind << "' model, not a compressive_transformer");
  auto j = nlohmann::json::parse(info.model_config);
  std::string const fn = j.value("compress", ""), rate = j.value("rate", "");
  HSEQ_CHECK(rate == "4", o.checkpoint << ": compression rate " << rate << "; this diagnostic is built for rate 4");
  namespace hh = hseq::hier;
  if (fn == hh::MeanPool<4>::kName) return run<hh::MeanPool<4>>(o, info.model_config);
  if (fn == hh::MaxPool<4>::kName) return run<hh::MaxPool<4>>(o, info.model_config);
  if (fn == hh::Conv<4>::kName) return run<hh::Conv<4>>(o, info.model_config);
  if (fn == hh::DilatedConv<4>::kName) return run<hh::DilatedConv<4>>(o, info.model_config);
  if (fn == hh::MostUsed<4>::kName) return run<hh::MostUsed<4>>(o, info.model_config);
  HSEQ_FAIL(o.checkpoint << ": unknown compression function '" << fn << "'");
} catch (std::exception const& e) {
  std::cerr << e.what() << std::endl;
  return 1;
}
