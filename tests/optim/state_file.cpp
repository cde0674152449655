// The state a resumed run restores: AdamW's and RMSprop's state() / restore() and their checks, the generator's
// and the schedule's, and their files (optim/state_file.hpp): every bit read back, and every hostile or
// mismatched file refused with an error that names the file and the field. docs/optim/state.md.
#include "rlhf/optim/state_file.hpp"

#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "rlhf/core/rng.hpp"
#include "rlhf/io/safetensors.hpp"
#include "support/bytes.hpp"
#include "support/temp_dir.hpp"

using namespace rlhf;
using rlhf::test::TempDir;
namespace fs = std::filesystem;

namespace {

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

template <class T>
std::vector<T> values(std::size_t n, std::uint64_t seed, double scale = 1.0) {
  Rng rng(seed);
  std::vector<T> v(n);
  for (auto& x : v) x = T(scale * rng.normal());
  return v;
}

// An AdamW after `steps` steps on n parameters, and its parameters.
template <class T>
AdamW<T> stepped_adamw(std::vector<T>& p, int steps, std::uint64_t seed = 1) {
  AdamW<T> opt({.learning_rate = 0.01f, .beta1 = 0.8f, .beta2 = 0.95f, .epsilon = 1e-7f, .weight_decay = 0.1f});
  for (int s = 0; s < steps; ++s) opt.step(p, values<T>(p.size(), seed + std::uint64_t(s)));
  return opt;
}

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// Runs f, which must throw E; returns the message.
template <class E, class F>
std::string message_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  } catch (const std::exception& e) {
    FAIL("the wrong exception: ", e.what());
    return {};
  }
  FAIL("no exception");
  return {};
}

// A file like the ones save_optimizer_state writes, with the given metadata and F32 tensors.
void write_state(const fs::path& p, const std::map<std::string, std::string>& meta,
                 const std::map<std::string, std::vector<float>>& tensors) {
  std::vector<io::TensorView> views;
  for (const auto& [name, v] : tensors) views.push_back({.name = name, .shape = {v.size()}, .data = v.data()});
  io::save_safetensors(p, views, meta);
}

std::map<std::string, std::string> adamw_meta() {
  return {{"rlhf_state", "adamw"}, {"rlhf_state_version", "1"}, {"step", "2"}, {"learning_rate", "0.01"},
          {"beta1", "0.9"},        {"beta2", "0.999"},          {"epsilon", "1e-08"}, {"weight_decay", "0.01"}};
}

}  // namespace

TEST_CASE("AdamW state: a restored optimizer takes the same steps, bit for bit (float and double)") {
  const auto check = [](auto zero) {
    using T = decltype(zero);
    std::vector<T> p = values<T>(7, 11), q;
    AdamW<T> a = stepped_adamw(p, 3);
    q = p;
    AdamW<T> b({.learning_rate = 0.5f});
    b.restore(a.state());
    CHECK(b.steps() == 3);
    CHECK(b.config().beta2 == 0.95f);
    for (std::uint64_t s = 0; s < 4; ++s) {
      a.set_learning_rate(0.02f / float(s + 1));
      b.set_learning_rate(0.02f / float(s + 1));
      const auto g = values<T>(7, 100 + s);
      a.step(p, g);
      b.step(q, g);
    }
    CHECK(same_bits(p, q));
    const auto sa = a.state(), sb = b.state();
    CHECK(same_bits(sa.exp_avg, sb.exp_avg));
    CHECK(same_bits(sa.exp_avg_sq, sb.exp_avg_sq));
    AdamW<T> fresh;
    fresh.restore(AdamW<T>().state());  // the state before any step
    CHECK(fresh.steps() == 0);
  };
  check(0.0f);
  check(0.0);
}

