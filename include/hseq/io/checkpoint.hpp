// SPDX-License-Identifier: MIT
/// @file
/// @brief Training checkpoints: the parameters of a `ParamStore` and, optionally, the `AdamW` state,
/// in one safetensors file (readable by the `safetensors` Python package).
///
/// Contents of a checkpoint file:
///   tensors   `<param name>`         each parameter, F32 or F64, with its shape
///             `optim.m.<param name>` AdamW first moment of that parameter (only with an optimizer)
///             `optim.v.<param name>` AdamW second moment
///   metadata  `hseq.format`          "hseq-checkpoint-1"
///             `hseq.model_kind`      e.g. "transformer_lm"; checked on load
///             `hseq.model_config`    JSON text of the model's configuration; checked on load
///             `hseq.trainer_state`   JSON text, opaque here (the trainer interprets it)
///             `hseq.dtype`           "F32" or "F64"
///             `optim.step`           AdamW step count (only with an optimizer)
/// Device parameters are copied through host memory. Loading validates everything before it writes
/// anything, so a failed load leaves the store and the optimizer as they were.
#pragma once

#include <cstdint>
#include <cstring>
#include <functional>
#include <set>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

#include "hseq/backend/backend.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/memory_space.hpp"
#include "hseq/core/shape.hpp"
#include "hseq/core/tensor_view.hpp"
#include "hseq/io/safetensors.hpp"
#include "hseq/nn/parameter.hpp"
#include "hseq/train/adamw.hpp"

