// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "hseq/io/checkpoint.hpp"
#include "hseq/io/text_dataset.hpp"
#include "hseq/models/hourglass.hpp"
#include "hseq/models/transformer_lm.hpp"
#include "hseq/nn/transformer_block.hpp"
#include "hseq/train/trainer.hpp"
#include "support/temp_dir.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
namespace fs = std::filesystem;

namespace {

struct TempDir : hseq::test::TempDir {
  TempDir() : hseq::test::TempDir("hseq_checkpoint_test") {}
};

using Block = nn::TransformerBlock<cpu, float>;
using Store = nn::ParamStore<cpu, float>;
using Opt = train::AdamW<cpu, float>;
static_assert(StatefulPart<Opt>);

/// The context every checkpoint call here runs on (the CPU context carries no stream).
cpu::Context& ctx_() {
  static cpu::Context c;
  return c;
}

std::string config_json(std::int64_t dim, std::int64_t heads) {
  return nlohmann::json{{"dim", dim}, {"heads", heads}, {"mlp_hidden", 0}, {"bias", true}}.dump();
}

/// A block with its store and optimizer; the store must not outlive the block, nor the block move.
struct Model {
  std::unique_ptr<Block> block;
  std::unique_ptr<Store> store;
  std::unique_ptr<Opt> opt;
  std::string config;

  Model(std::int64_t dim, std::uint64_t seed, std::int64_t heads = 2) : config(config_json(dim, heads)) {
    cpu::Context ctx;
    block = std::make_unique<Block>(Block::Config{.dim = dim, .heads = heads});
    store = std::make_unique<Store>(*block);
    store->init(ctx, seed);
    opt = std::make_unique<Opt>(ctx, *store, Opt::Config{.lr = 1e-2, .weight_decay = 0.1});
  }
  /// One optimizer step with nonzero gradients, so that values, moments and the step count are all
  /// nontrivial.
  void train_step(double phase) {
    cpu::Context ctx;
    store->zero_grad(ctx);
    std::size_t k = 0;
    for (auto const& e : store->entries())
      for (std::int64_t i = 0; i < e.param->shape.numel(); ++i, ++k)
        e.param->grad[i] = float(std::sin(0.37 * double(k) + phase) + 0.01);
    opt->step(ctx);
  }
};

template <class T, class S>
bool same_bits(View<T, S> a, View<T, S> b) {
  return a.shape == b.shape && std::memcmp(a.data, b.data, sizeof(T) * std::size_t(a.numel())) == 0;
}

io::CheckpointInfo info_for(Model const& m) {
  return {"transformer_block", m.config, R"({"epoch": 3, "tokens_seen": 12345})"};
}

std::string error_of(auto&& f) {
  try {
    f();
  } catch (Error const& e) {
    return e.what();
  }
  return "(no error)";
}

/// A checkpoint file's tensors and metadata as plain data, to edit and write back.
struct RawFile {
  struct Tensor {
    std::string dtype;
    Shape shape;
    std::vector<char> bytes;
  };
  std::map<std::string, Tensor> tensors;
  std::map<std::string, std::string> metadata;

  static RawFile read(std::string const& path) {
    io::SafetensorsFile const f = io::SafetensorsFile::load(path);
    RawFile r;
    for (auto const& name : f.names()) {
      auto const raw = f.raw(name);
      r.tensors[name] = {f.info(name).dtype, f.info(name).shape, std::vector<char>(raw.begin(), raw.end())};
    }
    r.metadata = f.all_metadata();
    return r;
  }
  void write(std::string const& path) const {
    io::SafetensorsWriter w;
    for (auto const& [name, t] : tensors) w.add(name, t.dtype, t.shape, t.bytes.data(), t.bytes.size());
    for (auto const& [k, v] : metadata) w.set_metadata(k, v);
    w.write(path);
  }
  /// Re-encodes F32 tensor `name` as F64 (same shape and values): a well-formed file whose only
  /// fault is that one tensor's dtype.
  void make_f64(std::string const& name) {
    Tensor& t = tensors.at(name);
    REQUIRE(t.dtype == "F32");
    std::vector<double> d(t.bytes.size() / sizeof(float));
    for (std::size_t i = 0; i < d.size(); ++i) {
      float x;
      std::memcpy(&x, t.bytes.data() + i * sizeof(float), sizeof x);
      d[i] = x;
    }
    t.dtype = "F64";
    t.bytes.assign(reinterpret_cast<char const*>(d.data()), reinterpret_cast<char const*>(d.data() + d.size()));
  }
};

/// The bytes of everything a load may write: parameters, both moments and the step count.
struct Snapshot {
  std::vector<char> values, m, v;
  std::int64_t steps = -1;
  template <class S>
  static std::vector<char> bytes_of(View<float, S> x) {
    auto const* p = reinterpret_cast<char const*>(x.data);
    return std::vector<char>(p, p + sizeof(float) * std::size_t(x.numel()));
  }
  Snapshot(Store& store, Opt& opt)
      : values(bytes_of(store.values())),
        m(bytes_of(opt.first_moment())),
        v(bytes_of(opt.second_moment())),
        steps(opt.steps()) {}
  explicit Snapshot(Model& x) : Snapshot(*x.store, *x.opt) {}
  bool operator==(Snapshot const&) const = default;
};

}  // namespace

