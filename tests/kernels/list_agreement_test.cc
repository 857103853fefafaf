// SPDX-License-Identifier: Apache-2.0
// The approximate list agreement end to end on the host, by hand: two ranks each hold half of a
// token's heads; their local top-3 are gathered, each rank scores every candidate, the sums are
// the candidates' whole scores, and the re-selection over the merged row picks what one rank
// holding every head would pick whenever that lies inside the union of the local lists.
#include "kernels/list_agreement.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "kernels/topk_per_row.h"
#include "tests/testing/testing.h"

namespace tidal::kernels {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
const uint8_t kSelect = uint8_t(TokenRole::kSelect), kDense = uint8_t(TokenRole::kDense);

TEST(ListAgreementRef, CandidatesAreList0OfMatchingSelectingTokensOnly) {
  // Tokens: 0 selects and agrees (match 1), 1 selects with another agreement, 2 is dense.
  std::vector<int32_t> lists = {2, 5, 7, -1, 9, 9, 9, 9,  //
                                1, 2, 3, 4,  9, 9, 9, 9,  //
                                0, 1, 2, 3,  9, 9, 9, 9};
  std::vector<int32_t> counts = {3, 4, 4, 4, 4, 4};
  std::vector<uint8_t> roles = {kSelect, kSelect, kDense}, agreement = {1, 2, 1};
  std::vector<int32_t> cand(3 * 4, 77);
  ListCandidatesParams p;
  p.candidates = make_view(cand.data(), DType::kI32, {3, 4});
  p.lists = make_view(lists.data(), DType::kI32, {3, 2, 4});
  p.counts = make_view(counts.data(), DType::kI32, {3, 2});
  p.roles = make_view(roles.data(), DType::kU8, {3});
  p.agreement = make_view(agreement.data(), DType::kU8, {3});
  p.match = 1;
  list_candidates(p, Stream{});
  EXPECT_EQ(cand, (std::vector<int32_t>{2, 5, 7, -1, -1, -1, -1, -1, -1, -1, -1, -1}));
}

// One token, n = 8, budget 4 (the current position 7 and three more). Per-position partial scores
// (already summed over each rank's heads):
//   rank 0: 0.9 0.1 0.0 0.6 0.0 0.3 0.0 0.1   local top-3 of 0..6: {0, 3, 5} (+7)
//   rank 1: 0.0 0.1 0.8 0.5 0.2 0.0 0.0 0.1   local top-3 of 0..6: {2, 3, 4} (+7)
//   whole:  0.9 0.2 0.8 1.1 0.2 0.3 0.0 0.2   top-3 of 0..6: {3, 0, 2}
TEST(ListAgreementRef, TwoRanksAgreeOnTheWholeModelsList) {
  const std::vector<std::vector<float>> partial = {
      {0.9f, 0.1f, 0.0f, 0.6f, 0.0f, 0.3f, 0.0f, 0.1f},
      {0.0f, 0.1f, 0.8f, 0.5f, 0.2f, 0.0f, 0.0f, 0.1f}};
  const std::vector<std::vector<int32_t>> local = {{0, 3, 5, 7}, {2, 3, 4, 7}};
  std::vector<uint8_t> roles = {kSelect}, agreement = {1}, merged_roles = {99};
  std::vector<int32_t> lengths = {8}, budgets = {4}, num_lists = {1};
  // Gathered candidates [2 ranks, 1 token, 4].
  std::vector<int32_t> gathered;
  for (const auto& l : local) gathered.insert(gathered.end(), l.begin(), l.end());
  // Each rank scores every candidate; the all-reduce sums those into the whole scores.
  std::vector<std::vector<float>> rows;  // each rank's scores [1 token, 2 heads, 8]
  std::vector<float> totals(8, 0.0f);
  for (int rank = 0; rank < 2; ++rank) {
    std::vector<float> scores = partial[size_t(rank)];  // row 0: the rank's partial sums
    scores.insert(scores.end(), 8, 42.0f);              // row 1: another head, untouched
    std::vector<float> mine(8);
    CandidateScoresParams cs;
    cs.out = make_view(mine.data(), DType::kF32, {2, 1, 4});
    cs.candidates = make_view(gathered.data(), DType::kI32, {2, 1, 4});
    cs.scores = make_view(scores.data(), DType::kF32, {1, 2, 8});
    candidate_scores(cs, Stream{});
    if (rank == 0) {
      EXPECT_EQ(mine, (std::vector<float>{0.9f, 0.6f, 0.3f, 0.1f, 0.0f, 0.6f, 0.0f, 0.1f}));
    }
    for (size_t i = 0; i < 8; ++i) totals[i] += mine[i];
    rows.push_back(std::move(scores));
  }
  for (int rank = 0; rank < 2; ++rank) {
    std::vector<float>& scores = rows[size_t(rank)];
    MergeCandidatesParams m;
    m.scores = make_view(scores.data(), DType::kF32, {1, 2, 8});
    m.candidates = make_view(gathered.data(), DType::kI32, {2, 1, 4});
    m.totals = make_view(totals.data(), DType::kF32, {2, 1, 4});
    m.lengths = make_view(lengths.data(), DType::kI32, {1});
    m.roles = make_view(roles.data(), DType::kU8, {1});
    m.agreement = make_view(agreement.data(), DType::kU8, {1});
    m.match = 1;
    m.merged_roles = make_view(merged_roles.data(), DType::kU8, {1});
    merge_candidates(m, Stream{});
    EXPECT_EQ(merged_roles[0], kSelect);
    // Candidates 0, 2, 3, 4, 5, 7 carry whole scores; 1 and 6 were nobody's: -inf.
    const std::vector<float> want = {0.9f, -kInf, 0.8f, 1.1f, 0.2f, 0.3f, -kInf, 0.2f};
    for (int j = 0; j < 8; ++j) EXPECT_FLOAT_EQ(scores[size_t(j)], want[size_t(j)]) << j;
    EXPECT_EQ(scores[8], 42.0f) << "row 1 untouched";
    std::vector<int32_t> picked(4), count(1);
    TopkPerRowParams t;
    t.indices = make_view(picked.data(), DType::kI32, {1, 1, 4});
    t.counts = make_view(count.data(), DType::kI32, {1, 1});
    t.scores = m.scores;
    t.lengths = m.lengths;
    t.budgets = make_view(budgets.data(), DType::kI32, {1});
    t.num_lists = make_view(num_lists.data(), DType::kI32, {1});
    t.roles = m.merged_roles;
    t.active_roles = kSelectingRoles;
    ref::topk_per_row(t);
    EXPECT_EQ(picked, (std::vector<int32_t>{0, 2, 3, 7})) << "rank " << rank;
  }
}

TEST(ListAgreementRef, OtherTokensAreLeftAloneAndMaskedOutOfTheReselection) {
  std::vector<float> scores = {1, 2, 3, 4, 5, 6, 7, 8};  // [2 tokens, 1 head, 4]
  std::vector<int32_t> gathered = {0, -1, 3, 2};         // [1 rank, 2 tokens, 2]
  std::vector<float> totals = {9, 9, 9, 9};
  std::vector<int32_t> lengths = {4, 4};
  std::vector<uint8_t> roles = {kDense, uint8_t(TokenRole::kReselect)}, agreement = {1, 3};
  std::vector<uint8_t> merged_roles = {7, 7};
  MergeCandidatesParams m;
  m.scores = make_view(scores.data(), DType::kF32, {2, 1, 4});
  m.candidates = make_view(gathered.data(), DType::kI32, {1, 2, 2});
  m.totals = make_view(totals.data(), DType::kF32, {1, 2, 2});
  m.lengths = make_view(lengths.data(), DType::kI32, {2});
  m.roles = make_view(roles.data(), DType::kU8, {2});
  m.agreement = make_view(agreement.data(), DType::kU8, {2});
  m.match = 3;
  m.merged_roles = make_view(merged_roles.data(), DType::kU8, {2});
  merge_candidates(m, Stream{});
  EXPECT_EQ(merged_roles, (std::vector<uint8_t>{kDense, uint8_t(TokenRole::kReselect)}));
  EXPECT_EQ(std::vector<float>(scores.begin(), scores.begin() + 4),
            (std::vector<float>{1, 2, 3, 4}));
  EXPECT_EQ(std::vector<float>(scores.begin() + 4, scores.end()),
            (std::vector<float>{-kInf, -kInf, 9, 9}));
}

TEST(ListAgreementRef, BadShapesAreBugs) {
  std::vector<int32_t> cand(4), lists(8), counts(2);
  std::vector<uint8_t> roles = {kSelect}, agreement = {1};
  ListCandidatesParams p;
  p.candidates = make_view(cand.data(), DType::kI32, {1, 4});
  p.lists = make_view(lists.data(), DType::kI32, {1, 1, 8});
  p.counts = make_view(counts.data(), DType::kI32, {1, 1});
  p.roles = make_view(roles.data(), DType::kU8, {1});
  p.agreement = make_view(agreement.data(), DType::kU8, {1});
  p.match = 1;
  counts[0] = 6;  // longer than the 4 candidate slots
  EXPECT_DEATH(list_candidates(p, Stream{}), "longer than max_candidates");
}

}  // namespace
}  // namespace tidal::kernels
