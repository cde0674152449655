#!/usr/bin/env python3
"""Reference values for the PPO family, from small independent implementations of the peers' formulas.

Run by hand from the repository root, with PyTorch installed (Debian: apt install python3-torch):

    /usr/bin/python3 tests/peers/ppo_family.py

It writes tests/data/peers/ppo_family.json, which is committed: tests/losses/peer_ppo_family.cpp reads it and
checks every output and every gradient of rlhf::ppo_policy_loss, ppo_value_loss, kl_estimate,
kl_penalized_rewards, gae, whiten and whiten_stats against it, so CI needs no torch. The output is
deterministic (fixed seeds); rerunning it must give the same file.

The functions below are written here from the peers' published formulas; each cites the peer file and function
whose convention it reproduces. Values and gradients are computed in float64 with torch.autograd. Every input is
rounded to a float32 value first, so that the library's float build sees exactly the same inputs and the float
comparison measures the library, not the rounding of its inputs. Masked (padding) entries hold 0, as the peers
multiply by the mask and a NaN there would poison their sums; the library never reads them.
"""
import json
import math
import os

import torch

torch.set_default_dtype(torch.float64)
B, T = 6, 8
LENGTHS = [8, 5, 0, 3, 1, 6]  # right-padded responses; row 2 is an empty completion


def f32(x):
    return x.float().double()


def response_mask(lengths):
    m = torch.zeros(len(lengths), T)
    for b, n in enumerate(lengths):
        m[b, :n] = 1
    return m


MASK = response_mask(LENGTHS)


def masked_mean(x, mask, dim=None):
    # OpenRLHF openrlhf/models/utils.py masked_mean; TRL trl/trainer/utils.py masked_mean. The denominator is
    # clamped at 1 as TRL's GRPOTrainer._compute_loss does ("grpo", "bnpo"), so an empty row or batch gives 0.
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def aggregate(loss_tok, mask, how, max_tokens=1.0):
    if how == "token_mean":  # OpenRLHF PolicyLoss token_level_loss=True; TRL PPOTrainer masked_mean
        return masked_mean(loss_tok, mask)
    if how == "sequence_mean":  # OpenRLHF token_level_loss=False; TRL GRPOTrainer loss_type="grpo"
        return masked_mean(loss_tok, mask, dim=-1).mean()
    if how == "sequence_sum":  # TRL GRPOTrainer loss_type="dr_grpo" (Dr. GRPO): / (B · max_completion_length)
        return (loss_tok * mask).sum() / (loss_tok.shape[0] * max_tokens)
    raise ValueError(how)


