// SPDX-License-Identifier: Apache-2.0
// Flags of tidal niah / ppl / calibrate, and the policy variants a sweep compares.
#include <algorithm>
#include <filesystem>
#include <map>
#include <sstream>

#include "launch/accuracy.h"
#include "launch/policy_file.h"
#include "runtime/thread_pool.h"

namespace tidal::launch {
namespace {

// `needles`: the command makes needle cases (niah, calibrate; ppl has no use for a seed).
void add_common_flags(CLI::App* cmd, AccuracyCommon* c, bool png, bool needles) {
  cmd->add_option("--model", c->model_dir,
                  "Hugging Face model directory; default: the embedded model");
  cmd->add_option("--max-batch", c->max_batch,
                  needles ? "sequences decoded together (one holds the case's prefilled prompt)"
                          : "sequences decoded together (one per policy)")
      ->capture_default_str();
  cmd->add_option("--prefill-chunk", c->prefill_chunk, "prompt tokens per prefill step")
      ->capture_default_str();
  if (needles) {
    cmd->add_option("--seed", c->seed, "needle cases (cities, numbers, haystack offsets)")
        ->check(seed_validator())
        ->capture_default_str();
  }
  cmd->add_option("--json", c->json_path, "write every result as JSON here (kept up to date)");
  cmd->add_option("--resume", c->resume_path,
                  "the JSON of an interrupted run: keep its results, run the rest (and write "
                  "there unless --json is given)");
  if (png) cmd->add_option("--png-dir", c->png_dir, "write the PNG pictures into this folder");
  c->device.threads = default_cpu_threads();
  cmd->add_option("--device", c->device.device, "auto, cpu, cuda or cuda:N")->capture_default_str();
  cmd->add_option("--dtype", c->device.dtype, "auto (bf16 on a GPU, f32 on the CPU), f32, f16, bf16")
      ->capture_default_str();
  cmd->add_option("--kv-dtype", c->device.kv_dtype,
                  "KV cache: auto (the activations' dtype), f32, f16, bf16 or fp8")
      ->capture_default_str();
  cmd->add_flag("--eager", c->device.eager, "GPU: no CUDA graph replay");
  cmd->add_option("--threads", c->device.threads, "CPU path threads")->capture_default_str();
}

const char* const kVariantFlags[] = {"--budget", "--granularity", "--layers",
                                     "--correction-interval", "--policy-file"};

void add_variant_flags(CLI::App* cmd, VariantFlags* v) {
  cmd->add_option("--policy", v->policies, "full, tidal, quest")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--budget", v->budgets, "sparse budgets K, e.g. 16,64,256 (tidal, quest)")
      ->capture_default_str();
  cmd->add_option("--granularity", v->granularities, "tidal: per-query-head, per-kv-head, shared")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--layers", v->layers,
                  "tidal's selection layers: model (tidal_policy.json, else default), default "
                  "(layer 2, re-selection at 13/32 of the depth), calibrated (the file), S:R, "
                  "S:R1+R2, S:- (none)")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--correction-interval", v->corrections,
                  "cache correction every N decode steps, e.g. 0,64,256 (0: off)")
      ->capture_default_str();
  cmd->add_option("--policy-file", v->policy_file,
                  "the tidal_policy.json 'model' and 'calibrated' read; default: the model's");
}

// After parsing (the command's final callback).
void note_variant_flags(const CLI::App* cmd, VariantFlags* v) {
  for (const char* flag : kVariantFlags) {
    if (cmd->count(flag) > 0) v->flags_given.push_back(flag);
  }
}

// "S", "S:R", "S:R1+R2", "S:-" (or "S:none").
Status parse_layers(const std::string& spec, int64_t* start,
                    std::optional<std::vector<int64_t>>* reselect) {
  auto number = [&](const std::string& s, int64_t* v) {
    if (s.empty() || s.size() > 6 || s.find_first_not_of("0123456789") != std::string::npos) {
      return false;
    }
    *v = std::stoll(s);
    return true;
  };
  const size_t colon = spec.find(':');
  if (!number(spec.substr(0, colon), start)) {
    return invalid_argument("--layers: '" + spec + "' is not S, S:R, S:R1+R2 or S:-");
  }
  reselect->reset();
  if (colon == std::string::npos) return ok_status();
  const std::string rest = spec.substr(colon + 1);
  *reselect = std::vector<int64_t>();
  if (rest == "-" || rest == "none") return ok_status();
  std::stringstream in(rest);
  std::string item;
  while (std::getline(in, item, '+')) {
    int64_t r = 0;
    if (!number(item, &r)) {
      return invalid_argument("--layers: '" + spec + "' is not S, S:R, S:R1+R2 or S:-");
    }
    (*reselect)->push_back(r);
  }
  return ok_status();
}

