#pragma once
// The methods of rlhf-train, listed once. Adding a method: its file under methods/ and one line here.
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "methods/cpo.hpp"
#include "methods/dpo.hpp"
#include "methods/grpo.hpp"
#include "methods/kto.hpp"
#include "methods/orpo.hpp"
#include "methods/ppo.hpp"
#include "methods/reinforce_pp.hpp"
#include "methods/reward.hpp"
#include "methods/rloo.hpp"
#include "methods/sft.hpp"
#include "methods/unlikelihood.hpp"

namespace trainer {

struct RegisteredMethod {
  const char* name;
  std::unique_ptr<Method> (*make)();
};

template <class M>
constexpr RegisteredMethod registered() {
  return {M::method_name, []() -> std::unique_ptr<Method> { return std::make_unique<M>(); }};
}

inline const std::vector<RegisteredMethod>& method_registry() {
  static const std::vector<RegisteredMethod> all = {
      registered<Sft>(),  registered<Dpo>(),  registered<Reward>(), registered<Ppo>(),
      registered<Unlikelihood>(), registered<Grpo>(), registered<Rloo>(), registered<ReinforcePp>(),
      registered<Kto>(),  registered<Orpo>(), registered<Cpo>(),
  };
  return all;
}

// The method called `name`; null when there is none.
inline std::unique_ptr<Method> make_method(std::string_view name) {
  for (const auto& m : method_registry())
    if (name == m.name) return m.make();
  return nullptr;
}

// The registered names as "a, b, ... or z", for messages.
inline std::string method_list() {
  const auto& all = method_registry();
  std::string s;
  for (std::size_t i = 0; i < all.size(); ++i) s += (i == 0 ? "" : i + 1 == all.size() ? " or " : ", ") + std::string(all[i].name);
  return s;
}

}  // namespace trainer