TEST_CASE("AdamW state: restore refuses a state no AdamW can be in, and changes nothing") {
  std::vector<float> p = values<float>(4, 3);
  AdamW<float> opt = stepped_adamw(p, 2);
  const auto before = opt.state();
  const auto refused = [&](AdamWState<float> s, const std::string& part, auto error) {
    using E = decltype(error);
    const auto what = message_of<E>([&] { opt.restore(s); });
    CHECK_MESSAGE(has(what, "rlhf::AdamW::restore"), what);
    CHECK_MESSAGE(has(what, part), what);
    CHECK(opt.steps() == before.step);
    CHECK(same_bits(opt.state().exp_avg, before.exp_avg));
  };
  auto s = before;
  s.exp_avg_sq.pop_back();
  refused(s, "'exp_avg_sq' has 3 elements", shape_error{""});
  s = before;
  s.step = 0;
  refused(s, "step is 0", shape_error{""});
  s = before;
  s.exp_avg[2] = NAN;
  refused(s, "'exp_avg' holds nan at index 2", value_error{""});
  s = before;
  s.exp_avg_sq[1] = INFINITY;
  refused(s, "'exp_avg_sq' holds inf at index 1", value_error{""});
  s = before;
  s.exp_avg_sq[0] = -1e-3f;
  refused(s, "never negative", value_error{""});
  s = before;
  s.config.beta1 = 1.0f;
  refused(s, "beta1", config_error{""});
  s = before;
  s.config.learning_rate = NAN;
  refused(s, "learning_rate", config_error{""});
  // A state of 4 parameters cannot step 5.
  opt.restore(before);
  std::vector<float> five(5), g(5);
  CHECK_THROWS_AS(opt.step(five, g), shape_error);
}

TEST_CASE("RMSprop state: restored steps are bit-identical; the buffers must fit the config") {
  for (const bool centered : {false, true})
    for (const float momentum : {0.0f, 0.9f}) {
      CAPTURE(centered);
      CAPTURE(momentum);
      const RmspropConfig c{.learning_rate = 0.01f, .weight_decay = 0.01f, .momentum = momentum, .centered = centered};
      std::vector<double> p = values<double>(6, 5), q;
      Rmsprop<double> a(c), b;
      for (std::uint64_t s = 0; s < 3; ++s) a.step(p, values<double>(6, 20 + s));
      q = p;
      b.restore(a.state());
      for (std::uint64_t s = 0; s < 3; ++s) {
        const auto g = values<double>(6, 40 + s);
        a.step(p, g);
        b.step(q, g);
      }
      CHECK(same_bits(p, q));
      const auto st = a.state();
      CHECK(st.grad_avg.size() == (centered ? 6u : 0u));
      CHECK(st.momentum_buffer.size() == (momentum > 0 ? 6u : 0u));
    }
  std::vector<float> p = values<float>(3, 1);
  Rmsprop<float> opt({.centered = true});
  opt.step(p, values<float>(3, 2));
  auto s = opt.state();
  s.grad_avg.clear();
  CHECK_THROWS_WITH_AS(opt.restore(s), doctest::Contains("'grad_avg' has 0 elements but 3 were expected"), shape_error);
  s = opt.state();
  s.momentum_buffer.assign(3, 0.0f);
  CHECK_THROWS_WITH_AS(opt.restore(s), doctest::Contains("'momentum_buffer' has 3 elements but 0"), shape_error);
  s = opt.state();
  s.square_avg[1] = -2.0f;
  CHECK_THROWS_WITH_AS(opt.restore(s), doctest::Contains("'square_avg' holds -2"), value_error);
  s = opt.state();
  s.grad_avg[0] = NAN;
  CHECK_THROWS_WITH_AS(opt.restore(s), doctest::Contains("'grad_avg' holds nan"), value_error);
  CHECK(std::isfinite(opt.state().grad_avg[0]));  // the refused restores changed nothing
}

TEST_CASE("Rng state: restore continues the stream; the all-zero state is refused") {
  Rng a(42);
  for (int i = 0; i < 5; ++i) a.next();
  const Rng::State s = a.state();
  Rng b(7);
  b.restore(s);
  for (int i = 0; i < 100; ++i) CHECK(a.next() == b.next());
  const auto before = b.state();
  CHECK_THROWS_WITH_AS(b.restore(Rng::State{}), doctest::Contains("all zero"), value_error);
  CHECK(b.state() == before);
}

TEST_CASE("LearningRateSchedule: the step is its state") {
  const ScheduleConfig c{.peak_learning_rate = 1e-3f, .warmup_steps = 2, .total_steps = 8, .decay = Decay::linear};
  LearningRateSchedule a(c), b;
  for (int i = 0; i < 5; ++i) a.advance();
  b.restore(a.state());
  for (std::size_t s = 5; s < 10; ++s, a.advance(), b.advance()) {
    CHECK(a.learning_rate() == b.learning_rate());
    CHECK(b.learning_rate() == learning_rate_at(c, s));
  }
  CHECK_THROWS_AS(LearningRateSchedule({.warmup_steps = 3, .total_steps = 2}), config_error);
  CHECK_THROWS_AS(b.restore({.config = {.peak_learning_rate = -1.0f}, .step = 0}), config_error);
  CHECK(b.step() == 10);
}

