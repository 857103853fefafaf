// SPDX-License-Identifier: Apache-2.0
// Kernel-by-kernel timelines of a decode step's CUDA graph (`tidal bench --kernel-trace FILE`),
// through CUPTI's activity API: every kernel of the replays that graph_ms times, with its start
// and end on the GPU's clock, its launch shape and the shared-memory configuration its SMs ran
// it under. Events around a step say how long it took; this says where the time went, with the
// programmatic launches' overlaps left as they are (CUDA events between kernels would serialize
// them). Written as a Chrome trace (chrome://tracing, ui.perfetto.dev), and summarized under
// each row of the table.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/status.h"

namespace tidal::launch {

struct KernelRecord {
  std::string name;  // demangled
  uint64_t start_ns = 0, end_ns = 0;
  uint32_t stream = 0;
  int32_t grid[3] = {0, 0, 0}, block[3] = {0, 0, 0};
  int32_t registers = 0;      // per thread
  int32_t static_smem = 0;    // bytes per block
  int32_t dynamic_smem = 0;   // bytes per block
  uint32_t smem_config = 0;   // the SMs' shared memory configuration it ran under, bytes
  int32_t carveout_pct = -1;  // the preferred carveout the launch asked for, -1: none
  uint64_t graph_node = 0;    // 0: not a graph node
};

// CUPTI's kernel activity for the process, from begin() on; `tidal bench` begins before any
// graph is captured or instantiated, so that no graph predates the tracing. Not thread-safe
// across begin/end; take() may run while kernels run.
class KernelTrace {
 public:
  // Starts recording every kernel. kUnavailable where this build has no CUPTI or CUPTI refuses
  // (no GPU, or a profiler already attached).
  static Status begin();
  // CUPTI's clock (the records' time base), ns.
  static uint64_t now_ns();
  // Flushes what CUPTI holds and moves the records that started in [from_ns, to_ns] into *out
  // (in start order); every other record is dropped. out may be null: drop them all.
  static Status take(uint64_t from_ns, uint64_t to_ns, std::vector<KernelRecord>* out);
  static void end();
};

// One kernel name's share of a window of `replays` graph replays, per replay.
struct KernelGroup {
  std::string name;
  double launches = 0;   // per replay
  double busy_us = 0;    // the sum of its kernels' durations, per replay
  double mean_us = 0;    // one kernel's
  uint32_t smem_config = 0;  // the most frequent configuration it ran under, bytes
};

struct KernelTraceSummary {
  double window_us = 0;   // first start to last end, per replay
  double kernels = 0;     // per replay
  double covered_us = 0;  // time some kernel ran (the union of the intervals), per replay
  double idle_us = 0;     // window - covered: no kernel running, per replay
  double overlap_us = 0;  // sum of durations - covered: kernels running at once, per replay
  std::vector<KernelGroup> groups;  // by busy_us, largest first
};

KernelTraceSummary summarize_kernels(const std::vector<KernelRecord>& records, int64_t replays);

// The summary as "# kernel_trace ..." lines under a table row: the totals, then the `top`
// largest groups.
std::string format_kernel_summary(const std::string& label, const KernelTraceSummary& s,
                                  size_t top);

// A Chrome trace: each label's records as one process (pid: its index), a thread per stream,
// times in us from the label's first start. labels.size() == rows.size().
Status write_chrome_trace(const std::string& path, const std::vector<std::string>& labels,
                          const std::vector<std::vector<KernelRecord>>& rows);

// A C++ symbol's name as written (the mangled name where it does not demangle), without the
// tidal::kernels::cuda:: namespaces every kernel shares.
std::string kernel_display_name(const char* mangled);

}  // namespace tidal::launch
