// SPDX-License-Identifier: MIT
/// @file
/// @brief Training checkpoints: the parameters of a `ParamStore` and any number of named state
/// groups (each a `StatefulPart`: an optimizer, later memories or data positions), in one
/// safetensors file (readable by the `safetensors` Python package). This file knows no optimizer and
/// no model: a group is whatever its part's `visit_state` names, and the model is a kind string and
/// a JSON configuration given by the caller.
///
/// Contents of a checkpoint file:
///   tensors   `<param name>`         each parameter, F32 or F64, with its shape
///             `<group>.<name>`       each state tensor of each group (e.g. `optim.m.<param name>`,
///                                    the first moment AdamW names `m.<param name>`, in group "optim")
///   metadata  `hseq.format`          "hseq-checkpoint-1"
///             `hseq.model_kind`      e.g. "transformer_lm"; checked on load
///             `hseq.model_config`    JSON text of the model's configuration; checked on load
///             `hseq.trainer_state`   JSON text, opaque here (the trainer interprets it)
///             `hseq.dtype`           "F32" or "F64"
///             `hseq.state_groups`    JSON array of the group names saved, e.g. ["optim"]
///             `<group>.<name>`       each integer scalar of each group, in decimal (e.g. `optim.step`)
/// Files written before `hseq.state_groups` existed (same format tag) list no groups; their groups
/// are the prefixes of their non-`hseq.` metadata keys (`optim.step` means a group "optim"), which is
/// how such files always marked optimizer state. Device memory is copied through host memory on the
/// caller's context. Loading validates everything before it writes anything, so a failed load leaves
/// the store and every part as they were.
#pragma once

#include <cstdint>
#include <cstring>
#include <functional>
#include <set>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "hseq/core/backend.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/memory_space.hpp"
#include "hseq/core/shape.hpp"
#include "hseq/core/state.hpp"
#include "hseq/core/tensor_view.hpp"
#include "hseq/io/safetensors.hpp"
#include "hseq/nn/parameter.hpp"

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

/// One named group of checkpoint state: a `StatefulPart` under a name (e.g. `{"optim", adamw}`).
/// Holds a reference to the part, which must outlive the save or load call. Group names are
/// non-empty, contain no '.', and are not "hseq" (those keys are the file's own).
template <Backend B>
class StateGroup {
 public:
  using Space = typename B::Space;

  /// What a group's state is visited with (type erasure over the part's own visitor).
  struct Sink {
    virtual void tensor(std::string const& name, View<float, Space> v) = 0;
    virtual void tensor(std::string const& name, View<double, Space> v) = 0;
    virtual void integer(std::string const& name, std::int64_t& x) = 0;

   protected:
    ~Sink() = default;
  };

  template <StatefulPart P>
  StateGroup(std::string name, P& part)
      : name_(std::move(name)), visit_([&part](Sink& sink) {
          part.visit_state([&sink](std::string const& n, auto&& x) {
            using X = std::remove_cvref_t<decltype(x)>;
            if constexpr (std::is_same_v<X, std::int64_t>) {
              sink.integer(n, x);
            } else {
              static_assert(std::is_same_v<X, View<float, Space>> || std::is_same_v<X, View<double, Space>>,
                            "StateGroup: state tensors must be mutable float or double views in the backend's space");
              sink.tensor(n, x);
            }
          });
        }) {}

  std::string const& name() const { return name_; }
  void visit(Sink& sink) const { visit_(sink); }

 private:
  std::string name_;
  std::function<void(Sink&)> visit_;
};

