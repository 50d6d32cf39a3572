// SPDX-License-Identifier: MIT
// Compile-fail case (test/compile_fail/check.cmake): an Hourglass with a shortening policy whose
// module has no backward is refused by the ShortenPolicy concept, and the error names the concept
// and the missing call. With HSEQ_COMPILE_FAIL_CONTROL the backward is there and it compiles.
// expect-error: ShortenPolicy
// expect-error: \.backward\(ctx, saved, dy, dx, ws\)
#include "hseq/backend/cpu.hpp"
#include "hseq/hier/avg_pool.hpp"
#include "hseq/hier/repeat_upsample.hpp"
#include "hseq/models/hourglass.hpp"

namespace {

/// Average pooling whose author forgot backward (the rest forwards to AvgPoolShorten).
template <hseq::Backend B, class T>
class ForgetfulPoolModule {
 public:
  using Base = hseq::hier::AvgPoolShorten<B, T>;
  using Config = typename Base::Config;
  using Saved = typename Base::Saved;
  using StepState = typename Base::StepState;
  using Ctx = typename B::Context;
  using CView = hseq::View<T const, typename B::Space>;
  using MView = hseq::View<T, typename B::Space>;
  using Ws = hseq::Arena<typename B::Space>;

  explicit ForgetfulPoolModule(Config c) : pool_(c) {}
  Config const& config() const { return pool_.config(); }
  template <class F>
  void visit_params(F&& f, std::string const& prefix = "") {
    pool_.visit_params(f, prefix);
  }
  std::size_t forward_workspace(std::int64_t b, std::int64_t l) const { return pool_.forward_workspace(b, l); }
  std::size_t backward_workspace(std::int64_t b, std::int64_t l) const { return pool_.backward_workspace(b, l); }
  Saved forward(Ctx& ctx, CView x, MView y, Ws& ws) const { return pool_.forward(ctx, x, y, ws); }
#ifdef HSEQ_COMPILE_FAIL_CONTROL
  void backward(Ctx& ctx, Saved const& s, CView dy, MView dx, Ws& ws) const { pool_.backward(ctx, s, dy, dx, ws); }
#endif
  StepState make_step_state(std::int64_t b, std::int64_t c) const { return pool_.make_step_state(b, c); }
  std::size_t step_workspace(std::int64_t b, std::int64_t c) const { return pool_.step_workspace(b, c); }
  void step_input(Ctx& ctx, StepState& st, CView x, std::int64_t p, Ws& ws) const { pool_.step_input(ctx, st, x, p, ws); }
  void step_pool(Ctx& ctx, StepState& st, CView w, std::int64_t p, MView y, Ws& ws) const {
    pool_.step_pool(ctx, st, w, p, y, ws);
  }

 private:
  Base pool_;
};

struct ForgetfulPool {
  static constexpr char const* kName = "forgetful";
  template <hseq::Backend B, class T>
  using Module = ForgetfulPoolModule<B, T>;
};

}  // namespace

using Model = hseq::models::Hourglass<hseq::cpu, float, hseq::hier::Hierarchy<1, 1, hseq::hier::Level<1, 2>>,
                                      ForgetfulPool, hseq::hier::Repeat>;
static_assert(sizeof(Model) > 0);
