"""One post-norm transformer-decoder layer, with or without self-attention.

With self-attention it is the layer of the transformer-decoder head (paper Eq. 2). ML-Decoder
removes self-attention (section 2.3.2); as in the official code, the query then takes the place
of the self-attention output, so the first block is norm1(query + dropout(query)).
The sub-modules are named `self_attn` (None without it), `cross_attn` and `mlp` so that
per-module timing can find them.
"""
from __future__ import annotations

import torch
from torch import nn

from mld.heads.attention import MultiHeadAttention
from mld.heads.dropout import Dropout


class DecoderLayer(nn.Module):
    def __init__(self, dim: int, num_heads: int, ff_dim: int, dropout: float, self_attention: bool) -> None:
        super().__init__()
        self.self_attn = MultiHeadAttention(dim, num_heads, dropout) if self_attention else None
        self.cross_attn = MultiHeadAttention(dim, num_heads, dropout)
        self.mlp = nn.Sequential(nn.Linear(dim, ff_dim), nn.ReLU(), Dropout(dropout), nn.Linear(ff_dim, dim))
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        self.dropout3 = Dropout(dropout)

    def forward(self, queries: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """queries [B, K, D], image tokens memory [B, L, D] -> updated queries [B, K, D]."""
        update = queries if self.self_attn is None else self.self_attn(queries, queries)
        queries = self.norm1(queries + self.dropout1(update))
        queries = self.norm2(queries + self.dropout2(self.cross_attn(queries, memory)))
        return self.norm3(queries + self.dropout3(self.mlp(queries)))