namespace detail {

/// One named value of a group, as visited.
struct StateItem {
  std::string name;   ///< full on-disk name, `<group>.<name>`
  std::string dtype;  ///< "F32" or "F64"; empty for an integer scalar
  Shape shape{};
};

template <Backend B>
struct CollectSink final : StateGroup<B>::Sink {
  std::string prefix;
  std::vector<StateItem> items;
  void tensor(std::string const& n, View<float, typename B::Space> v) override { items.push_back({prefix + n, "F32", v.shape}); }
  void tensor(std::string const& n, View<double, typename B::Space> v) override { items.push_back({prefix + n, "F64", v.shape}); }
  void integer(std::string const& n, std::int64_t&) override { items.push_back({prefix + n, "", Shape{}}); }
};

/// Checks group names (see `StateGroup`) and that no two groups share one.
template <Backend B>
void check_group_names(std::string const& what, std::vector<StateGroup<B>> const& groups) {
  std::set<std::string> seen;
  for (auto const& g : groups) {
    HSEQ_CHECK(!g.name().empty() && g.name().find('.') == std::string::npos && g.name() != "hseq",
               what << ": state group name '" << g.name() << "' must be non-empty, without '.', and not 'hseq'");
    HSEQ_CHECK(seen.insert(g.name()).second, what << ": state group '" << g.name() << "' is given twice");
  }
}

/// The groups a file holds: its `hseq.state_groups` list, or for files written before that key
/// existed, the prefixes of its non-`hseq.` metadata keys.
inline std::set<std::string> file_state_groups(SafetensorsFile const& f) {
  std::set<std::string> out;
  if (f.has_metadata("hseq.state_groups")) {
    std::string const& text = f.metadata("hseq.state_groups");
    try {
      nlohmann::json const j = nlohmann::json::parse(text);
      HSEQ_CHECK(j.is_array(), "not an array");
      for (auto const& x : j) out.insert(x.get<std::string>());
    } catch (std::exception const& ex) {
      HSEQ_FAIL("checkpoint " << f.path() << ": hseq.state_groups '" << text
                              << "' is not a JSON array of names (" << ex.what() << ")");
    }
    return out;
  }
  for (auto const& [key, value] : f.all_metadata()) {
    (void)value;
    auto dot = key.find('.');
    if (dot != std::string::npos && dot > 0 && key.compare(0, dot, "hseq") != 0) out.insert(key.substr(0, dot));
  }
  return out;
}

/// Parses a saved integer scalar: plain decimal digits only, as save_checkpoint writes them
/// (std::stoll alone would also take " 7" and "+7", and report out-of-range values through an
/// exception of its own).
inline std::int64_t parse_state_integer(std::string const& path, std::string const& key, std::string const& s) {
  bool digits = !s.empty() && s.size() <= 18;  // 18 digits always fit in int64
  for (char c : s) digits = digits && c >= '0' && c <= '9';
  HSEQ_CHECK(digits, "checkpoint " << path << ": " << key << " '" << s
                                   << "' is not a non-negative integer (of at most 18 digits)");
  return std::stoll(s);
}

/// Writes each visited value of one group into a file being built.
template <Backend B>
struct WriteSink final : StateGroup<B>::Sink {
  typename B::Context* ctx;
  SafetensorsWriter* w;
  std::string path, prefix;
  std::set<std::string>* names;
  void claim(std::string const& full) {
    HSEQ_CHECK(names->insert(full).second, "save_checkpoint " << path << ": state '" << full << "' is named twice");
  }
  template <class U>
  void put(std::string const& n, View<U, typename B::Space> v) {
    claim(prefix + n);
    std::vector<U> host = to_host<B, U>(*ctx, View<U const, typename B::Space>(v));
    w->template add<U>(prefix + n, v.shape, host.data());
  }
  void tensor(std::string const& n, View<float, typename B::Space> v) override { put(n, v); }
  void tensor(std::string const& n, View<double, typename B::Space> v) override { put(n, v); }
  void integer(std::string const& n, std::int64_t& x) override {
    claim(prefix + n);
    HSEQ_CHECK(x >= 0, "save_checkpoint " << path << ": state '" << prefix << n << "' is negative (" << x << ")");
    w->set_metadata(prefix + n, std::to_string(x));
  }
};

/// Writes each visited value of one group from a validated file.
template <Backend B>
struct ReadSink final : StateGroup<B>::Sink {
  typename B::Context* ctx;
  SafetensorsFile const* f;
  std::string prefix;
  std::vector<std::int64_t> const* integers;
  std::size_t next_integer = 0;
  template <class U>
  void get(std::string const& n, View<U, typename B::Space> v) {
    from_host<B, U>(*ctx, f->template read<U>(prefix + n, v.shape).data(), v);
  }
  void tensor(std::string const& n, View<float, typename B::Space> v) override { get(n, v); }
  void tensor(std::string const& n, View<double, typename B::Space> v) override { get(n, v); }
  // Integers come in the order the validating visit saw them (visiting is repeatable).
  void integer(std::string const&, std::int64_t& x) override { x = (*integers)[next_integer++]; }
};

}  // namespace detail

