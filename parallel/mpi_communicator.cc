// SPDX-License-Identifier: Apache-2.0
// MPI implementation of Communicator (buffers cut into int-sized chunks; 16-bit float sums
// through user ops) and the process bootstrap.
#include "parallel/mpi_communicator.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "runtime/check.h"

namespace tidal::parallel {
namespace {

// One tag suffices: each communicator is private (dup/split), and MPI keeps the order of
// messages between two ranks on one communicator, so chunks match in order.
constexpr int kTag = 0;

std::string error_string(int error_code) {
  char text[MPI_MAX_ERROR_STRING] = "unknown MPI error";
  int len = 0;
  MPI_Error_string(error_code, text, &len);
  return "MPI error " + std::to_string(error_code) + ": " + text;
}

// Element types MPI moves. 16-bit floats travel as MPI_UINT16_T: copies need only the size, and
// all_reduce gives them their own ops.
MPI_Datatype mpi_type(DType dtype) {
  switch (dtype) {
    case DType::kF32: return MPI_FLOAT;
    case DType::kF16: return MPI_UINT16_T;
    case DType::kBF16: return MPI_UINT16_T;
    case DType::kI32: return MPI_INT32_T;
    case DType::kI64: return MPI_INT64_T;
    case DType::kU8: return MPI_UINT8_T;
  }
  TIDAL_CHECK(false, "mpi_type: unknown dtype");
}

// MPI_User_function: inout[i] = in[i] + inout[i], in f32, rounded to the storage type after each
// addition (the rounding NCCL's half-precision sums use).
void f16_sum(void* in, void* inout, int* len, MPI_Datatype*) {
  const f16* a = static_cast<const f16*>(in);
  f16* b = static_cast<f16*>(inout);
  for (int i = 0; i < *len; ++i) b[i] = f32_to_f16(f16_to_f32(a[i]) + f16_to_f32(b[i]));
}

void bf16_sum(void* in, void* inout, int* len, MPI_Datatype*) {
  const bf16* a = static_cast<const bf16*>(in);
  bf16* b = static_cast<bf16*>(inout);
  for (int i = 0; i < *len; ++i) b[i] = f32_to_bf16(bf16_to_f32(a[i]) + bf16_to_f32(b[i]));
}

int comm_rank(MPI_Comm comm) {
  int rank = 0;
  TIDAL_MPI_CHECK(MPI_Comm_rank(comm, &rank));
  return rank;
}

int comm_size(MPI_Comm comm) {
  int size = 0;
  TIDAL_MPI_CHECK(MPI_Comm_size(comm, &size));
  return size;
}

bool mpi_running() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  return initialized && !finalized;
}

// Calls fn(pointer, count) over consecutive chunks of at most max_count elements. Zero elements
// make no call, on every rank alike, since every rank passes the same count.
template <typename Fn>
void for_each_chunk(void* data, int64_t numel, DType dtype, int64_t max_count, Fn fn) {
  auto* bytes = static_cast<uint8_t*>(data);
  for (int64_t offset = 0; offset < numel; offset += max_count) {
    const int count = int(std::min(max_count, numel - offset));
    fn(bytes + size_t(offset) * dtype_size(dtype), count);
  }
}

void check_cpu(const TensorView& t, const char* op) {
  TIDAL_CHECK(t.on_cpu(), std::string("MpiCommunicator::") + op + ": views must be on the CPU");
}

}  // namespace

void mpi_fatal(const char* file, int line, const char* expr, int error_code) {
  fatal(file, line, expr, error_string(error_code));
}

std::unique_ptr<MpiCommunicator> MpiCommunicator::dup(MPI_Comm comm, int64_t max_count) {
  TIDAL_CHECK(mpi_running(), "MpiCommunicator::dup: MPI is not initialized (or is finalized)");
  MPI_Comm owned = MPI_COMM_NULL;
  TIDAL_MPI_CHECK(MPI_Comm_dup(comm, &owned));
  return std::unique_ptr<MpiCommunicator>(new MpiCommunicator(owned, max_count));
}

