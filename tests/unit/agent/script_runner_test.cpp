#include "helm/agent/script_runner.hpp"

#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>
#include <sstream>
#include <thread>

namespace helm::agent {
namespace {

using namespace std::chrono_literals;

// Gone, or a zombie nobody has reaped yet: either way no longer running.
bool process_gone(pid_t pid) {
  if (::kill(pid, 0) != 0) return errno == ESRCH;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  const auto close = text.rfind(')');
  return close != std::string::npos && close + 2 < text.size() && text[close + 2] == 'Z';
}

ScriptRun sh(std::string script, std::chrono::milliseconds timeout = 5000ms) {
  ScriptRun run;
  run.interpreter = "/bin/sh";
  run.script = std::move(script);
  run.timeout = timeout;
  return run;
}

TEST(ScriptRunner, CapturesStdoutStderrAndExitCode) {
  const auto outcome = run_script(sh("echo out; echo err >&2; exit 3"));
  EXPECT_EQ(outcome.status, ScriptOutcome::Status::kError);
  EXPECT_EQ(outcome.exit_code, 3);
  EXPECT_EQ(outcome.stdout_text, "out\n");
  EXPECT_EQ(outcome.stderr_text, "err\n");
}

TEST(ScriptRunner, TimeoutKillsTheWholeProcessGroupIncludingGrandchildren) {
  // The script prints its own pid and its background child's, then blocks.
  const auto started = std::chrono::steady_clock::now();
  const auto outcome = run_script(sh("echo $$; sleep 100 & echo $!; sleep 100", 1000ms));
  EXPECT_LT(std::chrono::steady_clock::now() - started, 10s);
  EXPECT_EQ(outcome.status, ScriptOutcome::Status::kTimeout);
  std::istringstream pids(outcome.stdout_text);
  pid_t shell = 0;
  pid_t background = 0;
  ASSERT_TRUE(pids >> shell >> background) << outcome.stdout_text;
  bool gone = false;
  for (int i = 0; i < 200 && !gone; ++i) {
    gone = process_gone(shell) && process_gone(background);
    if (!gone) std::this_thread::sleep_for(10ms);
  }
  EXPECT_TRUE(process_gone(shell)) << shell;
  EXPECT_TRUE(process_gone(background)) << background;
}

TEST(ScriptRunner, OutputIsCappedAndMarkedTruncated) {
  ScriptRun run = sh("head -c 200000 /dev/zero | tr '\\0' a; echo done >&2");
  run.output_cap_bytes = 1000;
  const auto outcome = run_script(run);
  EXPECT_EQ(outcome.status, ScriptOutcome::Status::kOk);
  EXPECT_EQ(outcome.stdout_text, std::string(1000, 'a'));
  EXPECT_TRUE(outcome.stdout_truncated);
  EXPECT_EQ(outcome.stderr_text, "done\n");
  EXPECT_FALSE(outcome.stderr_truncated);
}

TEST(ScriptRunner, MissingInterpreterIsAnError) {
  ScriptRun run = sh("true");
  run.interpreter = "/nonexistent/interpreter";
  const auto outcome = run_script(run);
  EXPECT_EQ(outcome.status, ScriptOutcome::Status::kError);
  EXPECT_EQ(outcome.exit_code, 127);
}

}  // namespace
}  // namespace helm::agent
