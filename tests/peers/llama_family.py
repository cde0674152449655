#!/usr/bin/python3
"""Reference logits and gradients of Llama-family decoders, for tests/models/llama_parity.cpp.

Our own small float64 PyTorch implementation of Hugging Face's LlamaForCausalLM / Qwen2ForCausalLM /
Qwen3ForCausalLM forward (transformers' modeling_llama.py, modeling_qwen2.py, modeling_qwen3.py and
modeling_rope_utils.py were read for the semantics; nothing is imported from transformers): RMSNorm, rotate-half
RoPE with rope_theta and rope_scaling (linear, llama3), grouped-query attention, the SwiGLU MLP, q/k/v biases
(and o_proj's under attention_bias), Qwen3's per-head q/k RMSNorm, tied or untied LM head. Autograd gives every
parameter's gradient of  Σ_{b,t} d_logp[b,t] · log p(tokens[b,t] | tokens[b,<t])  over the response mask.

Each case is a Hugging Face model folder under tests/data/peers/llama/<case>/: config.json, the weights under
HF's tensor names (F32 model.safetensors, or for the bf16 case BF16 shards with model.safetensors.index.json),
and expected.safetensors (tokens, response mask, d_logp, logits [B, T, V], and "grad.<name>" for every weight).
Weights are float32 (or bf16) values; the reference runs in float64 on them.

Run by hand after changing a case, from the repository root (Debian: apt install python3-torch):

    /usr/bin/python3 tests/peers/llama_family.py

and commit the folder; CI reads it and needs no torch. Deterministic: fixed seeds, no GPU.

    /usr/bin/python3 tests/peers/llama_family.py --logits FOLDER

reads an HF folder written by rlhf::save_llama (config.json, model.safetensors) and FOLDER/tokens.json
([B][T] ids), and writes FOLDER/logits.json ([B][T][V]) from this reference: tests/models/llama_hf_export.cpp
checks what we write the way another program reads it.
"""
import json
import math
import os
import shutil
import struct

import torch

torch.set_default_dtype(torch.float64)
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "data", "peers", "llama")

# The real models' ratios at toy sizes (docs/models/llama.md has the real ones).
CASES = [
    # SmolLM2-135M: GQA 3:1, tied, rope_theta 1e5
    dict(name="smollm2", model_type="llama", vocab_size=64, hidden_size=48, intermediate_size=64,
         num_hidden_layers=2, num_attention_heads=6, num_key_value_heads=2, rope_theta=1e5, rms_norm_eps=1e-5,
         tie_word_embeddings=True, attention_bias=False, max_position_embeddings=64),
    # Qwen2.5-0.5B: GQA 7:1, q/k/v biases (o_proj none), eps 1e-6, rope_theta 1e6, tied
    dict(name="qwen2", model_type="qwen2", vocab_size=64, hidden_size=56, intermediate_size=80,
         num_hidden_layers=2, num_attention_heads=7, num_key_value_heads=1, rope_theta=1e6, rms_norm_eps=1e-6,
         tie_word_embeddings=True, max_position_embeddings=64),
    # Qwen3-0.6B: GQA 2:1, head_dim 16 ≠ hidden / heads, q/k RMSNorm, tied
    dict(name="qwen3", model_type="qwen3", vocab_size=64, hidden_size=32, intermediate_size=48,
         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16, rope_theta=1e6,
         rms_norm_eps=1e-6, tie_word_embeddings=True, attention_bias=False, max_position_embeddings=64),
    # Llama-3.2-1B: GQA 4:1, llama3 rope_scaling (all three frequency bands at this head_dim), untied here, and
    # attention_bias (q/k/v and o_proj) to cover it
    dict(name="llama32", model_type="llama", vocab_size=64, hidden_size=32, intermediate_size=64,
         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1, rope_theta=5e5, rms_norm_eps=1e-5,
         rope_scaling=dict(rope_type="llama3", factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0,
                           original_max_position_embeddings=512),
         tie_word_embeddings=False, attention_bias=True, max_position_embeddings=64),
    # TinyLlama-1.1B: GQA 8:1 … here 4:1 with head_dim 4, untied, rope_theta 1e4, linear rope_scaling
    dict(name="tinyllama", model_type="llama", vocab_size=64, hidden_size=32, intermediate_size=48,
         num_hidden_layers=2, num_attention_heads=8, num_key_value_heads=2, rope_theta=1e4, rms_norm_eps=1e-5,
         rope_scaling=dict(type="linear", factor=2.0),
         tie_word_embeddings=False, attention_bias=False, max_position_embeddings=64),
    # a checkpoint as people download them: BF16 weights in two shards with an index (SmolLM2's shape)
    dict(name="bf16_sharded", model_type="llama", vocab_size=64, hidden_size=48, intermediate_size=64,
         num_hidden_layers=2, num_attention_heads=6, num_key_value_heads=2, rope_theta=1e5, rms_norm_eps=1e-5,
         tie_word_embeddings=True, attention_bias=False, max_position_embeddings=64, dtype="bfloat16",
         shards=2),
]
B, T = 2, 10


