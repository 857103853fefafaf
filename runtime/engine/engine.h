// SPDX-License-Identifier: Apache-2.0
// The engine: a model's weights, its paged KV cache and a step workspace, planned once at start
// on one device (the CPU reference path or a CUDA GPU). Sequences are added with their prompt,
// prefilled densely in chunks, then decoded together one token per step. Every step is a
// StepPlan built on the host and run as one fixed sequence of launches for the whole batch; on
// a GPU, decode steps replay a CUDA graph captured per batch-size bucket (and per set of layers
// with selection / Quest launches), sampling happens on the device, and only the sampled ids come
// back. Nothing is allocated per step.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "model/attention_policy.h"
#include "model/config.h"
#include "model/llama.h"
#include "model/parallel_forward.h"
#include "model/shard.h"
#include "model/weights.h"
#include "runtime/device.h"
#include "runtime/engine/distributed.h"
#include "runtime/engine/kv_cache.h"
#include "runtime/engine/sampler.h"
#include "runtime/engine/step_plan.h"
#include "runtime/status.h"

namespace tidal::engine {

// Upper bounds of the engine's sizes (validate() checks them before anything is sized): far
// above any real use, low enough that every product the plan makes fits in int64.
constexpr int64_t kMaxPageSize = int64_t{1} << 16;
constexpr int64_t kMaxBatch = 65535;  // the CUDA decode-attention grid's limit
constexpr int64_t kMaxContext = int64_t{1} << 28;
constexpr int64_t kMaxKvCapacity = int64_t{1} << 40;
constexpr int64_t kMaxPrefillChunk = int64_t{1} << 20;
// replay_last_step's count at most (tidal bench --graph-replays): a mean over thousands of
// replays is as good as over more, and 10000 steps of a large model at a long context already
// keep a GPU busy for minutes, with nothing to interrupt them once queued.
constexpr int64_t kMaxGraphReplays = 10000;

// How the KV cache stores K and V.
enum class KvDtype : uint8_t {
  kActivation,  // in the activations' dtype (EngineConfig::dtype), as computed
  // FP8 e4m3 codes with a power-of-two f32 scale per (token, KV head) row
  // (kernels/paged_kv_common.h): about half the bytes of bf16.
  kFp8,
};
// "fp8", or the activations' dtype name for kActivation.
const char* kv_dtype_name(KvDtype kv, DType activation);

struct EngineConfig {
  int64_t page_size = 16;   // KV tokens per page, [1, kMaxPageSize]; Default: 16
  int64_t max_batch = 8;    // sequences decoded in one step, [1, kMaxBatch]; Default: 8
  int64_t max_context = 0;  // tokens per sequence (prompt + generated); Default (0): the model's
  int64_t kv_capacity = 0;  // KV tokens over all sequences; Default (0): max_batch sequences
                            // of max_context (whole pages each), capped to what fits in
                            // available memory
  int64_t prefill_chunk = 256;  // prompt tokens per prefill step; Default: 256
  int64_t max_budget = 4096;    // largest sparse budget a request may ask; Default: 4096 (one
                                // above the context attends every position, as full, and is
                                // taken whenever this covers the context)
  Device device;                // Default: the CPU (the f32 reference path)
  DType dtype = DType::kF32;    // weights, activations and KV cache: f32, f16 or bf16; Default f32
  KvDtype kv_dtype = KvDtype::kActivation;  // the KV cache's format; Default: the activations'
  bool cuda_graphs = true;      // GPU decode steps replay captured graphs; false: eager launches
  // Keep Quest's per-page key bounds, updated with every appended key (a launch per layer a step
  // on the GPU, and two rows per page of memory). false: no Quest request is accepted. Default:
  // true (a server takes any policy).
  bool quest_bounds = true;
  // Tensor / pipeline parallel: this process is one rank of that job and holds its shard of the
  // model (eager launches; graphs are a single-rank feature for now). Default: null, one process
  // holding the whole model, with no communicator calls at all.
  const Distributed* distributed = nullptr;

