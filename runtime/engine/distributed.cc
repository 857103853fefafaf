// SPDX-License-Identifier: Apache-2.0
#include "runtime/engine/distributed.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

namespace tidal::engine {
namespace {

// One rank's outcome on the wire: the code and the first bytes of the message.
struct Outcome {
  int32_t code = 0;
  char message[252] = {};
};

}  // namespace

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

Status agree_status(parallel::Communicator& world, const Status& mine) {
  Outcome me;
  me.code = int32_t(mine.code());
  std::strncpy(me.message, mine.message().c_str(), sizeof(me.message) - 1);
  std::vector<Outcome> all(size_t(world.size()));
  const int64_t n = int64_t(sizeof(Outcome));
  world.all_gather(make_view(all.data(), DType::kU8, {world.size() * n}),
                   make_view(&me, DType::kU8, {n}));
  int first = -1, failed = 0;
  for (int r = 0; r < world.size(); ++r) {
    if (all[size_t(r)].code == int32_t(StatusCode::kOk)) continue;
    if (first < 0) first = r;
    ++failed;
  }
  if (first < 0) return ok_status();
  auto text = [](const Outcome& o) {
    return std::string(o.message, strnlen(o.message, sizeof(o.message)));
  };
  const Outcome& o = all[size_t(first)];
  // The same failure everywhere (a bad flag, a missing file every rank reads) needs no rank.
  bool same = failed == world.size();
  for (const Outcome& other : all) same = same && other.code == o.code && text(other) == text(o);
  if (same) return Status(StatusCode(o.code), text(o));
  std::string msg = "rank " + std::to_string(first) + ": " + text(o);
  if (failed > 1) msg += " (and " + std::to_string(failed - 1) + " more ranks failed)";
  return Status(StatusCode(o.code), msg);
}

}  // namespace tidal::engine