def logp_from_logits(gen, spread, ties_row=None):
    """Log-probs of a sampled token from logits in [-spread, spread] over 6 words (log_softmax)."""
    logits = (torch.rand(B, T, 6, generator=gen) * 2 - 1) * spread
    if ties_row is not None:
        logits[ties_row] = 7.0  # equal logits: log p = -log 6 exactly as far as rounding goes
    tokens = torch.randint(0, 6, (B, T), generator=gen)
    return torch.log_softmax(logits, -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


# ---- inputs ---------------------------------------------------------------------------------------------

def policy_inputs(gen):
    logp = f32(logp_from_logits(gen, 50.0, ties_row=3))
    delta = (torch.rand(B, T, generator=gen) * 2 - 1) * 0.6
    delta[0, 0] = 0.0  # ratio exactly 1
    delta[3, :] = 0.0  # a row of ties: ratio 1 everywhere
    delta[0, 1], delta[1, 2], delta[5, 3] = -2.5, -1.2, 1.5  # far outside the clip range, both sides
    adv = (torch.rand(B, T, generator=gen) * 2 - 1) * 2
    adv[0, 1], adv[1, 2] = -1.5, -0.7  # ratio e^2.5, e^1.2 with A < 0: dual-clipped (c = 3) and clipped
    adv[0, 2] = 0.0
    adv = f32(adv)
    old = f32(logp + delta)
    ratio = torch.exp(logp - old)
    kinks = [1 - 0.1, 1 - 0.2, 1 + 0.2, 1 + 0.28, 1 + 0.3, 1.5, 3.0]
    for k in kinks:  # keep every ratio 1e-4 away from every kink of every configuration below
        assert (ratio - k).abs().min() > 1e-4, k
    return {"logp": logp * MASK, "old_logp": old * MASK, "advantages": adv * MASK}


def value_inputs(gen):
    v = f32((torch.rand(B, T, generator=gen) * 2 - 1) * 3)
    old = f32(v + (torch.rand(B, T, generator=gen) * 2 - 1) * 0.8)
    old[4, 0] = v[4, 0]  # no move: a tie of the two branches
    ret = f32((torch.rand(B, T, generator=gen) * 2 - 1) * 3)
    return {"values": v * MASK, "old_values": old * MASK, "returns": ret * MASK}


def kl_inputs(gen):
    logp = f32(logp_from_logits(gen, 50.0, ties_row=3))
    gap = (torch.rand(B, T, generator=gen) * 2 - 1) * 15  # log-ratios up to ±15: the clamp at 10 bites
    gap[3, :] = 0.0  # equal log-probs
    ref = f32(logp + gap)
    return {"logp": logp * MASK, "ref_logp": ref * MASK}


# ---- PPO policy loss ------------------------------------------------------------------------------------

def policy_case(name, peer, inputs, clip_low, clip_high, dual_clip, how, max_tokens=1.0, mask=MASK, config=None):
    # OpenRLHF openrlhf/models/loss.py PolicyLoss.forward (clip_eps_low, clip_eps_high, dual_clip,
    # token_level_loss); TRL trl/trainer/ppo_trainer.py PPOTrainer.train (pg_losses, pg_losses2, pg_clipfrac).
    logp = inputs["logp"].clone().requires_grad_(True)
    old, adv = inputs["old_logp"], inputs["advantages"]
    log_ratio = logp - old
    ratio = torch.exp(log_ratio)
    surr1 = ratio * adv
    surr2 = ratio.clamp(1 - clip_low, 1 + clip_high) * adv
    clip1 = torch.min(surr1, surr2)
    if dual_clip:
        loss_tok = -torch.where(adv < 0, torch.max(clip1, dual_clip * adv), clip1)
    else:
        loss_tok = -clip1
    loss = aggregate(loss_tok, mask, how, max_tokens)
    loss.backward()
    with torch.no_grad():
        dual = (adv < 0) & (clip1 < dual_clip * adv) if dual_clip else torch.zeros_like(adv, dtype=torch.bool)
        metrics = {
            "policy/clipfrac_avg": masked_mean(torch.lt(surr2, surr1).double(), mask),  # OpenRLHF clip_ratio
            "policy/dual_clipfrac_avg": masked_mean(dual.double(), mask),
            "policy/ppo_kl_avg": masked_mean(-log_ratio, mask),  # OpenRLHF ppo_kl (k1)
            "policy/approxkl_avg": masked_mean(ratio - 1 - log_ratio, mask),  # k3 (Schulman 2020)
            "val/ratio": masked_mean(ratio, mask),
        }
    return {"kind": "policy", "name": name, "peer": peer, "inputs": "policy", "mask": mask.flatten().tolist(),
            "config": config, "outputs": {"loss": loss.item(), "d_logp": logp.grad.flatten().tolist()},
            "metrics": {k: v.item() for k, v in metrics.items()}}


# ---- PPO value loss -------------------------------------------------------------------------------------

def value_case(name, peer, inputs, clip, form, how, config):
    v = inputs["values"].clone().requires_grad_(True)
    old, ret = inputs["old_values"], inputs["returns"]
    if clip is None:  # OpenRLHF ValueLoss with clip_eps=None
        loss_tok = (v - ret) ** 2
        clipped = torch.zeros_like(v)
    else:
        if form == "trl":  # TRL PPOTrainer.train: vpredclipped = clamp(vpred, old - ε, old + ε)
            vc = torch.max(torch.min(v, old + clip), old - clip)
        else:  # OpenRLHF ValueLoss.forward: old + (v - old).clamp(-ε, ε)
            vc = old + (v - old).clamp(-clip, clip)
        l1, l2 = (v - ret) ** 2, (vc - ret) ** 2
        loss_tok = torch.max(l1, l2)
        clipped = (l2 > l1).double()  # TRL vf_clipfrac
    loss = 0.5 * aggregate(loss_tok, MASK, how)
    loss.backward()
    with torch.no_grad():
        metrics = {"val/clipfrac_avg": masked_mean(clipped, MASK), "val/mse_avg": masked_mean((v - ret) ** 2, MASK)}
    return {"kind": "value", "name": name, "peer": peer, "inputs": "value", "mask": MASK.flatten().tolist(),
            "config": config, "outputs": {"loss": loss.item(), "d_values": v.grad.flatten().tolist()},
            "metrics": {k: x.item() for k, x in metrics.items()}}


# ---- KL estimators --------------------------------------------------------------------------------------

def approx_kl(logp, ref, estimator, clamp):
    # OpenRLHF openrlhf/models/utils.py compute_approx_kl (k1, k2, k3; the estimate clamped to [-10, 10]);
    # TRL PPOTrainer.train: kl = -logr (k1) or (logr.exp() - 1) - logr (k3), logr = ref - logp, no clamp.
    log_ratio = logp - ref
    if estimator == "k1":
        k = log_ratio
    elif estimator == "k2":
        k = log_ratio ** 2 / 2.0
    else:
        k = (-log_ratio).exp() - 1 + log_ratio
    return k.clamp(min=-clamp, max=clamp) if clamp else k


def kl_case(name, peer, inputs, estimator, clamp, how):
    logp = inputs["logp"].clone().requires_grad_(True)
    ref = inputs["ref_logp"].clone().requires_grad_(True)
    k = approx_kl(logp, ref, estimator, clamp)
    if how == "sequence_sum":  # TRL PPOTrainer: mean_kl = kl.sum(1).mean() (objective/kl)
        mean = (k * MASK).sum(1).mean()
    elif how == "token_mean":  # OpenRLHF kl_loss = masked_mean(kl, action_mask); TRL GRPOTrainer mean_kl
        mean = masked_mean(k, MASK)
    else:  # OpenRLHF experience info["kl"] = masked_mean(kl, action_mask, dim=-1), averaged over samples
        mean = masked_mean(k, MASK, dim=-1).mean()
    mean.backward()
    with torch.no_grad():
        per_token = k * MASK
    return {"kind": "kl", "name": name, "peer": peer, "inputs": "kl", "mask": MASK.flatten().tolist(),
            "config": {"estimator": estimator, "clamp": clamp or 0.0, "aggregation": how},
            "outputs": {"mean": mean.item(), "per_token": per_token.flatten().tolist(),
                        "per_sequence": per_token.sum(1).tolist(), "d_logp": logp.grad.flatten().tolist(),
                        "d_ref_logp": ref.grad.flatten().tolist()}}


# ---- rewards, GAE, whitening (no gradients: every peer runs them under no_grad) ---------------------------

def rewards(scores, logp, ref, mask, kl_coef, estimator, clamp):
    # OpenRLHF openrlhf/models/utils.py compute_reward: -kl_coef · kl, the score on the last action token
    # (eos_indices); get_advantages_and_returns multiplies by the action mask before use, as done here.
    kl = approx_kl(logp, ref, estimator, clamp)
    r = -kl_coef * kl
    for b in range(mask.shape[0]):
        idx = mask[b].nonzero()
        if len(idx):
            r[b, idx[-1, 0]] += scores[b]
    return r * mask


def gae(rewards_, values, mask, gamma, lam):
    # OpenRLHF openrlhf/trainer/ppo_utils/experience_maker.py get_advantages_and_returns (TRL PPOTrainer.train
    # runs the same recursion): values and rewards masked first, V after the last column 0.
    values, rewards_ = values * mask, rewards_ * mask
    last, out = 0.0, []
    for t in reversed(range(rewards_.shape[1])):
        next_v = values[:, t + 1] if t < rewards_.shape[1] - 1 else 0.0
        delta = rewards_[:, t] + gamma * next_v - values[:, t]
        last = delta + gamma * lam * last
        out.append(last)
    adv = torch.stack(out[::-1], dim=1)
    return adv, adv + values


def whiten(x, mask, unbiased, eps_as_floor, zero_outside_mask, shift_mean=True):
    # TRL trl/core.py (trl/trainer/utils.py) masked_var / masked_whiten: unbiased variance, rsqrt(var + 1e-8),
    # then masked_fill(~mask, 0) in PPOTrainer. OpenRLHF experience_maker.py (advantage normalisation):
    # variance over n, var.clamp(min=1e-8).rsqrt(), every entry transformed.
    n = mask.sum()
    mean = (x * mask).sum() / n
    var = (((x - mean) ** 2) * mask).sum() / n
    if unbiased:
        var = var * n / (n - 1)
    rstd = var.clamp(min=1e-8).rsqrt() if eps_as_floor else torch.rsqrt(var + 1e-8)
    w = (x - mean) * rstd
    if not shift_mean:
        w = w + mean
    if zero_outside_mask:
        w = w * mask
    return w, mean.item(), var.item()


def rollout_cases(gen):
    logp = f32(logp_from_logits(gen, 50.0)) * MASK
    ref = f32(logp + (torch.rand(B, T, generator=gen) * 2 - 1) * 12) * MASK
    values = f32((torch.rand(B, T, generator=gen) * 2 - 1) * 2) * MASK
    scores = f32((torch.rand(B, generator=gen) * 2 - 1) * 3)
    tiny = f32(1 + (torch.rand(B, T, generator=gen) * 2 - 1) * 1e-4) * MASK  # variance ~1e-9 < ε: the ε forms differ
    inputs = {"logp": logp, "ref_logp": ref, "values": values, "tiny": tiny}
    cases = []
    for name, peer, coef, est, clamp, gamma, lam in [
        ("trl_k1", "TRL PPOTrainer (kl_estimator=k1, gamma=1, lam=0.95)", 0.05, "k1", 0, 1.0, 0.95),
        ("openrlhf_k3_clamp", "OpenRLHF compute_reward + get_advantages_and_returns (k3, clamp 10)", 0.1, "k3", 10,
         0.99, 0.9),
        ("openrlhf_k2_clamp", "OpenRLHF (k2, clamp 10, gamma=1, lambda=1)", 0.02, "k2", 10, 1.0, 1.0),
    ]:
        r = rewards(scores, logp, ref, MASK, coef, est, clamp)
        adv, ret = gae(r, values, MASK, gamma, lam)
        case = {"kind": "rollout", "name": name, "peer": peer,
                "config": {"kl_coef": coef, "estimator": est, "clamp": float(clamp), "gamma": gamma, "lambda": lam},
                "outputs": {"rewards": r.flatten().tolist(), "advantages": adv.flatten().tolist(),
                            "returns": ret.flatten().tolist()},
                "whiten": []}
        for x_name, x in [("advantages", adv), ("tiny", tiny)]:
            for wname, unbiased, floor, zero, shift in [("trl", True, False, True, True),
                                                        ("trl_shift_mean_false", True, False, True, False),
                                                        ("openrlhf", False, True, False, True)]:
                w, mean, var = whiten(x, MASK, unbiased, floor, zero, shift)
                case["whiten"].append({"input": x_name, "name": wname, "unbiased": unbiased, "eps_as_floor": floor,
                                       "zero_outside_mask": zero, "shift_mean": shift, "mean": mean,
                                       "variance": var, "values": w.flatten().tolist()})
        cases.append(case)
    return inputs, scores, cases


def main():
    gen = torch.Generator().manual_seed(20240612)
    pol, val, kl = policy_inputs(gen), value_inputs(gen), kl_inputs(gen)
    roll, scores, rollout = rollout_cases(gen)
    cases = []
    cfg = lambda lo, hi, dual, how, L=1.0: {"clip_low": lo, "clip_high": hi, "dual_clip": dual, "aggregation": how,
                                            "max_tokens": L}
    for name, peer, lo, hi, dual, how, L in [
        ("trl_ppo", "TRL PPOTrainer (cliprange 0.2)", 0.2, 0.2, 0, "token_mean", 1.0),
        ("openrlhf_token", "OpenRLHF PolicyLoss (eps 0.2, dual_clip 3, token_level_loss)", 0.2, 0.2, 3.0,
         "token_mean", 1.0),
        ("openrlhf_sequence_dapo", "OpenRLHF PolicyLoss (clip_eps_low 0.2, clip_eps_high 0.28, dual_clip 3, "
         "token_level_loss=False); DAPO clip-higher", 0.2, 0.28, 3.0, "sequence_mean", 1.0),
        ("trl_grpo", "TRL GRPOTrainer loss_type=grpo (epsilon 0.1, epsilon_high 0.3)", 0.1, 0.3, 0, "sequence_mean",
         1.0),
        ("dr_grpo", "TRL GRPOTrainer loss_type=dr_grpo (max_completion_length 16)", 0.2, 0.2, 0, "sequence_sum", 16.0),
        ("dual_clip_low", "OpenRLHF PolicyLoss (dual_clip 1.5 < 1 + clip_high)", 0.2, 0.3, 1.5, "token_mean", 1.0),
    ]:
        cases.append(policy_case(name, peer, pol, lo, hi, dual, how, L, config=cfg(lo, hi, dual, how, L)))
    empty = torch.zeros(B, T)
    for how in ["token_mean", "sequence_mean", "sequence_sum"]:
        cases.append(policy_case("all_empty_" + how, "TRL GRPOTrainer (clamp(min=1) of the token counts)", pol, 0.2,
                                 0.2, 0, how, 8.0, mask=empty, config=cfg(0.2, 0.2, 0, how, 8.0)))
    for name, peer, clip, form, how in [
        ("trl_value", "TRL PPOTrainer (cliprange_value 0.2)", 0.2, "trl", "token_mean"),
        ("openrlhf_value_sequence", "OpenRLHF ValueLoss (clip_eps 0.5, token_level_loss=False)", 0.5, "openrlhf",
         "sequence_mean"),
        ("openrlhf_value_unclipped", "OpenRLHF ValueLoss (clip_eps None)", None, "openrlhf", "token_mean"),
    ]:
        cases.append(value_case(name, peer, val, clip, form, how, {"clip": clip or 0.0, "aggregation": how}))
    for est in ["k1", "k2", "k3"]:
        cases.append(kl_case("trl_" + est, "TRL PPOTrainer objective/kl (kl.sum(1).mean())", kl, est, 0,
                             "sequence_sum"))
        cases.append(kl_case("openrlhf_" + est, "OpenRLHF compute_approx_kl + masked_mean (kl_loss)", kl, est, 10,
                             "token_mean"))
        cases.append(kl_case("openrlhf_seq_" + est, "OpenRLHF experience info['kl'] (per-sample masked_mean)", kl,
                             est, 10, "sequence_mean"))
    cases += rollout
    flat = lambda d: {k: v.flatten().tolist() for k, v in d.items()}
    out = {
        "generator": "tests/peers/ppo_family.py",
        "torch": torch.__version__,
        "shape": [B, T],
        "inputs": {"policy": flat(pol), "value": flat(val), "kl": flat(kl), "rollout": flat(roll),
                   "scores": scores.tolist()},
        "cases": cases,
    }
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "peers", "ppo_family.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {os.path.normpath(path)}: {len(cases)} cases, {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
