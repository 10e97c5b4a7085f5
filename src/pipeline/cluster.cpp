#include "pipeline/cluster.h"

#include <cstdlib>
#include <string>

#include "util/error.h"

#ifdef KT_HAVE_MPI
#include <mpi.h>
#endif

namespace kt {
namespace {

ClusterInfo g_info;

[[maybe_unused]] int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::atoi(v) : fallback;
}

}  // namespace

bool launched_by_mpi() {
  return std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr || std::getenv("PMI_SIZE") != nullptr ||
         std::getenv("PMIX_RANK") != nullptr;
}

const ClusterInfo& cluster() { return g_info; }

#ifdef KT_HAVE_MPI

void cluster_init(int* argc, char*** argv) {
  if (!launched_by_mpi()) return;  // plain runs never touch MPI
  MPI_Init(argc, argv);
  g_info.mpi = true;
  MPI_Comm_rank(MPI_COMM_WORLD, &g_info.rank);
  MPI_Comm_size(MPI_COMM_WORLD, &g_info.size);
  MPI_Comm local;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, g_info.rank, MPI_INFO_NULL, &local);
  MPI_Comm_rank(local, &g_info.local_rank);
  MPI_Comm_size(local, &g_info.local_size);
  MPI_Comm_free(&local);
}

void cluster_finalize() {
  if (g_info.mpi) MPI_Finalize();
  g_info.mpi = false;
}

void cluster_abort(int code) {
  if (g_info.mpi && g_info.size > 1) MPI_Abort(MPI_COMM_WORLD, code);
  std::exit(code);
}

void cluster_barrier() {
  if (g_info.mpi) MPI_Barrier(MPI_COMM_WORLD);
}

std::vector<std::string> cluster_gather(const std::string& mine) {
  if (!g_info.mpi) return {mine};
  int len = static_cast<int>(mine.size());
  std::vector<int> lens(static_cast<size_t>(g_info.size)), offsets(static_cast<size_t>(g_info.size));
  MPI_Gather(&len, 1, MPI_INT, lens.data(), 1, MPI_INT, 0, MPI_COMM_WORLD);
  int total = 0;
  for (int r = 0; r < g_info.size; ++r) offsets[static_cast<size_t>(r)] = total, total += lens[static_cast<size_t>(r)];
  std::string all(static_cast<size_t>(g_info.rank == 0 ? total : 0), '\0');
  MPI_Gatherv(mine.data(), len, MPI_CHAR, all.data(), lens.data(), offsets.data(), MPI_CHAR, 0, MPI_COMM_WORLD);
  if (g_info.rank != 0) return {};
  std::vector<std::string> out;
  for (int r = 0; r < g_info.size; ++r)
    out.push_back(all.substr(static_cast<size_t>(offsets[static_cast<size_t>(r)]), static_cast<size_t>(lens[static_cast<size_t>(r)])));
  return out;
}

std::string cluster_broadcast(const std::string& value) {
  if (!g_info.mpi) return value;
  int len = static_cast<int>(value.size());
  MPI_Bcast(&len, 1, MPI_INT, 0, MPI_COMM_WORLD);
  std::string out = g_info.rank == 0 ? value : std::string(static_cast<size_t>(len), '\0');
  MPI_Bcast(out.data(), len, MPI_CHAR, 0, MPI_COMM_WORLD);
  return out;
}

#else  // built without MPI: one process

void cluster_init(int*, char***) {
  // mpirun with a knowtrace built without MPI would start N independent
  // runs racing on one directory: refuse instead.
  if (launched_by_mpi() && env_int("OMPI_COMM_WORLD_SIZE", env_int("PMI_SIZE", 1)) > 1)
    throw Error("started by mpirun, but this knowtrace was built without MPI (install libopenmpi-dev and "
                "rebuild, or run shards with --shard i/n and combine them with knowtrace merge)");
}
void cluster_finalize() {}
void cluster_abort(int code) { std::exit(code); }
void cluster_barrier() {}
std::vector<std::string> cluster_gather(const std::string& mine) { return {mine}; }
std::string cluster_broadcast(const std::string& value) { return value; }

#endif

}  // namespace kt
