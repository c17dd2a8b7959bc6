"""A tiny GPT-style decoder for the batch-heterogeneity experiment (PyTorch).

Pre-norm transformer blocks (RMSNorm, multi-head attention with rotary position
embeddings, GELU MLP), tied input/output embeddings. Attention is restricted to
the current document: the packed row is cut into segments where a document
(chunk) starts, and a block-diagonal causal mask built from those segments goes
to ``scaled_dot_product_attention``. Rotary embeddings take the loader's
``position_ids``, so every document starts at position 0 like an unpacked one.

Sizes are CPU-friendly by default; the experiment's ``--gpu`` preset scales them up.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

import rsdb


@dataclass
class GPTConfig:
    vocab_size: int = 256
    d_model: int = 128
    n_layer: int = 4
    n_head: int = 4
    mlp_mult: int = 4
    rope_base: float = 10000.0

    def to_dict(self) -> dict:
        return asdict(self)


def segment_ids(doc_ids: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
    """Per-row segment index: a new segment starts where the document changes or positions restart.

    Both inputs are (B, L); the result is (B, L) int64, non-decreasing along each row.
    """
    start = torch.zeros_like(doc_ids, dtype=torch.bool)
    start[:, 0] = True
    start[:, 1:] = (doc_ids[:, 1:] != doc_ids[:, :-1]) | (position_ids[:, 1:] == 0)
    return torch.cumsum(start.to(torch.int64), dim=1)


def document_causal_mask(seg: torch.Tensor) -> torch.Tensor:
    """(B, 1, L, L) boolean mask: token i attends to j iff j <= i and both are in one segment."""
    L = seg.shape[1]
    causal = torch.ones(L, L, dtype=torch.bool, device=seg.device).tril()
    same = seg[:, :, None] == seg[:, None, :]
    return (same & causal)[:, None]


class RMSNorm(nn.Module):
    def __init__(self, d: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_tables(position_ids: torch.Tensor, head_dim: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables (B, 1, L, head_dim/2) for arbitrary integer positions."""
    inv = 1.0 / (base ** (torch.arange(0, head_dim, 2, device=position_ids.device, dtype=torch.float32) / head_dim))
    ang = position_ids.to(torch.float32)[..., None] * inv  # (B, L, hd/2)
    return ang.cos()[:, None], ang.sin()[:, None]


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)


class Attention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.n_head = cfg.n_head
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)

    def forward(self, x, cos, sin, mask):
        B, L, D = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.n_head, D // self.n_head).permute(2, 0, 3, 1, 4)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.proj(y.transpose(1, 2).reshape(B, L, D))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.n1, self.n2 = RMSNorm(cfg.d_model), RMSNorm(cfg.d_model)
        self.attn = Attention(cfg)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.d_model, cfg.mlp_mult * cfg.d_model, bias=False),
            nn.GELU(),
            nn.Linear(cfg.mlp_mult * cfg.d_model, cfg.d_model, bias=False),
        )

    def forward(self, x, cos, sin, mask):
        x = x + self.attn(self.n1(x), cos, sin, mask)
        return x + self.mlp(self.n2(x))


class TinyGPT(nn.Module):
    """Decoder-only LM over packed rows with per-document attention and positions."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        if cfg.d_model % cfg.n_head or (cfg.d_model // cfg.n_head) % 2:
            raise ValueError(f"d_model {cfg.d_model} must split into {cfg.n_head} heads of even size")
        self.cfg = cfg
        self.emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm = RMSNorm(cfg.d_model)
        self.apply(self._init)
        for b in self.blocks:  # GPT-2 style: scale residual projections by depth
            nn.init.normal_(b.attn.proj.weight, std=0.02 / math.sqrt(2 * cfg.n_layer))
            nn.init.normal_(b.mlp[2].weight, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, idx: torch.Tensor, position_ids: torch.Tensor, doc_ids: torch.Tensor) -> torch.Tensor:
        """Logits (B, L, vocab) for inputs ``idx`` (B, L) with the loader's positions and documents."""
        mask = document_causal_mask(segment_ids(doc_ids, position_ids))
        cos, sin = rope_tables(position_ids, self.cfg.d_model // self.cfg.n_head, self.cfg.rope_base)
        x = self.emb(idx)
        for b in self.blocks:
            x = b(x, cos, sin, mask)
        return F.linear(self.norm(x), self.emb.weight)  # tied output embedding


def batch_loss(model: TinyGPT, batch: dict, device: torch.device) -> tuple[torch.Tensor, int]:
    """Mean next-token loss of one loader batch (RSDB format; numpy arrays or tensors) and its loss-token count.

    Inputs are ``tokens[:, :-1]``, labels ``tokens[:, 1:]``; :func:`rsdb.label_mask`
    drops padding and the labels that start a new segment (a document's first token is
    not predictable from the previous document). Returns (loss tensor, number of label tokens
    that are not padding): the count is what the step processed, for tokens/s and tokens seen;
    the loss averages over the masked labels only.
    """
    t = {k: torch.as_tensor(batch[k]).to(device, non_blocking=True)
         for k in ("tokens", "loss_mask", "position_ids", "doc_ids")}
    tokens = t["tokens"].long()
    inp, labels = tokens[:, :-1], tokens[:, 1:]
    mask = rsdb.label_mask(t)
    logits = model(inp, t["position_ids"][:, :-1].long(), t["doc_ids"][:, :-1])
    per_tok = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), reduction="none")
    loss = (per_tok * mask.reshape(-1)).sum() / max(1, int(mask.sum()))
    return loss, int(t["loss_mask"][:, 1:].sum())
