#pragma once
// A model with LoRA adapters on its linear layers (PEFT's LoRA; settings.hpp), for either family (families.hpp).
//
//   auto policy = rlhf::attach_lora(rlhf::load_llama(folder), {.r = 16, .lora_alpha = 32,
//                                    .target_modules = {"q_proj", "k_proj", "v_proj", "o_proj"}}, rng);
//   auto reference = policy.reference();          // the same weights with the adapters off: no second copy
//   rlhf::dpo_step(policy, reference, optimizer, batch);
//
// The base model's weights are frozen (set_weights_trainable(false): no gradient buffer, no weight gradient
// computed) and the adapters join its projections through its linear hook (models/linear_hook.hpp): each
// adapted layer adds scale · B A dropout(x) to its output, and its backward takes the layer's input and output
// gradient, which the model computes anyway. parameters() and gradients() are the adapters' (A then B of each
// adapted layer, in PEFT's module order, then the modules_to_save copies), so an optimizer holds state for
// those alone. It is a TrainablePolicy and a SamplingPolicy, and a ValueModel / RewardModel when the base is.
//
// The reference: with the adapters off (set_adapters_enabled(false), the AdaptersOff scope, or reference()),
// every forward is the base model's, with the original scalar head. A backward needs the last forward to have
// run with the adapters on (checked). Dropout acts only while training (set_training; on by default).
// Not thread-safe, not copyable (the base model calls into this object); movable.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "rlhf/core/batch.hpp"
#include "rlhf/core/concepts.hpp"
#include "rlhf/core/error.hpp"
#include "rlhf/core/rng.hpp"
#include "rlhf/models/linear_hook.hpp"
#include "rlhf/models/lora/families.hpp"
#include "rlhf/models/lora/linear.hpp"
#include "rlhf/models/lora/settings.hpp"

namespace rlhf {

// One adapted linear layer: its hook site, PEFT module path and shape, and where its A [r, in] and B [out, r]
// sit in the adapter buffer (parameters()).
struct LoraAdapter {
  std::size_t module = 0, layer = 0;
  std::string path;  // e.g. model.layers.0.self_attn.q_proj, transformer.h.0.attn.c_attn
  std::size_t in = 0, out = 0;
  std::size_t a_offset = 0, b_offset = 0;
};

namespace detail::lora {

// PEFT's match of a target name against a module path: equal, or a suffix after a dot.
inline bool matches(const std::string& path, const std::string& name) {
  return path == name || (path.size() > name.size() && path.ends_with(name) && path[path.size() - name.size() - 1] == '.');
}

// The adapted sites, layer by layer in module order (PEFT's module traversal order).
template <class Family, class Model>
std::vector<LoraAdapter> select_sites(const Model& model, const std::vector<std::string>& targets, const char* fn) {
  const auto names = Family::module_names();
  std::vector<bool> used(targets.size(), false);
  std::vector<LoraAdapter> out;
  for (std::size_t l = 0; l < Family::layers(model); ++l)
    for (std::size_t m = 0; m < names.size(); ++m) {
      const std::string path = Family::module_path(m, l);
      bool hit = false;
      for (std::size_t t = 0; t < targets.size(); ++t)
        if (targets[t] == "all-linear" || matches(path, targets[t])) hit = used[t] = true;
      if (hit) {
        const auto [in, o] = Family::in_out(model, m);
        out.push_back({m, l, path, in, o, 0, 0});
      }
    }
  for (std::size_t t = 0; t < targets.size(); ++t)
    if (!used[t]) {
      std::string known;
      for (const auto& n : names) known += (known.empty() ? "" : ", ") + n;
      fail<config_error>(fn, ": target module '", targets[t], "' matches no linear layer of this model (its layers: ",
                         known, ", or all-linear)");
    }
  return out;
}

// The hook the base model calls: the adapters' parameters, gradients and per-pass state.
template <class T>
struct Adapters final : LinearHook<T> {
  std::vector<LoraAdapter> list;
  std::vector<std::ptrdiff_t> site;     // [modules · L] → index into list, or −1
  std::size_t modules = 0, r = 0;
  T scale = 0;
  double dropout = 0;
  gpt::aligned_vector<T> params, grads;  // [A, B of each adapter …, saved head]
  std::vector<gpt::aligned_vector<T>> xa;  // per adapter [N, r]: dropout(x) Aᵀ of the last adapted forward
  gpt::aligned_vector<T> dxa, xd, dxd;     // backward scratch
  bool enabled = true, training = true;
  rlhf::lora::DropoutMask mask;
  Rng rng{0};  // dropout seeds, one per forward

