// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "hseq/io/safetensors.hpp"
#include "support/temp_dir.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using io::SafetensorsFile;
using io::SafetensorsWriter;
namespace fs = std::filesystem;

namespace {

struct TempDir : hseq::test::TempDir {
  TempDir() : hseq::test::TempDir("hseq_safetensors_test") {}
};

std::string read_bytes(std::string const& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  return std::string(std::istreambuf_iterator<char>(in), {});
}
void write_bytes(std::string const& path, std::string const& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
}
std::uint64_t le64(std::string const& b, std::size_t at = 0) {
  std::uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= std::uint64_t(static_cast<unsigned char>(b[at + i])) << (8 * i);
  return n;
}
/// A file made by hand: the 8-byte length, `header` as given (unpadded), then `data`.
std::string make_file(std::string const& header, std::string const& data) {
  std::string b(8, '\0');
  for (int i = 0; i < 8; ++i) b[i] = static_cast<char>(std::uint64_t(header.size()) >> (8 * i));
  return b + header + data;
}

std::string error_of(std::string const& path) {
  try {
    (void)SafetensorsFile::load(path);
  } catch (Error const& e) {
    return e.what();
  }
  return "(no error)";
}

struct Sample {
  std::vector<float> f32{1.5f, -2.25f, 3.0f, 0.0f, -0.0f, 1e-30f};    // [2, 3]
  std::vector<double> f64{3.141592653589793, -1e300, 2.5, 7.0};       // [4]
  std::vector<std::int32_t> i32{-7, 0, 2147483647, -2147483647 - 1};  // [2, 2]
  std::vector<std::int64_t> i64{-1, 1LL << 40, 9};                    // [3]
  std::vector<std::uint8_t> u8{0, 1, 127, 128, 255};                  // [5]
  float scalar = 42.0f;                                               // []

  SafetensorsWriter writer() const {
    SafetensorsWriter w;
    w.add<float>("weight", {2, 3}, f32.data());
    w.add<double>("bias64", {4}, f64.data());
    w.add<std::int32_t>("ids", {2, 2}, i32.data());
    w.add<std::int64_t>("big", {3}, i64.data());
    w.add<std::uint8_t>("bytes", {5}, u8.data());
    w.add<float>("scalar", Shape{}, &scalar);
    w.add<float>("empty", {0, 3}, nullptr);
    w.set_metadata("purpose", "test");
    w.set_metadata("unicode", "h\xC3\xA9llo");  // UTF-8 "héllo"
    return w;
  }
};

}  // namespace

TEST_CASE("safetensors: round trip of several dtypes and metadata") {
  TempDir tmp;
  Sample s;
  std::string const path = tmp.file("a.safetensors");
  s.writer().write(path);

  SafetensorsFile f = SafetensorsFile::load(path);
  CHECK(f.names() == std::vector<std::string>{"bias64", "big", "bytes", "empty", "ids", "scalar", "weight"});
  CHECK(f.read<float>("weight", {2, 3}) == s.f32);
  CHECK(f.read<double>("bias64", {4}) == s.f64);
  CHECK(f.read<std::int32_t>("ids", {2, 2}) == s.i32);
  CHECK(f.read<std::int64_t>("big", {3}) == s.i64);
  CHECK(f.read<std::uint8_t>("bytes", {5}) == s.u8);
  CHECK(f.read<float>("scalar", Shape{}) == std::vector<float>{42.0f});
  CHECK(f.read<float>("empty", {0, 3}).empty());
  CHECK(f.read<float>("weight") == s.f32);  // shape-agnostic overload
  // -0.0f keeps its sign bit.
  CHECK(std::signbit(f.read<float>("weight", {2, 3})[4]));

  CHECK(f.has("weight"));
  CHECK_FALSE(f.has("nope"));
  CHECK(f.info("ids").dtype == "I32");
  CHECK(f.info("ids").shape == Shape{2, 2});
  CHECK(f.info("ids").bytes() == 16);
  CHECK(f.info("scalar").shape.rank() == 0);
  CHECK(f.has_metadata("purpose"));
  CHECK_FALSE(f.has_metadata("absent"));
  CHECK(f.metadata("purpose") == "test");
  CHECK(f.metadata("unicode") == "h\xC3\xA9llo");
  CHECK(f.all_metadata().size() == 2);

  // Header-only load: same names and metadata, but no data.
  SafetensorsFile h = SafetensorsFile::load_header(path);
  CHECK(h.names() == f.names());
  CHECK(h.metadata("purpose") == "test");
  CHECK_THROWS_WITH_AS(h.read<float>("weight", {2, 3}), doctest::Contains("load_header"), Error);

  // Deterministic: the same tensors give the same bytes, whatever the order of add().
  std::string const path2 = tmp.file("b.safetensors");
  SafetensorsWriter w2;
  w2.set_metadata("unicode", "h\xC3\xA9llo");
  w2.add<float>("empty", {0, 3}, nullptr);
  w2.add<float>("scalar", Shape{}, &s.scalar);
  w2.add<std::uint8_t>("bytes", {5}, s.u8.data());
  w2.add<std::int64_t>("big", {3}, s.i64.data());
  w2.add<std::int32_t>("ids", {2, 2}, s.i32.data());
  w2.add<double>("bias64", {4}, s.f64.data());
  w2.add<float>("weight", {2, 3}, s.f32.data());
  w2.set_metadata("purpose", "test");
  w2.write(path2);
  CHECK(read_bytes(path) == read_bytes(path2));
}

