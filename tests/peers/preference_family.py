#!/usr/bin/python3
"""Reference values of the preference and token losses, from the peers' formulas, for
tests/losses/peer_preference_family.cpp.

Each function below is our own small float64 PyTorch implementation of one peer's formula (the peer's file
and function are named in its comment); autograd gives the gradients. Inputs are float32-representable
float64 numbers (so a float build reads the same inputs) and include the extreme rows the issue asks for:
±50 gaps, ties, empty completions, fully masked rows, clamped tokens.

Run by hand after changing a case, from the repository root (Debian: apt install python3-torch):

    tests/peers/preference_family.py            # writes tests/data/peers/preference_family.json

and commit the JSON; CI reads it and needs no torch. Deterministic: fixed seeds, no GPU.
"""
import json
import math
import os

import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "data", "peers", "preference_family.json")


def f32(t):
    """Rounds to the nearest float32 and back, so that float and double builds read the same numbers."""
    return torch.as_tensor(t, dtype=torch.float64).float().double()


def uniform(gen, n, lo, hi):
    return f32(lo + (hi - lo) * torch.rand(n, generator=gen))


def leaf(t):
    return t.clone().requires_grad_(True)


def grad_of(x):
    return [0.0] * x.numel() if x.grad is None else x.grad.reshape(-1).tolist()


def flat(t):
    return t.detach().reshape(-1).tolist()


# ---- DPO family ----------------------------------------------------------------------------------------------


def dpo_peer(c, pc, pr, rc, rr, lc, lr):
    """One peer's DPO-family loss, chosen by c["peer"]; returns (losses [B], scalar loss, chosen/rejected rewards).

    dpo_repo:  eric-mitchell/direct-preference-optimization, trainers.py, preference_loss (sigmoid with
               label_smoothing = cDPO, ipo, reference_free); rewards β(π − π_ref) with the reference always.
    trl:       huggingface/trl, trl/trainer/dpo_trainer.py, DPOTrainer.dpo_loss (sigmoid, robust, hinge, ipo);
               IPO's log-probs divided by the token count clamped to ≥ 1 (concatenated_forward); rpo_alpha times
               the cross-entropy over every chosen token of the batch; rewards from the raw sums or, for the
               older releases, from the normalised ones (c["rewards"]).
    trl_simpo: huggingface/trl, trl/trainer/cpo_trainer.py, CPOTrainer.cpo_loss with loss_type "simpo":
               averaged log-probs, logits − γ/β, label smoothing; rewards β · averaged log π.
    openrlhf:  OpenRLHF, openrlhf/models/loss.py, DPOLoss.forward (sigmoid, ipo on sums), plus
               DPOTrainer's nll term: the mean over pairs of each chosen response's mean token NLL.
    """
    beta, eps = c["beta"], c.get("label_smoothing", 0.0)
    peer, kind = c["peer"], c["variant"]
    nc, nl = lc.clamp(min=1.0), lr.clamp(min=1.0)
    if peer == "trl_simpo":
        a_c, a_r = pc / nc, pr / nl
        logits = (a_c - a_r) - c["margin"] / beta
        losses = -F.logsigmoid(beta * logits) * (1 - eps) - F.logsigmoid(-beta * logits) * eps
        rewards = (beta * a_c, beta * a_r)
    else:
        normalise = peer == "trl" and kind == "ipo" and c.get("length_normalize", False)
        p_c, p_r = (pc / nc, pr / nl) if normalise else (pc, pr)
        q_c, q_r = (rc / nc, rr / nl) if normalise else (rc, rr)
        ref = 0.0 if c.get("reference_free", False) else (q_c - q_r)
        logits = (p_c - p_r) - ref
        if kind == "sigmoid":
            losses = -F.logsigmoid(beta * logits) * (1 - eps) - F.logsigmoid(-beta * logits) * eps
        elif kind == "robust":
            losses = (-F.logsigmoid(beta * logits) * (1 - eps) + F.logsigmoid(-beta * logits) * eps) / (1 - 2 * eps)
        elif kind == "hinge":
            losses = torch.relu(1 - beta * logits)
        elif kind == "ipo":
            losses = (logits - 1 / (2 * beta)) ** 2
        if c.get("rewards", "raw") == "raw":
            rewards = (beta * (pc - rc), beta * (pr - rr))
        else:
            rewards = (beta * (p_c - q_c), beta * (p_r - q_r))
    loss = losses.mean()
    w = c.get("nll_weight", 0.0)
    if w:
        if c.get("nll_normalization", "per_sequence") == "batch_tokens":  # TRL: CE over all chosen tokens
            loss = loss + w * (-pc.sum() / lc.sum().clamp(min=1.0))
        else:  # OpenRLHF: -all_logps_mean[:B].mean()
            loss = loss + w * (-(pc / nc).mean())
    return losses, loss, rewards


