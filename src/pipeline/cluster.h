// The processes that share one run. Under `mpirun` (in a build with MPI)
// every rank is one of them; otherwise this process is alone. The pipeline
// only needs a barrier, a gather of text to rank 0 and a broadcast from it.
#pragma once
#include <string>
#include <vector>

namespace kt {

struct ClusterInfo {
  int rank = 0, size = 1;            // MPI_COMM_WORLD
  int local_rank = 0, local_size = 1;  // ranks on this node (GPU choice, threads)
  bool mpi = false;                  // MPI is initialized
};

// Starts MPI when this process was launched by mpirun/srun and knowtrace was
// built with MPI; otherwise a single process. Call once, first thing in main.
// kt::Error when mpirun started several ranks of a build without MPI.
void cluster_init(int* argc, char*** argv);
void cluster_finalize();
const ClusterInfo& cluster();
// Stops every rank (after an error on one: the others must not wait forever).
[[noreturn]] void cluster_abort(int code);
// True when the environment says mpirun started us (even in a build without MPI).
bool launched_by_mpi();

void cluster_barrier();
// Each rank's `mine`, in rank order, at rank 0; other ranks get {}.
std::vector<std::string> cluster_gather(const std::string& mine);
// Rank 0's `value` at every rank.
std::string cluster_broadcast(const std::string& value);

}  // namespace kt