TEST_CASE("checkpoint: round trip of parameters, moments and step is bit-identical") {
  TempDir tmp;
  std::string const path = tmp.file("ckpt.safetensors");
  Model a(16, 1);
  a.train_step(0.0);
  a.train_step(1.0);
  REQUIRE(a.opt->steps() == 2);
  io::save_checkpoint(ctx_(), path, info_for(a), *a.store, {{"optim", *a.opt}});

  Model b(16, 99);  // different initial values
  b.train_step(5.0);
  REQUIRE_FALSE(same_bits(a.store->values(), b.store->values()));
  io::CheckpointInfo info = io::load_checkpoint(ctx_(), path, "transformer_block", a.config, *b.store, {{"optim", *b.opt}});
  CHECK(info.model_kind == "transformer_block");
  CHECK(info.model_config == a.config);
  CHECK(nlohmann::json::parse(info.trainer_state).at("tokens_seen") == 12345);
  CHECK(same_bits(a.store->values(), b.store->values()));
  CHECK(same_bits(a.opt->first_moment(), b.opt->first_moment()));
  CHECK(same_bits(a.opt->second_moment(), b.opt->second_moment()));
  CHECK(b.opt->steps() == 2);
  // Each parameter's view in the fresh block sees the loaded values.
  for (std::size_t k = 0; k < a.store->entries().size(); ++k) {
    auto const& ea = a.store->entries()[k];
    auto const& eb = b.store->entries()[k];
    REQUIRE(ea.name == eb.name);
    CHECK(same_bits(View<float const, HostSpace>(ea.param->value), View<float const, HostSpace>(eb.param->value)));
  }
  // Training on from both gives the same result.
  a.train_step(2.0);
  b.train_step(2.0);
  CHECK(same_bits(a.store->values(), b.store->values()));
  CHECK(b.opt->steps() == 3);

  // The file is plain safetensors: parameters, moments, metadata.
  io::SafetensorsFile f = io::SafetensorsFile::load(path);
  std::size_t const n = a.store->entries().size();
  CHECK(f.names().size() == 3 * n);
  for (auto const& e : a.store->entries()) {
    CHECK(f.info(e.name).dtype == "F32");
    CHECK(f.info(e.name).shape == e.param->shape);
    CHECK(f.has("optim.m." + e.name));
    CHECK(f.has("optim.v." + e.name));
  }
  CHECK(f.metadata("hseq.format") == "hseq-checkpoint-1");
  CHECK(f.metadata("hseq.dtype") == "F32");
  CHECK(f.metadata("optim.step") == "2");

  // read_checkpoint_info needs only the header.
  io::CheckpointInfo const ri = io::read_checkpoint_info(path);
  CHECK(ri.model_kind == "transformer_block");
  CHECK(ri.model_config == a.config);
  CHECK(ri.trainer_state == info.trainer_state);
}

TEST_CASE("checkpoint: parameters only, with and without an optimizer on either side") {
  TempDir tmp;
  Model a(8, 3);
  a.train_step(0.5);

  std::string const no_opt = tmp.file("params_only.safetensors");
  io::save_checkpoint(ctx_(), no_opt, info_for(a), *a.store);
  CHECK(io::SafetensorsFile::load(no_opt).names().size() == a.store->entries().size());
  CHECK_FALSE(io::SafetensorsFile::load(no_opt).has_metadata("optim.step"));

  Model b(8, 4);
  io::load_checkpoint(ctx_(), no_opt, "transformer_block", a.config, *b.store);
  CHECK(same_bits(a.store->values(), b.store->values()));

  // An optimizer asks for state that the file does not have.
  Model c(8, 5);
  std::string const msg =
      error_of([&] { io::load_checkpoint(ctx_(), no_opt, "transformer_block", a.config, *c.store, {{"optim", *c.opt}}); });
  CHECK(msg.find("has no 'optim' state") != std::string::npos);
  CHECK(msg.find(no_opt) != std::string::npos);

  // A file with optimizer state loads into a store without an optimizer.
  std::string const with_opt = tmp.file("full.safetensors");
  io::save_checkpoint(ctx_(), with_opt, info_for(a), *a.store, {{"optim", *a.opt}});
  Model d(8, 6);
  io::load_checkpoint(ctx_(), with_opt, "transformer_block", a.config, *d.store, {});
  CHECK(same_bits(a.store->values(), d.store->values()));
}

TEST_CASE("checkpoint: a store of another shape fails naming the parameter and changes nothing") {
  TempDir tmp;
  std::string const path = tmp.file("dim16.safetensors");
  Model a(16, 1);
  a.train_step(0.0);
  io::save_checkpoint(ctx_(), path, info_for(a), *a.store, {{"optim", *a.opt}});

  Model small(8, 2);
  std::vector<float> const before(small.store->values().begin(), small.store->values().end());
  // The caller claims the file's config, so the shapes are what disagree.
  std::string const msg =
      error_of([&] { io::load_checkpoint(ctx_(), path, "transformer_block", a.config, *small.store, {{"optim", *small.opt}}); });
  std::string const first = small.store->entries().front().name;
  CAPTURE(msg);
  CHECK(msg.find("parameter '" + first + "' has shape") != std::string::npos);
  CHECK(msg.find("the model expects [8]") != std::string::npos);
  CHECK(std::vector<float>(small.store->values().begin(), small.store->values().end()) == before);
  CHECK(small.opt->steps() == 0);
}

