"""The group fully-connected layer (paper Eq. 3) and the three ways to get its weights.

Group k's decoded query Q_k [D] yields the logits of its g slots: (W_k^T Q_k) [g], with
W_k [D, g]. The weights W_k are
* "learnable": one free W_k per group (Eq. 3) and one bias per slot, as the official code;
* "shared": W_k = W for every group (section 2.3.3), with one bias per position in a group;
* "nlp": W_k = W_b M_k (appendix B, Eq. 6): the column of class i is W_b N_i, built from the
  class's word vector N_i, with one shared bias; this is what scores classes never seen in
  training.
Each module's `weights(layout, class_embeddings)` returns (weights, per-slot bias) for a layout, so
the head runs one group-FC for all three. It is a plain method, not `forward`: module outputs
that are parameters confuse torch's module tracking in FlopCounterMode under no_grad.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from mld.heads.grouping import GroupLayout, cyclic_rows

HEAD_TYPES = ("learnable", "shared", "nlp")


def group_fc(queries: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Decoded queries [B, K, D] x weights [K, D, g] (or shared [D, g]) -> slot logits [B, K * g].

    One batched matmul over the K groups: same result as the paper's loop (`group_fc_loop`), without
    the per-group slicing whose backward materialises a full-size gradient for every group.
    """
    if weight.ndim == 2:
        out = torch.matmul(queries, weight)
    else:
        out = torch.matmul(queries.transpose(0, 1), weight).transpose(0, 1)
    return out.reshape(queries.shape[0], -1)


def group_fc_loop(queries: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The paper's reference loop (appendix L), kept to check and benchmark `group_fc` against."""
    batch, num_groups, _ = queries.shape
    out = queries.new_zeros(batch, num_groups, weight.shape[-1])
    for k in range(num_groups):
        w_k = weight[k] if weight.ndim == 3 else weight
        out[:, k, :] = torch.matmul(queries[:, k, :], w_k)
    return out.flatten(1)


class LearnableGroupWeights(nn.Module):
    """Eq. 3: a free projection W_k [D, g] per group (xavier-normal) and a bias per slot (zeros)."""

    def __init__(self, num_groups: int, dim: int, group_size: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_groups, dim, group_size))
        self.bias = nn.Parameter(torch.zeros(num_groups * group_size))
        nn.init.xavier_normal_(self.weight)

    def weights(self, layout: GroupLayout, class_embeddings: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        # More groups than were trained (a larger call-time class set) reuse the trained per-group
        # weights cyclically: free weights carry no class meaning, so unseen classes score blindly.
        groups = cyclic_rows(layout.num_groups, self.weight.shape[0], self.weight.device)
        slots = (groups[:, None] * layout.group_size
                 + torch.arange(layout.group_size, device=groups.device)).flatten()[: layout.num_slots]
        return self.weight[groups], self.bias[slots]


class SharedGroupWeights(nn.Module):
    """W_k = W for all groups: weight [D, g] (xavier-normal), one bias per position in a group."""

    def __init__(self, dim: int, group_size: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(dim, group_size))
        self.bias = nn.Parameter(torch.zeros(group_size))
        nn.init.xavier_normal_(self.weight)

    def weights(self, layout: GroupLayout, class_embeddings: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.weight, self.bias.repeat(layout.num_groups)


class NLPGroupWeights(nn.Module):
    """Eq. 6: W_k = W_b M_k with W_b [D, d_w] learned (xavier-normal) and one shared bias."""

    def __init__(self, dim: int, word_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(dim, word_dim))
        self.bias = nn.Parameter(torch.zeros(1))
        nn.init.xavier_normal_(self.weight)

    def weights(self, layout: GroupLayout, class_embeddings: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        class_weights = F.linear(class_embeddings, self.weight)  # [N', D]: W_b N_i per class
        dim = class_weights.shape[1]
        slot_weights = class_weights.new_zeros(layout.num_slots, dim).index_copy(0, layout.class_slots, class_weights)
        weight = slot_weights.view(layout.num_groups, layout.group_size, dim).transpose(1, 2)
        return weight, self.bias.expand(layout.num_slots)


def create_group_weights(
    head_type: str, num_groups: int, dim: int, group_size: int, word_dim: int | None
) -> nn.Module:
    """The weights module for `head_type`; "nlp" needs the word-vector width `word_dim`."""
    if head_type == "learnable":
        return LearnableGroupWeights(num_groups, dim, group_size)
    if head_type == "shared":
        return SharedGroupWeights(dim, group_size)
    if head_type == "nlp":
        if word_dim is None:
            raise ValueError("head_type 'nlp' builds its weights from word vectors; pass word_vectors=[N, d_w]")
        return NLPGroupWeights(dim, word_dim)
    raise ValueError(f"unknown head_type {head_type!r}; valid head types: {', '.join(HEAD_TYPES)}")
