// SPDX-License-Identifier: MIT
/// @file
/// @brief Reading and writing the safetensors format (https://github.com/huggingface/safetensors):
/// `SafetensorsWriter` (atomic write) and `SafetensorsFile` (validated load, typed reads).
///
/// Layout: an 8-byte little-endian u64 N, then N bytes of UTF-8 JSON
///   {"__metadata__": {"key": "value", ...}, "<name>": {"dtype": "F32", "shape": [2, 3],
///    "data_offsets": [begin, end]}, ...}
/// padded with spaces so that N is a multiple of 8, then the data buffer; offsets are relative to
/// the start of the buffer. Data are little-endian and row-major.
///
/// The writer lays tensors out in name order, back to back, so the same tensors always give the same
/// bytes. The reader accepts any order and even overlapping ranges, but every range must lie inside
/// the buffer and hold exactly numel * itemsize bytes, and the buffer must end where the last tensor
/// ends (trailing bytes mean a truncated or corrupted file). Every shape's element count must fit
/// in int64 (so that Shape::numel is defined), and the JSON header may be at most
/// `SafetensorsFile::kMaxHeader` bytes.
///
/// POSIX only (open/fsync/rename); the JSON header is read and written with nlohmann::json.
#pragma once

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "hseq/core/error.hpp"
#include "hseq/core/shape.hpp"

namespace hseq::io {

static_assert(std::endian::native == std::endian::little,
              "hseq::io safetensors: the format is little-endian and hseq does not byte-swap");

/// Bytes per element of a safetensors dtype string; 0 for a dtype this reader does not know.
inline std::size_t dtype_size(std::string_view dtype) {
  static constexpr std::pair<std::string_view, std::size_t> kTable[] = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"I16", 2}, {"U16", 2}, {"F16", 2},
      {"BF16", 2}, {"I32", 4}, {"U32", 4}, {"F32", 4},     {"I64", 8},     {"U64", 8}, {"F64", 8}, {"C64", 8}};
  for (auto const& [name, size] : kTable)
    if (name == dtype) return size;
  return 0;
}

/// The safetensors dtype string of a C++ element type.
template <class T>
constexpr char const* dtype_of() {
  using U = std::remove_cv_t<T>;
  if constexpr (std::is_same_v<U, float>)
    return "F32";
  else if constexpr (std::is_same_v<U, double>)
    return "F64";
  else if constexpr (std::is_same_v<U, std::int8_t>)
    return "I8";
  else if constexpr (std::is_same_v<U, std::uint8_t>)
    return "U8";
  else if constexpr (std::is_same_v<U, std::int16_t>)
    return "I16";
  else if constexpr (std::is_same_v<U, std::uint16_t>)
    return "U16";
  else if constexpr (std::is_same_v<U, std::int32_t>)
    return "I32";
  else if constexpr (std::is_same_v<U, std::uint32_t>)
    return "U32";
  else if constexpr (std::is_same_v<U, std::int64_t>)
    return "I64";
  else if constexpr (std::is_same_v<U, std::uint64_t>)
    return "U64";
  else
    static_assert(sizeof(U) == 0, "hseq::io::dtype_of: no safetensors dtype for this type");
}

