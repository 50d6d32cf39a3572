// SPDX-License-Identifier: MIT
/// @file
/// @brief `MappedCorpus`: one or more files read as one byte stream through a bounded number of
/// memory-mapped windows, so a corpus larger than memory (or than the address space a process may
/// use, `ulimit -v`) can be trained on.
///
/// Why windows rather than one mapping per file: a whole-file mapping needs as much address space
/// as the file, and fails under an address-space limit smaller than it; reading the file into
/// memory needs as much memory. A window is `window_bytes` of one file (a multiple of the page
/// size); at most `max_windows` are mapped at a time, the least recently used one being unmapped
/// first, so the corpus costs at most window_bytes * max_windows of address space whatever its
/// size. A file smaller than a window is one mapping, made once (the built-in corpora).
///
/// The stream is the files concatenated in the byte order of their paths (not the order a
/// directory listing returns, which differs between file systems), so a split of the stream into
/// train and validation parts is the same on every machine.
///
/// A mapped file must not shrink while it is read (the kernel then raises SIGBUS on the missing
/// pages, as for any mapped file); its size is checked again each time a window is mapped.
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "hseq/core/error.hpp"

namespace hseq::io {

/// How much of a corpus is mapped at once.
struct MapOptions {
  /// Bytes of one window (rounded up to a multiple of the page size).
  std::int64_t window_bytes = std::int64_t{16} << 20;
  /// Windows mapped at a time.
  int max_windows = 8;
};

class MappedCorpus {
 public:
  /// The files that `paths` name, in byte order of their paths: a path to a regular file is that
  /// file (it must not be empty); a path to a directory is every non-empty regular file below it,
  /// recursively, except those whose name, or a directory's on the way, starts with '.' (hidden
  /// files: version control, editors). A file named twice is read once.
  explicit MappedCorpus(std::vector<std::string> const& paths, MapOptions opt = {}) {
    HSEQ_CHECK(!paths.empty(), "corpus: no file or directory given");
    for (auto const& p : paths) HSEQ_CHECK(!p.empty(), "corpus: an empty path was given (in '" << describe(paths) << "')");
    HSEQ_CHECK(opt.window_bytes >= 1 && opt.max_windows >= 1,
               "corpus: window_bytes " << opt.window_bytes << " and max_windows " << opt.max_windows
                                       << " must be positive");
    std::int64_t page = static_cast<std::int64_t>(::sysconf(_SC_PAGESIZE));
    if (page <= 0) page = 4096;
    window_ = (opt.window_bytes + page - 1) / page * page;
    slots_.resize(static_cast<std::size_t>(opt.max_windows));

    std::vector<std::pair<std::string, std::int64_t>> found;  // (path, size)
    for (auto const& p : paths) collect(p, found);
    std::sort(found.begin(), found.end());
    found.erase(std::unique(found.begin(), found.end(),
                            [](auto const& a, auto const& b) { return a.first == b.first; }),
                found.end());
    for (auto& [path, size] : found) {
      files_.push_back({std::move(path), total_, size});
      total_ += size;
    }
    HSEQ_CHECK(total_ > 0, "corpus: " << describe(paths) << " holds no non-empty file");
  }

  ~MappedCorpus() {
    for (auto& s : slots_) unmap(s);
  }
  MappedCorpus(MappedCorpus const&) = delete;
  MappedCorpus& operator=(MappedCorpus const&) = delete;

  /// Bytes of the whole stream.
  std::int64_t size() const { return total_; }
  /// The files read, in stream order.
  std::vector<std::string> paths() const {
    std::vector<std::string> out;
    for (auto const& f : files_) out.push_back(f.path);
    return out;
  }
  /// The paths joined by commas (how a list is named in messages, and `--data`'s form).
  static std::string describe(std::vector<std::string> const& paths) {
    std::string s;
    for (auto const& p : paths) s += (s.empty() ? "" : ",") + p;
    return s;
  }

  /// Windows mapped now (at most max_windows).
  int mapped_windows() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return static_cast<int>(std::count_if(slots_.begin(), slots_.end(), [](Slot const& s) { return s.base; }));
  }

  /// Calls `fn(unsigned char const* p, std::int64_t len)` on consecutive pieces that together are
  /// bytes [offset, offset + n) of the stream, in order (a piece never crosses a window or a file).
  /// `fn` must not read the corpus itself. Safe to call from several threads.
  template <class F>
  void for_each_piece(std::int64_t offset, std::int64_t n, F&& fn) const {
    HSEQ_CHECK(offset >= 0 && n >= 0 && offset <= total_ - n,
               "corpus: bytes [" << offset << ", " << offset + n << ") are outside the corpus of " << total_
                                 << " bytes");
    std::lock_guard<std::mutex> lock(mutex_);
    // The file that holds `offset`: the last one that begins at or before it.
    auto it = std::upper_bound(files_.begin(), files_.end(), offset,
                               [](std::int64_t o, File const& f) { return o < f.begin; });
    std::size_t fi = static_cast<std::size_t>(it - files_.begin()) - 1;
    while (n > 0) {
      File const& f = files_[fi];
      std::int64_t in_file = offset - f.begin;
      if (in_file >= f.size) {  // the next file (offset sits at this one's end)
        ++fi;
        continue;
      }
      std::int64_t w = in_file / window_;
      Slot const& s = window(fi, w);
      std::int64_t at = in_file - w * window_;
      std::int64_t len = std::min(n, s.len - at);
      fn(s.base + at, len);
      offset += len;
      n -= len;
    }
  }