std::string budget_tag(int64_t k) { return "K=" + std::to_string(k); }

}  // namespace

void add_niah_command(CLI::App& app, NiahOptions* o) {
  CLI::App* cmd = app.add_subcommand(
      "niah", "needle-in-a-haystack retrieval over lengths x depths for each attention policy");
  add_common_flags(cmd, &o->common, /*png=*/true, /*needles=*/true);
  add_variant_flags(cmd, &o->variants);
  cmd->add_option("--lengths", o->lengths, "context lengths, e.g. 1K,4K,16K (K = 1024)")
      ->capture_default_str();
  cmd->add_option("--depths", o->depths, "needle depths in percent")->capture_default_str();
  cmd->add_option("--needles", o->needles, "seeded needles per (length, depth) cell (1 to 1000)")
      ->capture_default_str();
  cmd->add_option("--gen-tokens", o->gen_tokens, "greedy tokens of the answer")
      ->capture_default_str();
  cmd->add_option("--haystack", o->haystack,
                  "the haystack text; default: ../shared/text/austen/persuasion.txt");
  cmd->add_flag("--sparse-question", o->sparse_question,
                "decode the question token by token under the policy (Quest's protocol) instead "
                "of prefilling it densely (TidalDecode's)");
  cmd->add_option("--min-accuracy", o->min_accuracy,
                  "fail when a policy retrieves less than this percent (0 to 100) at some length "
                  "(for CI)");
  cmd->final_callback([cmd, o] {
    note_variant_flags(cmd, &o->variants);
    o->min_accuracy_given = cmd->count("--min-accuracy") > 0;
  });
}

void add_ppl_command(CLI::App& app, PplOptions* o) {
  CLI::App* cmd = app.add_subcommand(
      "ppl", "streaming perplexity (every token a decode step) for each attention policy");
  add_common_flags(cmd, &o->common, /*png=*/true, /*needles=*/false);
  add_variant_flags(cmd, &o->variants);
  cmd->add_option("--text", o->text, "the text; default: ../shared/text/austen/persuasion.txt");
  cmd->add_option("--tokens", o->tokens,
                  "text tokens scored, each predicted from BOS and the tokens before it (the "
                  "context needed)")
      ->capture_default_str();
  cmd->add_option("--offset", o->offset, "the text token to start from")->capture_default_str();
  cmd->add_option("--window", o->window,
                  "tokens per point of the curves (one PNG per budget); "
                  "0: tokens / 32, at least 16 (at most tokens)")
      ->capture_default_str();
  cmd->final_callback([cmd, o] { note_variant_flags(cmd, &o->variants); });
}

void add_calibrate_command(CLI::App& app, CalibrateOptions* o) {
  CLI::App* cmd = app.add_subcommand(
      "calibrate",
      "choose a model's tidal selection layers by measurement; writes tidal_policy.json");
  add_common_flags(cmd, &o->common, /*png=*/false, /*needles=*/true);
  cmd->add_option("--budget", o->budget, "the budget K the candidates run at")
      ->capture_default_str();
  cmd->add_option("--granularity", o->granularity, "per-query-head, per-kv-head or shared")
      ->capture_default_str();
  cmd->add_option("--lengths", o->lengths, "needle cases' lengths (K = 1024)")
      ->capture_default_str();
  cmd->add_option("--depths", o->depths, "needle depths in percent")->capture_default_str();
  cmd->add_option("--needles", o->needles, "seeded needles per (length, depth) (1 to 1000)")
      ->capture_default_str();
  cmd->add_option("--gen-tokens", o->gen_tokens, "greedy tokens of each answer")
      ->capture_default_str();
  cmd->add_flag("--sparse-question", o->sparse_question, "decode the questions sparsely");
  cmd->add_option("--haystack", o->haystack, "the haystack text (as tidal niah's)");
  cmd->add_option("--ppl-tokens", o->ppl_tokens,
                  "text tokens the perplexity stream scores, as tidal ppl's --tokens; 0: none")
      ->capture_default_str();
  cmd->add_option("--ppl-text", o->ppl_text, "the perplexity text; default: the haystack");
  cmd->add_option("--first-layers", o->first_layers,
                  "candidate first selection layers, e.g. 1-8 or 2,3,5; default: 1 to L-2");
  cmd->add_option("--max-reselect", o->max_reselect,
                  "re-selection layers per candidate (0, 1 or 2)")
      ->capture_default_str();
  cmd->add_option("--miss-tolerance", o->miss_tolerance,
                  "needle cases a candidate may miss beyond full's and still match it")
      ->capture_default_str();
  cmd->add_option("--ppl-tolerance", o->ppl_tolerance,
                  "perplexity a candidate may add (relative to full's) and still match it")
      ->capture_default_str();
  cmd->add_option("--out", o->out, "the policy file; default: <model>/tidal_policy.json");
  cmd->add_flag("--dry-run", o->dry_run, "print the choice; write no policy file");
  cmd->final_callback([cmd, o] {
    for (const char* flag : {"--ppl-text", "--ppl-tolerance"}) {
      if (cmd->count(flag) > 0) o->ppl_flags_given.push_back(flag);
    }
  });
}