  // Errors name the field and its range.
  Status validate() const;
};

// What the engine holds, in bytes, and what it can serve. The KV arena is kv_pages + 1 pages
// (one padding page) of kv_bytes_per_page, plus alignment: kv_bytes says exactly.
struct MemoryPlan {
  Device device;
  std::string device_name;     // "cpu" or the GPU's name
  DType dtype = DType::kF32;
  KvDtype kv_dtype = KvDtype::kActivation;
  size_t available_bytes = 0;  // memory the plan was made against (0: unknown)
  size_t weight_bytes = 0;
  size_t kv_bytes = 0;
  size_t workspace_bytes = 0;  // activations, selection state, op scratch, step plan
  int64_t kv_pages = 0;        // pages sequences can hold
  int64_t kv_capacity_tokens = 0;  // kv_pages * page_size
  int64_t kv_bytes_per_token = 0;  // K and V (and their FP8 scales), every layer
  int64_t kv_bytes_per_page = 0;  // page_size tokens of K and V (+ Quest's 2 bound rows), every layer
  int64_t max_context = 0;
  bool kv_capped = false;  // the automatic capacity was cut to fit available memory

  size_t total_bytes() const;  // weights + KV cache + workspace (saturating)
};

// Plans memory without allocating (for `tidal info`; Engine::load and create plan first too).
// `available_bytes` is the memory (host or device) that weights, KV cache and workspace may take
// (0: unknown, no cap). An automatic KV capacity keeps 8% of it free (never below one page); an
// explicit one is taken as asked. Requires: model and config valid. Every size is computed
// without overflow (SIZE_MAX when absurd), so plan_fits() sees the truth. With
// config.distributed, the plan is this rank's: its shard's weights, its layers' and heads' KV
// cache, its workspace.
MemoryPlan plan_memory(const model::ModelConfig& model, const EngineConfig& config,
                       size_t available_bytes);
// The plan of the rank of a tp x pp job (of any size, one included) that holds `shard`
// (model::make_model_shard), from any process: `tidal info --tp --pp` plans every rank of a
// layout without starting the job. Each rank's automatic KV capacity is its own; a job runs with
// the smallest (Engine::create).
MemoryPlan plan_memory(const model::ModelConfig& model, const EngineConfig& config,
                       size_t available_bytes, const model::ModelShard& shard);
// Whether the plan can be allocated: at least one KV page, page ids that fit i32, and everything
// within the available memory (when known). kOutOfMemory otherwise, saying what needs how many
// bytes, what is available and on which device, and which settings size the largest part.
Status plan_fits(const model::ModelConfig& model, const EngineConfig& config,
                 const MemoryPlan& plan);
// Whether `config` can serve `model` on config.device now: both valid, max_context within
// the model's context, and a plan that fits the memory the device has available. Engine::load
// runs it before reading the checkpoint.
Status check_fits(const model::ModelConfig& model, const EngineConfig& config);
// The same against `available_bytes` of memory (0: unknown, nothing is refused for size).
Status check_fits(const model::ModelConfig& model, const EngineConfig& config,
                  size_t available_bytes);
// Memory the engine's device offers now: free device memory on a GPU, available host memory on
// the CPU (0: unknown).
size_t available_memory(Device device);

using SeqId = int64_t;

// Per-sequence settings.
struct SequenceOptions {
  model::AttentionPolicy attention;  // decode-step attention; Default: full
  SamplingParams sampling;           // how its tokens are sampled; Default: temperature 1, seed 0
};

// A prefill or correction chunk of a mixed step (Engine::step): positions [begin, begin + count)
// of one sequence, run densely through every layer.
// - Prefill: `begin` is the sequence's first uncached position and the chunk lies within its
//   prompt; with `sample`, the chunk must end the prompt and the token after it is sampled.
// - Correction (reference/TIDALDECODE.md §2): the positions are all cached already; their K/V
//   are recomputed and overwritten. `ends_pass` counts a correction pass in the statistics.
struct StepChunk {
  SeqId id = 0;
  int64_t begin = 0;
  int64_t count = 0;
  bool sample = false;     // prefill only
  bool ends_pass = false;  // correction only
};

// In Engine::step's sampled ids: the row's logits held a NaN or an infinity (nothing sampled).
constexpr int32_t kNonFiniteToken = -1;

class Engine {
 public:
  ~Engine();
  // Takes ownership of `weights` (for model, already on config.device in config.dtype; with
  // config.distributed, this rank's shard of them: model::make_model_shard for its coordinates).
  // Allocates the KV cache and workspace. Distributed: collective, and every rank returns the
  // same status (agree_status: a failure names the rank that failed and why); the model and the
  // settings that shape a step (all but kv_capacity) must be the same on every rank, else
  // invalid_argument names the first that differs and both values.
  static Status create(const model::ModelConfig& model, model::LlamaWeights weights,
                       const EngineConfig& config, std::unique_ptr<Engine>* out);
  // Loads <dir>/config.json and its safetensors checkpoint onto config.device in config.dtype
  // (distributed: only this rank's slices of it; collective, as create).
  static Status load(const std::string& dir, const EngineConfig& config,
                     std::unique_ptr<Engine>* out);