TEST_CASE("state files: every bit of every state round-trips") {
  TempDir dir("rlhf-state");
  SUBCASE("AdamW, float and double, before and after steps") {
    std::vector<float> pf = values<float>(9, 2);
    std::vector<double> pd = values<double>(9, 2);
    const auto af = stepped_adamw(pf, 3).state();
    const auto ad = stepped_adamw(pd, 3).state();
    save_optimizer_state(dir / "f.safetensors", af);
    save_optimizer_state(dir / "d.safetensors", ad);
    save_optimizer_state(dir / "empty.safetensors", AdamWState<float>{});
    save_optimizer_state(dir / "empty64.safetensors", AdamWState<double>{});
    CHECK(load_adamw_state<double>(dir / "empty64.safetensors").exp_avg_sq.empty());
    const auto bf = load_adamw_state<float>(dir / "f.safetensors");
    const auto bd = load_adamw_state<double>(dir / "d.safetensors");
    CHECK(bf.step == 3);
    CHECK(same_bits(bf.exp_avg, af.exp_avg));
    CHECK(same_bits(bf.exp_avg_sq, af.exp_avg_sq));
    CHECK(same_bits(bd.exp_avg, ad.exp_avg));
    CHECK(same_bits(bd.exp_avg_sq, ad.exp_avg_sq));
    CHECK(std::bit_cast<std::uint32_t>(bf.config.epsilon) == std::bit_cast<std::uint32_t>(af.config.epsilon));
    CHECK(bd.config.beta1 == ad.config.beta1);
    CHECK(bd.config.beta2 == ad.config.beta2);
    CHECK(bd.config.weight_decay == ad.config.weight_decay);
    const auto st = io::Safetensors::load(dir / "d.safetensors");
    CHECK(st.info("exp_avg").dtype == io::Dtype::f64);
    CHECK(st.metadata().at("rlhf_state") == "adamw");
    CHECK(st.metadata().at("beta1") == "0.8");  // the shortest text that reads back as the same float
    CHECK(load_adamw_state<float>(dir / "empty.safetensors").exp_avg.empty());
  }
  SUBCASE("every float32 learning rate, subnormal to huge, reads back as itself") {
    for (const float lr : {0.0f, 1e-45f, 1.17549435e-38f, 3e-4f, 0.1f, 1.0f / 3.0f, 6.02e23f,
                           std::numeric_limits<float>::max()}) {
      AdamWState<float> s;
      s.config.learning_rate = lr;
      save_optimizer_state(dir / "lr.safetensors", s);
      CHECK(std::bit_cast<std::uint32_t>(load_adamw_state<float>(dir / "lr.safetensors").config.learning_rate) ==
            std::bit_cast<std::uint32_t>(lr));
    }
  }
  SUBCASE("RMSprop, centred with momentum") {
    std::vector<float> p = values<float>(5, 8);
    Rmsprop<float> opt({.learning_rate = 0.003f, .alpha = 0.9f, .momentum = 0.5f, .centered = true});
    opt.step(p, values<float>(5, 9));
    save_optimizer_state(dir / "r.safetensors", opt);
    Rmsprop<float> back;
    load_optimizer_state(dir / "r.safetensors", back, 5);
    const auto a = opt.state(), b = back.state();
    CHECK(b.config.centered);
    CHECK(b.config.alpha == 0.9f);
    CHECK(same_bits(a.square_avg, b.square_avg));
    CHECK(same_bits(a.grad_avg, b.grad_avg));
    CHECK(same_bits(a.momentum_buffer, b.momentum_buffer));
  }
  SUBCASE("Rng and schedule") {
    Rng rng(5);
    rng.next();
    save_rng_state(dir / "rng.safetensors", rng);
    CHECK(load_rng_state(dir / "rng.safetensors") == rng.state());
    CHECK(io::Safetensors::load(dir / "rng.safetensors").info("state").dtype == io::Dtype::u64);
    LearningRateSchedule sched({.peak_learning_rate = 3e-4f, .warmup_steps = 10, .total_steps = 100,
                                .decay = Decay::cosine, .final_fraction = 0.1f});
    for (int i = 0; i < 17; ++i) sched.advance();
    save_schedule_state(dir / "schedule.safetensors", sched);
    LearningRateSchedule back;
    load_schedule_state(dir / "schedule.safetensors", back);
    CHECK(back.step() == 17);
    CHECK(back.config().final_fraction == 0.1f);
    CHECK(back.config().decay == Decay::cosine);
    CHECK(back.learning_rate() == sched.learning_rate());
  }
}