def dpo_case(name, c, pc, pr, rc, rr, lc, lr):
    xs = [leaf(t) for t in (pc, pr, rc, rr)]
    losses, loss, (rw, rl) = dpo_peer(c, *xs, lc, lr)
    loss.backward()
    pcv, prv = xs[0].detach(), xs[1].detach()
    per_pair = losses.detach().clone()
    w = c.get("nll_weight", 0.0)
    if w:  # the library's per-pair values carry the NLL term (its mean over pairs is the batch's term)
        if c.get("nll_normalization", "per_sequence") == "batch_tokens":
            per_pair += w * (-pcv * lc.numel() / lc.sum().clamp(min=1.0))
        else:
            per_pair += w * (-pcv / lc.clamp(min=1.0))
    rw, rl = rw.detach(), rl.detach()
    config = {k: v for k, v in c.items() if k not in ("peer", "rewards")}
    config["reward_metrics"] = "raw" if c.get("rewards", "raw") == "raw" and c["peer"] != "trl_simpo" else "as_loss"
    return {
        "family": "dpo", "name": name, "peer": c["peer"], "config": config,
        "inputs": {"policy_chosen": flat(pc), "policy_rejected": flat(pr), "reference_chosen": flat(rc),
                   "reference_rejected": flat(rr), "chosen_length": flat(lc), "rejected_length": flat(lr)},
        "outputs": {
            "loss": loss.item(), "losses": flat(per_pair),
            "d_policy_chosen": grad_of(xs[0]), "d_policy_rejected": grad_of(xs[1]),
            "d_reference_chosen": grad_of(xs[2]), "d_reference_rejected": grad_of(xs[3]),
            "metrics": {"rewards/chosen": rw.mean().item(), "rewards/rejected": rl.mean().item(),
                        "rewards/accuracies": (rw > rl).double().mean().item(),
                        "rewards/margins": (rw - rl).mean().item(),
                        "logps/chosen": pcv.mean().item(), "logps/rejected": prv.mean().item()},
        },
    }


def dpo_inputs(seed, n=8, empty_chosen=True):
    g = torch.Generator().manual_seed(seed)
    lc = f32(torch.randint(1, 40, (n,), generator=g).double())
    lr = f32(torch.randint(1, 40, (n,), generator=g).double())
    pc, pr = uniform(g, n, -80, -5), uniform(g, n, -80, -5)
    rc, rr = uniform(g, n, -80, -5), uniform(g, n, -80, -5)
    # extreme rows: log-ratio gaps of +50 and −50 (after β they saturate the sigmoid), an exact tie,
    # an empty rejected completion, an empty chosen completion
    pc[0], rc[0], pr[0], rr[0] = -10.0, -60.0, -30.0, -30.0   # gap +50
    pc[1], rc[1], pr[1], rr[1] = -60.0, -10.0, -30.0, -30.0   # gap −50
    pc[2], rc[2], pr[2], rr[2] = -20.0, -25.0, -40.0, -45.0   # tie: both log-ratios 5
    pr[3], rr[3], lr[3] = 0.0, 0.0, 0.0                        # empty rejected completion
    if empty_chosen:  # OpenRLHF's per-sequence mean divides by 0 here: not for its NLL case
        pc[4], rc[4], lc[4] = 0.0, 0.0, 0.0                    # empty chosen completion
    return pc, pr, rc, rr, lc, lr