TEST_CASE("safetensors: the byte layout follows the spec") {
  TempDir tmp;
  Sample s;
  std::string const path = tmp.file("layout.safetensors");
  s.writer().write(path);
  std::string const b = read_bytes(path);

  REQUIRE(b.size() >= 8);
  std::uint64_t const n = le64(b);
  CHECK(n % 8 == 0);  // padded like the reference implementation
  REQUIRE(8 + n <= b.size());
  std::string const header = b.substr(8, n);
  CHECK(header.front() == '{');
  std::size_t const close = header.find_last_of('}');
  REQUIRE(close != std::string::npos);
  CHECK(header.find_first_not_of(' ', close + 1) == std::string::npos);  // only spaces after the JSON
  CHECK(n - (close + 1) < 8);

  nlohmann::json const h = nlohmann::json::parse(header);
  REQUIRE(h.is_object());
  CHECK(h.size() == 8);  // 7 tensors + __metadata__
  CHECK(h.at("__metadata__") == nlohmann::json({{"purpose", "test"}, {"unicode", "h\xC3\xA9llo"}}));
  CHECK(h.at("weight").at("dtype") == "F32");
  CHECK(h.at("weight").at("shape") == nlohmann::json::array({2, 3}));
  CHECK(h.at("bias64").at("dtype") == "F64");
  CHECK(h.at("ids").at("dtype") == "I32");
  CHECK(h.at("big").at("dtype") == "I64");
  CHECK(h.at("bytes").at("dtype") == "U8");
  CHECK(h.at("scalar").at("shape") == nlohmann::json::array());
  CHECK(h.at("empty").at("shape") == nlohmann::json::array({0, 3}));

  // Tensors lie back to back in name order, from offset 0 to the end of the file.
  std::string const data = b.substr(8 + n);
  struct Expect {
    char const* name;
    void const* bytes;
    std::size_t size;
  };
  Expect const order[] = {{"bias64", s.f64.data(), 32}, {"big", s.i64.data(), 24}, {"bytes", s.u8.data(), 5},
                          {"empty", nullptr, 0},        {"ids", s.i32.data(), 16}, {"scalar", &s.scalar, 4},
                          {"weight", s.f32.data(), 24}};
  std::uint64_t offset = 0;
  for (auto const& e : order) {
    CAPTURE(e.name);
    auto const off = h.at(e.name).at("data_offsets");
    REQUIRE(off.size() == 2);
    CHECK(off[0].get<std::uint64_t>() == offset);
    CHECK(off[1].get<std::uint64_t>() == offset + e.size);
    if (e.size) CHECK(std::memcmp(data.data() + offset, e.bytes, e.size) == 0);
    offset += e.size;
  }
  CHECK(offset == data.size());

  // Without metadata there is no __metadata__ entry; an empty file is just "{}" padded.
  std::string const p2 = tmp.file("empty.safetensors");
  SafetensorsWriter{}.write(p2);
  std::string const e = read_bytes(p2);
  CHECK(e.size() == 16);
  CHECK(le64(e) == 8);
  CHECK(e.substr(8) == "{}      ");
  CHECK(SafetensorsFile::load(p2).names().empty());
}

