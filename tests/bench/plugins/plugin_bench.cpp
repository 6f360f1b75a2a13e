// Benchmarks of the plugin host against the real example-echo (built in this tree):
//   BM_OperationRoundTrip  PluginInstance::invoke("echo") -> plugin -> completion handler, which
//                          example-echo runs before invoke() returns (goal: <= 2 us p50);
//   BM_OperationLatency    the same, each call timed alone: p50/p90/p99 in ns as counters;
//   BM_AbiDirect           the plugin side alone: the C ABI invoke() of a raw instance with a
//                          bare completion function (SDK + plugin, no PluginInstance);
//   BM_EchoJsonWork        the JSON work on the path alone (SDK parses input and org config,
//                          dumps the output; the host checks the output is JSON);
//   BM_OutputCheck         the host's part of that: json::accept of the output;
//   BM_PluginLoad          load_plugin() (manifest, staging copy + hash, signature, dlopen) +
//                          create + start + shutdown + unload, per iteration.
// See README.md for how to run it and recent figures.
#include <benchmark/benchmark.h>

#include <stdlib.h>  // mkdtemp

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include <helm/plugin_abi.h>

#include "bench_host.hpp"
#include "helm/plugins/plugin_instance.hpp"
#include "helm/plugins/plugin_loader.hpp"
#include "helm/signing/plugin_signature.hpp"

namespace {

namespace fs = std::filesystem;
using helm::plugins::CallRequest;
using helm::plugins::CallResult;
using helm::plugins::LoadedPlugin;
using helm::plugins::LoadOptions;
using helm::plugins::PluginInstance;
using helm::plugins::bench::BenchHost;
using Clock = std::chrono::steady_clock;

constexpr std::chrono::seconds kDrain{5};

const std::string kSmallInput = R"({"n":1})";

/// A JSON object of exactly 1024 bytes: {"data":"xxx...x"}.
std::string kib_input() {
  const std::string head = R"({"data":")";
  const std::string tail = R"("})";
  return head + std::string(1024 - head.size() - tail.size(), 'x') + tail;
}

// Set up in main() before any benchmark runs, torn down after the last.
struct Setup {
  BenchHost host;
  fs::path staging_root;
  LoadOptions options;
  std::shared_ptr<const LoadedPlugin> plugin;
  std::unique_ptr<PluginInstance> instance;
};
Setup* g_setup = nullptr;

CallRequest echo_request(const std::string& input) {
  CallRequest request;
  request.op = "echo";
  request.input_json = input;
  request.session = BenchHost::session();
  request.organization_id = "org-1";
  return request;
}

// ---------------------------------------------------------------------------------------------
// Round trip host -> plugin -> completion through PluginInstance.

void BM_OperationRoundTrip(benchmark::State& state, const std::string& input) {
  PluginInstance& instance = *g_setup->instance;
  const CallRequest request = echo_request(input);
  bool done = false;
  helm_status status = HELM_STATUS_INTERNAL;
  std::size_t output_size = 0;
  for (auto _ : state) {
    done = false;
    // Each call gets its own request, as a caller that builds one per call would.
    instance.invoke(CallRequest(request), [&](CallResult result) {
      done = true;
      status = result.status;
      output_size = result.output.size();
    });
    if (!done || status != HELM_STATUS_OK) {
      state.SkipWithError(done ? "echo did not complete OK" : "echo did not complete in invoke()");
      break;
    }
  }
  benchmark::DoNotOptimize(output_size);
  state.SetItemsProcessed(state.iterations());
}

// Per-call latency: every call timed on its own, percentiles reported as counters (ns).
void BM_OperationLatency(benchmark::State& state, const std::string& input) {
  PluginInstance& instance = *g_setup->instance;
  const CallRequest request = echo_request(input);
  std::vector<double> samples;
  samples.reserve(static_cast<std::size_t>(std::min<benchmark::IterationCount>(
      state.max_iterations, benchmark::IterationCount{50'000'000})));
  bool done = false;
  helm_status status = HELM_STATUS_INTERNAL;
  for (auto _ : state) {
    done = false;
    const auto begin = Clock::now();
    instance.invoke(CallRequest(request), [&](CallResult result) {
      done = true;
      status = result.status;
    });
    const auto end = Clock::now();
    if (!done || status != HELM_STATUS_OK) {
      state.SkipWithError("echo did not complete OK within invoke()");
      return;
    }
    samples.push_back(std::chrono::duration<double, std::nano>(end - begin).count());
  }
  if (samples.empty()) return;
  std::sort(samples.begin(), samples.end());
  const auto at = [&](double q) {
    return samples[static_cast<std::size_t>(q * static_cast<double>(samples.size() - 1))];
  };
  state.counters["p50_ns"] = at(0.50);
  state.counters["p90_ns"] = at(0.90);
  state.counters["p99_ns"] = at(0.99);
  state.counters["p999_ns"] = at(0.999);
}