TEST_CASE("state files: a state holding NaN is never written; an existing file keeps its bytes") {
  TempDir dir("rlhf-state");
  std::vector<float> p = values<float>(4, 2);
  auto s = stepped_adamw(p, 2).state();
  const auto path = dir / "optimizer.safetensors";
  save_optimizer_state(path, s);
  const auto before = test::read_bytes(path);
  s.exp_avg[3] = NAN;
  auto what = message_of<value_error>([&] { save_optimizer_state(path, s); });
  CHECK_MESSAGE(has(what, path.string()), what);
  CHECK_MESSAGE(has(what, "'exp_avg' holds nan at index 3"), what);
  CHECK(test::read_bytes(path) == before);
  what = message_of<value_error>([&] { save_optimizer_state(dir / "new.safetensors", s); });
  CHECK_FALSE(fs::exists(dir / "new.safetensors"));
  RmspropState<double> r;
  r.step = 1;
  r.square_avg = {1.0, -INFINITY};
  what = message_of<value_error>([&] { save_optimizer_state(dir / "r.safetensors", r); });
  CHECK_MESSAGE(has(what, "'square_avg' holds -inf at index 1"), what);
  CHECK_FALSE(fs::exists(dir / "r.safetensors"));
  for (const auto& e : fs::directory_iterator(dir.path)) CHECK_MESSAGE(!has(e.path().string(), ".tmp-"), e.path());
}