TEST_CASE("checkpoint: another model kind or config is refused with both values") {
  TempDir tmp;
  std::string const path = tmp.file("ckpt.safetensors");
  Model a(16, 1);
  io::save_checkpoint(ctx_(), path, info_for(a), *a.store, {{"optim", *a.opt}});
  Model b(16, 2);

  std::string msg = error_of([&] { io::load_checkpoint(ctx_(), path, "lstm_lm", a.config, *b.store, {{"optim", *b.opt}}); });
  CHECK(msg.find("checkpoint " + path + " holds a 'transformer_block' model, not a 'lstm_lm'") != std::string::npos);

  msg = error_of([&] { io::load_checkpoint(ctx_(), path, "transformer_block", config_json(8, 4), *b.store, {{"optim", *b.opt}}); });
  CAPTURE(msg);
  CHECK(msg.find("model config differs") != std::string::npos);
  CHECK(msg.find("'dim': checkpoint 16, expected 8") != std::string::npos);
  CHECK(msg.find("'heads': checkpoint 2, expected 4") != std::string::npos);
  CHECK(msg.find("mlp_hidden") == std::string::npos);  // equal keys are not listed

  nlohmann::json extra = nlohmann::json::parse(a.config);
  extra["dropout"] = 0.1;
  msg = error_of([&] { io::load_checkpoint(ctx_(), path, "transformer_block", extra.dump(), *b.store, {{"optim", *b.opt}}); });
  CHECK(msg.find("'dropout': checkpoint (absent), expected 0.1") != std::string::npos);

  msg = error_of([&] { io::load_checkpoint(ctx_(), path, "transformer_block", "{not json", *b.store, {{"optim", *b.opt}}); });
  CHECK(msg.find("expected model config is not valid JSON") != std::string::npos);

  // Key order and spacing do not matter: the configs are compared as JSON values.
  nlohmann::json reordered = nlohmann::json::parse(a.config);
  io::load_checkpoint(ctx_(), path, "transformer_block", reordered.dump(2), *b.store, {{"optim", *b.opt}});
  CHECK(same_bits(a.store->values(), b.store->values()));
}

TEST_CASE("checkpoint: foreign files, extra tensors and wrong dtypes are rejected") {
  TempDir tmp;
  Model a(8, 1);
  a.train_step(0.0);
  std::string const path = tmp.file("ckpt.safetensors");
  io::save_checkpoint(ctx_(), path, info_for(a), *a.store, {{"optim", *a.opt}});
  io::SafetensorsFile const good = io::SafetensorsFile::load(path);

  // Rewrites the checkpoint with one more tensor, or without metadata key `drop`.
  auto rewrite = [&](std::string const& out, std::string const& extra_tensor, std::string const& drop) {
    io::SafetensorsWriter w;
    for (auto const& name : good.names()) {
      auto const& ti = good.info(name);
      auto raw = good.raw(name);
      w.add(name, ti.dtype, ti.shape, raw.data(), raw.size());
    }
    for (auto const& [k, v] : good.all_metadata())
      if (k != drop) w.set_metadata(k, v);
    if (!extra_tensor.empty()) {
      float z = 0;
      w.add<float>(extra_tensor, {1}, &z);
    }
    w.write(out);
  };

  Model b(8, 2);
  std::vector<float> const before(b.store->values().begin(), b.store->values().end());

  std::string const extra = tmp.file("extra.safetensors");
  rewrite(extra, "stray.weight", "");
  std::string msg = error_of([&] { io::load_checkpoint(ctx_(), extra, "transformer_block", a.config, *b.store, {{"optim", *b.opt}}); });
  CHECK(msg.find("unexpected tensor 'stray.weight'") != std::string::npos);
  rewrite(extra, "optim.m.stray", "");
  msg = error_of([&] { io::load_checkpoint(ctx_(), extra, "transformer_block", a.config, *b.store, {{"optim", *b.opt}}); });
  CHECK(msg.find("unexpected tensor 'optim.m.stray'") != std::string::npos);
  CHECK(std::vector<float>(b.store->values().begin(), b.store->values().end()) == before);

  std::string const foreign = tmp.file("foreign.safetensors");
  rewrite(foreign, "", "hseq.format");
  msg = error_of([&] { io::load_checkpoint(ctx_(), foreign, "transformer_block", a.config, *b.store, {{"optim", *b.opt}}); });
  CHECK(msg.find("not an hseq checkpoint") != std::string::npos);
  CHECK_THROWS_WITH_AS(io::read_checkpoint_info(foreign), doctest::Contains("not an hseq checkpoint"), Error);

  // Missing optimizer tensor while optim.step is present: named.
  {
    io::SafetensorsWriter w;
    std::string const dropped = "optim.v." + a.store->entries().back().name;
    for (auto const& name : good.names()) {
      if (name == dropped) continue;
      auto const& ti = good.info(name);
      auto raw = good.raw(name);
      w.add(name, ti.dtype, ti.shape, raw.data(), raw.size());
    }
    for (auto const& [k, v] : good.all_metadata()) w.set_metadata(k, v);
    std::string const p = tmp.file("partial.safetensors");
    w.write(p);
    msg = error_of([&] { io::load_checkpoint(ctx_(), p, "transformer_block", a.config, *b.store, {{"optim", *b.opt}}); });
    CHECK(msg.find("state '" + dropped + "' is missing") != std::string::npos);
  }

  // A float checkpoint does not load into double parameters.
  nn::TransformerBlock<cpu, double> blk({.dim = 8, .heads = 2});
  nn::ParamStore<cpu, double> store(blk);
  msg = error_of([&] { io::load_checkpoint(ctx_(), path, "transformer_block", a.config, store); });
  CHECK(msg.find("stores F32 parameters") != std::string::npos);

  // Corruption surfaces as the safetensors error.
  fs::resize_file(extra, fs::file_size(extra) - 1);
  msg = error_of([&] { io::load_checkpoint(ctx_(), extra, "transformer_block", a.config, *b.store, {{"optim", *b.opt}}); });
  CHECK(msg.find("truncated or corrupted") != std::string::npos);
  CHECK_THROWS_WITH_AS(io::read_checkpoint_info(tmp.file("absent.safetensors")), doctest::Contains("cannot open"),
                       Error);

  // Invalid model config JSON is refused at save time.
  io::CheckpointInfo bad = info_for(a);
  bad.model_config = "dim=8";
  CHECK_THROWS_WITH_AS(io::save_checkpoint(ctx_(), tmp.file("bad.safetensors"), bad, *a.store, {{"optim", *a.opt}}),
                       doctest::Contains("model_config is not valid JSON"), Error);
  CHECK_FALSE(fs::exists(tmp.file("bad.safetensors")));
}