Status parse_length_list(const std::string& text, const char* flag, std::vector<int64_t>* out) {
  std::string normalized = text;
  for (char& c : normalized) c = c == ',' ? ' ' : c;
  std::istringstream in(normalized);
  std::string item;
  std::map<int64_t, std::string> seen;
  while (in >> item) {
    int64_t scale = 1;
    std::string digits = item;
    if (!digits.empty() && (digits.back() == 'K' || digits.back() == 'k')) {
      scale = 1024;
      digits.pop_back();
    }
    if (digits.empty() || digits.size() > 7 ||
        digits.find_first_not_of("0123456789") != std::string::npos || std::stoll(digits) < 1) {
      return invalid_argument(std::string(flag) + ": '" + item +
                              "' is not a length (e.g. 4096 or 4K = 4096)");
    }
    out->push_back(std::stoll(digits) * scale);
    TIDAL_RETURN_IF_ERROR(note_once(out->back(), item, flag, &seen));
  }
  if (out->empty()) return invalid_argument(std::string(flag) + " lists no value");
  return ok_status();
}

Status check_needles(int64_t needles) {
  if (needles >= 1 && needles <= kMaxNeedles) return ok_status();
  return invalid_argument("--needles must be in [1, " + std::to_string(kMaxNeedles) + "], got " +
                          std::to_string(needles));
}

Status check_needle_batch(int64_t max_batch) {
  if (max_batch >= 2) return ok_status();
  return invalid_argument(
      "--max-batch must be >= 2 (a needle case's prompt and a policy's answer), got " +
      std::to_string(max_batch));
}

Status parse_int_list(const std::string& text, const char* flag, std::vector<int64_t>* out) {
  std::string normalized = text;
  for (char& c : normalized) c = c == ',' ? ' ' : c;
  std::istringstream in(normalized);
  std::string item;
  auto number = [](const std::string& s, int64_t* v) {
    if (s.empty() || s.size() > 9 || s.find_first_not_of("0123456789") != std::string::npos) {
      return false;
    }
    *v = std::stoll(s);
    return true;
  };
  std::map<int64_t, std::string> seen;
  while (in >> item) {
    const size_t dash = item.find('-');
    int64_t a = 0, b = 0;
    const bool ok = dash == std::string::npos
                        ? number(item, &a) && (b = a, true)
                        : number(item.substr(0, dash), &a) && number(item.substr(dash + 1), &b);
    if (!ok || b < a || b - a > 100000) {
      return invalid_argument(std::string(flag) + ": '" + item + "' is not N or N-M");
    }
    for (int64_t v = a; v <= b; ++v) {
      out->push_back(v);
      TIDAL_RETURN_IF_ERROR(note_once(v, item, flag, &seen));
    }
  }
  if (out->empty()) return invalid_argument(std::string(flag) + " lists no value");
  return ok_status();
}

Status parse_depth_list(const std::string& text, std::vector<int64_t>* out) {
  TIDAL_RETURN_IF_ERROR(parse_int_list(text, "--depths", out));
  for (int64_t d : *out) {
    if (d > 100) return invalid_argument("--depths: " + std::to_string(d) + " is above 100");
  }
  return ok_status();
}

