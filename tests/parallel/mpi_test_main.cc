// SPDX-License-Identifier: Apache-2.0
// gtest main for binaries run under mpirun: every rank runs every test (collectives need all
// ranks), rank 0 prints gtest's report, the other ranks print only their own failures, and every
// rank exits nonzero when any rank failed, so mpirun (and ctest) see one verdict.
#include <gtest/gtest.h>

#include <cstdio>
#include <ctime>
#include <string>

#include "parallel/mpi_communicator.h"

namespace {

// The default printer runs on rank 0 only; this one makes another rank's failures visible.
class FailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit FailurePrinter(int rank) : rank_(rank) {}

  // Remembers the test here: UnitTest::current_test_info() would take the lock that gtest holds
  // while it reports a part result, and hang.
  void OnTestStart(const ::testing::TestInfo& test) override {
    test_ = std::string(test.test_suite_name()) + "." + test.name();
  }

  void OnTestPartResult(const ::testing::TestPartResult& result) override {
    if (!result.failed()) return;
    std::fprintf(stderr, "[rank %d] failure in %s at %s:%d\n%s\n", rank_, test_.c_str(),
                 result.file_name() ? result.file_name() : "?", result.line_number(),
                 result.message());
    std::fflush(stderr);
  }

 private:
  int rank_;
  std::string test_;
};

}  // namespace

int main(int argc, char** argv) {
  tidal::parallel::MpiWorld world;
  const tidal::Status status = tidal::parallel::mpi_init(&argc, &argv, &world);
  if (!status.ok()) {
    std::fprintf(stderr, "mpi_test_main: %s\n", status.to_string().c_str());
    return 1;
  }
  ::testing::InitGoogleTest(&argc, argv);

  ::testing::TestEventListeners& listeners = ::testing::UnitTest::GetInstance()->listeners();
  if (world.rank() != 0) {
    delete listeners.Release(listeners.default_result_printer());
    delete listeners.Release(listeners.default_xml_generator());  // one report file, not N racing
    listeners.Append(new FailurePrinter(world.rank()));
  }
  // Every rank must run the tests in one order, or their collectives pair up wrongly: under
  // --gtest_shuffle all ranks take rank 0's seed.
  int seed = GTEST_FLAG_GET(random_seed);
  if (seed == 0) seed = int(std::time(nullptr) % 99991) + 1;
  MPI_Bcast(&seed, 1, MPI_INT, 0, MPI_COMM_WORLD);
  GTEST_FLAG_SET(random_seed, seed);

  int failed = RUN_ALL_TESTS() != 0 ? 1 : 0;
  MPI_Allreduce(MPI_IN_PLACE, &failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (failed && world.rank() == 0) {
    std::fprintf(stderr, "mpi_test_main: a test failed on at least one of %d ranks\n",
                 world.size());
  }
  return failed;
}