MpiCommunicator::MpiCommunicator(MPI_Comm owned, int64_t max_count)
    : Communicator(comm_rank(owned), comm_size(owned)), comm_(owned), max_count_(max_count) {
  TIDAL_CHECK(max_count >= 1 && max_count <= kMaxCount,
              "MpiCommunicator: max_count outside [1, INT_MAX]");
  // MPI's default handler aborts without saying where; returning the code lets
  // TIDAL_MPI_CHECK report the failing call, file:line and rank.
  TIDAL_MPI_CHECK(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
  TIDAL_MPI_CHECK(MPI_Op_create(&f16_sum, /*commute=*/1, &f16_sum_));
  TIDAL_MPI_CHECK(MPI_Op_create(&bf16_sum, /*commute=*/1, &bf16_sum_));
}

MpiCommunicator::~MpiCommunicator() {
  TIDAL_CHECK(mpi_running(),
              "~MpiCommunicator: MPI already finalized; destroy communicators "
              "before MpiWorld");
  TIDAL_MPI_CHECK(MPI_Op_free(&f16_sum_));
  TIDAL_MPI_CHECK(MPI_Op_free(&bf16_sum_));
  TIDAL_MPI_CHECK(MPI_Comm_free(&comm_));
}

void MpiCommunicator::do_all_reduce(TensorView buf, Stream) {
  check_cpu(buf, "all_reduce");
  const MPI_Datatype type = mpi_type(buf.dtype);
  const MPI_Op op = buf.dtype == DType::kF16    ? f16_sum_
                    : buf.dtype == DType::kBF16 ? bf16_sum_
                                                : MPI_SUM;
  for_each_chunk(buf.data, buf.numel(), buf.dtype, max_count_, [&](void* p, int count) {
    TIDAL_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, p, count, type, op, comm_));
  });
}

void MpiCommunicator::do_all_gather(TensorView out, TensorView in, bool in_place, Stream) {
  check_cpu(out, "all_gather");
  check_cpu(in, "all_gather");
  const int64_t n = in.numel();
  if (n == 0) return;
  const MPI_Datatype type = mpi_type(in.dtype);
  // One MPI_Allgather when even the whole output fits an int count, so no offset MPI computes
  // can overflow. Otherwise each rank broadcasts its rows in chunks: slower, but only for
  // buffers of billions of elements.
  if (out.numel() <= max_count_) {
    TIDAL_MPI_CHECK(MPI_Allgather(in_place ? MPI_IN_PLACE : in.data, int(n), type, out.data, int(n),
                                  type, comm_));
    return;
  }
  const size_t slot_bytes = in.nbytes();
  auto* out_bytes = static_cast<uint8_t*>(out.data);
  if (!in_place) std::memcpy(out_bytes + size_t(rank()) * slot_bytes, in.data, slot_bytes);
  for (int root = 0; root < size(); ++root) {
    for_each_chunk(
        out_bytes + size_t(root) * slot_bytes, n, in.dtype, max_count_,
        [&](void* p, int count) { TIDAL_MPI_CHECK(MPI_Bcast(p, count, type, root, comm_)); });
  }
}

void MpiCommunicator::do_broadcast(TensorView buf, int root, Stream) {
  check_cpu(buf, "broadcast");
  const MPI_Datatype type = mpi_type(buf.dtype);
  for_each_chunk(buf.data, buf.numel(), buf.dtype, max_count_, [&](void* p, int count) {
    TIDAL_MPI_CHECK(MPI_Bcast(p, count, type, root, comm_));
  });
}

void MpiCommunicator::do_send(TensorView in, int peer, Stream) {
  check_cpu(in, "send");
  const MPI_Datatype type = mpi_type(in.dtype);
  for_each_chunk(in.data, in.numel(), in.dtype, max_count_, [&](void* p, int count) {
    TIDAL_MPI_CHECK(MPI_Ssend(p, count, type, peer, kTag, comm_));
  });
}

