#pragma once
#include "config.hpp"

namespace trainer {

// Trains as `config` says; returns the exit status (0 done, 1 stopped by a non-finite step, 128 + signal when
// stopped by SIGINT/SIGTERM after writing a checkpoint). Errors in the inputs throw rlhf::error.
int run(const Config& config);

}  // namespace trainer
