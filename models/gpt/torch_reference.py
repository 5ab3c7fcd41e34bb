#!/usr/bin/env python3
"""The same character-level GPT in PyTorch eager (nanoGPT's architecture and init), to time a training step against
`dlk train gpt` on the same machine and config. tools/gpu-check runs it beside the dlkernels driver.

    python3 models/gpt/torch_reference.py --config nanogpt --device cuda --dtype bf16 --iters 30

Prints one line: "torch <version> <device> <dtype>: <tokens/s> tokens/s (<n> timed steps, batch B x T)". Data: the
fortunes corpus when /usr/share/games/fortunes exists (as the driver's default), else random tokens of a 113-symbol
vocabulary; the rate does not depend on the text.
"""
import argparse
import math
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

CONFIGS = {
    "nanogpt": dict(n_layer=6, n_head=6, n_embd=384, block_size=256, batch_size=64, dropout=0.2, lr=3e-4),
    "small": dict(n_layer=4, n_head=4, n_embd=128, block_size=64, batch_size=16, dropout=0.0, lr=2e-3),
}


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.n_head, self.dropout = c["n_head"], c["dropout"]
        e = c["n_embd"]
        self.ln_1, self.ln_2 = nn.LayerNorm(e), nn.LayerNorm(e)
        self.c_attn, self.c_proj = nn.Linear(e, 3 * e), nn.Linear(e, e)
        self.c_fc, self.mlp_proj = nn.Linear(e, 4 * e), nn.Linear(4 * e, e)
        self.drop = nn.Dropout(c["dropout"])
        t = c["block_size"]
        self.register_buffer("mask", torch.tril(torch.ones(t, t, dtype=torch.bool)), persistent=False)

    def attention(self, x):
        b, t, e = x.shape
        q, k, v = self.c_attn(x).split(e, dim=2)
        q, k, v = (z.view(b, t, self.n_head, e // self.n_head).transpose(1, 2) for z in (q, k, v))
        if hasattr(F, "scaled_dot_product_attention"):  # torch >= 2.0: the flash / memory-efficient kernels
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0,
                                               is_causal=True)
        else:
            a = (q @ k.transpose(-2, -1)) / math.sqrt(k.size(-1))
            a = F.dropout(a.masked_fill(~self.mask[:t, :t], float("-inf")).softmax(-1), self.dropout, self.training)
            y = a @ v
        return self.drop(self.c_proj(y.transpose(1, 2).reshape(b, t, e)))

    def forward(self, x):
        x = x + self.attention(self.ln_1(x))
        return x + self.drop(self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)))))


class GPT(nn.Module):
    def __init__(self, c, vocab):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, c["n_embd"]), nn.Embedding(c["block_size"], c["n_embd"])
        self.drop = nn.Dropout(c["dropout"])
        self.h = nn.ModuleList(Block(c) for _ in range(c["n_layer"]))
        self.ln_f = nn.LayerNorm(c["n_embd"])
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, 0.0, 0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
        for blk in self.h:
            for w in (blk.c_proj.weight, blk.mlp_proj.weight):
                nn.init.normal_(w, 0.0, 0.02 / math.sqrt(2 * c["n_layer"]))

    def forward(self, idx, targets):
        t = idx.shape[1]
        x = self.drop(self.wte(idx) + self.wpe(torch.arange(t, device=idx.device)))
        for blk in self.h:
            x = blk(x)
        logits = self.ln_f(x) @ self.wte.weight.t()  # tied head
        return F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.view(-1))


def corpus():
    d = "/usr/share/games/fortunes"
    if os.path.isdir(d):
        text = "".join(open(os.path.join(d, n), encoding="utf-8").read()
                       for n in sorted(os.listdir(d)) if "." not in n)
        vocab = sorted(set(text))
        index = {ch: i for i, ch in enumerate(vocab)}
        return torch.tensor([index[ch] for ch in text[: len(text) * 9 // 10]], dtype=torch.long), len(vocab)
    return torch.randint(0, 113, (1_000_000,)), 113


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="nanogpt", choices=sorted(CONFIGS))
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtype", default="bf16", choices=["fp32", "bf16"], help="bf16: autocast, as nanoGPT trains")
    p.add_argument("--iters", type=int, default=30, help="timed steps (after 3 warm-up steps)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    c = CONFIGS[a.config]
    torch.manual_seed(1337)
    data, vocab = corpus()
    model = GPT(c, vocab).to(a.device)
    decay = [q for n, q in model.named_parameters() if q.dim() >= 2 and not n.startswith(("wte", "wpe"))]
    rest = [q for n, q in model.named_parameters() if not (q.dim() >= 2 and not n.startswith(("wte", "wpe")))]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                            lr=c["lr"], betas=(0.9, 0.99))
    b, t = c["batch_size"], c["block_size"]
    cuda = a.device.startswith("cuda")
    autocast = (torch.autocast(device_type="cuda" if cuda else "cpu", dtype=torch.bfloat16)
                if a.dtype == "bf16" else torch.autocast(device_type="cpu", enabled=False))

    def step():
        ix = torch.randint(len(data) - t - 1, (b,))
        x = torch.stack([data[i:i + t] for i in ix]).to(a.device)
        y = torch.stack([data[i + 1:i + 1 + t] for i in ix]).to(a.device)
        with autocast:
            loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss

    for _ in range(3):
        step()
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(a.iters):
        loss = step()
    loss.item()
    if cuda:
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    print(f"torch {torch.__version__} {a.device} {a.dtype}: {a.iters * b * t / dt:.0f} tokens/s "
          f"({a.iters} timed steps, batch {b} x {t}, loss {loss.item():.3f})")


if __name__ == "__main__":
    main()