Status build_variants(const VariantFlags& f, const model::ModelConfig& config,
                      const std::string& model_dir, int64_t page_size,
                      std::vector<Variant>* out) {
  // Flags no listed policy reads would silently do nothing (`generate` refuses them likewise).
  bool tidal = false, sparse = false;
  std::string listed;
  for (const std::string& name : f.policies) {
    model::AttentionKind kind;
    TIDAL_RETURN_IF_ERROR(model::parse_attention_kind(name, &kind).with_context("--policy"));
    tidal = tidal || kind == model::AttentionKind::kTidal;
    sparse = sparse || kind != model::AttentionKind::kFull;
    listed += (listed.empty() ? "" : ",") + name;
  }
  for (const std::string& flag : f.flags_given) {
    const bool tidal_only = flag != "--budget" && flag != "--correction-interval";
    if (!(tidal_only ? tidal : sparse)) {
      return invalid_argument(flag + " has no effect with --policy " + listed + " (it applies to " +
                              (tidal_only ? "tidal" : "tidal and quest") + ")");
    }
  }
  std::vector<int64_t> budgets, corrections;
  TIDAL_RETURN_IF_ERROR(parse_int_list(f.budgets, "--budget", &budgets));
  TIDAL_RETURN_IF_ERROR(parse_int_list(f.corrections, "--correction-interval", &corrections));
  ModelPolicy file;
  if (!f.policy_file.empty()) {
    TIDAL_RETURN_IF_ERROR(read_policy_file(f.policy_file, &file).with_context("--policy-file"));
  } else {
    TIDAL_RETURN_IF_ERROR(load_model_policy(model_dir, &file));
  }
  // tidal's layer choices, resolved: (sparse_start, reselect, tag).
  struct Layers {
    int64_t start;
    std::vector<int64_t> reselect;
    std::string tag;
  };
  std::vector<Layers> layer_sets;
  for (const std::string& spec : f.layers) {
    Layers l;
    if (spec == "default" || (spec == "model" && !file.found())) {
      l = {2, model::default_reselect_layers(config.num_layers, 2), "default"};
    } else if (spec == "calibrated" || spec == "model") {
      if (!file.found()) {
        return not_found("--layers calibrated: " + model_dir + "/" + kPolicyFileName +
                         " does not exist (run tidal calibrate, or pass --policy-file)");
      }
      l = {file.sparse_start, file.reselect_layers, "calibrated"};
    } else {
      std::optional<std::vector<int64_t>> re;
      TIDAL_RETURN_IF_ERROR(parse_layers(spec, &l.start, &re));
      l.reselect = re ? *re : model::default_reselect_layers(config.num_layers, l.start);
    }
    const bool seen = std::any_of(layer_sets.begin(), layer_sets.end(), [&](const Layers& o) {
      return o.start == l.start && o.reselect == l.reselect;
    });
    if (!seen) layer_sets.push_back(l);
  }
  for (const std::string& name : f.policies) {
    model::AttentionKind kind;
    TIDAL_RETURN_IF_ERROR(model::parse_attention_kind(name, &kind).with_context("--policy"));
    if (kind == model::AttentionKind::kFull) {
      Variant v{"full", "full", "-", "-", 0, 0, model::AttentionPolicy()};
      out->push_back(v);
      continue;
    }
    for (int64_t k : budgets) {
      for (int64_t corr : corrections) {
        const std::string corr_tag = corr > 0 ? " corr=" + std::to_string(corr) : "";
        Variant v;
        v.policy = name;
        v.budget = k;
        v.correction = corr;
        v.attention.kind = kind;
        v.attention.correction_interval = corr;
        if (kind == model::AttentionKind::kQuest) {
          v.granularity = v.layers = "-";
          v.attention.quest.budget = k;
          v.attention.quest.page_size = page_size;
          v.label = "quest " + budget_tag(k) + corr_tag;
          out->push_back(v);
          continue;
        }
        for (const std::string& g : f.granularities) {
          TIDAL_RETURN_IF_ERROR(model::parse_granularity(g, &v.attention.tidal.granularity)
                                    .with_context("--granularity"));
          v.granularity = model::granularity_name(v.attention.tidal.granularity);
          for (const Layers& l : layer_sets) {
            v.attention.tidal.budget = k;
            v.attention.tidal.sparse_start = l.start;
            v.attention.tidal.reselect_layers = l.reselect;
            v.layers = layers_label(l.start, l.reselect) + (l.tag.empty() ? "" : " " + l.tag);
            v.label = "tidal " + v.granularity + " " + v.layers + " " + budget_tag(k) + corr_tag;
            out->push_back(v);
          }
        }
      }
    }
  }
  if (out->empty()) return invalid_argument("--policy: no policy to run");
  for (const Variant& v : *out) {
    const Status st = v.attention.validate(config, page_size);
    if (!st.ok()) return invalid_argument(v.label + ": " + st.message());
    for (const Variant& w : *out) {
      if (&v != &w && v.label == w.label) {
        return invalid_argument("the policy '" + v.label + "' is listed twice");
      }
    }
  }
  return ok_status();
}

std::string variant_file_name(const std::string& prefix, const Variant& v) {
  std::string name = prefix + "_" + v.label + ".png";
  for (size_t at; (at = name.find(":-")) != std::string::npos;) name.replace(at, 2, "-none");
  std::string out;
  for (char c : name) {
    if (c == ' ') {
      out += '_';
    } else if (c == ':') {
      out += '-';
    } else if (c == '+') {
      out += 'p';
    } else if (c != '=') {
      out += c;
    }
  }
  return out;
}

}  // namespace tidal::launch
