// SPDX-License-Identifier: MIT
// Fuzz harness: the programs' flag parser (examples/cli.hpp) with hseq-train's flags
// (examples/family.hpp: the model, training and thread flags) and the parsers of their values
// (integers, reals, switches, --phases, --data lists). The input is the command line, one argument
// per line. Parsing and reading every flag either throws hseq::Error or gives values; a value read
// back from the flag's text is the same on a second read. The model families of the registry
// are not linked (they would be most of the build): one registered family stands for them, with
// a structure flag, a switch and a policy slot, as the real ones have.
#include <cstdint>
#include <string>
#include <vector>

#include "cli.hpp"
#include "family.hpp"
#include "fuzz_support.hpp"
#include "hseq/core/error.hpp"
#include "hseq/io/text_dataset.hpp"

namespace cli {

std::vector<Family const*> const& families() {
  static Family const toy = [] {
    Family f;
    f.model = "toy";
    f.kind = "toy_lm";
    f.help = "a family for the fuzz harness";
    f.slots = {PolicySlot{"mix", "how to mix", {"avg", "attention", "linear"}}};
    f.add_flags = [](Args& a) {
      a.flag("dim", "64", "width").flag("hierarchy", "2@1 4@4 2@1", "levels").toggle("untied", "untie the head");
    };
    return f;
  }();
  static std::vector<Family const*> const list{&toy};
  return list;
}

}  // namespace cli

namespace {

template <class F>
void attempt(F&& f) {
  try {
    f();
  } catch (hseq::Error const&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size) {
  std::vector<std::string> words{"hseq-train"};
  std::string cur;
  for (std::size_t i = 0; i < size; ++i) {
    char c = static_cast<char>(data[i]);
    if (c == '\n') {
      words.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) words.push_back(cur);
  std::vector<char const*> argv;
  for (auto const& w : words) argv.push_back(w.c_str());

  cli::Args a("hseq-train", "fuzz");
  a.flag("data", "", "text").flag("val-fraction", "0.1", "held out");
  cli::add_model_flags(a);
  cli::add_train_flags(a);
  cli::add_thread_flag(a);
  try {
    // --help prints the usage to stdout; harmless, and a path the fuzzer should reach.
    if (!a.parse(static_cast<int>(argv.size()), argv.data())) return 0;
  } catch (hseq::Error const&) {
    return 0;
  }
  attempt([&] { (void)cli::choice_from_flags(a); });
  for (char const* name : {"batch", "steps", "accum", "warmup", "eval-every", "eval-windows", "ckpt-every", "seed",
                           "sample-bytes", "dim", "threads", "seq-len"}) {
    attempt([&] {
      std::int64_t x = a.integer(name);
      HSEQ_FUZZ_ASSERT(a.integer(name) == x);
    });
  }
  for (char const* name : {"time-budget", "lr", "min-lr-ratio", "weight-decay", "clip", "val-fraction"}) {
    attempt([&] {
      double x = a.real(name);
      HSEQ_FUZZ_ASSERT(a.real(name) == x);
    });
  }
  attempt([&] { (void)a.on("untied"); });
  attempt([&] {
    auto phases = cli::parse_phases(a.str("phases"));
    for (std::size_t i = 0; i + 1 < phases.size(); ++i) HSEQ_FUZZ_ASSERT(phases[i].steps > 0);
  });
  attempt([&] {
    auto paths = hseq::io::TextDataset::path_list(a.str("data"));
    HSEQ_FUZZ_ASSERT(!paths.empty());
  });
  return 0;
}
