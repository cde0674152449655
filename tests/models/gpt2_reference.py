#!/usr/bin/env python3
"""Reference GPT-2 forward in plain PyTorch, for tests/models/gpt_parity.cpp (no transformers needed).

  gpt2_reference.py OUT_DIR

writes OUT_DIR/gpt2.safetensors: random weights of a small GPT-2 (V 96, n_positions 32, C 64, L 2, 4 heads)
under Hugging Face's names and Conv1D [in, out] layouts, with HF's causal-mask buffers h.{i}.attn.bias and
metadata {"format": "pt"} only, as an HF export has; and OUT_DIR/expected.safetensors: "tokens" [2, 12] and
the logits "logits" [2, 12, 96] of this forward, computed in float64 from the float32 weights.
The safetensors files are written with struct and json only.
"""
import json, math, struct, sys

import torch
import torch.nn.functional as F

V, T_MAX, C, L, H, B, T = 96, 32, 64, 2, 4, 2, 12


def save(path, tensors, metadata):
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name, t in tensors.items():
        values = t.detach().to(torch.float32).flatten().tolist()
        blobs.append(struct.pack("<%df" % len(values), *values))
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(blobs[-1])]}
        offset += len(blobs[-1])
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def forward(w, idx):
    w = {k: v.double() for k, v in w.items()}
    x = w["wte.weight"][idx] + w["wpe.weight"][torch.arange(idx.shape[1])]
    for i in range(L):
        p = lambda n: w["h.%d.%s" % (i, n)]
        h = F.layer_norm(x, (C,), p("ln_1.weight"), p("ln_1.bias"), 1e-5)
        q, k, v = (h @ p("attn.c_attn.weight") + p("attn.c_attn.bias")).split(C, dim=-1)
        q, k, v = [t.view(B, T, H, C // H).transpose(1, 2) for t in (q, k, v)]
        att = (q @ k.transpose(-2, -1)) / math.sqrt(C // H)
        att = att.masked_fill(~torch.tril(torch.ones(T, T, dtype=torch.bool)), float("-inf")).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        x = x + y @ p("attn.c_proj.weight") + p("attn.c_proj.bias")
        h = F.layer_norm(x, (C,), p("ln_2.weight"), p("ln_2.bias"), 1e-5)
        h = F.gelu(h @ p("mlp.c_fc.weight") + p("mlp.c_fc.bias"), approximate="tanh")
        x = x + h @ p("mlp.c_proj.weight") + p("mlp.c_proj.bias")
    return F.layer_norm(x, (C,), w["ln_f.weight"], w["ln_f.bias"], 1e-5) @ w["wte.weight"].T  # tied LM head


def main():
    out = sys.argv[1]
    g = torch.Generator().manual_seed(1234)
    r = lambda *shape, s=0.1: torch.randn(*shape, generator=g) * s
    w = {"wte.weight": r(V, C, s=0.5), "wpe.weight": r(T_MAX, C, s=0.2)}
    for i in range(L):
        w.update({"h.%d.ln_1.weight" % i: 1 + r(C), "h.%d.ln_1.bias" % i: r(C),
                  "h.%d.attn.bias" % i: torch.tril(torch.ones(T_MAX, T_MAX)).view(1, 1, T_MAX, T_MAX),
                  "h.%d.attn.c_attn.weight" % i: r(C, 3 * C, s=0.3), "h.%d.attn.c_attn.bias" % i: r(3 * C),
                  "h.%d.attn.c_proj.weight" % i: r(C, C), "h.%d.attn.c_proj.bias" % i: r(C),
                  "h.%d.ln_2.weight" % i: 1 + r(C), "h.%d.ln_2.bias" % i: r(C),
                  "h.%d.mlp.c_fc.weight" % i: r(C, 4 * C), "h.%d.mlp.c_fc.bias" % i: r(4 * C),
                  "h.%d.mlp.c_proj.weight" % i: r(4 * C, C), "h.%d.mlp.c_proj.bias" % i: r(C)})
    w.update({"ln_f.weight": 1 + r(C), "ln_f.bias": r(C)})
    save(out + "/gpt2.safetensors", w, {"format": "pt"})
    tokens = torch.randint(0, V, (B, T), generator=g)
    logits = forward({k: v for k, v in w.items() if not k.endswith(".attn.bias")}, tokens)
    save(out + "/expected.safetensors", {"tokens": tokens.float(), "logits": logits}, {"format": "pt"})


if __name__ == "__main__":
    main()
