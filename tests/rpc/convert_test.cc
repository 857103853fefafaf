// SPDX-License-Identifier: Apache-2.0
// rpc/convert: every StatusCode maps to its gRPC code; requests become engine requests (ids,
// text with the stories260K tokenizer, Llama-3 chat messages, attention policies, defaults kept
// for unset fields); each bad request is one line naming its field; results, statistics and the
// model's description become responses.
#include "rpc/convert.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/tokenizer.h"
#include "tests/testing/testing.h"

namespace tidal::rpc {
namespace {

using ::tidal::testing::shared_path;
using v1::GenerateRequest;

constexpr int64_t kPage = 16;  // the KV cache page size the conversions check Quest against

constexpr const char* kStoriesDir = "models/stories260K/hf";
constexpr const char* kLlama3Json = "tokenizers/llama3/tokenizer.json";
constexpr const char* kLlama2Model = "tokenizers/llama2/tokenizer.model";

// Tokenizers load once per binary (Llama-3 parses 9 MB of JSON).
const model::Tokenizer* cached_tokenizer(const std::string& relative, bool dir) {
  static auto* cache = new std::map<std::string, std::unique_ptr<model::Tokenizer>>();
  std::unique_ptr<model::Tokenizer>& slot = (*cache)[relative];
  if (!slot) {
    const Status s = dir ? model::Tokenizer::load_from_dir(shared_path(relative), &slot)
                         : model::Tokenizer::load(shared_path(relative), &slot);
    if (!s.ok()) ADD_FAILURE() << s.to_string();
  }
  return slot.get();
}

// A stories260K-shaped config (vocab 512, BOS 1, EOS 2) that needs no fixture.
model::ModelConfig small_config() {
  model::ModelConfig c;
  c.name = "test";
  c.vocab = 512;
  c.bos_token_id = 1;
  c.eos_token_ids = {2};
  return c;
}

GenerateRequest ids_request(std::vector<int32_t> ids) {
  GenerateRequest req;
  req.set_request_id("r1");
  for (int32_t id : ids) req.mutable_ids()->add_ids(id);
  return req;
}

// --- Status -> grpc::Status ---

TEST(ToGrpcStatus, EveryCodeMaps) {
  const std::vector<std::pair<StatusCode, grpc::StatusCode>> cases = {
      {StatusCode::kInvalidArgument, grpc::StatusCode::INVALID_ARGUMENT},
      {StatusCode::kNotFound, grpc::StatusCode::NOT_FOUND},
      {StatusCode::kOutOfRange, grpc::StatusCode::OUT_OF_RANGE},
      {StatusCode::kOutOfMemory, grpc::StatusCode::RESOURCE_EXHAUSTED},
      {StatusCode::kUnavailable, grpc::StatusCode::UNAVAILABLE},
      {StatusCode::kInternal, grpc::StatusCode::INTERNAL},
      {StatusCode::kAlreadyExists, grpc::StatusCode::ALREADY_EXISTS},
  };
  for (const auto& [code, want] : cases) {
    const grpc::Status g = to_grpc_status(Status(code, "boom: detail"));
    EXPECT_EQ(g.error_code(), want) << Status(code, "").to_string();
    EXPECT_EQ(g.error_message(), "boom: detail");
  }
  const grpc::Status ok = to_grpc_status(ok_status());
  EXPECT_TRUE(ok.ok());
  EXPECT_EQ(ok.error_message(), "");
}

// --- GenerateRequest -> engine::GenerationRequest ---

TEST(FromProto, IdsPromptIsTakenAsIs) {
  engine::GenerationRequest out;
  const Status s = from_proto(ids_request({1, 0, 511, 42}), nullptr, small_config(), kPage, &out);
  ASSERT_TRUE(s.ok()) << s.to_string();
  EXPECT_EQ(out.prompt, (std::vector<int32_t>{1, 0, 511, 42}));
  EXPECT_EQ(out.stop.eos_ids, (std::vector<int32_t>{2}));
}

TEST(FromProto, UnsetOptionalsKeepDefaults) {
  const engine::SamplingParams sampling_default;
  const engine::StopConditions stop_default;
  GenerateRequest req = ids_request({5});
  for (bool with_empty_messages : {false, true}) {
    if (with_empty_messages) {
      req.mutable_sampling();  // present but every optional unset
      req.mutable_stop();
    }
    engine::GenerationRequest out;
    ASSERT_TRUE(from_proto(req, nullptr, small_config(), kPage, &out).ok());
    EXPECT_EQ(out.sampling.temperature, sampling_default.temperature);
    EXPECT_EQ(out.sampling.top_k, sampling_default.top_k);
    EXPECT_EQ(out.sampling.top_p, sampling_default.top_p);
    EXPECT_EQ(out.sampling.min_p, sampling_default.min_p);
    EXPECT_EQ(out.sampling.seed, sampling_default.seed);
    EXPECT_EQ(out.stop.max_new_tokens, stop_default.max_new_tokens);
    EXPECT_TRUE(out.stop.stop_strings.empty());
    EXPECT_FALSE(out.stop.ignore_eos);
  }
}

TEST(FromProto, SetFieldsAreCopied) {
  GenerateRequest req = ids_request({5});
  req.mutable_sampling()->set_temperature(0.0f);  // set to a zero: greedy, not "unset"
  req.mutable_sampling()->set_top_k(40);
  req.mutable_sampling()->set_top_p(0.9f);
  req.mutable_sampling()->set_min_p(0.05f);
  req.mutable_sampling()->set_seed(0xFFFFFFFFFFFFFFFFull);
  req.mutable_stop()->set_max_new_tokens(7);
  req.mutable_stop()->set_ignore_eos(true);
  engine::GenerationRequest out;
  ASSERT_TRUE(from_proto(req, nullptr, small_config(), kPage, &out).ok());
  EXPECT_TRUE(out.sampling.greedy());
  EXPECT_EQ(out.sampling.top_k, 40);
  EXPECT_EQ(out.sampling.top_p, 0.9f);
  EXPECT_EQ(out.sampling.min_p, 0.05f);
  EXPECT_EQ(out.sampling.seed, 0xFFFFFFFFFFFFFFFFull);
  EXPECT_EQ(out.stop.max_new_tokens, 7);
  EXPECT_TRUE(out.stop.ignore_eos);
}

TEST(FromProto, EmptyTextWithoutTokenizerIsConfigBos) {
  GenerateRequest req;
  req.set_text("");
  engine::GenerationRequest out;
  ASSERT_TRUE(from_proto(req, nullptr, small_config(), kPage, &out).ok());
  EXPECT_EQ(out.prompt, (std::vector<int32_t>{1}));
}

TEST(FromProto, StoriesTextIsEncodedWithBos) {
  TIDAL_SKIP_WITHOUT_SHARED(kStoriesDir);
  const model::Tokenizer* tok = cached_tokenizer(kStoriesDir, /*dir=*/true);
  ASSERT_NE(tok, nullptr);
  model::ModelConfig config;
  ASSERT_TRUE(model::load_model_config(shared_path(kStoriesDir), &config).ok());
  GenerateRequest req;
  req.set_text("Once upon a time");
  req.mutable_stop()->add_stop_strings("Lily");
  engine::GenerationRequest out;
  const Status s = from_proto(req, tok, config, kPage, &out);
  ASSERT_TRUE(s.ok()) << s.to_string();
  // The ids of tokenizer_golden.json's first sentence, which starts with these four words.
  EXPECT_EQ(out.prompt, (std::vector<int32_t>{1, 403, 407, 261, 378}));
  EXPECT_EQ(out.stop.stop_strings, (std::vector<std::string>{"Lily"}));
  // config EOS 2 and the tokenizer's EOS 2, once.
  EXPECT_EQ(out.stop.eos_ids, (std::vector<int32_t>{2}));
}

TEST(FromProto, StoriesEmptyTextIsBosOnly) {
  TIDAL_SKIP_WITHOUT_SHARED(kStoriesDir);
  const model::Tokenizer* tok = cached_tokenizer(kStoriesDir, /*dir=*/true);
  ASSERT_NE(tok, nullptr);
  model::ModelConfig config = small_config();
  for (int32_t config_bos : {1, -1}) {  // the config's BOS, else the tokenizer's
    config.bos_token_id = config_bos;
    GenerateRequest req;
    req.set_text("");
    engine::GenerationRequest out;
    ASSERT_TRUE(from_proto(req, tok, config, kPage, &out).ok());
    EXPECT_EQ(out.prompt, (std::vector<int32_t>{tok->bos_id()}));
    EXPECT_EQ(tok->bos_id(), 1);
  }
}

// libsentencepiece bundles its own protobuf; in a process that also has libprotobuf (every
// binary with tidal_rpc) both must still work. See the link order in rpc/CMakeLists.txt.
TEST(FromProto, Llama2SentencePieceWorksBesideProtobuf) {
  TIDAL_SKIP_WITHOUT_SHARED(kLlama2Model);
  const model::Tokenizer* tok = cached_tokenizer(kLlama2Model, /*dir=*/false);
  ASSERT_NE(tok, nullptr);
  model::ModelConfig config = small_config();
  config.vocab = 32000;
  GenerateRequest req;
  req.set_text("Hello world");
  engine::GenerationRequest out;
  const Status s = from_proto(req, tok, config, kPage, &out);
  ASSERT_TRUE(s.ok()) << s.to_string();
  EXPECT_EQ(out.prompt, (std::vector<int32_t>{1, 15043, 3186}));
  std::string text;
  ASSERT_TRUE(tok->decode(out.prompt, /*skip_special=*/true, &text).ok());
  EXPECT_EQ(text, "Hello world");
}

TEST(FromProto, Llama3ChatUsesTheTemplateAndItsEos) {
  TIDAL_SKIP_WITHOUT_SHARED(kLlama3Json);
  const model::Tokenizer* tok = cached_tokenizer(kLlama3Json, /*dir=*/false);
  ASSERT_NE(tok, nullptr);
  model::ModelConfig config;
  ASSERT_TRUE(model::model_config_preset("llama3-8b", &config).ok());
  GenerateRequest req;
  v1::ChatMessage* m = req.mutable_chat()->add_messages();
  m->set_role("user");
  m->set_content("  Hello!\n");
  engine::GenerationRequest out;
  const Status s = from_proto(req, tok, config, kPage, &out);
  ASSERT_TRUE(s.ok()) << s.to_string();
  // <|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|>
  // <|start_header_id|>assistant<|end_header_id|>\n\n
  EXPECT_EQ(out.prompt, (std::vector<int32_t>{128000, 128006, 882, 128007, 271, 9906, 0, 128009,
                                              128006, 78191, 128007, 271}));
  const std::vector<int32_t>& eos = out.stop.eos_ids;
  EXPECT_EQ(std::count(eos.begin(), eos.end(), 128009), 1);  // <|eot_id|>
  for (int32_t id : config.eos_token_ids) EXPECT_EQ(std::count(eos.begin(), eos.end(), id), 1);
  if (tok->eos_id() >= 0) {
    EXPECT_EQ(std::count(eos.begin(), eos.end(), tok->eos_id()), 1);
  }
  // A conversation: every turn in its header, trimmed, then the assistant's header.
  GenerateRequest conv;
  const std::pair<const char*, const char*> turns[] = {
      {"system", "Be brief."}, {"user", "Hi"}, {"assistant", " Hello! "}, {"user", "Bye"}};
  for (const auto& [role, content] : turns) {
    v1::ChatMessage* cm = conv.mutable_chat()->add_messages();
    cm->set_role(role);
    cm->set_content(content);
  }
  ASSERT_TRUE(from_proto(conv, tok, config, kPage, &out).ok());
  std::vector<int32_t> want;
  ASSERT_TRUE(tok->encode("<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
                          "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                          "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
                          "<|start_header_id|>user<|end_header_id|>\n\nBye<|eot_id|>"
                          "<|start_header_id|>assistant<|end_header_id|>\n\n",
                          /*add_bos=*/false, &want)
                  .ok());
  want.insert(want.begin(), 128000);
  EXPECT_EQ(out.prompt, want);
}

TEST(FromProto, EosIdsAreDeduplicatedInOrder) {
  model::ModelConfig config = small_config();
  config.eos_token_ids = {7, 2, 7, 3, 2};
  engine::GenerationRequest out;
  ASSERT_TRUE(from_proto(ids_request({1}), nullptr, config, kPage, &out).ok());
  EXPECT_EQ(out.stop.eos_ids, (std::vector<int32_t>{7, 2, 3}));
}

// --- Bad requests: kInvalidArgument, one line, naming the field; `out` untouched. ---

struct BadCase {
  std::string name;
  std::function<void(GenerateRequest*)> edit;  // applied to ids_request({1, 2})
  std::string field;                           // must appear in the message
};

class FromProtoBad : public ::testing::TestWithParam<BadCase> {};

TEST_P(FromProtoBad, FailsNamingTheField) {
  const BadCase& c = GetParam();
  GenerateRequest req = ids_request({1, 2});
  c.edit(&req);
  engine::GenerationRequest out;
  out.prompt = {99};
  const Status s = from_proto(req, /*tokenizer=*/nullptr, small_config(), kPage, &out);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find(c.field), std::string::npos) << s.message();
  EXPECT_EQ(s.message().find('\n'), std::string::npos) << s.message();
  EXPECT_EQ(out.prompt, (std::vector<int32_t>{99})) << "out changed on error";
  EXPECT_EQ(to_grpc_status(s).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

const BadCase kBadCases[] = {
    {"TopPZero", [](GenerateRequest* r) { r->mutable_sampling()->set_top_p(0.0f); }, "top_p"},
    {"TopPAboveOne", [](GenerateRequest* r) { r->mutable_sampling()->set_top_p(1.5f); }, "top_p"},
    {"NegativeTemperature",
     [](GenerateRequest* r) { r->mutable_sampling()->set_temperature(-0.5f); }, "temperature"},
    {"NanTemperature",
     [](GenerateRequest* r) {
       r->mutable_sampling()->set_temperature(std::numeric_limits<float>::quiet_NaN());
     },
     "temperature"},
    {"NegativeTopK", [](GenerateRequest* r) { r->mutable_sampling()->set_top_k(-1); }, "top_k"},
    {"MinPAboveOne", [](GenerateRequest* r) { r->mutable_sampling()->set_min_p(2.0f); }, "min_p"},
    {"IdAtVocab", [](GenerateRequest* r) { r->mutable_ids()->add_ids(512); }, "ids[2]"},
    {"NegativeId", [](GenerateRequest* r) { r->mutable_ids()->set_ids(0, -1); }, "ids[0]"},
    {"EmptyIds", [](GenerateRequest* r) { r->mutable_ids()->clear_ids(); }, "ids"},
    {"NoPrompt", [](GenerateRequest* r) { r->clear_prompt(); }, "prompt"},
    {"ChatWithoutTokenizer",
     [](GenerateRequest* r) {
       v1::ChatMessage* m = r->mutable_chat()->add_messages();
       m->set_role("user");
       m->set_content("hi");
     },
     "chat"},
    {"TextWithoutTokenizer", [](GenerateRequest* r) { r->set_text("hi"); }, "text"},
    {"MaxNewTokensZero", [](GenerateRequest* r) { r->mutable_stop()->set_max_new_tokens(0); },
     "max_new_tokens"},
    {"MaxNewTokensNegative", [](GenerateRequest* r) { r->mutable_stop()->set_max_new_tokens(-3); },
     "max_new_tokens"},
    {"EmptyStopString",
     [](GenerateRequest* r) {
       r->mutable_stop()->add_stop_strings("x");
       r->mutable_stop()->add_stop_strings("");
     },
     "stop.stop_strings[1]"},
    {"StopStringWithoutTokenizer",
     [](GenerateRequest* r) { r->mutable_stop()->add_stop_strings("end"); }, "stop.stop_strings"},
};

INSTANTIATE_TEST_SUITE_P(Cases, FromProtoBad, ::testing::ValuesIn(kBadCases),
                         [](const ::testing::TestParamInfo<BadCase>& info) {
                           return info.param.name;
                         });

TEST(FromProto, EmptyTextWithNoBosAnywhereFails) {
  model::ModelConfig config = small_config();
  config.bos_token_id = -1;
  GenerateRequest req;
  req.set_text("");
  engine::GenerationRequest out;
  const Status s = from_proto(req, nullptr, config, kPage, &out);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("text"), std::string::npos) << s.message();
}

TEST(FromProto, StoriesChatFailsWithoutLlama3Tokens) {
  TIDAL_SKIP_WITHOUT_SHARED(kStoriesDir);
  const model::Tokenizer* tok = cached_tokenizer(kStoriesDir, /*dir=*/true);
  ASSERT_NE(tok, nullptr);
  GenerateRequest req;
  v1::ChatMessage* m = req.mutable_chat()->add_messages();
  m->set_role("user");
  m->set_content("hi");
  engine::GenerationRequest out;
  const Status s = from_proto(req, tok, small_config(), kPage, &out);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message().rfind("chat: ", 0), 0u) << s.message();
}

// --- results, statistics and the model -> responses ---

TEST(ToProto, FinalMessageHoldsUsageAndStats) {
  engine::GenerationResult result;
  result.tokens = {5, 6, 2};
  result.finish = engine::FinishReason::kEos;
  result.prompt_tokens = 4;
  result.queue_seconds = 0.125;
  result.prefill_seconds = 0.25;
  result.first_token_seconds = 0.5;
  result.decode_seconds = 1.5;
  result.stats.decode_steps = 2;
  result.stats.rows[int(model::LayerRole::kDense)] = 100;
  result.stats.layer_steps[int(model::LayerRole::kDense)] = 4;
  result.stats.rows[int(model::LayerRole::kSparse)] = 30;
  result.stats.layer_steps[int(model::LayerRole::kSparse)] = 6;
  result.stats.overlap_kept = 7;
  result.stats.overlap_total = 9;
  result.stats.correction_passes = 1;
  result.stats.correction_tokens = 8;
  v1::FinalMessage f;
  to_proto(result, &f);
  EXPECT_EQ(f.finish(), v1::FINISH_REASON_EOS);
  EXPECT_EQ(f.usage().prompt_tokens(), 4);
  EXPECT_EQ(f.usage().generated_tokens(), 3);
  EXPECT_EQ(f.usage().queue_seconds(), 0.125);
  EXPECT_EQ(f.usage().prefill_seconds(), 0.25);
  EXPECT_EQ(f.usage().first_token_seconds(), 0.5);
  EXPECT_EQ(f.usage().decode_seconds(), 1.5);
  ASSERT_EQ(f.stats().roles_size(), 2);  // the roles that ran
  EXPECT_EQ(f.stats().roles(0).role(), "dense");
  EXPECT_EQ(f.stats().roles(0).rows(), 100);
  EXPECT_EQ(f.stats().roles(1).role(), "sparse");
  EXPECT_EQ(f.stats().roles(1).layer_steps(), 6);
  EXPECT_EQ(f.stats().rows_total(), 130);
  EXPECT_EQ(f.stats().overlap_kept(), 7);
  EXPECT_EQ(f.stats().overlap_total(), 9);
  EXPECT_EQ(f.stats().correction_passes(), 1);
  EXPECT_EQ(f.stats().correction_tokens(), 8);
}

TEST(ToProto, SchedulerStats) {
  engine::SchedulerStats in;
  in.queued = 3;
  in.running = 2;
  in.kv_pages_total = 10;
  in.kv_pages_used = 4;
  in.correction_passes = 5;
  in.tokens_per_second = 12.5;
  v1::Stats out;
  to_proto(in, &out);
  EXPECT_EQ(out.queued(), 3);
  EXPECT_EQ(out.running(), 2);
  EXPECT_EQ(out.kv_pages_free(), 6);
  EXPECT_EQ(out.kv_pages_used(), 4);
  EXPECT_EQ(out.correction_passes(), 5);
  EXPECT_EQ(out.tokens_per_second(), 12.5);
}

// --- attention policies ---

TEST(PolicyFromProto, TidalFieldsAreCopied) {
  model::ModelConfig config = small_config();
  config.num_layers = 8;
  config.num_heads = 4;
  config.num_kv_heads = 2;
  v1::AttentionPolicy in;
  in.set_kind("tidal");
  in.set_budget(64);
  in.set_granularity("shared");
  in.set_sparse_start(1);
  in.mutable_reselect_layers()->add_layers(5);
  in.set_agreement("exact");
  model::AttentionPolicy p;
  const Status s = policy_from_proto(in, 16, config, kPage, &p);
  ASSERT_TRUE(s.ok()) << s.to_string();
  EXPECT_EQ(p.kind, model::AttentionKind::kTidal);
  EXPECT_EQ(p.tidal.budget, 64);
  EXPECT_EQ(p.tidal.granularity, model::Granularity::kShared);
  EXPECT_EQ(p.tidal.sparse_start, 1);
  EXPECT_EQ(p.tidal.reselect_layers, std::vector<int64_t>{5});
  EXPECT_EQ(p.tidal.agreement, model::Agreement::kExact);
  EXPECT_EQ(p.correction_interval, 16);
  // Unset re-selection layers: the model's default; set and empty: none.
  in.clear_reselect_layers();
  ASSERT_TRUE(policy_from_proto(in, 0, config, kPage, &p).ok());
  EXPECT_FALSE(p.tidal.reselect_layers.has_value());
  in.mutable_reselect_layers();
  ASSERT_TRUE(policy_from_proto(in, 0, config, kPage, &p).ok());
  EXPECT_EQ(p.tidal.reselect_layers, std::vector<int64_t>{});
  // Empty kind: full; Quest takes the cache's page size.
  ASSERT_TRUE(policy_from_proto(v1::AttentionPolicy(), 0, config, kPage, &p).ok());
  EXPECT_EQ(p.kind, model::AttentionKind::kFull);
  v1::AttentionPolicy quest;
  quest.set_kind("quest");
  quest.set_budget(32);
  ASSERT_TRUE(policy_from_proto(quest, 4, config, kPage, &p).ok());
  EXPECT_EQ(p.quest.budget, 32);
  EXPECT_EQ(p.quest.page_size, kPage);
}

TEST(PolicyFromProto, BadPoliciesNameTheField) {
  model::ModelConfig config = small_config();
  config.num_layers = 8;
  config.num_heads = 4;
  config.num_kv_heads = 2;
  const struct {
    const char* name;
    std::function<void(v1::AttentionPolicy*)> edit;
    int64_t correction;
    const char* want;
  } cases[] = {
      {"unknown kind", [](v1::AttentionPolicy* p) { p->set_kind("sparse"); }, 0,
       "attention.kind: unknown attention 'sparse'"},
      {"budget 1", [](v1::AttentionPolicy* p) { p->set_budget(1); }, 0, "budget must be >= 2"},
      {"reselect out of range",
       [](v1::AttentionPolicy* p) { p->mutable_reselect_layers()->add_layers(8); }, 0,
       "layer 8 is outside the 8 layers"},
      {"unknown granularity", [](v1::AttentionPolicy* p) { p->set_granularity("per-token"); }, 0,
       "attention.granularity: unknown granularity"},
      {"negative correction", [](v1::AttentionPolicy*) {}, -2, "correction_interval must be >= 0"},
      {"budget with full",
       [](v1::AttentionPolicy* p) {
         p->set_kind("full");
         p->set_budget(8);
       },
       0, "attention.budget: has no effect with attention kind 'full'"},
      {"granularity with quest",
       [](v1::AttentionPolicy* p) {
         p->set_kind("quest");
         p->set_granularity("shared");
       },
       0, "attention.granularity: has no effect with attention kind 'quest'"},
      {"correction with full", [](v1::AttentionPolicy* p) { p->set_kind("full"); }, 8,
       "correction_interval: has no effect"},
  };
  for (const auto& c : cases) {
    v1::AttentionPolicy in;
    in.set_kind("tidal");
    c.edit(&in);
    model::AttentionPolicy p;
    const Status s = policy_from_proto(in, c.correction, config, kPage, &p);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << c.name;
    EXPECT_NE(s.message().find(c.want), std::string::npos) << c.name << ": " << s.message();
  }
}

TEST(FromProto, MalformedChatMessagesNameTheMessage) {
  // The structure is checked before the template's tokens: any tokenizer shows it.
  TIDAL_SKIP_WITHOUT_SHARED(kStoriesDir);
  const model::Tokenizer* tok = cached_tokenizer(kStoriesDir, /*dir=*/true);
  ASSERT_NE(tok, nullptr);
  const model::ModelConfig config = small_config();
  const std::vector<std::vector<std::pair<std::string, std::string>>> bad = {
      {},
      {{"robot", "hi"}},
      {{"user", "hi"}, {"system", "be brief"}, {"user", "again"}},
      {{"user", "hi"}, {"assistant", "hello"}},
  };
  const char* want[] = {"chat: messages: a chat needs at least one message",
                        "chat: messages[0].role: 'robot' is not system, user or assistant",
                        "chat: messages[1].role: a system message may only come first",
                        "chat: messages[1].role: the last message must be the user's"};
  for (size_t i = 0; i < bad.size(); ++i) {
    GenerateRequest req;
    req.mutable_chat();
    for (const auto& [role, content] : bad[i]) {
      v1::ChatMessage* m = req.mutable_chat()->add_messages();
      m->set_role(role);
      m->set_content(content);
    }
    engine::GenerationRequest out;
    const Status s = from_proto(req, tok, config, kPage, &out);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << i;
    EXPECT_EQ(s.message().rfind(want[i], 0), 0u) << s.message();
  }
}

TEST(ToProto, EveryFinishReasonMaps) {
  const std::vector<std::pair<engine::FinishReason, v1::FinishReason>> cases = {
      {engine::FinishReason::kEos, v1::FINISH_REASON_EOS},
      {engine::FinishReason::kLength, v1::FINISH_REASON_LENGTH},
      {engine::FinishReason::kStopString, v1::FINISH_REASON_STOP_STRING},
      {engine::FinishReason::kContext, v1::FINISH_REASON_CONTEXT},
      {engine::FinishReason::kCancelled, v1::FINISH_REASON_CANCELLED},
      {engine::FinishReason::kKvCapacity, v1::FINISH_REASON_KV_CAPACITY},
  };
  for (const auto& [reason, want] : cases) {
    EXPECT_EQ(to_proto(reason), want) << engine::finish_reason_name(reason);
  }
}

// A tidal request without layers takes the model's (tidal_policy.json); one that names either
// layer field keeps its own, as `tidal generate`'s flags do; other kinds are left alone.
TEST(PolicyFromProto, ModelLayersFillATidalRequestWithoutLayers) {
  model::ModelConfig config = small_config();
  config.num_layers = 8;
  config.num_heads = 4;
  config.num_kv_heads = 2;
  const ModelLayers layers{true, 3, {6}, "tidal_policy.json"};
  v1::AttentionPolicy in;
  in.set_kind("tidal");
  in.set_budget(16);
  model::AttentionPolicy p;
  ASSERT_TRUE(policy_from_proto(in, 0, config, kPage, &p, &layers).ok());
  EXPECT_EQ(p.tidal.sparse_start, 3);
  EXPECT_EQ(p.tidal.reselect_layers, std::vector<int64_t>{6});
  in.set_sparse_start(1);
  ASSERT_TRUE(policy_from_proto(in, 0, config, kPage, &p, &layers).ok());
  EXPECT_EQ(p.tidal.sparse_start, 1);
  EXPECT_FALSE(p.tidal.reselect_layers.has_value());
  in.clear_sparse_start();
  in.mutable_reselect_layers()->add_layers(5);
  ASSERT_TRUE(policy_from_proto(in, 0, config, kPage, &p, &layers).ok());
  EXPECT_EQ(p.tidal.sparse_start, 2);
  EXPECT_EQ(p.tidal.reselect_layers, std::vector<int64_t>{5});
  // Not found: the depth-scaled rule, as without a file.
  in.clear_reselect_layers();
  const ModelLayers none;
  ASSERT_TRUE(policy_from_proto(in, 0, config, kPage, &p, &none).ok());
  EXPECT_EQ(p.tidal.sparse_start, 2);
  EXPECT_FALSE(p.tidal.reselect_layers.has_value());
  v1::AttentionPolicy quest;
  quest.set_kind("quest");
  quest.set_budget(16);
  ASSERT_TRUE(policy_from_proto(quest, 0, config, kPage, &p, &layers).ok());
  EXPECT_EQ(p.kind, model::AttentionKind::kQuest);
}

}  // namespace
}  // namespace tidal::rpc
