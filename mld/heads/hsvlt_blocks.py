"""HSVLT's interaction blocks: the label tokens meet one stage's visual tokens.

Two interchangeable blocks share one call, `block(visual, labels, multimodal) -> (visual, labels,
multimodal)`, so the head can swap them for the paper's ablation: `IVLABlock` (Interactive
Visual-Linguistic Attention) and `CrossAttentionBlock` (plain cross-attention, what IVLA is
compared against). Everything is linear/matmul/softmax so torch's FlopCounterMode sees every
multiply-accumulate.

Shapes: visual [B, L, D] (L positions of one stage), labels and multimodal [B or 1, N, D] (N label
tokens; batch 1 until the first block mixes in the image, broadcasting does the rest).
"""
from __future__ import annotations

import torch
from torch import nn

from mld.heads.dropout import Dropout

INTERACTIONS = ("ivla", "cross_attention")

# Initial value of the layer scale on IVLA's visual update: the backbone's features start out
# untouched (as ConvNeXt starts its residual branches) and the update grows only as training asks.
VISUAL_LAYER_SCALE = 1e-6


class CrossAttention(nn.Module):
    """Multi-head attention of `queries` [B, Nq, D] over `context` [B, Nk, D] -> [B, Nq, D]."""

    def __init__(self, dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(
                f"HSVLT: num_heads={num_heads} does not divide the interaction width {dim}; "
                "choose num_heads dividing every stage width (or set embed_dim)"
            )
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        self.dropout = Dropout(dropout)

    def _split_heads(self, tokens: torch.Tensor) -> torch.Tensor:
        batch, length, dim = tokens.shape
        return tokens.reshape(batch, length, self.num_heads, dim // self.num_heads).transpose(1, 2)

    def forward(self, queries: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        q = self._split_heads(self.query(queries))
        k = self._split_heads(self.key(context))
        v = self._split_heads(self.value(context))
        weights = torch.softmax((q @ k.transpose(-2, -1)) * self.scale, dim=-1)
        mixed = self.dropout(weights) @ v  # [B, heads, Nq, D / heads]
        batch, _, length, _ = mixed.shape
        return self.dropout(self.out(mixed.transpose(1, 2).reshape(batch, length, -1)))


class TanhGate(nn.Module):
    """Per-channel gate in (-1, 1) that decides how much cross-modal signal enters the labels."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(dim, dim, bias=False), nn.ReLU(), nn.Linear(dim, dim, bias=False), nn.Tanh()
        )

    def forward(self, signal: torch.Tensor) -> torch.Tensor:
        return self.layers(signal) * signal


class VisualUpdate(nn.Module):
    """IVLA's visual step: visual tokens read the multi-modal features (layer-scaled)."""

    def __init__(self, dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.multimodal_norm = nn.LayerNorm(dim)
        self.attend = CrossAttention(dim, num_heads, dropout)
        self.scale = nn.Parameter(torch.full((dim,), VISUAL_LAYER_SCALE))

    def forward(self, visual_normed: torch.Tensor, multimodal: torch.Tensor) -> torch.Tensor:
        return self.scale * self.attend(visual_normed, self.multimodal_norm(multimodal))


class IVLABlock(nn.Module):
    """Interactive Visual-Linguistic Attention: one joint update of the three streams.

    1. Each label token gathers visual evidence by cross-attending to the visual tokens.
    2. Multi-modal features: the (projected) label token times its evidence, through a small MLP;
       they accumulate over the stage's blocks.
    3. Linguistic update: the label tokens take the multi-modal features through a tanh gate.
    4. Visual update: the visual tokens attend to the multi-modal features (layer-scaled residual).

    A block skips an update that nothing downstream reads (`update_visual` is off in a stage's last
    block, `update_labels` in the head's very last block), so no parameter is left without gradient.
    """

    def __init__(
        self, dim: int, num_heads: int, dropout: float, update_visual: bool, update_labels: bool
    ) -> None:
        super().__init__()
        self.label_norm = nn.LayerNorm(dim)
        self.visual_norm = nn.LayerNorm(dim)
        self.gather = CrossAttention(dim, num_heads, dropout)
        self.label_proj = nn.Sequential(nn.Linear(dim, dim), nn.GELU())
        self.fuse = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), Dropout(dropout))
        self.gate = TanhGate(dim) if update_labels else None
        self.visual_update = VisualUpdate(dim, num_heads, dropout) if update_visual else None

    def forward(
        self, visual: torch.Tensor, labels: torch.Tensor, multimodal: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        visual_normed = self.visual_norm(visual)
        evidence = self.gather(self.label_norm(labels), visual_normed)
        fused = self.fuse(self.label_proj(labels) * evidence)
        multimodal = fused if multimodal is None else multimodal + fused
        if self.gate is not None:
            labels = labels + self.gate(multimodal)
        if self.visual_update is not None:
            visual = visual + self.visual_update(visual_normed, multimodal)
        return visual, labels, multimodal


class CrossAttentionBlock(nn.Module):
    """The ablation's plain block: label tokens cross-attend to the visual tokens, then a
    feed-forward; visual tokens are left alone and the label tokens double as the multi-modal
    features. The feed-forward is the usual 4x-wide one (12 D^2 parameters per block, as many as an
    IVLA block with its visual update; one without has 8 D^2)."""

    def __init__(self, dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.label_norm = nn.LayerNorm(dim)
        self.visual_norm = nn.LayerNorm(dim)
        self.attend = CrossAttention(dim, num_heads, dropout)
        self.ffn_norm = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(
            nn.Linear(dim, 4 * dim), nn.GELU(), Dropout(dropout), nn.Linear(4 * dim, dim),
            Dropout(dropout),
        )

    def forward(
        self, visual: torch.Tensor, labels: torch.Tensor, multimodal: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        labels = labels + self.attend(self.label_norm(labels), self.visual_norm(visual))
        labels = labels + self.ffn(self.ffn_norm(labels))
        return visual, labels, labels


def make_interaction_block(
    interaction: str, dim: int, num_heads: int, dropout: float,
    visual_read_later: bool, labels_read_later: bool,
) -> nn.Module:
    """Build one block of the chosen kind ("ivla" or "cross_attention"); the flags say whether a
    later block reads its visual tokens and its label tokens (IVLA then skips the dead updates)."""
    if interaction == "ivla":
        return IVLABlock(dim, num_heads, dropout, visual_read_later, labels_read_later)
    if interaction == "cross_attention":
        return CrossAttentionBlock(dim, num_heads, dropout)
    raise ValueError(
        f"HSVLT: unknown interaction {interaction!r}; use one of {', '.join(INTERACTIONS)}"
    )