TEST_CASE("safetensors: the writer rejects inconsistent tensors") {
  SafetensorsWriter w;
  float x[6] = {};
  CHECK_THROWS_WITH_AS(w.add("x", "F32", {2, 3}, x, 20), doctest::Contains("needs 24 bytes, got 20"), Error);
  w.add("x", "F32", {2, 3}, x, 24);
  CHECK_THROWS_WITH_AS(w.add<float>("x", {6}, x), doctest::Contains("duplicate tensor name 'x'"), Error);
  CHECK_THROWS_WITH_AS(w.add<float>("__metadata__", {6}, x), doctest::Contains("reserved"), Error);
  CHECK_THROWS_WITH_AS(w.add("y", "Q7", {6}, x, 24), doctest::Contains("unknown dtype 'Q7'"), Error);
  // Element counts beyond int64 (Shape::numel would overflow), also with a zero extent at the end,
  // and byte counts beyond size_t.
  CHECK_THROWS_WITH_AS(w.add<float>("big", {4294967296, 4294967296}, x),
                       doctest::Contains("tensor 'big': shape [4294967296, 4294967296] has more elements than int64 "
                                         "can count"),
                       Error);
  CHECK_THROWS_WITH_AS(w.add("big", "U8", {3037000500, 3037000500, 0}, nullptr, 0),
                       doctest::Contains("has more elements than int64 can count"), Error);
  CHECK_THROWS_WITH_AS(w.add<double>("big", {std::int64_t(1) << 62}, nullptr),
                       doctest::Contains("overflows the byte count"), Error);
  CHECK(w.size() == 1);
}

TEST_CASE("safetensors: the write is atomic and a failed write leaves the old file") {
  TempDir tmp;
  Sample s;
  std::string const path = tmp.file("model.safetensors");
  s.writer().write(path);
  auto listing = [&] {
    std::vector<std::string> v;
    for (auto const& e : fs::directory_iterator(tmp.dir)) v.push_back(e.path().filename().string());
    std::sort(v.begin(), v.end());
    return v;
  };
  CHECK(listing() == std::vector<std::string>{"model.safetensors"});  // no temporary left behind

  // Overwrite in place.
  SafetensorsWriter w2;
  float one = 1.0f;
  w2.add<float>("one", {1}, &one);
  w2.write(path);
  CHECK(SafetensorsFile::load(path).names() == std::vector<std::string>{"one"});
  CHECK(listing() == std::vector<std::string>{"model.safetensors"});
  std::string const before = read_bytes(path);

  // A directory that does not exist: throws naming the path and the system's reason; creates nothing.
  std::string const missing = tmp.file("no_such_dir/model.safetensors");
  CHECK_THROWS_WITH_AS(s.writer().write(missing), doctest::Contains("no_such_dir/model.safetensors"), Error);
  CHECK_THROWS_WITH_AS(s.writer().write(missing), doctest::Contains("No such file or directory"), Error);
  CHECK_FALSE(fs::exists(tmp.dir / "no_such_dir"));

  // The temporary cannot be created (a directory is in its way): the old file is intact.
  std::string const tmp_name = path + ".tmp." + std::to_string(::getpid());
  fs::create_directory(tmp_name);
  CHECK_THROWS_WITH_AS(s.writer().write(path), doctest::Contains(path.c_str()), Error);
  CHECK(read_bytes(path) == before);
  fs::remove(tmp_name);

  // The rename fails (the target is a non-empty directory): the temporary is removed again.
  fs::path const target_dir = tmp.dir / "occupied";
  fs::create_directory(target_dir);
  write_bytes((target_dir / "x").string(), "x");
  CHECK_THROWS_WITH_AS(s.writer().write(target_dir.string()), doctest::Contains("renaming"), Error);
  CHECK(listing() == std::vector<std::string>{"model.safetensors", "occupied"});
  CHECK(read_bytes(path) == before);
}

