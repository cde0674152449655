#pragma once
// The seam through which an adapter (models/lora/) joins a model's linear layers without the model knowing it.
// A model calls its hook, when one is set, right after each of its projections y = x W + b:
//
//   forward : out [rows, out_features] += f(inp [rows, in_features])        after the layer's own product
//   backward: dinp [rows, in_features] += d f / d inp · dout,               after the layer's own backward
//             and the hook's own parameters' gradients from inp and dout
//
// so the adapter's term rides on the activations the model keeps anyway (its input, which the model's backward
// reads for W's gradient, and d out, which the model computes for its input gradient). `site` names the layer:
// `module` is the family's projection index (e.g. the Llama's q_proj … down_proj, gpt/model.hpp and
// llama/model.hpp list theirs) and `layer` the block. Rows: this call's rows are [row0, row0 + rows) of the pass's
// `total_rows` = B·T, so a hook may keep per-row state across a forward and its backward; a model may call
// forward for disjoint row ranges from several threads at once, but calls backward from one thread.
#include <cstddef>

namespace rlhf {

struct LinearSite {
  std::size_t module = 0, layer = 0;
};

template <class T>
class LinearHook {
 public:
  virtual ~LinearHook() = default;
  virtual void forward(LinearSite site, T* out, const T* inp, std::size_t row0, std::size_t rows,
                       std::size_t total_rows) = 0;
  virtual void backward(LinearSite site, T* dinp, const T* dout, const T* inp, std::size_t row0,
                        std::size_t rows) = 0;
};

}  // namespace rlhf
