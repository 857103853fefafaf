// SPDX-License-Identifier: Apache-2.0
#include "launch/kernel_trace.h"

#include <cxxabi.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <utility>

#include <nlohmann/json.hpp>

#if TIDAL_HAVE_CUPTI
#include <cupti.h>
#endif

namespace tidal::launch {

std::string kernel_display_name(const char* mangled) {
  if (mangled == nullptr) return "?";
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> d(abi::__cxa_demangle(mangled, nullptr, nullptr, &status),
                                           std::free);
  std::string s = status == 0 && d ? std::string(d.get()) : std::string(mangled);
  if (s.rfind("void ", 0) == 0) s.erase(0, 5);
  // Kernels in anonymous namespaces (most of kernels/*.cu): their '(' is not the parameter list's.
  const std::string anon = "(anonymous namespace)::";
  for (size_t p = s.find(anon); p != std::string::npos; p = s.find(anon, p)) s.erase(p, anon.size());
  // The parameter list: from the '(' that closes the name at template depth 0.
  int depth = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '<') ++depth;
    if (s[i] == '>') --depth;
    if (s[i] == '(' && depth == 0 && i > 0) {
      s.erase(i);
      break;
    }
  }
  const std::string ns = "tidal::kernels::cuda::";
  for (size_t p = s.find(ns); p != std::string::npos; p = s.find(ns, p)) s.erase(p, ns.size());
  return s;
}

namespace {

#if TIDAL_HAVE_CUPTI
struct TraceState {
  std::mutex mu;
  std::vector<KernelRecord> records;
  std::unordered_map<const char*, std::string> names;  // CUPTI's name pointers, demangled once
  bool on = false;
};

TraceState& state() {
  static TraceState s;
  return s;
}

constexpr size_t kBufferBytes = size_t(8) << 20;

std::string cupti_error(const char* what, CUptiResult r) {
  const char* s = nullptr;
  cuptiGetResultString(r, &s);
  return std::string("kernel trace: ") + what + ": " + (s != nullptr ? s : "unknown CUPTI error");
}

void CUPTIAPI buffer_requested(uint8_t** buffer, size_t* size, size_t* max_records) {
  *buffer = static_cast<uint8_t*>(std::aligned_alloc(8, kBufferBytes));
  *size = *buffer != nullptr ? kBufferBytes : 0;  // none: CUPTI drops records, and counts them
  *max_records = 0;
}

void CUPTIAPI buffer_completed(CUcontext, uint32_t, uint8_t* buffer, size_t, size_t valid) {
  TraceState& st = state();
  std::vector<KernelRecord> got;
  CUpti_Activity* rec = nullptr;
  {
    std::lock_guard<std::mutex> lock(st.mu);
    while (cuptiActivityGetNextRecord(buffer, valid, &rec) == CUPTI_SUCCESS) {
      if (rec->kind != CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL) continue;
      const auto* k = reinterpret_cast<const CUpti_ActivityKernel10*>(rec);
      auto it = st.names.find(k->name);
      if (it == st.names.end()) it = st.names.emplace(k->name, kernel_display_name(k->name)).first;
      KernelRecord r;
      r.name = it->second;
      r.start_ns = k->start;
      r.end_ns = k->end;
      r.stream = k->streamId;
      r.grid[0] = k->gridX, r.grid[1] = k->gridY, r.grid[2] = k->gridZ;
      r.block[0] = k->blockX, r.block[1] = k->blockY, r.block[2] = k->blockZ;
      r.registers = k->registersPerThread;
      r.static_smem = k->staticSharedMemory;
      r.dynamic_smem = k->dynamicSharedMemory;
      r.smem_config = k->sharedMemoryExecuted;
      r.carveout_pct = k->isSharedMemoryCarveoutRequested ? k->sharedMemoryCarveoutRequested : -1;
      r.graph_node = k->graphNodeId;
      got.push_back(std::move(r));
    }
    if (st.on) {
      st.records.insert(st.records.end(), std::make_move_iterator(got.begin()),
                        std::make_move_iterator(got.end()));
    }
  }
  std::free(buffer);
}
#endif

}  // namespace