TEST_CASE("checkpoint: double parameters round trip as F64") {
  TempDir tmp;
  std::string const path = tmp.file("f64.safetensors");
  cpu::Context ctx;
  nn::TransformerBlock<cpu, double> blk_a({.dim = 8, .heads = 2}), blk_b({.dim = 8, .heads = 2});
  nn::ParamStore<cpu, double> sa(blk_a), sb(blk_b);
  sa.init(ctx, 7);
  sb.init(ctx, 8);
  io::save_checkpoint(ctx_(), path, {"transformer_block", "{}", ""}, sa);
  CHECK(io::SafetensorsFile::load(path).metadata("hseq.dtype") == "F64");
  io::load_checkpoint(ctx_(), path, "transformer_block", "{}", sb);
  CHECK(same_bits(sa.values(), sb.values()));
}

TEST_CASE("checkpoint: a missing parameter tensor is named, with or without optimizer state") {
  TempDir tmp;
  Model a(8, 1);
  a.train_step(0.0);
  std::string const full = tmp.file("full.safetensors"), params = tmp.file("params.safetensors");
  io::save_checkpoint(ctx_(), full, info_for(a), *a.store, {{"optim", *a.opt}});
  io::save_checkpoint(ctx_(), params, info_for(a), *a.store);
  Model b(8, 2);
  b.train_step(1.0);
  Snapshot const before(b);

  auto const& entries = a.store->entries();
  REQUIRE(entries.size() >= 3);
  for (std::string const& name : {entries.front().name, entries[entries.size() / 2].name, entries.back().name}) {
    CAPTURE(name);
    std::string const p = tmp.file("missing.safetensors");
    RawFile r = RawFile::read(full);
    REQUIRE(r.tensors.erase(name) == 1);
    r.write(p);
    CHECK_THROWS_WITH_AS(io::load_checkpoint(ctx_(), p, "transformer_block", a.config, *b.store, {{"optim", *b.opt}}),
                         doctest::Contains(("checkpoint " + p + ": parameter '" + name + "' is missing").c_str()), Error);
    r = RawFile::read(params);
    REQUIRE(r.tensors.erase(name) == 1);
    r.write(p);
    CHECK_THROWS_WITH_AS(io::load_checkpoint(ctx_(), p, "transformer_block", a.config, *b.store),
                         doctest::Contains(("parameter '" + name + "' is missing").c_str()), Error);
    CHECK(Snapshot(b) == before);
  }
}

