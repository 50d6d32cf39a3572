// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "hseq/io/checkpoint.hpp"
#include "hseq/nn/transformer_block.hpp"

using namespace hseq;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  fs::path dir;
  TempDir() {
    static std::atomic<int> counter{0};
    std::random_device rd;
    dir = fs::temp_directory_path() / ("hseq_checkpoint_test_" + std::to_string(::getpid()) + "_" +
                                       std::to_string(counter++) + "_" + std::to_string(rd()));
    fs::create_directories(dir);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  std::string file(std::string const& name) const { return (dir / name).string(); }
};

using Block = nn::TransformerBlock<cpu, float>;
using Store = nn::ParamStore<cpu, float>;
using Opt = train::AdamW<cpu, float>;

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
    opt = std::make_unique<Opt>(*store, Opt::Config{.lr = 1e-2, .weight_decay = 0.1});
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

}  // namespace

TEST_CASE("checkpoint: round trip of parameters, moments and step is bit-identical") {
  TempDir tmp;
  std::string const path = tmp.file("ckpt.safetensors");
  Model a(16, 1);
  a.train_step(0.0);
  a.train_step(1.0);
  REQUIRE(a.opt->steps() == 2);
  io::save_checkpoint(path, info_for(a), *a.store, a.opt.get());

  Model b(16, 99);  // different initial values
  b.train_step(5.0);
  REQUIRE_FALSE(same_bits(a.store->values(), b.store->values()));
  io::CheckpointInfo info = io::load_checkpoint(path, "transformer_block", a.config, *b.store, b.opt.get());
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
  io::save_checkpoint(no_opt, info_for(a), *a.store, nullptr);
  CHECK(io::SafetensorsFile::load(no_opt).names().size() == a.store->entries().size());
  CHECK_FALSE(io::SafetensorsFile::load(no_opt).has_metadata("optim.step"));

  Model b(8, 4);
  io::load_checkpoint(no_opt, "transformer_block", a.config, *b.store, nullptr);
  CHECK(same_bits(a.store->values(), b.store->values()));

  // An optimizer asks for state that the file does not have.
  Model c(8, 5);
  std::string const msg =
      error_of([&] { io::load_checkpoint(no_opt, "transformer_block", a.config, *c.store, c.opt.get()); });
  CHECK(msg.find("has no optimizer state") != std::string::npos);
  CHECK(msg.find(no_opt) != std::string::npos);

  // A file with optimizer state loads into a store without an optimizer.
  std::string const with_opt = tmp.file("full.safetensors");
  io::save_checkpoint(with_opt, info_for(a), *a.store, a.opt.get());
  Model d(8, 6);
  io::load_checkpoint(with_opt, "transformer_block", a.config, *d.store, static_cast<Opt*>(nullptr));
  CHECK(same_bits(a.store->values(), d.store->values()));
}

TEST_CASE("checkpoint: a store of another shape fails naming the parameter and changes nothing") {
  TempDir tmp;
  std::string const path = tmp.file("dim16.safetensors");
  Model a(16, 1);
  a.train_step(0.0);
  io::save_checkpoint(path, info_for(a), *a.store, a.opt.get());

  Model small(8, 2);
  std::vector<float> const before(small.store->values().begin(), small.store->values().end());
  // The caller claims the file's config, so the shapes are what disagree.
  std::string const msg =
      error_of([&] { io::load_checkpoint(path, "transformer_block", a.config, *small.store, small.opt.get()); });
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
  io::save_checkpoint(path, info_for(a), *a.store, a.opt.get());
  Model b(16, 2);

  std::string msg = error_of([&] { io::load_checkpoint(path, "lstm_lm", a.config, *b.store, b.opt.get()); });
  CHECK(msg.find("checkpoint " + path + " holds a 'transformer_block' model, not a 'lstm_lm'") != std::string::npos);

  msg = error_of([&] { io::load_checkpoint(path, "transformer_block", config_json(8, 4), *b.store, b.opt.get()); });
  CAPTURE(msg);
  CHECK(msg.find("model config differs") != std::string::npos);
  CHECK(msg.find("'dim': checkpoint 16, expected 8") != std::string::npos);
  CHECK(msg.find("'heads': checkpoint 2, expected 4") != std::string::npos);
  CHECK(msg.find("mlp_hidden") == std::string::npos);  // equal keys are not listed

  nlohmann::json extra = nlohmann::json::parse(a.config);
  extra["dropout"] = 0.1;
  msg = error_of([&] { io::load_checkpoint(path, "transformer_block", extra.dump(), *b.store, b.opt.get()); });
  CHECK(msg.find("'dropout': checkpoint (absent), expected 0.1") != std::string::npos);

  msg = error_of([&] { io::load_checkpoint(path, "transformer_block", "{not json", *b.store, b.opt.get()); });
  CHECK(msg.find("expected model config is not valid JSON") != std::string::npos);

  // Key order and spacing do not matter: the configs are compared as JSON values.
  nlohmann::json reordered = nlohmann::json::parse(a.config);
  io::load_checkpoint(path, "transformer_block", reordered.dump(2), *b.store, b.opt.get());
  CHECK(same_bits(a.store->values(), b.store->values()));
}

