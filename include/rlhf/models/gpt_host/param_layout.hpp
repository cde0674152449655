#pragma once
// What every model's parameter layout does alike (gpt_host/params.hpp, llama/params.hpp): tensors laid one after
// another in one buffer, the buffer's size, and the named views (a struct of pointers) into it.
#include <array>
#include <cstddef>
#include <tuple>
#include <utility>
#include <vector>

namespace rlhf::gpt_host {

// A layout being built. Tensor: an aggregate {key, shape, offset, size, per_layer} (GptParamTensor: key the
// name; LlamaParamTensor: the slot).
template <class Tensor>
struct ParamLayout {
  std::vector<Tensor> tensors;
  std::size_t offset = 0;  // the values laid so far

  // The next tensor, of the given shape (L first when per_layer), right after the last.
  template <class Key>
  void add(Key key, std::vector<std::size_t> shape, bool per_layer) {
    std::size_t n = 1;
    for (auto d : shape) n *= d;
    tensors.push_back({key, std::move(shape), offset, n, per_layer});
    offset += n;
  }
};

// The values of a layout's buffer.
template <class Tensor>
std::size_t param_count(const std::vector<Tensor>& layout) {
  return layout.back().offset + layout.back().size;
}

// The struct of N pointers Views{p[0], …, p[N − 1]}.
template <class Views, class T, std::size_t N>
Views views_of(const std::array<T*, N>& p) {
  return std::apply([](auto*... q) { return Views{q...}; }, p);
}

}  // namespace rlhf::gpt_host