TEST_CASE("checkpoint: a single wrongly typed tensor is named, whichever it is") {
  TempDir tmp;
  Model a(8, 1);
  a.train_step(0.0);
  std::string const good = tmp.file("good.safetensors"), p = tmp.file("typed.safetensors");
  io::save_checkpoint(ctx_(), good, info_for(a), *a.store, {{"optim", *a.opt}});
  Model b(8, 2);
  b.train_step(1.0);
  Snapshot const before(b);

  std::string const first = a.store->entries().front().name, last = a.store->entries().back().name;
  struct Case {
    std::string tensor, what;
  };
  for (Case const& c : {Case{first, "parameter"}, Case{last, "parameter"}, Case{"optim.m." + first, "state"},
                        Case{"optim.v." + last, "state"}}) {
    CAPTURE(c.tensor);
    // F64: another size, so the file would not even pass as F32 by its byte count.
    RawFile r = RawFile::read(good);
    r.make_f64(c.tensor);
    r.write(p);
    CHECK_THROWS_WITH_AS(io::load_checkpoint(ctx_(), p, "transformer_block", a.config, *b.store, {{"optim", *b.opt}}),
                         doctest::Contains(("checkpoint " + p + ": " + c.what + " '" + c.tensor + "' is F64, expected F32").c_str()),
                         Error);
    // I32: the same byte count as F32, so only the dtype check can catch it.
    r = RawFile::read(good);
    r.tensors.at(c.tensor).dtype = "I32";
    r.write(p);
    CHECK_THROWS_WITH_AS(io::load_checkpoint(ctx_(), p, "transformer_block", a.config, *b.store, {{"optim", *b.opt}}),
                         doctest::Contains(("'" + c.tensor + "' is I32, expected F32").c_str()), Error);
    CHECK(Snapshot(b) == before);
  }
}

TEST_CASE("checkpoint: a malformed optim.step is refused before anything changes") {
  TempDir tmp;
  Model a(8, 1);
  a.train_step(0.0);
  std::string const good = tmp.file("good.safetensors"), p = tmp.file("step.safetensors");
  io::save_checkpoint(ctx_(), good, info_for(a), *a.store, {{"optim", *a.opt}});
  Model b(8, 2);
  b.train_step(1.0);
  Snapshot const before(b);

  for (char const* bad : {"", "abc", "-1", "1.5", "1e3", " 3", "3 ", "+3", "0x10", "9223372036854775808",
                          "99999999999999999999", "1234567890123456789"}) {
    CAPTURE(bad);
    RawFile r = RawFile::read(good);
    r.metadata["optim.step"] = bad;
    r.write(p);
    CHECK_THROWS_WITH_AS(
        io::load_checkpoint(ctx_(), p, "transformer_block", a.config, *b.store, {{"optim", *b.opt}}),
        doctest::Contains(("checkpoint " + p + ": optim.step '" + bad + "' is not a non-negative integer").c_str()),
        Error);
    CHECK(Snapshot(b) == before);
  }
  for (auto [text, value] : {std::pair<char const*, std::int64_t>{"0", 0}, {"007", 7},
                             {"123456789012345678", 123456789012345678LL}}) {
    CAPTURE(text);
    RawFile r = RawFile::read(good);
    r.metadata["optim.step"] = text;
    r.write(p);
    io::load_checkpoint(ctx_(), p, "transformer_block", a.config, *b.store, {{"optim", *b.opt}});
    CHECK(b.opt->steps() == value);
  }
}

TEST_CASE("checkpoint: nothing changes after a failure late in the load") {
  TempDir tmp;
  Model a(8, 1);
  a.train_step(0.0);
  a.train_step(1.0);
  std::string const good = tmp.file("good.safetensors"), p = tmp.file("late.safetensors");
  io::save_checkpoint(ctx_(), good, info_for(a), *a.store, {{"optim", *a.opt}});
  Model b(8, 2);
  b.train_step(3.0);
  Snapshot const before(b);
  REQUIRE_FALSE(Snapshot(a) == before);

  // The parameters are validated first, then the optimizer's state in its visiting order (per
  // parameter: first moment, second moment), so the second moment of the last parameter is the
  // last tensor checked; everything before it is valid.
  std::string const last = "optim.v." + a.store->entries().back().name;
  auto fails_unchanged = [&](RawFile const& r, std::string const& expected) {
    r.write(p);
    CHECK_THROWS_WITH_AS(io::load_checkpoint(ctx_(), p, "transformer_block", a.config, *b.store, {{"optim", *b.opt}}),
                         doctest::Contains(expected.c_str()), Error);
    CHECK(Snapshot(b) == before);
  };
  SUBCASE("the last tensor has another dtype") {
    RawFile r = RawFile::read(good);
    r.make_f64(last);
    fails_unchanged(r, "'" + last + "' is F64, expected F32");
  }
  SUBCASE("the last tensor has another shape") {
    RawFile r = RawFile::read(good);
    auto& t = r.tensors.at(last);
    t.shape = Shape{1, t.shape.numel()};
    fails_unchanged(r, "'" + last + "' has shape [1, ");
  }
  SUBCASE("the last tensor is missing") {
    RawFile r = RawFile::read(good);
    r.tensors.erase(last);
    fails_unchanged(r, "'" + last + "' is missing");
  }
  SUBCASE("an extra tensor after all the expected ones") {
    RawFile r = RawFile::read(good);
    float z = 0;
    r.tensors["zzz.extra"] = {"F32", Shape{1}, std::vector<char>(reinterpret_cast<char*>(&z), reinterpret_cast<char*>(&z + 1))};
    fails_unchanged(r, "unexpected tensor 'zzz.extra'");
  }
  SUBCASE("a malformed optim.step") {
    RawFile r = RawFile::read(good);
    r.metadata["optim.step"] = "2x";
    fails_unchanged(r, "optim.step '2x' is not a non-negative integer");
  }
  SUBCASE("an optimizer of another store") {
    Model other(16, 3);
    other.train_step(0.0);
    Snapshot const other_before(other);
    CHECK_THROWS_WITH_AS(io::load_checkpoint(ctx_(), good, "transformer_block", a.config, *b.store, {{"optim", *other.opt}}),
                         doctest::Contains("has shape [8] in the file, the model expects [16]"), Error);
    CHECK(Snapshot(b) == before);
    CHECK(Snapshot(other) == other_before);
  }
  SUBCASE("check_info refuses the info") {
    int calls = 0;
    auto refuse = [&](io::CheckpointInfo const& info) {
      ++calls;
      CHECK(info.trainer_state == info_for(a).trainer_state);
      CHECK(info.model_kind == "transformer_block");
      throw std::runtime_error("trainer state rejected by the caller");
    };
    CHECK_THROWS_WITH_AS(io::load_checkpoint(ctx_(), good, "transformer_block", a.config, *b.store, {{"optim", *b.opt}}, refuse),
                         "trainer state rejected by the caller", std::runtime_error);
    CHECK(calls == 1);
    CHECK(Snapshot(b) == before);
    // Accepted, the same file loads.
    io::load_checkpoint(ctx_(), good, "transformer_block", a.config, *b.store, {{"optim", *b.opt}},
                        [&](io::CheckpointInfo const&) { ++calls; });
    CHECK(calls == 2);
    CHECK(Snapshot(b) == Snapshot(a));
  }
  SUBCASE("control: the intact file does change the model") {
    io::load_checkpoint(ctx_(), good, "transformer_block", a.config, *b.store, {{"optim", *b.opt}});
    CHECK_FALSE(Snapshot(b) == before);
    CHECK(Snapshot(b) == Snapshot(a));
  }
}