// ---------------------------------------------------------------------------------------------
// Parts of the round trip, to see where the time goes.

// The plugin side alone: a raw instance made through the C ABI, invoked with a bare completion
// function. What this costs is SDK + plugin; the rest of BM_OperationRoundTrip is PluginInstance.
void bare_complete(void* call_ctx, helm_status status, const char* output,
                   size_t output_len) noexcept {
  auto* done = static_cast<helm_status*>(call_ctx);
  *done = status;
  benchmark::DoNotOptimize(output);
  benchmark::DoNotOptimize(output_len);
}

void BM_AbiDirect(benchmark::State& state, const std::string& input) {
  const helm_plugin_v1& functions = g_setup->plugin->functions();
  helm_error err{};
  err.struct_size = sizeof err;
  const std::string config = "{}";
  helm_plugin_instance* raw = nullptr;
  if (functions.create(&g_setup->host.api(), config.data(), config.size(), &raw, &err) !=
          HELM_STATUS_OK ||
      functions.start(raw, &err) != HELM_STATUS_OK) {
    state.SkipWithError("could not create and start a raw example-echo instance");
    if (raw != nullptr) functions.destroy(raw);
    return;
  }
  const std::string op = "echo";
  const std::string org = "org-1";
  const std::string org_config = "{}";
  helm_status done = -1;
  helm_call call{};
  call.struct_size = sizeof call;
  call.timeout_ms = 30000;
  call.op = op.c_str();
  call.op_len = op.size();
  call.input_json = input.c_str();
  call.input_len = input.size();
  call.session = BenchHost::session();
  call.organization_id = org.c_str();
  call.organization_id_len = org.size();
  call.org_config_json = org_config.c_str();
  call.org_config_len = org_config.size();
  call.complete = &bare_complete;
  call.call_ctx = &done;
  std::uint64_t id = 1;
  for (auto _ : state) {
    done = -1;
    call.call_id = id++;
    functions.invoke(raw, &call);
    if (done != HELM_STATUS_OK) {
      state.SkipWithError("echo did not complete OK within invoke()");
      break;
    }
  }
  functions.stop(raw);
  functions.destroy(raw);
  state.SetItemsProcessed(state.iterations());
}

// The JSON work on the path: the SDK parses the input and the org config and dumps the output;
// the host's completion checks the output is JSON (nlohmann::json::accept).
void BM_EchoJsonWork(benchmark::State& state, const std::string& input) {
  const std::string org_config = "{}";
  for (auto _ : state) {
    nlohmann::json parsed = nlohmann::json::parse(input);
    nlohmann::json config = nlohmann::json::parse(org_config);
    std::string output = parsed.dump();
    const bool ok = nlohmann::json::accept(output);
    benchmark::DoNotOptimize(config);
    benchmark::DoNotOptimize(ok);
  }
  state.SetItemsProcessed(state.iterations());
}

// The host's share of that JSON work alone: complete_call() checks an OK output with
// nlohmann::json::accept before the handler runs.
void BM_OutputCheck(benchmark::State& state, const std::string& output) {
  for (auto _ : state) {
    const bool ok = nlohmann::json::accept(output);
    benchmark::DoNotOptimize(ok);
  }
  state.SetItemsProcessed(state.iterations());
}

// ---------------------------------------------------------------------------------------------
// Load time.

void BM_PluginLoad(benchmark::State& state) {
  std::string signer;
  for (auto _ : state) {
    auto loaded = helm::plugins::load_plugin(HELM_BENCH_ECHO_DIR, g_setup->options);
    if (!loaded) {
      state.SkipWithError(loaded.error().message.c_str());
      break;
    }
    std::shared_ptr<const LoadedPlugin> plugin = std::move(loaded).value();
    signer = plugin->signer().describe();
    auto created = PluginInstance::create(plugin, g_setup->host.api(), "{}");
    if (!created) {
      state.SkipWithError(created.error().message.c_str());
      break;
    }
    std::unique_ptr<PluginInstance> instance = std::move(created).value();
    if (auto started = instance->start(); !started) {
      state.SkipWithError(started.error().message.c_str());
      break;
    }
    if (!instance->shutdown(kDrain)) {
      state.SkipWithError("shutdown did not drain");
      break;
    }
    // instance, then plugin: the library is unloaded and its staged copy deleted here.
  }
  state.SetLabel(signer);
}

// Load only (manifest, staged copy + hash, signature check, dlopen, entry check) + unload.
void BM_PluginLoadOnly(benchmark::State& state) {
  for (auto _ : state) {
    auto loaded = helm::plugins::load_plugin(HELM_BENCH_ECHO_DIR, g_setup->options);
    if (!loaded) {
      state.SkipWithError(loaded.error().message.c_str());
      break;
    }
  }
}

