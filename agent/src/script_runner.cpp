#include "helm/agent/script_runner.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>
#include <vector>

namespace helm::agent {
namespace {

using Clock = std::chrono::steady_clock;

struct Capture {
  int fd = -1;
  std::string* text = nullptr;
  bool* truncated = nullptr;
};

// Reads what is available; false once the pipe reached end of file or failed.
bool drain(Capture& capture, std::size_t cap) {
  char buf[8192];
  for (;;) {
    const ssize_t n = ::read(capture.fd, buf, sizeof buf);
    if (n > 0) {
      const std::size_t room = cap > capture.text->size() ? cap - capture.text->size() : 0;
      const std::size_t take = std::min(room, static_cast<std::size_t>(n));
      capture.text->append(buf, take);
      if (take < static_cast<std::size_t>(n)) *capture.truncated = true;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    return false;
  }
}

}  // namespace

ScriptOutcome run_script(const ScriptRun& run) {
  ScriptOutcome outcome;
  std::string script_path = (run.work_dir / "helm-script-XXXXXX").string();
  const int script_fd = ::mkstemp(script_path.data());
  if (script_fd < 0) {
    outcome.error =
        "cannot create the script file in " + run.work_dir.string() + ": " + std::strerror(errno);
    return outcome;
  }
  std::string_view body = run.script;
  bool written = true;
  while (!body.empty()) {
    const ssize_t n = ::write(script_fd, body.data(), body.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      written = false;
      break;
    }
    body.remove_prefix(static_cast<std::size_t>(n));
  }
  ::close(script_fd);
  struct Unlink {
    std::string path;
    ~Unlink() { ::unlink(path.c_str()); }
  } unlink_script{script_path};
  if (!written) {
    outcome.error = "cannot write the script file: " + std::string(std::strerror(errno));
    return outcome;
  }

  int out_pipe[2];
  int err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) {
    outcome.error = std::string("pipe: ") + std::strerror(errno);
    return outcome;
  }
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) {
    outcome.error = std::string("pipe: ") + std::strerror(errno);
    ::close(out_pipe[0]);
    ::close(out_pipe[1]);
    return outcome;
  }
  // Everything the child needs is prepared before fork: only async-signal-safe calls after it.
  std::vector<char*> argv = {const_cast<char*>(run.interpreter.c_str()),
                             const_cast<char*>(script_path.c_str()), nullptr};
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::setpgid(0, 0);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    // Ignored signals stay ignored across exec; the agent ignores SIGPIPE.
    ::signal(SIGPIPE, SIG_DFL);
    const int null_fd = ::open("/dev/null", O_RDONLY);
    if (null_fd >= 0) ::dup2(null_fd, STDIN_FILENO);
    ::dup2(out_pipe[1], STDOUT_FILENO);
    ::dup2(err_pipe[1], STDERR_FILENO);
    ::close_range(3, ~0U, 0);
    ::execv(argv[0], argv.data());
    _exit(127);
  }
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  if (pid < 0) {
    outcome.error = std::string("fork: ") + std::strerror(errno);
    ::close(out_pipe[0]);
    ::close(err_pipe[0]);
    return outcome;
  }
  ::setpgid(pid, pid);  // also in the parent, so the group exists before any kill below

  Capture captures[2] = {{out_pipe[0], &outcome.stdout_text, &outcome.stdout_truncated},
                         {err_pipe[0], &outcome.stderr_text, &outcome.stderr_truncated}};
  for (auto& c : captures)
    ::fcntl(c.fd, F_SETFL, ::fcntl(c.fd, F_GETFL) | O_NONBLOCK);
  bool open[2] = {true, true};
  const auto deadline = Clock::now() + run.timeout;
  bool timed_out = false;
  auto remaining_ms = [&] {
    return std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  };
  while (open[0] || open[1]) {
    const auto left = remaining_ms();
    if (left <= 0) {
      timed_out = true;
      break;
    }
    pollfd fds[2];
    nfds_t count = 0;
    int index[2];
    for (int i = 0; i < 2; ++i) {
      if (!open[i]) continue;
      fds[count] = {captures[i].fd, POLLIN, 0};
      index[count++] = i;
    }
    const int ready = ::poll(fds, count, static_cast<int>(std::min<long long>(left, 1000)));
    if (ready < 0 && errno != EINTR) break;
    for (nfds_t k = 0; k < count && ready > 0; ++k) {
      if (fds[k].revents == 0) continue;
      const int i = index[k];
      if (!drain(captures[i], run.output_cap_bytes)) open[i] = false;
    }
  }
  int wait_status = 0;
  bool reaped = false;
  // The pipes closed: wait for the main process, still within the timeout.
  while (!timed_out) {
    const pid_t done = ::waitpid(pid, &wait_status, WNOHANG);
    if (done == pid) {
      reaped = true;
      break;
    }
    if (done < 0 && errno != EINTR) break;
    if (remaining_ms() <= 0) {
      timed_out = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (timed_out) {
    // The whole group: the interpreter and anything it started that did not leave the group.
    ::kill(-pid, SIGKILL);
    ::kill(pid, SIGKILL);
  }
  if (!reaped) {
    while (::waitpid(pid, &wait_status, 0) < 0 && errno == EINTR) {
    }
  }
  for (auto& c : captures) {
    if (timed_out) drain(c, run.output_cap_bytes);
    ::close(c.fd);
  }
  if (timed_out) {
    outcome.status = ScriptOutcome::Status::kTimeout;
    outcome.exit_code = -1;
    return outcome;
  }
  if (WIFEXITED(wait_status)) {
    outcome.exit_code = WEXITSTATUS(wait_status);
    if (outcome.exit_code == 127 && outcome.stdout_text.empty() && outcome.stderr_text.empty()) {
      outcome.error = "could not execute " + run.interpreter;
    }
    outcome.status =
        outcome.exit_code == 0 ? ScriptOutcome::Status::kOk : ScriptOutcome::Status::kError;
  } else {
    outcome.exit_code = -1;
    outcome.status = ScriptOutcome::Status::kError;
    if (WIFSIGNALED(wait_status)) {
      outcome.error = "killed by signal " + std::to_string(WTERMSIG(wait_status));
    }
  }
  return outcome;
}

}  // namespace helm::agent
