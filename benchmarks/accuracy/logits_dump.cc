// SPDX-License-Identifier: Apache-2.0
// logits_dump: Tidal's greedy continuation of a prompt and the logits behind every token, for
// comparing with another implementation (benchmarks/accuracy/parity_transformers.py compares them
// with transformers' LlamaForCausalLM). Writes <out>.npy, f32 [steps, vocab]: row 0 the logits
// after the prompt (prefill), row i those after feeding greedy token i-1 (a decode step); and
// <out>.json: the prompt, the greedy tokens, the device and dtype.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "runtime/device.h"
#include "runtime/engine/engine.h"
#include "runtime/file.h"

namespace tidal::bench {
namespace {

// A NumPy .npy file (format 1.0): little-endian f32, C order.
Status write_npy(const std::string& path, const std::vector<float>& data, int64_t rows,
                 int64_t cols) {
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" +
                       std::to_string(rows) + ", " + std::to_string(cols) + "), }";
  const size_t unpadded = 10 + header.size() + 1;
  header += std::string((64 - unpadded % 64) % 64, ' ') + "\n";
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  const uint16_t len = uint16_t(header.size());
  f.write("\x93NUMPY\x01\x00", 8);
  f.put(char(len & 0xff));
  f.put(char(len >> 8));
  f << header;
  f.write(reinterpret_cast<const char*>(data.data()), std::streamsize(data.size() * 4));
  if (!f.flush()) return unavailable(path + ": cannot write");
  return ok_status();
}

Status run(const std::string& model_dir, const std::vector<int32_t>& prompt, int64_t steps,
           const engine::EngineConfig& config, const std::string& out) {
  std::unique_ptr<engine::Engine> e;
  TIDAL_RETURN_IF_ERROR(engine::Engine::load(model_dir, config, &e));
  const int64_t vocab = e->model_config().vocab;
  std::vector<float> logits(size_t(steps * vocab));
  std::vector<int32_t> tokens;
  engine::SeqId id = 0;
  TIDAL_RETURN_IF_ERROR(e->add_sequence(prompt, &id));
  TIDAL_RETURN_IF_ERROR(e->prefill(id, make_view(logits.data(), DType::kF32, {vocab})));
  for (int64_t i = 0;; ++i) {
    const float* row = logits.data() + i * vocab;
    tokens.push_back(int32_t(std::max_element(row, row + vocab) - row));
    if (i + 1 == steps) break;
    TIDAL_RETURN_IF_ERROR(e->decode({id}, {tokens.back()},
                                    make_view(logits.data() + (i + 1) * vocab, DType::kF32,
                                              {1, vocab})));
  }
  TIDAL_RETURN_IF_ERROR(write_npy(out + ".npy", logits, steps, vocab));
  const nlohmann::json j = {{"model", model_dir},
                            {"prompt", prompt},
                            {"tokens", tokens},
                            {"device", e->memory_plan().device_name},
                            {"dtype", dtype_name(config.dtype)}};
  std::ofstream f(out + ".json", std::ios::trunc);
  f << j.dump() << "\n";
  if (!f.flush()) return unavailable(out + ".json: cannot write");
  return ok_status();
}

}  // namespace
}  // namespace tidal::bench

int main(int argc, char** argv) {
  using namespace tidal;
  std::string model_dir, ids_file, out, device = "cpu", dtype = "f32";
  int64_t steps = 32;
  CLI::App app{"logits_dump: greedy tokens and their logits, for parity checks"};
  app.add_option("--model", model_dir, "Hugging Face model directory")->required();
  app.add_option("--prompt-ids-file", ids_file, "prompt token ids (spaces or commas)")
      ->required();
  app.add_option("--steps", steps, "greedy tokens (logit rows)")->capture_default_str();
  app.add_option("--device", device, "cpu or cuda")->capture_default_str();
  app.add_option("--dtype", dtype, "f32, f16 or bf16")->capture_default_str();
  app.add_option("--out", out, "output prefix: <out>.npy and <out>.json")->required();
  CLI11_PARSE(app, argc, argv);

  std::string text;
  Status st = read_file(ids_file, &text);
  std::vector<int32_t> prompt;
  for (char& c : text) c = c == ',' ? ' ' : c;
  std::istringstream in(text);
  for (long long v; in >> v;) prompt.push_back(int32_t(v));
  engine::EngineConfig config;
  config.max_batch = 1;
  config.max_context = int64_t(prompt.size()) + steps + 1;
  config.prefill_chunk = 2048;
  config.device = device == "cuda" ? Device{DeviceKind::kCuda, 0} : Device{};
  config.dtype = dtype == "bf16" ? DType::kBF16 : dtype == "f16" ? DType::kF16 : DType::kF32;
  if (st.ok() && (prompt.empty() || steps < 1)) {
    st = invalid_argument("a prompt of at least one id and --steps >= 1 are needed");
  }
  if (st.ok()) st = bench::run(model_dir, prompt, steps, config, out);
  if (!st.ok()) {
    std::fprintf(stderr, "logits_dump: %s\n", st.message().c_str());
    return 1;
  }
  return 0;
}
