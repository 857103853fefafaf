// A probe, not part of the build: how fast can one H200 read a large buffer, and does the FP8
// cache's layout (one KV head's 128-byte row every 1 KiB, 8 heads read by 8 different blocks) read
// slower than the same bytes contiguous? Built and run on the device (call 35):
//   nvcc -O3 -arch=sm_90a -o stream_probe stream_probe.cu && ./stream_probe
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdlib>
#include <cstdint>
#include <cstdio>
#include <vector>

__device__ __forceinline__ uint64_t evict_first() {
  uint64_t p;
  asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;\n" : "=l"(p));
  return p;
}

// Plain 16-byte loads, grid-stride, 4 in flight per thread.
__global__ void __launch_bounds__(256) read_ldg(const uint4* __restrict__ in, int64_t n, uint32_t* out) {
  uint32_t acc = 0;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  for (; i + 3 * stride < n; i += 4 * stride) {
    uint4 a = in[i], b = in[i + stride], c = in[i + 2 * stride], d = in[i + 3 * stride];
    acc ^= a.x ^ b.y ^ c.z ^ d.w;
  }
  for (; i < n; i += stride) acc ^= in[i].x;
  if (acc == 0x12345678u) out[0] = acc;
}

// cp.async ring like the attention kernel: each warp streams rows of `row` bytes at `pitch`
// bytes apart (pitch == row: contiguous), 16 B per lane per copy, kStages stages of 8 KiB.
template <int kStages>
__global__ void __launch_bounds__(128) read_cpasync(const uint8_t* __restrict__ base, int64_t rows,
                                                    int row, int pitch, int heads, int hint, int dpitch,
                                                    uint32_t* out) {
  extern __shared__ __align__(16) uint8_t smem[];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const uint64_t pol = evict_first();
  // block (x, head): rows [x * per, (x+1) * per) of head `head` (its bytes at head * row).
  const int head = blockIdx.y;
  const int64_t per = (rows + gridDim.x - 1) / gridDim.x;
  const int64_t r0 = int64_t(blockIdx.x) * per, r1 = min(rows, r0 + per);
  const int stage_rows = 8192 / row;  // rows of one stage of a warp
  uint8_t* ring = smem + warp * kStages * 9216;  // room for rows padded to 144 B
  uint32_t acc = 0;
  int64_t nst = (r1 - r0 + 4 * stage_rows - 1) / (4 * stage_rows);
  auto issue = [&](int64_t s) {
    const int64_t first = r0 + (s * 4 + warp) * stage_rows;
    uint8_t* dst = ring + (s % kStages) * 9216;
    for (int c = 0; c < 16; ++c) {  // 16 copies of 512 B: the stage's 8 KiB
      const int off = c * 512 + lane * 16, r = off / row, col = off % row;
      const int64_t gr = first + r;
      const bool ok = gr < r1;
      const uint8_t* src = base + (ok ? gr : 0) * pitch + int64_t(head) * row + col;
      const uint32_t d = uint32_t(__cvta_generic_to_shared(dst + r * dpitch + col));
      if (hint)
        asm volatile("cp.async.cg.shared.global.L2::cache_hint [%0], [%1], 16, %2, %3;\n" ::"r"(d), "l"(src), "r"(ok ? 16 : 0), "l"(pol));
      else
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(src), "r"(ok ? 16 : 0));
    }
  };
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < nst) issue(s);
    asm volatile("cp.async.commit_group;\n" ::);
  }
  for (int64_t j = 0; j < nst; ++j) {
    if (j + kStages - 1 < nst) issue(j + kStages - 1);
    asm volatile("cp.async.commit_group;\n" ::);
    asm volatile("cp.async.wait_group %0;\n" ::"n"(kStages - 1) : "memory");
    __syncwarp();
    acc ^= reinterpret_cast<const uint32_t*>(ring + (j % kStages) * 9216)[lane * 3];
    __syncwarp();
  }
  if (acc == 0x12345678u) out[0] = acc;
}

int main(int argc, char** argv) {
  const int only = argc > 1 ? std::atoi(argv[1]) : -1;  // one config per process: errors are sticky
  const int64_t bytes = int64_t(2) << 30;  // 2 GiB: an FP8 layer's K and V at 2^20 tokens
  uint8_t *buf, *dst;
  uint32_t* out;
  cudaMalloc(&buf, bytes);
  cudaMalloc(&dst, bytes);
  cudaMalloc(&out, 4);
  cudaMemset(buf, 1, bytes);
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  auto timeit = [&](const char* name, auto&& launch, double moved) {
    for (int i = 0; i < 3; ++i) launch();
    std::vector<float> ms;
    for (int i = 0; i < 15; ++i) {
      cudaEventRecord(e0);
      launch();
      cudaEventRecord(e1);
      cudaEventSynchronize(e1);
      float t;
      cudaEventElapsedTime(&t, e0, e1);
      ms.push_back(t);
    }
    std::sort(ms.begin(), ms.end());
    const double med = ms[ms.size() / 2];
    std::printf("%-64s %8.1f us  %6.3f TB/s  %s\n", name, med * 1e3, moved / (med * 1e-3) / 1e12,
                cudaGetErrorString(cudaGetLastError()));
  };
  if (only < 0) timeit("memcpy D2D (read + write)", [&] { cudaMemcpyAsync(dst, buf, bytes, cudaMemcpyDeviceToDevice); },
         2.0 * bytes);
  for (int bps : {4, 8, 16}) {
    if (only >= 0) break;
    char name[96];
    std::snprintf(name, sizeof(name), "ldg.128 grid-stride, %d blocks/SM x 256", bps);
    timeit(name, [&] { read_ldg<<<132 * bps, 256>>>(reinterpret_cast<const uint4*>(buf), bytes / 16, out); },
           double(bytes));
  }
  constexpr int S = 3;
  const size_t smem = 4 * S * 9216;
  cudaFuncSetAttribute(read_cpasync<S>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
  struct Cfg { int row, heads, splits, hint, dpitch; const char* what; };
  const Cfg cfgs[] = {
      {128, 1, 264, 0, 128, "contiguous 128 B rows, 264 blocks"},
      {128, 1, 264, 0, 144, "contiguous 128 B rows, 264 blocks, smem rows padded to 144 B"},
      {128, 8, 33, 0, 128, "FP8 layout: 8 heads x 128 B / 1 KiB pitch, 33 x 8 blocks"},
      {128, 8, 33, 0, 144, "FP8 layout, smem rows padded to 144 B (the attention kernel's)"},
      {256, 8, 33, 0, 256, "bf16 layout: 8 heads x 256 B / 2 KiB pitch, 33 x 8 blocks"},
      {256, 8, 33, 0, 272, "bf16 layout, smem rows padded to 272 B (the attention kernel's)"},
  };
  for (int ci = 0; ci < int(sizeof(cfgs) / sizeof(cfgs[0])); ++ci) {
    const Cfg& c = cfgs[ci];
    if (only >= 0 && ci != only) continue;
    const int pitch = c.row * c.heads;
    const int64_t rows = bytes / pitch;
    char name[120];
    std::snprintf(name, sizeof(name), "cp.async %s", c.what);
    timeit(name, [&] {
      read_cpasync<S><<<dim3(c.splits, c.heads), 128, smem>>>(buf, rows, c.row, pitch, c.heads, c.hint, c.dpitch, out);
    }, double(rows) * pitch);
  }
  return 0;
}
