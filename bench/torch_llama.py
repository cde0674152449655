#!/usr/bin/python3
"""Peer baseline for bench/llama.cpp: a minimal Llama in PyTorch (CPU) at SmolLM2-135M's shape (V 49152, C 576,
L 30, NH 9 / KVH 3, F 1536, RoPE theta 1e5, tied LM head). Three benches, the twins of bench_llama's rows:

  sft        one SFT step (forward, mean token NLL, backward, AdamW) on B sequences of T tokens   BM_llama_sft_step
  dpo        one DPO step on B pairs of T tokens: a prompt of T/2 tokens shared by the pair, a    BM_llama_dpo_step
             response over the rest. The policy scores chosen and rejected in one forward (2B
             sequences), a frozen deep copy (the reference) scores them under no_grad; sigmoid loss
             on the summed masked response log-probs, beta 0.1; backward, AdamW. The LM head runs
             only on the positions that predict a response token, as rlhf::Llama's log_probs does.
  sample_kv  --new_tokens tokens for --sample_B prompts of --prompt_len tokens, temperature 1      BM_llama_sample
             multinomial draws, with a per-layer key/value cache of the KVH heads (the prompt once,
             then one token per step); the LM head on the last position only

    /usr/bin/python3 bench/torch_llama.py --threads 2 --B 1 --T 512 [--bench sft,dpo,sample_kv] [--precision bf16]
    /usr/bin/python3 bench/torch_llama.py --check      # the cached sampler against a full re-forward, tiny shape

--precision bf16 runs every forward (and the whole sampling loop) under torch.autocast("cpu", bfloat16); the
log-softmax and the loss stay in float32. Prints one JSON line per bench: median/min/max seconds over --reps
timed runs (after --warmup), tokens_per_s (sft: B·T tokens, dpo: 2·B·T, sample_kv: the new tokens, over the
median), the bench's shape and the model's, torch's version and thread count, and peak_rss_kib, the process's
peak resident set so far (ru_maxrss): run one bench per process to read one bench's peak.
"""
import argparse, contextlib, copy, json, math, resource, statistics, sys, time
import torch
import torch.nn as nn
import torch.nn.functional as F