double p50(const std::vector<double>& values) {
  std::vector<double> sorted = values;
  std::sort(sorted.begin(), sorted.end());
  const std::size_t n = sorted.size();
  if (n == 0) return 0;
  return n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
}

const std::string kKibInput = kib_input();

BENCHMARK_CAPTURE(BM_OperationRoundTrip, echo_small, kSmallInput)->ComputeStatistics("p50", p50);
BENCHMARK_CAPTURE(BM_OperationRoundTrip, echo_1k, kKibInput)->ComputeStatistics("p50", p50);
BENCHMARK_CAPTURE(BM_OperationRoundTrip, echo_small, kSmallInput)
    ->Threads(2)
    ->UseRealTime()
    ->ComputeStatistics("p50", p50);
BENCHMARK_CAPTURE(BM_OperationLatency, echo_small, kSmallInput);
BENCHMARK_CAPTURE(BM_OperationLatency, echo_1k, kKibInput);
BENCHMARK_CAPTURE(BM_AbiDirect, echo_small, kSmallInput);
BENCHMARK_CAPTURE(BM_AbiDirect, echo_1k, kKibInput);
BENCHMARK_CAPTURE(BM_EchoJsonWork, echo_small, kSmallInput);
BENCHMARK_CAPTURE(BM_EchoJsonWork, echo_1k, kKibInput);
BENCHMARK_CAPTURE(BM_OutputCheck, echo_small, kSmallInput);
BENCHMARK_CAPTURE(BM_OutputCheck, echo_1k, kKibInput);
BENCHMARK(BM_PluginLoad)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->ComputeStatistics("p50", p50);
BENCHMARK(BM_PluginLoadOnly)->Unit(benchmark::kMillisecond)->UseRealTime();

bool set_up(Setup& setup) {
  std::string pattern = (fs::temp_directory_path() / "helm-plugin-bench-XXXXXX").string();
  if (mkdtemp(pattern.data()) == nullptr) {
    std::perror("mkdtemp");
    return false;
  }
  setup.staging_root = pattern;
  setup.options.staging_root = setup.staging_root;
  // The build signs example-echo with its development key; trust that key. Without the key
  // (HELM_DEV_SIGNING off) the plugin is unsigned and allow_unsigned lets it load. A signature
  // that is present is verified either way.
  std::error_code ec;
  if (fs::exists(HELM_BENCH_DEV_PUB, ec)) {
    auto key = helm::signing::PublicKey::load(HELM_BENCH_DEV_PUB);
    if (!key) {
      std::fprintf(stderr, "%s\n", key.error().message.c_str());
      return false;
    }
    setup.options.trusted_publisher_keys.push_back(key.value());
  }
  setup.options.allow_unsigned = true;

  auto loaded = helm::plugins::load_plugin(HELM_BENCH_ECHO_DIR, setup.options);
  if (!loaded) {
    std::fprintf(stderr, "loading %s: %s\n", HELM_BENCH_ECHO_DIR, loaded.error().message.c_str());
    return false;
  }
  setup.plugin = std::move(loaded).value();
  auto created = PluginInstance::create(setup.plugin, setup.host.api(), "{}");
  if (!created) {
    std::fprintf(stderr, "create: %s\n", created.error().message.c_str());
    return false;
  }
  setup.instance = std::move(created).value();
  if (auto started = setup.instance->start(); !started) {
    std::fprintf(stderr, "start: %s\n", started.error().message.c_str());
    return false;
  }
  // One checked call: the output must equal the input.
  CallResult seen{-1, {}};
  setup.instance->invoke(echo_request(kKibInput), [&](CallResult result) { seen = result; });
  if (seen.status != HELM_STATUS_OK ||
      nlohmann::json::parse(seen.output) != nlohmann::json::parse(kKibInput)) {
    std::fprintf(stderr, "echo check failed: status %d, output %s\n", seen.status,
                 seen.output.c_str());
    return false;
  }
  std::fprintf(stderr, "example-echo from %s, %s\n", HELM_BENCH_ECHO_DIR,
               setup.plugin->signer().describe().c_str());
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  auto setup = std::make_unique<Setup>();
  g_setup = setup.get();
  int rc = 1;
  if (set_up(*setup)) {
    benchmark::RunSpecifiedBenchmarks();
    rc = 0;
  }
  benchmark::Shutdown();
  if (setup->instance && !setup->instance->shutdown(kDrain)) rc = 1;
  setup->instance.reset();
  setup->plugin.reset();
  std::error_code ec;
  if (!setup->staging_root.empty()) fs::remove_all(setup->staging_root, ec);
  g_setup = nullptr;
  return rc;
}