TEST_CASE("safetensors: truncated and corrupted files are rejected with a clear message") {
  TempDir tmp;
  std::string const good_path = tmp.file("good.safetensors");
  std::vector<float> big(256);
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = float(i) * 0.5f;
  SafetensorsWriter w;
  w.add<float>("a", {16, 16}, big.data());
  w.add<float>("b", {4}, big.data());
  w.set_metadata("k", "v");
  w.write(good_path);
  std::string const good = read_bytes(good_path);
  std::uint64_t const n = le64(good);
  std::string const p = tmp.file("bad.safetensors");

  SUBCASE("missing file") {
    std::string const msg = error_of(tmp.file("nothing_here.safetensors"));
    CHECK(msg.find("cannot open") != std::string::npos);
    CHECK(msg.find("nothing_here.safetensors") != std::string::npos);
    CHECK(msg.find("No such file or directory") != std::string::npos);
  }
  SUBCASE("a directory") { CHECK(error_of(tmp.dir.string()).find("is a directory") != std::string::npos); }
  SUBCASE("shorter than 8 bytes") {
    write_bytes(p, good.substr(0, 5));
    CHECK(error_of(p).find("shorter than the 8-byte header length") != std::string::npos);
    write_bytes(p, "");
    CHECK(error_of(p).find("shorter than the 8-byte header length") != std::string::npos);
  }
  SUBCASE("truncated by one byte") {
    write_bytes(p, good.substr(0, good.size() - 1));
    std::string const msg = error_of(p);
    CHECK(msg.find("out of bounds") != std::string::npos);
    CHECK(msg.find("truncated or corrupted") != std::string::npos);
    CHECK(msg.find(p) != std::string::npos);
  }
  SUBCASE("truncated to half") {
    write_bytes(p, good.substr(0, good.size() / 2));
    std::string const msg = error_of(p);
    CHECK(msg.find("tensor 'a'") != std::string::npos);
    CHECK(msg.find("truncated or corrupted") != std::string::npos);
  }
  SUBCASE("truncated inside the header") {
    write_bytes(p, good.substr(0, 8 + n / 2));
    std::string const msg = error_of(p);
    CHECK(msg.find("is larger than the file") != std::string::npos);
    CHECK(msg.find("truncated or corrupted") != std::string::npos);
  }
  SUBCASE("trailing data after the last tensor") {
    write_bytes(p, good + "xyz");
    std::string const msg = error_of(p);
    CHECK(msg.find("3 bytes of trailing data") != std::string::npos);
    CHECK(msg.find("truncated or corrupted") != std::string::npos);
  }
  SUBCASE("corrupted JSON") {
    std::string b = good;
    std::size_t q = b.find("\"data_offsets\"");
    REQUIRE(q != std::string::npos);
    b[q] = '#';
    write_bytes(p, b);
    CHECK(error_of(p).find("invalid JSON header") != std::string::npos);
  }
  SUBCASE("huge header length") {
    std::string b = good;
    b[7] = '\x7f';
    write_bytes(p, b);
    CHECK(error_of(p).find("is larger than the file") != std::string::npos);
  }
  SUBCASE("header that is not an object") {
    write_bytes(p, make_file("[1, 2]", ""));
    CHECK(error_of(p).find("not a JSON object") != std::string::npos);
  }
  SUBCASE("entry missing dtype, shape or data_offsets") {
    write_bytes(p, make_file(R"({"x": {"shape": [2], "data_offsets": [0, 8]}})", std::string(8, '\0')));
    CHECK(error_of(p).find("tensor 'x': missing 'dtype'") != std::string::npos);
    write_bytes(p, make_file(R"({"x": {"dtype": "F32", "data_offsets": [0, 8]}})", std::string(8, '\0')));
    CHECK(error_of(p).find("tensor 'x': missing 'shape'") != std::string::npos);
    write_bytes(p, make_file(R"({"x": {"dtype": "F32", "shape": [2]}})", std::string(8, '\0')));
    CHECK(error_of(p).find("tensor 'x': missing 'data_offsets'") != std::string::npos);
  }
  SUBCASE("unknown dtype") {
    write_bytes(p, make_file(R"({"x": {"dtype": "Q7", "shape": [2], "data_offsets": [0, 8]}})", std::string(8, '\0')));
    CHECK(error_of(p).find("unknown dtype 'Q7'") != std::string::npos);
  }
  SUBCASE("offsets out of bounds") {
    write_bytes(
        p, make_file(R"({"x": {"dtype": "F32", "shape": [100], "data_offsets": [0, 400]}})", std::string(8, '\0')));
    CHECK(error_of(p).find("data_offsets [0, 400] out of bounds of the 8-byte data buffer") != std::string::npos);
    write_bytes(p, make_file(R"({"x": {"dtype": "F32", "shape": [0], "data_offsets": [8, 4]}})", std::string(8, '\0')));
    CHECK(error_of(p).find("out of bounds") != std::string::npos);
    write_bytes(p,
                make_file(R"({"x": {"dtype": "F32", "shape": [2], "data_offsets": [-1, 8]}})", std::string(8, '\0')));
    CHECK(error_of(p).find("not a pair of non-negative integers") != std::string::npos);
  }
  SUBCASE("offsets that do not match the shape") {
    write_bytes(p, make_file(R"({"x": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})", std::string(8, '\0')));
    CHECK(error_of(p).find("does not match F32 [3] (12 bytes)") != std::string::npos);
  }
  SUBCASE("bad shapes") {
    write_bytes(p,
                make_file(R"({"x": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}})", std::string(8, '\0')));
    CHECK(error_of(p).find("not a non-negative integer") != std::string::npos);
    write_bytes(p, make_file(R"({"x": {"dtype": "U8", "shape": [1,1,1,1,1,1,1], "data_offsets": [0, 1]}})",
                             std::string(1, '\0')));
    CHECK(error_of(p).find("exceeds hseq's maximum rank") != std::string::npos);
  }
  SUBCASE("shapes whose element count overflows") {
    // 2^32 * 2^32 elements: the offsets [0, 0] are in bounds, the shape is what is wrong.
    write_bytes(p, make_file(R"({"x": {"dtype": "U8", "shape": [4294967296, 4294967296], "data_offsets": [0, 0]}})", ""));
    std::string msg = error_of(p);
    CAPTURE(msg);
    CHECK(msg.find("tensor 'x': shape [4294967296, 4294967296] has more elements than int64 can count") !=
          std::string::npos);
    // Zero elements, but the left-to-right product overflows before it reaches the zero.
    write_bytes(p, make_file(R"({"x": {"dtype": "U8", "shape": [3037000500, 3037000500, 0], "data_offsets": [0, 0]}})",
                             ""));
    CHECK(error_of(p).find("shape [3037000500, 3037000500, 0] has more elements than int64 can count") !=
          std::string::npos);
    // 2^62 F64 elements fit in int64, their 2^65 bytes do not fit in size_t.
    write_bytes(p, make_file(R"({"x": {"dtype": "F64", "shape": [4611686018427387904], "data_offsets": [0, 0]}})", ""));
    CHECK(error_of(p).find("tensor 'x': F64 [4611686018427387904] has more bytes than size_t can count") !=
          std::string::npos);
    // INT64_MAX one-byte elements are countable: the (in-bounds) offsets are then what does not match.
    write_bytes(p, make_file(R"({"x": {"dtype": "U8", "shape": [9223372036854775807], "data_offsets": [0, 0]}})", ""));
    CHECK(error_of(p).find("does not match U8 [9223372036854775807] (9223372036854775807 bytes)") !=
          std::string::npos);
    // An empty tensor with a huge extent is fine when the non-zero extents' product fits.
    write_bytes(p, make_file(R"({"x": {"dtype": "F32", "shape": [0, 9223372036854775807], "data_offsets": [0, 0]}})",
                             ""));
    SafetensorsFile const f = SafetensorsFile::load(p);
    CHECK(f.info("x").shape.numel() == 0);
    CHECK(f.read<float>("x", f.info("x").shape).empty());
  }
  SUBCASE("entries that are not objects") {
    write_bytes(p, make_file(R"({"x": 3})", ""));
    CHECK(error_of(p).find("tensor 'x': entry is a number, not an object") != std::string::npos);
    write_bytes(p, make_file(R"({"x": ["F32", [1], [0, 4]]})", std::string(4, '\0')));
    CHECK(error_of(p).find("tensor 'x': entry is a array, not an object") != std::string::npos);
    write_bytes(p, make_file(R"({"x": null})", ""));
    CHECK(error_of(p).find("tensor 'x': entry is a null, not an object") != std::string::npos);
    write_bytes(p, make_file(R"({"__metadata__": ["k", "v"]})", ""));
    CHECK(error_of(p).find("__metadata__ is a array, not an object of strings") != std::string::npos);
    write_bytes(p, make_file(R"({"__metadata__": "k=v"})", ""));
    CHECK(error_of(p).find("__metadata__ is a string, not an object of strings") != std::string::npos);
  }
  SUBCASE("dtypes that are not strings") {
    for (char const* dtype : {"4", "null", "[\"F32\"]", "{\"F32\": 1}", "true"}) {
      CAPTURE(dtype);
      write_bytes(p, make_file(std::string(R"({"x": {"dtype": )") + dtype + R"(, "shape": [1], "data_offsets": [0, 4]}})",
                               std::string(4, '\0')));
      std::string const type = nlohmann::json::parse(dtype).type_name();
      CHECK(error_of(p).find("tensor 'x': dtype is a " + type + ", not a string") != std::string::npos);
    }
  }
  SUBCASE("metadata that is not strings") {
    write_bytes(p, make_file(R"({"__metadata__": {"n": 3}})", ""));
    CHECK(error_of(p).find("__metadata__ value of 'n' is a number") != std::string::npos);
  }
  SUBCASE("duplicate keys") {
    write_bytes(p, make_file(R"({"x": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]},)"
                             R"( "x": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}})",
                             std::string(1, '\0')));
    CHECK(error_of(p).find("duplicate key 'x'") != std::string::npos);
  }
}