def head_dim(c):
    return c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"]


def biases(c):
    """(q/k/v bias, o_proj bias): Qwen2 always has the first and never the second."""
    if c["model_type"] == "qwen2":
        return True, False
    return c.get("attention_bias", False), c.get("attention_bias", False)


def weight_shapes(c):
    C, F, V, L = c["hidden_size"], c["intermediate_size"], c["vocab_size"], c["num_hidden_layers"]
    hd = head_dim(c)
    Q, K = c["num_attention_heads"] * hd, c["num_key_value_heads"] * hd
    qkv_bias, o_bias = biases(c)
    shapes = {"model.embed_tokens.weight": (V, C)}
    for i in range(L):
        p = f"model.layers.{i}."
        shapes[p + "input_layernorm.weight"] = (C,)
        for n, o in (("q", Q), ("k", K), ("v", K)):
            shapes[p + f"self_attn.{n}_proj.weight"] = (o, C)
            if qkv_bias:
                shapes[p + f"self_attn.{n}_proj.bias"] = (o,)
        if c["model_type"] == "qwen3":
            shapes[p + "self_attn.q_norm.weight"] = (hd,)
            shapes[p + "self_attn.k_norm.weight"] = (hd,)
        shapes[p + "self_attn.o_proj.weight"] = (C, Q)
        if o_bias:
            shapes[p + "self_attn.o_proj.bias"] = (C,)
        shapes[p + "post_attention_layernorm.weight"] = (C,)
        shapes[p + "mlp.gate_proj.weight"] = (F, C)
        shapes[p + "mlp.up_proj.weight"] = (F, C)
        shapes[p + "mlp.down_proj.weight"] = (C, F)
    shapes["model.norm.weight"] = (C,)
    if not c["tie_word_embeddings"]:
        shapes["lm_head.weight"] = (V, C)
    return shapes


def random_weights(c, gen):
    """Random weights of a trained model's scale: norms near 1 (not exactly, so their gradients matter)."""
    w = {}
    for name, shape in weight_shapes(c).items():
        if name.endswith("norm.weight") or name.endswith("layernorm.weight"):
            t = 1.0 + 0.2 * torch.randn(shape, generator=gen)
        elif name.endswith(".bias"):
            t = 0.1 * torch.randn(shape, generator=gen)
        else:
            t = 0.15 * torch.randn(shape, generator=gen)
        t = t.float() if c.get("dtype") != "bfloat16" else t.to(torch.bfloat16)
        w[name] = t.double()  # float32 (or bf16) values, computed on in float64
    return w