namespace hseq::io {

inline constexpr char const* kCheckpointFormat = "hseq-checkpoint-1";

/// What a checkpoint says about itself besides its tensors.
struct CheckpointInfo {
  std::string model_kind;     ///< which model class wrote it, e.g. "transformer_lm"
  std::string model_config;   ///< JSON text of the model configuration
  std::string trainer_state;  ///< JSON text, opaque here
};

/// A host copy of `src` (device memory is downloaded through B's context).
template <Backend B, class T>
std::vector<T> to_host(typename B::Context& ctx, View<T const, typename B::Space> src) {
  std::vector<T> out(static_cast<std::size_t>(src.numel()));
  if (out.empty()) return out;
  if constexpr (std::is_same_v<typename B::Space, HostSpace>) {
    (void)ctx;
    std::memcpy(out.data(), src.data, sizeof(T) * out.size());
  } else {
    B::template download<T>(ctx, out.data(), src.data, out.size());
  }
  return out;
}

/// Copies `dst.numel()` elements from host memory `src` into `dst` (uploaded for device memory).
template <Backend B, class T>
void from_host(typename B::Context& ctx, T const* src, View<T, typename B::Space> dst) {
  auto n = static_cast<std::size_t>(dst.numel());
  if (n == 0) return;
  if constexpr (std::is_same_v<typename B::Space, HostSpace>) {
    (void)ctx;
    std::memcpy(dst.data, src, sizeof(T) * n);
  } else {
    B::template upload<T>(ctx, dst.data, src, n);
  }
}

namespace detail {

inline std::string const& checkpoint_meta(SafetensorsFile const& f, std::string const& key) {
  HSEQ_CHECK(f.has_metadata(key), "checkpoint " << f.path() << ": metadata '" << key << "' is missing");
  return f.metadata(key);
}

/// Checks the format tag and returns the info fields.
inline CheckpointInfo checkpoint_info_of(SafetensorsFile const& f) {
  HSEQ_CHECK(f.has_metadata("hseq.format"),
             "checkpoint " << f.path() << ": not an hseq checkpoint (no 'hseq.format' metadata)");
  HSEQ_CHECK(f.metadata("hseq.format") == kCheckpointFormat,
             "checkpoint " << f.path() << ": unsupported format '" << f.metadata("hseq.format") << "' (expected '"
                           << kCheckpointFormat << "')");
  return {checkpoint_meta(f, "hseq.model_kind"), checkpoint_meta(f, "hseq.model_config"),
          checkpoint_meta(f, "hseq.trainer_state")};
}

/// Throws naming every top-level key whose value differs between the two configs.
inline void check_same_model_config(std::string const& path, std::string const& found, std::string const& expected) {
  using nlohmann::json;
  auto parse = [&](std::string const& text, char const* which) {
    try {
      return json::parse(text);
    } catch (json::exception const& ex) {
      HSEQ_FAIL("checkpoint " << path << ": the " << which << " model config is not valid JSON (" << ex.what()
                              << "): " << text);
    }
  };
  json const a = parse(found, "stored");
  json const b = parse(expected, "expected");
  if (a == b) return;
  std::ostringstream os;
  if (a.is_object() && b.is_object()) {
    std::set<std::string> keys;
    for (auto it = a.begin(); it != a.end(); ++it) keys.insert(it.key());
    for (auto it = b.begin(); it != b.end(); ++it) keys.insert(it.key());
    bool first = true;
    for (auto const& k : keys) {
      bool ina = a.contains(k), inb = b.contains(k);
      if (ina && inb && a.at(k) == b.at(k)) continue;
      os << (first ? "" : "; ") << "'" << k << "': checkpoint " << (ina ? a.at(k).dump() : "(absent)") << ", expected "
         << (inb ? b.at(k).dump() : "(absent)");
      first = false;
    }
  } else {
    os << "checkpoint " << a.dump() << ", expected " << b.dump();
  }
  HSEQ_FAIL("checkpoint " << path << ": model config differs: " << os.str());
}

}  // namespace detail

/// Writes the parameters of `params` (and, when `opt` is not null, its moments and step count) with
/// `info` to `path`, atomically. `opt` takes no part in deduction, so a plain `nullptr` works.
template <Backend B, class T>
void save_checkpoint(std::string const& path, CheckpointInfo const& info, nn::ParamStore<B, T> const& params,
                     std::type_identity_t<train::AdamW<B, T>>* opt) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "save_checkpoint: T must be float or double");
  try {
    [[maybe_unused]] nlohmann::json const parsed = nlohmann::json::parse(info.model_config);
  } catch (nlohmann::json::exception const& ex) {
    HSEQ_FAIL("save_checkpoint " << path << ": model_config is not valid JSON (" << ex.what()
                                 << "): " << info.model_config);
  }
  using Space = typename B::Space;
  typename B::Context ctx;
  SafetensorsWriter w;
  auto const values = params.values();
  for (auto const& e : params.entries()) {
    HSEQ_CHECK(e.name.rfind("optim.", 0) != 0,
               "save_checkpoint " << path << ": parameter name '" << e.name << "' collides with the optim.* tensors");
    Shape const& s = e.param->shape;
    std::vector<T> host = to_host<B, T>(ctx, View<T const, Space>(values.data + e.offset, s));
    w.add<T>(e.name, s, host.data());
  }
  if (opt != nullptr) {
    View<T const, Space> const m = opt->first_moment(), v = opt->second_moment();
    HSEQ_CHECK(m.shape == values.shape && v.shape == values.shape,
               "save_checkpoint " << path << ": optimizer state " << m.shape << " does not match the store "
                                  << values.shape << " (an optimizer of another store?)");
    for (auto const& e : params.entries()) {
      Shape const& s = e.param->shape;
      std::vector<T> hm = to_host<B, T>(ctx, View<T const, Space>(m.data + e.offset, s));
      std::vector<T> hv = to_host<B, T>(ctx, View<T const, Space>(v.data + e.offset, s));
      w.add<T>("optim.m." + e.name, s, hm.data());
      w.add<T>("optim.v." + e.name, s, hv.data());
    }
    w.set_metadata("optim.step", std::to_string(opt->steps()));
  }
  w.set_metadata("hseq.format", kCheckpointFormat);
  w.set_metadata("hseq.model_kind", info.model_kind);
  w.set_metadata("hseq.model_config", info.model_config);
  w.set_metadata("hseq.trainer_state", info.trainer_state);
  w.set_metadata("hseq.dtype", dtype_of<T>());
  w.write(path);
}

/// The metadata of checkpoint `path` (format checked), reading only the file's header.
inline CheckpointInfo read_checkpoint_info(std::string const& path) {
  return detail::checkpoint_info_of(SafetensorsFile::load_header(path));
}