  /// Copies bytes [offset, offset + n) of the stream to `dst`.
  void read(std::int64_t offset, std::int64_t n, unsigned char* dst) const {
    for_each_piece(offset, n, [&](unsigned char const* p, std::int64_t len) {
      std::memcpy(dst, p, static_cast<std::size_t>(len));
      dst += len;
    });
  }

 private:
  struct File {
    std::string path;
    std::int64_t begin, size;
  };
  struct Slot {
    std::size_t file = 0;
    std::int64_t index = -1;
    unsigned char const* base = nullptr;
    std::int64_t len = 0;
    std::uint64_t used = 0;
  };


  static bool hidden(std::filesystem::path const& p) {
    std::string n = p.filename().string();
    return !n.empty() && n[0] == '.';
  }

  static void collect(std::string const& path, std::vector<std::pair<std::string, std::int64_t>>& out) {
    namespace fs = std::filesystem;
    std::error_code ec;
    fs::file_status st = fs::status(path, ec);
    if (!fs::exists(st)) {
      bool missing = !ec || ec == std::errc::no_such_file_or_directory;
      HSEQ_FAIL("cannot read " << path << ": " << (missing ? "no such file or directory" : ec.message()));
    }
    if (fs::is_regular_file(st)) {
      std::int64_t size = file_size(path);
      HSEQ_CHECK(size > 0, path << " is empty");
      out.emplace_back(path, size);
      return;
    }
    HSEQ_CHECK(fs::is_directory(st), "cannot read " << path << ": not a regular file or a directory");
    std::size_t before = out.size();
    fs::recursive_directory_iterator it(path, fs::directory_options::none, ec), end;
    HSEQ_CHECK(!ec, "cannot list the directory " << path << ": " << ec.message());
    for (; it != end; it.increment(ec)) {
      HSEQ_CHECK(!ec, "cannot list the directory " << path << ": " << ec.message());
      fs::path const& p = it->path();
      if (hidden(p)) {
        if (it->is_directory(ec)) it.disable_recursion_pending();
        continue;
      }
      if (!it->is_regular_file(ec)) continue;
      std::int64_t size = file_size(p.string());
      if (size > 0) out.emplace_back(p.string(), size);
    }
    HSEQ_CHECK(out.size() > before, "the directory " << path << " holds no non-empty file (hidden ones are skipped)");
  }

  static std::int64_t file_size(std::string const& path) {
    struct stat sb {};
    HSEQ_CHECK(::stat(path.c_str(), &sb) == 0, "cannot read " << path << ": " << std::strerror(errno));
    return static_cast<std::int64_t>(sb.st_size);
  }

  static void unmap(Slot& s) {
    if (s.base != nullptr) ::munmap(const_cast<unsigned char*>(s.base), static_cast<std::size_t>(s.len));
    s = Slot{};
  }

  /// The slot that maps window `w` of file `fi`, mapping it (in place of the least recently used
  /// slot) when it is not mapped. Called with the mutex held.
  Slot const& window(std::size_t fi, std::int64_t w) const {
    ++clock_;
    Slot* victim = &slots_[0];
    for (auto& s : slots_) {
      if (s.base != nullptr && s.file == fi && s.index == w) {
        s.used = clock_;
        return s;
      }
      if (s.used < victim->used) victim = &s;
    }
    unmap(*victim);
    File const& f = files_[fi];
    std::int64_t begin = w * window_;
    std::int64_t len = std::min(window_, f.size - begin);
    int fd = ::open(f.path.c_str(), O_RDONLY | O_CLOEXEC);
    HSEQ_CHECK(fd >= 0, "cannot open " << f.path << ": " << std::strerror(errno));
    struct stat sb {};
    int stat_rc = ::fstat(fd, &sb);
    if (stat_rc != 0 || static_cast<std::int64_t>(sb.st_size) < f.size) {
      ::close(fd);
      HSEQ_FAIL(f.path << " changed while in use: it had " << f.size << " bytes, now "
                       << (stat_rc == 0 ? static_cast<std::int64_t>(sb.st_size) : -1));
    }
    void* p = ::mmap(nullptr, static_cast<std::size_t>(len), PROT_READ, MAP_PRIVATE, fd, static_cast<off_t>(begin));
    int err = errno;
    ::close(fd);  // the mapping keeps the file open
    HSEQ_CHECK(p != MAP_FAILED, "cannot map bytes [" << begin << ", " << begin + len << ") of " << f.path << ": "
                                                     << std::strerror(err));
    victim->file = fi;
    victim->index = w;
    victim->base = static_cast<unsigned char const*>(p);
    victim->len = len;
    victim->used = clock_;
    return *victim;
  }

  std::vector<File> files_;
  std::int64_t total_ = 0;
  std::int64_t window_ = 0;
  mutable std::mutex mutex_;
  mutable std::vector<Slot> slots_;
  mutable std::uint64_t clock_ = 0;
};

}  // namespace hseq::io
