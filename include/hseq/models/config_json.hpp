// SPDX-License-Identifier: MIT
/// @file
/// @brief `parse_config_json`: a model's `config_from_json` in one place. Checkpoints store a
/// model's configuration as JSON (`config_json()`, with the model type's compile-time choices as
/// extra keys); reading one back parses it into the runtime `Config`, lets the model read or check
/// the extra keys, and turns every JSON error into an hseq::Error naming the model and the text.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "hseq/core/error.hpp"

namespace hseq::models {

/// `text` as a `Config` (its JSON fields by name); then `finish(json, config)`, which may read the
/// keys the type adds (and throw when they name another model type). `who` names the model in the
/// error of a malformed document.
template <class Config, class Finish>
Config parse_config_json(std::string const& text, char const* who, Finish&& finish) {
  Config c;
  try {
    nlohmann::json const j = nlohmann::json::parse(text);
    j.get_to(c);
    finish(j, c);
  } catch (nlohmann::json::exception const& e) {
    HSEQ_FAIL(who << ": invalid config JSON '" << text << "': " << e.what());
  }
  return c;
}

/// For a model type without compile-time choices in its JSON.
template <class Config>
Config parse_config_json(std::string const& text, char const* who) {
  return parse_config_json<Config>(text, who, [](nlohmann::json const&, Config&) {});
}

}  // namespace hseq::models
