"""Multi-head attention (paper Eq. 1) written with plain matmuls.

torch's nn.MultiheadAttention switches to fused kernels in some modes (self-attention in
inference, `need_weights=False`) whose cost torch's FlopCounterMode does not see; the cost tables
need every multiply-accumulate counted in every mode. The parameters keep nn.MultiheadAttention's
names and layout (`in_proj_weight`, `in_proj_bias`, `out_proj`), so its weights load unchanged.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from mld.heads.dropout import Dropout


class MultiHeadAttention(nn.Module):
    """softmax(Q K^T / sqrt(d)) V over `num_heads` heads, with dropout on the attention weights."""

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"decoder_dim={dim} must be divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        self.attn_dropout = Dropout(dropout)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, query: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """query [B, Q, D] attends to memory [B, L, D] (keys = values = memory) -> [B, Q, D]."""
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        b_q, b_k, b_v = self.in_proj_bias.chunk(3)
        q = self._split_heads(F.linear(query, w_q, b_q))
        k = self._split_heads(F.linear(memory, w_k, b_k))
        v = self._split_heads(F.linear(memory, w_v, b_v))
        scores = torch.matmul(q * (1.0 / math.sqrt(q.shape[-1])), k.transpose(-2, -1))
        weights = self.attn_dropout(scores.softmax(dim=-1))
        out = torch.matmul(weights, v).transpose(1, 2).flatten(2)  # [B, Q, D]
        return self.out_proj(out)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, dim = x.shape
        return x.view(batch, length, self.num_heads, dim // self.num_heads).transpose(1, 2)