namespace detail::st {

inline std::string errno_text(int err) { return std::strerror(err); }

/// numel * itemsize, or false on overflow of size_t.
inline bool checked_bytes(Shape const& s, std::size_t itemsize, std::size_t& out) {
  std::size_t n = itemsize;
  for (int i = 0; i < s.rank(); ++i) {
    auto d = static_cast<std::size_t>(s[i]);
    if (d != 0 && n > std::numeric_limits<std::size_t>::max() / d) return false;
    n *= d;
  }
  out = n;
  return true;
}

/// Whether the element count of `s` fits in int64. Checked as the product of the non-zero extents:
/// every partial product hseq forms (Shape::numel, Shape::rows, in any order) is then defined,
/// also for an empty tensor like [2^62, 2^62, 0] whose left-to-right product would overflow
/// before reaching the zero.
inline bool numel_fits(Shape const& s) {
  std::int64_t n = 1;
  for (int i = 0; i < s.rank(); ++i) {
    std::int64_t d = s[i];
    if (d == 0) continue;
    if (n > std::numeric_limits<std::int64_t>::max() / d) return false;
    n *= d;
  }
  return true;
}

/// Writes all of [p, p + n) to fd, retrying on EINTR; false with errno set on failure.
inline bool write_all(int fd, void const* p, std::size_t n) {
  auto const* c = static_cast<char const*>(p);
  while (n > 0) {
    ssize_t w = ::write(fd, c, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    c += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

inline std::string join_names(std::vector<std::string> const& names, std::size_t max_shown = 32) {
  std::string s;
  for (std::size_t i = 0; i < names.size() && i < max_shown; ++i) s += (i ? ", " : "") + names[i];
  if (names.size() > max_shown) s += ", ... (" + std::to_string(names.size() - max_shown) + " more)";
  if (names.empty()) s = "none";
  return s;
}

}  // namespace detail::st

/// Collects tensors and metadata, then writes one safetensors file atomically.
class SafetensorsWriter {
 public:
  /// Adds a tensor, copying `bytes` bytes from `data`. Throws unless `bytes` is numel * itemsize of
  /// `dtype`, the dtype is known, and the name is new, non-empty and not "__metadata__".
  void add(std::string const& name, std::string const& dtype, Shape const& shape, void const* data, std::size_t bytes) {
    HSEQ_CHECK(!name.empty(), "SafetensorsWriter: empty tensor name");
    HSEQ_CHECK(name != "__metadata__", "SafetensorsWriter: '__metadata__' is reserved and cannot name a tensor");
    HSEQ_CHECK(tensors_.find(name) == tensors_.end(), "SafetensorsWriter: duplicate tensor name '" << name << "'");
    std::size_t item = dtype_size(dtype);
    HSEQ_CHECK(item != 0, "SafetensorsWriter: tensor '" << name << "': unknown dtype '" << dtype << "'");
    HSEQ_CHECK(detail::st::numel_fits(shape), "SafetensorsWriter: tensor '" << name << "': shape " << shape
                                                                            << " has more elements than int64 can count");
    std::size_t expected = 0;
    HSEQ_CHECK(detail::st::checked_bytes(shape, item, expected),
               "SafetensorsWriter: tensor '" << name << "': shape " << shape << " overflows the byte count");
    HSEQ_CHECK(bytes == expected, "SafetensorsWriter: tensor '" << name << "' (" << dtype << ", shape " << shape
                                                                << ") needs " << expected << " bytes, got " << bytes);
    HSEQ_CHECK(bytes == 0 || data != nullptr, "SafetensorsWriter: tensor '" << name << "': null data");
    Entry e{dtype, shape, std::vector<char>(bytes)};
    if (bytes) std::memcpy(e.data.data(), data, bytes);
    tensors_.emplace(name, std::move(e));
  }
  /// Typed form: `shape.numel()` elements of T from `data`.
  template <class T>
  void add(std::string const& name, Shape const& shape, T const* data) {
    // shape.numel() of an overflowing shape is undefined; such shapes are refused by the
    // untyped add, so pass a byte count that it will reject with its own message.
    std::size_t bytes = 0;
    if (detail::st::numel_fits(shape)) (void)detail::st::checked_bytes(shape, sizeof(T), bytes);
    add(name, dtype_of<T>(), shape, data, bytes);
  }
  /// Sets (or replaces) a metadata string.
  void set_metadata(std::string const& key, std::string const& value) { metadata_[key] = value; }

  bool has(std::string const& name) const { return tensors_.count(name) != 0; }
  std::size_t size() const { return tensors_.size(); }

  /// The padded JSON header (without the 8-byte length prefix), exactly as `write` stores it.
  std::string header() const {
    nlohmann::ordered_json h = nlohmann::ordered_json::object();
    if (!metadata_.empty()) {
      nlohmann::ordered_json m = nlohmann::ordered_json::object();
      for (auto const& [k, v] : metadata_) m[k] = v;
      h["__metadata__"] = std::move(m);
    }
    std::size_t offset = 0;
    for (auto const& [name, e] : tensors_) {
      nlohmann::ordered_json shape = nlohmann::ordered_json::array();
      for (int i = 0; i < e.shape.rank(); ++i) shape.push_back(e.shape[i]);
      nlohmann::ordered_json t = nlohmann::ordered_json::object();
      t["dtype"] = e.dtype;
      t["shape"] = std::move(shape);
      t["data_offsets"] = {offset, offset + e.data.size()};
      h[name] = std::move(t);
      offset += e.data.size();
    }
    std::string s;
    try {
      s = h.dump();
    } catch (nlohmann::json::exception const& ex) {  // e.g. a name or value that is not valid UTF-8
      HSEQ_FAIL("SafetensorsWriter: cannot encode the header: " << ex.what());
    }
    s.append((8 - s.size() % 8) % 8, ' ');
    return s;
  }

  /// Writes the file: to `<path>.tmp.<pid>` first (flushed and fsync'ed), then renamed over `path`,
  /// so readers see either the old file or the complete new one. On failure the temporary file is
  /// removed and hseq::Error names the path and the system's error text.
  void write(std::string const& path) const {
    std::string const hdr = header();
    std::string const tmp = path + ".tmp." + std::to_string(static_cast<long long>(::getpid()));
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
      int err = errno;
      HSEQ_FAIL("safetensors: cannot write '" << path << "': cannot create temporary file '" << tmp
                                              << "': " << detail::st::errno_text(err));
    }
    auto fail = [&](char const* what, int err) {
      if (fd >= 0) ::close(fd);
      ::unlink(tmp.c_str());
      HSEQ_FAIL("safetensors: cannot write '" << path << "': " << what << " '" << tmp
                                              << "' failed: " << detail::st::errno_text(err));
    };
    unsigned char prefix[8];
    std::uint64_t n = hdr.size();
    for (int i = 0; i < 8; ++i) prefix[i] = static_cast<unsigned char>(n >> (8 * i));
    if (!detail::st::write_all(fd, prefix, 8) || !detail::st::write_all(fd, hdr.data(), hdr.size()))
      fail("writing", errno);
    for (auto const& [name, e] : tensors_)
      if (!detail::st::write_all(fd, e.data.data(), e.data.size())) fail("writing", errno);
    if (::fsync(fd) != 0) fail("fsync of", errno);
    int rc = ::close(fd);
    fd = -1;
    if (rc != 0) fail("closing", errno);
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
      int err = errno;
      ::unlink(tmp.c_str());
      HSEQ_FAIL("safetensors: cannot write '" << path << "': renaming '" << tmp
                                              << "' over it failed: " << detail::st::errno_text(err));
    }
    // Make the rename itself durable (best effort: some file systems refuse fsync on directories).
    std::string dir = std::filesystem::path(path).parent_path().string();
    if (dir.empty()) dir = ".";
    int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      (void)::fsync(dfd);
      ::close(dfd);
    }
  }

