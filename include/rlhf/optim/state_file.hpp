#pragma once
// Files of the state a resumed run needs besides the model's weights: an optimizer's (AdamWState, RmspropState),
// a generator's (Rng::State) and a learning-rate schedule's (ScheduleState). Each is a safetensors file
// (io/safetensors.hpp), written atomically (a temporary file renamed over the target), read back bit for bit:
//
//   adamw      exp_avg [n], exp_avg_sq [n]                       F32 for a float optimizer, F64 for a double one
//   rmsprop    square_avg [n], grad_avg [n or 0], momentum_buffer [n or 0]
//   rng        state [4]                                         U64, xoshiro256**'s four words
//   schedule   (no tensor)
//
// and in __metadata__ (strings): "rlhf_state" (adamw, rmsprop, rng, schedule), "rlhf_state_version" ("1"), the
// step and every config field, numbers written by std::to_chars in their shortest form that reads back to the
// same float (or integer). A state holding NaN or Inf is refused on save (nothing is written) and on load; so
// is a file of another kind, dtype, version or shape, each error naming the file and the field. The checks are
// those of restore(): config_error for a setting out of range, shape_error for sizes that disagree (or differ
// from the parameters the optimizer will step), value_error for NaN, Inf or a negative mean of squares, io_error
// for the rest. docs/optim/state.md.
//
// The one header of optim/ that includes io/ (tests/layers/allowed_includes.txt): the optimizers themselves,
// and so the umbrella header, stay free of file formats.
#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include "rlhf/core/error.hpp"
#include "rlhf/core/rng.hpp"
#include "rlhf/io/safetensors.hpp"
#include "rlhf/optim/adamw.hpp"
#include "rlhf/optim/rmsprop.hpp"
#include "rlhf/optim/schedule.hpp"

namespace rlhf {

namespace detail::state_file {

inline constexpr const char* kind_key = "rlhf_state";
inline constexpr const char* version_key = "rlhf_state_version";
inline constexpr const char* version = "1";

template <class T>
constexpr io::Dtype dtype_of() {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "optimizer state files hold float (F32) or double (F64) values");
  return std::is_same_v<T, float> ? io::Dtype::f32 : io::Dtype::f64;
}

// The shortest text that reads back to the same value.
template <class N>
std::string text(N value) {
  char buf[64];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value);
  if (ec != std::errc()) fail<error>("rlhf state file: cannot format a number");  // 64 bytes always suffice
  return std::string(buf, end);
}

inline std::string text(bool flag) { return flag ? "1" : "0"; }

inline std::string decay_name(Decay d) {
  switch (d) {
    case Decay::constant: return "constant";
    case Decay::linear: return "linear";
    case Decay::cosine: return "cosine";
  }
  return "?";
}

inline std::map<std::string, std::string> header(const char* kind) {
  return {{kind_key, kind}, {version_key, version}};
}

template <class T>
io::TensorView view(const char* name, const std::vector<T>& values) {
  return {.name = name, .dtype = dtype_of<T>(), .shape = {values.size()}, .bytes = values.data()};
}

// A loaded state file of one kind, and the words every message about it begins with.
class Reader {
 public:
  Reader(const char* fn, const std::filesystem::path& path, const char* kind, std::set<std::string> tensors)
      : fn_(std::string(fn) + " '" + path.string() + "'"), st_(io::Safetensors::load(path)) {
    const auto found = st_.metadata().find(kind_key);
    if (found == st_.metadata().end())
      fail<io_error>(fn_, ": metadata has no '", kind_key, "': not a state file of rlhf-cpp (the state of '", kind,
                     "' was expected)");
    if (found->second != kind)
      fail<io_error>(fn_, ": the file holds the state of '", io::detail::clip(found->second), "', not of '", kind,
                     "'");
    if (const auto& v = get(version_key); v != version)
      fail<io_error>(fn_, ": '", version_key, "' is '", io::detail::clip(v), "'; this library reads version ",
                     version, " only");
    for (const auto& t : st_.tensors())
      if (!tensors.count(t.name))
        fail<io_error>(fn_, ": unexpected tensor '", io::detail::clip(t.name), "' (the state of '", kind, "' holds ",
                       tensors.size(), " tensor(s)", tensors.empty() ? "" : ": ", list(tensors), ")");
    for (const auto& name : tensors)
      if (!st_.contains(name)) fail<io_error>(fn_, ": tensor '", name, "' is missing");
  }

  const std::string& fn() const { return fn_; }