Status KernelTrace::begin() {
#if TIDAL_HAVE_CUPTI
  TraceState& st = state();
  if (st.on) return ok_status();
  CUptiResult r = cuptiActivityRegisterCallbacks(buffer_requested, buffer_completed);
  if (r != CUPTI_SUCCESS) return unavailable(cupti_error("registering buffers", r));
  r = cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL);
  if (r != CUPTI_SUCCESS) return unavailable(cupti_error("tracing kernels", r));
  std::lock_guard<std::mutex> lock(st.mu);
  st.on = true;
  return ok_status();
#else
  return unavailable("kernel trace: this build has no CUPTI (a CUDA build links it)");
#endif
}

uint64_t KernelTrace::now_ns() {
#if TIDAL_HAVE_CUPTI
  uint64_t t = 0;
  cuptiGetTimestamp(&t);
  return t;
#else
  return 0;
#endif
}

Status KernelTrace::take(uint64_t from_ns, uint64_t to_ns, std::vector<KernelRecord>* out) {
#if TIDAL_HAVE_CUPTI
  const CUptiResult r = cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
  if (r != CUPTI_SUCCESS) return unavailable(cupti_error("flushing records", r));
  size_t dropped = 0;
  cuptiActivityGetNumDroppedRecords(nullptr, 0, &dropped);
  TraceState& st = state();
  std::lock_guard<std::mutex> lock(st.mu);
  std::vector<KernelRecord> all = std::move(st.records);
  st.records.clear();
  if (out == nullptr) return ok_status();
  // A forced flush hands over records whose kernels CUPTI has not timed to the end yet (end 0):
  // the caller synchronized first, so there should be none; if there are, the window's figures
  // would be wrong, and the call says so.
  size_t incomplete = 0;
  for (KernelRecord& k : all) {
    if (k.start_ns < from_ns || k.start_ns > to_ns) continue;
    if (k.end_ns < k.start_ns) {
      ++incomplete;
      continue;
    }
    out->push_back(std::move(k));
  }
  std::sort(out->begin(), out->end(),
            [](const KernelRecord& a, const KernelRecord& b) { return a.start_ns < b.start_ns; });
  if (dropped > 0) {
    return unavailable("kernel trace: CUPTI dropped " + std::to_string(dropped) +
                       " records (out of buffer memory)");
  }
  if (incomplete > 0) {
    return unavailable("kernel trace: " + std::to_string(incomplete) +
                       " kernel records without an end time (the stream was not synchronized?)");
  }
  return ok_status();
#else
  (void)from_ns, (void)to_ns, (void)out;
  return unavailable("kernel trace: this build has no CUPTI (a CUDA build links it)");
#endif
}

void KernelTrace::end() {
#if TIDAL_HAVE_CUPTI
  TraceState& st = state();
  if (!st.on) return;
  cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
  cuptiActivityDisable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL);
  std::lock_guard<std::mutex> lock(st.mu);
  st.on = false;
  st.records.clear();
#endif
}

KernelTraceSummary summarize_kernels(const std::vector<KernelRecord>& records, int64_t replays) {
  KernelTraceSummary s;
  if (records.empty()) return s;
  const double per = 1.0 / double(std::max<int64_t>(replays, 1));
  std::vector<std::pair<uint64_t, uint64_t>> spans;
  spans.reserve(records.size());
  uint64_t first = UINT64_MAX, last = 0;
  double total_ns = 0;
  struct Acc {
    double n = 0, ns = 0;
    std::map<uint32_t, int64_t> configs;
  };
  std::map<std::string, Acc> by_name;
  for (const KernelRecord& r : records) {
    const uint64_t end = std::max(r.end_ns, r.start_ns);
    spans.emplace_back(r.start_ns, end);
    first = std::min(first, r.start_ns);
    last = std::max(last, end);
    total_ns += double(end - r.start_ns);
    Acc& a = by_name[r.name];
    a.n += 1;
    a.ns += double(end - r.start_ns);
    ++a.configs[r.smem_config];
  }
  std::sort(spans.begin(), spans.end());
  double covered_ns = 0;
  uint64_t open = spans[0].first, close = spans[0].second;
  for (size_t i = 1; i < spans.size(); ++i) {
    if (spans[i].first > close) {
      covered_ns += double(close - open);
      open = spans[i].first;
    }
    close = std::max(close, spans[i].second);
  }
  covered_ns += double(close - open);
  s.window_us = double(last - first) * 1e-3 * per;
  s.kernels = double(records.size()) * per;
  s.covered_us = covered_ns * 1e-3 * per;
  s.idle_us = s.window_us - s.covered_us;
  s.overlap_us = (total_ns - covered_ns) * 1e-3 * per;
  for (const auto& [name, a] : by_name) {
    KernelGroup g;
    g.name = name;
    g.launches = a.n * per;
    g.busy_us = a.ns * 1e-3 * per;
    g.mean_us = a.ns * 1e-3 / a.n;
    g.smem_config = std::max_element(a.configs.begin(), a.configs.end(), [](auto& x, auto& y) {
                      return x.second < y.second;
                    })->first;
    s.groups.push_back(std::move(g));
  }
  std::stable_sort(s.groups.begin(), s.groups.end(),
                   [](const KernelGroup& a, const KernelGroup& b) { return a.busy_us > b.busy_us; });
  return s;
}

