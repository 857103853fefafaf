// SPDX-License-Identifier: Apache-2.0
// Flag definitions. Defaults live in the option structs; each flag's help names its unit.
#include "launch/cli.h"

#include <sstream>

namespace tidal::launch {
namespace {

void add_engine_flags(CLI::App* cmd, engine::EngineConfig* e) {
  cmd->add_option("--page-size", e->page_size, "KV cache page size, tokens")->capture_default_str();
  cmd->add_option("--max-context", e->max_context,
                  "tokens per sequence (prompt + generated); 0: the model's context");
  cmd->add_option("--kv-capacity", e->kv_capacity,
                  "KV cache capacity in tokens over all sequences; 0: max-batch x max-context");
  cmd->add_option("--max-batch", e->max_batch, "sequences decoded together")->capture_default_str();
  cmd->add_option("--prefill-chunk", e->prefill_chunk, "prompt tokens per prefill step")
      ->capture_default_str();
}

}  // namespace

void add_generate_command(CLI::App& app, GenerateOptions* o) {
  CLI::App* cmd = app.add_subcommand("generate", "stream a continuation of a prompt");
  cmd->add_option("--model", o->model_dir,
                  "Hugging Face model directory; default: the embedded model");
  cmd->add_option_function<std::string>(
      "--prompt",
      [o](const std::string& p) {
        o->prompt = p;
        o->prompt_given = true;
      },
      "prompt text (empty: BOS only)");
  cmd->add_option("--prompt-file", o->prompt_file, "read the prompt text from a file");
  cmd->add_option("--prompt-ids", o->prompt_ids, "prompt token ids, e.g. 1,2,3 (used as-is)");
  cmd->add_flag("--chat", o->chat, "wrap the prompt in the Llama-3 instruct chat template");
  cmd->add_flag("--print-ids", o->print_ids, "print the generated ids on one line, not text");
  cmd->add_option("--max-new-tokens", o->stop.max_new_tokens, "tokens to generate at most")
      ->capture_default_str();
  cmd->add_flag("--ignore-eos", o->stop.ignore_eos, "keep generating past end-of-sequence");
  cmd->add_option("--stop", o->stop.stop_strings, "stop when this text appears (repeatable)");
  o->sampling.temperature = 0.8f;
  cmd->add_option("--temperature", o->sampling.temperature, "0: greedy")->capture_default_str();
  cmd->add_option("--top-p", o->sampling.top_p, "nucleus mass in (0, 1]")->capture_default_str();
  cmd->add_option("--top-k", o->sampling.top_k, "0: off")->capture_default_str();
  cmd->add_option("--min-p", o->sampling.min_p, "0: off")->capture_default_str();
  cmd->add_option("--seed", o->sampling.seed, "sampling seed")->capture_default_str();
  cmd->add_option("--attention", o->attention, "full, tidal or quest")->capture_default_str();
  cmd->add_option("--budget", o->budget,
                  "sparse budget K in tokens, the current token included (tidal: per list, "
                  "quest: per head)")
      ->capture_default_str();
  cmd->add_option("--sparse-start", o->sparse_start,
                  "tidal: first selection layer; the layers below are dense")
      ->capture_default_str();
  cmd->add_option("--reselect-layers", o->reselect_layers,
                  "tidal: re-selection layers, e.g. 13 or 13,20, or none; default: the layer "
                  "at 13/32 of the depth");
  cmd->add_option("--granularity", o->granularity,
                  "tidal: per-query-head, per-kv-head or shared lists")
      ->capture_default_str();
  cmd->add_option("--correction-interval", o->correction_interval,
                  "every N decode steps recompute the last N tokens densely; 0: off")
      ->capture_default_str();
  cmd->add_flag("--stats", o->stats, "print attention statistics to stderr");
  add_engine_flags(cmd, &o->engine);
  o->engine.max_batch = 1;
}

void add_info_command(CLI::App& app, InfoOptions* o) {
  CLI::App* cmd = app.add_subcommand("info", "print a model's config, size and memory plan");
  auto* model = cmd->add_option("--model", o->model_dir, "Hugging Face model directory");
  auto* preset =
      cmd->add_option("--preset", o->preset, "llama2-7b, llama3-8b, llama3.1-8b or llama-64l");
  model->excludes(preset);
  cmd->require_option(1);
  add_engine_flags(cmd, &o->engine);
  o->engine.max_batch = 1;
}

void add_tokenize_command(CLI::App& app, TokenizeOptions* o) {
  CLI::App* cmd = app.add_subcommand("tokenize", "print the token ids of a text (or --decode)");
  auto* model = cmd->add_option("--model", o->model_dir, "model directory holding a tokenizer");
  auto* file =
      cmd->add_option("--tokenizer", o->tokenizer_file, "tokenizer.json or tokenizer.model");
  model->excludes(file);
  auto* text = cmd->add_option_function<std::string>(
      "--text",
      [o](const std::string& t) {
        o->text = t;
        o->text_given = true;
      },
      "the text (with --decode: ids)");
  auto* in = cmd->add_option("--file", o->file, "read the text from a file");
  text->excludes(in);
  cmd->add_flag("--no-bos", o->no_bos, "do not prepend the BOS token");
  cmd->add_flag("--decode", o->decode, "turn ids back into text");
}

Status parse_id_list(const std::string& text, std::vector<int32_t>* ids) {
  std::string normalized = text;
  for (char& c : normalized) {
    if (c == ',' || c == '\n' || c == '\t') c = ' ';
  }
  std::istringstream in(normalized);
  std::string item;
  while (in >> item) {
    size_t used = 0;
    long long v = 0;
    bool ok = !item.empty() && item.find_first_not_of("0123456789") == std::string::npos &&
              item.size() <= 10;
    if (ok) {
      v = std::stoll(item, &used);
      ok = used == item.size() && v <= INT32_MAX;
    }
    if (!ok) return invalid_argument("'" + item + "' is not a token id (a non-negative integer)");
    ids->push_back(int32_t(v));
  }
  return ok_status();
}

}  // namespace tidal::launch

namespace tidal::launch {

Status build_policy(const GenerateOptions& o, model::AttentionPolicy* p) {
  TIDAL_RETURN_IF_ERROR(model::parse_attention_kind(o.attention, &p->kind));
  TIDAL_RETURN_IF_ERROR(model::parse_granularity(o.granularity, &p->tidal.granularity));
  p->tidal.budget = o.budget;
  p->tidal.sparse_start = o.sparse_start;
  p->quest.budget = o.budget;
  p->quest.page_size = o.engine.page_size;
  p->correction_interval = o.correction_interval;
  if (o.reselect_layers == "none") {
    p->tidal.reselect_layers = std::vector<int64_t>();
  } else if (!o.reselect_layers.empty()) {
    std::vector<int32_t> layers;
    TIDAL_RETURN_IF_ERROR(
        parse_id_list(o.reselect_layers, &layers).with_context("--reselect-layers"));
    p->tidal.reselect_layers = std::vector<int64_t>(layers.begin(), layers.end());
  }
  return ok_status();
}

}  // namespace tidal::launch