  const LoraAdapter* at(LinearSite s) const {
    const std::ptrdiff_t i = site[s.layer * modules + s.module];
    return enabled && i >= 0 ? &list[std::size_t(i)] : nullptr;
  }
  std::size_t index(const LoraAdapter* a) const { return std::size_t(a - list.data()); }

  // Before a forward over N rows: per-row buffers sized (never inside the model's parallel tiles) and a mask drawn.
  void begin_forward(std::size_t N) {
    for (auto& v : xa)
      if (v.size() < N * r) v.resize(N * r);
    mask = {rng.next(), training ? dropout : 0.0};
  }

  void forward(LinearSite s, T* out, const T* inp, std::size_t row0, std::size_t rows, std::size_t) override {
    const LoraAdapter* a = at(s);
    if (!a) return;
    T* cache = xa[index(a)].data() + row0 * r;
    const T *A = params.data() + a->a_offset, *B = params.data() + a->b_offset;
    if (!mask.active()) return rlhf::lora::lora_forward(out, cache, inp, A, B, rows, a->in, a->out, r, scale);
    gpt::aligned_vector<T> dropped(rows * a->in);  // [rows, in]; local: tiles may run on several threads
    rlhf::lora::dropout_rows(dropped.data(), inp, row0, rows, a->in, mask);
    rlhf::lora::lora_forward(out, cache, dropped.data(), A, B, rows, a->in, a->out, r, scale);
  }

  void backward(LinearSite s, T* dinp, const T* dout, const T* inp, std::size_t row0, std::size_t rows) override {
    const LoraAdapter* a = at(s);
    if (!a) return;
    const T* cache = xa[index(a)].data() + row0 * r;
    const T *A = params.data() + a->a_offset, *B = params.data() + a->b_offset;
    T *dA = grads.data() + a->a_offset, *dB = grads.data() + a->b_offset;
    if (dxa.size() < rows * r) dxa.resize(rows * r);
    if (!mask.active())
      return rlhf::lora::lora_backward(dinp, dA, dB, dxa.data(), dout, inp, cache, A, B, rows, a->in, a->out, r, scale);
    const std::size_t n = rows * a->in;
    if (xd.size() < n) xd.resize(n), dxd.resize(n);
    rlhf::lora::dropout_rows(xd.data(), inp, row0, rows, a->in, mask);
    std::fill_n(dxd.data(), n, T(0));
    rlhf::lora::lora_backward(dxd.data(), dA, dB, dxa.data(), dout, xd.data(), cache, A, B, rows, a->in, a->out, r, scale);
    for (std::size_t k = 0; k < rows; ++k)
      for (std::size_t i = 0; i < a->in; ++i)
        dinp[k * a->in + i] += mask.template operator()<T>(row0 + k, i) * dxd[k * a->in + i];
  }
};

}  // namespace detail::lora

template <class Model>
class LoraReference;

template <class Model>
class Lora {
 public:
  using backend = typename Model::backend;
  using scalar = typename Model::scalar;
  using matrix = typename backend::matrix;
  using vector = typename backend::vector;
  using family = LoraFamily<Model>;