TEST_CASE("safetensors: reads check dtype, shape and names") {
  TempDir tmp;
  std::string const path = tmp.file("x.safetensors");
  std::vector<float> x{1, 2, 3, 4, 5, 6};
  SafetensorsWriter w;
  w.add<float>("x", {2, 3}, x.data());
  w.add<float>("y", {1}, x.data());
  w.set_metadata("k", "v");
  w.write(path);
  SafetensorsFile f = SafetensorsFile::load(path);
  CHECK_THROWS_WITH_AS(f.read<double>("x", {2, 3}), doctest::Contains("tensor 'x': expected F64, found F32"), Error);
  CHECK_THROWS_WITH_AS(f.read<std::int32_t>("x"), doctest::Contains("expected I32, found F32"), Error);
  CHECK_THROWS_WITH_AS(f.read<float>("x", {3, 2}), doctest::Contains("tensor 'x' has shape [2, 3], expected [3, 2]"),
                       Error);
  CHECK_THROWS_WITH_AS(f.info("z"), doctest::Contains("no tensor named 'z' (available: x, y)"), Error);
  CHECK_THROWS_WITH_AS(f.read<float>("z", {1}), doctest::Contains("no tensor named 'z'"), Error);
  CHECK_THROWS_WITH_AS(f.metadata("missing_key"), doctest::Contains("no metadata key 'missing_key'"), Error);
  CHECK_THROWS_WITH_AS(f.metadata("missing_key"), doctest::Contains(path.c_str()), Error);
}

