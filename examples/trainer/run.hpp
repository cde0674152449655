#pragma once
#include "method.hpp"
#include "training_args.hpp"
#include "rlhf/distributed/communicator.hpp"

namespace trainer {

// Trains `method` as `config` says; returns the exit status (0 done, 1 stopped by a non-finite step, 128 + signal when
// stopped by SIGINT/SIGTERM after writing a checkpoint). Errors in the inputs throw rlhf::error.
// `comm`: SingleProcess, or the MPI ranks when started by mpirun (docs/distributed.md).
int run(const TrainingArguments& config, Method& method, rlhf::Communicator& comm);

}  // namespace trainer