/// Writes the parameters of `params` and the state of each of `groups` (e.g. `{{"optim", adamw}}`)
/// with `info` to `path`, atomically. Device memory is downloaded on `ctx`. Everything is checked
/// (and gathered) before the file is written, so a failure leaves any previous file in place.
template <Backend B, class T>
void save_checkpoint(typename B::Context& ctx, std::string const& path, CheckpointInfo const& info,
                     nn::ParamStore<B, T> const& params,
                     std::type_identity_t<std::vector<StateGroup<B>>> const& groups = {}) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "save_checkpoint: T must be float or double");
  try {
    [[maybe_unused]] nlohmann::json const parsed = nlohmann::json::parse(info.model_config);
  } catch (nlohmann::json::exception const& ex) {
    HSEQ_FAIL("save_checkpoint " << path << ": model_config is not valid JSON (" << ex.what()
                                 << "): " << info.model_config);
  }
  detail::check_group_names<B>("save_checkpoint " + path, groups);
  using Space = typename B::Space;
  SafetensorsWriter w;
  auto const values = params.values();
  std::set<std::string> names;
  for (auto const& e : params.entries()) {
    for (auto const& g : groups)
      HSEQ_CHECK(e.name.rfind(g.name() + ".", 0) != 0, "save_checkpoint " << path << ": parameter name '" << e.name
                                                                          << "' collides with the " << g.name()
                                                                          << ".* state tensors");
    Shape const& s = e.param->shape;
    std::vector<T> host = to_host<B, T>(ctx, View<T const, Space>(values.data + e.offset, s));
    w.add<T>(e.name, s, host.data());
    names.insert(e.name);
  }
  nlohmann::json group_list = nlohmann::json::array();
  for (auto const& g : groups) {
    detail::WriteSink<B> sink;
    sink.ctx = &ctx;
    sink.w = &w;
    sink.path = path;
    sink.prefix = g.name() + ".";
    sink.names = &names;
    g.visit(sink);
    group_list.push_back(g.name());
  }
  w.set_metadata("hseq.format", kCheckpointFormat);
  w.set_metadata("hseq.model_kind", info.model_kind);
  w.set_metadata("hseq.model_config", info.model_config);
  w.set_metadata("hseq.trainer_state", info.trainer_state);
  w.set_metadata("hseq.dtype", dtype_of<T>());
  w.set_metadata("hseq.state_groups", group_list.dump());
  w.write(path);
}

/// The metadata of checkpoint `path` (format checked), reading only the file's header.
inline CheckpointInfo read_checkpoint_info(std::string const& path) {
  return detail::checkpoint_info_of(SafetensorsFile::load_header(path));
}

