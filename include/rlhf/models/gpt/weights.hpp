#pragma once
// What the CPU models (gpt/model.hpp, llama/model.hpp) keep alike about their weights, whatever their blocks: the
// parameter and gradient buffers, the frozen flag with the scalar head's own gradient (set_weights_trainable(false),
// as under LoRA), the linear hook (linear_hook.hpp) and the precision of the matrix products. Each model derives
// from Weights<T> and names its own tensors (parameter_tensors(), gradient_tensors()) over these buffers.
//
//   parameters(), gradients()        the whole buffers; gradients() is empty while the weights are frozen
//   zero_grad()                      zeroes the gradients (the scalar head's included, when frozen)
//   weights_trainable()              false after set_weights_trainable(false) (the model's, through reset_gradients)
//   set_linear_hook(hook)            an adapter on the linear layers, or null; the model does not own it (its sites:
//                                    the model's header)
//   set_matmul_precision(p)          float32 (the default) or bf16 operands with float32 sums (gpt/bf16_matmul.hpp);
//                                    a double model refuses bf16. Copies keep it.
#include <algorithm>
#include <cstddef>
#include <span>
#include <type_traits>

#include "rlhf/core/error.hpp"
#include "rlhf/models/gpt/bf16_matmul.hpp"
#include "rlhf/models/gpt/layers.hpp"
#include "rlhf/models/linear_hook.hpp"

namespace rlhf::gpt {

template <class T>
class Weights {
 public:
  std::span<T> parameters() { return params_; }
  std::span<const T> parameters() const { return params_; }
  std::span<T> gradients() { return grads_; }  // empty while the weights are frozen
  std::span<const T> gradients() const { return grads_; }
  void zero_grad() {
    std::fill(grads_.begin(), grads_.end(), T(0));
    std::fill(head_grads_.begin(), head_grads_.end(), T(0));
  }
  bool weights_trainable() const { return !frozen_; }

  void set_linear_hook(LinearHook<T>* hook) { hook_ = hook; }

  void set_matmul_precision(MatmulPrecision precision) {
    if (precision == MatmulPrecision::bf16 && !std::is_same_v<T, float>)
      fail<value_error>(name_, "::set_matmul_precision: bf16 products are for a float model; this one is double");
    precision_ = precision;
  }
  MatmulPrecision matmul_precision() const { return precision_; }

 protected:
  explicit Weights(const char* name) : name_(name) {}  // name: "rlhf::Gpt", for messages

  // count zero parameters and as many zero gradients.
  void allocate(std::size_t count) {
    params_.assign(count, T(0));
    grads_.assign(count, T(0));
  }

  // set_weights_trainable's buffers. false: the gradient buffer released, head_size zero values for the scalar
  // head's gradient (0: no head). true: a fresh zero gradient buffer, no head gradient of its own.
  void reset_gradients(bool trainable, std::size_t head_size) {
    frozen_ = !trainable;
    aligned_vector<T>().swap(grads_);
    head_grads_.assign(frozen_ ? head_size : 0, T(0));
    if (!frozen_) grads_.assign(params_.size(), T(0));
  }

  static T* grad_at(T* gradient, std::size_t offset) { return gradient ? gradient + offset : nullptr; }  // null: frozen

  const char* name_;
  MatmulPrecision precision_ = MatmulPrecision::fp32;
  aligned_vector<T> params_, grads_;  // [the model's parameter count] each; the model's layout
  bool frozen_ = false;               // set_weights_trainable(false): grads_ empty
  aligned_vector<T> head_grads_;      // the scalar head's gradient while frozen (else empty)
  LinearHook<T>* hook_ = nullptr;     // an adapter on the linear layers, not owned
};

}  // namespace rlhf::gpt
