#pragma once
// rlhf-cpp: everything but the backends. Include one backend header beside it, e.g.
// <rlhf/backends/eigen.hpp>; backends are the only headers that pull in third-party code.
#include "rlhf/core/batch.hpp"
#include "rlhf/core/concepts.hpp"
#include "rlhf/core/error.hpp"
#include "rlhf/core/math.hpp"
#include "rlhf/core/metrics.hpp"
#include "rlhf/core/rng.hpp"
#include "rlhf/losses/dpo.hpp"
