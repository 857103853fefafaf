// SPDX-License-Identifier: Apache-2.0
// linear on the GPU: out = in @ weight^T. Up to kGemvMaxTokens tokens (decode) take the GEMV of
// linear_gemv.cu, which streams the weight once; more (prefill chunks) take cuBLASLt.
//
// cuBLASLt is column-major. A row-major [M, N] out is the column-major N x M matrix out^T =
// weight x in^T, and the row-major weight [N, K] read column-major is the K x N matrix weight^T:
// so D (N x M, ld N) = op_T(A: K x N, ld K) x op_N(B: K x M, ld = in's row stride).
// 16-bit inputs compute in f32 (CUBLAS_COMPUTE_32F) and write bf16/f16/f32; f32 inputs compute in
// plain f32 (CUBLAS_COMPUTE_32F never uses TF32: the f32 path is the exactness path).
//
// State: one cuBLASLt handle and one 32 MiB workspace per device, made on the first call that
// needs them (so that call must not be inside a graph capture: the engine runs every step shape
// eagerly before capturing), and one plan (descriptors + the heuristic's algorithm) per shape,
// dtype, leading dimension and pointer alignment, so repeated calls and graph captures make no
// heuristic query. A mutex guards both maps; they live until exit (never destroyed, so no cuBLAS
// call runs after the CUDA context is torn down). The one workspace per device means linear calls
// on two streams of one device must not run concurrently; the engine computes on one stream.
#include <cublasLt.h>

#include <map>
#include <mutex>
#include <string>
#include <tuple>

#include "kernels/elementwise.cuh"
#include "kernels/linear.h"
#include "kernels/linear_gemv.cuh"

#define TIDAL_CUBLAS_CHECK(call)                                                     \
  do {                                                                               \
    const cublasStatus_t tidal_st_ = (call);                                         \
    if (tidal_st_ != CUBLAS_STATUS_SUCCESS)                                          \
      ::tidal::fatal(__FILE__, __LINE__, #call, cublasLtGetStatusString(tidal_st_)); \
  } while (0)

namespace tidal::kernels::cuda {

namespace {

constexpr size_t kWorkspaceBytes = size_t(32) << 20;

struct LtDevice {
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
};

struct PlanKey {
  int device;
  int64_t m, n, k;  // cuBLAS's: m = out_features, n = num_tokens, k = in_features
  int64_t lda, ldb, ldc;
  int in_type, out_type;
  uint32_t align_a, align_b, align_d;  // bytes; the algorithm must suit the actual pointers

  bool operator<(const PlanKey& o) const {
    return std::tie(device, m, n, k, lda, ldb, ldc, in_type, out_type, align_a, align_b, align_d) <
           std::tie(o.device, o.m, o.n, o.k, o.lda, o.ldb, o.ldc, o.in_type, o.out_type, o.align_a,
                    o.align_b, o.align_d);
  }
};

struct Plan {
  bool ok = false;  // false: cuBLASLt offered no algorithm; linear falls back to the GEMV
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};
};

std::mutex g_mutex;
// Leaked on purpose (see the header comment): plain pointers to maps that are never destroyed.
std::map<int, LtDevice>* g_devices = new std::map<int, LtDevice>();
std::map<PlanKey, Plan>* g_plans = new std::map<PlanKey, Plan>();

// The largest power of two (at most 256, cuBLASLt's default requirement) dividing the address.
uint32_t alignment_of(const void* p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  uint32_t align = 256;
  while (align > 1 && a % align != 0) align >>= 1;
  return align;
}

cudaDataType_t cuda_type(DType dtype) {
  switch (dtype) {
    case DType::kF32: return CUDA_R_32F;
    case DType::kF16: return CUDA_R_16F;
    case DType::kBF16: return CUDA_R_16BF;
    default: TIDAL_CHECK(false, std::string("linear: unsupported dtype ") + dtype_name(dtype));
  }
}

// The device's handle and workspace; made on first use (never during a capture). Caller holds
// g_mutex.
const LtDevice& lt_device(int device, Stream stream) {
  auto it = g_devices->find(device);
  if (it != g_devices->end()) return it->second;
  TIDAL_CHECK(!stream_capturing(stream),
              "linear: the first cuBLASLt call on a device must not be inside a CUDA graph "
              "capture (run every step shape once eagerly before capturing)");
  LtDevice dev;
  TIDAL_CUBLAS_CHECK(cublasLtCreate(&dev.handle));
  TIDAL_CUDA_CHECK(cudaMalloc(&dev.workspace, kWorkspaceBytes));
  return g_devices->emplace(device, dev).first->second;
}

Plan make_plan(const LtDevice& dev, const PlanKey& key) {
  Plan p;
  const auto in_t = cudaDataType_t(key.in_type), out_t = cudaDataType_t(key.out_type);
  TIDAL_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t op_t = CUBLAS_OP_T, op_n = CUBLAS_OP_N;
  TIDAL_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_t, sizeof(op_t)));
  TIDAL_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_n, sizeof(op_n)));
  // A: the weight as stored, K x N column-major (transposed by op_T); B: in^T, K x M; D: N x M.
  TIDAL_CUBLAS_CHECK(
      cublasLtMatrixLayoutCreate(&p.a, in_t, uint64_t(key.k), uint64_t(key.m), key.lda));
  TIDAL_CUBLAS_CHECK(
      cublasLtMatrixLayoutCreate(&p.b, in_t, uint64_t(key.k), uint64_t(key.n), key.ldb));
  TIDAL_CUBLAS_CHECK(
      cublasLtMatrixLayoutCreate(&p.d, out_t, uint64_t(key.m), uint64_t(key.n), key.ldc));

  cublasLtMatmulPreference_t pref = nullptr;
  TIDAL_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  const uint64_t ws = kWorkspaceBytes;
  TIDAL_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
  const std::pair<cublasLtMatmulPreferenceAttributes_t, uint32_t> aligns[] = {
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, key.align_a},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, key.align_b},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, key.align_d},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, key.align_d}};
  for (const auto& [attr, value] : aligns) {
    TIDAL_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, attr, &value, sizeof(value)));
  }
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(dev.handle, p.desc, p.a, p.b, p.d, p.d,
                                                           pref, 1, &result, &found);
  TIDAL_CUBLAS_CHECK(cublasLtMatmulPreferenceDestroy(pref));
  p.ok = st == CUBLAS_STATUS_SUCCESS && found > 0 && result.state == CUBLAS_STATUS_SUCCESS;
  if (p.ok) p.algo = result.algo;
  return p;
}