  const std::string& get(const char* key) const {
    const auto it = st_.metadata().find(key);
    if (it == st_.metadata().end()) fail<io_error>(fn_, ": metadata has no '", key, "'");
    return it->second;
  }

  std::size_t get_size(const char* key) const {
    const std::string& v = get(key);
    std::size_t out = 0;
    const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
    if (v.empty() || ec != std::errc() || end != v.data() + v.size())
      fail<io_error>(fn_, ": metadata '", key, "' = '", io::detail::clip(v), "' is not a non-negative integer",
                     ec == std::errc::result_out_of_range ? " that fits in 64 bits" : "");
    return out;
  }

  float get_float(const char* key) const {
    const std::string& v = get(key);
    float out = 0;
    const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
    if (v.empty() || ec != std::errc() || end != v.data() + v.size() || !std::isfinite(out))
      fail<io_error>(fn_, ": metadata '", key, "' = '", io::detail::clip(v), "' is not a finite float32 number");
    return out;
  }

  bool get_flag(const char* key) const {
    const std::string& v = get(key);
    if (v != "0" && v != "1") fail<io_error>(fn_, ": metadata '", key, "' = '", io::detail::clip(v), "' is not 0 or 1");
    return v == "1";
  }

  Decay get_decay(const char* key) const {
    const std::string& v = get(key);
    for (const Decay d : {Decay::constant, Decay::linear, Decay::cosine})
      if (v == decay_name(d)) return d;
    fail<io_error>(fn_, ": metadata '", key, "' = '", io::detail::clip(v), "' is not constant, linear or cosine");
  }

  // Tensor `name`: rank 1 of dtype `want`, its values copied bit for bit.
  template <class T>
  std::vector<T> values(const char* name, io::Dtype want = dtype_of<T>()) const {
    const auto& info = st_.info(name);
    if (info.dtype != want)
      fail<io_error>(fn_, ": tensor '", name, "' has dtype ", io::dtype_name(info.dtype), " but ", io::dtype_name(want),
                     " was expected (a state is restored in its own precision, never converted)");
    if (info.shape.size() != 1)
      fail<io_error>(fn_, ": tensor '", name, "' has shape ", io::detail::shape_str(info.shape),
                     " but a vector (rank 1) was expected");
    std::vector<T> out(info.shape[0]);
    const auto bytes = st_.bytes(name);
    if (bytes.size() != out.size() * sizeof(T))  // the loader checked shape against offsets; kept as a guard
      fail<io_error>(fn_, ": tensor '", name, "' spans ", bytes.size(), " bytes, not ", out.size() * sizeof(T));
    if (!out.empty()) std::memcpy(out.data(), bytes.data(), bytes.size());
    return out;
  }

 private:
  static std::string list(const std::set<std::string>& names) {
    std::string s;
    for (const auto& n : names) s += (s.empty() ? "'" : ", '") + n + "'";
    return s;
  }

  std::string fn_;
  io::Safetensors st_;
};

// shape_error unless a state's `n` moments fit `parameters` (a state before its first step fits any).
inline void require_parameters(const std::string& fn, const char* field, std::size_t n, std::size_t step,
                               std::size_t parameters) {
  if (step > 0 && n != parameters)
    fail<shape_error>(fn, ": '", field, "' holds ", n, " values but the optimizer is to step ", parameters,
                      " parameters; the state belongs to another model");
}

}  // namespace detail::state_file

// ---- one field list per optimizer -----------------------------------------------------------------------------

namespace detail::state_file {
template <class State>
struct state_traits;  // the scalar type of a state's buffers
template <class T>
struct state_traits<AdamWState<T>> {
  using scalar = T;
  static constexpr bool adamw = true;
  static constexpr const char* kind = "adamw";
  static constexpr const char* sized_by = "exp_avg";  // the buffer whose size is the parameter count
};
template <class T>
struct state_traits<RmspropState<T>> {
  using scalar = T;
  static constexpr bool adamw = false;
  static constexpr const char* kind = "rmsprop";
  static constexpr const char* sized_by = "square_avg";
};

// Restores `optimizer` from `path`, whose buffers must be of the `parameters` it is to step (shape_error).
template <class State, class Optimizer>
void restore_from_file(const std::filesystem::path& path, const char* loader, Optimizer& optimizer,
                       std::size_t parameters);
template <class State>
constexpr bool is_adamw_state = state_traits<std::remove_const_t<State>>::adamw;
}  // namespace detail::state_file

// Every field of an optimizer's state file, in one list: `visit(name, field)` for the step, each config number or
// flag (metadata) and each buffer (a tensor). Saving and loading both walk it, so the two cannot drift apart.
template <class State, class Visit>
  requires(detail::state_file::is_adamw_state<State>)