def inverse_frequencies(c):
    """modeling_rope_utils: default, linear and llama3."""
    hd = head_dim(c)
    inv = 1.0 / (c["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    s = c.get("rope_scaling")
    if not s:
        return inv
    kind = s.get("rope_type", s.get("type"))
    if kind == "linear":
        return inv / s["factor"]
    assert kind == "llama3"
    factor, low, high, old = s["factor"], s["low_freq_factor"], s["high_freq_factor"], \
        s["original_max_position_embeddings"]
    low_wavelen, high_wavelen = old / low, old / high
    wavelen = 2 * math.pi / inv
    scaled = torch.where(wavelen > low_wavelen, inv / factor, inv)
    smooth = (old / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
    return torch.where(medium, smoothed, scaled)


def rms_norm(x, w, eps):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def forward(c, w, ids):
    """Logits [B, T, V] of LlamaForCausalLM (Qwen2/Qwen3 variants) with position_ids = arange(T), no padding."""
    Bn, Tn = ids.shape
    NH, KVH, hd, eps = c["num_attention_heads"], c["num_key_value_heads"], head_dim(c), c["rms_norm_eps"]
    qkv_bias, o_bias = biases(c)
    angles = torch.arange(Tn, dtype=torch.float64)[:, None] * inverse_frequencies(c)[None, :]
    emb = torch.cat((angles, angles), dim=-1)
    cos, sin = emb.cos(), emb.sin()  # [T, hd]
    causal = torch.full((Tn, Tn), float("-inf")).triu(1)
    x = w["model.embed_tokens.weight"][ids]
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = rms_norm(x, w[p + "input_layernorm.weight"], eps)

        def proj(n, heads):
            y = h @ w[p + f"self_attn.{n}_proj.weight"].T
            if qkv_bias:
                y = y + w[p + f"self_attn.{n}_proj.bias"]
            return y.view(Bn, Tn, heads, hd).transpose(1, 2)  # [B, heads, T, hd]

        q, k, v = proj("q", NH), proj("k", KVH), proj("v", KVH)
        if c["model_type"] == "qwen3":
            q = rms_norm(q, w[p + "self_attn.q_norm.weight"], eps)
            k = rms_norm(k, w[p + "self_attn.k_norm.weight"], eps)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(NH // KVH, dim=1)
        v = v.repeat_interleave(NH // KVH, dim=1)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd) + causal, dim=-1)
        y = (att @ v).transpose(1, 2).reshape(Bn, Tn, NH * hd) @ w[p + "self_attn.o_proj.weight"].T
        if o_bias:
            y = y + w[p + "self_attn.o_proj.bias"]
        x = x + y
        h = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        g = h @ w[p + "mlp.gate_proj.weight"].T
        u = h @ w[p + "mlp.up_proj.weight"].T
        x = x + (torch.nn.functional.silu(g) * u) @ w[p + "mlp.down_proj.weight"].T
    x = rms_norm(x, w["model.norm.weight"], eps)
    head = w["model.embed_tokens.weight"] if c["tie_word_embeddings"] else w["lm_head.weight"]
    return x @ head.T


# ---- safetensors, written by hand (no safetensors package needed) ---------------------------------------------
DTYPES = {torch.float32: "F32", torch.bfloat16: "BF16"}


def write_safetensors(path, tensors, metadata=None):
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, t in tensors.items():
        t = t.contiguous()
        raw = t.view(torch.int16).numpy().tobytes() if t.dtype == torch.bfloat16 else t.numpy().tobytes()
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def hf_config(c):
    cfg = {k: v for k, v in c.items() if k not in ("name", "dtype", "shards")}
    cfg["architectures"] = [{"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM",
                             "qwen3": "Qwen3ForCausalLM"}[c["model_type"]]]
    cfg["hidden_act"] = "silu"
    cfg["torch_dtype"] = c.get("dtype", "float32")
    return cfg


def run_case(c, seed):
    gen = torch.Generator().manual_seed(seed)
    w = random_weights(c, gen)
    ids = torch.randint(0, c["vocab_size"], (B, T), generator=gen)
    mask = torch.zeros(B, T)
    mask[0, 3:] = 1
    mask[1, 1:7] = 1
    d_logp = (0.5 + torch.rand(B, T, generator=gen)).float().double() * mask
    leaves = {n: t.clone().requires_grad_(True) for n, t in w.items()}
    logits = forward(c, leaves, ids)
    logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:, None])[..., 0]  # token t from t − 1
    objective = (d_logp[:, 1:] * logp).sum()
    objective.backward()

    folder = os.path.join(OUT, c["name"])
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(hf_config(c), f, indent=2)
    store = torch.bfloat16 if c.get("dtype") == "bfloat16" else torch.float32
    stored = {n: t.to(store) for n, t in w.items()}
    shards = c.get("shards", 1)
    if shards == 1:
        write_safetensors(os.path.join(folder, "model.safetensors"), stored, {"format": "pt"})
    else:
        names = list(stored)
        weight_map = {}
        for s in range(shards):
            file = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
            part = names[s * len(names) // shards:(s + 1) * len(names) // shards]
            write_safetensors(os.path.join(folder, file), {n: stored[n] for n in part}, {"format": "pt"})
            weight_map.update({n: file for n in part})
        total = sum(t.numel() * t.element_size() for t in stored.values())
        with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    expected = {"tokens": ids.float(), "response_mask": mask.float(), "d_logp": d_logp.float(),
                "logits": logits.detach().float()}
    for n, t in leaves.items():
        expected["grad." + n] = t.grad.float()
    write_safetensors(os.path.join(folder, "expected.safetensors"), expected)
    print(f"{c['name']}: {sum(t.numel() for t in w.values())} parameters, objective {objective.item():.6f}")


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        raw = bytearray(data[e["data_offsets"][0]:e["data_offsets"][1]])
        assert e["dtype"] == "F32", f"{name}: {e['dtype']}"
        out[name] = torch.frombuffer(raw, dtype=torch.float32).reshape(e["shape"]).double()
    return out


def logits_of_folder(folder):
    with open(os.path.join(folder, "config.json")) as f:
        c = json.load(f)
    w = read_safetensors(os.path.join(folder, "model.safetensors"))
    w.pop("score.weight", None)  # a classification head: not part of the causal LM's logits
    expected = set(weight_shapes(c))
    assert set(w) == expected, f"names differ: {sorted(set(w) ^ expected)}"
    for name, shape in weight_shapes(c).items():
        assert tuple(w[name].shape) == shape, f"{name}: {tuple(w[name].shape)} vs {shape}"
    with open(os.path.join(folder, "tokens.json")) as f:
        ids = torch.tensor(json.load(f))
    with open(os.path.join(folder, "logits.json"), "w") as f:
        json.dump(forward(c, w, ids).tolist(), f)


if __name__ == "__main__":
    import sys
    if len(sys.argv) == 3 and sys.argv[1] == "--logits":
        logits_of_folder(sys.argv[2])
    else:
        for i, case in enumerate(CASES):
            run_case(case, 1000 + i)