 private:
  struct Entry {
    std::string dtype;
    Shape shape;
    std::vector<char> data;
  };
  std::map<std::string, Entry> tensors_;  // name order: the file's layout
  std::map<std::string, std::string> metadata_;
};

/// Where one tensor lives in a safetensors file.
struct TensorInfo {
  std::string dtype;
  Shape shape;
  std::size_t begin = 0, end = 0;  ///< byte range in the data buffer
  std::size_t bytes() const { return end - begin; }
};

/// A validated safetensors file, read into memory whole (`load`) or header only (`load_header`).
class SafetensorsFile {
 public:
  /// Reads and validates the whole file; every problem throws hseq::Error naming the file.
  static SafetensorsFile load(std::string const& path) { return open(path, true); }
  /// Reads and validates only the header (offsets are checked against the file size); `read` and
  /// `raw` then throw. For listing tensors and metadata of large files.
  static SafetensorsFile load_header(std::string const& path) { return open(path, false); }

  std::string const& path() const { return path_; }
  bool has(std::string const& name) const { return tensors_.count(name) != 0; }
  /// Tensor names in name order.
  std::vector<std::string> names() const {
    std::vector<std::string> v;
    v.reserve(tensors_.size());
    for (auto const& kv : tensors_) v.push_back(kv.first);
    return v;
  }
  /// dtype, shape and byte range of tensor `name`; throws listing the available names.
  TensorInfo const& info(std::string const& name) const {
    auto it = tensors_.find(name);
    if (it == tensors_.end())
      HSEQ_FAIL("safetensors: " << path_ << ": no tensor named '" << name
                                << "' (available: " << detail::st::join_names(names()) << ")");
    return it->second;
  }
  /// The raw bytes of tensor `name` (little-endian, row-major).
  std::span<char const> raw(std::string const& name) const {
    TensorInfo const& ti = info(name);
    HSEQ_CHECK(has_data_,
               "safetensors: " << path_ << ": opened with load_header, tensor data of '" << name << "' not loaded");
    return {data_.data() + ti.begin, ti.bytes()};
  }
  /// Copies tensor `name` into `dst` (numel of `expected` elements), checking its dtype is T's and its
  /// shape is `expected`.
  template <class T>
  void read_into(std::string const& name, Shape const& expected, T* dst) const {
    TensorInfo const& ti = check_typed<T>(name);
    HSEQ_CHECK(ti.shape == expected, "safetensors: " << path_ << ": tensor '" << name << "' has shape " << ti.shape
                                                     << ", expected " << expected);
    std::span<char const> b = raw(name);
    if (!b.empty()) std::memcpy(dst, b.data(), b.size());
  }
  /// Tensor `name` as a vector of T, checking dtype and shape ("expected F32, found F64";
  /// "tensor 'x' has shape [2, 3], expected [3, 2]").
  template <class T>
  std::vector<T> read(std::string const& name, Shape const& expected) const {
    std::vector<T> v(static_cast<std::size_t>(expected.numel()));
    read_into<T>(name, expected, v.data());
    return v;
  }
  /// Tensor `name` as a vector of T, whatever its shape (the dtype is still checked).
  template <class T>
  std::vector<T> read(std::string const& name) const {
    return read<T>(name, check_typed<T>(name).shape);
  }

