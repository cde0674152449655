#pragma once
// rlhf-cpp: everything but the backends, the models and file formats. Include one backend header
// beside it, e.g. <rlhf/backends/eigen.hpp>; backends are the only headers that pull in a tensor library.
// RLHF_VERSION (major·10000 + minor·100 + patch) and its parts come from rlhf/core/version.hpp.
#include "rlhf/core/version.hpp"

#include "rlhf/core/batch.hpp"
#include "rlhf/core/concepts.hpp"
#include "rlhf/core/error.hpp"
#include "rlhf/core/math.hpp"
#include "rlhf/core/metrics.hpp"
#include "rlhf/core/rng.hpp"
#include "rlhf/core/unpaired_batch.hpp"

#include "rlhf/losses/bradley_terry.hpp"
#include "rlhf/losses/dpo.hpp"
#include "rlhf/losses/gae.hpp"
#include "rlhf/losses/group_advantage.hpp"
#include "rlhf/losses/kl.hpp"
#include "rlhf/losses/kto.hpp"
#include "rlhf/losses/listwise_dpo.hpp"
#include "rlhf/losses/orpo.hpp"
#include "rlhf/losses/plackett_luce.hpp"
#include "rlhf/losses/ppo.hpp"
#include "rlhf/losses/sft.hpp"
#include "rlhf/losses/unlikelihood.hpp"

#include "rlhf/algorithms/critic_free.hpp"
#include "rlhf/algorithms/dpo.hpp"
#include "rlhf/algorithms/evaluate.hpp"
#include "rlhf/algorithms/kl_control.hpp"
#include "rlhf/algorithms/kto.hpp"
#include "rlhf/algorithms/orpo.hpp"
#include "rlhf/algorithms/ppo.hpp"
#include "rlhf/algorithms/reward_model.hpp"
#include "rlhf/algorithms/sft.hpp"
#include "rlhf/algorithms/unlikelihood.hpp"

#include "rlhf/optim/adamw.hpp"
#include "rlhf/optim/clip.hpp"
#include "rlhf/optim/rmsprop.hpp"
#include "rlhf/optim/schedule.hpp"