std::string format_kernel_summary(const std::string& label, const KernelTraceSummary& s,
                                  size_t top) {
  char buf[512];
  std::snprintf(buf, sizeof(buf),
                "# kernel_trace %s: per replay %.1f us from the first kernel's start to the last's "
                "end, %.1f kernels; some kernel running %.1f us, none %.1f us; kernels at once "
                "(durations over the running time) %.1f us\n",
                label.c_str(), s.window_us, s.kernels, s.covered_us, s.idle_us, s.overlap_us);
  std::string out = buf;
  out += "# kernel_trace   busy_us  launches   mean_us  smem_KiB  kernel\n";
  for (size_t i = 0; i < s.groups.size() && i < top; ++i) {
    const KernelGroup& g = s.groups[i];
    std::string name = g.name.size() > 110 ? g.name.substr(0, 107) + "..." : g.name;
    std::snprintf(buf, sizeof(buf), "# kernel_trace %9.1f %9.1f %9.2f %9.0f  %s\n", g.busy_us,
                  g.launches, g.mean_us, double(g.smem_config) / 1024.0, name.c_str());
    out += buf;
  }
  return out;
}

Status write_chrome_trace(const std::string& path, const std::vector<std::string>& labels,
                          const std::vector<std::vector<KernelRecord>>& rows) {
  if (labels.size() != rows.size()) return invalid_argument("kernel trace: a label per row");
  nlohmann::json events = nlohmann::json::array();
  for (size_t p = 0; p < rows.size(); ++p) {
    events.push_back({{"ph", "M"}, {"pid", p}, {"name", "process_name"},
                      {"args", {{"name", labels[p]}}}});
    if (rows[p].empty()) continue;
    uint64_t t0 = UINT64_MAX;
    for (const KernelRecord& r : rows[p]) t0 = std::min(t0, r.start_ns);
    for (const KernelRecord& r : rows[p]) {
      events.push_back(
          {{"ph", "X"},
           {"pid", p},
           {"tid", r.stream},
           {"name", r.name},
           {"ts", double(r.start_ns - t0) * 1e-3},
           {"dur", double(std::max(r.end_ns, r.start_ns) - r.start_ns) * 1e-3},
           {"args",
            {{"grid", {r.grid[0], r.grid[1], r.grid[2]}},
             {"block", {r.block[0], r.block[1], r.block[2]}},
             {"registers", r.registers},
             {"static_smem", r.static_smem},
             {"dynamic_smem", r.dynamic_smem},
             {"smem_config", r.smem_config},
             {"carveout_pct", r.carveout_pct},
             {"graph_node", r.graph_node}}}});
    }
  }
  std::ofstream f(path);
  if (!f) return invalid_argument("kernel trace: cannot write " + path);
  f << nlohmann::json{{"traceEvents", events}, {"displayTimeUnit", "ns"}}.dump() << "\n";
  if (!f) return internal_error("kernel trace: writing " + path + " failed");
  return ok_status();
}

}  // namespace tidal::launch