void for_each_state_field(State& s, Visit&& visit) {
  visit("step", s.step);
  visit("learning_rate", s.config.learning_rate);
  visit("beta1", s.config.beta1);
  visit("beta2", s.config.beta2);
  visit("epsilon", s.config.epsilon);
  visit("weight_decay", s.config.weight_decay);
  visit("exp_avg", s.exp_avg);
  visit("exp_avg_sq", s.exp_avg_sq);
}

template <class State, class Visit>
  requires(!detail::state_file::is_adamw_state<State>)
void for_each_state_field(State& s, Visit&& visit) {
  visit("step", s.step);
  visit("learning_rate", s.config.learning_rate);
  visit("alpha", s.config.alpha);
  visit("epsilon", s.config.epsilon);
  visit("weight_decay", s.config.weight_decay);
  visit("momentum", s.config.momentum);
  visit("centered", s.config.centered);
  visit("square_avg", s.square_avg);
  visit("grad_avg", s.grad_avg);
  visit("momentum_buffer", s.momentum_buffer);
}

namespace detail::state_file {

template <class F>
constexpr bool is_buffer = requires(const F& f) { f.data(); f.size(); };

template <class T>
void validate_state(std::string_view fn, const AdamWState<T>& s) {
  validate_adamw_state(fn, s);
}
template <class T>
void validate_state(std::string_view fn, const RmspropState<T>& s) {
  validate_rmsprop_state(fn, s);
}

// Writes a state of kind `kind` (checked first, naming the file) to `path` atomically.
template <class State>
void save_state(const std::filesystem::path& path, const char* kind, const State& s) {
  validate_state("rlhf::save_optimizer_state '" + path.string() + "'", s);
  auto meta = header(kind);
  std::vector<io::TensorView> views;
  for_each_state_field(s, [&](const char* name, const auto& field) {
    if constexpr (is_buffer<std::remove_cvref_t<decltype(field)>>)
      views.push_back(view(name, field));
    else
      meta[name] = text(field);
  });
  io::save_safetensors(path, views, meta);
}

// The state in `path`, checked as the optimizer's restore checks it (errors name the file and the field).
template <class State>
State load_state(const char* fn, const std::filesystem::path& path, const char* kind) {
  using T = typename state_traits<State>::scalar;
  State s;
  std::set<std::string> tensors;
  for_each_state_field(s, [&](const char* name, const auto& field) {
    if constexpr (is_buffer<std::remove_cvref_t<decltype(field)>>) tensors.insert(name);
  });
  const Reader r(fn, path, kind, std::move(tensors));
  for_each_state_field(s, [&](const char* name, auto& field) {
    using F = std::remove_cvref_t<decltype(field)>;
    if constexpr (is_buffer<F>)
      field = r.values<T>(name);
    else if constexpr (std::is_same_v<F, bool>)
      field = r.get_flag(name);
    else if constexpr (std::is_same_v<F, std::size_t>)
      field = r.get_size(name);
    else
      field = r.get_float(name);
  });
  validate_state(r.fn(), s);
  return s;
}

}  // namespace detail::state_file

// ---- AdamW and RMSprop ----------------------------------------------------------------------------------------

// Writes `s` to `path` atomically; refuses (validate_adamw_state / validate_rmsprop_state, naming the file) a state
// holding NaN, Inf or sizes that disagree, writing nothing. rlhf::CudaAdamW: save_optimizer_state(path, gpu.state()).
template <class T>
void save_optimizer_state(const std::filesystem::path& path, const AdamWState<T>& s) {
  detail::state_file::save_state(path, "adamw", s);
}
template <class T>
void save_optimizer_state(const std::filesystem::path& path, const RmspropState<T>& s) {
  detail::state_file::save_state(path, "rmsprop", s);
}
template <class Optimizer>
  requires requires(const Optimizer& o) { o.state(); }
void save_optimizer_state(const std::filesystem::path& path, const Optimizer& optimizer) {
  save_optimizer_state(path, optimizer.state());
}

// The state in `path`, checked as the optimizer's restore checks it (errors name the file and the field).
template <class T = float>
AdamWState<T> load_adamw_state(const std::filesystem::path& path) {
  return detail::state_file::load_state<AdamWState<T>>("rlhf::load_adamw_state", path, "adamw");
}
template <class T = float>
RmspropState<T> load_rmsprop_state(const std::filesystem::path& path) {
  return detail::state_file::load_state<RmspropState<T>>("rlhf::load_rmsprop_state", path, "rmsprop");
}