TEST_CASE("checkpoint: a malformed trainer state fails Trainer::load before anything changes") {
  using Lm = models::TransformerLm<cpu, float>;
  using TrainerF = train::Trainer<cpu, float, Lm>;
  TempDir tmp;
  std::string text;
  for (int i = 0; i < 200; ++i) text += "a checkpoint holds the trainer state " + std::to_string(i % 13) + ".\n";
  auto data = io::TextDataset::from_string(text, "corpus", 0.1);
  train::TrainerConfig tc;
  tc.batch = 2;
  tc.seq_len = 8;
  tc.steps = 4;
  tc.warmup = 1;
  tc.eval_every = 0;
  Lm::Config const cfg{.vocab = 256, .dim = 16, .heads = 2, .layers = 1, .context = 8};
  cpu::Context ctx;

  Lm ma(cfg);
  Store sa(ma);
  sa.init(ctx, 1);
  TrainerF ta(ctx, ma, sa, data, tc);
  ta.step(ctx);
  ta.step(ctx);
  std::string const good = tmp.file("good.safetensors"), p = tmp.file("state.safetensors");
  ta.save(ctx, good);

  Lm mb(cfg);
  Store sb(mb);
  sb.init(ctx, 2);
  TrainerF tb(ctx, mb, sb, data, tc);
  tb.step(ctx);
  Snapshot const before(sb, tb.optimizer());
  std::string const state_before = tb.state().to_json();

  // The last two: a phase schedule that is not a list of phases.
  for (char const* bad : {"{not json", "", "[1, 2]", R"({"step": 2})", R"({"step": "two", "data_pos": 0, "skipped": 0,
                          "bad_in_row": 0, "tokens": 0, "elapsed_s": 0})",
                          R"({"step": 2, "data_pos": 4, "skipped": 0, "bad_in_row": 0, "tokens": 32, "elapsed_s": 0,
                          "phases": "iem:6,decoder"})",
                          R"({"step": 2, "data_pos": 4, "skipped": 0, "bad_in_row": 0, "tokens": 32, "elapsed_s": 0,
                          "phases": [{"name": "iem"}]})"}) {
    CAPTURE(bad);
    RawFile r = RawFile::read(good);
    r.metadata.at("hseq.trainer_state") = bad;
    r.write(p);
    CHECK_THROWS_WITH_AS(tb.load(ctx, p), doctest::Contains("invalid trainer state"), Error);
    CHECK(Snapshot(sb, tb.optimizer()) == before);
    CHECK(tb.state().to_json() == state_before);
  }
  tb.load(ctx, good);
  CHECK(Snapshot(sb, tb.optimizer()) == Snapshot(sa, ta.optimizer()));
  CHECK(tb.state().step == 2);
}