  const model::ModelConfig& model_config() const { return model_; }
  const EngineConfig& config() const { return config_; }
  const MemoryPlan& memory_plan() const { return plan_; }
  const model::LlamaWeights& weights() const { return weights_; }
  Stream stream() const { return stream_; }

  // Registers a sequence holding `prompt` (at least one token). Fails with a clear error when
  // the prompt is longer than the context or the KV capacity, the policy or sampling settings
  // are invalid, or max_batch sequences are live.
  Status add_sequence(const std::vector<int32_t>& prompt, SeqId* id);
  Status add_sequence(const std::vector<int32_t>& prompt, const model::AttentionPolicy& policy,
                      SeqId* id);
  Status add_sequence(const std::vector<int32_t>& prompt, const SequenceOptions& options,
                      SeqId* id);
  // Prefills every not-yet-cached prompt token in chunks. Writes the logits after the last prompt
  // token to `logits` [vocab] (f32, host) when it has data, and the token sampled from them
  // (the sequence's sampling settings) to `*sampled` when not null. Fails (the prompt's K/V
  // cached) when those logits hold a NaN or an infinity, naming the position.
  Status prefill(SeqId id, TensorView logits, int32_t* sampled = nullptr);
  // One decode step: appends tokens[i] to sequence ids[i] (all distinct); writes their next-token
  // logits to logits[i] ([ids.size(), vocab], f32, host) when it has data, and the sampled next
  // tokens to `*sampled` when not null. Fails (changing nothing) when a sequence would exceed its
  // context or the KV cache is full; fails after the step (its K/V cached) when a sequence's
  // logits hold a NaN or an infinity, naming the sequence, the step and the position.
  Status decode(const std::vector<SeqId>& ids, const std::vector<int32_t>& tokens,
                TensorView logits, std::vector<int32_t>* sampled = nullptr);
  // One mixed step (continuous batching): a decode token for each of `ids` (tokens[i] appended
  // to ids[i], as decode()) and then `chunks`, in one forward. A sequence decodes at most once
  // and has at most one chunk; it may decode beside its own correction chunk (the chunk's K/V
  // are rewritten before the decode token reads them, in every layer: the same as correct()
  // then decode()), not beside a prefill chunk. Writes the sampled ids to `*sampled` (when not
  // null): the decode tokens' in order, then one per chunk with `sample`; a row whose logits are
  // not finite gets kNonFiniteToken. `logits` ([rows, vocab] host f32, rows <= that count) gets
  // those rows' logits when it has data. Fails (changing nothing) on a bad id or chunk, a
  // sequence past its context, or a full KV cache. Decode-only steps replay CUDA graphs;
  // nothing is allocated.
  Status step(const std::vector<SeqId>& ids, const std::vector<int32_t>& tokens,
              const std::vector<StepChunk>& chunks, TensorView logits,
              std::vector<int32_t>* sampled);
  // What add_sequence checks that does not depend on the engine's load (free slots and pages):
  // the prompt (non-empty, in the vocabulary, within the context and the KV capacity) and the
  // settings. Same errors as add_sequence.
  Status validate_sequence(const std::vector<int32_t>& prompt,
                           const SequenceOptions& options) const;
  // KV cache correction (reference/TIDALDECODE.md §2): recomputes the K/V of the sequence's last
  // `num_tokens` cached positions with a dense chunked pass through every layer, overwriting the
  // entries written while sparse layers were active (all of them when fewer are cached).
  // Counted in the sequence's stats. Refused for num_tokens < 1 and for a sequence with nothing
  // cached yet (not prefilled).
  Status correct(SeqId id, int64_t num_tokens);
  // Registers a sequence of `length` cached positions whose K/V are random (seeded), with no
  // prefill: for latency benchmarks at long context. Its tokens are 0s.
  Status add_random_sequence(int64_t length, const SequenceOptions& options, uint64_t seed,
                             SeqId* id);
  // Frees the sequence's KV pages.
  void release(SeqId id);
  // A new sequence holding a copy of `source`'s tokens and cached K/V (its own pages), decoded
  // under `options`; `source` is left as it was. Prefill is dense under every policy, so a
  // prompt prefilled once serves many policies (the accuracy harnesses: engine_fork.cc). The
  // source must be fully prefilled. One process only (not under tensor / pipeline parallelism).
  Status fork(SeqId source, const SequenceOptions& options, SeqId* id);

