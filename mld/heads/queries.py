"""The input queries of the decoder heads (paper sections 2.3.2-2.3.3, appendix B).

A query source works in two steps so that query augmentations can act between them:
`inputs(layout, class_embeddings)` gives the raw input queries (the query matrix, or the class
word vectors for NLP-based queries) and `embed(inputs, layout)` turns them into K decoder
queries [K, D].
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from mld.heads.grouping import GroupLayout, cyclic_rows

QUERY_TYPES = ("learnable", "fixed_random", "nlp")


class QueryMatrix(nn.Module):
    """One query per group drawn from N(0, 1): a parameter ("learnable") or a fixed buffer ("fixed_random").

    A fixed buffer receives no gradient and is not a parameter, so optimisers and weight decay
    never see it, while checkpoints still carry it.
    """

    uses_word_vectors = False

    def __init__(self, num_groups: int, dim: int, learnable: bool) -> None:
        super().__init__()
        initial = torch.randn(num_groups, dim)
        if learnable:
            self.weight = nn.Parameter(initial)
        else:
            self.register_buffer("weight", initial)

    def inputs(self, layout: GroupLayout, class_embeddings: torch.Tensor | None) -> torch.Tensor:
        # A call-time class set with more groups than were trained reuses the queries cyclically:
        # they carry no class meaning, so unseen classes get uninformed scores (Table 8's point).
        return self.weight[cyclic_rows(layout.num_groups, self.weight.shape[0], self.weight.device)]

    def embed(self, inputs: torch.Tensor, layout: GroupLayout) -> torch.Tensor:
        return inputs


class NLPQueries(nn.Module):
    """Queries from class word vectors (Eq. 5): q_k = concat_{i in G_k} ReLU(W_a N_i + b_a).

    Each word vector is projected to D // g values; a group's projections are concatenated in
    slot order and zero-padded to D (empty slots stay zero). With g = 1 this is the official
    zero-shot query ReLU(Linear(N_i)).
    """

    uses_word_vectors = True

    def __init__(self, dim: int, word_dim: int, group_size: int) -> None:
        super().__init__()
        if dim // group_size < 1:
            raise ValueError(
                f"NLP-based group queries give each of the {group_size} classes of a group "
                f"decoder_dim // group size = {dim // group_size} values; use more groups or a wider decoder"
            )
        self.dim = dim
        self.proj = nn.Linear(word_dim, dim // group_size)

    def inputs(self, layout: GroupLayout, class_embeddings: torch.Tensor | None) -> torch.Tensor:
        return class_embeddings

    def embed(self, inputs: torch.Tensor, layout: GroupLayout) -> torch.Tensor:
        parts = F.relu(self.proj(inputs))  # [N', D // g]
        slots = parts.new_zeros(layout.num_slots, parts.shape[1]).index_copy(0, layout.class_slots, parts)
        queries = slots.view(layout.num_groups, -1)
        return F.pad(queries, (0, self.dim - queries.shape[1]))


def create_queries(
    query_type: str, num_groups: int, dim: int, group_size: int, word_dim: int | None
) -> QueryMatrix | NLPQueries:
    """The query source for `query_type`; "nlp" needs the word-vector width `word_dim`."""
    if query_type in ("learnable", "fixed_random"):
        return QueryMatrix(num_groups, dim, learnable=query_type == "learnable")
    if query_type == "nlp":
        if word_dim is None:
            raise ValueError("query_type 'nlp' builds its queries from word vectors; pass word_vectors=[N, d_w]")
        return NLPQueries(dim, word_dim, group_size)
    raise ValueError(f"unknown query_type {query_type!r}; valid query types: {', '.join(QUERY_TYPES)}")