  bool has_metadata(std::string const& key) const { return metadata_.count(key) != 0; }
  /// Metadata value of `key`; throws naming the key (and the keys present) when it is missing.
  std::string const& metadata(std::string const& key) const {
    auto it = metadata_.find(key);
    if (it == metadata_.end()) {
      std::vector<std::string> keys;
      for (auto const& kv : metadata_) keys.push_back(kv.first);
      HSEQ_FAIL("safetensors: " << path_ << ": no metadata key '" << key
                                << "' (present: " << detail::st::join_names(keys) << ")");
    }
    return it->second;
  }
  std::map<std::string, std::string> const& all_metadata() const { return metadata_; }

  /// The largest JSON header accepted, in bytes (the reference implementation's limit): a corrupted
  /// length field must not make the reader allocate gigabytes.
  static constexpr std::uint64_t kMaxHeader = 100'000'000;

 private:
  std::string path_;
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
  std::vector<char> data_;  // the data buffer (empty when header-only)
  bool has_data_ = false;

  template <class T>
  TensorInfo const& check_typed(std::string const& name) const {
    TensorInfo const& ti = info(name);
    HSEQ_CHECK(ti.dtype == dtype_of<T>(), "safetensors: " << path_ << ": tensor '" << name << "': expected "
                                                          << dtype_of<T>() << ", found " << ti.dtype);
    return ti;
  }