  // The sequence's attention statistics so far (decode steps and corrections).
  model::AttentionStats stats(SeqId id) const;
  // Records every decode layer's role and lists of the sequence into `trace` (null: stop).
  // Steps of a traced sequence run eagerly. Distributed: the layers and heads rank 0 holds.
  void set_trace(SeqId id, std::vector<model::LayerTrace>* trace);
  // Copies the cached key and value of (layer, position), [num_kv_heads * head_dim] each, as f32.
  Status read_kv(SeqId id, int64_t layer, int64_t position, std::vector<float>* key,
                 std::vector<float>* value) const;

  // The step workspace, for inspection from an attention marker (after = true): a selection
  // layer's logits (`scores`; per-query-head lists' f32 ones: lists a group of heads shares keep
  // theirs in `logits16`, and group sums in `scores`), log-sum-exps (`lse`) and `lists` of the
  // step's decode tokens, in the order decode() was given them (the accuracy harnesses'
  // per-layer diagnostics).
  const model::LlamaWorkspace& workspace() const { return ws_; }

  // Called on the host around every layer's attention launches of a step (before: after =
  // false), for timing with events; steps run eagerly while it is set. Empty: none.
  void set_attention_marker(std::function<void(int64_t layer, bool after)> marker) {
    attention_marker_ = std::move(marker);
  }

  // Tensor / pipeline parallel (config.distributed). Rank 0 runs the host side as on one rank
  // (add_sequence, prefill, decode, ...): every step it broadcasts the plan and the other ranks
  // run their part of it in serve(). The last stage samples; the ids come back to rank 0.
  bool distributed() const { return dist_ != nullptr; }
  const model::ModelShard& shard() const { return shard_; }
  // Ranks other than 0: runs what rank 0 broadcasts until rank 0 shuts down (then returns ok).
  Status serve();
  // Rank 0: makes the other ranks leave serve(). Idempotent; the destructor calls it.
  void shutdown();
  // Records, on this rank, every decode token's lists in every layer it holds (null: stop), for
  // checking that ranks agree (and, on one rank, what they should agree with). Steps run eagerly
  // while it is set.
  void set_rank_trace(std::vector<model::LayerTrace>* trace) { rank_trace_ = trace; }
  // This rank's list-agreement traffic so far.
  const model::AgreementCounters& agreement_counters() const { return par_.counters; }
  // Under TP: whether the row-parallel all-reduces run on memory the TP group registered
  // (NCCL symmetric window), and whether their partial sums are f32 (16-bit activations).
  bool registered_partials() const { return pbuf_.registered != nullptr; }
  bool f32_partials() const { return pbuf_.partial.data != nullptr; }
  // Rank 0: called on the host around this rank's activation all-reduces and list agreements
  // of every step (before: after = false), for timing with events; none on one rank. Empty: none.
  void set_comm_marker(std::function<void(model::CommSpan span, bool after)> marker) {
    par_.marker = std::move(marker);
  }

  // Called on the host as a prefill (or a random-KV fill) advances: (0, total) before the first
  // chunk, then (positions done, total) after each chunk completes; for progress lines. Empty:
  // none.
  void set_progress(std::function<void(int64_t done, int64_t total)> progress) {
    progress_ = std::move(progress);
  }