TEST_CASE("checkpoint: foreign files, extra tensors and wrong dtypes are rejected") {
  TempDir tmp;
  Model a(8, 1);
  a.train_step(0.0);
  std::string const path = tmp.file("ckpt.safetensors");
  io::save_checkpoint(path, info_for(a), *a.store, a.opt.get());
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
  std::string msg = error_of([&] { io::load_checkpoint(extra, "transformer_block", a.config, *b.store, b.opt.get()); });
  CHECK(msg.find("unexpected tensor 'stray.weight'") != std::string::npos);
  rewrite(extra, "optim.m.stray", "");
  msg = error_of([&] { io::load_checkpoint(extra, "transformer_block", a.config, *b.store, b.opt.get()); });
  CHECK(msg.find("unexpected tensor 'optim.m.stray'") != std::string::npos);
  CHECK(std::vector<float>(b.store->values().begin(), b.store->values().end()) == before);

  std::string const foreign = tmp.file("foreign.safetensors");
  rewrite(foreign, "", "hseq.format");
  msg = error_of([&] { io::load_checkpoint(foreign, "transformer_block", a.config, *b.store, b.opt.get()); });
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
    msg = error_of([&] { io::load_checkpoint(p, "transformer_block", a.config, *b.store, b.opt.get()); });
    CHECK(msg.find("second moment of parameter '" + dropped + "' is missing") != std::string::npos);
  }

  // A float checkpoint does not load into double parameters.
  nn::TransformerBlock<cpu, double> blk({.dim = 8, .heads = 2});
  nn::ParamStore<cpu, double> store(blk);
  msg = error_of([&] { io::load_checkpoint(path, "transformer_block", a.config, store, nullptr); });
  CHECK(msg.find("stores F32 parameters") != std::string::npos);

  // Corruption surfaces as the safetensors error.
  fs::resize_file(extra, fs::file_size(extra) - 1);
  msg = error_of([&] { io::load_checkpoint(extra, "transformer_block", a.config, *b.store, b.opt.get()); });
  CHECK(msg.find("truncated or corrupted") != std::string::npos);
  CHECK_THROWS_WITH_AS(io::read_checkpoint_info(tmp.file("absent.safetensors")), doctest::Contains("cannot open"),
                       Error);

  // Invalid model config JSON is refused at save time.
  io::CheckpointInfo bad = info_for(a);
  bad.model_config = "dim=8";
  CHECK_THROWS_WITH_AS(io::save_checkpoint(tmp.file("bad.safetensors"), bad, *a.store, a.opt.get()),
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
  io::save_checkpoint(path, {"transformer_block", "{}", ""}, sa, nullptr);
  CHECK(io::SafetensorsFile::load(path).metadata("hseq.dtype") == "F64");
  io::load_checkpoint(path, "transformer_block", "{}", sb, nullptr);
  CHECK(same_bits(sa.values(), sb.values()));
}