// Runs out = in @ weight^T through cuBLASLt; false when it has no algorithm for this case.
bool lt_linear(TensorView out, TensorView in, TensorView weight, Stream stream) {
  const int64_t num_tokens = in.size(0), in_features = in.size(1);
  const int64_t out_features = weight.size(0);
  PlanKey key{};
  TIDAL_CUDA_CHECK(cudaGetDevice(&key.device));
  key.m = out_features;
  key.n = num_tokens;
  key.k = in_features;
  key.lda = in_features;  // weight contiguous
  key.ldb = num_tokens > 1 ? in.stride[0] : in_features;
  key.ldc = out_features;                   // out contiguous
  if (key.ldb < in_features) return false;  // overlapping rows: cuBLAS refuses them
  key.in_type = int(cuda_type(in.dtype));
  key.out_type = int(cuda_type(out.dtype));
  key.align_a = alignment_of(weight.data);
  key.align_b = alignment_of(in.data);
  key.align_d = alignment_of(out.data);

  LtDevice dev;
  Plan plan;
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    dev = lt_device(key.device, stream);
    auto it = g_plans->find(key);
    if (it == g_plans->end()) it = g_plans->emplace(key, make_plan(dev, key)).first;
    plan = it->second;
  }
  if (!plan.ok) return false;
  const float alpha = 1.0f, beta = 0.0f;
  TIDAL_CUBLAS_CHECK(cublasLtMatmul(dev.handle, plan.desc, &alpha, weight.data, plan.a, in.data,
                                    plan.b, &beta, out.data, plan.d, out.data, plan.d, &plan.algo,
                                    dev.workspace, kWorkspaceBytes, raw_stream(stream)));
  return true;
}

}  // namespace