  int64_t length(SeqId id) const;    // tokens cached for the sequence
  int64_t kv_tokens_in_use() const;  // pages held by live sequences, in tokens
  int64_t free_kv_pages() const { return kv_.free_pages(); }
  // KV pages the sequence's next decode token needs beyond those it holds (0 or 1).
  int64_t pages_for_next_token(SeqId id) const;
  // CUDA graph captures so far (one per batch bucket, plus one per widening of its layer ops).
  int64_t graphs_captured() const { return captures_; }
  // Benchmarks: queues the graph of the last decode step `times` more times on stream(), back to
  // back (no host work between them), and returns without waiting: the step's device time alone,
  // against the step's latency with its host planning and launch. A replay recomputes that step
  // (the same plan: the same cache rows rewritten with the same values, the same lists and
  // samples); no sequence advances. The device's position-persistence counters count each
  // replay's selections again. Invalid when `times` is outside [0, kMaxGraphReplays], when the
  // last step ran eagerly, once a sequence was added, forked or released since
  // (add_random_sequence and fork add one), and under TP / PP (one rank cannot replay its
  // collectives alone).
  Status replay_last_step(int64_t times);

 private:
  struct Sequence {
    std::vector<int32_t> tokens;       // prompt + generated; positions 0..size-1
    int64_t cached = 0;                // tokens whose K/V are in the cache
    std::vector<int32_t> block_table;  // page ids
    int64_t pages_on_device = 0;       // block-table entries the device copy already has
    int64_t row = 0;                   // block-table row (sequence slot)
    SequenceOptions options;
    uint64_t samples_drawn = 0;        // the sampling counter
    model::AttentionStats stats;
    std::vector<int64_t> reselect;  // the policy's reselect layers, resolved
    std::vector<model::LayerTrace>* trace = nullptr;
  };

  Engine() = default;
  // create() up to its collective steps (everything that may fail on one rank alone).
  static Status create_local(const model::ModelConfig& model, model::LlamaWeights weights,
                             const EngineConfig& config, std::unique_ptr<Engine>* out);
  // Allocates the KV cache, workspace and device state for plan_.
  Status allocate();
  // Stream, block tables, step plan buffers and graph buckets.
  Status init_device_state();
  Sequence* find(SeqId id);
  const Sequence* find(SeqId id) const;
  // Queues the block-table entries of `s` covering positions [0, end) the device lacks.
  void upload_pages(Sequence* s, int64_t end);
  void add_decode_token(Sequence* s, int32_t token);
  void add_sample_row(int32_t row, const Sequence* s);
  // Dense pass over positions [begin, end) of `s` in prefill chunks; the last chunk's logits
  // (and sample) when asked.
  // `report`: call progress_ as chunks complete. Fails when the last chunk's logits are not
  // finite.
  Status dense_pass(Sequence* s, int64_t begin, int64_t end, TensorView logits, int32_t* sampled,
                    bool report);
  // Whether logit row `row` of the step just run was finite (the sampled id says).
  Status check_logits(int64_t row, const Sequence* s, int64_t position) const;
  // Runs the step in step_ (decode tokens of step_seqs_): graph replay or eager launches, then
  // sampling; copies logits (when `logits` has data: its rows) back, and the sampled ids to
  // sampled_host_.
  void run_step(TensorView logits);
  // Queues the step's plan upload, forward and sampling on the stream.
  void enqueue_step();
  // A decode step of bucket `bucket` whose optional launches are `need` ([num_layers] layer ops)
  // and whose other host-decided launches are `sig` (empty on one rank; model::launch_signature
  // and the sampling path under TP/PP): replays the graph holding exactly those launches, or runs
  // `enqueue` eagerly (the real step) and then captures it.
  // Returns that graph.
  const Graph* replay_or_capture(int64_t bucket, const uint8_t* need, std::vector<int64_t> sig,
                                 const std::function<void()>& enqueue);
  void record_traces(int64_t layer);
  void count_decode_stats(Sequence* s);
  // Appends random K/V for the plan's prefill positions (add_random_sequence), in held layers.
  void fill_random_kv(uint64_t seed, int64_t length);

