// SPDX-License-Identifier: MIT
// Fuzz harness: the hierarchy notation ("2@1 4@space 2@1", hseq/hier/hierarchy.hpp) and the byte
// segmentation rules ("word:2/32", hseq/hier/byte_rule.hpp). Any text: parsing either throws
// hseq::Error or gives a spec whose string form parses back to the same spec (what a checkpoint's
// config relies on); a rule that parses, run over the input's bytes, emits at position 0, never
// lets a segment grow past its max_len, and emits no more than max_emits says (what workspace
// plans rely on).
#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "fuzz_support.hpp"
#include "hseq/core/error.hpp"
#include "hseq/hier/byte_rule.hpp"
#include "hseq/hier/hierarchy.hpp"

namespace {

using hseq::hier::ByteRule;
using hseq::hier::HierarchySpec;

void check_rule(ByteRule const& r, std::string_view bytes) {
  HSEQ_FUZZ_ASSERT(ByteRule::parse(r.to_string()) == r);
  ByteRule::State s = r.start();
  std::int64_t emits = 0, since = 0, len = 0;
  for (std::size_t t = 0; t < bytes.size(); ++t) {
    auto x = static_cast<std::int32_t>(static_cast<unsigned char>(bytes[t]));
    double score = static_cast<double>(x) / 64.0;  // some score for the kinds that read one
    bool emit = r.step(s, x, score);
    HSEQ_FUZZ_ASSERT(t != 0 || emit);
    ++len;
    if (emit) {
      ++emits;
      since = 1;
    } else {
      ++since;
    }
    HSEQ_FUZZ_ASSERT(r.max_len == 0 || since <= r.max_len);
  }
  HSEQ_FUZZ_ASSERT(emits <= r.max_emits(len));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size) {
  std::string text(reinterpret_cast<char const*>(data), size);
  try {
    HierarchySpec spec = HierarchySpec::parse(text);
    std::string form = spec.to_string();
    HSEQ_FUZZ_ASSERT(HierarchySpec::parse(form) == spec);
    nlohmann::json j = spec;
    HSEQ_FUZZ_ASSERT(j.get<HierarchySpec>() == spec);
    for (auto const& level : spec.levels)
      if (level.rule) check_rule(*level.rule, text);
  } catch (hseq::Error const&) {
  }
  // The text up to the first blank as one rule, the rest as the bytes it segments.
  std::size_t cut = text.find_first_of(" \n");
  std::string_view head = std::string_view(text).substr(0, cut);
  std::string_view rest = cut == std::string::npos ? std::string_view() : std::string_view(text).substr(cut + 1);
  try {
    check_rule(ByteRule::parse(head), rest);
  } catch (hseq::Error const&) {
  }
  return 0;
}
