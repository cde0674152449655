#pragma once
// The names of the metrics the losses and steps return, as constants. They follow the names current TRL logs
// (DPOTrainer, RewardTrainer, PPOTrainer), so a dashboard built for TRL reads ours; where TRL has no
// name for a quantity the name is ours, in TRL's style. docs/losses/*.md list each loss's metrics.
namespace rlhf::metric {

// ---- preference losses: DPO and its variants, listwise DPO, Bradley–Terry, Plackett–Luce ----------------
inline constexpr const char* rewards_chosen = "rewards/chosen";          // mean reward of the preferred response
inline constexpr const char* rewards_rejected = "rewards/rejected";      // mean reward of the other one
inline constexpr const char* rewards_accuracies = "rewards/accuracies";  // share of pairs with chosen > rejected
inline constexpr const char* rewards_margins = "rewards/margins";        // mean chosen − rejected
inline constexpr const char* logps_chosen = "logps/chosen";              // mean Σ log π of the chosen response
inline constexpr const char* logps_rejected = "logps/rejected";

// ---- token losses: SFT, unlikelihood, sequence log-probs -------------------------------------------------
inline constexpr const char* nll_token = "nll/token";      // Σ NLL / Σ tokens (a token mean)
inline constexpr const char* tokens = "tokens";            // response tokens in the batch (a sum)
inline constexpr const char* nll_chosen = "nll/chosen";    // unlikelihood's likelihood term
inline constexpr const char* unlikelihood_rejected = "unlikelihood/rejected";
inline constexpr const char* logps_sequence = "logps/sequence";
inline constexpr const char* logps_token = "logps/token";
inline constexpr const char* tokens_response = "tokens/response";

// ---- every step (algorithms/step.hpp) -------------------------------------------------------------------
inline constexpr const char* grad_norm = "grad_norm";              // ‖g‖₂ before clipping (TRL's name)
inline constexpr const char* value_grad_norm = "val/grad_norm";    // PPO's critic, likewise (ours)

// ---- PPO: the rollout (objective/*) and the update (policy/*, val/*, loss/*) -----------------------------
inline constexpr const char* objective_scores = "objective/scores";  // mean reward-model score per sequence
inline constexpr const char* objective_kl = "objective/kl";          // mean Σ_t (log π − log π_ref) per sequence
inline constexpr const char* objective_kl_coef = "objective/kl_coef";
inline constexpr const char* objective_non_score_reward = "objective/non_score_reward";  // −κ · kl
inline constexpr const char* objective_rlhf_reward = "objective/rlhf_reward";            // scores − κ · kl
inline constexpr const char* tokens_response_mean = "tokens/responses_len_mean";
inline constexpr const char* policy_approxkl_avg = "policy/approxkl_avg";  // see docs/losses/ppo.md for which estimator
inline constexpr const char* policy_ppo_kl_avg = "policy/ppo_kl_avg";      // k1 = mean −log ρ (OpenRLHF's ppo_kl)
inline constexpr const char* policy_clipfrac_avg = "policy/clipfrac_avg";
inline constexpr const char* policy_dual_clipfrac_avg = "policy/dual_clipfrac_avg";
inline constexpr const char* val_ratio = "val/ratio";  // mean π / π_old
inline constexpr const char* val_clipfrac_avg = "val/clipfrac_avg";
inline constexpr const char* val_mse_avg = "val/mse_avg";
inline constexpr const char* loss_policy_avg = "loss/policy_avg";
inline constexpr const char* loss_value_avg = "loss/value_avg";

// ---- KTO and ORPO (losses/kto.hpp, losses/orpo.hpp): TRL's KTOTrainer and ORPOTrainer names ---------------
inline constexpr const char* kl = "kl";                          // KTO's reference point z0 (a mean log-ratio)
inline constexpr const char* count_chosen = "count/chosen";      // KTO: desirable examples in the batch (a sum)
inline constexpr const char* count_rejected = "count/rejected";  // KTO: undesirable examples (a sum)
inline constexpr const char* nll_loss = "nll_loss";              // ORPO's NLL term: chosen-token mean
inline constexpr const char* log_odds_ratio = "log_odds_ratio";  // ORPO: mean log σ(log odds(y_w) − log odds(y_l))
inline constexpr const char* log_odds_chosen = "log_odds_chosen";  // ORPO: mean log odds(y_w) − log odds(y_l)

}  // namespace rlhf::metric