// Restores `optimizer` from `path`, whose moments must be of the `parameters` it is to step (shape_error).
template <class T>
void load_optimizer_state(const std::filesystem::path& path, AdamW<T>& optimizer, std::size_t parameters) {
  detail::state_file::restore_from_file<AdamWState<T>>(path, "rlhf::load_adamw_state", optimizer, parameters);
}
template <class T>
void load_optimizer_state(const std::filesystem::path& path, Rmsprop<T>& optimizer, std::size_t parameters) {
  detail::state_file::restore_from_file<RmspropState<T>>(path, "rlhf::load_rmsprop_state", optimizer, parameters);
}

template <class State, class Optimizer>
void detail::state_file::restore_from_file(const std::filesystem::path& path, const char* loader,
                                           Optimizer& optimizer, std::size_t parameters) {
  using traits = state_traits<State>;
  auto s = load_state<State>(loader, path, traits::kind);
  std::size_t sized = 0;
  for_each_state_field(s, [&](const char* name, const auto& field) {
    if constexpr (is_buffer<std::remove_cvref_t<decltype(field)>>)
      if (std::string_view(name) == traits::sized_by) sized = field.size();
  });
  require_parameters("rlhf::load_optimizer_state '" + path.string() + "'", traits::sized_by, sized, s.step,
                     parameters);
  optimizer.restore(std::move(s));
}

// ---- Rng -----------------------------------------------------------------------------------------------------

inline void save_rng_state(const std::filesystem::path& path, const Rng& rng) {
  const Rng::State s = rng.state();  // never all zero: Rng::restore refuses it and no seed leads there
  auto meta = detail::state_file::header("rng");
  meta["generator"] = "xoshiro256**";
  const io::TensorView views[] = {{.name = "state", .dtype = io::Dtype::u64, .shape = {4}, .bytes = s.data()}};
  io::save_safetensors(path, views, meta);
}

inline Rng::State load_rng_state(const std::filesystem::path& path) {
  const detail::state_file::Reader r("rlhf::load_rng_state", path, "rng", {"state"});
  if (const auto& g = r.get("generator"); g != "xoshiro256**")
    fail<io_error>(r.fn(), ": metadata 'generator' is '", io::detail::clip(g), "', not 'xoshiro256**'");
  const auto words = r.values<std::uint64_t>("state", io::Dtype::u64);
  if (words.size() != 4)
    fail<io_error>(r.fn(), ": tensor 'state' holds ", words.size(), " words but xoshiro256** has 4");
  Rng::State s{};
  std::copy(words.begin(), words.end(), s.begin());
  if (s == Rng::State{}) fail<value_error>(r.fn(), ": 'state' is all zero, which no generator ever reaches");
  return s;
}

inline void load_rng_state(const std::filesystem::path& path, Rng& rng) { rng.restore(load_rng_state(path)); }

// ---- Learning-rate schedule ----------------------------------------------------------------------------------

inline void save_schedule_state(const std::filesystem::path& path, const ScheduleState& s) {
  namespace sf = detail::state_file;
  detail::validate_schedule(s.config, "rlhf::save_schedule_state '" + path.string() + "'");
  auto meta = sf::header("schedule");
  meta["step"] = sf::text(s.step);
  meta["peak_learning_rate"] = sf::text(s.config.peak_learning_rate);
  meta["warmup_steps"] = sf::text(s.config.warmup_steps);
  meta["total_steps"] = sf::text(s.config.total_steps);
  meta["decay"] = sf::decay_name(s.config.decay);
  meta["final_fraction"] = sf::text(s.config.final_fraction);
  io::save_safetensors(path, std::span<const io::TensorView>{}, meta);
}

inline void save_schedule_state(const std::filesystem::path& path, const LearningRateSchedule& schedule) {
  save_schedule_state(path, schedule.state());
}

inline ScheduleState load_schedule_state(const std::filesystem::path& path) {
  const detail::state_file::Reader r("rlhf::load_schedule_state", path, "schedule", {});
  ScheduleState s;
  s.step = r.get_size("step");
  s.config.peak_learning_rate = r.get_float("peak_learning_rate");
  s.config.warmup_steps = r.get_size("warmup_steps");
  s.config.total_steps = r.get_size("total_steps");
  s.config.decay = r.get_decay("decay");
  s.config.final_fraction = r.get_float("final_fraction");
  detail::validate_schedule(s.config, r.fn());
  return s;
}

inline void load_schedule_state(const std::filesystem::path& path, LearningRateSchedule& schedule) {
  schedule.restore(load_schedule_state(path));
}

}  // namespace rlhf