def dpo_cases():
    big = lambda s: [f32(t * 10) if i < 4 else t for i, t in enumerate(dpo_inputs(s))]  # ±500 gaps: β·gap = ±50
    specs = [
        ("DPO repo: sigmoid", {"peer": "dpo_repo", "variant": "sigmoid", "beta": 0.1}, dpo_inputs(1)),
        ("DPO repo: cDPO, label_smoothing 0.2", {"peer": "dpo_repo", "variant": "sigmoid", "beta": 0.5,
                                                 "label_smoothing": 0.2}, dpo_inputs(2)),
        ("DPO repo: sigmoid, β·gap = ±50", {"peer": "dpo_repo", "variant": "sigmoid", "beta": 0.1,
                                          "label_smoothing": 0.1}, big(3)),
        ("DPO repo: reference_free, rewards with the reference", {"peer": "dpo_repo", "variant": "sigmoid",
                                                                  "beta": 0.2, "reference_free": True}, dpo_inputs(4)),
        ("DPO repo: ipo on sums", {"peer": "dpo_repo", "variant": "ipo", "beta": 0.1}, dpo_inputs(5)),
        ("TRL: robust", {"peer": "trl", "variant": "robust", "beta": 0.3, "label_smoothing": 0.1}, dpo_inputs(6)),
        ("TRL: robust, β·gap = ±50", {"peer": "trl", "variant": "robust", "beta": 0.1, "label_smoothing": 0.25},
         big(7)),
        ("TRL: hinge", {"peer": "trl", "variant": "hinge", "beta": 0.05}, dpo_inputs(8)),
        ("TRL: ipo, length-normalised, lengths clamped to >= 1, raw rewards",
         {"peer": "trl", "variant": "ipo", "beta": 0.1, "length_normalize": True}, dpo_inputs(9)),
        ("TRL (older): ipo, length-normalised, normalised rewards",
         {"peer": "trl", "variant": "ipo", "beta": 0.5, "length_normalize": True, "rewards": "as_loss"},
         dpo_inputs(10)),
        ("TRL: sigmoid + rpo_alpha (NLL over the batch's chosen tokens)",
         {"peer": "trl", "variant": "sigmoid", "beta": 0.1, "nll_weight": 1.0, "nll_normalization": "batch_tokens"},
         dpo_inputs(11)),
        ("TRL CPOTrainer: simpo", {"peer": "trl_simpo", "variant": "sigmoid", "beta": 2.0, "margin": 1.0,
                                   "length_normalize": True, "reference_free": True}, dpo_inputs(12)),
        ("TRL CPOTrainer: simpo, label smoothing, ±50 averaged gaps",
         {"peer": "trl_simpo", "variant": "sigmoid", "beta": 2.5, "margin": 0.5, "label_smoothing": 0.1,
          "length_normalize": True, "reference_free": True}, big(13)),
        ("OpenRLHF: sigmoid + nll_loss_coef (per-sequence NLL)",
         {"peer": "openrlhf", "variant": "sigmoid", "beta": 0.1, "nll_weight": 0.5}, dpo_inputs(14, empty_chosen=False)),
        ("OpenRLHF: ipo on sums", {"peer": "openrlhf", "variant": "ipo", "beta": 0.25}, dpo_inputs(15)),
    ]
    return [dpo_case(name, c, *inputs) for name, c, inputs in specs]


# ---- Bradley–Terry ---------------------------------------------------------------------------------------------


def bt_case(name, peer, c, chosen, rejected, margin):
    """trl:            huggingface/trl, trl/trainer/reward_trainer.py, RewardTrainer.compute_loss: −logsigmoid(r_w − r_l
                       − margin).mean() + center_rewards_coefficient · mean((r_w + r_l)²), on the raw rewards.
    openrlhf_pair:   OpenRLHF, openrlhf/models/loss.py, PairWiseLoss.forward(chosen, reject, margin).
    openrlhf_logexp: OpenRLHF, openrlhf/models/loss.py, LogExpLoss.forward: log(1 + exp(r_l − r_w)).mean(), no margin.
    Accuracy as both compute it: (r_w > r_l).float().mean()."""
    rw, rl = leaf(chosen), leaf(rejected)
    m = margin if margin is not None else torch.zeros_like(chosen)
    if peer == "openrlhf_logexp":
        losses = torch.log(1 + torch.exp(rl - rw))
    else:
        losses = -F.logsigmoid(rw - rl - m)
    cc = c.get("center_coefficient", 0.0)
    per_pair = losses + cc * (rw + rl) ** 2
    loss = losses.mean() + cc * torch.mean((rw + rl) ** 2)
    loss.backward()
    cw, cl = chosen, rejected
    inputs = {"chosen": flat(chosen), "rejected": flat(rejected)}
    if margin is not None:
        inputs["margin"] = flat(margin)
    return {
        "family": "bradley_terry", "name": name, "peer": peer, "config": c, "inputs": inputs,
        "outputs": {"loss": loss.item(), "losses": flat(per_pair), "d_chosen": grad_of(rw), "d_rejected": grad_of(rl),
                    "metrics": {"rewards/accuracies": (cw > cl).double().mean().item(),
                                "rewards/chosen": cw.mean().item(), "rewards/rejected": cl.mean().item(),
                                "rewards/margins": (cw - cl).mean().item()}},
    }


