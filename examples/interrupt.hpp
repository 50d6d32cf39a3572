// SPDX-License-Identifier: MIT
/// @file
/// @brief How hseq-train survives being stopped (not part of the library): while `StopSignals`
/// lives, SIGINT (Ctrl-C) and SIGTERM (what a batch scheduler or a shutdown sends) set a flag
/// that the trainer reads between steps (`train::Trainer::set_stop_flag`): the current step
/// finishes, the checkpoint is written atomically, and the program exits with 128 + the signal
/// (130, 143) after saying how to resume. A second signal exits at once (`_exit`, 128 + signal).
/// SIGXFSZ is ignored meanwhile, so a file-size limit (`ulimit -f`) makes a checkpoint write fail
/// with an error (and the previous checkpoint stays, the write being atomic) instead of killing
/// the process.
#pragma once

#include <signal.h>
#include <unistd.h>

#include <atomic>

namespace cli {

/// The signal that asked to stop (0: none). Lock-free, so the handler may store it.
inline std::atomic<int> g_stop_signal{0};
static_assert(std::atomic<int>::is_always_lock_free);

/// The handler: the first signal sets the flag and says so; a second one exits at once.
inline void on_stop_signal(int sig) {
  int expected = 0;
  if (!g_stop_signal.compare_exchange_strong(expected, sig)) ::_exit(128 + sig);
  // write(2) is async-signal-safe; iostreams are not.
  static char const kMsg[] =
      "\nhseq-train: stopping after this step and writing the checkpoint (signal again to exit at once)\n";
  ssize_t const ignored = ::write(2, kMsg, sizeof kMsg - 1);
  (void)ignored;
}

/// Installs the handlers for its lifetime and restores the previous ones after.
class StopSignals {
 public:
  StopSignals() {
    g_stop_signal.store(0);
    struct sigaction sa {};
    sa.sa_handler = &on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;  // system calls in flight (a checkpoint's write) resume
    ::sigaction(SIGINT, &sa, &old_int_);
    ::sigaction(SIGTERM, &sa, &old_term_);
    struct sigaction ignore {};
    ignore.sa_handler = SIG_IGN;
    sigemptyset(&ignore.sa_mask);
    ::sigaction(SIGXFSZ, &ignore, &old_xfsz_);
  }
  ~StopSignals() {
    ::sigaction(SIGINT, &old_int_, nullptr);
    ::sigaction(SIGTERM, &old_term_, nullptr);
    ::sigaction(SIGXFSZ, &old_xfsz_, nullptr);
  }
  StopSignals(StopSignals const&) = delete;
  StopSignals& operator=(StopSignals const&) = delete;

  std::atomic<int> const& flag() const { return g_stop_signal; }
  /// The signal received (0: none).
  int received() const { return g_stop_signal.load(); }
  static char const* name(int sig) { return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "a signal"; }

 private:
  struct sigaction old_int_ {}, old_term_ {}, old_xfsz_ {};
};

/// Thrown by hseq-train after a stopped run wrote its checkpoint: main returns `code` (128 +
/// signal). Not a std::exception, so no error handler mistakes it for a failure.
struct Interrupted {
  int code;
};

}  // namespace cli