TEST_CASE("state files: hostile and mismatched files are refused, naming the file and the field") {
  TempDir dir("rlhf-state");
  const auto path = dir / "optimizer.safetensors";
  const auto p = path.string();
  const std::vector<float> three = {0.1f, 0.2f, 0.3f}, three_sq = {0.01f, 0.02f, 0.03f};
  const auto io_refused = [&](const std::string& part) {
    const auto what = message_of<io_error>([&] { (void)load_adamw_state<float>(path); });
    CHECK_MESSAGE(has(what, p), what);
    CHECK_MESSAGE(has(what, part), what);
  };

  SUBCASE("a good file, then truncated") {
    std::vector<float> params = values<float>(64, 2);
    save_optimizer_state(path, stepped_adamw(params, 1));
    fs::resize_file(path, fs::file_size(path) - 4);
    io_refused("truncated");
    fs::resize_file(path, 5);
    io_refused("shorter than the 8-byte header length");
    test::write_bytes(path, "");
    io_refused("0 bytes");
  }
  SUBCASE("not a state file, or of another kind or version") {
    auto meta = adamw_meta();
    meta.erase("rlhf_state");
    write_state(path, meta, {{"exp_avg", three}, {"exp_avg_sq", three_sq}});
    io_refused("metadata has no 'rlhf_state'");
    meta = adamw_meta();
    meta["rlhf_state"] = "rmsprop";
    write_state(path, meta, {{"exp_avg", three}, {"exp_avg_sq", three_sq}});
    io_refused("holds the state of 'rmsprop', not of 'adamw'");
    meta = adamw_meta();
    meta["rlhf_state_version"] = "2";
    write_state(path, meta, {{"exp_avg", three}, {"exp_avg_sq", three_sq}});
    io_refused("version 1 only");
  }
  SUBCASE("missing, extra, wrong-dtype and wrong-rank tensors") {
    write_state(path, adamw_meta(), {{"exp_avg", three}});
    io_refused("tensor 'exp_avg_sq' is missing");
    write_state(path, adamw_meta(), {{"exp_avg", three}, {"exp_avg_sq", three_sq}, {"extra", three}});
    io_refused("unexpected tensor 'extra'");
    write_state(path, adamw_meta(), {{"exp_avg", three}, {"exp_avg_sq", three_sq}});
    const auto what = message_of<io_error>([&] { (void)load_adamw_state<double>(path); });
    CHECK_MESSAGE(has(what, "tensor 'exp_avg' has dtype F32 but F64 was expected"), what);
    const std::vector<float> four = {1, 2, 3, 4};
    const io::TensorView rank2[] = {{.name = "exp_avg", .shape = {2, 2}, .data = four.data()},
                                    {.name = "exp_avg_sq", .shape = {4}, .data = four.data()}};
    io::save_safetensors(path, rank2, adamw_meta());
    io_refused("tensor 'exp_avg' has shape [2, 2] but a vector (rank 1) was expected");
  }
  SUBCASE("moments of different sizes, or of another model") {
    write_state(path, adamw_meta(), {{"exp_avg", three}, {"exp_avg_sq", {0.1f, 0.2f}}});
    auto what = message_of<shape_error>([&] { (void)load_adamw_state<float>(path); });
    CHECK_MESSAGE(has(what, p), what);
    CHECK_MESSAGE(has(what, "'exp_avg_sq' has 2 elements but the size of 'exp_avg' is 3"), what);
    write_state(path, adamw_meta(), {{"exp_avg", three}, {"exp_avg_sq", three_sq}});
    AdamW<float> opt;
    what = message_of<shape_error>([&] { load_optimizer_state(path, opt, 4); });
    CHECK_MESSAGE(has(what, p), what);
    CHECK_MESSAGE(has(what, "'exp_avg' holds 3 values but the optimizer is to step 4 parameters"), what);
    CHECK(opt.steps() == 0);
    load_optimizer_state(path, opt, 3);
    CHECK(opt.steps() == 2);
  }
  SUBCASE("NaN, Inf or a negative mean of squares in the tensors") {
    write_state(path, adamw_meta(), {{"exp_avg", {0.1f, NAN, 0.3f}}, {"exp_avg_sq", three_sq}});
    auto what = message_of<value_error>([&] { (void)load_adamw_state<float>(path); });
    CHECK_MESSAGE(has(what, p), what);
    CHECK_MESSAGE(has(what, "'exp_avg' holds nan at index 1"), what);
    write_state(path, adamw_meta(), {{"exp_avg", three}, {"exp_avg_sq", {0.1f, 0.2f, -INFINITY}}});
    what = message_of<value_error>([&] { (void)load_adamw_state<float>(path); });
    CHECK_MESSAGE(has(what, "'exp_avg_sq' holds -inf at index 2"), what);
    write_state(path, adamw_meta(), {{"exp_avg", three}, {"exp_avg_sq", {0.1f, -0.2f, 0.3f}}});
    what = message_of<value_error>([&] { (void)load_adamw_state<float>(path); });
    CHECK_MESSAGE(has(what, "never negative"), what);
  }
  SUBCASE("metadata that is missing, not a number, NaN or out of range") {
    const auto with = [&](const std::string& key, const std::string& value) {
      auto meta = adamw_meta();
      if (value.empty()) {
        meta.erase(key);
      } else {
        meta[key] = value;
      }
      write_state(path, meta, {{"exp_avg", three}, {"exp_avg_sq", three_sq}});
    };
    with("step", "");
    io_refused("metadata has no 'step'");
    with("step", "-1");
    io_refused("metadata 'step' = '-1' is not a non-negative integer");
    with("step", "99999999999999999999999");
    io_refused("that fits in 64 bits");
    with("step", "0");
    CHECK_THROWS_WITH_AS((void)load_adamw_state<float>(path), doctest::Contains("step is 0"), shape_error);
    with("learning_rate", "nan");
    io_refused("metadata 'learning_rate' = 'nan' is not a finite float32 number");
    with("beta2", "0.9x");
    io_refused("metadata 'beta2' = '0.9x'");
    with("epsilon", "1e99");
    io_refused("metadata 'epsilon' = '1e99'");
    with("beta1", "1.5");
    const auto what = message_of<config_error>([&] { (void)load_adamw_state<float>(path); });
    CHECK_MESSAGE(has(what, p), what);
    CHECK_MESSAGE(has(what, "beta1"), what);
  }
  SUBCASE("a model checkpoint or a directory is not an optimizer state") {
    write_state(path, {{"format", "pt"}}, {{"wte.weight", three}});
    io_refused("not a state file of rlhf-cpp");
    fs::create_directories(dir / "folder");
    const auto what = message_of<io_error>([&] { (void)load_adamw_state<float>(dir / "folder"); });
    CHECK_MESSAGE(has(what, "is a directory"), what);
  }
  SUBCASE("RMSprop: buffers that do not fit the config") {
    const std::map<std::string, std::string> meta = {
        {"rlhf_state", "rmsprop"}, {"rlhf_state_version", "1"}, {"step", "1"},        {"learning_rate", "0.01"},
        {"alpha", "0.99"},         {"epsilon", "1e-08"},        {"weight_decay", "0"}, {"momentum", "0"},
        {"centered", "1"}};
    write_state(path, meta, {{"square_avg", three_sq}, {"grad_avg", {}}, {"momentum_buffer", {}}});
    const auto what = message_of<shape_error>([&] { (void)load_rmsprop_state<float>(path); });
    CHECK_MESSAGE(has(what, p), what);
    CHECK_MESSAGE(has(what, "'grad_avg' has 0 elements but 3 were expected"), what);
    auto bad = meta;
    bad["centered"] = "yes";
    write_state(path, bad, {{"square_avg", three_sq}, {"grad_avg", three}, {"momentum_buffer", {}}});
    CHECK_THROWS_WITH_AS((void)load_rmsprop_state<float>(path), doctest::Contains("'centered' = 'yes' is not 0 or 1"),
                         io_error);
    write_state(path, meta, {{"square_avg", three_sq}, {"grad_avg", three}, {"momentum_buffer", {}}});
    CHECK(load_rmsprop_state<float>(path).grad_avg.size() == 3);
  }
  SUBCASE("Rng: all zero, wrong dtype or length, another generator") {
    const auto rng_path = dir / "rng.safetensors";
    const std::map<std::string, std::string> meta = {
        {"rlhf_state", "rng"}, {"rlhf_state_version", "1"}, {"generator", "xoshiro256**"}};
    const auto write_words = [&](std::vector<std::uint64_t> words, io::Dtype dtype, std::size_t n,
                                 std::map<std::string, std::string> m) {
      const io::TensorView views[] = {{.name = "state", .dtype = dtype, .shape = {n}, .bytes = words.data()}};
      io::save_safetensors(rng_path, views, m);
    };
    write_words({0, 0, 0, 0}, io::Dtype::u64, 4, meta);
    auto what = message_of<value_error>([&] { (void)load_rng_state(rng_path); });
    CHECK_MESSAGE(has(what, rng_path.string()), what);
    CHECK_MESSAGE(has(what, "all zero"), what);
    write_words({1, 2, 3, 4}, io::Dtype::i64, 4, meta);
    CHECK_THROWS_WITH_AS((void)load_rng_state(rng_path), doctest::Contains("dtype I64 but U64"), io_error);
    write_words({1, 2, 3}, io::Dtype::u64, 3, meta);
    CHECK_THROWS_WITH_AS((void)load_rng_state(rng_path), doctest::Contains("holds 3 words"), io_error);
    auto other = meta;
    other["generator"] = "mt19937";
    write_words({1, 2, 3, 4}, io::Dtype::u64, 4, other);
    CHECK_THROWS_WITH_AS((void)load_rng_state(rng_path), doctest::Contains("'generator' is 'mt19937'"), io_error);
    write_words({1, 2, 3, 4}, io::Dtype::u64, 4, meta);
    Rng rng;
    load_rng_state(rng_path, rng);
    CHECK(rng.state() == Rng::State{1, 2, 3, 4});
  }
  SUBCASE("schedule: an unknown decay, warm-up past the total") {
    const auto sched = dir / "schedule.safetensors";
    std::map<std::string, std::string> meta = {
        {"rlhf_state", "schedule"}, {"rlhf_state_version", "1"}, {"step", "3"},
        {"peak_learning_rate", "0.001"}, {"warmup_steps", "2"}, {"total_steps", "10"},
        {"decay", "cosine"}, {"final_fraction", "0"}};
    write_state(sched, meta, {});
    CHECK(load_schedule_state(sched).step == 3);
    meta["decay"] = "exponential";
    write_state(sched, meta, {});
    CHECK_THROWS_WITH_AS((void)load_schedule_state(sched), doctest::Contains("'decay' = 'exponential'"), io_error);
    meta["decay"] = "linear";
    meta["warmup_steps"] = "11";
    write_state(sched, meta, {});
    CHECK_THROWS_WITH_AS((void)load_schedule_state(sched), doctest::Contains(sched.string().c_str()), config_error);
  }
}