/// Loads checkpoint `path` into `params` (and into `opt` when it is not null), after checking that it
/// holds an `expected_kind` model with configuration `expected_config` (JSON, compared by value),
/// that every parameter is present with its shape and dtype, and that nothing else is. Returns the
/// checkpoint's info (the trainer state is for the caller to interpret).
///
/// `check_info`, when given, is called with that info after every other check and before anything
/// is written: a caller that interprets the trainer state parses it there, so that a malformed state
/// fails while the store and the optimizer are still untouched, and is read from the same file
/// contents as the tensors (reading the header separately first could see another file, if the
/// checkpoint is replaced in between). Whatever it throws propagates unchanged.
template <Backend B, class T>
CheckpointInfo load_checkpoint(std::string const& path, std::string const& expected_kind,
                               std::string const& expected_config, nn::ParamStore<B, T>& params,
                               std::type_identity_t<train::AdamW<B, T>>* opt,
                               std::function<void(CheckpointInfo const&)> const& check_info = {}) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "load_checkpoint: T must be float or double");
  using Space = typename B::Space;
  SafetensorsFile const f = SafetensorsFile::load(path);
  CheckpointInfo info = detail::checkpoint_info_of(f);
  HSEQ_CHECK(info.model_kind == expected_kind,
             "checkpoint " << path << " holds a '" << info.model_kind << "' model, not a '" << expected_kind << "'");
  detail::check_same_model_config(path, info.model_config, expected_config);
  std::string const& dtype = detail::checkpoint_meta(f, "hseq.dtype");
  HSEQ_CHECK(dtype == dtype_of<T>(), "checkpoint " << path << " stores " << dtype
                                                   << " parameters, cannot load them into " << dtype_of<T>()
                                                   << " parameters");

  // Validate everything before touching the store.
  bool const has_opt = f.has_metadata("optim.step");
  std::set<std::string> expected_names;
  auto check_tensor = [&](std::string const& name, Shape const& s, char const* what) {
    HSEQ_CHECK(f.has(name), "checkpoint " << path << ": " << what << " '" << name << "' is missing");
    TensorInfo const& ti = f.info(name);
    HSEQ_CHECK(ti.dtype == dtype_of<T>(), "checkpoint " << path << ": " << what << " '" << name << "' is " << ti.dtype
                                                        << ", expected " << dtype_of<T>());
    HSEQ_CHECK(ti.shape == s, "checkpoint " << path << ": " << what << " '" << name << "' has shape " << ti.shape
                                            << " in the file, the model expects " << s);
  };
  for (auto const& e : params.entries()) {
    check_tensor(e.name, e.param->shape, "parameter");
    expected_names.insert(e.name);
    if (has_opt) {
      check_tensor("optim.m." + e.name, e.param->shape, "first moment of parameter");
      check_tensor("optim.v." + e.name, e.param->shape, "second moment of parameter");
      expected_names.insert("optim.m." + e.name);
      expected_names.insert("optim.v." + e.name);
    }
  }
  for (auto const& name : f.names())
    HSEQ_CHECK(expected_names.count(name) != 0,
               "checkpoint " << path << ": unexpected tensor '" << name << "' (neither a parameter of the model nor "
                             << (has_opt ? "its optimizer state" : "optimizer state: the file has no optim.step")
                             << ")");
  std::int64_t step = 0;
  if (opt != nullptr) {
    HSEQ_CHECK(has_opt, "checkpoint " << path
                                      << " has no optimizer state (saved without an optimizer); pass no optimizer "
                                         "to load the parameters only");
    std::string const& s = f.metadata("optim.step");
    // Plain decimal digits only, as save_checkpoint writes them: std::stoll alone would also take
    // " 7" and "+7", and report out-of-range values through an exception of its own.
    bool digits = !s.empty() && s.size() <= 18;  // 18 digits always fit in int64
    for (char c : s) digits = digits && c >= '0' && c <= '9';
    HSEQ_CHECK(digits, "checkpoint " << path << ": optim.step '" << s
                                     << "' is not a non-negative integer (of at most 18 digits)");
    step = std::stoll(s);
    HSEQ_CHECK(opt->first_moment().shape == params.values().shape,
               "load_checkpoint " << path << ": the optimizer's state " << opt->first_moment().shape
                                  << " does not match the store " << params.values().shape);
  }

  if (check_info) check_info(info);

  // No check below can fail: every tensor's presence, dtype and shape has been checked above.
  typename B::Context ctx;
  auto const values = params.values();
  for (auto const& e : params.entries()) {
    Shape const& s = e.param->shape;
    from_host<B, T>(ctx, f.read<T>(e.name, s).data(), View<T, Space>(values.data + e.offset, s));
  }
  if (opt != nullptr) {
    auto const m = opt->first_moment(), v = opt->second_moment();
    for (auto const& e : params.entries()) {
      Shape const& s = e.param->shape;
      from_host<B, T>(ctx, f.read<T>("optim.m." + e.name, s).data(), View<T, Space>(m.data + e.offset, s));
      from_host<B, T>(ctx, f.read<T>("optim.v." + e.name, s).data(), View<T, Space>(v.data + e.offset, s));
    }
    opt->set_steps(step);
  }
  return info;
}

}  // namespace hseq::io
