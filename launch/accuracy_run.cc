// SPDX-License-Identifier: Apache-2.0
#include "launch/accuracy_run.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iterator>
#include <nlohmann/json.hpp>

#include "launch/flag_names.h"
#include "runtime/device.h"
#include "runtime/file.h"

namespace tidal::launch {
namespace {

// Greedy decoding under `policy` on `e`. A budget above the engine's context attends every
// position as the context itself does, so it is lowered to it (the engine sizes its lists by it):
// Quest's to the context's pages, rounded up (rounded down, the last page would be left out).
engine::SequenceOptions greedy(const engine::Engine& e, const model::AttentionPolicy& policy) {
  engine::SequenceOptions o;
  o.attention = policy;
  const int64_t context = e.memory_plan().max_context;
  o.attention.tidal.budget = std::min(o.attention.tidal.budget, context);
  const int64_t page = o.attention.quest.page_size;
  o.attention.quest.budget =
      std::min(o.attention.quest.budget, (context + page - 1) / page * page);
  o.sampling.temperature = 0;
  return o;
}

// -log softmax(row)[target], in double.
double nll_of(const float* row, int64_t vocab, int32_t target) {
  double m = -INFINITY;
  for (int64_t i = 0; i < vocab; ++i) m = std::max(m, double(row[i]));
  double sum = 0;
  for (int64_t i = 0; i < vocab; ++i) sum += std::exp(double(row[i]) - m);
  return std::log(sum) + m - double(row[target]);
}

// Cache correction (reference/TIDALDECODE.md §2) as the generation loop schedules it: after
// every `interval` decode steps of a sequence, its last `interval` tokens are recomputed densely.
Status maybe_correct(engine::Engine& e, engine::SeqId id, int64_t interval, int64_t* since) {
  if (interval <= 0 || ++*since < interval) return ok_status();
  *since = 0;
  return e.correct(id, interval);
}

// One sequence answering a needle case: it is fed `forced` first (the question, or the answer's
// first token), then its own greedy tokens until the answer is complete.
struct Answering {
  size_t variant = 0;
  engine::SeqId id = 0;
  int64_t correction = 0;
  std::vector<int32_t> forced;
  size_t next = 0;
  std::vector<int32_t> answer;
  int64_t since_correction = 0;
  double full_rows = 0;

