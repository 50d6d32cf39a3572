// SPDX-License-Identifier: MIT
// models/memory_model.hpp: which models carry a memory, and UnboundMemory's unbind-and-restore.
#include <doctest/doctest.h>

#include "hseq/models/memory_model.hpp"
#include "hseq/models/transformer_lm.hpp"
#include "hseq/models/transformer_xl.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;

static_assert(models::MemoryModel<models::TransformerXl<cpu, float>>);
static_assert(!models::MemoryModel<models::TransformerLm<cpu, float>>);
static_assert(std::is_same_v<models::MemoryOf<models::TransformerXl<cpu, double>>,
                             models::TransformerXl<cpu, double>::Memory>);
// Nothing is stored for a model without a memory.
static_assert(sizeof(models::UnboundMemory<models::TransformerLm<cpu, float>>) ==
              sizeof(models::TransformerLm<cpu, float>*));

TEST_CASE("UnboundMemory unbinds a memory model's memory for its scope and binds the same one back") {
  using Xl = models::TransformerXl<cpu, float>;
  Xl m({.vocab = 11, .dim = 8, .heads = 2, .layers = 1, .context = 4, .mem_len = 2});
  auto mem = m.make_memory(3);
  m.bind_memory(&mem);
  {
    models::UnboundMemory<Xl> guard(m);
    CHECK(m.bound_memory() == nullptr);
  }
  CHECK(m.bound_memory() == &mem);
  m.bind_memory(nullptr);
  {
    models::UnboundMemory<Xl> guard(m);
    CHECK(m.bound_memory() == nullptr);
  }
  CHECK(m.bound_memory() == nullptr);
}

}  // namespace HSEQ_TEST_UNIT