  // Freezes `base`, selects its target layers and draws each A as PEFT does (B = 0: the adapted model starts as
  // the base model). config_error for bad settings, a target matching no layer, or a modules_to_save entry other
  // than "score" on a model with a scalar head.
  Lora(Model base, const LoraSettings& settings, Rng& rng)
      : model_(std::move(base)), settings_(settings), state_(std::make_unique<detail::lora::Adapters<scalar>>()) {
    constexpr const char* fn = "rlhf::attach_lora";
    settings_.validate(fn);
    if (settings_.target_modules.empty()) settings_.target_modules = family::default_targets();
    auto& s = *state_;
    s.list = detail::lora::select_sites<family>(model_, settings_.target_modules, fn);
    s.modules = family::module_names().size();
    s.r = settings_.r;
    s.scale = scalar(settings_.scale());
    s.dropout = settings_.lora_dropout;
    s.site.assign(s.modules * family::layers(model_), -1);
    std::size_t offset = 0;
    for (std::size_t i = 0; i < s.list.size(); ++i) {
      auto& a = s.list[i];
      s.site[a.layer * s.modules + a.module] = std::ptrdiff_t(i);
      a.a_offset = offset, offset += s.r * a.in;
      a.b_offset = offset, offset += a.out * s.r;
    }
    for (const auto& m : settings_.modules_to_save) {
      if (m != "score" || !family::has_head(model_))
        fail<config_error>(fn, ": modules_to_save entry '", m, "' is not supported; ",
                           family::has_head(model_) ? "only 'score' (the scalar head) can be trained beside the adapters"
                                                    : "this model has no scalar head ('score') to save");
      if (head_size_ == 0) head_offset_ = offset, head_size_ = family::head_size(model_), offset += head_size_;
    }
    s.params.assign(offset, scalar(0));
    s.grads.assign(offset, scalar(0));
    for (const auto& a : s.list) rlhf::lora::init_a(s.params.data() + a.a_offset, s.r, a.in, rng);
    if (head_size_) {
      const scalar* h = family::head(model_);
      original_head_.assign(h, h + head_size_);
      std::copy_n(h, head_size_, s.params.data() + head_offset_);
    }
    s.xa.resize(s.list.size());
    s.rng = Rng(rng.next());
    model_.set_weights_trainable(false);
    model_.set_linear_hook(state_.get());
  }

  Lora(const Lora&) = delete;
  Lora& operator=(const Lora&) = delete;
  Lora(Lora&&) noexcept = default;
  Lora& operator=(Lora&&) noexcept = default;

  // ---- what is trained ------------------------------------------------------------------------------------
  std::span<scalar> parameters() { return state_->params; }
  std::span<const scalar> parameters() const { return state_->params; }
  std::span<scalar> gradients() { return state_->grads; }
  std::span<const scalar> gradients() const { return state_->grads; }
  void zero_grad() {
    std::fill(state_->grads.begin(), state_->grads.end(), scalar(0));
    model_.zero_grad();
  }
  const std::vector<LoraAdapter>& adapters() const { return state_->list; }
  // The modules_to_save copy of the scalar head in parameters(): [offset, offset + size); size 0 without one.
  std::size_t saved_head_offset() const { return head_offset_; }
  std::size_t saved_head_size() const { return head_size_; }
  const LoraSettings& settings() const { return settings_; }  // target_modules as given, or the family's default
  scalar scale() const { return state_->scale; }

  // ---- switches ------------------------------------------------------------------------------------------
  void set_adapters_enabled(bool on) { state_->enabled = on; }
  bool adapters_enabled() const { return state_->enabled; }
  void set_training(bool on) { state_->training = on; }  // dropout acts only while training
  // The dropout masks' stream from here on (each forward draws its mask seed from it): a trainer that reseeds it
  // from the step makes a resumed run draw the masks the straight run drew.
  void set_dropout_seed(std::uint64_t seed) { state_->rng = Rng(seed); }
  // The reference policy: this model's log-probs with the adapters off (a view, defined below).
  LoraReference<Model> reference();
  bool training() const { return state_->training; }
  const Model& base() const { return model_; }  // the frozen model (its head: whichever the last forward used)

  // ---- Policy, TrainablePolicy -----------------------------------------------------------------------------
  matrix log_probs(const TokenBatch& batch) { return adapted_forward(batch).log_probs(batch); }
  void backward(const TokenBatch& batch, const matrix& d_logp) {
    adapted_backward("rlhf::Lora::backward", [&](Model& m) { m.backward(batch, d_logp); });
  }
  matrix logits(const TokenBatch& batch) { return adapted_forward(batch).logits(batch); }  // [B·T, V]