void MpiCommunicator::do_recv(TensorView out, int peer, Stream) {
  check_cpu(out, "recv");
  const MPI_Datatype type = mpi_type(out.dtype);
  for_each_chunk(out.data, out.numel(), out.dtype, max_count_, [&](void* p, int count) {
    MPI_Status status;
    TIDAL_MPI_CHECK(MPI_Recv(p, count, type, peer, kTag, comm_, &status));
    // A longer message fails MPI_Recv (truncation); a shorter one arrives silently: catch it.
    int got = 0;
    TIDAL_MPI_CHECK(MPI_Get_count(&status, type, &got));
    TIDAL_CHECK(got == count, "recv: rank " + std::to_string(peer) + " sent " +
                                  std::to_string(got) + " elements, expected " +
                                  std::to_string(count) + " (mismatched send and recv shapes)");
  });
}

void MpiCommunicator::do_barrier() { TIDAL_MPI_CHECK(MPI_Barrier(comm_)); }

std::unique_ptr<Communicator> MpiCommunicator::do_split(int color, int key) {
  MPI_Comm group = MPI_COMM_NULL;
  TIDAL_MPI_CHECK(MPI_Comm_split(comm_, color, key, &group));
  return std::unique_ptr<Communicator>(new MpiCommunicator(group, max_count_));
}

MpiWorld::~MpiWorld() {
  comm_.reset();
  if (owns_mpi_ && mpi_running()) MPI_Finalize();
}

MpiCommunicator& MpiWorld::comm() const {
  TIDAL_CHECK(comm_ != nullptr, "MpiWorld::comm: mpi_init has not succeeded");
  return *comm_;
}

Status mpi_init(int* argc, char*** argv, MpiWorld* out) {
  TIDAL_CHECK(out != nullptr && out->comm_ == nullptr && !out->owns_mpi_,
              "mpi_init: `out` must be a fresh MpiWorld");
  int initialized = 0, finalized = 0;
  TIDAL_MPI_CHECK(MPI_Initialized(&initialized));
  TIDAL_MPI_CHECK(MPI_Finalized(&finalized));
  if (finalized) return unavailable("mpi_init: MPI was already finalized in this process");
  int provided = MPI_THREAD_SINGLE;
  if (!initialized) {
    const int err = MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided);
    if (err != MPI_SUCCESS) return unavailable("mpi_init: MPI_Init_thread: " + error_string(err));
    out->owns_mpi_ = true;  // from here on, ~MpiWorld finalizes, even if we fail below
  } else {
    TIDAL_MPI_CHECK(MPI_Query_thread(&provided));
  }
  if (provided < MPI_THREAD_SERIALIZED) {
    return unavailable("mpi_init: MPI gives thread level " + std::to_string(provided) +
                       ", below MPI_THREAD_SERIALIZED");
  }
  out->comm_ = MpiCommunicator::dup(MPI_COMM_WORLD);
  out->rank_ = out->comm_->rank();
  out->size_ = out->comm_->size();
  // Ranks sharing memory share a node: portable, unlike launcher variables such as
  // OMPI_COMM_WORLD_LOCAL_RANK (and launch/ stays the only reader of the environment).
  MPI_Comm node = MPI_COMM_NULL;
  TIDAL_MPI_CHECK(MPI_Comm_split_type(out->comm_->comm(), MPI_COMM_TYPE_SHARED, out->rank_,
                                      MPI_INFO_NULL, &node));
  out->local_rank_ = comm_rank(node);
  out->local_size_ = comm_size(node);
  TIDAL_MPI_CHECK(MPI_Comm_free(&node));
  set_log_rank(out->rank_);
  return ok_status();
}

}  // namespace tidal::parallel
