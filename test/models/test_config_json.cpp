// SPDX-License-Identifier: MIT
// models/config_json.hpp: parse_config_json reads a Config by field name, hands the document to the
// model's finish step, and turns every JSON error (syntax, a missing or mistyped key, in either
// step) into an hseq::Error naming the model and the text.
#include <doctest/doctest.h>

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "hseq/core/error.hpp"
#include "hseq/models/config_json.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

namespace {
struct Cfg {
  std::int64_t dim = 0;
  std::string name;
  NLOHMANN_DEFINE_TYPE_INTRUSIVE(Cfg, dim, name)
};
}  // namespace

TEST_CASE("config_json: fields by name, then the model's finish step") {
  auto c = hseq::models::parse_config_json<Cfg>(R"({"name":"x","dim":7})", "Toy");
  CHECK(c.dim == 7);
  CHECK(c.name == "x");
  auto d = hseq::models::parse_config_json<Cfg>(R"({"name":"x","dim":7,"extra":3})", "Toy",
                                                [](nlohmann::json const& j, Cfg& cfg) { cfg.dim += j.at("extra").get<std::int64_t>(); });
  CHECK(d.dim == 10);
}

TEST_CASE("config_json: malformed documents are hseq::Errors naming the model and the text") {
  using hseq::models::parse_config_json;
  CHECK_THROWS_WITH_AS(parse_config_json<Cfg>("{not json", "Toy"),
                       doctest::Contains("Toy: invalid config JSON '{not json'"), hseq::Error);
  CHECK_THROWS_WITH_AS(parse_config_json<Cfg>(R"({"dim":7})", "Toy"),
                       doctest::Contains("Toy: invalid config JSON"), hseq::Error);  // "name" missing
  CHECK_THROWS_WITH_AS(parse_config_json<Cfg>(R"({"name":"x","dim":"seven"})", "Toy"),
                       doctest::Contains("Toy: invalid config JSON"), hseq::Error);
  // A key the finish step reads but the document lacks.
  CHECK_THROWS_WITH_AS(parse_config_json<Cfg>(R"({"name":"x","dim":7})", "Toy",
                                              [](nlohmann::json const& j, Cfg&) { (void)j.at("shorten"); }),
                       doctest::Contains("Toy: invalid config JSON"), hseq::Error);
  // The finish step's own refusals pass through unchanged.
  CHECK_THROWS_WITH_AS(parse_config_json<Cfg>(R"({"name":"x","dim":7})", "Toy",
                                              [](nlohmann::json const&, Cfg&) { HSEQ_FAIL("Toy: another type"); }),
                       doctest::Contains("Toy: another type"), hseq::Error);
}

}  // namespace HSEQ_TEST_UNIT
