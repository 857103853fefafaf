// SPDX-License-Identifier: Apache-2.0
// A PMPI shim that launch_parallel_test preloads (LD_PRELOAD) into the ranks of a job: rank 0
// sleeps two seconds after MPI_Finalize, as a loaded machine may keep it off the CPU just before
// it prints a failure's line, so that the test sees whether the line still comes out.
#include <mpi.h>
#include <unistd.h>

extern "C" int MPI_Finalize() {
  int rank = 0;
  PMPI_Comm_rank(MPI_COMM_WORLD, &rank);
  const int err = PMPI_Finalize();
  if (rank == 0) sleep(2);
  return err;
}