// Checkpoints written before state groups (issue 9) still load. The two fixtures were written by a
// throwaway program against the code of commit 80f44cd (the last one with io/checkpoint.hpp's
// AdamW-specific format): a model below, ParamStore::init(ctx, seed), a Trainer with
// fixture_trainer_config() over fixture_corpus(), three Trainer::step calls, Trainer::save. That
// program printed the sums below (double sums, in store order, of the flat value, first-moment and
// second-moment buffers, padding included) and the first element of some tensors; the trainer state
// is the JSON it saved (elapsed_s is wall-clock, so only the deterministic fields are pinned).
// Models: TransformerLm {vocab 256, dim 8, heads 2, layers 1, context 8, mlp_hidden 8}, init seed 11;
// Hourglass<cpu, float, DynamicHierarchy, AvgPool, Repeat> {vocab 256, dim 8, heads 2, context 8,
// mlp_hidden 8, hierarchy "0@1 1@2 0@1"}, init seed 12. The files have `optim.step` but no
// `hseq.state_groups`, which is what the loader's legacy path must recognise.
namespace {
std::string fixture_corpus() {
  std::string s;
  for (int i = 0; i < 300; ++i) s += "the quick brown fox " + std::to_string(i % 17) + " jumps over the lazy dog.\n";
  return s;
}
train::TrainerConfig fixture_trainer_config() {
  train::TrainerConfig t;
  t.batch = 2;
  t.seq_len = 8;
  t.steps = 3;
  t.warmup = 1;
  t.lr = 3e-3;
  t.eval_every = 0;
  t.eval_windows = 2;
  t.seed = 77;
  return t;
}
struct FixtureExpect {
  char const* file;
  std::uint64_t init_seed;
  double sum_values, sum_m, sum_v;
  std::size_t params;
  std::int64_t count;
  char const* probe;  ///< a parameter whose first value and moments are pinned
  float probe_value, probe_m, probe_v;
};

template <class M>
void check_v1_fixture(M& model, FixtureExpect const& x) {
  cpu::Context ctx;
  std::string const path = std::string(HSEQ_SOURCE_DIR) + "/test/fixtures/" + x.file;
  CAPTURE(path);
  io::SafetensorsFile const raw = io::SafetensorsFile::load_header(path);
  REQUIRE(raw.has_metadata("optim.step"));
  REQUIRE_FALSE(raw.has_metadata("hseq.state_groups"));  // written before state groups existed

  Store store(model);
  store.init(ctx, x.init_seed + 1000);  // other values, so the load must overwrite them
  auto data = io::TextDataset::from_string(fixture_corpus(), "corpus", 0.1);
  train::Trainer<cpu, float, M> tr(ctx, model, store, data, fixture_trainer_config());
  tr.load(ctx, path);

  REQUIRE(store.entries().size() == x.params);
  CHECK(store.count() == x.count);
  CHECK(tr.optimizer().steps() == 3);
  CHECK(tr.state().step == 3);
  CHECK(tr.state().data_pos == 6);
  CHECK(tr.state().tokens == 48);
  CHECK(tr.state().skipped == 0);
  REQUIRE(tr.state().data_seed.has_value());
  CHECK(*tr.state().data_seed == 77);
  double sp = 0, sm = 0, sv = 0;
  auto v = store.values();
  auto m = tr.optimizer().first_moment(), s2 = tr.optimizer().second_moment();
  for (std::int64_t i = 0; i < v.numel(); ++i) {
    sp += v[i];
    sm += m[i];
    sv += s2[i];
  }
  // The same floats summed in the same order: equal but for the printed digits (17 significant).
  CHECK(sp == doctest::Approx(x.sum_values).epsilon(1e-15));
  CHECK(sm == doctest::Approx(x.sum_m).epsilon(1e-15));
  CHECK(sv == doctest::Approx(x.sum_v).epsilon(1e-15));
  auto const& probe = store.find(x.probe);
  std::int64_t off = probe.value.data - v.data;
  CHECK(probe.value[0] == x.probe_value);
  CHECK(m[off] == x.probe_m);
  CHECK(s2[off] == x.probe_v);

  // Training on from the old file works (the moments and step count are live state again).
  double const loss = tr.step(ctx);
  CHECK(std::isfinite(loss));
  CHECK(tr.optimizer().steps() == 4);

  // Parameters only: the file's optimizer group is skipped.
  M fresh(model.config());
  Store fs_(fresh);
  fs_.init(ctx, 5);
  io::load_checkpoint(ctx, path, M::kKind, fresh.config_json(), fs_);
  CHECK(fs_.find(x.probe).value[0] == x.probe_value);

  // Saved again by the new code: the same tensor names and optim.step, plus the group list.
  TempDir tmp;
  std::string const again = tmp.file("again.safetensors");
  tr.save(ctx, again);
  io::SafetensorsFile const f2 = io::SafetensorsFile::load_header(again);
  CHECK(f2.names() == raw.names());
  CHECK(f2.metadata("optim.step") == "4");
  CHECK(f2.metadata("hseq.state_groups") == R"(["optim"])");
}
}  // namespace

TEST_CASE("checkpoint: files written before state groups load (TransformerLm and Hourglass fixtures)") {
  using Lm = models::TransformerLm<cpu, float>;
  using Hg = models::Hourglass<cpu, float, hier::DynamicHierarchy, hier::AvgPool, hier::Repeat>;
  SUBCASE("transformer_lm") {
    Lm lm(Lm::Config{.vocab = 256, .dim = 8, .heads = 2, .layers = 1, .context = 8, .mlp_hidden = 8});
    check_v1_fixture(lm, {"checkpoint_v1_transformer_lm.safetensors", 11, 23.207587423979021,
                          -0.0070604513192060736, 0.14262486973631383, 18, 2592, "blocks.0.attn.out.bias",
                          0.00734107988f, -0.0814288333f, 0.0143595301f});
  }
  SUBCASE("hourglass") {
    Hg hg(Hg::Config{.vocab = 256, .dim = 8, .heads = 2, .context = 8, .mlp_hidden = 8,
                     .hierarchy = hier::HierarchySpec::parse("0@1 1@2 0@1"), .closing_norm = false});  // version 1
    check_v1_fixture(hg, {"checkpoint_v1_hourglass.safetensors", 12, 29.150929550077212, 0.00065654952210707218,
                          0.1426248595851346, 20, 2608, "levels.0.pre.0.attn.out.bias", 0.00728918659f,
                          -0.0587156489f, 0.00790188648f});
  }
}