SHAPE = dict(V=49152, C=576, L=30, NH=9, KVH=3, F=1536, theta=1e5)
CHECK_SHAPE = dict(V=64, C=32, L=2, NH=4, KVH=2, F=48, theta=1e4)  # --check
BENCHES = ("sft", "dpo", "sample_kv")


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

    def rope(self, t, cos, sin):
        half = self.hd // 2
        return t * cos + torch.cat((-t[..., half:], t[..., :half]), -1) * sin

    def mlp(self, x):
        h = self.n2(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))

    def forward(self, x, cos, sin, mask):
        """Training path: T tokens, no cache; the KV heads repeated to NH for the products."""
        B, T, C = x.shape
        h = self.n1(x)
        q = self.q(h).view(B, T, self.NH, self.hd).transpose(1, 2)
        k = self.k(h).view(B, T, self.KVH, self.hd).transpose(1, 2)
        v = self.v(h).view(B, T, self.KVH, self.hd).transpose(1, 2)
        q, k = self.rope(q, cos, sin), self.rope(k, cos, sin)
        k = k.repeat_interleave(self.NH // self.KVH, 1)
        v = v.repeat_interleave(self.NH // self.KVH, 1)
        att = ((q @ k.transpose(-1, -2)) / math.sqrt(self.hd)).masked_fill(~mask, float("-inf")).softmax(-1)
        x = x + self.o((att @ v).transpose(1, 2).reshape(B, T, C))
        return self.mlp(x)

    def forward_cached(self, x, cos, sin, cache):
        """Sampling path: Tc new tokens at the positions cos/sin stand for, after the S0 cached ones. cache is
        None (prefill) or (k, v), each [B, KVH, S0, hd]; returns (x, (k, v)) with the new tokens appended.
        A group's NH/KVH query heads share one cached KV head: the queries are grouped as [B, KVH, rep·Tc, hd]
        so that the products read the KVH heads without copying them out to NH."""
        B, Tc, C = x.shape
        rep = self.NH // self.KVH
        h = self.n1(x)
        q = self.rope(self.q(h).view(B, Tc, self.NH, self.hd).transpose(1, 2), cos, sin)
        k = self.rope(self.k(h).view(B, Tc, self.KVH, self.hd).transpose(1, 2), cos, sin)
        v = self.v(h).view(B, Tc, self.KVH, self.hd).transpose(1, 2)
        if cache is not None:
            k, v = torch.cat((cache[0], k), 2), torch.cat((cache[1], v), 2)
        S = k.shape[2]
        qg = q.reshape(B, self.KVH, rep * Tc, self.hd)  # head h = g·rep + r reads KV head g (as repeat_interleave)
        att = (qg @ k.transpose(-1, -2)) / math.sqrt(self.hd)  # [B, KVH, rep·Tc, S]
        if Tc > 1:  # new token i (position S - Tc + i) sees the cache and the new tokens up to itself
            allowed = torch.ones(Tc, S, dtype=torch.bool).tril(S - Tc)
            att = att.view(B, self.KVH, rep, Tc, S).masked_fill(~allowed, float("-inf")).view(B, self.KVH, rep * Tc, S)
        y = (att.softmax(-1) @ v).view(B, self.NH, Tc, self.hd).transpose(1, 2).reshape(B, Tc, C)
        return self.mlp(x + self.o(y)), (k, v)


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

    def hidden(self, idx):
        """The final-norm hidden states [B, T, C] of every position."""
        T = idx.shape[1]
        x = self.embed(idx)
        for b in self.blocks:
            x = b(x, self.cos[:T], self.sin[:T], self.mask[:T, :T])
        return self.norm(x)

    def head(self, h):
        return h @ self.embed.weight.T  # tied

    def forward(self, idx):
        return self.head(self.hidden(idx))


def sample_kv(model, prompt, n_new, amp, on_step=None):
    """Continues each prompt [B, P] by n_new tokens with a per-layer KV cache: the prompt in one pass, then one
    token per step at its own position. on_step(idx, logits), if given, sees each step's sequence and the float32
    logits [B, V] of its last position (what --check compares)."""
    cache = [None] * len(model.blocks)
    idx = prompt
    with torch.no_grad(), amp():
        for step in range(n_new):
            cur = idx if step == 0 else idx[:, -1:]
            p0, p1 = idx.shape[1] - cur.shape[1], idx.shape[1]
            x = model.embed(cur)
            for i, b in enumerate(model.blocks):
                x, cache[i] = b.forward_cached(x, model.cos[p0:p1], model.sin[p0:p1], cache[i])
            logits = model.head(model.norm(x[:, -1, :])).float()  # last position only
            if on_step:
                on_step(idx, logits)
            idx = torch.cat((idx, torch.multinomial(logits.softmax(-1), 1)), 1)
    return idx


def check(threads):
    """The cached sampler's last-position logits against the full re-forward's, at every step (float32)."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    B, P, n_new = 3, 7, 9
    model = Llama(CHECK_SHAPE, P + n_new).eval()
    with torch.no_grad():  # non-trivial norms, so that a misplaced norm weight shows
        for m in model.modules():
            if isinstance(m, RMSNorm):
                m.weight.uniform_(0.5, 1.5)
    worst = []

    def compare(idx, logits):
        with torch.no_grad():
            full = model(idx)[:, -1, :]
        worst.append((logits - full).abs().max().item())

    out = sample_kv(model, torch.randint(0, CHECK_SHAPE["V"], (B, P)), n_new, contextlib.nullcontext, compare)
    ok = len(worst) == n_new and out.shape == (B, P + n_new) and max(worst) < 1e-4
    print(json.dumps({"check": "sample_kv vs full re-forward", "shape": CHECK_SHAPE, "B": B, "prompt_len": P,
                      "new_tokens": n_new, "steps": len(worst), "max_abs_diff": max(worst), "tolerance": 1e-4,
                      "ok": ok}))
    return 0 if ok else 1


def positive(text):
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, not {n}")
    return n


def non_negative(text):
    n = int(text)
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, not {n}")
    return n


def bench_list(text):
    names = [b for b in text.split(",") if b]
    bad = [b for b in names if b not in BENCHES]
    if not names or bad:
        raise argparse.ArgumentTypeError(f"{','.join(bad) or 'nothing'}: pick from {','.join(BENCHES)}")
    return list(dict.fromkeys(names))


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", type=bench_list, default=list(BENCHES),
                    help="comma list of " + ",".join(BENCHES) + " (default: all three)")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                    help="bf16: torch.autocast('cpu', bfloat16) around the forwards and the whole sampling loop")
    ap.add_argument("--threads", type=positive, default=2)
    ap.add_argument("--B", type=positive, default=1, help="sft: sequences; dpo: pairs (2B sequences)")
    ap.add_argument("--T", type=positive, default=512, help="sft, dpo: tokens per sequence (dpo: prompt T/2)")
    ap.add_argument("--sample_B", type=positive, default=16, help="sample_kv: prompts")
    ap.add_argument("--prompt_len", type=positive, default=64, help="sample_kv: tokens per prompt")
    ap.add_argument("--new_tokens", type=positive, default=32, help="sample_kv: tokens drawn per prompt")
    ap.add_argument("--beta", type=float, default=0.1, help="dpo: beta")
    ap.add_argument("--reps", type=positive, default=2)
    ap.add_argument("--warmup", type=non_negative, default=1)
    ap.add_argument("--check", action="store_true",
                    help="verify the KV-cache sampler against full re-forwards at a tiny shape, then exit (non-zero "
                         "on a mismatch)")
    a = ap.parse_args()
    if "dpo" in a.bench and a.T < 2:
        ap.error("--T must be >= 2 for dpo (a prompt of T/2 tokens and a response after it)")
    if a.check:
        return check(a.threads)

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    amp = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if a.precision == "bf16" else contextlib.nullcontext
    V = SHAPE["V"]
    model = Llama(SHAPE, max(a.T, a.prompt_len + a.new_tokens))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0)
    base = dict(precision=a.precision, torch=torch.__version__, threads=torch.get_num_threads(), shape=SHAPE,
                reps=a.reps, warmup=a.warmup)

    def timed(fn):
        for _ in range(a.warmup):
            fn()
        ts = []
        for _ in range(a.reps):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return ts

    def report(bench, ts, tokens, extra):
        med = statistics.median(ts)
        print(json.dumps({"bench": bench, **extra, **base, "median_s": med, "min_s": min(ts), "max_s": max(ts),
                          "tokens_per_s": tokens / med,
                          "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}), flush=True)

    if "sft" in a.bench:  # next-token NLL over the T - 1 shifted targets of each sequence
        idx = torch.randint(0, V, (a.B, a.T))

        def sft_step():
            with amp():
                logits = model(idx[:, :-1])
            loss = F.cross_entropy(logits.float().reshape(-1, V), idx[:, 1:].reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()

        model.train()
        report("sft", timed(sft_step), a.B * a.T, dict(B=a.B, T=a.T))

    if "dpo" in a.bench:
        B, T, P = a.B, a.T, a.T // 2
        ref = copy.deepcopy(model).eval()
        for p in ref.parameters():
            p.requires_grad_(False)
        prompt = torch.randint(0, V, (B, P))
        # [chosen; rejected], [2B, T]: the pair shares its prompt; the responses differ
        seqs = torch.cat([torch.cat((prompt, torch.randint(0, V, (B, T - P))), 1) for _ in range(2)], 0)
        mask = torch.zeros(2 * B, T)
        mask[:, P:] = 1  # response_mask: the tokens after the prompt are scored
        rows = slice(P - 1, T - 1)  # the positions whose logits predict tokens P..T-1, the only ones scored

        def response_logps(m):
            logits = m.head(m.hidden(seqs)[:, rows])
            lp = logits.float().log_softmax(-1).gather(-1, seqs[:, P:, None]).squeeze(-1)
            return (lp * mask[:, P:]).sum(-1)  # [2B]

        def dpo_step():
            with torch.no_grad(), amp():
                ref_lp = response_logps(ref)
            with amp():
                pol_lp = response_logps(model)
            z = a.beta * ((pol_lp[:B] - ref_lp[:B]) - (pol_lp[B:] - ref_lp[B:]))
            loss = -F.logsigmoid(z.float()).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()

        model.train()
        report("dpo", timed(dpo_step), 2 * B * T, dict(B=B, T=T, prompt_len=P, response_len=T - P, beta=a.beta))
        del ref

    if "sample_kv" in a.bench:
        prompt = torch.randint(0, V, (a.sample_B, a.prompt_len))
        model.eval()
        ts = timed(lambda: sample_kv(model, prompt, a.new_tokens, amp))
        report("sample_kv", ts, a.sample_B * a.new_tokens,
               dict(B=a.sample_B, prompt_len=a.prompt_len, new_tokens=a.new_tokens, temperature=1.0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
