// SPDX-License-Identifier: Apache-2.0
#include "runtime/engine/distributed.h"

#include <algorithm>
#include <string>
#include <vector>

namespace tidal::engine {

Status Distributed::validate() const {
  if (world == nullptr || tp == nullptr || pp == nullptr) {
    return invalid_argument("distributed engine: world, tp and pp communicators are required");
  }
  TIDAL_RETURN_IF_ERROR(parallel.validate());
  if (parallel.world_size() != world->size() || tp->size() != parallel.tp_size ||
      pp->size() != parallel.pp_size) {
    return invalid_argument("distributed engine: tp " + std::to_string(parallel.tp_size) +
                            " x pp " + std::to_string(parallel.pp_size) + " does not match " +
                            std::to_string(world->size()) + " ranks (groups of " +
                            std::to_string(tp->size()) + " and " + std::to_string(pp->size()) +
                            ")");
  }
  return ok_status();
}

namespace {

// Every rank's `mine` (collective), in rank order, whose lengths every rank already holds
// (`lengths`, by rank): each padded to the longest, as a collective needs one size on every rank.
std::vector<std::string> gather_texts(parallel::Communicator& world, const std::string& mine,
                                      const std::vector<int64_t>& lengths) {
  const int ranks = world.size();
  const int64_t longest = std::max<int64_t>(1, *std::max_element(lengths.begin(), lengths.end()));
  std::vector<char> padded(size_t(longest), '\0'), all(size_t(longest) * size_t(ranks));
  std::copy(mine.begin(), mine.end(), padded.begin());
  world.all_gather(make_view(all.data(), DType::kU8, {longest * ranks}),
                   make_view(padded.data(), DType::kU8, {longest}));
  std::vector<std::string> texts;
  for (int r = 0; r < ranks; ++r) {
    texts.emplace_back(all.data() + size_t(r) * size_t(longest), size_t(lengths[size_t(r)]));
  }
  return texts;
}

}  // namespace

Status agree_status(parallel::Communicator& world, const Status& mine) {
  // Every rank's code and message length; then, only if some rank failed, the messages, whole.
  const int ranks = world.size();
  const std::string my_text = mine.message();
  int64_t head[2] = {int64_t(mine.code()), int64_t(my_text.size())};
  std::vector<int64_t> heads(size_t(2 * ranks));
  world.all_gather(make_view(heads.data(), DType::kI64, {2 * ranks}),
                   make_view(head, DType::kI64, {2}));
  int first = -1, failed = 0;
  std::vector<int64_t> lengths;
  for (int r = 0; r < ranks; ++r) {
    lengths.push_back(heads[size_t(2 * r + 1)]);
    if (heads[size_t(2 * r)] == int64_t(StatusCode::kOk)) continue;
    if (first < 0) first = r;
    ++failed;
  }
  if (first < 0) return ok_status();  // every rank saw the same heads: all return here
  const std::vector<std::string> texts = gather_texts(world, my_text, lengths);
  auto code = [&](int r) { return StatusCode(heads[size_t(2 * r)]); };
  auto text = [&](int r) { return texts[size_t(r)]; };
  // The same failure everywhere (a bad flag, a missing file every rank reads) needs no rank.
  bool same = failed == ranks;
  for (int r = 0; r < ranks; ++r) same = same && code(r) == code(first) && text(r) == text(first);
  if (same) return Status(code(first), text(first));
  std::string msg = "rank " + std::to_string(first) + ": " + text(first);
  if (failed > 1) msg += " (and " + std::to_string(failed - 1) + " more ranks failed)";
  return Status(code(first), msg);
}

int rank_differing_from_rank0(parallel::Communicator& world, int64_t mine, int64_t* rank0,
                              int64_t* theirs) {
  const int ranks = world.size();
  std::vector<int64_t> all(size_t(ranks), 0);
  world.all_gather(make_view(all.data(), DType::kI64, {ranks}), make_view(&mine, DType::kI64, {1}));
  for (int r = 1; r < ranks; ++r) {
    if (all[size_t(r)] == all[0]) continue;
    if (rank0 != nullptr) *rank0 = all[0];
    if (theirs != nullptr) *theirs = all[size_t(r)];
    return r;
  }
  return -1;
}

int rank_differing_from_rank0(parallel::Communicator& world, const std::string& mine,
                              std::string* rank0, std::string* theirs) {
  int64_t length = int64_t(mine.size());
  std::vector<int64_t> lengths(size_t(world.size()), 0);
  world.all_gather(make_view(lengths.data(), DType::kI64, {world.size()}),
                   make_view(&length, DType::kI64, {1}));
  const std::vector<std::string> all = gather_texts(world, mine, lengths);
  for (size_t r = 1; r < all.size(); ++r) {
    if (all[r] == all[0]) continue;
    if (rank0 != nullptr) *rank0 = all[0];
    if (theirs != nullptr) *theirs = all[r];
    return int(r);
  }
  return -1;
}

}  // namespace tidal::engine
