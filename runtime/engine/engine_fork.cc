// SPDX-License-Identifier: Apache-2.0
// Engine::fork: a sequence that starts from another's cached prompt. Prefill is dense under every
// policy, so the K/V a prompt leaves are the same whatever policy decodes after it; the accuracy
// harnesses (tidal niah / ppl / calibrate) prefill a prompt once and fork it for every policy they
// compare, instead of prefilling it again for each.
#include <algorithm>

#include "kernels/block_table_update.h"
#include "runtime/engine/engine.h"

namespace tidal::engine {

Status Engine::fork(SeqId source, const SequenceOptions& options, SeqId* id) {
  if (dist_ != nullptr) {
    return invalid_argument("fork: not available under tensor / pipeline parallelism");
  }
  const Sequence* src = find(source);
  if (src == nullptr) return invalid_argument("fork: unknown sequence " + std::to_string(source));
  if (src->cached != int64_t(src->tokens.size())) {
    return invalid_argument("fork: sequence " + std::to_string(source) +
                            " must be prefilled first");
  }
  const std::vector<int32_t> tokens = src->tokens;  // add_sequence may rehash seqs_
  TIDAL_RETURN_IF_ERROR(add_sequence(tokens, options, id));
  src = find(source);  // element references survive a rehash; re-found for clarity
  Sequence* dst = find(*id);
  const int64_t page = config_.page_size;
  const int64_t pages = (src->cached + page - 1) / page;
  TIDAL_CHECK(int64_t(dst->block_table.size()) >= pages && int64_t(src->block_table.size()) >= pages,
              "fork: block tables shorter than the cached positions");
  // Copy whole pages, in runs where both page ids are consecutive (pages are handed out lowest id
  // first, so a prompt's pages mostly are): a few copies per layer and tensor.
  for (int64_t p = 0; p < pages;) {
    int64_t run = 1;
    while (p + run < pages &&
           src->block_table[size_t(p + run)] == src->block_table[size_t(p)] + run &&
           dst->block_table[size_t(p + run)] == dst->block_table[size_t(p)] + run) {
      ++run;
    }
    const int64_t from = src->block_table[size_t(p)], to = dst->block_table[size_t(p)];
    for (const model::KvLayer& layer : kv_.layers()) {
      for (const TensorView& t :
           {layer.k, layer.v, layer.key_max, layer.key_min, layer.k_scale, layer.v_scale}) {
        if (t.data == nullptr) continue;  // a layer another rank holds; no bounds or scales
        const TensorView a = t.slice(from, from + run), b = t.slice(to, to + run);
        copy_bytes(b.data, b.device, a.data, a.device, a.nbytes(), stream_);
      }
    }
    p += run;
  }
  // The fork's block table goes to the device now: the next step's plan has room only for the
  // pages its own tokens add. As many plan-sized batches of entries as it takes.
  while (dst->pages_on_device < pages) {
    step_->clear();
    for (int64_t i = 0; i < step_->capacity().max_updates && dst->pages_on_device < pages; ++i) {
      step_->add_page_update(int32_t(dst->row), int32_t(dst->pages_on_device),
                             dst->block_table[size_t(dst->pages_on_device)]);
      dst->pages_on_device += 1;
    }
    if (config_.device.kind == DeviceKind::kCuda) {
      copy_bytes(plan_device_, config_.device, plan_host_, Device{}, step_->bytes(), stream_);
    }
    const model::ForwardBatch b = step_->batch(plan_device_, config_.device, block_tables_);
    kernels::block_table_update(b.block_tables, b.page_updates, stream_);
    stream_synchronize(stream_);  // the plan buffer is rebuilt for the next batch of entries
  }
  stream_synchronize(stream_);
  dst->cached = src->cached;
  return ok_status();
}

}  // namespace tidal::engine