def bt_cases():
    g = torch.Generator().manual_seed(100)
    n = 8
    rw, rl = uniform(g, n, -4, 4), uniform(g, n, -4, 4)
    rw[0], rl[0] = 25.0, -25.0   # gap +50
    rw[1], rl[1] = -25.0, 25.0   # gap −50
    rw[2], rl[2] = 1.5, 1.5      # tie
    margin = uniform(g, n, -1, 3)
    margin[3] = 0.0
    return [
        bt_case("TRL RewardTrainer: per-pair margin", "trl", {}, rw, rl, margin),
        bt_case("TRL RewardTrainer: per-pair margin + centering 0.01", "trl", {"center_coefficient": 0.01}, rw, rl,
                margin),
        bt_case("TRL RewardTrainer: centering 0.3, no margin", "trl", {"center_coefficient": 0.3}, rw, rl, None),
        bt_case("OpenRLHF PairWiseLoss(margin)", "openrlhf_pair", {}, rw, rl, margin),
        bt_case("OpenRLHF LogExpLoss", "openrlhf_logexp", {}, rw, rl, None),
    ]


# ---- Plackett–Luce and listwise DPO (our own reference from the formula) ---------------------------------------


def plackett_luce_rows(s, lengths, top_k):
    """−Σ_{k<S} [s_k − logsumexp(s_k..s_{K_b−1})], S = K_b − 1 or min(top_k, K_b − 1): Plackett 1975 / ListMLE."""
    out = []
    for b in range(s.shape[0]):
        n = int(lengths[b])
        stages = n - 1 if top_k == 0 else min(top_k, n - 1)
        out.append(sum(torch.logsumexp(s[b, k:n], 0) - s[b, k] for k in range(stages)))
    return torch.stack(out)


def ranked_inputs(seed, rows=5, cols=4):
    g = torch.Generator().manual_seed(seed)
    s = uniform(g, rows * cols, -3, 3).reshape(rows, cols)
    lengths = torch.tensor([4.0, 4.0, 3.0, 2.0, 4.0])
    s[0] = torch.tensor([25.0, -25.0, 0.0, 10.0])  # spread 50
    s[1] = torch.tensor([-25.0, 25.0, 0.5, 0.5])   # worst first, a tie
    s[3, 2:] = 0.0                                 # padding (never read)
    return s, lengths


def pl_metrics(s, lengths):
    first = s[:, 0]
    last = torch.stack([s[b, int(lengths[b]) - 1] for b in range(s.shape[0])])
    top = [float(all(s[b, 0] > s[b, j] for j in range(1, int(lengths[b])))) for b in range(s.shape[0])]
    return first, last, sum(top) / len(top)


def pl_case(name, top_k, seed):
    s, lengths = ranked_inputs(seed)
    x = leaf(s)
    losses = plackett_luce_rows(x, lengths, top_k)
    loss = losses.mean()
    loss.backward()
    first, last, acc = pl_metrics(s, lengths)
    return {
        "family": "plackett_luce", "name": name, "peer": "formula", "config": {"top_k": top_k},
        "inputs": {"rows": s.shape[0], "cols": s.shape[1], "scores": flat(s), "lengths": flat(lengths)},
        "outputs": {"loss": loss.item(), "losses": flat(losses), "d_scores": grad_of(x),
                    "metrics": {"rewards/accuracies": acc, "rewards/chosen": first.mean().item(),
                                "rewards/rejected": last.mean().item(), "rewards/margins": (first - last).mean().item()}},
    }


def listwise_case(name, beta, top_k, seed):
    s, lengths = ranked_inputs(seed)
    g = torch.Generator().manual_seed(seed + 1)
    policy = f32(s * 2 - 40)
    reference = f32(policy - uniform(g, s.numel(), -5, 5).reshape(s.shape))
    p, r = leaf(policy), leaf(reference)
    rewards = beta * (p - r)
    losses = plackett_luce_rows(rewards, lengths, top_k)
    loss = losses.mean()
    loss.backward()
    rw = (beta * (policy - reference))
    first, last, _ = pl_metrics(rw, lengths)
    p_first, p_last, _ = pl_metrics(policy, lengths)
    return {
        "family": "listwise_dpo", "name": name, "peer": "formula", "config": {"beta": beta, "top_k": top_k},
        "inputs": {"rows": s.shape[0], "cols": s.shape[1], "policy": flat(policy), "reference": flat(reference),
                   "lengths": flat(lengths)},
        "outputs": {"loss": loss.item(), "losses": flat(losses), "d_policy": grad_of(p), "d_reference": grad_of(r),
                    "metrics": {"rewards/chosen": first.mean().item(), "rewards/rejected": last.mean().item(),
                                "rewards/accuracies": (rw[:, 0] > rw[:, 1]).double().mean().item(),
                                "rewards/margins": (first - last).mean().item(),
                                "logps/chosen": p_first.mean().item(), "logps/rejected": p_last.mean().item()}},
    }


