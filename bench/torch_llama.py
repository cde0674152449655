#!/usr/bin/python3
"""Peer baseline for bench/llama.cpp: a minimal Llama in PyTorch (CPU) at SmolLM2-135M's shape -- one SFT step
(forward, mean token NLL, backward, AdamW) on B sequences of T tokens, the twin of BM_llama_sft_step.

    /usr/bin/python3 bench/torch_llama_sft.py --threads 2 --B 1 --T 512 [--precision bf16]

Prints one JSON line: median/min/max seconds over --reps timed steps (after --warmup), tokens/s.
"""
import argparse, json, math, statistics, time
import torch
import torch.nn as nn
import torch.nn.functional as F

SHAPE = dict(V=49152, C=576, L=30, NH=9, KVH=3, F=1536, theta=1e5)


class RMSNorm(nn.Module):
    def __init__(self, C, eps=1e-5):
        super().__init__()
        self.weight, self.eps = nn.Parameter(torch.ones(C)), eps

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


class Block(nn.Module):
    def __init__(self, s):
        super().__init__()
        C, self.NH, self.KVH = s["C"], s["NH"], s["KVH"]
        self.hd = C // self.NH
        self.n1, self.n2 = RMSNorm(C), RMSNorm(C)
        self.q = nn.Linear(C, self.NH * self.hd, bias=False)
        self.k = nn.Linear(C, self.KVH * self.hd, bias=False)
        self.v = nn.Linear(C, self.KVH * self.hd, bias=False)
        self.o = nn.Linear(self.NH * self.hd, C, bias=False)
        self.gate = nn.Linear(C, s["F"], bias=False)
        self.up = nn.Linear(C, s["F"], bias=False)
        self.down = nn.Linear(s["F"], C, bias=False)

    def forward(self, x, cos, sin, mask):
        B, T, C = x.shape
        h = self.n1(x)
        q = self.q(h).view(B, T, self.NH, self.hd).transpose(1, 2)
        k = self.k(h).view(B, T, self.KVH, self.hd).transpose(1, 2)
        v = self.v(h).view(B, T, self.KVH, self.hd).transpose(1, 2)
        rot = lambda t: torch.cat((-t[..., self.hd // 2:], t[..., :self.hd // 2]), -1)
        q, k = q * cos + rot(q) * sin, k * cos + rot(k) * sin
        k = k.repeat_interleave(self.NH // self.KVH, 1)
        v = v.repeat_interleave(self.NH // self.KVH, 1)
        att = ((q @ k.transpose(-1, -2)) / math.sqrt(self.hd)).masked_fill(~mask, float("-inf")).softmax(-1)
        x = x + self.o((att @ v).transpose(1, 2).reshape(B, T, C))
        h = self.n2(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


class Llama(nn.Module):
    def __init__(self, s, T):
        super().__init__()
        self.embed = nn.Embedding(s["V"], s["C"])
        self.blocks = nn.ModuleList(Block(s) for _ in range(s["L"]))
        self.norm = RMSNorm(s["C"])
        hd = s["C"] // s["NH"]
        inv = 1.0 / s["theta"] ** (torch.arange(0, hd, 2).float() / hd)
        ang = torch.arange(T).float()[:, None] * inv[None]
        emb = torch.cat((ang, ang), -1)
        self.register_buffer("cos", emb.cos())
        self.register_buffer("sin", emb.sin())
        self.register_buffer("mask", torch.tril(torch.ones(T, T, dtype=torch.bool)))

    def forward(self, idx):
        T = idx.shape[1]
        x = self.embed(idx)
        for b in self.blocks:
            x = b(x, self.cos[:T], self.sin[:T], self.mask[:T, :T])
        return self.norm(x) @ self.embed.weight.T  # tied


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--B", type=int, default=1)
    ap.add_argument("--T", type=int, default=512)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = Llama(SHAPE, a.T)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0)
    idx = torch.randint(0, SHAPE["V"], (a.B, a.T))

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.precision == "bf16"):
            logits = model(idx[:, :-1])
        loss = F.cross_entropy(logits.float().reshape(-1, SHAPE["V"]), idx[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(a.warmup):
        step()
    ts = []
    for _ in range(a.reps):
        t0 = time.perf_counter()
        step()
        ts.append(time.perf_counter() - t0)
    print(json.dumps({"bench": "sft", "precision": a.precision, "B": a.B, "T": a.T, "threads": a.threads,
                      "median_s": statistics.median(ts), "min_s": min(ts), "max_s": max(ts),
                      "tokens_per_s": a.B * a.T / statistics.median(ts)}))


if __name__ == "__main__":
    main()
