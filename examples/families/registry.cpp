// SPDX-License-Identifier: MIT
// cli::families(): the families of the list(s) the build names in HSEQ_FAMILY_LISTS (a header
// that includes each list file: examples/families/list.def, plus test/families/list.def for the
// test programs), in list order.
#include "family.hpp"

#define HSEQ_FAMILY(name, Trait) Family const& family_##name();
namespace cli {
#include HSEQ_FAMILY_LISTS
}  // namespace cli
#undef HSEQ_FAMILY

std::vector<cli::Family const*> const& cli::families() {
#define HSEQ_FAMILY(name, Trait) &family_##name(),
  static std::vector<Family const*> const list{
#include HSEQ_FAMILY_LISTS
  };
#undef HSEQ_FAMILY
  return list;
}