# ---- token losses: SFT and unlikelihood ------------------------------------------------------------------------


def token_inputs(seed, rows, cols, lo, hi, empty_row=None):
    g = torch.Generator().manual_seed(seed)
    logp = uniform(g, rows * cols, lo, hi).reshape(rows, cols)
    mask = torch.zeros(rows, cols)
    for b in range(rows):
        start = int(torch.randint(0, cols // 2, (1,), generator=g))
        length = 1 + int(torch.randint(0, cols - start, (1,), generator=g))
        mask[b, start:start + length] = 1.0
    if empty_row is not None:
        mask[empty_row] = 0.0
    return logp * mask, mask  # masked entries hold 0 (JSON has no NaN)


def sft_case(name, peer, reduction, batch_reduction, seed, empty_row=None):
    """trl_openrlhf: OpenRLHF, openrlhf/models/loss.py, GPTLMLoss.forward (CrossEntropyLoss(ignore_index) over every
    response token of the batch), which is also TRL SFTTrainer's default loss: Σ NLL / Σ tokens.
    formula: our rows' sum or mean, averaged over rows."""
    logp, mask = token_inputs(seed, 5, 9, -12, 0, empty_row)
    x = leaf(logp)
    nll = -(x * mask)
    tokens = mask.sum(1)
    rows = nll.sum(1) if reduction == "sum" else nll.sum(1) / tokens
    if batch_reduction == "mean_tokens":
        loss = nll.sum() / mask.sum()
    elif batch_reduction == "sum_rows":
        loss = rows.sum()
    else:
        loss = rows.mean()
    loss.backward()
    return {
        "family": "sft", "name": name, "peer": peer,
        "config": {"reduction": reduction, "batch_reduction": batch_reduction},
        "inputs": {"rows": logp.shape[0], "cols": logp.shape[1], "logps": flat(logp), "mask": flat(mask)},
        "outputs": {"loss": loss.item(), "losses": flat(rows), "d_logp": grad_of(x),
                    "metrics": {"nll/token": (-(logp * mask).sum() / mask.sum()).item(), "tokens": mask.sum().item()}},
    }


def unlikelihood_terms(x, form, epsilon, clamp_min):
    """clamp: facebookresearch/unlikelihood_training, custom/candidate_penalty_ce_loss.py,
    CandidatePenaltyCrossEntropyCriterion.forward: −log(clamp(1 − exp(lprobs), min=1e-5)); autograd's gradient of
    the clamp is 0 where it bites. exact: −log(1 − e^x) computed stably (log(−expm1(x)) near 0, log1p(−exp(x))
    below −ln 2), with x cut at −ε and the gradient of the cut point kept (straight through), as documented."""
    if form == "clamp":
        return -torch.log(torch.clamp(1.0 - torch.exp(x), min=clamp_min))
    xc = x - (x + epsilon).clamp(min=0.0).detach()
    stable = torch.where(xc > -math.log(2.0), torch.log(-torch.expm1(xc)), torch.log1p(-torch.exp(xc)))
    return -stable


def unlikelihood_case(name, peer, c, seed):
    chosen, cmask = token_inputs(seed, 4, 7, -10, 0)
    rejected, rmask = token_inputs(seed + 1, 5, 6, -8, -1e-3, empty_row=2 if c["batch_reduction"] != "mean_rows"
                                   else None)
    # tokens the model is sure of: p within 1e-7 of 1 (clamped by either form), p = 1 exactly, and p = 1 − 1e-3
    flat_r = rejected.reshape(-1)
    on = [i for i in range(flat_r.numel()) if rmask.reshape(-1)[i] == 1]
    flat_r[on[0]], flat_r[on[1]], flat_r[on[2]] = f32(-1e-7), 0.0, f32(-1e-3)
    flat_r[on[3]] = -50.0  # p = e^{−50}: the term ~ 2e-22
    rejected = flat_r.reshape(rejected.shape)
    xc, xr = leaf(chosen), leaf(rejected)
    alpha = c["alpha"]
    nll = -(xc * cmask)
    ul = unlikelihood_terms(xr, c["form"], c["epsilon"], c["clamp_min"]) * rmask
    red = lambda t, m: t.sum(1) if c["reduction"] == "sum" else t.sum(1) / m.sum(1)
    rows_c, rows_r = red(nll, cmask), red(ul, rmask)
    if c["batch_reduction"] == "sum_rows":  # fairseq returns the sums
        lc, lr = rows_c.sum(), rows_r.sum()
    elif c["batch_reduction"] == "mean_tokens":
        lc, lr = nll.sum() / cmask.sum(), ul.sum() / rmask.sum()
    else:
        lc, lr = rows_c.mean(), rows_r.mean()
    loss = lc + alpha * lr
    loss.backward()
    return {
        "family": "unlikelihood", "name": name, "peer": peer, "config": c,
        "inputs": {"chosen_rows": chosen.shape[0], "chosen_cols": chosen.shape[1], "chosen_logps": flat(chosen),
                   "chosen_mask": flat(cmask), "rejected_rows": rejected.shape[0], "rejected_cols": rejected.shape[1],
                   "rejected_logps": flat(rejected), "rejected_mask": flat(rmask)},
        "outputs": {"loss": loss.item(), "chosen_losses": flat(rows_c), "rejected_losses": flat(rows_r),
                    "d_chosen": grad_of(xc), "d_rejected": grad_of(xr),
                    "metrics": {"nll/chosen": lc.item(), "unlikelihood/rejected": lr.item()}},
    }


def token_cases():
    ul = lambda form, red, batch, alpha=1.0, eps=1e-6, cmin=1e-5: {
        "alpha": alpha, "reduction": red, "batch_reduction": batch, "form": form, "epsilon": eps, "clamp_min": cmin}
    return [
        sft_case("SFT: TRL / OpenRLHF GPTLMLoss, token mean over the batch, a fully masked row", "trl_openrlhf",
                 "sum", "mean_tokens", 200, empty_row=1),
        sft_case("SFT: row sums, mean over rows", "formula", "sum", "mean_rows", 201),
        sft_case("SFT: row means, mean over rows", "formula", "mean", "mean_rows", 202),
        sft_case("SFT: row sums, summed, a fully masked row", "formula", "sum", "sum_rows", 203, empty_row=3),
        unlikelihood_case("unlikelihood: fairseq candidate penalty clamp, summed, a fully masked row", "fairseq",
                          ul("clamp", "sum", "sum_rows"), 300),
        unlikelihood_case("unlikelihood: fairseq clamp 1e-3, alpha 0.5, mean over rows", "fairseq",
                          ul("clamp", "sum", "mean_rows", 0.5, 1e-6, 1e-3), 301),
        unlikelihood_case("unlikelihood: exact, cut 1e-6, mean over rows", "formula", ul("exact", "sum", "mean_rows"),
                          302),
        unlikelihood_case("unlikelihood: exact, cut 1e-4, row means", "formula",
                          ul("exact", "mean", "mean_rows", 2.0, 1e-4), 303),
        unlikelihood_case("unlikelihood: exact, token mean, a fully masked row", "formula",
                          ul("exact", "sum", "mean_tokens", 1.0, 1e-6), 304),
    ]


def main():
    torch.manual_seed(0)
    cases = dpo_cases() + bt_cases()
    cases += [pl_case("Plackett-Luce: full ranking, ragged rows", 0, 400),
              pl_case("Plackett-Luce: top_k 1 (softmax cross-entropy)", 1, 401),
              pl_case("Plackett-Luce: top_k 2", 2, 402),
              listwise_case("listwise DPO: full ranking", 0.1, 0, 500),
              listwise_case("listwise DPO: top_k 2, beta 0.5", 0.5, 2, 501)]
    cases += token_cases()
    doc = {"generator": "tests/peers/preference_family.py", "torch": torch.__version__,
           "tolerance": "|got - ref| <= 1e-12 + 1e-9 |ref| in double", "cases": cases}
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(doc, f, indent=None, separators=(",", ":"))
        f.write("\n")
    print(f"{OUT}: {len(cases)} cases, {os.path.getsize(OUT)} bytes")


if __name__ == "__main__":
    main()