  int32_t token() const { return next < forced.size() ? forced[next] : answer.back(); }
};

// Decodes every sequence of `live` until each has `gen` answer tokens. `before_step(answering)`
// (may be empty) is told whether the coming step of live[0] yields an answer token.
Status answer_all(engine::Engine& e, std::vector<Answering>& live, int64_t gen,
                  const std::function<void(bool)>& before_step) {
  std::vector<engine::SeqId> ids;
  std::vector<int32_t> tokens, sampled;
  std::vector<Answering*> stepping;
  for (;;) {
    ids.clear();
    tokens.clear();
    stepping.clear();
    for (Answering& a : live) {
      if (int64_t(a.answer.size()) >= gen) continue;
      ids.push_back(a.id);
      tokens.push_back(a.token());
      stepping.push_back(&a);
    }
    if (ids.empty()) return ok_status();
    // live[0]'s step yields an answer token when it feeds the last forced token or its own.
    if (before_step) before_step(live[0].next + 1 >= live[0].forced.size());
    TIDAL_RETURN_IF_ERROR(e.decode(ids, tokens, TensorView(), &sampled));
    for (size_t i = 0; i < stepping.size(); ++i) {
      Answering& a = *stepping[i];
      a.full_rows += full_rows_per_step(e.model_config(), e.length(a.id));
      if (a.next < a.forced.size()) ++a.next;
      if (a.next >= a.forced.size()) a.answer.push_back(sampled[i]);
      TIDAL_RETURN_IF_ERROR(maybe_correct(e, a.id, a.correction, &a.since_correction));
    }
  }
}

// Prefills the case's prompt (without the question when it is decoded sparsely) under full
// attention; `first` is the greedy token after it.
Status prefill_case(engine::Engine& e, const NeedleCase& c, bool sparse_question,
                    const model::AttentionPolicy& policy, engine::SeqId* id, int32_t* first) {
  TIDAL_RETURN_IF_ERROR(
      e.add_sequence(sparse_question ? c.context : c.prompt(), greedy(e, policy), id));
  const Status st = e.prefill(*id, TensorView(), first);
  if (!st.ok()) e.release(*id);
  return st;
}

Answering start_answer(const NeedleCase& c, bool sparse_question, int32_t first) {
  Answering a;
  if (sparse_question) {
    a.forced = c.question;  // the answer's first token follows the last question token
  } else {
    a.forced = {first};  // the prefill's token is the answer's first
    a.answer = {first};
  }
  return a;
}

}  // namespace

Status run_needle_case(engine::Engine& e, const model::Tokenizer& tok, const NeedleCase& c,
                       const std::vector<const Variant*>& variants, bool sparse_question,
                       std::vector<NeedleRun>* out) {
  out->assign(variants.size(), NeedleRun());
  const int64_t slots = e.config().max_batch - 1;
  if (slots < 1) return check_needle_batch(e.config().max_batch);  // the commands checked it
  engine::SeqId source = 0;
  int32_t first = 0;
  TIDAL_RETURN_IF_ERROR(
      prefill_case(e, c, sparse_question, model::AttentionPolicy(), &source, &first));
  Status st;
  for (size_t begin = 0; begin < variants.size() && st.ok(); begin += size_t(slots)) {
    std::vector<Answering> live;
    for (size_t v = begin; v < std::min(variants.size(), begin + size_t(slots)); ++v) {
      Answering a = start_answer(c, sparse_question, first);
      a.variant = v;
      a.correction = variants[v]->attention.correction_interval;
      st = e.fork(source, greedy(e, variants[v]->attention), &a.id);
      if (!st.ok()) break;
      live.push_back(std::move(a));
    }
    if (st.ok()) st = answer_all(e, live, c.spec.gen_tokens, nullptr);
    for (Answering& a : live) {
      NeedleRun& r = (*out)[a.variant];
      if (st.ok()) {
        r.tokens = a.answer;
        st = tok.decode(a.answer, /*skip_special=*/true, &r.text);
        r.retrieved = c.retrieved(r.text);
        r.kv_rows = kv_rows_of(e.stats(a.id));
        r.full_kv_rows = a.full_rows;
      }
      e.release(a.id);
    }
  }
  e.release(source);
  return st;
}

void LayerProbe::add(const LayerProbe& o) {
  if (layers == 0) {
    *this = o;
    return;
  }
  TIDAL_CHECK(o.layers == layers && o.heads == heads, "LayerProbe::add: different models");
  steps += o.steps;
  for (int64_t l = 0; l < layers; ++l) {
    needle_mass_max[size_t(l)] = std::max(needle_mass_max[size_t(l)], o.needle_mass_max[size_t(l)]);
    needle_mass_sum[size_t(l)] += o.needle_mass_sum[size_t(l)];
    number_recall_sum[size_t(l)] += o.number_recall_sum[size_t(l)];
  }
  for (size_t i = 0; i < overlap_sum.size(); ++i) overlap_sum[i] += o.overlap_sum[i];
}

double LayerProbe::needle_mass_mean(int64_t l) const {
  return steps > 0 ? needle_mass_sum[size_t(l)] / double(steps * heads) : 0.0;
}
double LayerProbe::number_recall(int64_t l) const {
  return steps > 0 ? number_recall_sum[size_t(l)] / double(steps * heads) : 0.0;
}
double LayerProbe::overlap(int64_t a, int64_t b) const {
  return steps > 0 ? overlap_sum[size_t(a * layers + b)] / double(steps * heads) : 0.0;
}

Status probe_needle_case(engine::Engine& e, const NeedleCase& c, int64_t budget,
                         bool sparse_question, LayerProbe* out) {
  const model::ModelConfig& cfg = e.model_config();
  const int64_t layers = cfg.num_layers, heads = cfg.num_heads;
  LayerProbe p;
  p.layers = layers, p.heads = heads, p.budget = budget;
  p.needle_mass_max.assign(size_t(layers), 0.0);
  p.needle_mass_sum.assign(size_t(layers), 0.0);
  p.number_recall_sum.assign(size_t(layers), 0.0);
  p.overlap_sum.assign(size_t(layers * layers), 0.0);
  // Every layer selects (per query head), so every layer attends densely: full's output, with
  // each layer's logits and top-K lists in the workspace after it (f32 logits in `scores`: per
  // query head; lists a group shares would keep theirs as f16 in `logits16`).
  model::AttentionPolicy policy;
  policy.kind = model::AttentionKind::kTidal;
  policy.tidal.budget = budget;
  policy.tidal.sparse_start = 0;
  std::vector<int64_t> reselect;
  for (int64_t l = 1; l < layers; ++l) reselect.push_back(l);
  policy.tidal.reselect_layers = reselect;
  engine::SeqId id = 0;
  int32_t first = 0;
  TIDAL_RETURN_IF_ERROR(prefill_case(e, c, sparse_question, policy, &id, &first));
  std::vector<Answering> live(1, start_answer(c, sparse_question, first));
  live[0].id = id;
  const int64_t needle = c.needle_end - c.needle_begin, max_budget = e.workspace().lists.size(2);
  const auto nl = static_cast<size_t>(layers), nh = static_cast<size_t>(heads);
  std::vector<std::vector<std::vector<int32_t>>> lists(nl, std::vector<std::vector<int32_t>>(nh));
  std::vector<float> lse(nh), scores(static_cast<size_t>(needle));
  std::vector<int32_t> counts(nh), raw(nh * static_cast<size_t>(max_budget));
  bool probing = false;
  e.set_attention_marker([&](int64_t layer, bool after) {
    if (!after || !probing) return;
    const model::LlamaWorkspace& ws = e.workspace();
    const Stream s = e.stream();
    const TensorView lse_row = ws.lse.select(0), count_row = ws.counts.select(0);
    const TensorView list_rows = ws.lists.select(0);
    copy_bytes(lse.data(), Device{}, lse_row.data, lse_row.device, size_t(heads) * 4, s);
    copy_bytes(counts.data(), Device{}, count_row.data, count_row.device, size_t(heads) * 4, s);
    copy_bytes(raw.data(), Device{}, list_rows.data, list_rows.device,
               size_t(heads * max_budget) * 4, s);
    for (int64_t h = 0; h < heads; ++h) {
      const TensorView row = ws.scores.select(0).select(h);
      copy_bytes(scores.data(), Device{}, static_cast<const float*>(row.data) + c.needle_begin,
                 row.device, size_t(needle) * 4, s);
      stream_synchronize(s);
      double mass = 0;
      for (float v : scores) mass += std::exp(double(v) - double(lse[size_t(h)]));
      p.needle_mass_max[size_t(layer)] = std::max(p.needle_mass_max[size_t(layer)], mass);
      p.needle_mass_sum[size_t(layer)] += mass;
      std::vector<int32_t>& list = lists[size_t(layer)][size_t(h)];
      const int32_t* first_entry = raw.data() + h * max_budget;
      list.assign(first_entry, first_entry + counts[size_t(h)]);
      std::sort(list.begin(), list.end());
      int64_t kept = 0;
      for (int64_t t = c.number_begin; t < c.number_end; ++t) {
        kept += std::binary_search(list.begin(), list.end(), int32_t(t));
      }
      p.number_recall_sum[size_t(layer)] += double(kept) / double(c.number_end - c.number_begin);
    }
  });
  // After a probed step: how much of each layer's lists every other layer's lists keep.
  auto account = [&] {
    for (int64_t a = 0; a < layers; ++a) {
      for (int64_t b = 0; b < layers; ++b) {
        for (int64_t h = 0; h < heads; ++h) {
          const auto& la = lists[size_t(a)][size_t(h)];
          const auto& lb = lists[size_t(b)][size_t(h)];
          std::vector<int32_t> both;
          std::set_intersection(la.begin(), la.end(), lb.begin(), lb.end(),
                                std::back_inserter(both));
          p.overlap_sum[size_t(a * layers + b)] +=
              la.empty() ? 0.0 : double(both.size()) / double(la.size());
        }
      }
    }
    p.steps += 1;
  };
  const Status st = answer_all(e, live, c.spec.gen_tokens, [&](bool answering) {
    if (probing) account();
    probing = answering;
  });
  if (st.ok() && probing) account();
  e.set_attention_marker(nullptr);
  e.release(id);
  TIDAL_RETURN_IF_ERROR(st);
  *out = std::move(p);
  return ok_status();
}

double PplRun::perplexity() const { return perplexity(0, nll.size()); }

double PplRun::perplexity(size_t begin, size_t end) const {
  end = std::min(end, nll.size());
  if (begin >= end) return std::nan("");
  double sum = 0;
  for (size_t i = begin; i < end; ++i) sum += nll[i];
  return std::exp(sum / double(end - begin));
}

Status run_ppl_streams(engine::Engine& e, const std::vector<int32_t>& tokens,
                       const std::vector<const Variant*>& variants, std::vector<PplRun>* out,
                       const std::function<void(int64_t)>& progress) {
  const int64_t vocab = e.model_config().vocab, total = int64_t(tokens.size());
  if (total < 2) return invalid_argument("perplexity needs at least 2 tokens");
  out->assign(variants.size(), PplRun());
  const size_t slots = size_t(e.config().max_batch);
  int64_t done = 0;
  for (size_t begin = 0; begin < variants.size(); begin += slots) {
    const size_t end = std::min(variants.size(), begin + slots);
    const int64_t n = int64_t(end - begin);
    std::vector<engine::SeqId> ids;
    std::vector<int64_t> since(size_t(n), 0);
    std::vector<float> logits(size_t(n * vocab));
    Status st;
    for (size_t v = begin; v < end && st.ok(); ++v) {
      engine::SeqId id = 0;
      st = e.add_sequence({tokens[0]}, greedy(e, variants[v]->attention), &id);
      if (!st.ok()) break;
      ids.push_back(id);
      st = e.prefill(id, make_view(logits.data(), DType::kF32, {vocab}));
      PplRun& r = (*out)[v];
      r.nll.reserve(size_t(total - 1));
      r.nll.push_back(nll_of(logits.data(), vocab, tokens[1]));
    }
    for (int64_t i = 1; i + 1 < total && st.ok(); ++i) {
      const std::vector<int32_t> step(size_t(n), tokens[size_t(i)]);
      st = e.decode(ids, step, make_view(logits.data(), DType::kF32, {n, vocab}));
      for (int64_t j = 0; j < n && st.ok(); ++j) {
        PplRun& r = (*out)[begin + size_t(j)];
        r.nll.push_back(nll_of(logits.data() + j * vocab, vocab, tokens[size_t(i + 1)]));
        r.full_kv_rows += full_rows_per_step(e.model_config(), i + 1);
        st = maybe_correct(e, ids[size_t(j)], variants[begin + size_t(j)]->attention.correction_interval,
                           &since[size_t(j)]);
      }
      done += n;
      if (progress) progress(done);
    }
    for (size_t j = 0; j < ids.size(); ++j) {
      if (st.ok()) (*out)[begin + j].kv_rows = kv_rows_of(e.stats(ids[j]));
      e.release(ids[j]);
    }
    TIDAL_RETURN_IF_ERROR(st);
  }
  return ok_status();
}

Status resolve_harness_model(const AccuracyCommon& c, const AccuracyDefaults& d,
                             std::string* dir) {
  *dir = c.model_dir.empty() ? d.model_dir : c.model_dir;
  if (dir->empty() || !std::filesystem::exists(*dir + "/config.json")) {
    return not_found(c.model_dir.empty()
                         ? "no --model given and the embedded model is missing (looked in '" +
                               d.model_dir + "')"
                         : "--model " + c.model_dir + ": no config.json there");
  }
  return ok_status();
}

std::string harness_text(const AccuracyDefaults& d, const std::string& given) {
  return given.empty() ? d.text_dir + "/austen/persuasion.txt" : given;
}

Status harness_engine_config(const AccuracyCommon& c, const std::string& dir, int64_t max_context,
                             int64_t max_budget, engine::EngineConfig* out) {
  engine::EngineConfig config;
  TIDAL_RETURN_IF_ERROR(apply_device_flags(c.device, &config));
  config.max_batch = c.max_batch;
  config.max_context = max_context;
  config.prefill_chunk = std::min(c.prefill_chunk, max_context);
  // Lists never hold more than the context's pages: a larger budget attends every position
  // (greedy lowers it so), and one past the engine's range would fail naming max_budget.
  const int64_t pages = (max_context + config.page_size - 1) / config.page_size;
  config.max_budget = std::max<int64_t>(std::min(max_budget, pages * config.page_size), 2);
  TIDAL_RETURN_IF_ERROR(name_flags(config.validate()));
  model::ModelConfig cfg;
  TIDAL_RETURN_IF_ERROR(model::load_model_config(dir, &cfg));
  if (max_context > cfg.max_position_embeddings) {
    return invalid_argument("a length of " + std::to_string(max_context) +
                            " tokens exceeds the model's context of " +
                            std::to_string(cfg.max_position_embeddings));
  }
  TIDAL_RETURN_IF_ERROR(name_flags(engine::check_fits(cfg, config)).with_context(dir));
  *out = config;
  return ok_status();
}

std::string harness_device_name(const AccuracyCommon& c, const std::string& cpu_model) {
  engine::EngineConfig config;
  if (!apply_device_flags(c.device, &config).ok() || config.device.kind != DeviceKind::kCuda) {
    return cpu_model;
  }
  DeviceInfo info;
  if (!cuda_device_info(config.device.index, &info).ok()) return cpu_model;
  return info.name + " (cuda:" + std::to_string(config.device.index) + ")";
}

Status read_resume_json(const std::string& path, const std::string& command,
                        const std::vector<ResumeEntries>& entries, nlohmann::json* out) {
  using json = nlohmann::json;
  std::string text;
  TIDAL_RETURN_IF_ERROR(read_file(path, &text).with_context("--resume"));
  json prior = json::parse(text, nullptr, /*allow_exceptions=*/false);
  const std::string what = "--resume " + path + ": ";
  if (prior.is_discarded() || !prior.is_object() || !prior.contains("command") ||
      prior["command"] != command) {
    return invalid_argument(what + "not the JSON of a tidal " + command + " run");
  }
  if (!prior.contains("settings") || !prior["settings"].is_object()) {
    return invalid_argument(what + "its 'settings' is not an object");
  }
  auto typed = [](const json& v, JsonType t) {
    switch (t) {
      case JsonType::kString: return v.is_string();
      case JsonType::kNumber: return v.is_number();
      case JsonType::kBool: return v.is_boolean();
      case JsonType::kArray: return v.is_array();
      case JsonType::kNumbers:
        return v.is_array() &&
               std::all_of(v.begin(), v.end(), [](const json& x) { return x.is_number(); });
      case JsonType::kNumberOrNull: return v.is_number() || v.is_null();
    }
    return false;
  };
  const char* const type_names[] = {"a string", "a number",          "true or false",
                                    "a list",   "a list of numbers", "a number or null"};
  for (const ResumeEntries& e : entries) {
    json* list = &prior;
    std::string name;  // "state.needle"
    for (size_t begin = 0; begin <= e.at.size();) {
      const size_t dot = std::min(e.at.find('.', begin), e.at.size());
      const std::string key = e.at.substr(begin, dot - begin);
      if (!name.empty() && !list->is_object()) {
        return invalid_argument(what + "its '" + name + "' is not an object");
      }
      name += (name.empty() ? "" : ".") + key;
      if (!list->contains(key)) {
        (*list)[key] = dot < e.at.size() || e.keyed ? json::object() : json::array();
      }
      list = &(*list)[key];
      begin = dot + 1;
    }
    if (e.keyed ? !list->is_object() : !list->is_array()) {
      return invalid_argument(what + "its '" + name + "' is not " +
                              (e.keyed ? "an object" : "a list"));
    }
    size_t i = 0;
    for (auto it = list->begin(); it != list->end(); ++it, ++i) {
      const std::string where =
          what + name + "[" + (e.keyed ? json(it.key()).dump() : std::to_string(i)) + "]";
      if (e.fields.empty()) {
        if (!typed(*it, e.type)) {
          return invalid_argument(where + " is not " + type_names[int(e.type)]);
        }
        continue;
      }
      if (!it->is_object()) return invalid_argument(where + " is not an object");
      for (const ResultField& f : e.fields) {
        if (!it->contains(f.name) || !typed((*it)[f.name], f.type)) {
          return invalid_argument(where + "." + f.name + " is not " + type_names[int(f.type)]);
        }
      }
    }
  }
  *out = std::move(prior);
  return ok_status();
}

Status read_resume_json(const std::string& path, const std::string& command,
                        const std::vector<ResultField>& fields, nlohmann::json* out) {
  return read_resume_json(path, command, {{"results", false, fields}}, out);
}

bool same_path(const nlohmann::json& prior, const std::string& now) {
  if (!prior.is_string()) return false;
  const std::string was = prior.get<std::string>();
  if (was == now) return true;
  std::error_code ec1, ec2;
  const std::filesystem::path a = std::filesystem::weakly_canonical(was, ec1);
  const std::filesystem::path b = std::filesystem::weakly_canonical(now, ec2);
  return !ec1 && !ec2 && a == b;
}

Status check_resume_settings(const std::string& path, const nlohmann::json& prior,
                             const nlohmann::json& now, const std::vector<const char*>& paths,
                             const std::vector<const char*>& values) {
  using json = nlohmann::json;
  auto differs = [&](const char* k) {
    return invalid_argument("--resume " + path + ": it ran with another " + k + " (" +
                            prior.value(k, json()).dump() + ", now " + now[k].dump() + ")");
  };
  for (const char* k : paths) {
    if (!same_path(prior.value(k, json()), now[k].get<std::string>())) return differs(k);
  }
  for (const char* k : values) {
    if (prior.value(k, json()) != now[k]) return differs(k);
  }
  return ok_status();
}

Status make_png_dir(const std::string& dir) {
  if (dir.empty()) return ok_status();
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return invalid_argument("--png-dir " + dir + ": cannot make it: " + ec.message());
  return ok_status();
}

std::string needle_case_key(const std::string& variant, const NeedleSpec& s) {
  return variant + "|" + std::to_string(s.length) + "|" + std::to_string(s.depth_percent) + "|" +
         std::to_string(s.index);
}

double full_rows_per_step(const model::ModelConfig& c, int64_t n) {
  return double(n) * double(c.num_kv_heads) * double(c.num_layers);
}

double kv_rows_of(const model::AttentionStats& s) {
  double rows = double(s.quest_metadata_rows);
  for (int64_t r : s.rows) rows += double(r);
  return rows;
}

}  // namespace tidal::launch
