// SPDX-License-Identifier: Apache-2.0
// The subcommands: generate (stream a continuation), info (config and memory plan) and
// tokenize. Text goes to stdout; statistics and errors to stderr.
#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include "launch/cli.h"
#include "launch/flag_names.h"
#include "launch/policy_file.h"
#include "launch/presets.h"
#include "launch/progress.h"
#include "model/shard.h"
#include "model/tokenizer.h"
#include "runtime/arena.h"
#include "runtime/engine/request.h"
#include "runtime/file.h"
#include "runtime/size_math.h"
#include "runtime/thread_pool.h"

namespace tidal::launch {
namespace {

// The request's policy: the flags, then for tidal without --sparse-start / --reselect-layers the
// model's own layers from its tidal_policy.json (launch/policy_file.h), when it has one.
Status request_policy(const GenerateOptions& o, const std::string& dir,
                      const model::ModelConfig& cfg, model::AttentionPolicy* p,
                      ModelPolicy* file) {
  TIDAL_RETURN_IF_ERROR(build_policy(o, p));
  const auto& given = o.attention_flags_given;
  const bool layers_given =
      std::find(given.begin(), given.end(), "--sparse-start") != given.end() ||
      std::find(given.begin(), given.end(), "--reselect-layers") != given.end();
  *file = ModelPolicy();
  if (!dir.empty()) TIDAL_RETURN_IF_ERROR(load_model_policy(dir, file));  // empty: a --preset
  return apply_model_policy(*file, layers_given, cfg, p);
}

// The prompt as the flags give it: --prompt-ids, --chat (one user message), --prompt or
// --prompt-file; engine::build_prompt (the one request builder) then turns it into ids.
Status prompt_spec(const GenerateOptions& o, const model::Tokenizer* tok,
                   engine::PromptSpec* spec) {
  TIDAL_RETURN_IF_ERROR(check_prompt_flags(o));
  if (o.prompt_ids_given) {
    if (o.chat) return invalid_argument("--chat needs a text prompt, not --prompt-ids");
    spec->kind = engine::PromptSpec::Kind::kIds;
    TIDAL_RETURN_IF_ERROR(parse_id_list(o.prompt_ids, &spec->ids));
    if (spec->ids.empty()) return invalid_argument("--prompt-ids holds no ids");
    return ok_status();
  }
  std::string text = o.prompt;
  if (o.prompt_file_given) TIDAL_RETURN_IF_ERROR(read_file(o.prompt_file, &text));
  if (tok == nullptr && (!text.empty() || o.chat)) {
    return invalid_argument("the model has no tokenizer: use --prompt-ids and --print-ids");
  }
  if (o.chat) {
    spec->kind = engine::PromptSpec::Kind::kChat;
    spec->messages = {model::ChatMessage{"user", text}};
  } else {
    spec->kind = engine::PromptSpec::Kind::kText;
    spec->text = text;
  }
  return ok_status();
}

void print_stats(const engine::Engine& e, const engine::GenerationResult& r) {
  const engine::MemoryPlan& plan = e.memory_plan();
  const double n = double(r.tokens.size());
  std::fprintf(stderr,
               "tidal: prefill %lld tokens in %.1f ms (%.1f tok/s); generated %lld tokens in "
               "%.3f s (%.1f tok/s); finish: %s\n",
               static_cast<long long>(r.prompt_tokens), r.prefill_seconds * 1e3,
               r.prefill_seconds > 0 ? double(r.prompt_tokens) / r.prefill_seconds : 0.0,
               static_cast<long long>(r.tokens.size()), r.decode_seconds,
               r.decode_seconds > 0 ? (n - 1) / r.decode_seconds : 0.0,
               engine::finish_reason_name(r.finish));
  std::fprintf(stderr, "tidal: device %s, %s%s\n", plan.device_name.c_str(), dtype_name(plan.dtype),
               plan.device.kind == DeviceKind::kCuda
                   ? (e.config().cuda_graphs ? ", CUDA graphs" : ", eager launches")
                   : (", " + std::to_string(cpu_threads()) + " threads").c_str());
  // Rows cached (the last generated token is never fed back) of the rows the cache holds, and
  // their K/V bytes at kv_bytes_per_token each: both pairs have the same ratio.
  const int64_t per_token = plan.kv_bytes_per_token;
  std::fprintf(stderr, "tidal: KV cache: %lld of %lld tokens (%s of %s of K and V)\n",
               static_cast<long long>(r.cached_tokens),
               static_cast<long long>(plan.kv_capacity_tokens),
               human_bytes(size_t(r.cached_tokens * per_token)).c_str(),
               human_bytes(size_t(plan.kv_capacity_tokens * per_token)).c_str());
}

void print_attention_stats(const engine::Engine& e, const model::AttentionPolicy& p,
                           const model::AttentionStats& s) {
  const model::ModelConfig& c = e.model_config();
  std::string what = model::attention_kind_name(p.kind);
  if (p.kind == model::AttentionKind::kTidal) {
    std::string reselect;
    for (int64_t l : model::reselect_layers(p, c)) {
      reselect += (reselect.empty() ? "" : ",") + std::to_string(l);
    }
    what += " (budget " + std::to_string(p.tidal.budget) + ", " +
            model::granularity_name(p.tidal.granularity) + ", sparse_start " +
            std::to_string(p.tidal.sparse_start) + ", reselect " +
            (reselect.empty() ? "none" : reselect) + ")";
  } else if (p.kind == model::AttentionKind::kQuest) {
    what += " (budget " + std::to_string(p.quest.budget) + ", page " +
            std::to_string(p.quest.page_size) + ", dense_layers " +
            std::to_string(p.quest.dense_layers) + ")";
  }
  std::fprintf(stderr, "tidal: attention %s: %lld decode steps\n", what.c_str(),
               static_cast<long long>(s.decode_steps));
  int64_t total = 0;
  for (int role = 0; role < 4; ++role) {
    total += s.rows[role];
    if (s.layer_steps[role] == 0) continue;
    std::fprintf(stderr, "tidal:   %-6s %8lld layer-steps %12lld KV rows (%.1f per layer-step)\n",
                 model::layer_role_name(model::LayerRole(role)),
                 static_cast<long long>(s.layer_steps[role]), static_cast<long long>(s.rows[role]),
                 double(s.rows[role]) / double(s.layer_steps[role]));
  }
  if (s.quest_metadata_rows > 0) {
    std::fprintf(stderr, "tidal:   quest page bounds read: %lld rows\n",
                 static_cast<long long>(s.quest_metadata_rows));
  }
  std::fprintf(stderr, "tidal:   KV rows read in all: %lld\n", static_cast<long long>(total));
  if (s.overlap_total > 0) {
    std::fprintf(stderr, "tidal:   overlap of consecutive selection layers' lists: %.1f%%\n",
                 s.overlap_percent());
  }
  std::fprintf(stderr, "tidal:   cache correction: %lld passes, %lld tokens recomputed\n",
               static_cast<long long>(s.correction_passes),
               static_cast<long long>(s.correction_tokens));
}

void print_config(const model::ModelConfig& c) {
  std::string eos;
  for (int32_t id : c.eos_token_ids) eos += (eos.empty() ? "" : ",") + std::to_string(id);
  std::printf("model            %s\n", c.name.c_str());
  std::printf("layers           %lld\n", static_cast<long long>(c.num_layers));
  std::printf("hidden           %lld\n", static_cast<long long>(c.hidden));
  std::printf("inter            %lld\n", static_cast<long long>(c.inter));
  std::printf("heads            %lld query, %lld kv (group %lld), head_dim %lld\n",
              static_cast<long long>(c.num_heads), static_cast<long long>(c.num_kv_heads),
              static_cast<long long>(c.group_size()), static_cast<long long>(c.head_dim));
  std::printf("vocab            %lld\n", static_cast<long long>(c.vocab));
  std::printf("context          %lld tokens\n", static_cast<long long>(c.max_position_embeddings));
  std::printf("rope             theta %g%s\n", double(c.rope.theta),
              c.rope.type == model::RopeType::kLlama3 ? ", llama3 scaling" : "");
  std::printf("tied embeddings  %s\n", c.tie_word_embeddings ? "yes" : "no");
  std::printf("bos / eos        %d / %s\n", c.bos_token_id, eos.empty() ? "none" : eos.c_str());
  std::printf("parameters       %lld (%.2f B)\n", static_cast<long long>(c.num_params()),
              double(c.num_params()) / 1e9);
  std::printf("checkpoint dtype %s\n", dtype_name(c.dtype));
}

// Every figure in exact bytes, and each derived one with the arithmetic that gives it.
void print_plan(const model::ModelConfig& c, const engine::EngineConfig& config,
                const engine::MemoryPlan& p) {
  const std::string where =
      p.device.kind == DeviceKind::kCpu
          ? " (the reference path, " + std::to_string(cpu_threads()) + " threads)"
          : "";
  std::printf("memory plan      %s, %s%s%s; %s available\n", p.device_name.c_str(),
              dtype_name(p.dtype),
              p.kv_dtype == engine::KvDtype::kFp8 ? ", KV cache fp8 (e4m3, a scale per row)" : "",
              where.c_str(),
              p.available_bytes > 0 ? bytes_string(p.available_bytes).c_str() : "unknown");
  std::printf("  weights        %s\n", bytes_string(p.weight_bytes).c_str());
  const int64_t arena_pages = p.kv_pages + 1;  // + the padding page
  const size_t paged = size_t(arena_pages) * size_t(p.kv_bytes_per_page);
  const int64_t bounds = p.kv_bytes_per_page - config.page_size * p.kv_bytes_per_token;
  std::printf("  kv cache       %s = %lld pages x %lld bytes + %lld bytes of alignment%s\n",
              bytes_string(p.kv_bytes).c_str(), static_cast<long long>(arena_pages),
              static_cast<long long>(p.kv_bytes_per_page),
              static_cast<long long>(p.kv_bytes - std::min(p.kv_bytes, paged)),
              p.kv_capped ? " (capped to fit available memory)" : "");
  std::printf(
      "                 %lld tokens = %lld pages x %lld tokens, + 1 padding page; a page "
      "= %lld tokens x %lld bytes of K and V (%lld layers) + %lld bytes of Quest key "
      "bounds\n",
      static_cast<long long>(p.kv_capacity_tokens), static_cast<long long>(p.kv_pages),
      static_cast<long long>(config.page_size), static_cast<long long>(config.page_size),
      static_cast<long long>(p.kv_bytes_per_token), static_cast<long long>(c.num_layers),
      static_cast<long long>(bounds));
  std::printf("  workspace      %s\n", bytes_string(p.workspace_bytes).c_str());
  std::printf("  max context    %lld tokens per sequence, %lld sequences per step\n",
              static_cast<long long>(p.max_context), static_cast<long long>(config.max_batch));
  std::printf("  total          %s = weights + kv cache + workspace\n",
              bytes_string(p.total_bytes()).c_str());
}

// `tidal info --tp T --pp P`: the plan of every rank of the layout, each on a device like this
// process's, without starting the job. The job keeps the smallest rank's automatic KV capacity
// on every rank (Engine::create); it fits when every rank does (else the first rank that does
// not is the error).
Status print_layout_plans(const model::ModelConfig& c, const engine::EngineConfig& config,
                          const ParallelFlags& flags, size_t available) {
  const parallel::ParallelConfig layout{std::max(flags.tp, 1), std::max(flags.pp, 1)};
  TIDAL_RETURN_IF_ERROR(layout.validate().with_context("--tp/--pp"));
  if (config.max_context > c.max_position_embeddings) {
    return invalid_argument("--max-context " + std::to_string(config.max_context) +
                            " exceeds the model's context of " +
                            std::to_string(c.max_position_embeddings) + " tokens");
  }
  std::printf(
      "layout           tp %d x pp %d = %d ranks, each on a device like this one (%s, "
      "%s available), %s%s\n",
      layout.tp_size, layout.pp_size, layout.world_size(),
      config.device.kind == DeviceKind::kCpu ? "cpu" : "cuda",
      available > 0 ? human_bytes(available).c_str() : "unknown", dtype_name(config.dtype),
      config.kv_dtype == engine::KvDtype::kFp8 ? ", KV cache fp8" : "");
  int64_t capacity = INT64_MAX, max_context = 0;
  Status first_misfit = ok_status();
  for (int rank = 0; rank < layout.world_size(); ++rank) {
    model::ModelShard s;
    TIDAL_RETURN_IF_ERROR(model::make_model_shard(c, layout, parallel::coords_of(layout, rank), &s)
                              .with_context("--tp/--pp"));
    const engine::MemoryPlan p = engine::plan_memory(c, config, available, s);
    const Status fits = engine::plan_fits(c, config, p);
    std::string kv_heads = "[" + std::to_string(s.heads.kv_heads.begin) + ", " +
                           std::to_string(s.heads.kv_heads.end()) + ")";
    if (s.heads.kv_replicas > 1)
      kv_heads += " on " + std::to_string(s.heads.kv_replicas) + " ranks";
    std::printf(
        "  rank %-9d stage %d, layers [%lld, %lld), query heads [%lld, %lld), KV heads %s\n", rank,
        s.coords.pp_rank, static_cast<long long>(s.layer_begin),
        static_cast<long long>(s.layer_end), static_cast<long long>(s.heads.q_heads.begin),
        static_cast<long long>(s.heads.q_heads.end()), kv_heads.c_str());
    std::printf(
        "                 weights %s, kv cache %s (%lld tokens%s), workspace %s; total %s: "
        "%s\n",
        human_bytes(p.weight_bytes).c_str(), human_bytes(p.kv_bytes).c_str(),
        static_cast<long long>(p.kv_capacity_tokens), p.kv_capped ? ", capped" : "",
        human_bytes(p.workspace_bytes).c_str(), human_bytes(p.total_bytes()).c_str(),
        fits.ok() ? "fits" : "does not fit");
    capacity = std::min(capacity, p.kv_capacity_tokens);
    max_context = p.max_context;
    if (!fits.ok() && first_misfit.ok())
      first_misfit = fits.with_context("rank " + std::to_string(rank));
  }
  std::printf("  kv capacity    %lld tokens (the smallest rank's: every rank keeps as many)\n",
              static_cast<long long>(capacity));
  // An automatic capacity shrinks to fit memory; the layout must still hold one sequence of the
  // context asked. fp8 is advised only where it is not already the KV dtype.
  if (first_misfit.ok() && capacity < max_context) {
    const bool fp8 = config.kv_dtype == engine::KvDtype::kFp8;
    first_misfit = out_of_memory(
        "the layout's KV capacity, " + std::to_string(capacity) +
        " tokens (the smallest rank's), is below one sequence of " + std::to_string(max_context) +
        " tokens: more ranks" + (fp8 ? " or" : ", --kv-dtype fp8 or") + " a shorter --max-context");
  }
  std::printf("  fits           %s\n", first_misfit.ok() ? "yes" : "no");
  return first_misfit;
}

}  // namespace

Status model_dir_or_default(const std::string& model_dir, const DefaultModel& d, std::string* dir) {
  if (!model_dir.empty()) {
    *dir = model_dir;
    return ok_status();
  }
  if (d.dir.empty() || !std::filesystem::exists(d.dir + "/config.json")) {
    return not_found("no --model given and the embedded default model is missing (looked in '" +
                     d.dir + "'); pass --model DIR");
  }
  *dir = d.dir;
  std::fprintf(stderr, "tidal: no --model given; using the embedded model %s\n", dir->c_str());
  return ok_status();
}

Status check_generate_flags(const GenerateOptions& o) {
  if (o.weights_seed_given && o.preset.empty()) {
    return invalid_argument(
        "--weights-seed has no effect without --preset (a model's weights are its checkpoint's)");
  }
  TIDAL_RETURN_IF_ERROR(check_prompt_flags(o));
  TIDAL_RETURN_IF_ERROR(name_flags(o.sampling.validate()));
  return name_flags(o.stop.validate());
}

Status run_generate(const GenerateOptions& flags, const DefaultModel& defaults) {
  // One request: the engine's lists are sized for its --budget (EngineConfig::max_budget bounds
  // what a server's requests may ask: serve's --max-budget). Above the context the engine lowers
  // it.
  GenerateOptions o = flags;
  o.engine.max_budget = std::max(o.engine.max_budget, std::min(o.budget, engine::kMaxContext));
  if (o.parallel.requested()) return run_generate_parallel(o, defaults);
  TIDAL_RETURN_IF_ERROR(check_generate_flags(o));
  engine::EngineConfig config = o.engine;
  TIDAL_RETURN_IF_ERROR(apply_device_flags(o.device, &config));
  // Every flag value is checked before the checkpoint is read; errors name the flag.
  TIDAL_RETURN_IF_ERROR(name_flags(config.validate()));
  if (!o.preset.empty()) {  // random weights, no directory: no tokenizer, no policy file
    std::unique_ptr<engine::Engine> engine;
    TIDAL_RETURN_IF_ERROR(create_preset_engine(o.preset, o.weights_seed, config, &engine));
    return generate_with(o, "", *engine);
  }
  std::string dir;
  TIDAL_RETURN_IF_ERROR(model_dir_or_default(o.model_dir, defaults, &dir));
  engine::GenerationRequest req;
  model::ModelConfig cfg;
  TIDAL_RETURN_IF_ERROR(model::load_model_config(dir, &cfg));
  ModelPolicy file;
  TIDAL_RETURN_IF_ERROR(request_policy(o, dir, cfg, &req.attention, &file));
  TIDAL_RETURN_IF_ERROR(name_flags(req.attention.validate(cfg, config.page_size)));
  TIDAL_RETURN_IF_ERROR(name_flags(engine::check_fits(cfg, config)).with_context(dir));

  std::unique_ptr<engine::Engine> engine;
  TIDAL_RETURN_IF_ERROR(engine::Engine::load(dir, config, &engine));
  return generate_with(o, dir, *engine);
}

// Streams the generation of one request on a loaded engine (one rank, or rank 0 of an mpirun
// job: launch/parallel_run.cc).
Status generate_with(const GenerateOptions& o, const std::string& dir, engine::Engine& e) {
  engine::Engine* engine = &e;
  const model::ModelConfig& cfg = engine->model_config();
  engine::GenerationRequest req;
  ModelPolicy file;
  TIDAL_RETURN_IF_ERROR(request_policy(o, dir, cfg, &req.attention, &file));
  std::unique_ptr<model::Tokenizer> tok;
  if (!dir.empty()) {  // empty: a --preset, which has none
    const Status tst = model::Tokenizer::load_from_dir(dir, &tok);
    if (!tst.ok() && tst.code() != StatusCode::kNotFound) return tst;
  }
  if (!o.print_ids && !tok) {
    return invalid_argument(dir.empty() ? "--preset " + o.preset +
                                              " has no tokenizer: use --prompt-ids and --print-ids"
                                        : "model directory '" + dir +
                                              "' has no tokenizer: use --print-ids");
  }
  engine::PromptSpec spec;
  TIDAL_RETURN_IF_ERROR(prompt_spec(o, tok.get(), &spec));
  TIDAL_RETURN_IF_ERROR(engine::build_prompt(spec, tok.get(), cfg, &req.prompt, &req.stop.eos_ids));
  const std::vector<int32_t> eos_ids = req.stop.eos_ids;
  req.sampling = o.sampling;
  req.stop = o.stop;
  req.stop.eos_ids = eos_ids;

  // Long prefills show progress on stderr; so does a long --print-ids run (no text streams).
  Progress prefill("prefill", "tokens");
  engine->set_progress([&](int64_t done, int64_t total) {
    if (done == 0) prefill.start(total);
    prefill.update(done);
    if (done == total) prefill.finish();
  });
  Progress decoding("generate", "tokens");
  int64_t generated = 0;
  std::string write_error;  // set when stdout fails: the run stops and exits 1
  std::vector<engine::GenerationResult> results;
  // The engine checks the request against its own limits (context, budget, correction interval):
  // its errors name the flags.
  TIDAL_RETURN_IF_ERROR(name_flags(engine::generate(
      *engine, {req}, tok.get(),
      [&](const engine::GenerationEvent& ev) {
        if (o.print_ids) {
          if (generated == 0) decoding.start(o.stop.max_new_tokens);  // after the prefill
          if (!ev.finished) decoding.update(++generated);
          return true;
        }
        if (!ev.text.empty() &&
            (std::fwrite(ev.text.data(), 1, ev.text.size(), stdout) != ev.text.size() ||
             std::fflush(stdout) != 0)) {
          write_error = std::strerror(errno);
          return false;  // cancels the request
        }
        return true;
      },
      &results)));
  decoding.finish();
  if (!write_error.empty()) return unavailable("cannot write to stdout: " + write_error);
  const engine::GenerationResult& r = results[0];
  if (o.print_ids) {
    for (size_t i = 0; i < r.tokens.size(); ++i) std::printf(i ? " %d" : "%d", r.tokens[i]);
  }
  std::printf("\n");
  if (std::fflush(stdout) != 0) {
    return unavailable(std::string("cannot write to stdout: ") + std::strerror(errno));
  }
  print_stats(*engine, r);
  if (o.stats) print_attention_stats(*engine, req.attention, r.stats);
  if (o.stats && file.found() && req.attention.kind == model::AttentionKind::kTidal &&
      req.attention.tidal.reselect_layers == file.reselect_layers &&
      req.attention.tidal.sparse_start == file.sparse_start) {
    std::fprintf(stderr, "tidal:   selection layers from %s%s%s\n", file.path.c_str(),
                 file.summary.empty() ? "" : ": ", file.summary.c_str());
  }
  return ok_status();
}

Status run_info(const InfoOptions& o) {
  if (o.model_dir.empty() == o.preset.empty()) {
    return invalid_argument("give one of --model DIR or --preset NAME");
  }
  model::ModelConfig c;
  if (!o.preset.empty()) {
    TIDAL_RETURN_IF_ERROR(launch_preset(o.preset, &c));
  } else {
    TIDAL_RETURN_IF_ERROR(model::load_model_config(o.model_dir, &c));
  }
  engine::EngineConfig config = o.engine;
  TIDAL_RETURN_IF_ERROR(check_max_budget_flag(config));
  TIDAL_RETURN_IF_ERROR(apply_device_flags(o.device, &config));
  TIDAL_RETURN_IF_ERROR(name_flags(config.validate()));
  // A preset is a shape, not a trained checkpoint: it takes the context asked (positions past
  // its trained one only extrapolate RoPE), as `tidal bench` does.
  if (!o.preset.empty()) {
    c.max_position_embeddings = std::max(c.max_position_embeddings, config.max_context);
  }
  if (o.parallel.tp < 0 || o.parallel.pp < 0) {
    return invalid_argument("--tp and --pp must be >= 1 (got tp " + std::to_string(o.parallel.tp) +
                            ", pp " + std::to_string(o.parallel.pp) + ")");
  }
  // --memory-gib: the memory of a device this machine may not have (planned with this one's code
  // paths: on the CPU, plan a GPU's dtype with --dtype bf16).
  const size_t available = o.memory_gib > 0 ? size_t(o.memory_gib * double(size_t(1) << 30))
                                            : engine::available_memory(config.device);
  if (o.parallel.requested()) {
    print_config(c);
    return name_flags(print_layout_plans(c, config, o.parallel, available)).with_context(c.name);
  }
  const engine::MemoryPlan p = engine::plan_memory(c, config, available);
  print_config(c);
  print_plan(c, config, p);
  const Status fits = engine::check_fits(c, config, available);
  std::printf("  fits           %s\n", fits.ok() ? "yes" : "no");
  return name_flags(fits).with_context(c.name);
}

Status run_tokenize(const TokenizeOptions& o) {
  if (o.model_dir.empty() && o.tokenizer_file.empty()) {
    return invalid_argument("give --model DIR or --tokenizer FILE");
  }
  if (!o.text_given && o.file.empty()) return invalid_argument("give --text or --file");
  if (o.decode && o.no_bos) {
    return invalid_argument("--no-bos has no effect with --decode (the ids given are decoded)");
  }
  std::unique_ptr<model::Tokenizer> tok;
  if (!o.tokenizer_file.empty()) {
    TIDAL_RETURN_IF_ERROR(model::Tokenizer::load(o.tokenizer_file, &tok));
  } else {
    TIDAL_RETURN_IF_ERROR(model::Tokenizer::load_from_dir(o.model_dir, &tok));
  }
  std::string text = o.text;
  if (!o.file.empty()) TIDAL_RETURN_IF_ERROR(read_file(o.file, &text));
  if (o.decode) {
    std::vector<int32_t> ids;
    TIDAL_RETURN_IF_ERROR(parse_id_list(text, &ids));
    std::string out;
    TIDAL_RETURN_IF_ERROR(tok->decode(ids, /*skip_special=*/false, &out));
    std::printf("%s\n", out.c_str());
    return ok_status();
  }
  std::vector<int32_t> ids;
  TIDAL_RETURN_IF_ERROR(tok->encode(text, !o.no_bos, &ids));
  for (size_t i = 0; i < ids.size(); ++i) std::printf(i ? " %d" : "%d", ids[i]);
  std::printf("\n");
  return ok_status();
}

}  // namespace tidal::launch