  // Distributed (engine_distributed.cc).
  // After the first collective agreement: KV capacity agreed, buffers, the KV-head group.
  Status init_distributed();
  // Rank 0: broadcasts a command (and the plan after it) to the other ranks.
  void broadcast_command(Command command, int32_t logit_rows = 0, int64_t a0 = 0, int64_t a1 = 0);
  void run_step_distributed(TensorView logits);
  // Pipeline micro-batches of a step: a decode-only step of two or more sequences crosses the
  // stages in up to pp parts; 1 on one rank, under pp = 1, and when per-sequence traces or the
  // attention marker (which read whole-step rows) or logits wanted back need the step whole.
  // Engine::step leaves such a step unpadded, and run_step_distributed splits it.
  int64_t micro_batches(int64_t num_decode, bool decode_only, bool want_logits, bool traced) const;
  // Every rank: the plan's forward (in `parts` micro-batches of its decode tokens, as rank 0
  // decided), then on the last stage sampling, and the ids (and `logit_rows` logit rows) sent to
  // rank 0. A decode-only step of one part replays a graph when rank 0 allows it
  // (`graphs_allowed`: no traces or markers there) and its launches do
  // (model::launch_signature); every rank decides alike from the same plan.
  void execute_step(int32_t logit_rows, int64_t parts, bool graphs_allowed);
  // execute_step's launches up to the ids' trip to rank 0: the plan upload, the forward of each
  // part, and sampling on the last stage. `host`: the plan's arrays on the host.
  void enqueue_parts(int32_t logit_rows, int64_t parts, const model::ForwardBatch& host);
  // Last stage: samples logit rows [begin, begin + count) from this part's shard logits.
  void sample_part(int64_t begin, int64_t count, bool want_logits);
  // Every rank: the position-persistence counters summed over the ranks ([num_rows, 2]).
  std::vector<int64_t> sum_overlap() const;
  void record_rank_traces(const model::ForwardBatch& host, int64_t layer);
  // How a decode token of `policy` agrees its lists across ranks (model::ListAgreement).
  uint8_t list_agreement(const model::AttentionPolicy& policy) const;

  model::ModelConfig model_;
  model::ModelConfig local_;  // the shard's config, which the forward runs (== model_ on one rank)
  model::ModelShard shard_;
  EngineConfig config_;
  MemoryPlan plan_;
  model::LlamaWeights weights_;
  KvCache kv_;
  model::LlamaWorkspace ws_;
  Stream stream_;
  bool owns_stream_ = false;
  Arena state_;                  // on the device: block tables and the step plan's copy
  TensorView block_tables_;      // [max_batch + 1, max_pages] i32; the last row is for padding
  void* command_host_ = nullptr;  // pinned: kCommandBytes of command, then the plan
  void* plan_host_ = nullptr;     // the plan is built here (command_host_ + kCommandBytes)
  void* plan_device_ = nullptr;  // its copy on the device (== plan_host_ on the CPU)
  int32_t* sampled_host_ = nullptr;  // pinned [max_logits]
  std::unique_ptr<StepPlan> step_;
  std::vector<int64_t> buckets_;  // decode batch sizes graphs are captured for
  struct BucketGraph {
    Graph graph;
    std::vector<uint8_t> ops;  // [num_layers] the optional launches the graph holds
    std::vector<int64_t> sig;  // under TP/PP: the other host-decided launches
    // What the captured step's agreement collectives counted on the host (ForwardParallel::
    // counters), added again at each replay.
    model::AgreementCounters counted;
    uint64_t last_used = 0;
  };
  // By bucket: one graph per set of layer ops a step needed (a uniform workload has one; each
  // mix of policies its own), the least recently used dropped past kGraphsPerBucket.
  static constexpr size_t kGraphsPerBucket = 8;
  std::map<int64_t, std::vector<BucketGraph>> graphs_;
  uint64_t graph_clock_ = 0;
  int64_t captures_ = 0;
  // The last decode step's graph on one rank (replay_last_step); null after an eager step. Valid
  // until the next step (a capture may move or drop the bucket's graphs).
  const Graph* last_graph_ = nullptr;
  std::vector<size_t> pages_before_;  // decode: block-table sizes before the step's pages
  std::unordered_map<SeqId, Sequence> seqs_;
  std::function<void(int64_t layer, bool after)> attention_marker_;
  std::function<void(int64_t done, int64_t total)> progress_;
  std::vector<Sequence*> step_seqs_;  // the decode tokens' sequences of the step being run
  std::vector<Sequence*> chunk_seqs_;  // step(): the chunks' sequences
  std::vector<bool> row_used_;
  int64_t max_pages_ = 0;
  SeqId next_id_ = 0;
  // Distributed state (all empty on one rank).
  const Distributed* dist_ = nullptr;
  std::unique_ptr<parallel::Communicator> kv_group_;
  model::ParallelBuffers pbuf_;
  model::ForwardParallel par_;
  bool ranks_ready_ = false;  // every rank created its engine: the others are in serve()
  bool shut_down_ = false;
  std::vector<model::LayerTrace>* rank_trace_ = nullptr;
};

}  // namespace tidal::engine
