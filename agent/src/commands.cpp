#include "helm/agent/commands.hpp"

#include "helm/agent/script_runner.hpp"
#include "helm/agent/system_info.hpp"

namespace helm::agent {
namespace {

nlohmann::json error_result(const CmdFrame& cmd, std::string_view message) {
  return make_result(cmd.id, "error", -1, "", message, {{"error", message}});
}

nlohmann::json run_script_command(const CmdFrame& cmd, const CommandContext& context) {
  if (!context.policy) {
    return error_result(cmd,
                        "run_script is disabled on this agent: no policy file (policy.json in "
                        "the state directory or --policy)");
  }
  const auto& policy = *context.policy;
  const auto& args = cmd.args;
  if (!args.contains("interpreter") || !args["interpreter"].is_string() ||
      !args.contains("script") || !args["script"].is_string()) {
    return error_result(cmd, "run_script needs string args \"interpreter\" and \"script\"");
  }
  const auto interpreter = args["interpreter"].get<std::string>();
  if (!policy.allows(interpreter)) {
    return error_result(cmd,
                        "interpreter " + interpreter + " is not allowed by this agent's policy");
  }
  int timeout_s = policy.max_timeout_s;
  if (args.contains("timeout_s")) {
    if (!args["timeout_s"].is_number_integer() || args["timeout_s"].get<long long>() <= 0) {
      return error_result(cmd, "run_script \"timeout_s\" must be a positive integer");
    }
    timeout_s = static_cast<int>(
        std::min<long long>(args["timeout_s"].get<long long>(), policy.max_timeout_s));
  }
  ScriptRun run;
  run.interpreter = interpreter;
  run.script = args["script"].get<std::string>();
  run.timeout = std::chrono::seconds(timeout_s);
  run.output_cap_bytes = policy.output_cap_bytes;
  run.work_dir = context.work_dir;
  const ScriptOutcome outcome = run_script(run);
  const char* status = outcome.status == ScriptOutcome::Status::kOk        ? "ok"
                       : outcome.status == ScriptOutcome::Status::kTimeout ? "timeout"
                                                                           : "error";
  nlohmann::json data = {{"stdout_truncated", outcome.stdout_truncated},
                         {"stderr_truncated", outcome.stderr_truncated},
                         {"timeout_s", timeout_s}};
  if (!outcome.error.empty()) data["error"] = outcome.error;
  return make_result(cmd.id, status, outcome.exit_code, outcome.stdout_text,
                     outcome.stderr_text.empty() ? outcome.error : outcome.stderr_text,
                     std::move(data));
}

}  // namespace

nlohmann::json execute_command(const CmdFrame& cmd, const CommandContext& context) {
  if (cmd.kind == "ping") {
    return make_result(cmd.id, "ok", 0, "", "", {{"pong", true}});
  }
  if (cmd.kind == "inventory") {
    return make_result(cmd.id, "ok", 0, "", "", collect_inventory());
  }
  if (cmd.kind == "run_script") return run_script_command(cmd, context);
  return error_result(cmd, "unknown command kind \"" + cmd.kind +
                               "\" (this agent knows ping, inventory, run_script)");
}

}  // namespace helm::agent