  struct FileCloser {
    std::FILE* f;
    ~FileCloser() {
      if (f) std::fclose(f);
    }
  };

  static void read_exact(std::FILE* f, void* dst, std::size_t n, std::string const& path) {
    if (n == 0) return;
    std::size_t got = std::fread(dst, 1, n, f);
    if (got != n) {
      int err = errno;
      HSEQ_FAIL(
          "safetensors: " << path << ": read failed after " << got << " of " << n << " bytes"
                          << (std::ferror(f) ? ": " + detail::st::errno_text(err) : std::string(" (end of file)")));
    }
  }

  static SafetensorsFile open(std::string const& path, bool with_data) {
    namespace fs = std::filesystem;
    std::error_code ec;
    HSEQ_CHECK(!fs::is_directory(path, ec), "safetensors: " << path << ": is a directory, not a file");
    errno = 0;
    FileCloser fc{std::fopen(path.c_str(), "rb")};
    if (fc.f == nullptr) {
      int err = errno;
      HSEQ_FAIL("safetensors: cannot open '" << path << "': " << detail::st::errno_text(err));
    }
    struct stat st {};
    if (::fstat(::fileno(fc.f), &st) != 0) {
      int err = errno;
      HSEQ_FAIL("safetensors: " << path << ": cannot stat: " << detail::st::errno_text(err));
    }
    auto const file_size = static_cast<std::uint64_t>(st.st_size);
    HSEQ_CHECK(file_size >= 8, "safetensors: " << path << ": file is " << file_size
                                               << " bytes, shorter than the 8-byte header length "
                                                  "(truncated or corrupted)");
    unsigned char prefix[8];
    read_exact(fc.f, prefix, 8, path);
    std::uint64_t n = 0;
    for (int i = 0; i < 8; ++i) n |= std::uint64_t(prefix[i]) << (8 * i);
    HSEQ_CHECK(n <= file_size - 8, "safetensors: " << path << ": header length " << n << " is larger than the file ("
                                                   << file_size << " bytes): truncated or corrupted");
    HSEQ_CHECK(n <= kMaxHeader, "safetensors: " << path << ": header length " << n << " exceeds the limit of "
                                                << kMaxHeader << " bytes");
    std::string header(static_cast<std::size_t>(n), '\0');
    read_exact(fc.f, header.data(), header.size(), path);

    SafetensorsFile sf;
    sf.path_ = path;
    std::uint64_t const buffer_size = file_size - 8 - n;
    sf.parse_header(header, buffer_size);
    if (with_data) {
      sf.data_.resize(static_cast<std::size_t>(buffer_size));
      read_exact(fc.f, sf.data_.data(), sf.data_.size(), path);
      sf.has_data_ = true;
    }
    return sf;
  }

