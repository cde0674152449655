#!/usr/bin/python3
"""Reference logits and LoRA gradients of adapted Llama-family and GPT-2 models, for tests/models/lora_parity.cpp.

Our own float64 PyTorch implementation of PEFT's LoRA linear layer (peft/tuners/lora/layer.py was read for the
semantics; nothing is imported from peft): for a base layer y = base(x),

    y = base(x) + scale · lora_B(lora_A(dropout(x)))        lora_A.weight [r, in], lora_B.weight [out, r]
    scale = lora_alpha / r,  or lora_alpha / √r with use_rslora

where base is nn.Linear (x Wᵀ + b, W [out, in]) for the Llama family and GPT-2's Conv1D (x W + b, W [in, out],
fan_in_fan_out) for GPT-2; the LoRA factors have the same layouts in both. Target modules match as PEFT matches
them: a module path equal to the name or ending in "." + name (so GPT-2's "c_proj" names attn.c_proj and
mlp.c_proj). Dropout 0 here: the comparison is deterministic. Autograd gives the gradients of A and B of

    Σ_{b,t} d_logp[b,t] · log p(tokens[b,t] | tokens[b,<t])    over the response mask.

Each case is a folder tests/data/peers/lora/<case>/ with
    base/                the base model (Llama: config.json + model.safetensors; GPT-2: model.safetensors with
                         its config in __metadata__)
    adapter/             adapter_config.json + adapter_model.safetensors under PEFT's names
                         (base_model.model.<path>.lora_{A,B}.weight), B not zero so every path carries signal
    expected.safetensors tokens, response_mask, d_logp, logits [B, T, V], base_logits (adapters off),
                         and "grad.<PEFT name>" for every lora_A / lora_B

Run by hand after changing a case, from the repository root (Debian: apt install python3-torch):

    /usr/bin/python3 tests/peers/lora_peft.py

and commit the folders; CI reads them and needs no torch. Deterministic: fixed seeds, no GPU.
"""
import json
import math
import os
import shutil
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama_family as lf  # noqa: E402  (the Llama's weights, RoPE, RMSNorm and safetensors writer)

torch.set_default_dtype(torch.float64)
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "peers", "lora")
B, T = 2, 10

LLAMA = dict(model_type="llama", vocab_size=64, hidden_size=48, intermediate_size=64, num_hidden_layers=2,
             num_attention_heads=6, num_key_value_heads=2, rope_theta=1e5, rms_norm_eps=1e-5,
             tie_word_embeddings=True, attention_bias=False, max_position_embeddings=64)  # SmolLM2's ratios
GPT2 = dict(vocab_size=64, n_positions=32, n_embd=32, n_layer=2, n_head=4, layer_norm_epsilon=1e-5)

CASES = [
    dict(name="llama_all", family="llama", r=4, lora_alpha=8.0, use_rslora=False,
         target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]),
    dict(name="llama_rslora", family="llama", r=4, lora_alpha=6.0, use_rslora=True,
         target_modules=["q_proj", "v_proj", "down_proj"]),
    dict(name="gpt2_all", family="gpt2", r=4, lora_alpha=8.0, use_rslora=False,
         target_modules=["c_attn", "c_proj", "c_fc"]),
    dict(name="gpt2_rslora", family="gpt2", r=3, lora_alpha=5.0, use_rslora=True,
         target_modules=["c_attn", "attn.c_proj"]),
]


def matches(path, name):
    return path == name or path.endswith("." + name)


class Lora:
    """The adapters of one model: PEFT path -> (A [r, in], B [out, r]); scale; fan_in_fan_out."""

    def __init__(self, case, paths_and_shapes, gen):
        self.scale = case["lora_alpha"] / (math.sqrt(case["r"]) if case["use_rslora"] else case["r"])
        self.ab = {}
        for path, (n_in, n_out) in paths_and_shapes:
            if any(matches(path, t) for t in case["target_modules"]):
                bound = 1 / math.sqrt(n_in)  # PEFT's kaiming-uniform(a = √5) bound for A
                a = ((torch.rand(case["r"], n_in, generator=gen) * 2 - 1) * bound).float().double()
                b = (0.2 * torch.randn(n_out, case["r"], generator=gen)).float().double()  # not 0: a trained B
                self.ab[path] = (a, b)
        self.enabled = True

    def term(self, path, x):
        if not self.enabled or path not in self.ab:
            return 0
        a, b = self.ab[path]
        return self.scale * ((x @ a.T) @ b.T)

    def tensors(self):
        out = {}
        for path, (a, b) in self.ab.items():
            out[f"base_model.model.{path}.lora_A.weight"] = a
            out[f"base_model.model.{path}.lora_B.weight"] = b
        return out