namespace {
/// A stateful part that is no optimizer: a double-precision memory and a position counter.
struct Memory {
  hseq::Tensor<double, cpu> slots{Shape{3, 2}};
  std::int64_t position = 0;
  template <class F>
  void visit_state(F&& f) {
    f(std::string("slots"), slots.view());
    f(std::string("position"), position);
  }
};
}  // namespace

TEST_CASE("checkpoint: any StatefulPart is a named group; groups load, skip and are refused by name") {
  static_assert(StatefulPart<Memory>);
  TempDir tmp;
  Model a(8, 1);
  a.train_step(0.0);
  Memory mem;
  for (std::int64_t i = 0; i < mem.slots.numel(); ++i) mem.slots.data()[i] = 0.5 * double(i) - 1.0;
  mem.position = 12345;
  std::string const both = tmp.file("both.safetensors"), opt_only = tmp.file("opt.safetensors");
  io::save_checkpoint(ctx_(), both, info_for(a), *a.store, {{"optim", *a.opt}, {"memory", mem}});
  io::save_checkpoint(ctx_(), opt_only, info_for(a), *a.store, {{"optim", *a.opt}});
  io::SafetensorsFile const f = io::SafetensorsFile::load_header(both);
  CHECK(f.metadata("hseq.state_groups") == R"(["optim","memory"])");
  CHECK(f.info("memory.slots").dtype == "F64");  // a group's dtype is its own, not the parameters'
  CHECK(f.info("memory.slots").shape == Shape{3, 2});
  CHECK(f.metadata("memory.position") == "12345");

  // Both groups restored.
  Model b(8, 2);
  Memory mb;
  io::load_checkpoint(ctx_(), both, "transformer_block", a.config, *b.store, {{"optim", *b.opt}, {"memory", mb}});
  CHECK(Snapshot(b) == Snapshot(a));
  CHECK(mb.position == 12345);
  for (std::int64_t i = 0; i < mb.slots.numel(); ++i) CHECK(mb.slots.data()[i] == mem.slots.data()[i]);

  // A group the caller does not ask for is skipped; one the file lacks is refused by name, and
  // nothing changes.
  Model c(8, 3);
  io::load_checkpoint(ctx_(), both, "transformer_block", a.config, *c.store, {{"optim", *c.opt}});
  CHECK(Snapshot(c) == Snapshot(a));
  Model d(8, 4);
  d.train_step(2.0);
  Snapshot const before(d);
  Memory md;
  CHECK_THROWS_WITH_AS(
      io::load_checkpoint(ctx_(), opt_only, "transformer_block", a.config, *d.store, {{"optim", *d.opt}, {"memory", md}}),
      doctest::Contains(("checkpoint " + opt_only + " has no 'memory' state").c_str()), Error);
  CHECK(Snapshot(d) == before);
  CHECK(md.position == 0);

  // A malformed group scalar fails before the parameters or the optimizer change.
  std::string const p = tmp.file("bad_position.safetensors");
  RawFile r = RawFile::read(both);
  r.metadata.at("memory.position") = "-5";
  r.write(p);
  CHECK_THROWS_WITH_AS(
      io::load_checkpoint(ctx_(), p, "transformer_block", a.config, *d.store, {{"optim", *d.opt}, {"memory", md}}),
      doctest::Contains("memory.position '-5' is not a non-negative integer"), Error);
  CHECK(Snapshot(d) == before);

  // Group names: no dots, not "hseq", not twice; a parameter may not sit under a group's prefix.
  for (char const* bad : {"", "a.b", "hseq"}) {
    CAPTURE(bad);
    CHECK_THROWS_WITH_AS(io::save_checkpoint(ctx_(), tmp.file("x.safetensors"), info_for(a), *a.store, {{bad, mem}}),
                         doctest::Contains("state group name"), Error);
  }
  CHECK_THROWS_WITH_AS(
      io::save_checkpoint(ctx_(), tmp.file("x.safetensors"), info_for(a), *a.store, {{"memory", mem}, {"memory", mb}}),
      doctest::Contains("state group 'memory' is given twice"), Error);
  std::string const first = a.store->entries().front().name;  // e.g. "ln1.weight"
  std::string const prefix = first.substr(0, first.find('.'));
  CHECK_THROWS_WITH_AS(io::save_checkpoint(ctx_(), tmp.file("x.safetensors"), info_for(a), *a.store, {{prefix, mem}}),
                       doctest::Contains(("collides with the " + prefix + ".* state tensors").c_str()), Error);
}

}  // namespace HSEQ_TEST_UNIT