  // ---- ValueModel, RewardModel (a base with a scalar head) -------------------------------------------------
  matrix values(const TokenBatch& batch) requires ValueModel<Model> { return adapted_forward(batch).values(batch); }
  void backward_values(const TokenBatch& batch, const matrix& d_values) requires ValueModel<Model> {
    adapted_backward("rlhf::Lora::backward_values", [&](Model& m) { m.backward_values(batch, d_values); });
  }
  vector scores(const TokenBatch& batch) requires RewardModel<Model> { return adapted_forward(batch).scores(batch); }
  void backward_scores(const TokenBatch& batch, const vector& d_scores) requires RewardModel<Model> {
    adapted_backward("rlhf::Lora::backward_scores", [&](Model& m) { m.backward_scores(batch, d_scores); });
  }

  // ---- SamplingPolicy --------------------------------------------------------------------------------------
  // With the adapters on, the adapted layers' weights hold W + scale·(B A)ᵀ while the model samples (its KV-cache
  // sampler reads the weights directly), and are restored exactly afterwards from a copy of them.
  TokenBatch sample(const PromptBatch& prompts, const SampleOptions& options, Rng& rng) {
    if (!state_->enabled || state_->list.empty()) return model_.sample(prompts, options, rng);
    MergedWhileAlive merged(*this);
    return model_.sample(prompts, options, rng);
  }
  decltype(auto) sampled_log_probs() const { return model_.sampled_log_probs(); }

  // Adds scale · (B A)ᵀ of every adapter into `target`'s weights (a model of the base's shape), and the saved
  // head: PEFT's merge. merge_lora() below returns the merged model.
  void merge_into(Model& target) const {
    for (const auto& a : state_->list) {
      auto* w = family::weight(target, a.module, a.layer);  // [in, out]
      gpt::MatrixMap<scalar>(w, gpt::ix(a.in), gpt::ix(a.out)).noalias() +=
          state_->scale * (gpt::ConstMatrixMap<scalar>(state_->params.data() + a.a_offset, gpt::ix(state_->r),
                                                      gpt::ix(a.in))
                               .transpose() *
                           gpt::ConstMatrixMap<scalar>(state_->params.data() + a.b_offset, gpt::ix(a.out),
                                                      gpt::ix(state_->r))
                               .transpose());
    }
    if (head_size_) std::copy_n(state_->params.data() + head_offset_, head_size_, family::head(target));
  }

  // The base model's weights, and its original scalar head (not the modules_to_save copy).
  Model base_copy() const {
    Model m = model_;
    m.set_linear_hook(nullptr);
    m.set_weights_trainable(true);
    if (head_size_) std::copy(original_head_.begin(), original_head_.end(), family::head(m));
    return m;
  }

 private:
  // Restores the weights that sample() merges into, whatever happens while sampling.
  struct MergedWhileAlive {
    Lora& lora;
    std::vector<std::vector<scalar>> saved;
    explicit MergedWhileAlive(Lora& l) : lora(l) {
      for (const auto& a : lora.state_->list) {
        const scalar* w = family::weight(lora.model_, a.module, a.layer);
        saved.emplace_back(w, w + a.in * a.out);
      }
      lora.state_->enabled = false;  // the merged weights already hold the adapters
      lora.merge_adapters_only(lora.model_);
    }
    ~MergedWhileAlive() {
      for (std::size_t i = 0; i < saved.size(); ++i) {
        const auto& a = lora.state_->list[i];
        std::copy(saved[i].begin(), saved[i].end(), family::weight(lora.model_, a.module, a.layer));
      }
      lora.state_->enabled = true;
    }
    MergedWhileAlive(const MergedWhileAlive&) = delete;
    MergedWhileAlive& operator=(const MergedWhileAlive&) = delete;
  };

  void merge_adapters_only(Model& target) const {
    const std::size_t h = head_size_;
    std::vector<scalar> head;
    if (h) head.assign(family::head(target), family::head(target) + h);
    merge_into(target);
    if (h) std::copy(head.begin(), head.end(), family::head(target));
  }