# ---- Llama family: nn.Linear layers -----------------------------------------------------------------------------
def llama_sites(c):
    C, F, L = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"]
    Q, K = c["num_attention_heads"] * lf.head_dim(c), c["num_key_value_heads"] * lf.head_dim(c)
    shapes = dict(q_proj=(C, Q), k_proj=(C, K), v_proj=(C, K), o_proj=(Q, C), gate_proj=(C, F), up_proj=(C, F),
                  down_proj=(F, C))
    for i in range(L):
        for m, s in shapes.items():
            yield f"model.layers.{i}.{'self_attn' if m.endswith(('q_proj', 'k_proj', 'v_proj', 'o_proj')) else 'mlp'}.{m}", s


def llama_forward(c, w, lora, ids):
    Bn, Tn = ids.shape
    NH, KVH, hd, eps = c["num_attention_heads"], c["num_key_value_heads"], lf.head_dim(c), c["rms_norm_eps"]
    angles = torch.arange(Tn, dtype=torch.float64)[:, None] * lf.inverse_frequencies(c)[None, :]
    emb = torch.cat((angles, angles), dim=-1)
    cos, sin = emb.cos(), emb.sin()
    causal = torch.full((Tn, Tn), float("-inf")).triu(1)

    def linear(path, x):  # nn.Linear: x Wᵀ, plus the adapter
        return x @ w[path + ".weight"].T + lora.term(path, x)

    x = w["model.embed_tokens.weight"][ids]
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = lf.rms_norm(x, w[p + "input_layernorm.weight"], eps)
        q, k, v = (linear(p + f"self_attn.{n}_proj", h).view(Bn, Tn, heads, hd).transpose(1, 2)
                   for n, heads in (("q", NH), ("k", KVH), ("v", KVH)))
        q = q * cos + lf.rotate_half(q) * sin
        k = k * cos + lf.rotate_half(k) * sin
        k = k.repeat_interleave(NH // KVH, dim=1)
        v = v.repeat_interleave(NH // KVH, dim=1)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd) + causal, dim=-1)
        x = x + linear(p + "self_attn.o_proj", (att @ v).transpose(1, 2).reshape(Bn, Tn, NH * hd))
        h = lf.rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        x = x + linear(p + "mlp.down_proj",
                       torch.nn.functional.silu(linear(p + "mlp.gate_proj", h)) * linear(p + "mlp.up_proj", h))
    x = lf.rms_norm(x, w["model.norm.weight"], eps)
    return x @ w["model.embed_tokens.weight"].T


# ---- GPT-2: Conv1D layers (fan_in_fan_out) ----------------------------------------------------------------------
def gpt2_weights(gen):
    V, TM, C, L = GPT2["vocab_size"], GPT2["n_positions"], GPT2["n_embd"], GPT2["n_layer"]
    r = lambda *shape, s=0.1: (torch.randn(*shape, generator=gen) * s).float().double()
    w = {"wte.weight": r(V, C, s=0.5), "wpe.weight": r(TM, C, s=0.2)}
    for i in range(L):
        p = f"h.{i}."
        w.update({p + "ln_1.weight": 1 + r(C), p + "ln_1.bias": r(C), p + "attn.c_attn.weight": r(C, 3 * C, s=0.3),
                  p + "attn.c_attn.bias": r(3 * C), p + "attn.c_proj.weight": r(C, C), p + "attn.c_proj.bias": r(C),
                  p + "ln_2.weight": 1 + r(C), p + "ln_2.bias": r(C), p + "mlp.c_fc.weight": r(C, 4 * C),
                  p + "mlp.c_fc.bias": r(4 * C), p + "mlp.c_proj.weight": r(4 * C, C), p + "mlp.c_proj.bias": r(C)})
    w.update({"ln_f.weight": 1 + r(C), "ln_f.bias": r(C)})
    return w


def gpt2_sites():
    C = GPT2["n_embd"]
    for i in range(GPT2["n_layer"]):
        for m, s in (("attn.c_attn", (C, 3 * C)), ("attn.c_proj", (C, C)), ("mlp.c_fc", (C, 4 * C)),
                     ("mlp.c_proj", (4 * C, C))):
            yield f"transformer.h.{i}.{m}", s


def gpt2_forward(w, lora, ids):
    Bn, Tn = ids.shape
    C, H, eps = GPT2["n_embd"], GPT2["n_head"], GPT2["layer_norm_epsilon"]
    ln = torch.nn.functional.layer_norm

    def conv1d(i, m, x):  # Conv1D: x W + b with W [in, out], plus the adapter
        name = f"h.{i}.{m}"
        return x @ w[name + ".weight"] + w[name + ".bias"] + lora.term(f"transformer.h.{i}.{m}", x)

    x = w["wte.weight"][ids] + w["wpe.weight"][torch.arange(Tn)]
    for i in range(GPT2["n_layer"]):
        p = lambda n: w[f"h.{i}.{n}"]
        h = ln(x, (C,), p("ln_1.weight"), p("ln_1.bias"), eps)
        q, k, v = conv1d(i, "attn.c_attn", h).split(C, dim=-1)
        q, k, v = (t.view(Bn, Tn, H, C // H).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(C // H)
        att = att.masked_fill(~torch.tril(torch.ones(Tn, Tn, dtype=torch.bool)), float("-inf")).softmax(-1)
        x = x + conv1d(i, "attn.c_proj", (att @ v).transpose(1, 2).reshape(Bn, Tn, C))
        h = ln(x, (C,), p("ln_2.weight"), p("ln_2.bias"), eps)
        h = torch.nn.functional.gelu(conv1d(i, "mlp.c_fc", h), approximate="tanh")
        x = x + conv1d(i, "mlp.c_proj", h)
    return ln(x, (C,), w["ln_f.weight"], w["ln_f.bias"], eps) @ w["wte.weight"].T


def adapter_config(case, fan_in_fan_out, base):
    """PEFT's LoraConfig.to_dict() keys that matter, as PEFT writes them."""
    return {"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": base, "r": case["r"],
            "lora_alpha": case["lora_alpha"], "lora_dropout": 0.0, "target_modules": sorted(case["target_modules"]),
            "bias": "none", "fan_in_fan_out": fan_in_fan_out, "use_rslora": case["use_rslora"],
            "modules_to_save": None, "inference_mode": True, "init_lora_weights": True, "use_dora": False,
            "rank_pattern": {}, "alpha_pattern": {}, "layers_to_transform": None, "layers_pattern": None,
            "revision": None}


def run_case(case, seed):
    gen = torch.Generator().manual_seed(seed)
    folder = os.path.join(OUT, case["name"])
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(os.path.join(folder, "base"))
    os.makedirs(os.path.join(folder, "adapter"))
    if case["family"] == "llama":
        w = lf.random_weights(LLAMA, gen)
        lora = Lora(case, list(llama_sites(LLAMA)), gen)
        V = LLAMA["vocab_size"]
        forward = lambda ids: llama_forward(LLAMA, w, lora, ids)
        with open(os.path.join(folder, "base", "config.json"), "w") as f:
            json.dump(lf.hf_config(LLAMA), f, indent=2)
        lf.write_safetensors(os.path.join(folder, "base", "model.safetensors"),
                             {n: t.float() for n, t in w.items()}, {"format": "pt"})
        fan_in_fan_out = False
    else:
        w = gpt2_weights(gen)
        lora = Lora(case, list(gpt2_sites()), gen)
        V = GPT2["vocab_size"]
        forward = lambda ids: gpt2_forward(w, lora, ids)
        meta = {"format": "pt", "model_type": "gpt2", "vocab_size": str(V), "n_positions": str(GPT2["n_positions"]),
                "n_embd": str(GPT2["n_embd"]), "n_layer": str(GPT2["n_layer"]), "n_head": str(GPT2["n_head"]),
                "scalar_head": "0", "layer_norm_epsilon": "1e-05"}
        lf.write_safetensors(os.path.join(folder, "base", "model.safetensors"), {n: t.float() for n, t in w.items()},
                             meta)
        fan_in_fan_out = True

    ids = torch.randint(0, V, (B, T), generator=gen)
    mask = torch.zeros(B, T)
    mask[0, 3:] = 1
    mask[1, 1:7] = 1
    d_logp = (0.5 + torch.rand(B, T, generator=gen)).float().double() * mask
    for a, b in lora.ab.values():
        a.requires_grad_(True)
        b.requires_grad_(True)
    logits = forward(ids)
    logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:, None])[..., 0]
    (d_logp[:, 1:] * logp).sum().backward()
    with torch.no_grad():
        lora.enabled = False
        base_logits = forward(ids)

    with open(os.path.join(folder, "adapter", "adapter_config.json"), "w") as f:
        json.dump(adapter_config(case, fan_in_fan_out, "../base"), f, indent=2)
    lf.write_safetensors(os.path.join(folder, "adapter", "adapter_model.safetensors"),
                         {n: t.detach().float() for n, t in lora.tensors().items()}, {"format": "pt"})
    expected = {"tokens": ids.float(), "response_mask": mask.float(), "d_logp": d_logp.float(),
                "logits": logits.detach().float(), "base_logits": base_logits.float()}
    for path, (a, b) in lora.ab.items():
        expected[f"grad.base_model.model.{path}.lora_A.weight"] = a.grad.float()
        expected[f"grad.base_model.model.{path}.lora_B.weight"] = b.grad.float()
    lf.write_safetensors(os.path.join(folder, "expected.safetensors"), expected)
    print(f"{case['name']}: {len(lora.ab)} adapted layers, scale {lora.scale:.6f}")


if __name__ == "__main__":
    for i, case in enumerate(CASES):
        run_case(case, 3000 + i)
