// Progress lines and SIGINT handling of the pipeline.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>

#include "pipeline/stages.h"
#include "util/error.h"

namespace kt {

namespace {
std::atomic<bool> g_stop{false};
std::atomic<int> g_guards{0};
struct sigaction g_old_action;

extern "C" void on_sigint(int) {
  if (g_stop.load()) {
    // Second Ctrl-C: give up at once, as the user asks.
    signal(SIGINT, SIG_DFL);
    raise(SIGINT);
    return;
  }
  g_stop.store(true);
  const char msg[] = "\nknowtrace: interrupted: finishing cleanly (Ctrl-C again to abort now)\n";
  ssize_t ignored = write(STDERR_FILENO, msg, sizeof msg - 1);
  (void)ignored;
}

std::string fmt_duration(double s) {
  char buf[32];
  if (s < 60) std::snprintf(buf, sizeof buf, "%.0fs", s);
  else if (s < 3600) std::snprintf(buf, sizeof buf, "%.0fm", s / 60);
  else std::snprintf(buf, sizeof buf, "%.0fh%02.0fm", std::floor(s / 3600), std::fmod(s, 3600) / 60);
  return buf;
}
}  // namespace

void request_stop() { g_stop.store(true); }

namespace pipeline {

bool stop_requested() { return g_stop.load(); }
void clear_stop() { g_stop.store(false); }

InterruptGuard::InterruptGuard() {
  if (g_guards++ == 0) {
    struct sigaction sa = {};
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &g_old_action);
  }
}

InterruptGuard::~InterruptGuard() {
  if (--g_guards == 0) sigaction(SIGINT, &g_old_action, nullptr);
}

void note(RunReport& r, const std::string& msg) {
  std::fprintf(stderr, "knowtrace: %s\n", msg.c_str());
  r.notes.push_back(msg);
}

Progress::Progress(std::string stage, int64_t total, std::string unit, bool enabled)
    : stage_(std::move(stage)), unit_(std::move(unit)), total_(total), enabled_(enabled && total > 0),
      tty_(isatty(STDERR_FILENO) != 0), start_(std::chrono::steady_clock::now()), last_(start_) {
  if (enabled_ && tty_) draw(false);
}

Progress::~Progress() { finish(); }

void Progress::tick(int64_t n) {
  done_ += n;
  partial_ = 0;
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  const double since = std::chrono::duration<double>(now - last_).count();
  if (done_ >= total_ || (tty_ ? since >= 0.2 : since >= 5.0)) {
    last_ = now;
    draw(false);
  }
}

void Progress::partial(double fraction) {
  partial_ = std::min(std::max(fraction, 0.0), 0.999);
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  const double since = std::chrono::duration<double>(now - last_).count();
  if (tty_ ? since >= 0.2 : since >= 30.0) {
    last_ = now;
    draw(false);
  }
}

void Progress::finish() {
  if (finished_) return;
  finished_ = true;
  if (enabled_) draw(true);
}

void Progress::draw(bool final) {
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double work = done_ + partial_;  // items, counting the current one's share
  const double per_min = secs > 0 ? work * 60.0 / secs : 0;
  char rate[64] = "";
  if (work > 0) std::snprintf(rate, sizeof rate, ", %.*f %s/min", per_min < 1 ? 2 : 1, per_min, unit_.c_str());
  std::string eta;
  if (work > 0 && done_ < total_) eta = ", ETA " + fmt_duration((total_ - work) * secs / work);
  else if (final || done_ >= total_) eta = ", " + fmt_duration(secs);
  if (partial_ > 0 && done_ < total_) {
    char cur[48];
    std::snprintf(cur, sizeof cur, " (current %.0f%%)", partial_ * 100);
    eta = cur + eta;
  }
  if (tty_) {
    const int width = 28;
    const int fill = total_ > 0 ? static_cast<int>(width * work / static_cast<double>(total_)) : width;
    std::string bar(static_cast<size_t>(fill), '#');
    bar.resize(width, '.');
    std::fprintf(stderr, "\r%s [%s] %lld/%lld %s%s%s   ", stage_.c_str(), bar.c_str(), (long long)done_,
                 (long long)total_, unit_.c_str(), rate, eta.c_str());
    if (final || done_ >= total_) std::fprintf(stderr, "\n");
  } else {
    if (final && done_ < total_ && done_ == 0) return;
    std::fprintf(stderr, "%s: %lld/%lld %s%s%s\n", stage_.c_str(), (long long)done_, (long long)total_, unit_.c_str(),
                 rate, eta.c_str());
  }
  std::fflush(stderr);
  if (done_ >= total_) finished_ = true;
}

}  // namespace pipeline
}  // namespace kt
