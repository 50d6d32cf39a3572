// SPDX-License-Identifier: MIT
// Fuzz harness: the safetensors reader (hseq/io/safetensors.hpp). Any bytes, as a file: loading
// (whole and header only) either throws hseq::Error or gives a file whose every tensor is readable
// within its buffer; such a file written back by SafetensorsWriter loads again with the same
// tensors, dtypes, shapes, bytes and metadata.
// Seeds: test/fuzz/corpus/safetensors/ (HSEQ_FUZZ_WRITE_SEEDS=DIR writes the generated ones).
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "fuzz_support.hpp"
#include "hseq/core/error.hpp"
#include "hseq/io/safetensors.hpp"

namespace {

using hseq::io::SafetensorsFile;
using hseq::io::SafetensorsWriter;

void write_seeds(std::string const& dir) {
  SafetensorsWriter w;
  std::vector<float> a = {1.f, -2.f, 3.5f, 0.f, 1e-3f, 7.f};
  std::vector<double> b = {0.25, -1.0};
  std::vector<std::int32_t> c = {1, 2, 3};
  w.add("a.weight", hseq::Shape{2, 3}, a.data());
  w.add("b", hseq::Shape{2}, b.data());
  w.add("ids", hseq::Shape{3}, c.data());
  w.set_metadata("format", "fuzz-seed");
  w.write(dir + "/three_tensors.safetensors");
  SafetensorsWriter empty;
  empty.write(dir + "/no_tensors.safetensors");
}

struct Seeds {
  Seeds() {
    if (char const* dir = std::getenv("HSEQ_FUZZ_WRITE_SEEDS")) write_seeds(dir);
  }
} const seeds;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size) {
  std::string path = hseq::fuzz::input_file(data, size, "input.safetensors");
  try {
    SafetensorsFile h = SafetensorsFile::load_header(path);
    (void)h.names();
  } catch (hseq::Error const&) {
  }
  SafetensorsFile f;
  try {
    f = SafetensorsFile::load(path);
  } catch (hseq::Error const&) {
    return 0;
  }
  // A file that loads: every tensor lies in the buffer, and it survives a write and a load.
  SafetensorsWriter w;
  for (auto const& name : f.names()) {
    auto const& info = f.info(name);
    auto raw = f.raw(name);
    HSEQ_FUZZ_ASSERT(raw.size() == info.bytes());
    HSEQ_FUZZ_ASSERT(info.begin <= info.end);
    w.add(name, info.dtype, info.shape, raw.data(), raw.size());
  }
  for (auto const& [key, value] : f.all_metadata()) w.set_metadata(key, value);
  std::string again = (hseq::fuzz::scratch() / "again.safetensors").string();
  w.write(again);
  SafetensorsFile g = SafetensorsFile::load(again);
  HSEQ_FUZZ_ASSERT(g.names() == f.names());
  HSEQ_FUZZ_ASSERT(g.all_metadata() == f.all_metadata());
  for (auto const& name : f.names()) {
    HSEQ_FUZZ_ASSERT(g.info(name).dtype == f.info(name).dtype);
    HSEQ_FUZZ_ASSERT(g.info(name).shape == f.info(name).shape);
    auto x = f.raw(name), y = g.raw(name);
    HSEQ_FUZZ_ASSERT(x.size() == y.size() && (x.empty() || std::memcmp(x.data(), y.data(), x.size()) == 0));
  }
  return 0;
}