  // Readies the base for a forward of `batch` with the adapters as they are switched now; returns it to run on.
  Model& adapted_forward(const TokenBatch& batch) {
    state_->begin_forward(batch.batch * batch.time);
    if (head_size_)
      std::copy_n(state_->enabled ? state_->params.data() + head_offset_ : original_head_.data(), head_size_,
                  family::head(model_));
    adapted_forward_ = state_->enabled;
    return model_;
  }

  // `run(base)`: a backward through the base after an adapted forward; then the saved head's gradient is moved
  // into gradients().
  template <class Run>
  void adapted_backward(const char* fn, Run&& run) {
    require_adapted_forward(fn);
    run(model_);
    collect_head_gradient();
  }

  void require_adapted_forward(const char* fn) const {
    if (!adapted_forward_ || !state_->enabled)
      fail<value_error>(fn, ": the last forward ran with the adapters off (the reference), or they are off now; a "
                            "backward needs a forward of the same batch with the adapters on just before it");
  }

  void collect_head_gradient() {
    if (!head_size_) return;
    scalar* g = family::head_gradient(model_);
    for (std::size_t i = 0; i < head_size_; ++i) state_->grads[head_offset_ + i] += g[i], g[i] = scalar(0);
  }

  Model model_;
  LoraSettings settings_;
  std::unique_ptr<detail::lora::Adapters<scalar>> state_;  // on the heap: the model keeps a pointer to it
  std::size_t head_offset_ = 0, head_size_ = 0;             // the modules_to_save head in parameters()
  std::vector<scalar> original_head_;                       // [head_size_] the base's, for the reference
  bool adapted_forward_ = false;
};

// Switches the adapters off for a scope (the reference's forward), and back to what they were.
template <class Model>
class AdaptersOff {
 public:
  explicit AdaptersOff(Lora<Model>& lora) : lora_(lora), was_(lora.adapters_enabled()) {
    lora_.set_adapters_enabled(false);
  }
  ~AdaptersOff() { lora_.set_adapters_enabled(was_); }
  AdaptersOff(const AdaptersOff&) = delete;
  AdaptersOff& operator=(const AdaptersOff&) = delete;

 private:
  Lora<Model>& lora_;
  bool was_;
};

// The reference policy of a Lora: its log-probs with the adapters off. A view: no weights of its own. Run it
// before the policy's forward (as every step in algorithms/ does); a backward after it is refused.
template <class Model>
class LoraReference {
 public:
  using backend = typename Model::backend;
  explicit LoraReference(Lora<Model>& lora) : lora_(&lora) {}
  typename backend::matrix log_probs(const TokenBatch& batch) {
    AdaptersOff off(*lora_);
    return lora_->log_probs(batch);
  }
  typename backend::vector scores(const TokenBatch& batch)
    requires RewardModel<Model>
  {
    AdaptersOff off(*lora_);
    return lora_->scores(batch);
  }

 private:
  Lora<Model>* lora_;
};

template <class Model>
LoraReference<Model> Lora<Model>::reference() {
  return LoraReference<Model>(*this);
}

// Freezes `base` and attaches adapters (Lora's constructor).
template <class Model>
Lora<Model> attach_lora(Model base, const LoraSettings& settings, Rng& rng) {
  return Lora<Model>(std::move(base), settings, rng);
}

// PEFT's merge_and_unload: a plain model (trainable, no hook) whose weights hold W + scale·(B A)ᵀ and the saved
// head; it scores as the adapted model does and saves as a full model folder.
template <class Model>
Model merge_lora(const Lora<Model>& lora) {
  Model merged = lora.base_copy();
  lora.merge_into(merged);
  return merged;
}

static_assert(EveryRoleModel<Lora<Llama<float>>>);
static_assert(TrainablePolicy<Lora<Gpt<float>>>);
static_assert(SamplingPolicy<Lora<Gpt<float>>>);
static_assert(RewardModel<Lora<Gpt<float>>>);
static_assert(Policy<LoraReference<Llama<float>>>);

}  // namespace rlhf