/// Loads checkpoint `path` into `params` and into each of `groups` (uploading on `ctx`), after
/// checking that it holds an `expected_kind` model with configuration `expected_config` (JSON,
/// compared by value), that every parameter and every value each group visits is present with its
/// shape and dtype, and that every other tensor belongs to a group the file lists (groups not asked
/// for are skipped: a trainer checkpoint loads as parameters only). Returns the checkpoint's info
/// (the trainer state is for the caller to interpret).
///
/// `check_info`, when given, is called with that info after every other check and before anything
/// is written: a caller that interprets the trainer state parses it there, so that a malformed state
/// fails while the store and the parts are still untouched, and is read from the same file
/// contents as the tensors (reading the header separately first could see another file, if the
/// checkpoint is replaced in between). Whatever it throws propagates unchanged.
template <Backend B, class T>
CheckpointInfo load_checkpoint(typename B::Context& ctx, std::string const& path, std::string const& expected_kind,
                               std::string const& expected_config, nn::ParamStore<B, T>& params,
                               std::type_identity_t<std::vector<StateGroup<B>>> const& groups = {},
                               std::function<void(CheckpointInfo const&)> const& check_info = {}) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "load_checkpoint: T must be float or double");
  using Space = typename B::Space;
  detail::check_group_names<B>("load_checkpoint " + path, groups);
  SafetensorsFile const f = SafetensorsFile::load(path);
  CheckpointInfo info = detail::checkpoint_info_of(f);
  HSEQ_CHECK(info.model_kind == expected_kind,
             "checkpoint " << path << " holds a '" << info.model_kind << "' model, not a '" << expected_kind << "'");
  detail::check_same_model_config(path, info.model_config, expected_config);
  std::string const& dtype = detail::checkpoint_meta(f, "hseq.dtype");
  HSEQ_CHECK(dtype == dtype_of<T>(), "checkpoint " << path << " stores " << dtype
                                                   << " parameters, cannot load them into " << dtype_of<T>()
                                                   << " parameters");

  // Validate everything before touching the store or any part.
  std::set<std::string> const file_groups = detail::file_state_groups(f);
  std::set<std::string> expected_names;
  auto check_tensor = [&](std::string const& name, std::string const& want_dtype, Shape const& s, char const* what) {
    HSEQ_CHECK(f.has(name), "checkpoint " << path << ": " << what << " '" << name << "' is missing");
    TensorInfo const& ti = f.info(name);
    HSEQ_CHECK(ti.dtype == want_dtype, "checkpoint " << path << ": " << what << " '" << name << "' is " << ti.dtype
                                                     << ", expected " << want_dtype);
    HSEQ_CHECK(ti.shape == s, "checkpoint " << path << ": " << what << " '" << name << "' has shape " << ti.shape
                                            << " in the file, the model expects " << s);
  };
  for (auto const& e : params.entries()) {
    check_tensor(e.name, dtype_of<T>(), e.param->shape, "parameter");
    expected_names.insert(e.name);
  }
  std::vector<std::vector<detail::StateItem>> items(groups.size());
  std::vector<std::vector<std::int64_t>> integers(groups.size());
  for (std::size_t gi = 0; gi < groups.size(); ++gi) {
    std::string const& g = groups[gi].name();
    HSEQ_CHECK(file_groups.count(g) != 0, "checkpoint " << path << " has no '" << g << "' state (saved without it"
                                                        << "); pass no '" << g
                                                        << "' group to load the rest without it");
    detail::CollectSink<B> sink;
    sink.prefix = g + ".";
    groups[gi].visit(sink);
    items[gi] = std::move(sink.items);
    for (auto const& it : items[gi]) {
      if (it.dtype.empty()) {
        HSEQ_CHECK(f.has_metadata(it.name), "checkpoint " << path << ": state '" << it.name << "' is missing");
        integers[gi].push_back(detail::parse_state_integer(path, it.name, f.metadata(it.name)));
      } else {
        check_tensor(it.name, it.dtype, it.shape, "state");
        expected_names.insert(it.name);
      }
    }
  }
  for (auto const& name : f.names()) {
    if (expected_names.count(name) != 0) continue;
    bool skipped_group = false;  // state of a group the file lists but the caller did not ask for
    for (auto const& g : file_groups) {
      bool requested = false;
      for (auto const& rg : groups) requested = requested || rg.name() == g;
      skipped_group = skipped_group || (!requested && name.rfind(g + ".", 0) == 0);
    }
    std::string listed;
    for (auto const& g : file_groups) listed += (listed.empty() ? "" : ", ") + g;
    HSEQ_CHECK(skipped_group, "checkpoint " << path << ": unexpected tensor '" << name
                                            << "' (neither a parameter of the model nor state of the groups loaded; "
                                               "groups in the file: "
                                            << (listed.empty() ? "none" : listed) << ")");
  }

  if (check_info) check_info(info);

  // No check below can fail: every tensor's presence, dtype and shape has been checked above.
  auto const values = params.values();
  for (auto const& e : params.entries()) {
    Shape const& s = e.param->shape;
    from_host<B, T>(ctx, f.read<T>(e.name, s).data(), View<T, Space>(values.data + e.offset, s));
  }
  for (std::size_t gi = 0; gi < groups.size(); ++gi) {
    detail::ReadSink<B> sink;
    sink.ctx = &ctx;
    sink.f = &f;
    sink.prefix = groups[gi].name() + ".";
    sink.integers = &integers[gi];
    groups[gi].visit(sink);
  }
  return info;
}

}  // namespace hseq::io
