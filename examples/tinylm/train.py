"""tinylm target: a small GPT over bytes, trained for a fixed time budget. Agents edit this file.

Run by the pinned evaluation (`python prepare.py evaluate`), which scores the model saved at
the end on validation bytes this file never sees. Run by hand, `python train.py` trains for
AUTOSWARM_TIME_BUDGET seconds (20 by default; on a CPU, CPU seconds of the training thread, see
`prepare.budget_clock`) and saves `model.pt2`; then `python prepare.py score model.pt2` scores it.

Uses the GPU when there is one (NVIDIA's CUDA, AMD's ROCm, Apple's MPS, Intel's XPU), else all
CPU cores; the evaluation reports which one as the extra metric `device_<kind>: 1`.
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

import prepare

# ---------------------------------------------------------------------------
# Hyperparameters: module-level UPPER_CASE literals, so the offline `params` mutator can
# perturb them. An agent may change anything in this file.
# ---------------------------------------------------------------------------
N_LAYER = 4              # transformer blocks
N_HEAD = 4               # attention heads (the width is rounded to a multiple of this)
N_EMBD = 128             # model width
BLOCK_SIZE = 128         # context length in bytes (the evaluation uses the same)
BATCH_SIZE = 32          # sequences per optimizer step
LEARNING_RATE = 3e-4     # peak AdamW learning rate
WEIGHT_DECAY = 0.1       # AdamW weight decay on matrices
BETA2 = 0.99             # AdamW second-moment decay
WARMUP_STEPS = 20        # linear warmup, in optimizer steps
FINAL_LR_FRAC = 0.1      # learning rate at the end of the budget, as a fraction of the peak
GRAD_CLIP = 1.0          # max gradient norm
INIT_STD = 0.02          # std of the initial weights

# Lower case on purpose: the mutator leaves it alone, since tuning a seed only fits noise.
seed = 1337


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd: int, n_head: int) -> None:
        super().__init__()
        self.n_head = n_head
        self.qkv = nn.Linear(n_embd, 3 * n_embd, bias=False)
        self.proj = nn.Linear(n_embd, n_embd, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # the causal mask
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(n_embd)
        self.attn = CausalSelfAttention(n_embd, n_head)
        self.ln2 = nn.LayerNorm(n_embd)
        self.fc = nn.Linear(n_embd, 4 * n_embd, bias=False)
        self.out = nn.Linear(4 * n_embd, n_embd, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class GPT(nn.Module):
    """Byte-level GPT: logits (B, T, 256) from byte values (B, T), position t seeing <= t."""

    def __init__(self, n_layer: int, n_head: int, n_embd: int, block_size: int) -> None:
        super().__init__()
        self.tok = nn.Embedding(prepare.VOCAB_SIZE, n_embd)
        self.pos = nn.Embedding(block_size, n_embd)
        self.blocks = nn.ModuleList(Block(n_embd, n_head) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd)
        self.head = nn.Linear(n_embd, prepare.VOCAB_SIZE, bias=False)
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=INIT_STD)
        for block in self.blocks:  # residual projections scaled down with depth (GPT-2)
            nn.init.normal_(block.attn.proj.weight, std=INIT_STD / math.sqrt(2 * n_layer))
            nn.init.normal_(block.out.weight, std=INIT_STD / math.sqrt(2 * n_layer))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        T = idx.shape[1]
        x = self.tok(idx) + self.pos(torch.arange(T, device=idx.device))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


def get_batch(data: torch.Tensor, batch_size: int, block_size: int, generator: torch.Generator,
              device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows of the training bytes: inputs and the next-byte targets."""
    starts = torch.randint(0, len(data) - block_size - 1, (batch_size,), generator=generator)
    offsets = torch.arange(block_size + 1)
    chunk = data[starts[:, None] + offsets].long()
    return chunk[:, :-1].to(device), chunk[:, 1:].to(device)


def choose_device() -> torch.device:
    """The fastest device torch has here: CUDA (NVIDIA, or AMD through a ROCm build of torch,
    which answers to torch.cuda too), Apple Silicon's MPS, Intel's XPU, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    xpu = getattr(torch, "xpu", None)
    if xpu is not None and xpu.is_available():
        return torch.device("xpu")
    return torch.device("cpu")


def main() -> None:
    budget = prepare.time_budget()
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    device = choose_device()
    if device.type == "cuda" and not torch.version.hip:  # TF32 is NVIDIA's
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    # Guard the shapes so that any perturbation of the constants gives a valid model.
    n_head = max(1, int(N_HEAD))
    n_embd = max(n_head, round(N_EMBD / n_head) * n_head)
    block_size = min(max(2, int(BLOCK_SIZE)), prepare.MAX_CONTEXT)
    batch_size = max(1, int(BATCH_SIZE))
    n_layer = max(1, int(N_LAYER))

    data = prepare.load_train_data()  # training bytes only
    model = GPT(n_layer, n_head, n_embd, block_size).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0.0}],
        lr=LEARNING_RATE, betas=(0.9, min(BETA2, 0.9999)),  # AdamW refuses a beta of 1 or more
    )
    autocast = torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    print(f"device {prepare.device_kind(device)}, {n_params / 1e6:.2f}M parameters, {len(data)} training bytes, budget {budget:g}s")

    step = 0
    loss_value = float("nan")
    clock = prepare.budget_clock(device)  # CPU: this thread's CPU time; GPU: the wall clock
    start = time.perf_counter()
    while True:
        elapsed = clock()
        if elapsed >= budget:
            break
        progress = elapsed / budget  # the schedule follows the clock: the budget is fixed, steps are not
        warmup = min(1.0, (step + 1) / max(1, WARMUP_STEPS))
        lr = LEARNING_RATE * warmup * (1.0 - (1.0 - FINAL_LR_FRAC) * progress)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, y = get_batch(data, batch_size, block_size, generator, device)
        with autocast:
            logits = model(x)
        loss = F.cross_entropy(logits.float().reshape(-1, prepare.VOCAB_SIZE), y.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        optimizer.step()
        step += 1
        if step % 25 == 0:
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                raise SystemExit(f"training diverged at step {step} (loss {loss_value}); lower LEARNING_RATE")
            print(f"step {step:5d} | loss {loss_value:.4f} ({loss_value / math.log(2):.3f} bits/byte) "
                  f"| lr {lr:.2e} | {elapsed:.1f}s")
    print(f"trained {step} steps in {clock():.1f}s of budget ({time.perf_counter() - start:.1f}s wall), "
          f"{step * batch_size * block_size} bytes seen")
    prepare.save_model(model, block_size)


if __name__ == "__main__":
    main()
