// Must NOT compile: a trainable policy without log_probs handed to rlhf::dpo_step. The ctest checks
// that the build fails and that the static_assert's message names the missing member and the docs.
// With -DRLHF_CONTROL_BUILD the member is present and the file must compile: proof that the failure
// comes from the missing member and from nothing else.
#include <span>
#include <vector>

#include "rlhf/algorithms/dpo.hpp"
#include "rlhf/backends/eigen.hpp"
#include "rlhf/optim/adamw.hpp"

struct PolicyWithoutLogProbs {
  using backend = rlhf::eigen<float>;
#ifdef RLHF_CONTROL_BUILD
  backend::matrix log_probs(const rlhf::TokenBatch& b) { return backend::matrix_of(b.batch, b.time); }
#endif
  std::vector<float> theta = std::vector<float>(4), grad = std::vector<float>(4);
  void zero_grad() {}
  void backward(const rlhf::TokenBatch&, const backend::matrix&) {}
  std::span<float> parameters() { return theta; }
  std::span<float> gradients() { return grad; }
};

int main() {
  PolicyWithoutLogProbs policy, reference;
  rlhf::AdamW<float> optimizer;
  rlhf::PreferenceBatch batch;
  rlhf::dpo_step(policy, reference, optimizer, batch);
}
