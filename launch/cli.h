// SPDX-License-Identifier: Apache-2.0
// The tidal command's flags, turned into plain option structs (the only place flags and
// environment variables are read), and the subcommands that run on them.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "model/attention_policy.h"
#include "runtime/engine/engine.h"
#include "runtime/engine/generate.h"
#include "runtime/status.h"

namespace tidal::launch {

// Where `tidal generate` finds a model when --model is absent.
struct DefaultModel {
  std::string dir;  // the repository's trained model, when present
};

struct GenerateOptions {
  std::string model_dir;  // empty: the embedded default
  std::string prompt;     // text (tokenized, BOS added)
  bool prompt_given = false;
  std::string prompt_file;
  std::string prompt_ids;  // "1,2,3": used as-is
  bool chat = false;       // wrap the prompt in the Llama-3 chat template
  bool print_ids = false;  // print generated ids on one line instead of text
  bool stats = false;      // print attention statistics to stderr
  // Attention policy flags, turned into a model::AttentionPolicy by build_policy().
  std::string attention = "full";  // full | tidal | quest
  int64_t budget = 256;            // tokens (tidal: per list; quest: per head)
  int64_t sparse_start = 2;
  std::string reselect_layers;  // "13", "13,20", "none"; empty: the depth's default
  std::string granularity = "per-query-head";
  int64_t correction_interval = 0;
  engine::SamplingParams sampling;
  engine::StopConditions stop;
  engine::EngineConfig engine;
};

struct InfoOptions {
  std::string model_dir;
  std::string preset;
  engine::EngineConfig engine;
};

struct TokenizeOptions {
  std::string model_dir;
  std::string tokenizer_file;
  std::string text;
  bool text_given = false;
  std::string file;
  bool no_bos = false;
  bool decode = false;  // the input is ids; print the text
};

// Registers the subcommands and their flags on `app`, writing into the option structs.
void add_generate_command(CLI::App& app, GenerateOptions* opts);
void add_info_command(CLI::App& app, InfoOptions* opts);
void add_tokenize_command(CLI::App& app, TokenizeOptions* opts);

Status run_generate(const GenerateOptions& opts, const DefaultModel& defaults);
Status run_info(const InfoOptions& opts);
Status run_tokenize(const TokenizeOptions& opts);

// "1,2,3" or "1 2 3" -> ids; errors name the bad item.
Status parse_id_list(const std::string& text, std::vector<int32_t>* ids);

// The attention policy the flags ask for (validated later against the model).
Status build_policy(const GenerateOptions& opts, model::AttentionPolicy* policy);

}  // namespace tidal::launch
