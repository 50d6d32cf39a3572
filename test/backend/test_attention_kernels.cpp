// SPDX-License-Identifier: MIT
// backend/attention_kernels.hpp: the CUDA attention kernel names and HSEQ_CUDA_ATTENTION (host-only,
// so it runs without a GPU).
#include <doctest/doctest.h>

#include <cstdlib>
#include <string>

#include "hseq/backend/attention_kernels.hpp"
#include "support/scoped_env.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using hseq::AttentionKernels;

namespace {

/// Sets HSEQ_CUDA_ATTENTION for its lifetime (nullptr: unset), restoring the previous value.
struct EnvAttention : hseq::test::ScopedEnv {
  explicit EnvAttention(char const* value) : ScopedEnv("HSEQ_CUDA_ATTENTION", value) {}
};

std::string error_of(char const* name) {
  try {
    (void)hseq::parse_attention_kernels(name, "--attention");
  } catch (hseq::Error const& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("attention kernels: every name parses to its family") {
  CHECK(hseq::parse_attention_kernels("auto") == AttentionKernels::kAuto);
  CHECK(hseq::parse_attention_kernels("mma") == AttentionKernels::kMma);
  CHECK(hseq::parse_attention_kernels("tiled") == AttentionKernels::kTiled);
  CHECK(hseq::parse_attention_kernels("simple") == AttentionKernels::kSimple);
}

TEST_CASE("attention kernels: an unknown name throws naming its source, the name and the known ones") {
  for (char const* bad : {"MMA", "tile", "", "mma "}) {
    CAPTURE(bad);
    std::string msg = error_of(bad);
    REQUIRE(!msg.empty());
    CHECK(msg.find("--attention") != std::string::npos);
    CHECK(msg.find(std::string("'") + bad + "'") != std::string::npos);
    CHECK(msg.find("auto, mma, tiled, simple") != std::string::npos);
  }
}

TEST_CASE("attention kernels: HSEQ_CUDA_ATTENTION sets the default; unset or empty is auto; a typo throws") {
  {
    EnvAttention env(nullptr);
    CHECK(hseq::attention_kernels_from_env() == AttentionKernels::kAuto);
  }
  {
    EnvAttention env("");
    CHECK(hseq::attention_kernels_from_env() == AttentionKernels::kAuto);
  }
  {
    EnvAttention env("tiled");
    CHECK(hseq::attention_kernels_from_env() == AttentionKernels::kTiled);
  }
  {
    EnvAttention env("simple");
    CHECK(hseq::attention_kernels_from_env() == AttentionKernels::kSimple);
  }
  {
    EnvAttention env("tilde");
    std::string msg;
    try {
      (void)hseq::attention_kernels_from_env();
    } catch (hseq::Error const& e) {
      msg = e.what();
    }
    CHECK(msg.find("HSEQ_CUDA_ATTENTION") != std::string::npos);
    CHECK(msg.find("'tilde'") != std::string::npos);
  }
}

}  // namespace HSEQ_TEST_UNIT