TEST_CASE("safetensors: the reader accepts any order and overlapping ranges within bounds") {
  TempDir tmp;
  std::string const p = tmp.file("lenient.safetensors");
  float const vals[3] = {1.0f, 2.0f, 3.0f};
  std::string data(reinterpret_cast<char const*>(vals), sizeof vals);
  // "b" comes first in the buffer, "c" overlaps both, and the header is neither padded nor sorted.
  write_bytes(p, make_file(R"({"z_first": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]},)"
                           R"( "b": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},)"
                           R"( "c": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},)"
                           R"( "e": {"dtype": "F32", "shape": [0], "data_offsets": [12, 12]}})",
                           data));
  SafetensorsFile f = SafetensorsFile::load(p);
  CHECK(f.read<float>("b", {2}) == std::vector<float>{1.0f, 2.0f});
  CHECK(f.read<float>("c", {2}) == std::vector<float>{2.0f, 3.0f});
  CHECK(f.read<float>("z_first", {1}) == std::vector<float>{3.0f});
  CHECK(f.read<float>("e", {0}).empty());
  CHECK_FALSE(f.has_metadata("anything"));
}

TEST_CASE("safetensors: the header length limit") {
  // The limit is checked on the length field, before the header is read, so the files here are
  // sparse: just the 8-byte length, then a hole up to a size that makes the length plausible.
  TempDir tmp;
  std::string const p = tmp.file("big_header.safetensors");
  auto sparse_file = [&](std::uint64_t header_len) {
    std::string b(8, '\0');
    for (int i = 0; i < 8; ++i) b[i] = static_cast<char>(header_len >> (8 * i));
    write_bytes(p, b);
    fs::resize_file(p, 8 + header_len);
  };
  std::uint64_t const limit = SafetensorsFile::kMaxHeader;
  REQUIRE(limit == 100'000'000);  // the reference implementation's value

  sparse_file(limit + 1);
  std::string msg = error_of(p);
  CAPTURE(msg);
  CHECK(msg.find("header length 100000001 exceeds the limit of 100000000 bytes") != std::string::npos);
  CHECK(msg.find(p) != std::string::npos);
  CHECK_THROWS_WITH_AS(SafetensorsFile::load_header(p), doctest::Contains("exceeds the limit"), Error);

  // At the limit the header is read: its zero bytes are not JSON, which is the next error.
  sparse_file(limit);
  msg = error_of(p);
  CHECK(msg.find("exceeds the limit") == std::string::npos);
  CHECK(msg.find("invalid JSON header") != std::string::npos);
}

}  // namespace HSEQ_TEST_UNIT