// out:    [num_tokens, out_features], contiguous, the dtype of in or f32
// in:     [num_tokens, in_features], dense rows
// weight: [out_features, in_features], contiguous
void linear(TensorView out, TensorView in, TensorView weight, Stream stream) {
  TIDAL_NVTX_SCOPE("linear");
  const int64_t num_tokens = in.size(0), in_features = in.size(1);
  if (num_tokens == 0 || weight.size(0) == 0) return;
  if (in_features == 0) {  // an empty sum: zeros, as ref:: gives
    TIDAL_CUDA_CHECK(cudaMemsetAsync(out.data, 0, out.nbytes(), raw_stream(stream)));
    return;
  }
  if (num_tokens <= kGemvMaxTokens || !lt_linear(out, in, weight, stream)) {
    linear_gemv(&out, 1, in, weight, raw_stream(stream));
    check_launch("linear_gemv_kernel", stream);
    return;
  }
  check_launch("cublasLtMatmul", stream);
}

// act:    [num_tokens, inter], contiguous, in's dtype
// in:     [num_tokens, in_features], dense rows
// weight: [2 inter, in_features], contiguous
bool linear_swiglu(TensorView act, TensorView in, TensorView weight, Stream stream) {
  const int64_t num_tokens = in.size(0);
  if (num_tokens < 1 || num_tokens > kGemvMaxTokens || act.size(1) == 0 || in.size(1) == 0) {
    return false;  // not decode, or nothing to stream: linear() then silu_and_mul()
  }
  TIDAL_NVTX_SCOPE("linear_swiglu");
  linear_swiglu_gemv(act, in, weight, raw_stream(stream));
  check_launch("linear_swiglu_kernel", stream);
  return true;
}

// q (p.rope_q), k, v: [num_tokens, heads, head_dim], contiguous; in: [num_tokens, in_features],
// dense rows; weight: [(num_heads + 2 num_kv_heads) * head_dim, in_features], contiguous
bool linear_qkv_append(const PagedKvAppendParams& p, TensorView in, TensorView weight,
                       Stream stream) {
  const int64_t num_tokens = in.size(0), half = p.k.size(2) / 2;
  // An FP8 cache takes the one launch when the caller keeps the counters its blocks meet by.
  const TensorView& c = p.append_counters;
  const bool fp8 = p.k_cache.dtype == DType::kU8 && c.data != nullptr && c.dtype == DType::kI32 &&
                   c.is_contiguous() && c.numel() >= num_tokens * p.k.size(1) * 2 &&
                   c.device.kind == p.k_cache.device.kind && c.device.index == p.k_cache.device.index;
  // 8 = 2 x the most rows a warp takes (GemvConfig): a pair block stays inside one head.
  if (num_tokens < 1 || num_tokens > kGemvMaxTokens || in.size(1) == 0 || half == 0 ||
      half % 8 != 0 || (p.k_cache.dtype != in.dtype && !fp8)) {
    return false;  // prefill, FP8 caches without counters, odd heads: linear_split + append
  }
  TIDAL_NVTX_SCOPE("linear_qkv_append");
  linear_qkv_append_gemv(p, in, weight, raw_stream(stream));
  check_launch("linear_qkv_append_kernel", stream);
  return true;
}

// out0, out1, out2: [num_tokens, n_i], contiguous, one dtype
// in:               [num_tokens, in_features], dense rows
// weight:           [n0 + n1 + n2, in_features], contiguous
void linear_split(TensorView out0, TensorView out1, TensorView out2, TensorView in,
                  TensorView weight, Stream stream) {
  TIDAL_NVTX_SCOPE("linear_split");
  const TensorView outs[kGemvMaxOutputs] = {out0, out1, out2};
  const int64_t num_tokens = in.size(0), in_features = in.size(1);
  if (num_tokens == 0 || weight.size(0) == 0) return;
  if (in_features == 0) {  // empty sums: zeros, as ref:: gives
    for (const TensorView& o : outs) {
      if (o.numel() > 0) {
        TIDAL_CUDA_CHECK(cudaMemsetAsync(o.data, 0, o.nbytes(), raw_stream(stream)));
      }
    }
    return;
  }
  if (num_tokens <= kGemvMaxTokens) {  // decode: the stacked weight streamed once
    linear_gemv(outs, kGemvMaxOutputs, in, weight, raw_stream(stream));
    check_launch("linear_gemv_kernel", stream);
    return;
  }
  // Prefill: one GEMM per row block (each is compute-bound; nothing to gain from one launch).
  int64_t row = 0;
  for (const TensorView& o : outs) {
    const int64_t n = o.size(1);
    if (n > 0) linear(o, in, weight.slice(row, row + n), stream);
    row += n;
  }
}

}  // namespace tidal::kernels::cuda