  void parse_header(std::string const& header, std::uint64_t buffer_size) {
    using nlohmann::json;
    // Duplicate keys would silently keep the last value; reject them at every depth.
    std::vector<std::set<std::string>> seen;
    json::parser_callback_t cb = [&](int, json::parse_event_t ev, json& parsed) {
      if (ev == json::parse_event_t::object_start)
        seen.emplace_back();
      else if (ev == json::parse_event_t::object_end)
        seen.pop_back();
      else if (ev == json::parse_event_t::key && !seen.empty()) {
        std::string const& k = parsed.get_ref<std::string const&>();
        HSEQ_CHECK(seen.back().insert(k).second,
                   "safetensors: " << path_ << ": invalid JSON header: duplicate key '" << k << "'");
      }
      return true;
    };
    json h;
    try {
      h = json::parse(header, cb);
    } catch (json::exception const& ex) {
      HSEQ_FAIL("safetensors: " << path_ << ": invalid JSON header (" << ex.what() << ")");
    }
    HSEQ_CHECK(h.is_object(), "safetensors: " << path_ << ": invalid header: the JSON is a " << h.type_name()
                                              << ", not a JSON object");
    std::uint64_t max_end = 0;
    for (auto it = h.begin(); it != h.end(); ++it) {
      std::string const& name = it.key();
      json const& e = it.value();
      if (name == "__metadata__") {
        HSEQ_CHECK(e.is_object(),
                   "safetensors: " << path_ << ": __metadata__ is a " << e.type_name() << ", not an object of strings");
        for (auto m = e.begin(); m != e.end(); ++m) {
          HSEQ_CHECK(m.value().is_string(), "safetensors: " << path_ << ": __metadata__ value of '" << m.key()
                                                            << "' is a " << m.value().type_name() << ", not a string");
          metadata_[m.key()] = m.value().get<std::string>();
        }
        continue;
      }
      std::string const where = "safetensors: " + path_ + ": tensor '" + name + "'";
      HSEQ_CHECK(e.is_object(), where << ": entry is a " << e.type_name() << ", not an object");
      for (char const* key : {"dtype", "shape", "data_offsets"})
        HSEQ_CHECK(e.contains(key), where << ": missing '" << key << "'");
      json const& jd = e.at("dtype");
      json const& js = e.at("shape");
      json const& jo = e.at("data_offsets");
      HSEQ_CHECK(jd.is_string(), where << ": dtype is a " << jd.type_name() << ", not a string");
      TensorInfo ti;
      ti.dtype = jd.get<std::string>();
      std::size_t item = dtype_size(ti.dtype);
      HSEQ_CHECK(item != 0, where << ": unknown dtype '" << ti.dtype << "'");
      HSEQ_CHECK(js.is_array(), where << ": shape is a " << js.type_name() << ", not an array");
      HSEQ_CHECK(js.size() <= std::size_t(Shape::kMaxRank),
                 where << ": rank " << js.size() << " exceeds hseq's maximum rank " << Shape::kMaxRank);
      for (json const& d : js) {
        HSEQ_CHECK(d.is_number_unsigned() && d.get<std::uint64_t>() <= std::uint64_t(INT64_MAX),
                   where << ": shape " << js.dump() << " has an extent that is not a non-negative integer");
        ti.shape = ti.shape.appended(static_cast<std::int64_t>(d.get<std::uint64_t>()));
      }
      HSEQ_CHECK(detail::st::numel_fits(ti.shape),
                 where << ": shape " << ti.shape << " has more elements than int64 can count");
      std::size_t need = 0;
      HSEQ_CHECK(detail::st::checked_bytes(ti.shape, item, need),
                 where << ": " << ti.dtype << " " << ti.shape << " has more bytes than size_t can count");
      HSEQ_CHECK(jo.is_array() && jo.size() == 2 && jo[0].is_number_unsigned() && jo[1].is_number_unsigned(),
                 where << ": data_offsets " << jo.dump() << " is not a pair of non-negative integers");
      auto const b = jo[0].get<std::uint64_t>(), en = jo[1].get<std::uint64_t>();
      HSEQ_CHECK(b <= en && en <= buffer_size, where << ": data_offsets [" << b << ", " << en
                                                     << "] out of bounds of the " << buffer_size
                                                     << "-byte data buffer (truncated or corrupted)");
      HSEQ_CHECK(need == en - b,
                 where << ": data_offsets [" << b << ", " << en << "] hold " << (en - b)
                       << " bytes, which does not match " << ti.dtype << " " << ti.shape << " (" << need << " bytes)");
      ti.begin = static_cast<std::size_t>(b);
      ti.end = static_cast<std::size_t>(en);
      max_end = std::max(max_end, en);
      tensors_.emplace(name, std::move(ti));
    }
    HSEQ_CHECK(max_end == buffer_size,
               "safetensors: " << path_ << ": " << (buffer_size - max_end)
                               << " bytes of trailing data after the last tensor (which ends at " << max_end << " of a "
                               << buffer_size << "-byte buffer): truncated or corrupted");
  }
};

}  // namespace hseq::io
